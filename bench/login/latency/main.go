// Command latency measures login guards the way an attacker meets them:
// from the sshd failure line that reaches the threshold being appended to
// the log file a guard follows, to the ban's element being committed in the
// kernel.
//
// Each target is a guard (moat, sshguard) already running in its own
// network namespace and following its own file. For every attacking
// address the driver appends two failure lines to each target's file, lets
// the guards read them, then, one target at a time, appends the third line
// (t0) and waits for the address's element in an nftables set of that
// namespace, seen on a netlink monitor socket (NFNLGRP_NFTABLES) opened in
// it. The kernel notifies members of that group when the transaction that
// adds the element commits, so t(seen) - t0 bounds the latency from above
// by the monitor's own wakeup (microseconds). Targets take turns address by
// address, so machine noise falls on all of them alike.
//
// moat counts a line read from a syslog file only if the kernel saw its
// address complete a TCP handshake with sshd's port (issue 10: a forged
// line must not ban anyone), so an attacker's lines must come with its
// connection, as a real attacker's do. For a target given -handshake
// NAME=ADDR:PORT the driver listens on ADDR:PORT inside the target's
// namespace (a stand-in for sshd: only the handshake matters), and before
// each batch of attacking addresses is attacked it connects from every one
// of them to that port, out of the -client namespace, where the addresses
// are local (the script routes them there), paced under the ruleset's
// 1,000 reports a second; the connection is made and closed before the
// address's first line, outside the measured time. Elements of moat's
// sshpeer sets, which record those handshakes, are not bans and are
// ignored.
//
// Usage: latency -target moat=NS:FILE -target sshguard=NS:FILE [-n 1000]
//
//	[-client NS -handshake moat=ADDR:PORT]
package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/moat-fw/moat/internal/firewall"
)

type targets []string

func (t *targets) String() string     { return strings.Join(*t, ",") }
func (t *targets) Set(s string) error { *t = append(*t, s); return nil }

// sighting is an element the kernel committed, and when the monitor got it.
type sighting struct {
	addr netip.Addr
	at   time.Time
}

type target struct {
	name string
	file *os.File
	seen chan sighting
	errs chan error
	lat  []time.Duration
	at   []time.Duration // when each sample's t0 was, since the start
	// stamps are each sample's address and t0 on the wall clock (Unix
	// ns), for -stamps: a guard that logs its own stages on the same
	// clock can be lined up with them.
	stamps []string
	miss   int
	// early counts bans seen before the third line was written: the
	// guard banned on fewer failures than asked, and the run is invalid.
	early int
	// sshd is where the attacking addresses connect before their lines
	// (-handshake), or the zero value.
	sshd netip.AddrPort
}

func main() {
	var ts targets
	flag.Var(&ts, "target", "NAME=NETNS:FILE: a guard running in network namespace NETNS, following FILE (repeat)")
	n := flag.Int("n", 1000, "measured bans per target")
	warm := flag.Int("warmup", 10, "bans per target before measuring")
	gap := flag.Duration("gap", 20*time.Millisecond, "pause after the first two failure lines, so the guards have read them before t0")
	timeout := flag.Duration("timeout", 10*time.Second, "longest wait for a ban (then counted as not seen)")
	raw := flag.String("raw", "", "directory to write each target's samples to (NAME.txt: t0 in ms since the start, latency in µs)")
	stamps := flag.Bool("stamps", false, "with -raw, also write NAME.stamps: address, t0 (wall clock, Unix ns), latency in ns, per sample")
	var hs targets
	flag.Var(&hs, "handshake", "NAME=ADDR:PORT: the attacking addresses complete a TCP handshake with ADDR:PORT in NAME's namespace before their lines (repeat)")
	client := flag.String("client", "", "network namespace the -handshake connections come from (the attacking addresses are local there)")
	flag.Parse()
	if len(ts) == 0 || *n < 1 || *n > 60000 {
		fmt.Fprintln(os.Stderr, "usage: latency -target NAME=NETNS:FILE [-target ...] [-n N (1-60000)] [-warmup N] [-raw DIR]")
		os.Exit(2)
	}
	if len(hs) > 0 && *client == "" {
		fmt.Fprintln(os.Stderr, "latency: -handshake needs -client")
		os.Exit(2)
	}
	if err := run(ts, hs, *client, *n, *warm, *gap, *timeout, *raw, *stamps); err != nil {
		fmt.Fprintln(os.Stderr, "latency:", err)
		os.Exit(1)
	}
}

func run(specs, hs []string, client string, n, warm int, gap, timeout time.Duration, raw string, stamps bool) error {
	sshd := map[string]netip.AddrPort{}
	for _, h := range hs {
		name, ap, ok := strings.Cut(h, "=")
		a, err := netip.ParseAddrPort(ap)
		if !ok || err != nil {
			return fmt.Errorf("-handshake %q: want NAME=ADDR:PORT", h)
		}
		sshd[name] = a
	}
	var tg []*target
	for _, s := range specs {
		name, rest, ok1 := strings.Cut(s, "=")
		ns, file, ok2 := strings.Cut(rest, ":")
		if !ok1 || !ok2 {
			return fmt.Errorf("-target %q: want NAME=NETNS:FILE", s)
		}
		f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		t := &target{name: name, file: f, seen: make(chan sighting, 1<<16), errs: make(chan error, 1)}
		c, err := monitor(ns, t)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		defer c.Close()
		if a, ok := sshd[name]; ok {
			t.sshd = a
			delete(sshd, name)
			ln, err := listenIn(ns, a)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			defer ln.Close()
		}
		tg = append(tg, t)
	}
	for name := range sshd {
		return fmt.Errorf("-handshake %s: no -target of that name", name)
	}
	var d *dialer
	if client != "" {
		var err error
		if d, err = newDialer(client); err != nil {
			return err
		}
		defer d.close()
	}

	w := writer{start: time.Now()}
	// Warm-up addresses come from 10.210.250.0/24, measured ones from
	// 10.210.1.0 up: every address is new to every guard.
	warmAddr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 210, 250, byte(1 + i%250)}) }
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 210, byte(1 + i/250), byte(1 + i%250)}) }
	if err := handshakes(d, tg, warmAddr, 0, min(warm, 250)); err != nil {
		return err
	}
	for i := range warm {
		a := warmAddr(i)
		if err := attack(tg, &w, a, gap, timeout, false, i); err != nil {
			return err
		}
	}
	for _, t := range tg {
		if warm > 0 && t.miss == warm {
			return fmt.Errorf("%s: no warm-up ban reached the kernel: is it running, following its file, and not whitelisting 10.210.0.0/16?", t.name)
		}
		if t.early > 0 {
			return fmt.Errorf("%s banned before the third failure: check its threshold", t.name)
		}
		t.miss = 0
	}
	for i := range n {
		if i%250 == 0 {
			if err := handshakes(d, tg, addr, i, min(n, i+250)); err != nil {
				return err
			}
		}
		a := addr(i)
		if err := attack(tg, &w, a, gap, timeout, true, i); err != nil {
			return err
		}
	}

	for _, t := range tg {
		if t.early > 0 {
			return fmt.Errorf("%s banned %d addresses before their third failure: check its threshold", t.name, t.early)
		}
	}
	fmt.Println("| tool | bans seen | p50 | p90 | p99 | max | mean |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, t := range tg {
		l := slices.Clone(t.lat)
		slices.Sort(l)
		var sum time.Duration
		for _, d := range l {
			sum += d
		}
		mean := time.Duration(0)
		if len(l) > 0 {
			mean = sum / time.Duration(len(l))
		}
		fmt.Printf("| %s | %d of %d | %s | %s | %s | %s | %s |\n", t.name, len(l), n,
			ms(pct(l, 0.50)), ms(pct(l, 0.90)), ms(pct(l, 0.99)), ms(pct(l, 1)), ms(mean))
		if raw != "" {
			var b strings.Builder
			for i, d := range t.lat { // in the order measured
				fmt.Fprintln(&b, t.at[i].Milliseconds(), d.Microseconds())
			}
			if err := os.WriteFile(filepath.Join(raw, t.name+".txt"), []byte(b.String()), 0o644); err != nil {
				return err
			}
			if stamps {
				if err := os.WriteFile(filepath.Join(raw, t.name+".stamps"), []byte(strings.Join(t.stamps, "")), 0o644); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// attack makes every target ban a: two failures each, a pause, then the
// third failure and the wait, one target at a time (in turns, so neither
// always goes first).
func attack(tg []*target, w *writer, a netip.Addr, gap, timeout time.Duration, record bool, i int) error {
	for _, t := range tg {
		for range 2 {
			if err := w.fail(t.file, a); err != nil {
				return err
			}
		}
	}
	time.Sleep(gap)
	for k := range tg {
		t := tg[(i+k)%len(tg)]
		line := w.line(a)
		t0 := time.Now()
		if _, err := t.file.Write(line); err != nil {
			return err
		}
		d, err := t.await(a, t0, timeout)
		switch {
		case err != nil:
			return fmt.Errorf("%s: %w", t.name, err)
		case d == missed:
			t.miss++
		case d < 0:
			t.early++
		case record:
			t.lat = append(t.lat, d)
			t.at = append(t.at, t0.Sub(w.start))
			t.stamps = append(t.stamps, fmt.Sprintln(a, t0.UnixNano(), d.Nanoseconds()))
		}
	}
	return nil
}

const missed = time.Duration(-1 << 63)

// await returns how long after t0 a's element was seen, or missed after
// timeout. Sightings of other addresses are left-overs of bans that timed
// out earlier.
func (t *target) await(a netip.Addr, t0 time.Time, timeout time.Duration) (time.Duration, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		select {
		case s := <-t.seen:
			if s.addr == a {
				return s.at.Sub(t0), nil
			}
		case err := <-t.errs:
			return 0, err
		case <-deadline.C:
			return missed, nil
		}
	}
}

// writer makes sshd failure lines in syslog format, as rsyslog writes them
// to /var/log/auth.log, each with its own sshd pid and client port.
type writer struct {
	start time.Time
	buf   []byte
	conn  int
}

func (w *writer) line(a netip.Addr) []byte {
	w.conn++
	w.buf = time.Now().AppendFormat(w.buf[:0], time.Stamp)
	w.buf = fmt.Appendf(w.buf, " bench sshd[%d]: Failed password for root from %s port %d ssh2\n",
		10000+w.conn%50000, a, 1024+w.conn%60000)
	return w.buf
}

// fail appends one failure line in one write, as a syslog daemon does.
func (w *writer) fail(f *os.File, a netip.Addr) error {
	_, err := f.Write(w.line(a))
	return err
}

// monitor subscribes to nftables changes in network namespace ns and sends
// t every element added (the start of an interval, for interval sets).
func monitor(ns string, t *target) (*netlink.Conn, error) {
	f, err := os.Open(filepath.Join("/run/netns", ns))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: int(f.Fd())})
	if err != nil {
		return nil, fmt.Errorf("netlink in %s: %w", ns, err)
	}
	// A lost notification would be a lost sample: make room for bursts.
	if err := c.SetReadBuffer(8 << 20); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.JoinGroup(unix.NFNLGRP_NFTABLES); err != nil {
		c.Close()
		return nil, fmt.Errorf("joining NFNLGRP_NFTABLES in %s: %w", ns, err)
	}
	go func() {
		// Its own thread: the timestamp is taken the moment the kernel
		// hands the message over, not when a busy P gets round to it.
		runtime.LockOSThread()
		for {
			msgs, err := c.Receive()
			at := time.Now()
			if err != nil {
				if !errors.Is(err, os.ErrClosed) && !strings.Contains(err.Error(), "closed") {
					t.errs <- fmt.Errorf("monitor in %s: %w (a lost notification is a lost sample)", ns, err)
				}
				return
			}
			for _, m := range msgs {
				if m.Header.Type>>8 != unix.NFNL_SUBSYS_NFTABLES || m.Header.Type&0xff != unix.NFT_MSG_NEWSETELEM || len(m.Data) < 4 {
					continue
				}
				for _, a := range starts(m.Data[4:]) {
					t.seen <- sighting{addr: a, at: at}
				}
			}
		}
	}()
	return c, nil
}

// starts returns the keys of the elements in a NEWSETELEM message's
// attributes that are not interval ends.
func starts(b []byte) []netip.Addr {
	var out []netip.Addr
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return nil
	}
	for ad.Next() {
		if ad.Type() == unix.NFTA_SET_ELEM_LIST_SET {
			if s := ad.String(); s == firewall.SetSSHPeer4 || s == firewall.SetSSHPeer6 {
				return nil // handshakes moat recorded, not bans
			}
		}
		if ad.Type() != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			continue
		}
		ad.Nested(func(list *netlink.AttributeDecoder) error {
			for list.Next() {
				if list.Type() != unix.NFTA_LIST_ELEM {
					continue
				}
				list.Nested(func(el *netlink.AttributeDecoder) error {
					var key netip.Addr
					end := false
					for el.Next() {
						switch el.Type() {
						case unix.NFTA_SET_ELEM_KEY:
							el.Nested(func(k *netlink.AttributeDecoder) error {
								for k.Next() {
									if k.Type() == unix.NFTA_DATA_VALUE {
										key, _ = netip.AddrFromSlice(k.Bytes())
									}
								}
								return nil
							})
						case unix.NFTA_SET_ELEM_FLAGS:
							if v := el.Bytes(); len(v) == 4 {
								end = binary.BigEndian.Uint32(v)&unix.NFT_SET_ELEM_INTERVAL_END != 0
							}
						}
					}
					if key.IsValid() && !end {
						out = append(out, key.Unmap())
					}
					return nil
				})
			}
			return nil
		})
	}
	return out
}

// pct is the nearest-rank percentile of sorted l.
func pct(l []time.Duration, p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	i := int(float64(len(l))*p+0.999999) - 1
	return l[max(0, min(i, len(l)-1))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }

// handshakeGap paces the connections: the ruleset reports at most 1,000
// new peers a second (a burst of 1,000), and a report the limit holds back
// is lost for a connection that sends nothing more.
const handshakeGap = 2 * time.Millisecond

// handshakeSettle is how long the daemon gets to record the last reports
// (NFLOG, queue threshold 1) before the batch's first line.
const handshakeSettle = 300 * time.Millisecond

// handshakes connects from addr(from) ... addr(to-1) to every target's
// sshd (those given -handshake), one after another.
func handshakes(d *dialer, tg []*target, addr func(int) netip.Addr, from, to int) error {
	made := 0
	for _, t := range tg {
		if !t.sshd.IsValid() {
			continue
		}
		for i := from; i < to; i++ {
			if err := d.handshake(addr(i), t.sshd); err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			made++
			time.Sleep(handshakeGap)
		}
	}
	if made > 0 {
		time.Sleep(handshakeSettle)
	}
	return nil
}

// inNetNS runs fn on a thread moved into network namespace ns, which is
// left there (the thread ends with its goroutine): sockets fn makes belong
// to ns.
func inNetNS(ns string, fn func()) error {
	f, err := os.Open(filepath.Join("/run/netns", ns))
	if err != nil {
		return err
	}
	defer f.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("entering %s: %w", ns, err)
			return
		}
		errc <- nil
		fn()
	}()
	return <-errc
}

// listenIn listens on a inside network namespace ns and closes every
// connection it accepts: the handshake, which the kernel completes, is
// what the guard asks for.
func listenIn(ns string, a netip.AddrPort) (net.Listener, error) {
	lc := make(chan net.Listener, 1)
	errc := make(chan error, 1)
	err := inNetNS(ns, func() {
		ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(a))
		if err != nil {
			errc <- fmt.Errorf("listening on %s in %s: %w", a, ns, err)
			return
		}
		lc <- ln
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	})
	if err != nil {
		return nil, err
	}
	select {
	case ln := <-lc:
		return ln, nil
	case err := <-errc:
		return nil, err
	}
}

// dialer makes connections from a network namespace, on one thread that
// stays in it.
type dialer struct {
	req chan dialReq
}

type dialReq struct {
	from netip.Addr
	to   netip.AddrPort
	done chan error
}

func newDialer(ns string) (*dialer, error) {
	d := &dialer{req: make(chan dialReq)}
	err := inNetNS(ns, func() {
		for r := range d.req {
			nd := net.Dialer{Timeout: 5 * time.Second, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(r.from, 0))}
			c, err := nd.Dial("tcp", r.to.String())
			if err == nil {
				c.Close()
			}
			r.done <- err
		}
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// handshake connects from a to sshd and closes the connection.
func (d *dialer) handshake(a netip.Addr, sshd netip.AddrPort) error {
	done := make(chan error, 1)
	d.req <- dialReq{a, sshd, done}
	if err := <-done; err != nil {
		return fmt.Errorf("connecting from %s to %s: %w", a, sshd, err)
	}
	return nil
}

func (d *dialer) close() { close(d.req) }

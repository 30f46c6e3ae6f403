package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// The table probe adds in the server namespace to count what the flood
// delivers: a netdev ingress counter sees every packet the interface
// receives, before anything (conntrack, moat's rules, knockd's capture)
// could drop it.
const counterTable = "knockbench"

type probe struct {
	mode     string // moat-kernel, moat-daemon or knockd
	label    string
	clientNS string
	server   netip.Addr
	client   netip.Addr
	iface    string
	knockArg []string // the knock client's ports, e.g. 7000 7100 7200:udp
	openPort uint16
	knocks   int
	warmup   time.Duration
	gap      time.Duration
	wait     time.Duration
	pid      int
	grantDir string

	floodPort    uint16
	floodPPS     float64
	floodSrc     string
	floodExclude string
	floodCPUs    string
	floodKind    string // paced, max or hping3
	floodUDP     int    // UDP payload bytes of the flood's datagrams; 0: TCP SYNs
	floodB64     bool   // the datagrams' payloads are base64 text
	knockCmd     []string
	floodProcs   int
	barPPS       float64

	nft    *nftables.Conn
	grants chan time.Time // daemon mode and knockd: the client's grant appeared
}

// knockResult is one knock: whether the door opened, and how long after
// the last knock packet reached the server the grant appeared.
type knockResult struct {
	opened  bool
	latency time.Duration // 0 when no grant was seen
	err     string
}

func probeMain(args []string) error {
	fs := flag.NewFlagSet("probe", flag.ExitOnError)
	p := &probe{}
	fs.StringVar(&p.mode, "mode", "", "moat-kernel, moat-daemon, moat-spa, knockd or fwknopd")
	fs.StringVar(&p.label, "label", "", "tool and mode columns of the table row, e.g. \"moat | kernel\"")
	fs.StringVar(&p.clientNS, "client-ns", "", "the client's network namespace (ip netns name)")
	server := fs.String("server", "", "the server's address, which the client knocks")
	client := fs.String("client", "", "the client's address")
	fs.StringVar(&p.iface, "iface", "", "the server's interface toward the client")
	seq := fs.String("seq", "7000 7100 7200:udp", "the knock client's ports; the last must be udp")
	open := fs.Uint("open", 2222, "the port a knock opens (moat modes: connected to after each knock)")
	fs.IntVar(&p.knocks, "knocks", 20, "knocks to try")
	fs.DurationVar(&p.warmup, "warmup", 6*time.Second, "flood this long before the first knock (more than seq_timeout, so the flood's state is at its steady size)")
	fs.DurationVar(&p.gap, "gap", 300*time.Millisecond, "pause between knocks")
	fs.DurationVar(&p.wait, "wait", 2*time.Second, "how long a grant may take before the knock counts as failed")
	fs.IntVar(&p.pid, "pid", 0, "PID of the moat daemon or knockd, for RSS and CPU")
	fs.StringVar(&p.grantDir, "grant-dir", "", "knockd mode: the directory its command creates opened-IP in")
	floodPort := fs.Uint("flood-port", 7000, "flood: target port (the first knock port)")
	fs.Float64Var(&p.floodPPS, "flood-pps", 60000, "flood: packets per second to aim for; 0 runs without a flood")
	fs.StringVar(&p.floodSrc, "flood-src", "10.210.0.0/16", "flood: source prefix")
	fs.StringVar(&p.floodExclude, "flood-exclude", "", "flood: sources never used (the link's subnet, so the real client is never spoofed)")
	fs.StringVar(&p.floodCPUs, "flood-cpus", "", "flood: run the sender on these CPUs only (taskset -c LIST), standing for the network rather than a host process")
	fs.StringVar(&p.floodKind, "flood", "paced", "flood: paced (one sender at -flood-pps), max (-flood-procs senders as fast as they can) or hping3 (-flood-procs hping3 --flood processes, each from one forged source)")
	fs.IntVar(&p.floodUDP, "flood-udp", 0, "flood: UDP datagrams of this many random bytes instead of TCP SYNs (an SPA flood)")
	fs.BoolVar(&p.floodB64, "flood-b64", false, "flood: with -flood-udp, payloads of base64 characters (they reach fwknop's digest and HMAC)")
	knockCmd := fs.String("knock-cmd", "", "run this command (split on spaces) in the client namespace instead of knockd's knock client, e.g. moat spa send ...")
	fs.IntVar(&p.floodProcs, "flood-procs", 2, "flood: sender processes for -flood max and hping3")
	fs.Float64Var(&p.barPPS, "bar-pps", 50000, "a flood row whose measured rate is below this is marked so")
	_ = fs.Parse(args)

	var err error
	if p.server, err = netip.ParseAddr(*server); err != nil {
		return fmt.Errorf("-server: %w", err)
	}
	if p.client, err = netip.ParseAddr(*client); err != nil {
		return fmt.Errorf("-client: %w", err)
	}
	p.knockArg = strings.Fields(*seq)
	p.knockCmd = strings.Fields(*knockCmd)
	last := p.knockArg[len(p.knockArg)-1]
	port, ok := strings.CutSuffix(last, ":udp")
	lastPort, perr := strconv.ParseUint(port, 10, 16)
	if !ok || perr != nil {
		return fmt.Errorf("-seq %q: the last knock must be PORT:udp (its arrival is what is timed)", *seq)
	}
	p.openPort, p.floodPort = uint16(*open), uint16(*floodPort)
	switch p.mode {
	case "moat-kernel", "moat-daemon", "moat-spa", "knockd", "fwknopd":
	default:
		return fmt.Errorf("-mode %q: want moat-kernel, moat-daemon, moat-spa, knockd or fwknopd", p.mode)
	}
	if p.clientNS == "" || p.iface == "" || p.pid == 0 || p.knocks < 1 || (p.mode == "knockd" && p.grantDir == "") {
		return errors.New("need -client-ns, -iface, -pid, -knocks > 0 (and -grant-dir for knockd)")
	}
	if p.nft, err = nftables.New(); err != nil {
		return err
	}
	return p.run(uint16(lastPort))
}

func (p *probe) run(lastPort uint16) error {
	if err := nftScript(fmt.Sprintf(`table netdev %[1]s {
	counter flood {}
	chain in {
		type filter hook ingress device %[2]q priority -500; policy accept;
		meta l4proto %[4]s th dport %[3]d counter name flood
	}
}`, counterTable, p.iface, p.floodPort, map[bool]string{false: "tcp", true: "udp"}[p.floodUDP > 0])); err != nil {
		return err
	}
	defer func() { _ = nftScript("delete table netdev " + counterTable) }()

	if strings.HasPrefix(p.mode, "moat") || p.mode == "fwknopd" {
		ln, err := net.Listen("tcp", netip.AddrPortFrom(p.server, p.openPort).String())
		if err != nil {
			return err
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
	cp, err := newCapture(p.iface, p.client, lastPort)
	if err != nil {
		return err
	}
	defer cp.Close()
	p.grants = make(chan time.Time, 64)
	switch p.mode {
	case "moat-daemon", "moat-spa":
		stop, err := p.watchMonitor()
		if err != nil {
			return err
		}
		defer stop()
	case "knockd":
		stop, err := p.watchDir()
		if err != nil {
			return err
		}
		defer stop()
	}

	mem := &memSampler{pid: p.pid}
	stopMem := mem.start(100 * time.Millisecond)
	defer stopMem()

	fl, err := p.startFlood()
	if err != nil {
		return err
	}
	defer fl.kill()
	if fl != nil {
		select {
		case <-fl.exited:
			return fmt.Errorf("flood exited early: %s", fl.output())
		case <-time.After(p.warmup):
		}
	}

	cpu0, err := cpuTicks(p.pid)
	if err != nil {
		return err
	}
	pk0, err := p.floodCounter()
	if err != nil {
		return err
	}
	udp0 := udpCounters()
	kids0 := childTicks(p.pid)
	t0 := time.Now()
	results := make([]knockResult, 0, p.knocks)
	for i := range p.knocks {
		r := p.knockOnce(cp)
		results = append(results, r)
		fmt.Fprintf(os.Stderr, "%s knock %2d: opened=%v grant after %v %s\n", p.mode, i+1, r.opened, r.latency, r.err)
	}
	secs := time.Since(t0).Seconds()
	cpu1, err := cpuTicks(p.pid)
	if err != nil {
		return fmt.Errorf("the process measured (PID %d) is gone: %w", p.pid, err)
	}
	pk1, err := p.floodCounter()
	if err != nil {
		return err
	}
	udp1 := udpCounters()
	kids1 := childTicks(p.pid)
	fr, err := fl.stop()
	if err != nil {
		return err
	}
	stopMem()

	opened := 0
	var lat []time.Duration
	for _, r := range results {
		if r.opened {
			opened++
		}
		if r.latency > 0 {
			lat = append(lat, r.latency)
		}
	}
	slices.Sort(lat)
	ms := func(q float64) string {
		if len(lat) == 0 {
			return "–"
		}
		return fmt.Sprintf("%.2f", float64(lat[nearestRank(len(lat), q)])/1e6)
	}
	rate := float64(pk1-pk0) / secs
	fmt.Fprintf(os.Stderr, "%s: flood (%s) sender %.0f pps over %.1f s (%d sent, %d failed sendmmsg calls); server ingress %.0f pps over the %.1f s of knocks; %d grants timed\n",
		p.mode, p.floodKind, fr.PPS, fr.Seconds, fr.Sent, fr.Errors, rate, secs, len(lat))
	if p.mode == "fwknopd" {
		fmt.Fprintf(os.Stderr, "%s: its UDP socket took %.0f datagrams/s (each one read and checked by fwknopd) and the kernel dropped %.0f/s at the full socket queue; the iptables commands it ran used %.0f%% of a core\n",
			p.mode, float64(udp1.in-udp0.in)/secs, float64(udp1.rcvbuf-udp0.rcvbuf)/secs, 100*float64(kids1-kids0)/100/secs)
	}
	hz := 100.0 // USER_HZ on Linux
	fmt.Printf("| %s | %s | %d/%d | %s / %s ms | %.1f MB (peak %.1f) | %.0f%% |\n",
		p.label, p.fmtPPS(rate), opened, p.knocks, ms(0.50), ms(0.99),
		float64(mem.maxRSS())/1024, float64(mem.hwm())/1024, 100*float64(cpu1-cpu0)/hz/secs)
	return nil
}

// nearestRank is the index of the q quantile of n sorted values: with 20
// values, p99 is the largest.
func nearestRank(n int, q float64) int {
	return max(int(math.Ceil(q*float64(n)))-1, 0)
}

func (p *probe) fmtPPS(r float64) string {
	if !p.flooding() {
		return "none"
	}
	s := strconv.FormatFloat(math.Round(r/100)*100, 'f', 0, 64)
	if r < p.barPPS {
		s += " (below the bar's " + strconv.FormatFloat(p.barPPS, 'f', 0, 64) + ")"
	}
	return s
}

// knockOnce shuts the door, knocks from the client namespace, and waits
// for the grant.
func (p *probe) knockOnce(cp *capture) knockResult {
	var r knockResult
	if err := p.resetGrant(); err != nil {
		r.err = "reset: " + err.Error()
		return r
	}
	time.Sleep(p.gap)
	drain(cp.C)
	drain(p.grants)

	args := []string{"netns", "exec", p.clientNS, "knock"}
	if p.client.Is6() {
		args = append(args, "-6")
	}
	args = append(append(args, p.server.String()), p.knockArg...)
	if len(p.knockCmd) > 0 {
		args = append([]string{"netns", "exec", p.clientNS}, p.knockCmd...)
	}
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		r.err = fmt.Sprintf("knock: %v: %s", err, out)
		return r
	}
	var sent time.Time
	select {
	case sent = <-cp.C:
	case <-time.After(time.Second):
		r.err = "the last knock never reached the server's interface"
		return r
	}
	granted, ok := p.awaitGrant(sent)
	if ok {
		r.latency = granted.Sub(sent)
	}
	if p.mode == "knockd" {
		r.opened = ok
		return r
	}
	// Whatever the monitor said, the door is open if a connection gets in.
	r.opened = p.dialFromClient(time.Second) == nil
	if ok && !r.opened {
		r.err = "grant seen but the connection failed"
	}
	return r
}

// awaitGrant returns when the client's grant appeared.
func (p *probe) awaitGrant(sent time.Time) (time.Time, bool) {
	deadline := time.After(p.wait)
	if p.mode == "fwknopd" {
		return p.pollRules(deadline)
	}
	if p.mode == "moat-kernel" {
		// The kernel adds the grant from the packet path and announces
		// nothing, so poll: the figure bounds the real delay (microseconds,
		// within the same softirq) from above by one set dump.
		set := &nftables.Set{Table: &nftables.Table{Name: "moat", Family: nftables.TableFamilyINet}, Name: grantSet(p.client)}
		for {
			if els, err := p.nft.GetSetElements(set); err == nil && p.hasClient(els) {
				return time.Now(), true
			}
			select {
			case <-deadline:
				return time.Time{}, false
			default:
				time.Sleep(100 * time.Microsecond)
			}
		}
	}
	for {
		select {
		case t := <-p.grants:
			if t.After(sent) {
				return t, true
			}
		case <-deadline:
			return time.Time{}, false
		}
	}
}

func grantSet(a netip.Addr) string {
	if a.Is6() {
		return "grant6"
	}
	return "grant4"
}

// hasClient reports whether a grant element (addr . proto . port) is the
// client's.
func (p *probe) hasClient(els []nftables.SetElement) bool {
	a := p.client.AsSlice()
	for _, e := range els {
		if bytes.HasPrefix(e.Key, a) {
			return true
		}
	}
	return false
}

func (p *probe) resetGrant() error {
	if p.mode == "fwknopd" {
		p.nft.FlushChain(fwknopChain())
		return p.nft.Flush()
	}
	if p.mode == "knockd" {
		err := os.Remove(filepath.Join(p.grantDir, "opened-"+p.client.String()))
		if errors.Is(err, os.ErrNotExist) {
			err = nil
		}
		return err
	}
	t := &nftables.Table{Name: "moat", Family: nftables.TableFamilyINet}
	p.nft.FlushSet(&nftables.Set{Table: t, Name: grantSet(p.client)})
	return p.nft.Flush()
}

// watchMonitor reports the client's grants as moat's daemon commits them,
// from nftables' own change notifications.
func (p *probe) watchMonitor() (stop func(), err error) {
	mon := nftables.NewMonitor(nftables.WithMonitorAction(nftables.MonitorActionNew),
		nftables.WithMonitorObject(nftables.MonitorObjectElements), nftables.WithMonitorEventBuffer(256))
	c, err := nftables.New()
	if err != nil {
		return nil, err
	}
	events, err := c.AddMonitor(mon)
	if err != nil {
		return nil, fmt.Errorf("nftables monitor: %w", err)
	}
	go func() {
		for ev := range events {
			now := time.Now()
			if els, ok := ev.Data.([]nftables.SetElement); ok && ev.Type == nftables.MonitorEventTypeNewSetElem && p.hasClient(els) {
				select {
				case p.grants <- now:
				default:
				}
			}
		}
	}()
	return func() { mon.Close() }, nil
}

// watchDir reports knockd's command creating opened-CLIENT in grantDir,
// with inotify: a file's own times are only as fine as the kernel's tick.
func (p *probe) watchDir() (stop func(), err error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if _, err := unix.InotifyAddWatch(fd, p.grantDir, unix.IN_CREATE|unix.IN_ATTRIB|unix.IN_CLOSE_WRITE); err != nil {
		unix.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "inotify")
	name := "opened-" + p.client.String()
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := f.Read(buf)
			if err != nil {
				return
			}
			now := time.Now()
			for b := buf[:n]; len(b) >= unix.SizeofInotifyEvent; {
				l := int(b[12]) | int(b[13])<<8 | int(b[14])<<16 | int(b[15])<<24 // len, native endian (little on amd64/arm64)
				end := unix.SizeofInotifyEvent + l
				if end > len(b) {
					break
				}
				if string(bytes.TrimRight(b[unix.SizeofInotifyEvent:end], "\x00")) == name {
					select {
					case p.grants <- now:
					default:
					}
				}
				b = b[end:]
			}
		}
	}()
	return func() { f.Close() }, nil
}

// dialFromClient connects from the client namespace to the open port. The
// socket is made on an OS thread moved into that namespace; the thread is
// never unlocked, so the runtime ends it with the goroutine and nothing
// else ever runs in the wrong namespace.
func (p *probe) dialFromClient(timeout time.Duration) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open("/run/netns/"+p.clientNS, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			done <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			done <- err
			return
		}
		c, err := net.DialTimeout("tcp", netip.AddrPortFrom(p.server, p.openPort).String(), timeout)
		if err == nil {
			c.Close()
		}
		done <- err
	}()
	return <-done
}

func drain(c <-chan time.Time) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}

func nftScript(script string) error {
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft: %v: %s", err, out)
	}
	return nil
}

// floodCounter reads the ingress counter over netlink: `nft list counter`
// fills nft's cache with every set first, which takes seconds once moat's
// knock sets hold a flood's worth of sources.
func (p *probe) floodCounter() (uint64, error) {
	o, err := p.nft.GetObject(&nftables.CounterObj{Table: &nftables.Table{Name: counterTable, Family: nftables.TableFamilyNetdev}, Name: "flood"})
	if err != nil {
		return 0, fmt.Errorf("read counter %s/flood: %w", counterTable, err)
	}
	c, ok := o.(*nftables.CounterObj)
	if !ok {
		return 0, fmt.Errorf("counter %s/flood: got %T", counterTable, o)
	}
	return c.Packets, nil
}

// cpuTicks is the user plus system time a process has used, in clock ticks.
func cpuTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which may hold spaces: state is
	// field 3, utime 14, stime 15.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	return u + s, errors.Join(err1, err2)
}

// memSampler keeps the largest VmRSS seen, and the last VmHWM (the peak
// the kernel recorded, which includes the daemon's start).
type memSampler struct {
	pid    int
	mu     sync.Mutex
	rssMax uint64 // kB
	hwmKB  uint64
}

func (m *memSampler) sample() {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", m.pid))
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	m.mu.Lock()
	defer m.mu.Unlock()
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmRSS":
			m.rssMax = max(m.rssMax, kb)
		case "VmHWM":
			m.hwmKB = kb
		}
	}
	// VmRSS and VmHWM come from per-CPU counters folded in at different
	// times, so a sample can exceed the recorded peak by a few pages.
	m.hwmKB = max(m.hwmKB, m.rssMax)
}

func (m *memSampler) start(every time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			m.sample()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait(); m.sample() }) }
}

func (m *memSampler) maxRSS() uint64 { m.mu.Lock(); defer m.mu.Unlock(); return m.rssMax }
func (m *memSampler) hwm() uint64    { m.mu.Lock(); defer m.mu.Unlock(); return m.hwmKB }

// Command floor is the least a login guard can do on the path the latency
// driver (bench/login/latency) times: it follows a log file and, for every
// line that names "from <addr>", counts it and on its third line adds that
// address to an nftables set with one netlink transaction, and nothing
// else: no parsing beyond that, no evidence check, no store, no log.
// Run through the driver beside moat, it is the floor of the measurement on
// this machine: file append -> wake-up -> read -> netlink commit ->
// notification.
//
// It wakes the way moat's follower does (internal/authlog/file.go):
// fsnotify watching the file's directory, one goroutine reading the
// watcher's Events channel, the file read from the offset last read
// (ReadAt). -wake blocking instead reads the inotify descriptor itself, with
// blocking read(2) on a thread of its own: no netpoller and no goroutine
// hop, the bound of what a Go follower could gain.
//
// The driver waits for the ban of an address's third line and stops if a
// guard bans before it, so the floor counts: an address is added on its
// -count'th line (3, as moat's max_retry in the bench), with a map, which
// costs a lookup per line.
//
// The table (inet moatfloor, sets ban4 and ban6 with timeouts, as moat's
// host-ban sets, and a chain that drops their sources) is made in the
// namespace the command runs in and deleted when it ends. -prefill N puts N
// IPv6 addresses (fd00:210:5eed::/96 plus a counter, as bench/seedstore -v6
// seeds moat's store) into ban6 first, in one batch.
//
// Usage: floor -file PATH [-count 3] [-prefill 100000] [-wake fsnotify|blocking] [-stamps FILE]
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"
	"unsafe"

	"github.com/fsnotify/fsnotify"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/moat-fw/moat/bench/scale/million"
)

func main() {
	file := flag.String("file", "", "log file to follow (its directory is watched)")
	count := flag.Int("count", 3, "lines naming an address that add it (the driver bans on the third)")
	prefill := flag.Int("prefill", 0, "IPv6 elements put into ban6 before following")
	wake := flag.String("wake", "fsnotify", "how the follower wakes: fsnotify (as moat) or blocking (inotify read(2) on its own thread)")
	ttl := flag.Duration("timeout", time.Hour, "the elements' timeout")
	stamps := flag.String("stamps", "", "file to write, per ban: address, wake-up, commit start, commit end (wall clock, Unix ns)")
	flag.Parse()
	// -stamps only with fsnotify: the blocking reader's thread is left in
	// read(2) when the command ends, and would race the stamps' last flush.
	if *file == "" || *count < 1 || (*wake != "fsnotify" && *wake != "blocking") || (*wake == "blocking" && *stamps != "") {
		fmt.Fprintln(os.Stderr, "usage: floor -file PATH [-count N] [-prefill N] [-wake fsnotify|blocking] [-stamps FILE (fsnotify only)]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *file, *count, *prefill, *wake, *ttl, *stamps); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

// banner adds addresses to the floor's sets, one transaction each, on one
// lasting netlink socket.
type banner struct {
	c          *nftables.Conn
	ban4, ban6 *nftables.Set
	ttl        time.Duration
	seen       map[netip.Addr]int
	count      int
	el         [1]nftables.SetElement
	// stamps, if set, gets a line per ban: the address, then the wall
	// clock (Unix ns) at the wake-up that read its line, before the
	// netlink commit, and after it.
	stamps *bufio.Writer
	woke   int64
}

func newBanner(prefill, count int, ttl time.Duration) (*banner, error) {
	c, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return nil, err
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "moatfloor"})
	b := &banner{c: c, ttl: ttl, seen: map[netip.Addr]int{}, count: count,
		ban4: &nftables.Set{Table: t, Name: "ban4", KeyType: nftables.TypeIPAddr, HasTimeout: true},
		ban6: &nftables.Set{Table: t, Name: "ban6", KeyType: nftables.TypeIP6Addr, HasTimeout: true}}
	for _, s := range []*nftables.Set{b.ban4, b.ban6} {
		if err := c.AddSet(s, nil); err != nil {
			return nil, err
		}
	}
	ch := c.AddChain(&nftables.Chain{Table: t, Name: "input", Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter})
	for _, s := range []*nftables.Set{b.ban4, b.ban6} {
		off, n, proto := uint32(12), uint32(4), byte(unix.NFPROTO_IPV4)
		if s == b.ban6 {
			off, n, proto = 8, 16, unix.NFPROTO_IPV6
		}
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
			&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}})
	}
	if err := c.Flush(); err != nil {
		return nil, fmt.Errorf("making table inet moatfloor: %w", err)
	}
	if prefill > 0 {
		els := make([]nftables.SetElement, prefill)
		for i := range els {
			els[i] = nftables.SetElement{Key: million.Seed6(i).AsSlice(), Timeout: 24 * time.Hour}
		}
		if err := c.SetAddElements(b.ban6, els); err != nil {
			return nil, err
		}
		if err := c.Flush(); err != nil {
			return nil, fmt.Errorf("prefilling ban6: %w", err)
		}
	}
	return b, nil
}

func (b *banner) close() {
	b.c.DelTable(b.ban4.Table)
	_ = b.c.Flush()
	_ = b.c.CloseLasting()
}

// line handles one line: the address after "from ", counted, added on its
// count'th line.
func (b *banner) line(l []byte) error {
	i := bytes.Index(l, []byte(" from "))
	if i < 0 {
		return nil
	}
	rest := l[i+6:]
	if j := bytes.IndexByte(rest, ' '); j >= 0 {
		rest = rest[:j]
	}
	a, err := netip.ParseAddr(string(rest))
	if err != nil {
		return nil
	}
	a = a.Unmap()
	n := b.seen[a] + 1
	b.seen[a] = n
	if n != b.count {
		return nil
	}
	s := b.ban4
	if a.Is6() {
		s = b.ban6
	}
	b.el[0] = nftables.SetElement{Key: a.AsSlice(), Timeout: b.ttl}
	t1 := time.Now()
	if err := b.c.SetAddElements(s, b.el[:]); err != nil {
		return err
	}
	if err := b.c.Flush(); err != nil {
		return fmt.Errorf("adding %s: %w", a, err)
	}
	if b.stamps != nil {
		fmt.Fprintln(b.stamps, a, b.woke, t1.UnixNano(), time.Now().UnixNano())
	}
	return nil
}

// follower reads a file from where it last stopped and hands on lines.
type follower struct {
	f   *os.File
	off int64
	buf []byte
	n   int
}

func (r *follower) drain(fn func([]byte) error) error {
	for {
		k, err := r.f.ReadAt(r.buf[r.n:], r.off+int64(r.n))
		r.n += k
		start := 0
		for {
			i := bytes.IndexByte(r.buf[start:r.n], '\n')
			if i < 0 {
				break
			}
			if err := fn(r.buf[start : start+i]); err != nil {
				return err
			}
			start += i + 1
		}
		r.off += int64(start)
		r.n = copy(r.buf, r.buf[start:r.n])
		if r.n == len(r.buf) {
			return fmt.Errorf("a line longer than %d bytes", len(r.buf))
		}
		if errors.Is(err, io.EOF) || k == 0 && err == nil {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func run(ctx context.Context, path string, count, prefill int, wake string, ttl time.Duration, stamps string) error {
	path = filepath.Clean(path)
	b, err := newBanner(prefill, count, ttl)
	if err != nil {
		return err
	}
	defer b.close()
	if stamps != "" {
		sf, err := os.Create(stamps)
		if err != nil {
			return err
		}
		defer sf.Close()
		b.stamps = bufio.NewWriterSize(sf, 1<<20)
		defer b.stamps.Flush()
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	r := &follower{f: f, off: fi.Size(), buf: make([]byte, 64<<10)}
	if wake == "blocking" {
		return followBlocking(ctx, path, r, b)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	if err := w.Add(filepath.Dir(path)); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev := <-w.Events:
			if ev.Name != path {
				continue
			}
			b.woke = time.Now().UnixNano()
		case err := <-w.Errors:
			return err
		}
		if err := r.drain(b.line); err != nil {
			return err
		}
	}
}

// followBlocking reads inotify events with a blocking read(2) on a thread
// of its own and drains the file on that thread: the kernel wakes this
// thread directly.
func followBlocking(ctx context.Context, path string, r *follower, b *banner) error {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		return err
	}
	if _, err := unix.InotifyAddWatch(fd, filepath.Dir(path), unix.IN_MODIFY|unix.IN_CREATE|unix.IN_MOVED_TO); err != nil {
		unix.Close(fd)
		return err
	}
	name := filepath.Base(path)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		buf := make([]byte, 64<<10)
		for {
			n, err := unix.Read(fd, buf)
			if err != nil {
				errc <- err
				return
			}
			hit := false
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
				nm := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
				if i := bytes.IndexByte(nm, 0); i >= 0 {
					nm = nm[:i]
				}
				hit = hit || string(nm) == name
				off += unix.SizeofInotifyEvent + int(ev.Len)
			}
			if hit {
				if err := r.drain(b.line); err != nil {
					errc <- err
					return
				}
			}
		}
	}()
	select {
	case <-ctx.Done():
		// The thread stays in read(2) until the process exits, which it
		// is about to do.
		return ctx.Err()
	case err := <-errc:
		unix.Close(fd)
		return err
	}
}

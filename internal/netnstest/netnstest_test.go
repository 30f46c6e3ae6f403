package netnstest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dropWait is how long a dial waits before calling a port dropped. Replies
// on a veth arrive in well under a millisecond, so this only has to beat
// scheduling noise under -race on two cores.
const dropWait = 400 * time.Millisecond

// okWait bounds attempts that are expected to get an answer.
const okWait = 3 * time.Second

// TestMain checks, after every test, that no namespace this process made
// is left behind.
func TestMain(m *testing.M) {
	code := m.Run()
	created.Lock()
	names := created.names
	created.Unlock()
	if ip, err := lookTool("ip"); err == nil && len(names) > 0 {
		if out, err := runIP(ip, "netns", "list"); err == nil {
			for _, name := range names {
				if strings.Contains(out, name) {
					fmt.Fprintf(os.Stderr, "netnstest: namespace %s left behind\n", name)
					code = 1
				}
			}
		}
	}
	os.Exit(code)
}

// pair builds client and server namespaces joined by a link, and registers
// (first, so it runs last) a check that both namespaces are gone after
// cleanup.
func pair(t *testing.T) *Link {
	t.Helper()
	RequireRoot(t)
	var names []string
	t.Cleanup(func() { assertNoNamespaces(t, names...) })
	client, server := New(t), New(t)
	names = append(names, client.Name, server.Name)
	return Connect(t, client, server)
}

func listNamespaces(t testing.TB) []string {
	t.Helper()
	ip, err := lookTool("ip")
	if err != nil {
		t.Fatal(err)
	}
	out, err := runIP(ip, "netns", "list")
	if err != nil {
		t.Fatalf("ip netns list: %v\n%s", err, out)
	}
	var names []string
	for line := range strings.Lines(out) {
		// "NAME (id: 3)" or "NAME"
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}

// assertNoNamespaces checks only the given names: other test binaries may
// own moat-t- namespaces at the same moment.
func assertNoNamespaces(t testing.TB, names ...string) {
	t.Helper()
	if len(names) == 0 {
		return
	}
	live := listNamespaces(t)
	for _, name := range names {
		if slices.Contains(live, name) {
			t.Errorf("namespace %s still exists after cleanup", name)
		}
	}
}

func TestCheckTestAddr(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		addr string
		ok   bool
	}{
		{"10.210.0.1", true},
		{"10.210.255.254", true},
		{"fd00:210::1", true},
		{"fd00:210:ffff::2", true},
		{"127.0.0.1", true},
		{"::1", true},
		{"::ffff:10.210.3.4", true},
		{"10.211.0.1", false},
		{"10.0.0.1", false},
		{"192.168.1.1", false},
		{"8.8.8.8", false},
		{"fd00:211::1", false},
		{"2001:db8::1", false},
		{"fe80::1", false},
	} {
		err := checkTestAddr(netip.MustParseAddr(tc.addr))
		if (err == nil) != tc.ok {
			t.Errorf("checkTestAddr(%s) = %v, want ok=%v", tc.addr, err, tc.ok)
		}
	}
}

func TestConnectAddresses(t *testing.T) {
	t.Parallel()
	l := pair(t)
	if len(l.AIf) > 15 || len(l.BIf) > 15 {
		t.Errorf("interface names %q %q longer than IFNAMSIZ-1", l.AIf, l.BIf)
	}
	for _, a := range []netip.Addr{l.A4, l.B4, l.A6, l.B6} {
		if err := checkTestAddr(a); err != nil {
			t.Error(err)
		}
	}
	if !l.Prefix4.Contains(l.A4) || !l.Prefix4.Contains(l.B4) || !l.Prefix6.Contains(l.A6) || !l.Prefix6.Contains(l.B6) {
		t.Errorf("addresses %v %v %v %v outside %v %v", l.A4, l.B4, l.A6, l.B6, l.Prefix4, l.Prefix6)
	}
	out := l.A.IP(t, "-6", "addr", "show", "dev", l.AIf)
	if !strings.Contains(out, l.A6.String()+"/64") || strings.Contains(out, "tentative") {
		t.Errorf("v6 address of %s not ready:\n%s", l.AIf, out)
	}
	// Do really runs inside the namespace: its interface list is the
	// namespace's, not the host's.
	var ifnames []string
	if err := l.B.Do(func() error {
		ifs, err := net.Interfaces()
		for _, i := range ifs {
			ifnames = append(ifnames, i.Name)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(ifnames)
	if want := []string{"lo", l.BIf}; !slices.Equal(ifnames, want) {
		t.Errorf("interfaces in %s = %v, want %v", l.B, ifnames, want)
	}
}

func TestTCP(t *testing.T) {
	t.Parallel()
	l := pair(t)
	client, server := l.A, l.B
	for _, tc := range []struct {
		name     string
		src, dst netip.Addr
	}{
		{"v4", l.A4, l.B4},
		{"v6", l.A6, l.B6},
		{"v4/any-source", netip.Addr{}, l.B4},
		{"v6/any-source", netip.Addr{}, l.B6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			open := server.ListenTCP(t, netip.AddrPortFrom(tc.dst, 0))
			if open.Addr() != tc.dst {
				t.Errorf("listener bound to %v, want %v", open, tc.dst)
			}
			if got := client.DialTCP(t, tc.src, open, okWait); got != Connected {
				t.Errorf("dial listener %v: %v, want Connected", open, got)
			}
			closed := netip.AddrPortFrom(tc.dst, open.Port()+1)
			if got := client.DialTCP(t, tc.src, closed, okWait); got != Refused {
				t.Errorf("dial closed port %v: %v, want Refused", closed, got)
			}
		})
	}
}

func TestTCPDroppedAndRejected(t *testing.T) {
	t.Parallel()
	RequireCommands(t, "nft")
	l := pair(t)
	client, server := l.A, l.B
	const dropPort, rejectPort, openPort = 2201, 2202, 2203
	for _, a := range []netip.Addr{l.B4, l.B6} {
		server.ListenTCP(t, netip.AddrPortFrom(a, dropPort))
		server.ListenTCP(t, netip.AddrPortFrom(a, rejectPort))
		server.ListenTCP(t, netip.AddrPortFrom(a, openPort))
	}
	server.Nft(t, fmt.Sprintf(`
table inet t {
	chain in {
		type filter hook input priority 0; policy accept;
		tcp dport %d drop
		tcp dport %d reject with icmpx admin-prohibited
	}
}`, dropPort, rejectPort))

	for _, dst := range []netip.Addr{l.B4, l.B6} {
		if got := client.DialTCP(t, netip.Addr{}, netip.AddrPortFrom(dst, dropPort), dropWait); got != TimedOut {
			t.Errorf("dial dropped port on %v: %v, want TimedOut", dst, got)
		}
		// On Linux 6.18 an IPv6 connect learns of admin-prohibited only
		// from the second SYN, a second later (see Unreachable): okWait
		// covers that.
		if got := client.DialTCP(t, netip.Addr{}, netip.AddrPortFrom(dst, rejectPort), okWait); got != Unreachable {
			t.Errorf("dial rejected port on %v: %v, want Unreachable", dst, got)
		}
		if got := client.DialTCP(t, netip.Addr{}, netip.AddrPortFrom(dst, openPort), okWait); got != Connected {
			t.Errorf("dial open port on %v: %v, want Connected", dst, got)
		}
	}
}

func TestUDP(t *testing.T) {
	t.Parallel()
	l := pair(t)
	client, server := l.A, l.B
	for _, dst := range []netip.Addr{l.B4, l.B6} {
		echo := server.ListenUDPEcho(t, netip.AddrPortFrom(dst, 0))
		answered, unreach := client.UDPEcho(t, netip.Addr{}, echo, okWait)
		if !answered || unreach {
			t.Errorf("udp echo %v: answered=%v icmpUnreachable=%v, want answered", echo, answered, unreach)
		}
		closed := netip.AddrPortFrom(dst, echo.Port()+1)
		answered, unreach = client.UDPEcho(t, netip.Addr{}, closed, okWait)
		if answered || !unreach {
			t.Errorf("udp to closed %v: answered=%v icmpUnreachable=%v, want icmpUnreachable", closed, answered, unreach)
		}
	}
}

func TestUDPDropped(t *testing.T) {
	t.Parallel()
	RequireCommands(t, "nft")
	l := pair(t)
	echo := l.B.ListenUDPEcho(t, netip.AddrPortFrom(l.B6, 0))
	l.B.Nft(t, fmt.Sprintf("table inet t { chain in { type filter hook input priority 0; udp dport %d drop; }; }", echo.Port()))
	answered, unreach := l.A.UDPEcho(t, netip.Addr{}, echo, dropWait)
	if answered || unreach {
		t.Errorf("udp to dropped %v: answered=%v icmpUnreachable=%v, want silence", echo, answered, unreach)
	}
}

// A second client address in the same /24 and /64, banned by prefix while
// the first still gets through: the shape of moat's prefix-ban tests.
func TestAddAddr(t *testing.T) {
	t.Parallel()
	RequireCommands(t, "nft")
	l := pair(t)
	client, server := l.A, l.B
	extra4, extra6 := l.Host4(3), l.Host6(3)
	client.AddAddr(t, l.AIf, netip.PrefixFrom(extra4, 24))
	client.AddAddr(t, l.AIf, netip.PrefixFrom(extra6, 64))
	for _, dst := range []netip.Addr{l.B4, l.B6} {
		server.ListenTCP(t, netip.AddrPortFrom(dst, 22))
	}
	server.Nft(t, fmt.Sprintf(`
table inet t {
	chain in {
		type filter hook input priority 0; policy accept;
		ip saddr %s/32 drop
		ip6 saddr %s/128 drop
	}
}`, extra4, extra6))
	for _, tc := range []struct {
		src, dst netip.Addr
		want     Result
	}{
		{l.A4, l.B4, Connected},
		{extra4, l.B4, TimedOut},
		{l.A6, l.B6, Connected},
		{extra6, l.B6, TimedOut},
	} {
		wait := okWait
		if tc.want == TimedOut {
			wait = dropWait
		}
		if got := client.DialTCP(t, tc.src, netip.AddrPortFrom(tc.dst, 22), wait); got != tc.want {
			t.Errorf("dial %v from %v: %v, want %v", tc.dst, tc.src, got, tc.want)
		}
	}
	if err := checkTestAddr(netip.MustParseAddr("192.0.2.1")); err == nil {
		t.Error("AddAddr guard would accept 192.0.2.1")
	}
}

func TestProc(t *testing.T) {
	t.Parallel()
	l := pair(t)
	server := l.B

	// The process sees the namespace's interfaces.
	p := server.Start(t, "sh", "-c", "cat /proc/net/dev; echo to-stderr >&2; exec sleep 60")
	Eventually(t, okWait, "process output", func() bool { return strings.Contains(p.Output(), "to-stderr") })
	if out := p.Output(); !strings.Contains(out, l.BIf) || strings.Contains(out, l.AIf) {
		t.Errorf("process in %s sees the wrong interfaces:\n%s", server, out)
	}
	if err := p.Wait(50 * time.Millisecond); err == nil || p.Exited() {
		t.Fatalf("sleep 60 exited early: %v", err)
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(okWait); err == nil || !p.Exited() {
		t.Errorf("after SIGTERM: Wait = %v, Exited = %v; want an exit error", err, p.Exited())
	}

	q := server.Start(t, "sleep", "60")
	q.Kill9()
	if err := q.Wait(okWait); err == nil {
		t.Error("sleep survived Kill9")
	}
	if ws, ok := q.Cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Errorf("sleep ended with %v, want SIGKILL", q.Cmd.ProcessState)
	}

	ok := server.Start(t, "true")
	if err := ok.Wait(okWait); err != nil {
		t.Errorf("true: %v", err)
	}
}

// Cleanup stops processes, closes listeners and deletes namespaces, even
// when the subtest fails.
func TestCleanup(t *testing.T) {
	t.Parallel()
	RequireRoot(t)
	var names []string
	var pids []int
	for _, fail := range []bool{false, true} {
		inner := &recordingTB{TB: t}
		func() {
			defer inner.runCleanups()
			a, b := New(inner), New(inner)
			names = append(names, a.Name, b.Name)
			l := Connect(inner, a, b)
			b.ListenTCP(inner, netip.AddrPortFrom(l.B4, 22))
			b.ListenUDPEcho(inner, netip.AddrPortFrom(l.B6, 53))
			pids = append(pids, b.Start(inner, "sleep", "60").Pid())
			if fail {
				inner.failed = true
			}
		}()
	}
	assertNoNamespaces(t, names...)
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("pid %d still running after cleanup", pid)
		}
	}
}

// recordingTB runs its cleanups when told, so a test can look at the
// world after a "subtest" has cleaned up, and can pretend to have failed.
type recordingTB struct {
	testing.TB
	cleanups []func()
	failed   bool
}

func (r *recordingTB) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }
func (r *recordingTB) Failed() bool     { return r.failed || r.TB.Failed() }

func (r *recordingTB) runCleanups() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

func TestDoPanicAndGoexit(t *testing.T) {
	t.Parallel()
	n := New(t)
	if err := n.Do(func() error { runtime.Goexit(); return nil }); err == nil {
		t.Error("Do after Goexit in fn: nil error")
	}
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v, want boom", r)
			}
		}()
		_ = n.Do(func() error { panic("boom") })
		t.Error("Do did not re-raise the panic")
	}()
	sentinel := errors.New("sentinel")
	if err := n.Do(func() error { return sentinel }); !errors.Is(err, sentinel) {
		t.Errorf("Do = %v, want sentinel", err)
	}
}

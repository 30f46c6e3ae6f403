package e2e

// The reference guide's iptables script, complete: fragments dropped
// before reassembly, egress filtering, per-port REJECT, interfaces that
// never fail open, and a flush of every ban.

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moat-fw/moat/internal/netnstest"
)

// fragmentedEcho sends one UDP datagram to dst in raw fragments from the
// client and says whether the server's echo came back.
func (h *host) fragmentedEcho(src netip.Addr, dst netip.AddrPort, id uint16) bool {
	h.t.Helper()
	var conn *net.UDPConn
	if err := h.client.Do(func() (err error) {
		conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)))
		return err
	}); err != nil {
		h.t.Fatal(err)
	}
	defer conn.Close()
	sport := conn.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	payload := bytes.Repeat([]byte("moat fragment "), 20) // 280 bytes: three fragments of 128
	msg := netnstest.UDP(src, dst.Addr(), sport, dst.Port(), payload)
	var frags [][]byte
	if src.Is4() {
		frags = netnstest.Fragments4(src, dst.Addr(), unix.IPPROTO_UDP, id, msg, 128)
	} else {
		frags = netnstest.Fragments6(src, dst.Addr(), unix.IPPROTO_UDP, uint32(id), msg, 128)
	}
	h.client.SendRaw(h.t, h.link.BIf, frags...)
	_ = conn.SetReadDeadline(time.Now().Add(quick))
	buf := make([]byte, 1024)
	n, err := conn.Read(buf)
	if err != nil {
		if ne := (net.Error)(nil); errors.As(err, &ne) && ne.Timeout() {
			return false
		}
		h.t.Fatal(err)
	}
	if !bytes.Equal(buf[:n], payload) {
		h.t.Fatalf("the echo of a fragmented datagram came back as %d other bytes", n)
	}
	return true
}

// Fragments are dropped and counted before conntrack reassembles them:
// a fragmented datagram to an open port that the server echoes without
// moat gets nothing with it, and each fragment counts.
func TestFragmentsDroppedBeforeReassembly(t *testing.T) {
	const port = 5353
	h := newHost(t, fmt.Sprintf("open = [\"udp/%d\"]", port))
	for _, a := range []netip.Addr{h.link.A4, h.link.A6} {
		h.server.ListenUDPEcho(t, netip.AddrPortFrom(a, port))
	}
	// Without moat, but with conntrack reassembling (as moat's ct rules
	// make it), the fragments are good: the echo comes back.
	h.server.Nft(t, "table inet other {\n\tchain input {\n\t\ttype filter hook input priority 10; ct state new accept\n\t}\n}\n")
	for i, src := range []netip.Addr{h.link.B4, h.link.B6} {
		dst := netip.AddrPortFrom(h.link.A4, port)
		if src.Is6() {
			dst = netip.AddrPortFrom(h.link.A6, port)
		}
		if !h.fragmentedEcho(src, dst, uint16(100+i)) {
			t.Fatalf("without moat, a fragmented datagram from %s got no echo: the test's fragments are wrong", src)
		}
	}
	h.start()
	for i, src := range []netip.Addr{h.link.B4, h.link.B6} {
		dst := netip.AddrPortFrom(h.link.A4, port)
		if src.Is6() {
			dst = netip.AddrPortFrom(h.link.A6, port)
		}
		if h.fragmentedEcho(src, dst, uint16(200+i)) {
			t.Fatalf("with moat, a fragmented datagram from %s was reassembled and answered", src)
		}
		if ans, _ := h.client.UDPEcho(t, src, dst, patient); !ans {
			t.Fatalf("a whole datagram from %s to the open port got no echo", src)
		}
	}
	if got := h.status(t).Counters["fragment"].Packets; got != 6 {
		t.Fatalf("fragment counter = %d, want 6 (3 IPv4 and 3 IPv6 fragments)", got)
	}
}

// dialFromServer connects from the server (the host moat guards) to dst:
// true if it connected. A drop in the output hook fails the connect with
// EPERM or a timeout; either is "blocked".
func (h *host) dialFromServer(dst netip.AddrPort) bool {
	h.t.Helper()
	var ok bool
	err := h.server.Do(func() error {
		c, err := (&net.Dialer{Timeout: quick}).Dial("tcp", dst.String())
		if err == nil {
			ok = true
			return c.Close()
		}
		var ne net.Error
		if errors.Is(err, unix.EPERM) || errors.As(err, &ne) && ne.Timeout() || errors.Is(err, unix.ECONNREFUSED) {
			return nil
		}
		return err
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return ok
}

// udpReaches sends a datagram from the server to dst, where the client
// listens, and says whether it arrived.
func (h *host) udpReaches(dst netip.AddrPort) bool {
	h.t.Helper()
	var conn *net.UDPConn
	if err := h.client.Do(func() (err error) {
		conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(dst))
		return err
	}); err != nil {
		h.t.Fatal(err)
	}
	defer conn.Close()
	if err := h.server.Do(func() error {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
		if err != nil {
			return err
		}
		defer c.Close()
		_, _ = c.Write([]byte("moat egress")) // EPERM when the output hook drops it
		return nil
	}); err != nil {
		h.t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(quick))
	_, err := conn.Read(make([]byte, 64))
	return err == nil
}

// With output = "deny" the host reaches what output_allow lists and
// nothing else, replies to what it serves still leave, and a banned
// address is unreachable from the host whatever the output policy.
func TestOutputPolicyAndBansOnOutput(t *testing.T) {
	t.Run("deny", func(t *testing.T) {
		h := newHost(t, "")
		h.writeConfig(fmt.Sprintf("open = [\"tcp/%d\"]\noutput = \"deny\"\noutput_allow = [\"tcp/7001@%s\", \"tcp/7001@%s\"]",
			openPort, h.link.B4, netip.PrefixFrom(h.link.B6, 64).Masked()))
		for _, a := range []netip.Addr{h.link.B4, h.link.B6} {
			h.client.ListenTCP(t, netip.AddrPortFrom(a, 7001))
			h.client.ListenTCP(t, netip.AddrPortFrom(a, 7002))
		}
		h.start()
		for _, a := range []netip.Addr{h.link.B4, h.link.B6} {
			if !h.dialFromServer(netip.AddrPortFrom(a, 7001)) {
				t.Fatalf("output_allow lists tcp/7001 to %s, but the host could not connect", a)
			}
			if h.dialFromServer(netip.AddrPortFrom(a, 7002)) {
				t.Fatalf("tcp/7002 is not in output_allow, but the host connected to %s", a)
			}
			h.expect(a, openPort, netnstest.Connected) // replies leave
		}
		if got := h.status(t).Counters["output"].Packets; got == 0 {
			t.Fatal("the output counter did not count the blocked connections")
		}
		// --force: the host's own connection made the client a protected peer.
		h.moat("ban", "add", h.link.B4.String(), "--force")
		if h.dialFromServer(netip.AddrPortFrom(h.link.B4, 7001)) {
			t.Fatal("the host connected to a banned address")
		}
	})
	t.Run("accept", func(t *testing.T) {
		h := newHost(t, fmt.Sprintf("open = [\"tcp/%d\"]", openPort))
		h.start()
		dst := netip.AddrPortFrom(h.link.B4, 7003)
		if !h.udpReaches(dst) {
			t.Fatal("before the ban, UDP from the host did not reach the client")
		}
		h.moat("ban", "add", h.link.B4.String(), "--force")
		if h.udpReaches(dst) {
			t.Fatal("UDP from the host reached a banned address")
		}
		if h.dialFromServer(netip.AddrPortFrom(h.link.B4, openPort)) {
			t.Fatal("the host connected to a banned address")
		}
	})
}

// The reject list answers like a host with nothing listening, in drop
// mode, on IPv4 and IPv6, even with output = "deny" (the answers are
// related to the probe).
func TestRejectListAnswersInDropMode(t *testing.T) {
	h := newHost(t, fmt.Sprintf("open = [\"tcp/%d\"]\nclosed_response = \"drop\"\noutput = \"deny\"\nreject = [\"tcp/%d\", \"udp/5300-5301\"]", openPort, closedPort))
	for _, a := range []netip.Addr{h.link.A4, h.link.A6} {
		h.server.ListenUDPEcho(t, netip.AddrPortFrom(a, 5300))
		h.server.ListenUDPEcho(t, netip.AddrPortFrom(a, 5400))
		h.server.ListenTCP(t, netip.AddrPortFrom(a, closedPort+1))
	}
	h.start()
	for _, src := range []netip.Addr{h.link.B4, h.link.B6} {
		dst := h.link.A4
		if src.Is6() {
			dst = h.link.A6
		}
		h.expect(src, closedPort, netnstest.Refused)
		h.expect(src, closedPort+1, netnstest.TimedOut) // other closed ports stay silent
		if ans, unreach := h.client.UDPEcho(t, src, netip.AddrPortFrom(dst, 5300), patient); ans || !unreach {
			t.Fatalf("udp/5300 from %s: answered=%v unreachable=%v, want port unreachable", src, ans, unreach)
		}
		if ans, unreach := h.client.UDPEcho(t, src, netip.AddrPortFrom(dst, 5400), quick); ans || unreach {
			t.Fatalf("udp/5400 from %s: answered=%v unreachable=%v, want silence", src, ans, unreach)
		}
	}
	if got := h.status(t).Counters["rejected"].Packets; got < 4 {
		t.Fatalf("rejected counter = %d, want at least 4", got)
	}
}

// An interface not in interfaces stays default deny (M8): a second link
// reaches the open port and nothing else, and bans hold there; an
// interface in trusted_interfaces is accepted; a misspelt name is refused.
func TestInterfacesNeverFailOpen(t *testing.T) {
	h := newHost(t, "")
	other := netnstest.New(t)
	l2 := netnstest.Connect(t, h.server, other)
	for _, a := range []netip.Addr{l2.A4, l2.A6} {
		h.server.ListenTCP(t, netip.AddrPortFrom(a, openPort))
		h.server.ListenTCP(t, netip.AddrPortFrom(a, closedPort))
	}
	dial := func(src, dst netip.Addr, port uint16, timeout time.Duration) netnstest.Result {
		return other.DialTCP(t, src, netip.AddrPortFrom(dst, port), timeout)
	}
	h.writeConfig(fmt.Sprintf("open = [\"tcp/%d\"]\ninterfaces = [%q]", openPort, h.link.AIf))
	h.start()
	for _, p := range [][2]netip.Addr{{l2.B4, l2.A4}, {l2.B6, l2.A6}} {
		if got := dial(p[0], p[1], closedPort, quick); got != netnstest.TimedOut {
			t.Fatalf("closed port through the unlisted link from %s: %s, want TimedOut", p[0], got)
		}
		if got := dial(p[0], p[1], openPort, patient); got != netnstest.Connected {
			t.Fatalf("open port through the unlisted link from %s: %s, want Connected", p[0], got)
		}
	}
	h.expect(h.link.B4, closedPort, netnstest.TimedOut)
	h.moat("ban", "add", l2.B4.String())
	if got := dial(l2.B4, l2.A4, openPort, quick); got != netnstest.TimedOut {
		t.Fatalf("a banned source through the unlisted link: %s, want TimedOut", got)
	}
	h.moat("ban", "del", l2.B4.String())

	// Trusted: accepted, closed ports included.
	h.writeConfig(fmt.Sprintf("open = [\"tcp/%d\"]\ninterfaces = [%q]\ntrusted_interfaces = [%q]", openPort, h.link.AIf, l2.AIf))
	h.moat("firewall", "apply")
	if got := dial(l2.B4, l2.A4, closedPort, patient); got != netnstest.Connected {
		t.Fatalf("closed port through a trusted link: %s, want Connected", got)
	}

	// A typo is refused by config check and by apply, with key and line;
	// the same name marked optional passes with a warning.
	h.writeConfig(fmt.Sprintf("open = [\"tcp/%d\"]\ninterfaces = [%q]", openPort, h.link.AIf+"x"))
	for _, args := range [][]string{{"config", "check"}, {"firewall", "apply"}} {
		out, err := h.moatErr(args...)
		if err == nil || !strings.Contains(out, "firewall.interfaces[0]") || !strings.Contains(out, "line ") {
			t.Fatalf("moat %s with a misspelt interface: err=%v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// A start is not refused (at boot an interface may come later, and a
	// moat that does not start leaves the host open): it warns, and the
	// misspelt interface's real one stays default deny.
	h.restart()
	if !strings.Contains(h.proc.Output(), "starting anyway") {
		t.Fatalf("no warning about the misspelt interface:\n%s", h.proc.Output())
	}
	h.expect(h.link.B4, closedPort, netnstest.TimedOut)
	h.expect(h.link.B4, openPort, netnstest.Connected)
	h.writeConfig(fmt.Sprintf("open = [\"tcp/%d\"]\ninterfaces = [%q, %q]", openPort, h.link.AIf, h.link.AIf+"x?"))
	if out, err := h.moatErr("config", "check"); err != nil || !strings.Contains(out, "warning") {
		t.Fatalf("an optional absent interface should pass with a warning: err=%v\n%s", err, out)
	}
}

// `moat ban flush` says what it would lift and changes nothing; with
// --yes it lifts every ban and keeps the allow list, through the daemon
// and, with no daemon running, from the store and the kernel directly.
func TestBanFlush(t *testing.T) {
	h := newHost(t, fmt.Sprintf("open = [\"tcp/%d\"]", openPort))
	second := h.link.Host4(3)
	h.client.AddAddr(t, h.link.BIf, netip.PrefixFrom(second, 24))
	h.start()
	h.moat("ban", "add", h.link.B4.String())
	h.moat("ban", "add", h.link.B6.String(), "--for", "1h")
	h.moat("allow", "add", second.String())
	out := h.moat("ban", "flush")
	if !strings.Contains(out, "would lift 2 bans") || !strings.Contains(out, h.link.B4.String()) {
		t.Fatalf("ban flush without --yes:\n%s", out)
	}
	h.expect(h.link.B4, openPort, netnstest.TimedOut)
	h.expect(h.link.B6, openPort, netnstest.TimedOut)
	if out := h.moat("ban", "flush", "--yes"); !strings.Contains(out, "lifted 2 bans") {
		t.Fatalf("ban flush --yes:\n%s", out)
	}
	h.expect(h.link.B4, openPort, netnstest.Connected)
	h.expect(h.link.B6, openPort, netnstest.Connected)
	h.expect(second, closedPort, netnstest.Connected) // still allowed
	if st := h.status(t); st.Bans != 0 || st.Allows != 1 {
		t.Fatalf("after flush: %d bans, %d allows", st.Bans, st.Allows)
	}

	// Without a daemon: the ban stays in the kernel (on_exit = "keep")
	// and in the store until flushed, and does not come back at start.
	h.moat("ban", "add", h.link.B4.String())
	h.proc.Signal(syscall.SIGTERM)
	if err := h.proc.Wait(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	h.expect(h.link.B4, openPort, netnstest.TimedOut)
	if out := h.moat("ban", "flush"); !strings.Contains(out, "would lift 1 bans") {
		t.Fatalf("standalone ban flush without --yes:\n%s", out)
	}
	h.expect(h.link.B4, openPort, netnstest.TimedOut)
	if out := h.moat("ban", "flush", "--yes"); !strings.Contains(out, "lifted 1 bans") {
		t.Fatalf("standalone ban flush --yes:\n%s", out)
	}
	h.expect(h.link.B4, openPort, netnstest.Connected)
	h.start()
	h.expect(h.link.B4, openPort, netnstest.Connected)
	h.expect(second, closedPort, netnstest.Connected)
}

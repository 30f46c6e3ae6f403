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

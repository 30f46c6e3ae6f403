package e2e

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/netnstest"
)

// With the defaults, nmap -sS is banned within its first burst of probes,
// each handed over by the kernel on its own, while clients that only look
// like it are not: one retrying a closed port (three connects, each with
// the kernel's SYN retransmits), a monitor probing a few closed ports
// round after round, an SSH client reconnecting.
func TestScanGuardSparesLegitimateClients(t *testing.T) {
	netnstest.RequireCommands(t, "nmap")
	h := newHost(t, fmt.Sprintf("open = [\"tcp/%d\"]", openPort))
	retrier, monitor, ssh := h.link.Host4(3), h.link.Host4(4), h.link.Host4(5)
	for _, a := range []netip.Addr{retrier, monitor, ssh} {
		h.client.AddAddr(t, h.link.BIf, netip.PrefixFrom(a, 24))
	}
	h.start()
	dst := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(h.link.A4, port) }
	// An application retrying a dead service: three attempts, each long
	// enough for the kernel's retransmits at 1 s and 3 s.
	for range 3 {
		if got := h.client.DialTCP(t, retrier, dst(closedPort), 3500*time.Millisecond); got != netnstest.TimedOut {
			t.Fatalf("retrier: %s", got)
		}
	}
	// A monitor: the open port and three closed ones, three rounds.
	for range 3 {
		for _, port := range []uint16{openPort, closedPort, closedPort + 1, closedPort + 2} {
			h.client.DialTCP(t, monitor, dst(port), 300*time.Millisecond)
		}
	}
	// An SSH client reconnecting.
	for range 10 {
		h.expect(ssh, openPort, netnstest.Connected)
	}
	before := h.status(t).Intake
	h.nmap(t, "-sS", "-p", "1-1000", "-e", h.link.BIf, "-S", h.link.B4.String(), h.link.A4.String())
	netnstest.Eventually(t, 10*time.Second, "the SYN scanner to be banned", func() bool {
		return hasBan(h.bans(t), h.link.B4.String(), "scan")
	})
	for _, a := range []netip.Addr{retrier, monitor, ssh} {
		if hasBan(h.bans(t), a.String(), "scan") {
			t.Fatalf("%s was banned: %+v", a, h.bans(t))
		}
		h.expect(a, openPort, netnstest.Connected)
	}
	st := h.status(t)
	for _, s := range st.Scan.Report.Sources {
		if s.Addr != h.link.B4 && s.Level >= 3 {
			t.Fatalf("a client reached level %d: %+v", s.Level, s)
		}
	}
	// nmap's probes are crafted SYNs: the kernel sent each at once, in a
	// datagram of its own, rather than batching the burst, until the scan
	// hold took the source (at its fourth); the held ones come in the
	// kernel's batches, since nothing waits on them.
	in := st.Intake
	got, dgrams := in.Received-before.Received, in.Datagrams-before.Datagrams
	if got == 0 || dgrams < min(got, 4) || got > 4 && dgrams >= got {
		t.Fatalf("the scan's logged packets came in %d datagrams for %d packets; want the first 4 one each, the held ones batched", dgrams, got)
	}
}

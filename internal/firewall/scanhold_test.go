package firewall_test

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/netnstest"
)

var packetsRe = regexp.MustCompile(`packets (\d+)`)

// TestScanHoldStopsCraftedSYNs sends real packets at the kernel's scan hold,
// over IPv4 and IPv6: a burst of crafted SYNs (no options, as masscan
// sends; nmap's carry MSS alone) to closed ports puts the source on hold,
// after which its crafted SYN to the open port is dropped, not accepted;
// its operating system's own connection still gets in, and so do its
// crafted knocks, which open the door. A [scan] ignore source and a source
// whose crafted SYNs come at a client's retransmission pace are never
// held. What reached the open port is counted by a probe table that runs
// after moat's. Deleting the hold's drop, its meter, the knock ports'
// exemption or the ignore set's match fails this test.
func TestScanHoldStopsCraftedSYNs(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommands(t, "nft")
	server, client := netnstest.New(t), netnstest.New(t)
	link := netnstest.Connect(t, server, client)
	ignored, slow := link.Host4(3), link.Host4(4)
	for _, a := range []netip.Addr{ignored, slow} {
		client.AddAddr(t, link.BIf, netip.PrefixFrom(a, 24))
	}
	for _, a := range []netip.Addr{link.A4, link.A6} {
		server.ListenTCP(t, netip.AddrPortFrom(a, 22))
		server.ListenTCP(t, netip.AddrPortFrom(a, 2222))
	}
	a := firewall.NewApplier(nftables.WithNetNSFd(server.Fd()))
	fw := config.Firewall{ClosedResponse: "drop", LogGroup: 7, LogRate: 1000, LogBurst: 1000,
		Open:     []config.PortSpec{{Proto: config.TCP, From: 22, To: 22}},
		ScanHold: time.Minute, ScanHoldIgnore: []netip.Prefix{netip.PrefixFrom(ignored, 32)}}
	door := config.Door{Name: "ssh", SeqTimeout: 5 * time.Second, TCPFlags: config.TCPFlags{Set: 0x02, Clear: 0x10},
		Sequence: []config.PortSpec{{Proto: config.TCP, From: 7000, To: 7000}, {Proto: config.TCP, From: 8000, To: 8000}},
		Open:     []config.PortSpec{{Proto: config.TCP, From: 2222, To: 2222}}, OpenFor: time.Minute, MaxPending: 1024}
	if err := a.Apply(firewall.Build(fw, nil, door), nil, nil); err != nil {
		t.Fatal(err)
	}
	// SYNs that got past moat's input chain (priority filter) to port 22.
	server.Nft(t, `table inet probe {
	counter syn22 {}
	chain in {
		type filter hook input priority 10; policy accept;
		tcp dport 22 tcp flags & (syn|ack) == syn counter name syn22
	}
}`)
	reached := func() uint64 {
		t.Helper()
		out := server.Run(t, "nft", "list", "counter", "inet", "probe", "syn22")
		m := packetsRe.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no packet count in:\n%s", out)
		}
		n, _ := strconv.ParseUint(m[1], 10, 64)
		return n
	}
	sport := uint16(40000)
	crafted := func(src, dst netip.Addr, dports ...uint16) [][]byte {
		var pkts [][]byte
		for _, p := range dports {
			sport++
			pkts = append(pkts, netnstest.IP(src, dst, 6, sport, netnstest.TCP(src, dst, sport, p, 0x02, uint32(sport))))
		}
		return pkts
	}
	// The crafted SYN to port 22 reaches it (want true) or not.
	probe22 := func(src, dst netip.Addr, want bool) {
		t.Helper()
		before := reached()
		client.SendRaw(t, link.BIf, crafted(src, dst, 22)...)
		time.Sleep(50 * time.Millisecond)
		if got := reached() > before; got != want {
			t.Fatalf("a crafted SYN from %s to port 22 reached it: %v, want %v", src, got, want)
		}
	}
	dial := func(src, dst netip.Addr, port uint16, want netnstest.Result) {
		t.Helper()
		timeout := 2 * time.Second
		if want == netnstest.TimedOut {
			timeout = 400 * time.Millisecond
		}
		if got := client.DialTCP(t, src, netip.AddrPortFrom(dst, port), timeout); got != want {
			t.Fatalf("%s -> [%s]:%d: %s, want %s", src, dst, port, got, want)
		}
	}
	closed := []uint16{1001, 1002, 1003, 1004, 1005, 1006}
	for _, fam := range []struct{ src, dst netip.Addr }{{link.B4, link.A4}, {link.B6, link.A6}} {
		t.Run(fmt.Sprint(fam.src), func(t *testing.T) {
			probe22(fam.src, fam.dst, true)
			client.SendRaw(t, link.BIf, crafted(fam.src, fam.dst, closed...)...)
			probe22(fam.src, fam.dst, false)
			dial(fam.src, fam.dst, 22, netnstest.Connected)
			dial(fam.src, fam.dst, 2222, netnstest.TimedOut)
			client.SendRaw(t, link.BIf, crafted(fam.src, fam.dst, 7000, 8000)...)
			dial(fam.src, fam.dst, 2222, netnstest.Connected)
		})
	}
	if counter(t, a, firewall.CounterScanHold) < 2 {
		t.Fatalf("the scan hold counter counted %d packets, want the 2 held probes at least", counter(t, a, firewall.CounterScanHold))
	}
	// Never held: a [scan] ignore source, and one at a retransmission's pace.
	client.SendRaw(t, link.BIf, crafted(ignored, link.A4, closed...)...)
	probe22(ignored, link.A4, true)
	for _, p := range closed {
		client.SendRaw(t, link.BIf, crafted(slow, link.A4, p)...)
		time.Sleep(250 * time.Millisecond)
	}
	probe22(slow, link.A4, true)
}

package firewall_test

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/netnstest"
)

// A port-limited ban drops its address on the banned ports only, over
// IPv4 and IPv6: banned on 80, the client is dropped on 80 and still gets
// in on 22, and another address still gets in on 80. Deleting the element
// lets it in again. Deleting the guard's port ban rule fails this test.
func TestPortBanDropsOnlyItsPorts(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommands(t, "nft")
	server, client := netnstest.New(t), netnstest.New(t)
	link := netnstest.Connect(t, server, client)
	other4 := link.Host4(3)
	client.AddAddr(t, link.BIf, netip.PrefixFrom(other4, 24))
	for _, a := range []netip.Addr{link.A4, link.A6} {
		server.ListenTCP(t, netip.AddrPortFrom(a, 22))
		server.ListenTCP(t, netip.AddrPortFrom(a, 80))
	}
	a := firewall.NewApplier(nftables.WithNetNSFd(server.Fd()))
	fw := config.Firewall{ClosedResponse: "drop", LogGroup: 7, LogRate: 1, LogBurst: 1,
		Open: []config.PortSpec{{Proto: config.TCP, From: 22, To: 22}, {Proto: config.TCP, From: 80, To: 80}}}
	if err := a.Apply(firewall.Build(fw, nil), nil, nil); err != nil {
		t.Fatal(err)
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
	bans := []firewall.PortBan{
		{Addr: link.B4, Proto: 6, Port: 80, Timeout: time.Minute},
		{Addr: link.B6, Proto: 6, Port: 80, Timeout: time.Minute},
	}
	if err := a.UpdatePortBans(nil, bans); err != nil {
		t.Fatal(err)
	}
	dial(link.B4, link.A4, 80, netnstest.TimedOut)
	dial(link.B6, link.A6, 80, netnstest.TimedOut)
	dial(link.B4, link.A4, 22, netnstest.Connected)
	dial(link.B6, link.A6, 22, netnstest.Connected)
	dial(other4, link.A4, 80, netnstest.Connected)
	if out := server.Run(t, "nft", "list", "counter", "inet", "moat", firewall.CounterPortBan); strings.Contains(out, "packets 0 ") {
		t.Fatalf("the port ban counter counted nothing:\n%s", out)
	}
	got, err := a.PortBans()
	if err != nil || len(got) != 2 || got[0].Addr != link.B4 || got[0].Port != 80 || got[0].Left <= 0 || got[1].Addr != link.B6 {
		t.Fatalf("read back %+v, %v", got, err)
	}
	if err := a.UpdatePortBans(bans[:1], nil); err != nil {
		t.Fatal(err)
	}
	dial(link.B4, link.A4, 80, netnstest.Connected)
	dial(link.B6, link.A6, 80, netnstest.TimedOut)
}

package firewall_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/netnstest"
)

// A fleet's replay announces how many bans are coming: the sets are
// installed again once, with room for them, and then take them all.
func TestExpectMakesRoomForAReplay(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommands(t, "nft")
	ns := netnstest.New(t)
	a := firewall.NewApplier(nftables.WithNetNSFd(ns.Fd()))
	defer a.Close()
	rs := firewall.Build(config.Firewall{ClosedResponse: "drop", LogRate: 1, LogBurst: 1}, nil)
	if err := a.Apply(rs, []firewall.Element{{Prefix: netip.MustParsePrefix("10.210.3.1/32")}}, nil); err != nil {
		t.Fatal(err)
	}
	if a.Expect(100) || a.Crowded() {
		t.Fatal("100 more bans crowd a fresh table")
	}
	const n = 100_000 // more than a fresh host set holds
	if !a.Expect(n) || !a.Crowded() {
		t.Fatalf("%d more bans do not crowd a fresh table", n)
	}
	if err := a.Apply(rs, []firewall.Element{{Prefix: netip.MustParsePrefix("10.210.3.1/32")}}, nil); err != nil {
		t.Fatal(err)
	}
	if a.Crowded() {
		t.Fatal("still crowded after the install that made room")
	}
	els := make([]firewall.Element, n)
	for i := range els {
		els[i] = firewall.Element{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 211, byte(i >> 8), byte(i)}), 32), Timeout: time.Hour}
		if i >= 1<<16 {
			els[i].Prefix = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 212, byte(i >> 8), byte(i)}), 32)
		}
	}
	for i := 0; i < n; i += 25_000 {
		if err := a.Update(firewall.Bans, nil, els[i:i+25_000]); err != nil {
			t.Fatalf("adding bans %d to %d: %v", i, i+25_000, err)
		}
	}
}

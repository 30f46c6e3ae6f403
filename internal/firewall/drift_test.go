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

// Drift sees rules and chains changed outside moat, and nothing of what
// changes by design: set elements, counter values, a door's knock state.
func TestDriftSeesRulesNotElements(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommands(t, "nft")
	ns := netnstest.New(t)
	a := firewall.NewApplier(nftables.WithNetNSFd(ns.Fd()))
	fw := config.Firewall{Open: []config.PortSpec{{Proto: config.TCP, From: 80, To: 80}}, ClosedResponse: "drop",
		Stealth: true, LogGroup: 7, LogRate: 20, LogBurst: 50, Forward: "ban"}
	door := config.Door{Name: "k", Sequence: []config.PortSpec{{Proto: config.TCP, From: 7000, To: 7000}, {Proto: config.UDP, From: 9000, To: 9000}},
		SeqTimeout: 5 * time.Second, Open: []config.PortSpec{{Proto: config.TCP, From: 2222, To: 2222}}, OpenFor: time.Minute, MaxPending: 64}
	if err := a.Apply(firewall.Build(fw, []uint16{22}, door), nil, nil); err != nil {
		t.Fatal(err)
	}
	check := func(step, want string) {
		t.Helper()
		got, err := a.Drift()
		if err != nil {
			t.Fatal(err)
		}
		if (want == "") != (got == "") || !strings.Contains(got, want) {
			t.Fatalf("%s: Drift() = %q, want %q", step, got, want)
		}
	}
	check("right after the install", "")
	if err := a.Update(firewall.Bans, nil, []firewall.Element{{Prefix: netip.MustParsePrefix("10.210.9.0/24"), Timeout: time.Hour}}); err != nil {
		t.Fatal(err)
	}
	ns.Run(t, "nft", "add", "element", "inet", "moat", "grant4", "{ 10.210.9.9 . tcp . 2222 timeout 1m }")
	ns.Run(t, "nft", "reset", "counters", "table", "inet", "moat")
	check("after set elements and counters changed", "")

	ns.Run(t, "nft", "insert", "rule", "inet", "moat", "guard", "tcp", "dport", "31337", "accept")
	check("after an inserted rule", "chain guard: rule 1 [")
	if err := a.Apply(firewall.Build(fw, []uint16{22}, door), nil, nil); err != nil {
		t.Fatal(err)
	}
	check("after a reinstall", "")
	ns.Run(t, "nft", "chain", "inet", "moat", "input", "{ policy accept ; }")
	check("after a policy change", "chain input is now")
	ns.Run(t, "nft", "add", "chain", "inet", "moat", "extra")
	check("after a chain was added", "chain extra was not installed by moat")
	if _, err := a.Remove(); err != nil {
		t.Fatal(err)
	}
	check("after Remove", "")
}

package firewall_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/nftables"

	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/netnstest"
)

// nftCheck runs `nft -c -f -` on script inside ns: nft parses and
// evaluates it against the namespace's kernel without committing.
func nftCheck(t *testing.T, ns *netnstest.NS, what, script string) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns.Name, "nft", "-c", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft -c rejects %s: %v\n%s\n--- script\n%s", what, err, out, script)
	}
}

// TestNftReadsBackWhatMoatWrites round-trips the ruleset through nft's own
// parser: what `moat firewall show` prints and what `nft list table inet
// moat` lists after an install must both load with `nft -f`, so an admin
// who saves the ruleset (`nft list ruleset > /etc/nftables.conf`) can load
// it back. A named object called "log" broke this: log is a keyword.
func TestNftReadsBackWhatMoatWrites(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommands(t, "nft")
	data, err := os.ReadFile("../../examples/moat.toml")
	if err != nil {
		t.Fatal(err)
	}
	example, err := config.Parse(data, "example")
	if err != nil {
		t.Fatal(err)
	}
	def, err := config.Parse(config.Default(), "default")
	if err != nil {
		t.Fatal(err)
	}
	reject := def.Firewall
	reject.ClosedResponse = "reject"
	reject.ScanHold = def.Scan.Hold
	// What the daemon fills in of [spa] (daemon.FirewallFor): the id
	// match and fwknop's length match must round-trip through nft too.
	example.Firewall.SPAPorts, example.Firewall.SPAFwknop = example.SPA.Ports, len(example.SPA.Fwknop) > 0
	example.Firewall.SPAClientIDs = [][8]byte{{1, 2, 3, 4, 5, 6, 7, 8}}
	// And of [scan]: the kernel's scan hold.
	def.Firewall.ScanHold = def.Scan.Hold
	example.Firewall.ScanHold, example.Firewall.ScanHoldIgnore = example.Scan.Hold, example.Scan.Ignore
	for name, c := range map[string]struct {
		fw    config.Firewall
		doors []config.Door
	}{
		"default": {def.Firewall, nil},
		"reject":  {reject, nil},
		"example": {example.Firewall, example.Doors},
	} {
		t.Run(name, func(t *testing.T) {
			ns := netnstest.New(t)
			rs := firewall.Build(c.fw, []uint16{22}, c.doors...)
			nftCheck(t, ns, "the built ruleset", rs.String())
			a := firewall.NewApplier(nftables.WithNetNSFd(ns.Fd()))
			if err := a.Apply(rs, nil, nil); err != nil {
				t.Fatal(err)
			}
			listed := ns.Run(t, "nft", "list", "table", "inet", "moat")
			// Loading it again over the installed table would clash with
			// the objects already there: check it in a fresh namespace.
			nftCheck(t, netnstest.New(t), "nft list table inet moat", listed)
		})
	}
}

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

// linkLocalOf is the fe80:: address of ifname in ns.
func linkLocalOf(t *testing.T, ns *netnstest.NS, ifname string) netip.Addr {
	t.Helper()
	out := ns.IP(t, "-6", "-o", "addr", "show", "dev", ifname, "scope", "link")
	for f := range strings.FieldsSeq(out) {
		if p, err := netip.ParsePrefix(f); err == nil && p.Addr().IsLinkLocalUnicast() {
			return p.Addr()
		}
	}
	t.Fatalf("%s in %s has no link-local address:\n%s", ifname, ns, out)
	return netip.Addr{}
}

func counter(t *testing.T, a *firewall.Applier, name string) uint64 {
	t.Helper()
	cs, err := a.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return cs[name].Packets
}

// TestMLDOnTheLinkIsAccepted sends real MLD messages to a host under
// default deny: from a link-local source with hop limit 1 (RFC 4890
// 4.4.1) they pass; the same from a global source, or with a hop limit
// that says they came through a router, are dropped as closed.
func TestMLDOnTheLinkIsAccepted(t *testing.T) {
	netnstest.RequireRoot(t)
	srv, cli := netnstest.New(t), netnstest.New(t)
	l := netnstest.Connect(t, srv, cli)
	a := firewall.NewApplier(nftables.WithNetNSFd(srv.Fd()))
	fw := config.Firewall{ClosedResponse: "drop", Stealth: true, LogGroup: 7, LogRate: 20, LogBurst: 50, Forward: "untouched"}
	if err := a.Apply(firewall.Build(fw, nil), nil, nil); err != nil {
		t.Fatal(err)
	}
	ll := linkLocalOf(t, cli, l.BIf)
	allNodes := netip.MustParseAddr("ff02::1")
	query := make([]byte, 20) // max response delay, reserved, group :: (a general query)
	for _, c := range []struct {
		name     string
		src      netip.Addr
		hops     byte
		typ      byte
		accepted bool
	}{
		{"query", ll, 1, 130, true},
		{"report", ll, 1, 131, true},
		{"done", ll, 1, 132, true},
		{"mld2 report", ll, 1, 143, true},
		{"query routed", ll, 2, 130, false},
		{"query from a global address", l.B6, 1, 130, false},
	} {
		before := counter(t, a, firewall.CounterClosed)
		body := query
		if c.typ == 143 {
			body = []byte{0, 0, 0, 0} // reserved, no group records
		}
		cli.SendRaw(t, l.BIf, netnstest.ICMPv6(c.src, allNodes, c.hops, c.typ, 0, body))
		dropped := false
		for range 20 { // the drop is counted synchronously; give the packet time to cross
			if dropped = counter(t, a, firewall.CounterClosed) > before; dropped {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if dropped == c.accepted {
			t.Errorf("%s (type %d, hop limit %d, from %s): dropped=%v, want accepted=%v", c.name, c.typ, c.hops, c.src, dropped, c.accepted)
		}
	}
}

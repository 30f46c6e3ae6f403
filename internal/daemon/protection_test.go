package daemon

import (
	"net/netip"
	"testing"

	"github.com/moat-fw/moat/internal/protect"
)

// Each of the daemon's protection's sources answers, for a host and for a
// wide ban over it (the IPv6 /64 escalation, a manual CIDR): the refreshed
// snapshot, the caller's own session, and the live sessions and grants that
// changed since the snapshot.
func TestProtectionAnswersFromEverySource(t *testing.T) {
	router, caller := netip.MustParseAddr("10.210.0.254"), netip.MustParseAddr("10.210.1.2")
	sess, grant := netip.MustParseAddr("fd00:210::5"), netip.MustParseAddr("10.210.3.3")
	p := &protection{
		caller:  caller,
		session: func(a netip.Addr) bool { return a == sess },
		granted: func(a netip.Addr) bool { return a == grant },
		extra: func() []protect.Entry {
			return []protect.Entry{protect.Host(sess, protect.WhySession), protect.Host(grant, protect.WhyGrant)}
		},
	}
	p.set.Store(protect.New([]protect.Entry{protect.Host(router, protect.WhyRouter)}))
	for _, c := range []struct {
		prefix, why string
	}{
		{"10.210.0.254/32", protect.WhyRouter},
		{"10.210.0.0/24", protect.WhyRouter},
		{"10.210.1.2/32", protect.WhyCaller},
		{"10.210.1.0/24", protect.WhyCaller},
		{"fd00:210::5/128", protect.WhySession},
		{"fd00:210::/64", protect.WhySession},
		{"10.210.3.3/32", protect.WhyGrant},
		{"10.210.3.0/24", protect.WhyGrant},
		{"10.210.4.4/32", ""},
		{"fd00:211::/64", ""},
	} {
		e, ok := p.Protected(netip.MustParsePrefix(c.prefix))
		if ok != (c.why != "") || e.Why != c.why {
			t.Errorf("Protected(%s) = %q, %v; want %q", c.prefix, e.Why, ok, c.why)
		}
	}
}

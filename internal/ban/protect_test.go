package ban

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/protect"
)

type setProtector struct{ s *protect.Set }

func (p setProtector) Protected(q netip.Prefix) (protect.Entry, bool) { return p.s.Overlaps(q) }

func TestProtectedAddressesAreNeverBanned(t *testing.T) {
	st, enf := newMemStore(), newEnforcer()
	m, err := New(st, enf, nil, t0, func(error) {})
	if err != nil {
		t.Fatal(err)
	}
	set := protect.New(protect.LinkLocal, []protect.Entry{
		protect.Host(netip.MustParseAddr("10.210.0.254"), protect.WhyRouter),
		protect.Host(netip.MustParseAddr("fd00:210::2"), protect.WhySession),
	})
	m.SetProtector(setProtector{set})
	for _, c := range []struct {
		req  Request
		want string
	}{
		{Request{Prefix: mp("10.210.0.254/32"), Origin: "scan"}, "cannot ban 10.210.0.254: it covers 10.210.0.254, default router"},
		{Request{Prefix: mp("fe80::1/128"), Origin: "scan"}, "link-local"},
		{Request{Prefix: mp("fd00:210::/64"), Origin: "login"}, "it covers fd00:210::2, logged-in SSH session"}, // the /64 escalation
		{Request{Prefix: mp("10.210.0.0/24")}, "add --force if you mean it"},
		{Request{Prefix: mp("10.210.0.254/32"), Origin: "scan", Force: true}, "default router"}, // only an admin may force
	} {
		_, err := m.Add(c.req, t0)
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Add(%v %s): got %v, want a refusal containing %q", c.req.Prefix, c.req.Origin, err, c.want)
		}
	}
	if len(enf.k[firewall.Bans].els) != 0 {
		t.Fatalf("refused bans reached the kernel: %v", enf.k[firewall.Bans].els)
	}
	if _, err := m.Add(Request{Prefix: mp("10.210.0.0/24"), Force: true}, t0); err != nil {
		t.Fatalf("a forced manual ban: %v", err)
	}
	if _, err := m.Add(Request{Prefix: mp("10.210.0.7/32"), Origin: "scan"}, t0); err != nil {
		t.Fatalf("an unprotected address: %v", err)
	}
	// Adopt leaves a protected address out of the kernel's leftovers.
	got, err := m.Adopt([]firewall.Element{{Prefix: mp("fe80::9/128")}, {Prefix: mp("10.210.3.3/32")}}, t0)
	if err != nil || len(got) != 1 || got[0].Prefix != mp("10.210.3.3/32") {
		t.Fatalf("Adopt: %v %v", got, err)
	}
}

func TestLiftProtectedLiftsOnlyGuardBans(t *testing.T) {
	st, enf := newMemStore(), newEnforcer()
	m, _ := New(st, enf, nil, t0, func(error) {})
	for _, r := range []Request{
		{Prefix: mp("10.210.0.254/32"), Origin: "scan", For: time.Hour},
		{Prefix: mp("10.210.0.53/32"), Origin: OriginManual, For: time.Hour},
		{Prefix: mp("10.210.0.9/32"), Origin: "login", For: time.Hour},
	} {
		if _, err := m.Add(r, t0); err != nil {
			t.Fatal(err)
		}
	}
	set := protect.New([]protect.Entry{
		protect.Host(netip.MustParseAddr("10.210.0.254"), protect.WhyRouter),
		protect.Host(netip.MustParseAddr("10.210.0.53"), protect.WhyResolver),
	})
	lifted, err := m.LiftProtected(set, t0)
	if err != nil || len(lifted) != 1 || lifted[0].Prefix != mp("10.210.0.254/32") {
		t.Fatalf("lifted %v, %v; want the scan ban of the router only", lifted, err)
	}
	if _, ok := enf.k[firewall.Bans].els[mp("10.210.0.254/32")]; ok {
		t.Fatal("the router's ban is still in the kernel")
	}
	if n, _ := m.Counts(); n != 2 {
		t.Fatalf("%d bans left, want the manual one and the unprotected one", n)
	}
}

// What the protected-address policy adds to a guard's ban (kernel and
// store faked): the protector is asked once per ban, before the lock.
func BenchmarkAddGuardBan(b *testing.B) {
	var es []protect.Entry
	for i := range 1000 {
		es = append(es, protect.Host(netip.AddrFrom4([4]byte{10, 210, byte(i >> 8), byte(i)}), protect.WhyOutgoing))
	}
	for _, c := range []struct {
		name string
		prot Protector
	}{{"unprotected", nil}, {"protector", setProtector{protect.New(protect.LinkLocal, es)}}} {
		b.Run(c.name, func(b *testing.B) {
			m, _ := New(newMemStore(), newEnforcer(), nil, t0, func(error) {})
			if c.prot != nil {
				m.SetProtector(c.prot)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				a := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
				i++
				if _, err := m.Add(Request{Prefix: netip.PrefixFrom(a, 32), Origin: "scan", For: time.Minute, NoWait: true}, t0); err != nil {
					b.Fatal(err)
				}
			}
			m.Flush()
		})
	}
}

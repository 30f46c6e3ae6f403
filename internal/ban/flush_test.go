package ban

import (
	"net/netip"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/firewall"
)

// DelAll lifts every ban, nested prefixes included, from the kernel and
// the store in one update, and leaves the allow list alone.
func TestDelAllLiftsEveryBanButNoAllow(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	st, enf := newMemStore(), newEnforcer()
	m, err := New(st, enf, []netip.Prefix{mp("10.210.9.0/24")}, t0, func(error) {})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []Request{
		{Prefix: mp("10.210.1.7/32"), Origin: "manual"},
		{Prefix: mp("10.210.2.0/24"), Origin: "manual", For: time.Hour},
		{Prefix: mp("10.210.2.9/32"), Origin: "scan", For: time.Minute}, // inside the /24
		{Prefix: mp("fd00:210::5/128"), Origin: "login", For: time.Hour},
	} {
		if _, err := m.Add(r, t0); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := m.Allow(AllowRequest{Prefix: mp("10.210.8.1/32")}, t0); err != nil {
		t.Fatal(err)
	}
	lifted, err := m.DelAll(t0.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(lifted) != 4 {
		t.Fatalf("lifted %d bans, want 4: %v", len(lifted), lifted)
	}
	if n := len(enf.k[firewall.Bans].els); n != 0 {
		t.Fatalf("%d ban elements left in the kernel: %v", n, enf.k[firewall.Bans].els)
	}
	if len(st.bans) != 0 || len(m.List(t0)) != 0 {
		t.Fatalf("bans left: store %v, manager %v", st.bans, m.List(t0))
	}
	if b, a := m.Counts(); b != 0 || a != 2 {
		t.Fatalf("after flush: %d bans, %d allows (want 0, 2: the config's and the runtime one)", b, a)
	}
	if again, err := m.DelAll(t0); err != nil || len(again) != 0 {
		t.Fatalf("a second flush: %v %v", again, err)
	}
}

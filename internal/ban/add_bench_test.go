package ban

import (
	"net/netip"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/store"
)

type nopEnforcer struct{}

func (nopEnforcer) Update(firewall.SetKind, []firewall.Element, []firewall.Element) error { return nil }

// BenchmarkAddNoWait times a guard's ban (NoWait, with backoff) on the
// real store with 100,000 bans live and the kernel faked: what the guard
// waits for between a line and the netlink commit. The store write
// happens in the background; Flush after the loop waits for it.
func BenchmarkAddNoWait(b *testing.B) {
	st, err := store.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	es := make([]store.Entry, 0, 100_000)
	for i := range 100_000 {
		a := netip.AddrFrom16([16]byte{0xfd, 0, 2, 0x10, 12: byte(i >> 24), 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)})
		es = append(es, store.Entry{Prefix: netip.PrefixFrom(a, 128), Origin: "login", Created: now, Expires: now.Add(24 * time.Hour)})
	}
	if _, err := st.PutBans(es); err != nil {
		b.Fatal(err)
	}
	m, err := New(st, nopEnforcer{}, nil, now, func(error) {})
	if err != nil {
		b.Fatal(err)
	}
	m.Elements(now)
	bo := &Backoff{Base: time.Hour, Multiplier: 2, Max: 7 * 24 * time.Hour}
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		a := netip.AddrFrom4([4]byte{10, 210, byte(i >> 8), byte(i)})
		if _, err := m.Add(Request{Prefix: netip.PrefixFrom(a, 32), Origin: "login", Reason: "5 failures", Backoff: bo, NoWait: true}, now); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	m.Flush()
}

package ban

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

// TestIndexAgreesWithAMap drives random puts and deletes through a cover
// (and so its index, with its backward-shift deletion) and checks every
// lookup against a Go map.
func TestIndexAgreesWithAMap(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	c := newCover(nil)
	want := map[netip.Prefix]bool{}
	addr := func() netip.Prefix {
		if r.IntN(2) == 0 {
			return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 210, byte(r.IntN(8)), byte(r.IntN(256))}), 32)
		}
		return netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0, 2, 0x10, 15: byte(r.IntN(256))}), 64+r.IntN(2)*64).Masked()
	}
	for step := range 50000 {
		p := addr()
		if r.IntN(3) == 0 {
			c.adel(p)
			delete(want, p)
		} else {
			c.aput(p, time.Time{})
			want[p] = true
		}
		q := addr()
		if got := c.lookup(q) != nil; got != want[q] {
			t.Fatalf("step %d: lookup %s = %v, want %v", step, q, got, want[q])
		}
		if c.len() != len(want) || c.idx.n != len(want) {
			t.Fatalf("step %d: %d entries, %d indexed, want %d", step, c.len(), c.idx.n, len(want))
		}
	}
	for p := range want {
		if c.lookup(p) == nil {
			t.Fatalf("%s lost", p)
		}
	}
}

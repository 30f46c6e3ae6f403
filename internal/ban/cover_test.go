package ban

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/firewall"
)

// fakeKernel behaves like an nftables interval set: it refuses an element
// that overlaps another, and deleting an absent element fails.
type fakeKernel struct {
	els map[netip.Prefix]time.Duration
	// nets are the elements that are not single hosts, which a host can
	// overlap without being equal to one, so that adding a host costs a
	// look-up and a walk of the few nets, not of every element: the
	// benchmarks time the manager, not this fake. Elements deleted from
	// els behind apply's back are dropped from nets as they are met.
	nets map[netip.Prefix]bool
}

func (k *fakeKernel) apply(del, add []firewall.Element) error {
	for _, e := range del {
		if _, ok := k.els[e.Prefix]; !ok {
			return fmt.Errorf("delete %s: not in the set", e.Prefix)
		}
		delete(k.els, e.Prefix)
	}
	if k.nets == nil {
		k.nets = map[netip.Prefix]bool{}
		for q := range k.els {
			if !q.IsSingleIP() {
				k.nets[q] = true
			}
		}
	}
	for _, e := range add {
		if e.Prefix.IsSingleIP() {
			if _, ok := k.els[e.Prefix]; ok {
				return fmt.Errorf("add %s: overlaps %s", e.Prefix, e.Prefix)
			}
		}
		overlapping := k.els
		if e.Prefix.IsSingleIP() {
			overlapping = nil
		}
		for q := range overlapping {
			if q.Overlaps(e.Prefix) {
				return fmt.Errorf("add %s: overlaps %s", e.Prefix, q)
			}
		}
		for q := range k.nets {
			if _, ok := k.els[q]; !ok {
				delete(k.nets, q)
			} else if q.Overlaps(e.Prefix) {
				return fmt.Errorf("add %s: overlaps %s", e.Prefix, q)
			}
		}
		k.els[e.Prefix] = e.Timeout
		if !e.Prefix.IsSingleIP() {
			k.nets[e.Prefix] = true
		}
	}
	return nil
}

// expire drops what the kernel would have timed out by now.
func (k *fakeKernel) expire(c *cover, now time.Time) {
	for p := range k.els {
		if exp, ok := c.kernelMap()[p]; ok && !exp.IsZero() && !exp.After(now) {
			delete(k.els, p)
		}
	}
}

// check asserts that every live entry is enforced by a kernel element and
// that the kernel holds only live entries.
func (k *fakeKernel) check(t *testing.T, c *cover, now time.Time, step string) {
	t.Helper()
	for p := range k.els {
		exp, ok := c.activeMap()[p]
		if !ok {
			t.Fatalf("%s: kernel holds %s, which is not a live entry", step, p)
		}
		if !exp.IsZero() && !exp.After(now) {
			t.Fatalf("%s: kernel holds expired %s", step, p)
		}
	}
	for p, exp := range c.activeMap() {
		if !exp.IsZero() && !exp.After(now) {
			continue
		}
		covered := false
		for q := range k.els {
			if q.Bits() <= p.Bits() && q.Contains(p.Addr()) {
				covered = true
			}
		}
		if !covered {
			t.Fatalf("%s: live entry %s is not enforced in the kernel %v", step, p, k.els)
		}
	}
}

func TestCoverNestedPrefixes(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	c := newCover(nil)
	k := &fakeKernel{els: map[netip.Prefix]time.Duration{}}
	host := netip.MustParsePrefix("10.210.0.5/32")
	net24 := netip.MustParsePrefix("10.210.0.0/24")

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(k.apply(c.put(host, now.Add(2*time.Hour), now)))
	must(k.apply(c.put(net24, now.Add(time.Hour), now)))
	if _, ok := k.els[host]; ok {
		t.Fatal("host should have been replaced by its /24 in the kernel")
	}
	k.check(t, c, now, "after /24")

	// The /24 ends first: the host, which outlives it, must come back.
	later := now.Add(time.Hour + time.Second)
	k.expire(c, later)
	_, add := c.expire(later)
	must(k.apply(nil, add))
	if d, ok := k.els[host]; !ok || d <= 0 || d > time.Hour {
		t.Fatalf("host not back in the kernel with its remaining time: %v", k.els)
	}
	k.check(t, c, later, "after /24 expired")
}

func TestCoverRemovePromotesInner(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	c := newCover(nil)
	k := &fakeKernel{els: map[netip.Prefix]time.Duration{}}
	for _, s := range []string{"10.210.0.0/16", "10.210.1.0/24", "10.210.1.7/32", "10.210.2.9/32"} {
		if err := k.apply(c.put(netip.MustParsePrefix(s), time.Time{}, now)); err != nil {
			t.Fatal(err)
		}
	}
	del, add, found := c.remove(netip.MustParsePrefix("10.210.0.0/16"), now)
	if !found {
		t.Fatal("not found")
	}
	if err := k.apply(del, add); err != nil {
		t.Fatal(err)
	}
	if len(k.els) != 2 || k.els[netip.MustParsePrefix("10.210.1.0/24")] != 0 {
		t.Fatalf("want the /24 and the lone host, got %v", k.els)
	}
	k.check(t, c, now, "after removing the /16")
}

// TestCoverRandom drives random bans, unbans and the passing of time
// against a kernel that refuses overlaps, checking the invariants each step.
func TestCoverRandom(t *testing.T) {
	for seed := range uint64(50) {
		r := rand.New(rand.NewPCG(seed, 7))
		now := time.Unix(1_700_000_000, 0)
		c := newCover(nil)
		k := &fakeKernel{els: map[netip.Prefix]time.Duration{}}
		randPrefix := func() netip.Prefix {
			if r.IntN(4) == 0 {
				a := netip.AddrFrom16([16]byte{0xfd, 0, 2, 0x10, 0, 0, 0, byte(r.IntN(2)), byte(r.IntN(3))})
				return netip.PrefixFrom(a, []int{48, 56, 64, 72, 128}[r.IntN(5)]).Masked()
			}
			a := netip.AddrFrom4([4]byte{10, 210, byte(r.IntN(2)), byte(r.IntN(8))})
			return netip.PrefixFrom(a, []int{16, 23, 24, 29, 30, 32}[r.IntN(6)]).Masked()
		}
		for i := range 300 {
			step := fmt.Sprintf("seed %d step %d", seed, i)
			switch r.IntN(4) {
			case 0, 1:
				var exp time.Time
				if r.IntN(3) > 0 {
					exp = now.Add(time.Duration(1+r.IntN(100)) * time.Second)
				}
				if err := k.apply(c.put(randPrefix(), exp, now)); err != nil {
					t.Fatalf("%s: put: %v", step, err)
				}
			case 2:
				del, add, _ := c.remove(randPrefix(), now)
				if err := k.apply(del, add); err != nil {
					t.Fatalf("%s: remove: %v", step, err)
				}
			case 3:
				now = now.Add(time.Duration(r.IntN(30)) * time.Second)
				k.expire(c, now)
				_, add := c.expire(now)
				if err := k.apply(nil, add); err != nil {
					t.Fatalf("%s: expire: %v", step, err)
				}
			}
			k.check(t, c, now, step)
			// covers agrees with a scan of every live entry.
			a := randPrefix().Addr()
			want := false
			for p, exp := range c.activeMap() {
				if p.Contains(a) && (exp.IsZero() || exp.After(now)) {
					want = true
				}
			}
			if got := c.covers(a, now); got != want {
				t.Fatalf("%s: covers(%s) = %v, want %v", step, a, got, want)
			}
		}
		// A full rebuild yields a valid, overlap-free set too.
		fresh := &fakeKernel{els: map[netip.Prefix]time.Duration{}}
		if err := fresh.apply(nil, c.rebuild(now)); err != nil {
			t.Fatalf("seed %d: rebuild: %v", seed, err)
		}
		fresh.check(t, c, now, fmt.Sprintf("seed %d rebuild", seed))
	}
}

func BenchmarkCoverRebuild100k(b *testing.B) {
	now := time.Unix(1_700_000_000, 0)
	c := newCover(nil)
	for i := range 100_000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		c.aput(netip.PrefixFrom(a, 32), now.Add(time.Hour))
	}
	b.ReportAllocs()
	for b.Loop() {
		c.rebuild(now)
	}
}

// The expiry heap answers what a scan of every live entry would: the
// earliest expiry, and exactly the entries that ended, however entries were
// replaced and removed before.
func TestExpiryHeapMatchesAScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	c := newCover(nil)
	now := t0
	for step := range 20000 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 210, 0, byte(rng.IntN(40))}), 32)
		switch r := rng.IntN(10); {
		case r < 5:
			var exp time.Time
			if rng.IntN(8) > 0 {
				exp = now.Add(time.Duration(1+rng.IntN(50)) * time.Second)
			}
			c.aput(p, exp)
		case r < 7:
			c.adel(p)
		default:
			now = now.Add(time.Duration(rng.IntN(5)) * time.Second)
			var want []netip.Prefix
			for q, exp := range c.activeMap() {
				if !exp.IsZero() && !exp.After(now) {
					want = append(want, q)
				}
			}
			gone, _ := c.expire(now)
			slices.SortFunc(want, netip.Prefix.Compare)
			slices.SortFunc(gone, netip.Prefix.Compare)
			if !slices.Equal(gone, want) {
				t.Fatalf("step %d: expire gave %v, a scan %v", step, gone, want)
			}
		}
		var want time.Time
		for _, exp := range c.activeMap() {
			if !exp.IsZero() && (want.IsZero() || exp.Before(want)) {
				want = exp
			}
		}
		if got := c.next(); !got.Equal(want) {
			t.Fatalf("step %d: next %v, a scan %v", step, got, want)
		}
		if len(c.due) > 2*c.len()+65 {
			t.Fatalf("step %d: %d heap items for %d live entries", step, len(c.due), c.len())
		}
	}
}

// activeMap and kernelMap show the cover as maps, for the tests' scans.
func (c *cover) activeMap() map[netip.Prefix]time.Time {
	out := map[netip.Prefix]time.Time{}
	c.each(func(r *rec) { out[r.k.prefix()] = timeOf(r.expires) })
	return out
}

func (c *cover) kernelMap() map[netip.Prefix]time.Time {
	out := map[netip.Prefix]time.Time{}
	c.each(func(r *rec) {
		if r.flags&inKernel != 0 {
			out[r.k.prefix()] = timeOf(r.expires)
		}
	})
	return out
}

// TestInsideFindsWhatAScanFinds: the lookups inside makes for a narrow
// prefix find exactly what a scan of every record finds.
func TestInsideFindsWhatAScanFinds(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	c := newCover(nil)
	for range 3000 {
		var p netip.Prefix
		if r.IntN(2) == 0 {
			p = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 210, byte(r.IntN(4)), byte(r.IntN(256))}), []int{32, 32, 30, 28, 24}[r.IntN(5)]).Masked()
		} else {
			p = netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0, 2, 0x10, 14: byte(r.IntN(4)), 15: byte(r.IntN(256))}), []int{128, 128, 124, 120}[r.IntN(4)]).Masked()
		}
		c.aput(p, time.Time{})
	}
	for _, s := range []string{"10.210.0.0/24", "10.210.1.0/23", "10.210.2.16/28", "10.210.3.0/25", "fd00:210::/120", "fd00:210::100/118", "10.0.0.0/8"} {
		q := netip.MustParsePrefix(s)
		var got, want []netip.Prefix
		c.inside(q, func(r *rec) bool { got = append(got, r.k.prefix()); return true })
		for p := range c.activeMap() {
			if p.Bits() > q.Bits() && q.Contains(p.Addr()) {
				want = append(want, p)
			}
		}
		slices.SortFunc(got, netip.Prefix.Compare)
		slices.SortFunc(want, netip.Prefix.Compare)
		if !slices.Equal(got, want) {
			t.Fatalf("inside %s: %d found, a scan finds %d", q, len(got), len(want))
		}
	}
}

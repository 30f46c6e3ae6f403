package login

import (
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

func TestCounterWindow(t *testing.T) {
	c := NewCounter(3, time.Minute, 10)
	a := netip.MustParseAddr("::ffff:10.210.0.1") // mapped and plain count as one
	b := netip.MustParseAddr("10.210.0.1")
	if n, _, hit := c.Fail(a, 1, 0, t0); n != 1 || hit {
		t.Fatal(n, hit)
	}
	if n, _, hit := c.Fail(b, 1, 0, t0.Add(30*time.Second)); n != 2 || hit {
		t.Fatal(n, hit)
	}
	// The first failure has left the window by now.
	if n, _, hit := c.Fail(a, 1, 0, t0.Add(61*time.Second)); n != 2 || hit {
		t.Fatal(n, hit)
	}
	if n, _, hit := c.Fail(a, 1, 0, t0.Add(62*time.Second)); n != 3 || !hit {
		t.Fatal(n, hit)
	}
	c.Forget(b)
	if c.Count(a, t0.Add(62*time.Second)) != 0 || c.Len() != 0 {
		t.Fatal("forget did not forget")
	}
	// "message repeated 5 times" counts five.
	if _, _, hit := c.Fail(a, 5, 0, t0); !hit {
		t.Fatal("a burst of 5 should reach 3")
	}
}

func TestCounterEvictsLeastRecent(t *testing.T) {
	c := NewCounter(5, time.Hour, 3)
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 210, 0, byte(i)}) }
	for i := range 3 {
		c.Fail(addr(i), 1, 0, t0)
	}
	c.Fail(addr(0), 1, 0, t0) // 0 is now the most recent; 1 the least
	c.Fail(addr(9), 1, 0, t0)
	if c.Len() != 3 || c.Count(addr(1), t0) != 0 || c.Count(addr(0), t0) != 2 || c.Count(addr(9), t0) != 1 {
		t.Fatalf("len %d; counts %d %d %d", c.Len(), c.Count(addr(1), t0), c.Count(addr(0), t0), c.Count(addr(9), t0))
	}
}

// TestCounterModel drives random failures and forgets against a plain map
// model with the same eviction rule.
func TestCounterModel(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const max, retry = 16, 4
	c := NewCounter(retry, 10*time.Second, max)
	type rec struct {
		times []time.Time
		seen  int
	}
	model := map[netip.Addr]*rec{}
	now := t0
	tick := 0
	for i := range 20000 {
		a := netip.AddrFrom4([4]byte{10, 210, 0, byte(r.IntN(40))})
		now = now.Add(time.Duration(r.IntN(1500)) * time.Millisecond)
		tick++
		if r.IntN(10) == 0 {
			c.Forget(a)
			delete(model, a)
			continue
		}
		m := model[a]
		if m == nil {
			if len(model) == max {
				var oldest netip.Addr
				for k, v := range model {
					if !oldest.IsValid() || v.seen < model[oldest].seen {
						oldest = k
					}
				}
				delete(model, oldest)
			}
			m = &rec{}
			model[a] = m
		}
		m.seen = tick
		m.times = append(m.times, now)
		if len(m.times) > retry {
			m.times = m.times[1:]
		}
		want := 0
		for _, ts := range m.times {
			if ts.After(now.Add(-10 * time.Second)) {
				want++
			}
		}
		got, _, hit := c.Fail(a, 1, 0, now)
		if got != want || hit != (want >= retry) {
			t.Fatalf("step %d: %s: got %d %v, want %d", i, a, got, hit, want)
		}
		if c.Len() != len(model) {
			t.Fatalf("step %d: len %d, model %d", i, c.Len(), len(model))
		}
	}
}

// BenchmarkCounterMillion measures a flood of 1,000,000 distinct addresses:
// time per failure and the heap the counter holds.
func BenchmarkCounterMillion(b *testing.B) {
	b.ReportAllocs()
	var heap uint64
	for b.Loop() {
		c := NewCounter(5, 10*time.Minute, 1_000_000)
		for i := range 1_000_000 {
			a := netip.AddrFrom16([16]byte{0xfd, 0, 2, 0x10, 12: byte(i >> 24), 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)})
			c.Fail(a, 1, 0, t0)
		}
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		heap = ms.HeapAlloc
		runtime.KeepAlive(c)
	}
	b.ReportMetric(float64(heap)/(1<<20), "MB-heap")
}

func BenchmarkCounterFail(b *testing.B) {
	c := NewCounter(5, 10*time.Minute, 100_000)
	addrs := make([]netip.Addr, 200_000) // twice the cap: evictions on the way
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c.Fail(addrs[i%len(addrs)], 1, 0, t0)
		i++
	}
}

func TestCounterSnapshotRoundTrip(t *testing.T) {
	c := NewCounter(3, time.Minute, 100)
	a, b := netip.MustParseAddr("10.210.0.1"), netip.MustParseAddr("fd00:210::1")
	c.Fail(a, 2, 4, t0)
	c.Fail(b, 1, 8, t0.Add(-50*time.Second))
	snap := c.AppendSnapshot(nil)
	r := NewCounter(3, time.Minute, 100)
	if err := r.LoadSnapshot(snap, t0.Add(20*time.Second)); err != nil {
		t.Fatal(err)
	}
	if r.Count(a, t0.Add(20*time.Second)) != 2 || r.Len() != 1 {
		t.Fatalf("restored a=%d len=%d; b's failure should have left the window", r.Count(a, t0.Add(20*time.Second)), r.Len())
	}
	if _, tags, hit := r.Fail(a, 1, 1, t0.Add(20*time.Second)); !hit || tags != 5 {
		t.Fatalf("third failure after restore: hit=%v tags=%b", hit, tags)
	}
	if err := NewCounter(5, time.Minute, 10).LoadSnapshot(snap, t0); err == nil {
		t.Fatal("a snapshot for another max_retry was accepted")
	}
	for i := range snap {
		NewCounter(3, time.Minute, 10).LoadSnapshot(snap[:i], t0) // never panics
	}
}

func FuzzCounterSnapshot(f *testing.F) {
	c := NewCounter(3, time.Minute, 10)
	c.Fail(netip.MustParseAddr("10.210.0.1"), 2, 1, t0)
	f.Add(c.AppendSnapshot(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewCounter(3, time.Minute, 10)
		if r.LoadSnapshot(b, t0) == nil && r.Len() > 10 {
			t.Fatal("snapshot exceeded the cap")
		}
	})
}

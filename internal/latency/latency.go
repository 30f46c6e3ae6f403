// Package latency keeps the latencies of one of the daemon's paths, a knock
// or an SPA datagram to its grant in the kernel, measured from the packet's
// own kernel timestamp (NFLOG's) to the kernel's acknowledgement of the
// grant: the figure the issues' bars are about, free of any observer's
// wake-ups. It keeps the last Recent exactly, for quantiles in `moat
// status`, and every one in fixed histogram buckets, for Prometheus.
// Grants are rare (a person knocking), so a mutex is cheap enough.
package latency

import (
	"slices"
	"sync"
	"time"
)

// Recent is how many of the latest latencies quantiles are taken over.
const Recent = 4096

// Bounds are the histogram's bucket upper bounds; a last bucket holds the
// rest.
var Bounds = []time.Duration{100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, 50 * time.Millisecond}

// Recorder is safe for concurrent use; its zero value is ready.
type Recorder struct {
	mu      sync.Mutex
	ring    [Recent]time.Duration
	n       uint64 // observed in all
	sum     time.Duration
	buckets [9]uint64 // len(Bounds)+1
}

// Observe records one latency. Negative ones (a clock stepped back between
// the packet and the grant) are not latencies and are left out.
func (r *Recorder) Observe(d time.Duration) {
	if r == nil || d < 0 {
		return
	}
	i, _ := slices.BinarySearch(Bounds, d)
	r.mu.Lock()
	r.ring[r.n%Recent] = d
	r.n++
	r.sum += d
	r.buckets[i]++
	r.mu.Unlock()
}

// Summary is what status shows: quantiles over the last Recent (Of of them)
// by nearest rank, and the count since the start.
type Summary struct {
	Count uint64        `json:"count"`
	Of    int           `json:"of"` // latencies the quantiles are over
	P50   time.Duration `json:"p50_ns"`
	P90   time.Duration `json:"p90_ns"`
	P99   time.Duration `json:"p99_ns"`
	Max   time.Duration `json:"max_ns"`
}

// Summary is nil before the first latency.
func (r *Recorder) Summary() *Summary {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	n := int(min(r.n, Recent))
	s := Summary{Count: r.n, Of: n}
	ds := slices.Clone(r.ring[:n])
	r.mu.Unlock()
	if n == 0 {
		return nil
	}
	slices.Sort(ds)
	rank := func(q float64) time.Duration {
		// Nearest rank: the smallest value with at least q of them at or
		// below it.
		k := int(q*float64(n)+0.999999) - 1
		return ds[max(0, min(k, n-1))]
	}
	s.P50, s.P90, s.P99, s.Max = rank(0.50), rank(0.90), rank(0.99), ds[n-1]
	return &s
}

// Histogram is every latency so far in Bounds' buckets (not cumulative:
// buckets[i] counts those in (Bounds[i-1], Bounds[i]]; the last, those
// beyond), their count and their sum.
func (r *Recorder) Histogram() (count uint64, sum time.Duration, buckets []uint64) {
	if r == nil {
		return 0, 0, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n, r.sum, slices.Clone(r.buckets[:])
}

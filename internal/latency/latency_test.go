package latency

import (
	"testing"
	"time"
)

func TestSummaryQuantilesByNearestRank(t *testing.T) {
	var r Recorder
	if r.Summary() != nil {
		t.Fatal("a summary before any latency")
	}
	for i := 1; i <= 100; i++ {
		r.Observe(time.Duration(i) * time.Millisecond)
	}
	r.Observe(-time.Second) // a clock stepped back: not a latency
	s := r.Summary()
	if s.Count != 100 || s.Of != 100 || s.P50 != 50*time.Millisecond || s.P90 != 90*time.Millisecond ||
		s.P99 != 99*time.Millisecond || s.Max != 100*time.Millisecond {
		t.Fatalf("summary %+v", s)
	}
}

func TestSummaryIsOverTheRecentOnly(t *testing.T) {
	var r Recorder
	for range Recent {
		r.Observe(time.Second)
	}
	for range Recent {
		r.Observe(time.Millisecond)
	}
	if s := r.Summary(); s.Count != 2*Recent || s.Of != Recent || s.Max != time.Millisecond {
		t.Fatalf("summary %+v, want the last %d only", s, Recent)
	}
}

func TestHistogramBuckets(t *testing.T) {
	var r Recorder
	for _, d := range []time.Duration{50 * time.Microsecond, 100 * time.Microsecond, 101 * time.Microsecond, 3 * time.Millisecond, time.Second} {
		r.Observe(d)
	}
	n, sum, b := r.Histogram()
	want := []uint64{2, 1, 0, 0, 0, 1, 0, 0, 1}
	if n != 5 || sum != 50*time.Microsecond+100*time.Microsecond+101*time.Microsecond+3*time.Millisecond+time.Second || len(b) != len(want) {
		t.Fatalf("count %d sum %v buckets %v", n, sum, b)
	}
	for i := range want {
		if b[i] != want[i] {
			t.Fatalf("buckets %v, want %v", b, want)
		}
	}
}

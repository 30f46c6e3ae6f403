package daemon

import (
	"time"

	"github.com/moat-fw/moat/internal/latency"
	"github.com/moat-fw/moat/internal/metrics"
)

// grantLatency times one path from a packet to its grant in the kernel:
// from the packet's kernel timestamp (NFLOG's, when the kernel received
// it) to the moment the grant's netlink commit was acknowledged. It lives
// in the daemon, not the engines, so a reload keeps its figures.
type grantLatency struct {
	rec   latency.Recorder
	read  latency.Recorder // the part before moat read the packet
	clock func() time.Time
}

// since records the time from at, the packet's arrival, to now, and the
// part of it up to read, when moat read the packet from the kernel: the
// rest is moat's own work (verifying, the grant's netlink commit), the
// part before it the kernel's queues and the wait for a CPU. Packets
// without a timestamp are not timed.
func (g *grantLatency) since(at, read time.Time) {
	if g == nil || at.IsZero() {
		return
	}
	g.rec.Observe(g.clock().Sub(at))
	g.read.Observe(read.Sub(at))
}

func (g *grantLatency) summary() *latency.Summary {
	if g == nil {
		return nil
	}
	return g.rec.Summary()
}

func (g *grantLatency) readSummary() *latency.Summary {
	if g == nil {
		return nil
	}
	return g.read.Summary()
}

func (g *grantLatency) metric() *metrics.Latency {
	if g == nil {
		return nil
	}
	n, sum, b := g.rec.Histogram()
	if n == 0 {
		return nil
	}
	return &metrics.Latency{Count: n, Sum: sum, Bounds: latency.Bounds, Buckets: b}
}

// storeSPA puts se (nil: SPA off) in force, timed by the daemon's recorder.
func (d *Daemon) storeSPA(se *spaEngine) {
	if se != nil {
		se.lat = &d.spaLat
	}
	d.spa.Store(se)
}

// storeDoors puts eng in force, timed by the daemon's recorder.
func (d *Daemon) storeDoors(eng *doorEngine) {
	if eng != nil {
		eng.lat = &d.knockLat
	}
	d.doors.Store(eng)
}

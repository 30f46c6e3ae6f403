package daemon

import (
	"sync/atomic"
	"time"
)

// fullReadEvery is how often the reconcile reads the ban and allow sets
// back even when the monitor saw no one else change them: a backstop for
// what a monitor cannot see (a change in the moment between an install
// and the monitor's next socket).
const fullReadEvery = time.Hour

// kernelWatch says when the kernel's sets need reading back. Reading a
// million elements costs seconds of CPU, so the reconcile does it only
// when the monitor (firewall.Applier.Watch) saw another process delete
// elements of moat's sets or lost track, and every fullReadEvery.
type kernelWatch struct {
	dirty    atomic.Bool
	lastFull atomic.Int64 // Unix nanoseconds of the last full read
}

// suspect reports whether the sets must be read back now, and if so
// counts the read as done: a read that fails calls changed again.
func (w *kernelWatch) suspect(now time.Time) bool {
	due := now.Sub(time.Unix(0, w.lastFull.Load())) >= fullReadEvery
	if !w.dirty.Swap(false) && !due {
		return false
	}
	w.lastFull.Store(now.UnixNano())
	return true
}

// changed marks the sets as needing a read.
func (w *kernelWatch) changed() { w.dirty.Store(true) }

// kernelSuspect is suspect for the daemon's kernel.
func (d *Daemon) kernelSuspect() bool { return d.kw.suspect(d.now()) }

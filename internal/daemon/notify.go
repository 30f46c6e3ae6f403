package daemon

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/moat-fw/moat/internal/sdnotify"
)

// health is what the watchdog goes by: the time of the last round of the
// daemon's housekeeping loop, which takes the daemon's locks every 200 ms
// (grants, bans). A loop stuck on a lock or a hung netlink call stops the
// beat, the pings stop, and systemd restarts moat (Restart=on-failure;
// the table stays in the kernel meanwhile, so the host stays closed).
type health struct {
	beat atomic.Int64 // unix nanoseconds
}

func (h *health) tick(now time.Time) { h.beat.Store(now.UnixNano()) }

// fresh reports whether the loop beat within max of now.
func (h *health) fresh(now time.Time, max time.Duration) bool {
	last := h.beat.Load()
	return last != 0 && now.Sub(time.Unix(0, last)) <= max
}

// notify sends states to systemd. A failure is logged at debug level
// only: it means systemd is gone (shutdown), and the daemon's work does
// not depend on it.
func (d *Daemon) notify(states ...string) {
	if err := d.sd.Send(states...); err != nil {
		d.log.Debug("sd_notify", "err", err)
	}
}

// watchdog pings systemd at half its WatchdogSec while the housekeeping
// loop is alive, and not otherwise: a ping from a goroutine that checks
// nothing would keep a wedged daemon "running" forever.
func (d *Daemon) watchdog(ctx context.Context) error {
	every, ok, err := sdnotify.WatchdogInterval()
	if err != nil {
		d.log.Warn("ignoring the systemd watchdog setting", "err", err)
	}
	if !ok {
		return nil
	}
	t := time.NewTicker(every / 2)
	defer t.Stop()
	warned := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			// Wall clock, not d.now: tests drive d.now, the watchdog is real time.
			if d.health.fresh(time.Now(), every/2) {
				d.notify(sdnotify.Watchdog)
				warned = false
			} else if !warned {
				d.log.Error("the daemon's main loop has stalled: not pinging the systemd watchdog, which restarts moat if it does not recover", "watchdog", every)
				warned = true
			}
		}
	}
}

package daemon

import (
	"context"
	"net/http"
	"os"
	"reflect"
	"sync"

	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/control"
	"github.com/moat-fw/moat/internal/fleet"
)

// RouteFleet serves the fleet's status (`moat fleet status`).
const RouteFleet = "/v1/fleet"

// fleetRunner runs the host's fleet membership ([fleet]). apply starts,
// restarts or stops it to match the config in force, so a reload that
// changes [fleet] takes effect like any other setting. The fleet never
// holds up the guards: it reads the events bus and applies remote bans
// through the ban manager's policy.
type fleetRunner struct {
	mu   sync.Mutex
	ctx  context.Context // the daemon's; nil outside Run
	cfg  config.Fleet
	cur  *fleet.Fleet
	stop context.CancelFunc
	done chan struct{}
}

// runFleet starts the fleet for the daemon's life; the returned func
// stops it and waits.
func (d *Daemon) runFleet(ctx context.Context, cfg config.Fleet) (wait func()) {
	d.fleet.mu.Lock()
	d.fleet.ctx = ctx
	d.fleet.mu.Unlock()
	d.applyFleet(cfg)
	return func() {
		d.fleet.mu.Lock()
		defer d.fleet.mu.Unlock()
		d.fleet.halt()
		d.bans.Flush() // remote bans are saved after they reach the kernel
	}
}

func (r *fleetRunner) halt() {
	if r.stop != nil {
		r.stop()
		<-r.done
		r.stop, r.done, r.cur = nil, nil, nil
	}
}

// applyFleet makes the fleet membership match cfg.
func (d *Daemon) applyFleet(cfg config.Fleet) {
	r := &d.fleet
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx == nil || (reflect.DeepEqual(cfg, r.cfg) && r.stop != nil) || (!cfg.Enabled() && r.stop == nil) {
		return
	}
	r.halt()
	r.cfg = cfg
	if !cfg.Enabled() {
		d.log.Info("fleet off")
		return
	}
	hostname, _ := os.Hostname()
	f := fleet.New(cfg, cfg.HostOrDefault(hostname), d.bans, d.events, d.log, d.now)
	f.OnReplay(func(keys int) {
		// Room in the host sets for the whole bucket before the replay
		// fills them: one install now, not one each time they fill up.
		if d.fw.Expect(keys) {
			d.log.Info("fleet: installing the table again with room for the bucket's bans", "keys", keys)
			d.check(false)
		}
	})
	ctx, cancel := context.WithCancel(r.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Run(ctx)
	}()
	r.cur, r.stop, r.done = f, cancel, done
}

// fleetStatus is the fleet's status, or nil when the fleet is off.
func (d *Daemon) fleetStatus() *fleet.Status {
	d.fleet.mu.Lock()
	f := d.fleet.cur
	d.fleet.mu.Unlock()
	if f == nil {
		return nil
	}
	st := f.Status()
	return &st
}

func (d *Daemon) serveFleet(w http.ResponseWriter, _ *http.Request) {
	st := d.fleetStatus()
	if st == nil {
		st = &fleet.Status{Refused: map[string]uint64{}}
	}
	control.WriteJSON(w, http.StatusOK, st)
}

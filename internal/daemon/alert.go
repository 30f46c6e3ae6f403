package daemon

import (
	"context"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/moat-fw/moat/internal/alert"
	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/lookup"
)

// alertService runs the [alert] dispatcher on the event bus. apply
// starts, replaces or stops it to match the config in force, as a reload
// changes any other setting.
type alertService struct {
	mu   sync.Mutex
	ctx  context.Context // the daemon's; nil outside Run
	cfg  config.Alert
	set  bool
	disp *alert.Dispatcher
	stop context.CancelFunc
	done chan struct{}
	err  string // why alerts are off though configured
	// gone keeps the counts of dispatchers a reload replaced, so the
	// status's totals do not fall back to zero.
	gone alert.Stats
}

// AlertStatus is the alerts' part of `moat status`.
type AlertStatus struct {
	alert.Stats
	Error string `json:"error,omitempty"`
}

// alertBuffer is the bus subscription's queue: the dispatcher only
// filters and hands on, so it empties fast; [alert] queue bounds each
// destination.
const alertBuffer = 1024

// applyAlerts makes the dispatcher match cfg. It starts afresh at every
// apply and reload, even with the same [alert], so that a rotated token or
// password file is read again (alerts still queued then are lost). A
// secret file that cannot be read is logged and alerts stay off: alerts
// are not worth an unguarded host, and the status says why.
func (d *Daemon) applyAlerts(cfg config.Alert, minLevel int) {
	s := &d.alerts
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx == nil || !s.set && !cfg.Enabled() {
		return
	}
	s.cfg, s.set, s.err = cfg, true, ""
	s.stopLocked()
	if !cfg.Enabled() {
		return
	}
	host, _ := os.Hostname()
	disp, err := alert.New(cfg, alert.Options{Log: d.log.With("part", "alert"), Now: d.now, Hostname: host, MinLevel: minLevel,
		Lookup: func(ctx context.Context, a netip.Addr) lookup.Info { return d.addrInfo(ctx, a, 2*time.Second) }})
	if err != nil {
		s.err = err.Error()
		d.log.Error("alerts off", "err", err)
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	sub := d.events.Subscribe(ctx, alertBuffer)
	done := make(chan struct{})
	go func() {
		defer close(done)
		disp.Run(ctx, sub)
	}()
	s.disp, s.stop, s.done = disp, cancel, done
	d.log.Info("alerts on", "destinations", len(disp.Stats().Destinations))
}

// stopLocked ends the dispatcher and waits for it. Under s.mu.
func (s *alertService) stopLocked() {
	if s.stop == nil {
		return
	}
	s.stop()
	<-s.done
	st := s.disp.Stats()
	s.gone.Received += st.Received
	s.gone.BusDropped += st.BusDropped
	s.gone.Throttled += st.Throttled
	s.disp, s.stop, s.done = nil, nil, nil
}

// runAlerts starts alerts for the daemon's life; the returned function
// stops them.
func (d *Daemon) runAlerts(ctx context.Context, cfg config.Alert, minLevel int) (wait func()) {
	d.alerts.mu.Lock()
	d.alerts.ctx = ctx
	d.alerts.mu.Unlock()
	d.applyAlerts(cfg, minLevel)
	return func() {
		d.alerts.mu.Lock()
		defer d.alerts.mu.Unlock()
		d.alerts.stopLocked()
	}
}

func (d *Daemon) alertStatus() *AlertStatus {
	s := &d.alerts
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.disp == nil && s.err == "" {
		return nil
	}
	st := AlertStatus{Error: s.err, Stats: alert.Stats{Destinations: []alert.DestStats{}}}
	if s.disp != nil {
		st.Stats = s.disp.Stats()
	}
	st.Received += s.gone.Received
	st.BusDropped += s.gone.BusDropped
	st.Throttled += s.gone.Throttled
	return &st
}

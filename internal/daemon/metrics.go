package daemon

import (
	"context"
	"net"
	"sync"

	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/metrics"
)

// metricsServer runs the [metrics] endpoint. apply starts, moves or stops
// it to match the config in force, so a reload that changes [metrics]
// takes effect like any other setting.
type metricsServer struct {
	mu   sync.Mutex
	ctx  context.Context // the daemon's; nil outside Run (apply, flush)
	cfg  config.Metrics
	stop context.CancelFunc
	done <-chan struct{}
}

// apply makes the endpoint match cfg. A failure to listen is logged and
// the daemon goes on guarding: metrics are not worth an unguarded host.
func (d *Daemon) applyMetrics(cfg config.Metrics) {
	m := &d.metrics
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ctx == nil || (cfg == m.cfg && m.stop != nil) || (cfg.Listen == "" && m.stop == nil) {
		return
	}
	if m.stop != nil {
		m.stop()
		<-m.done
		m.stop, m.done = nil, nil
	}
	m.cfg = cfg
	if cfg.Listen == "" {
		d.log.Info("metrics endpoint off")
		return
	}
	h, err := metrics.Handler(metrics.NewCollector(func(context.Context) metrics.Snapshot {
		s := metricsSnapshot(d.snapshot())
		s.SPAGrant, s.KnockGrant = d.spaLat.metric(), d.knockLat.metric()
		return s
	}))
	if err != nil {
		d.log.Error("no metrics endpoint", "err", err)
		return
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		d.log.Error("no metrics endpoint; moat guards the host without it", "err", err)
		return
	}
	ctx, cancel := context.WithCancel(m.ctx)
	m.stop, m.done = cancel, metrics.Serve(ctx, ln, cfg.Path, h, func(err error) {
		d.log.Error("metrics endpoint stopped", "listen", cfg.Listen, "err", err)
	})
	d.log.Info("metrics endpoint on", "url", "http://"+cfg.Listen+cfg.Path)
}

// runMetrics starts the endpoint for the daemon's life; the returned
// function waits for it to stop once ctx has ended.
func (d *Daemon) runMetrics(ctx context.Context, cfg config.Metrics) (wait func()) {
	d.metrics.mu.Lock()
	d.metrics.ctx = ctx
	d.metrics.mu.Unlock()
	d.applyMetrics(cfg)
	return func() {
		d.metrics.mu.Lock()
		defer d.metrics.mu.Unlock()
		if d.metrics.stop != nil {
			d.metrics.stop()
			<-d.metrics.done
			d.metrics.stop = nil
		}
	}
}

// metricsSnapshot maps the status onto the metrics' plain numbers.
func metricsSnapshot(st Status) metrics.Snapshot {
	s := metrics.Snapshot{Enforcing: st.Enforcing, TablePresent: st.TablePresent, Kernel: map[string]metrics.Counter{},
		BansByOrigin: st.BansByOrigin, Allows: st.Allows, Protected: len(st.Protected), ProtectedLifted: st.LiftedBans,
		Reasserted: st.Reasserted, RulesRepaired: st.RulesRepaired, StoreWriteFailure: st.StoreWriteFailures}
	for name, c := range st.Counters {
		s.Kernel[name] = metrics.Counter{Packets: c.Packets, Bytes: c.Bytes}
	}
	if l := st.Login; l != nil {
		s.Login = &metrics.Login{Failures: l.Events, Unverified: l.Unverified, Bans: l.Banned, Counting: l.Counting}
	}
	if sc := st.Scan; sc != nil {
		t := sc.Report.Totals
		s.Scan = &metrics.Scan{Probes: t.Probes, Unscored: t.Unscored, Ignored: t.Ignored, Knocks: t.Knock,
			SourcesByLevel: sc.Report.Levels, Evicted: t.Evicted, Bans: sc.Blocked, Capped: sc.Capped}
	}
	if sp := st.SPA; sp != nil {
		s.SPA = &metrics.SPA{Accepted: sp.Accepted, Refused: sp.Refused}
	}

	if in := st.Intake; in != nil {
		s.NFLOG = &metrics.NFLOG{Bound: in.Bound, Received: in.Received, Lost: in.Lost, Overruns: in.Overruns,
			Datagrams: in.Datagrams, Foreign: in.Foreign}
	}
	if a := st.Alerts; a != nil {
		m := &metrics.Alerts{Events: a.Received, BusDropped: a.BusDropped, Throttled: a.Throttled}
		for _, d := range a.Destinations {
			m.Sent += d.Sent
			m.Failed += d.Failed
			m.Retried += d.Retried
			m.Dropped += d.Dropped
		}
		s.Alerts = m
	}
	for _, b := range st.Blocklists {
		mb := metrics.Blocklist{Name: b.Name, Entries: b.Entries, Ranges: b.Ranges, Failing: b.LastError != ""}
		if !b.LastRefresh.IsZero() {
			mb.LastRefresh = float64(b.LastRefresh.UnixNano()) / 1e9
		}
		s.Blocklists = append(s.Blocklists, mb)
	}
	return s
}

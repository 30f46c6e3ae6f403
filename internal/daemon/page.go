package daemon

import (
	"context"
	"net"
	"net/http"
	"sync"

	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/metrics"
	"github.com/moat-fw/moat/internal/page"
)

// pageServer runs the [page] endpoint. Like the metrics endpoint, apply
// starts, moves or stops it to match the config in force.
type pageServer struct {
	mu   sync.Mutex
	ctx  context.Context // the daemon's; nil outside Run
	cfg  config.Page
	dir  string // state_dir, where the token is kept
	stop context.CancelFunc
	done []<-chan struct{}
}

// PageState is what the live page shows: the status and the lists the
// status only counts.
type PageState struct {
	Status Status      `json:"status"`
	Bans   []EntryJSON `json:"bans"`
	Doors  []DoorJSON  `json:"doors"`
	Grants []GrantJSON `json:"grants"`
}

func (d *Daemon) pageState() PageState {
	st := PageState{Status: d.snapshot(), Bans: []EntryJSON{}, Doors: d.doorsList(), Grants: []GrantJSON{}}
	for _, e := range d.bans.List(d.now()) {
		st.Bans = append(st.Bans, ToJSON(e))
	}
	if gs, err := d.grantsList(); err == nil {
		st.Grants = gs
	}
	return st
}

// pageSample is the counters the page charts over time.
func pageSample(st Status, grants int) page.Sample {
	s := page.Sample{Bans: st.Bans, Grants: grants, Kernel: map[string]uint64{}}
	if st.Login != nil {
		s.LoginFailures = st.Login.Events
	}
	if st.Scan != nil {
		s.ScanProbes, s.Knocks = st.Scan.Report.Totals.Probes, st.Scan.Report.Totals.Knock
	}
	for name, c := range st.Counters {
		s.Kernel[name] = c.Packets
	}
	return s
}

// applyPage makes the page match cfg. A failure is logged and the daemon
// goes on guarding: a page is not worth an unguarded host.
func (d *Daemon) applyPage(cfg config.Page, stateDir string) {
	p := &d.page
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ctx == nil || (cfg == p.cfg && p.stop != nil) || (cfg.Listen == "" && p.stop == nil) {
		return
	}
	p.halt()
	p.cfg = cfg
	if cfg.Listen == "" {
		d.log.Info("live page off")
		return
	}
	if p.dir == "" {
		p.dir = stateDir // state_dir changes take effect at the next start
	}
	tok, err := page.Token(p.dir)
	if err != nil {
		d.log.Error("no live page; moat guards the host without it", "err", err)
		return
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		d.log.Error("no live page; moat guards the host without it", "err", err)
		return
	}
	pg := page.New(page.Options{Token: tok, Bus: d.events, Now: d.now,
		State:  func() any { return d.pageState() },
		Addr:   http.HandlerFunc(d.addrStatus),
		Sample: func() page.Sample { st := d.pageState(); return pageSample(st.Status, len(st.Grants)) },
	})
	ctx, cancel := context.WithCancel(p.ctx)
	ran := make(chan struct{})
	go func() { defer close(ran); pg.Run(ctx) }()
	served := metrics.Serve(ctx, ln, "/", pg, func(err error) {
		d.log.Error("live page stopped", "listen", cfg.Listen, "err", err)
	})
	p.stop, p.done = cancel, []<-chan struct{}{ran, served}
	d.log.Info("live page on: `moat page url` prints its address with the token", "listen", cfg.Listen)
}

// halt stops the page and waits for it; p.mu is held.
func (p *pageServer) halt() {
	if p.stop == nil {
		return
	}
	p.stop()
	for _, c := range p.done {
		<-c
	}
	p.stop, p.done = nil, nil
}

// runPage starts the page for the daemon's life; the returned function
// stops it and waits once ctx has ended.
func (d *Daemon) runPage(ctx context.Context, cfg *config.Config) (wait func()) {
	d.page.mu.Lock()
	d.page.ctx = ctx
	d.page.mu.Unlock()
	d.applyPage(cfg.Page, cfg.Daemon.StateDir)
	return func() {
		d.page.mu.Lock()
		defer d.page.mu.Unlock()
		d.page.halt()
	}
}

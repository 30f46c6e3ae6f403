// Package alert tells the administrator what moat's guards did, as psad
// mails its alerts: webhooks (a JSON POST, retried with backoff), syslog
// (a line to the local socket) and e-mail (through an SMTP relay).
//
// It reads the daemon's event bus (package events). Nothing here may slow
// a guard: the bus drops what a full subscriber queue cannot take, each
// destination has its own bounded queue and goroutine, and what does not
// fit is dropped and counted. Alerts are throttled per address and in
// total by token buckets; what the buckets hold back is counted and
// mentioned in the next alert that goes out.
//
// Secrets (a webhook's bearer token, the SMTP password) are read from
// files when the Dispatcher is made and never written anywhere else: not
// in logs, errors, status or the alerts themselves.
package alert

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/events"
	"github.com/moat-fw/moat/internal/lookup"
)

// Alert is what a destination is told: one event, with what moat knows of
// its address, and how many alerts the throttle held back before it.
type Alert struct {
	events.Event
	Addr       string `json:"addr"`                 // the address or network, "203.0.113.7" or "2001:db8::/64"
	MoatHost   string `json:"moat_host"`            // the host moat guards
	Text       string `json:"text"`                 // one line for people
	Suppressed uint64 `json:"suppressed,omitempty"` // alerts held back by the throttle since the last one sent
	Info       Info   `json:"info,omitzero"`        // what a look-up tells of Addr
	Dropped    uint64 `json:"dropped,omitempty"`    // events this destination's full queue lost so far
}

// Info is what look-ups tell of an address: its name, country, network.
type Info = lookup.Info

// Sender delivers an alert to one destination. Send may take time (the
// Dispatcher calls it from the destination's own goroutine) and reports
// whether a failure is worth retrying.
type Sender interface {
	Send(ctx context.Context, a *Alert) error
}

// Permanent marks an error retrying would not cure (a 400 from a
// webhook, a refused recipient).
type Permanent struct{ Err error }

func (e *Permanent) Error() string { return e.Err.Error() }
func (e *Permanent) Unwrap() error { return e.Err }

// Options are what a Dispatcher needs from its host.
type Options struct {
	Log      *slog.Logger
	Now      func() time.Time
	Hostname string
	// Lookup tells what is known of an address (nil: nothing); it runs on
	// a destination's goroutine and must bound its own time.
	Lookup func(ctx context.Context, a netip.Addr) Info
	// Backoff is the first retry's wait, doubled after each (default 1s).
	Backoff time.Duration
	// MinLevel leaves out scan events below it for every destination
	// ([report] min_level, psad's MIN_DANGER_LEVEL).
	MinLevel int
	// senders replaces the configured destinations (tests).
	senders []namedSender
}

// Dispatcher filters, throttles and queues events for each destination.
type Dispatcher struct {
	opt   Options
	cfg   config.Alert
	dests []*dest

	mu         sync.Mutex
	perAddr    map[netip.Prefix]*bucket
	total      bucket
	suppressed uint64 // held back since the last alert that went out
	heldBack   atomic.Uint64
	received   atomic.Uint64
	busDropped func() uint64
}

type namedSender struct {
	name   string
	filter config.AlertFilter
	s      Sender
	retry  int
}

type dest struct {
	namedSender
	q       chan *Alert
	sent    atomic.Uint64
	failed  atomic.Uint64
	dropped atomic.Uint64
	retried atomic.Uint64
	lastErr atomic.Pointer[string]
}

// New makes a Dispatcher for cfg. It reads the secret files now, so a
// missing file fails the start (or the reload) with the key that names it.
func New(cfg config.Alert, opt Options) (*Dispatcher, error) {
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Backoff <= 0 {
		opt.Backoff = time.Second
	}
	d := &Dispatcher{opt: opt, cfg: cfg, perAddr: map[netip.Prefix]*bucket{}, busDropped: func() uint64 { return 0 }}
	senders := opt.senders
	if senders == nil {
		for i, w := range cfg.Webhooks {
			s, err := newWebhook(w)
			if err != nil {
				return nil, fmt.Errorf("alert.webhook[%d]: %w", i, err)
			}
			senders = append(senders, namedSender{"webhook " + s.site(), w.Filter, s, w.Retries})
		}
		if sc := cfg.Syslog; sc != nil {
			senders = append(senders, namedSender{"syslog " + sc.Socket, sc.Filter, newSyslog(*sc, opt.Hostname), 2})
		}
		if ec := cfg.Email; ec != nil {
			s, err := newEmail(*ec, opt.Hostname)
			if err != nil {
				return nil, fmt.Errorf("alert.email: %w", err)
			}
			senders = append(senders, namedSender{fmt.Sprintf("email via %s:%d", ec.Host, ec.Port), ec.Filter, s, 3})
		}
	}
	for _, s := range senders {
		d.dests = append(d.dests, &dest{namedSender: s, q: make(chan *Alert, max(cfg.Queue, 1))})
	}
	return d, nil
}

// Run sends what sub delivers until ctx ends, and waits for the
// destinations' goroutines. Events still queued when ctx ends are lost.
func (d *Dispatcher) Run(ctx context.Context, sub *events.Sub) {
	d.mu.Lock()
	d.busDropped = sub.Dropped
	d.mu.Unlock()
	var wg sync.WaitGroup
	for _, ds := range d.dests {
		wg.Go(func() { d.deliver(ctx, ds) })
	}
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case e, ok := <-sub.C:
			if !ok {
				wg.Wait()
				return
			}
			d.Handle(e)
		}
	}
}

// Handle filters, throttles and queues one event. It never blocks.
func (d *Dispatcher) Handle(e events.Event) {
	d.received.Add(1)
	if e.Kind == events.Scan && e.Level < d.opt.MinLevel {
		return
	}
	var want []*dest
	for _, ds := range d.dests {
		if Match(ds.filter, &e) {
			want = append(want, ds)
		}
	}
	if len(want) == 0 {
		return
	}
	now := d.opt.Now()
	d.mu.Lock()
	if !d.allow(e.Prefix, now) {
		d.suppressed++
		d.mu.Unlock()
		d.heldBack.Add(1)
		return
	}
	supp := d.suppressed
	d.suppressed = 0
	d.mu.Unlock()
	a := &Alert{Event: e, Addr: prefixString(e.Prefix), MoatHost: d.opt.Hostname, Suppressed: supp}
	for _, ds := range want {
		select {
		case ds.q <- a:
		default:
			ds.dropped.Add(1)
		}
	}
}

// allow takes a token from the address's bucket and the total's. Under
// d.mu.
func (d *Dispatcher) allow(p netip.Prefix, now time.Time) bool {
	b := d.perAddr[p]
	if b == nil {
		if len(d.perAddr) >= maxTracked {
			d.sweep(now)
		}
		b = &bucket{}
		d.perAddr[p] = b
	}
	// Check both before taking either, so an address held back does not
	// spend the total's tokens.
	if !b.has(d.cfg.PerAddress, now) || !d.total.has(d.cfg.Total, now) {
		return false
	}
	b.tokens--
	d.total.tokens--
	return true
}

// maxTracked bounds the per-address buckets: a flood of forged sources
// costs at most this many.
const maxTracked = 4096

// sweep forgets the buckets that have refilled (they would start full
// anyway), and every bucket if that is not enough.
func (d *Dispatcher) sweep(now time.Time) {
	for p, b := range d.perAddr {
		if b.has(d.cfg.PerAddress, now) && b.tokens >= float64(d.cfg.PerAddress.N) {
			delete(d.perAddr, p)
		}
	}
	if len(d.perAddr) >= maxTracked {
		clear(d.perAddr)
	}
}

// bucket is a token bucket refilled at rate.N per rate.Per up to rate.N.
type bucket struct {
	tokens float64
	last   time.Time
	init   bool
}

// has refills b to now and reports whether a token is there.
func (b *bucket) has(r config.Rate, now time.Time) bool {
	if !b.init {
		b.tokens, b.last, b.init = float64(r.N), now, true
	}
	if dt := now.Sub(b.last); dt > 0 && r.Per > 0 {
		b.tokens = min(float64(r.N), b.tokens+float64(r.N)*dt.Seconds()/r.Per.Seconds())
		b.last = now
	}
	return b.tokens >= 1
}

// deliver sends ds's queue, retrying with exponential backoff.
func (d *Dispatcher) deliver(ctx context.Context, ds *dest) {
	for {
		var a *Alert
		select {
		case <-ctx.Done():
			return
		case a = <-ds.q:
		}
		b := *a // each destination its own copy: Info and Dropped are filled here
		b.Dropped = ds.dropped.Load()
		if d.opt.Lookup != nil && b.Prefix.IsSingleIP() {
			b.Info = d.opt.Lookup(ctx, b.Prefix.Addr())
		}
		b.Text = text(&b)
		err := d.attempt(ctx, ds, &b)
		if err != nil {
			ds.failed.Add(1)
			msg := err.Error()
			ds.lastErr.Store(&msg)
			d.opt.Log.Warn("alert not delivered", "to", ds.name, "kind", a.Kind, "addr", a.Addr, "err", err)
			continue
		}
		ds.sent.Add(1)
	}
}

func (d *Dispatcher) attempt(ctx context.Context, ds *dest, a *Alert) error {
	wait := d.opt.Backoff
	for try := 0; ; try++ {
		err := ds.s.Send(ctx, a)
		var perm *Permanent
		if err == nil || try >= ds.retry || errors.As(err, &perm) || ctx.Err() != nil {
			return err
		}
		ds.retried.Add(1)
		d.opt.Log.Debug("alert failed; retrying", "to", ds.name, "in", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, 5*time.Minute)
	}
}

// Match reports whether f lets e through.
func Match(f config.AlertFilter, e *events.Event) bool {
	if len(f.Kinds) > 0 && !slices.Contains(f.Kinds, string(e.Kind)) {
		return false
	}
	switch e.Kind {
	case events.Scan:
		if e.Level < f.MinLevel {
			return false
		}
	case events.Ban, events.Unban:
		if len(f.Origins) > 0 && !slices.Contains(f.Origins, e.Origin) {
			return false
		}
	case events.Door:
		if len(f.DoorActions) > 0 && !slices.Contains(f.DoorActions, e.Action) {
			return false
		}
	}
	if f.Fleet && e.Host == "" && !e.Fleet && e.Origin != "fleet" {
		return false
	}
	return true
}

// Stats counts what became of the events, for status and metrics.
type Stats struct {
	Received     uint64      `json:"received"`    // events read from the bus
	BusDropped   uint64      `json:"bus_dropped"` // events the bus dropped: the dispatcher fell behind
	Throttled    uint64      `json:"throttled"`   // alerts held back by per_address or total
	Destinations []DestStats `json:"destinations"`
}

// DestStats are one destination's counts. The name holds no secret.
type DestStats struct {
	Name    string `json:"name"`
	Sent    uint64 `json:"sent"`
	Failed  uint64 `json:"failed"`  // given up after the retries
	Retried uint64 `json:"retried"` // attempts that failed and were retried
	Dropped uint64 `json:"dropped"` // alerts lost to a full queue
	Queued  int    `json:"queued"`
	LastErr string `json:"last_error,omitempty"`
}

// Stats returns the counts so far.
func (d *Dispatcher) Stats() Stats {
	d.mu.Lock()
	bd := d.busDropped
	d.mu.Unlock()
	st := Stats{Received: d.received.Load(), BusDropped: bd(), Throttled: d.heldBack.Load(), Destinations: []DestStats{}}
	for _, ds := range d.dests {
		s := DestStats{Name: ds.name, Sent: ds.sent.Load(), Failed: ds.failed.Load(), Retried: ds.retried.Load(), Dropped: ds.dropped.Load(), Queued: len(ds.q)}
		if e := ds.lastErr.Load(); e != nil {
			s.LastErr = *e
		}
		st.Destinations = append(st.Destinations, s)
	}
	return st
}

func prefixString(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// text is the alert in one line, for syslog, mail subjects and
// webhook consumers that show text.
func text(a *Alert) string {
	var b strings.Builder
	who := a.Addr
	if i := a.Info; i.Name != "" || i.Country != "" || i.ASN != 0 {
		var parts []string
		if i.Name != "" {
			parts = append(parts, i.Name)
		}
		if i.Country != "" {
			parts = append(parts, i.Country)
		}
		if i.ASN != 0 {
			parts = append(parts, fmt.Sprintf("AS%d %s", i.ASN, i.ASOrg))
		}
		who += " (" + strings.TrimSpace(strings.Join(parts, ", ")) + ")"
	}
	switch a.Kind {
	case events.Ban:
		fmt.Fprintf(&b, "banned %s", who)
		if !a.Until.IsZero() {
			fmt.Fprintf(&b, " until %s", a.Until.UTC().Format(time.DateTime+" UTC"))
		}
		fmt.Fprintf(&b, " by %s", a.Origin)
		if a.Host != "" {
			fmt.Fprintf(&b, " (fleet host %s)", a.Host)
		}
		if a.Reason != "" {
			fmt.Fprintf(&b, ": %s", a.Reason)
		}
	case events.Unban:
		fmt.Fprintf(&b, "unbanned %s (%s)", who, a.Origin)
	case events.Scan:
		fmt.Fprintf(&b, "scan from %s: danger level %d (%s), %d probes to %d ports", who, a.Level, a.Types, a.Probes, a.NPorts)
	case events.Door:
		fmt.Fprintf(&b, "door %s %s for %s", a.Door, a.Action, who)
		if len(a.Ports) > 0 {
			fmt.Fprintf(&b, " (%s)", strings.Join(a.Ports, " "))
		}
	default:
		fmt.Fprintf(&b, "%s %s", a.Kind, who)
	}
	if a.Suppressed > 0 {
		fmt.Fprintf(&b, " [%d earlier alerts held back by the throttle]", a.Suppressed)
	}
	if a.MoatHost != "" {
		return "moat on " + a.MoatHost + ": " + clean(b.String())
	}
	return "moat: " + clean(b.String())
}

// clean keeps a line one line: reasons can quote what a client sent.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

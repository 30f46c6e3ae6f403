// Package fleet shares bans between moat hosts through a NATS JetStream
// key-value bucket: each shared ban is a key (the encoded prefix) whose
// value says who banned it, why and until when, with a per-key TTL equal
// to the ban's remaining time so the bucket forgets it when it ends. Each
// host publishes its guards' bans from the events bus (never slowing
// them: a bounded queue, drops counted) and watches the bucket, applying
// what others banned through the ban policy, where local protection always
// wins. On every connect it replays the bucket's current state, applied
// as it is read in chunks of tens of thousands (one kernel transaction
// each), so a host that was away, or joins with a million bans live in
// the fleet, catches up in a few dozen transactions and bounded memory.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/moat-fw/moat/internal/ban"
	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/events"
	"github.com/moat-fw/moat/internal/store"
)

// Bans is what the fleet needs of the ban policy.
type Bans interface {
	AddRemote(rs []ban.Remote, now time.Time) ([]ban.Outcome, error)
	DelRemote(p netip.Prefix, now time.Time) (bool, error)
	Each(now time.Time, fn func(store.Entry))
	RemoteBacklog() int
	Flush()
	HoldRemoteWrites()
	ReleaseRemoteWrites(saved func())
}

var _ Bans = (*ban.Manager)(nil)

// Reasons a remote ban is not applied, besides ban's Skip* ones.
const (
	RefuseOrigin   = "origin"    // its origin is not in accept
	RefuseHost     = "host"      // its host is not in accept_hosts
	RefuseMinCount = "min_count" // its host had banned it fewer than min_count times
	RefuseInvalid  = "bad_value" // the key or value does not decode
)

// lagSamples is how many recent propagation delays status summarizes.
const lagSamples = 1024

// Fleet is one host's membership of a fleet.
type Fleet struct {
	cfg  config.Fleet
	host string
	bans Bans
	bus  *events.Bus
	log  *slog.Logger
	now  func() time.Time

	expect func(keys int) // see OnReplay

	// Owned by the applier of the watch under way (one at a time).
	reasons map[reasonKey]string // ban reasons as written here, by what they are made of
	req     []ban.Remote
	puts    []update

	mu    sync.Mutex
	st    Status
	lag   []time.Duration // ring of the last lagSamples delays
	lagAt int
	sub   *events.Sub
}

// New returns a fleet member named host (see config.Fleet.HostOrDefault).
// It does nothing until Run.
func New(cfg config.Fleet, host string, bans Bans, bus *events.Bus, log *slog.Logger, now func() time.Time) *Fleet {
	f := &Fleet{cfg: cfg, host: host, bans: bans, bus: bus, log: log, now: now}
	f.st = Status{Enabled: true, Host: host, Bucket: cfg.Bucket, Servers: cfg.Servers,
		Refused: map[string]uint64{}, hosts: map[string]*HostSeen{}}
	return f
}

// OnReplay sets fn to be told, before a replay applies anything, how
// many keys the bucket holds beyond the fleet bans this host already has:
// the daemon makes room in the kernel's sets for them at once. Call it
// before Run.
func (f *Fleet) OnReplay(fn func(keys int)) { f.expect = fn }

// Run takes part in the fleet until ctx ends: it connects (retrying while
// the servers are unreachable or too old; local protection goes on
// meanwhile), publishes local bans and applies remote ones.
func (f *Fleet) Run(ctx context.Context) error {
	sub := f.bus.Subscribe(ctx, f.cfg.Queue)
	f.mu.Lock()
	f.sub = sub
	f.mu.Unlock()
	wait := 500 * time.Millisecond
	for ctx.Err() == nil {
		nc, kv, err := Dial(ctx, f.cfg, f.host, Handlers{Disconnected: f.disconnected})
		if err != nil {
			f.setErr(err)
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
			wait = min(2*wait, 15*time.Second)
			continue
		}
		wait = 500 * time.Millisecond
		f.log.Info("fleet: connected", "server", nc.ConnectedUrlRedacted(), "version", nc.ConnectedServerVersion(), "bucket", f.cfg.Bucket, "host", f.host)
		err = f.session(ctx, nc, kv, sub)
		nc.Close()
		f.mu.Lock()
		f.st.Connected = false
		f.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			f.setErr(err)
		}
	}
	return nil
}

func (f *Fleet) setErr(err error) {
	f.mu.Lock()
	changed := f.st.Error != err.Error()
	f.st.Error = err.Error()
	f.st.Connected = false
	f.mu.Unlock()
	if changed {
		f.log.Warn("fleet: not connected; local protection goes on, and remote bans are caught up on connect", "err", err)
	}
}

func (f *Fleet) disconnected(err error) {
	f.mu.Lock()
	f.st.Connected = false
	if err != nil {
		f.st.Error = "disconnected: " + err.Error()
	}
	f.mu.Unlock()
	f.log.Warn("fleet: disconnected from NATS; reconnecting", "err", err)
}

// session runs one connection: until it closes or ctx ends.
func (f *Fleet) session(ctx context.Context, nc *nats.Conn, kv jetstream.KeyValue, sub *events.Sub) error {
	pub, err := newPublisher(nc, f)
	if err != nil {
		return err
	}
	changes := nc.StatusChanged(nats.CONNECTED, nats.CLOSED)
	defer nc.RemoveStatusListener(changes)
	f.mu.Lock()
	f.st.Connected, f.st.Error = true, ""
	f.st.Server, f.st.ServerVersion = nc.ConnectedUrlRedacted(), nc.ConnectedServerVersion()
	f.mu.Unlock()

	g, gctx := errgroup.WithContext(ctx)
	resync := make(chan struct{}, 1)
	g.Go(func() error {
		for {
			select {
			case <-gctx.Done():
				return nil
			case s := <-changes:
				if s == nats.CLOSED {
					return errors.New("connection closed")
				}
				if err := CheckVersion(nc.ConnectedServerVersion()); err != nil {
					return fmt.Errorf("fleet: reconnected to %s: %w", nc.ConnectedUrlRedacted(), err)
				}
				f.mu.Lock()
				f.st.Connected, f.st.Error = true, ""
				f.st.Server, f.st.ServerVersion = nc.ConnectedUrlRedacted(), nc.ConnectedServerVersion()
				f.mu.Unlock()
				f.log.Info("fleet: reconnected; replaying the bucket", "server", nc.ConnectedUrlRedacted())
				select {
				case resync <- struct{}{}:
				default:
				}
			}
		}
	})
	g.Go(func() error { return pub.run(gctx, kv, sub) })
	g.Go(func() error {
		for {
			err := f.watch(gctx, kv, pub, resync)
			if gctx.Err() != nil {
				return nil
			}
			if err != nil && !errors.Is(err, errResync) {
				f.log.Warn("fleet: watching the bucket failed; starting over", "err", err)
				select {
				case <-gctx.Done():
					return nil
				case <-time.After(time.Second):
				}
			}
		}
	})
	return g.Wait()
}

// errResync ends a watch so that the next replays the bucket.
var errResync = errors.New("resync")

// update is one bucket entry as a watch's reader hands it to its applier.
type update struct {
	p        netip.Prefix
	v        Value         // a put's
	del      bool          // an unban at some host
	caughtUp bool          // the bucket's state when the watch began is all in
	read     time.Duration // with caughtUp: how long reading it took
}

// Sizes of the hand-over from a watch's reader to its applier.
const (
	// replayChunk: while the bucket's state is read, the applier takes
	// updates by this many at least (one kernel transaction and one store
	// write each), bounding the memory of a join of a million bans.
	replayChunk = 32768
	// inboxMax bounds the updates waiting for the applier; past it the
	// reader waits, and with it the server (flow control).
	inboxMax = 2 * replayChunk
	// storeBacklog bounds the applied bans waiting for the store: past it
	// the applier waits for the disk instead of piling them up in memory.
	storeBacklog = 4 * replayChunk
	// liveBuf is the most updates whose buffer the applier keeps between
	// live batches.
	liveBuf = 4096
)

// inbox hands decoded updates from a watch's reader to its applier. The
// reader goes on decoding while the applier waits for the kernel, and the
// applier takes everything waiting at once: a burst costs one kernel
// transaction, and a lone ban after a quiet spell goes through the moment
// it arrives, never held back to fill a batch.
type inbox struct {
	mu    sync.Mutex
	items []update
	ready chan struct{} // a token: items are worth taking
	room  chan struct{} // a token: the applier took items
}

func newInbox() *inbox {
	return &inbox{ready: make(chan struct{}, 1), room: make(chan struct{}, 1)}
}

// put queues u, waiting while the inbox is full. wake says whether the
// applier should take it now (false while a replay chunk fills). It
// reports false if ctx ended first.
func (q *inbox) put(ctx context.Context, u update, wake bool) bool {
	for {
		q.mu.Lock()
		if len(q.items) < inboxMax {
			q.items = append(q.items, u)
			wake = wake || len(q.items) >= replayChunk
			q.mu.Unlock()
			if wake {
				signal(q.ready)
			}
			return true
		}
		q.mu.Unlock()
		signal(q.ready)
		select {
		case <-ctx.Done():
			return false
		case <-q.room:
		}
	}
}

// take returns the waiting updates and keeps buf, emptied, for the next.
func (q *inbox) take(buf []update) []update {
	q.mu.Lock()
	out := q.items
	q.items = buf[:0]
	q.mu.Unlock()
	signal(q.room)
	return out
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// watch replays the bucket's state, then applies updates, until resync
// (a reconnect), an error or ctx's end. A reader goroutine (this one)
// decodes what the watcher delivers; an applier applies it.
func (f *Fleet) watch(ctx context.Context, kv jetstream.KeyValue, pub *publisher, resync <-chan struct{}) error {
	// Drop a resync asked before this watch: it replays anyway.
	select {
	case <-resync:
	default:
	}
	rp := f.startReplay(pub)
	t0, here := rp.t0, len(rp.here) // before the applier owns rp
	// The replay's store writes wait until it is in the kernel (see
	// ban.Manager.HoldRemoteWrites); a watch that ends before that
	// releases them here (the applier has stopped by then).
	f.bans.HoldRemoteWrites()
	defer f.bans.ReleaseRemoteWrites(nil)
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch bucket: %w", err)
	}
	defer func() {
		// Stopping deletes the consumer: a request to the server that,
		// with the server away, waits out its timeout and would hold up
		// moat's stop. At the end the connection closes next, and the
		// server drops the ephemeral consumer on its own.
		if ctx.Err() == nil {
			w.Stop()
		}
	}()
	q := newInbox()
	actx, stop := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		f.applier(actx, q, rp, pub)
	}()
	defer func() { stop(); <-stopped }()
	var d decoder
	initial, asked := true, false
	for {
		var e jetstream.KeyValueEntry
		var ok bool
		select {
		case <-ctx.Done():
			return nil
		case <-resync:
			return errResync
		case e, ok = <-w.Updates():
			if !ok {
				return errors.New("watcher ended")
			}
		}
		u := update{caughtUp: true, read: time.Since(t0)}
		if e != nil && !asked && f.expect != nil {
			// This entry and those after it, less the fleet bans already
			// here (a reconnect replays what this host mostly has).
			f.expect(max(int(e.Delta())+1-here, 0))
		}
		asked = true
		if e != nil {
			if u, ok = f.decode(&d, e); !ok {
				continue
			}
		}
		if !q.put(actx, u, !initial || u.caughtUp) {
			return nil
		}
		initial = initial && !u.caughtUp
	}
}

// decode reads a bucket entry: a put or a delete (an unban). A purge (a
// TTL running out, or an operator's purge) is skipped: the ban here
// times out on its own.
func (f *Fleet) decode(d *decoder, e jetstream.KeyValueEntry) (update, bool) {
	p, err := ParseKey(e.Key())
	if err != nil {
		f.refuse(RefuseInvalid, 1)
		return update{}, false
	}
	switch e.Operation() {
	case jetstream.KeyValuePut:
	case jetstream.KeyValueDelete:
		return update{p: p, del: true}, true
	default:
		return update{}, false
	}
	v, err := d.value(e.Value())
	if err != nil {
		f.refuse(RefuseInvalid, 1)
		f.log.Debug("fleet: bad value", "key", e.Key(), "err", err)
		return update{}, false
	}
	return update{p: p, v: v}, true
}

// accepted says why the config refuses v, or "".
func (f *Fleet) accepted(v Value) string {
	switch {
	case !slices.Contains(f.cfg.Accept, v.Origin):
		return RefuseOrigin
	case len(f.cfg.AcceptHosts) > 0 && !slices.Contains(f.cfg.AcceptHosts, v.Host):
		return RefuseHost
	case v.Count < f.cfg.MinCount:
		return RefuseMinCount
	}
	return ""
}

// applier applies what the reader hands over, until ctx ends: the
// replay's chunks until the caught-up mark, live updates after it.
func (f *Fleet) applier(ctx context.Context, q *inbox, rp *replay, pub *publisher) {
	var buf []update
	for {
		select {
		case <-ctx.Done():
			return
		case <-q.ready:
		}
		all := q.take(buf)
		us := all
		for rp != nil && len(us) > 0 {
			i := slices.IndexFunc(us, func(u update) bool { return u.caughtUp })
			if i < 0 {
				f.replayChunk(rp, us)
				us = nil
				break
			}
			f.replayChunk(rp, us[:i])
			f.finishReplay(rp, pub, us[i].read)
			rp, us = nil, us[i+1:]
		}
		if len(us) > 0 {
			f.live(us)
		}
		clear(all) // let go of the values' strings
		buf = all
		if rp == nil && cap(buf) > liveBuf {
			buf = nil // the replay's big buffer goes; a live burst grows another
		}
	}
}

// pkey is a prefix as a map key without a pointer (a netip.Prefix holds
// one), so a set of a million is never scanned by the collector.
type pkey struct {
	a    [16]byte
	bits uint8
	v6   bool
}

func pkeyOf(p netip.Prefix) pkey {
	return pkey{a: p.Addr().As16(), bits: uint8(p.Bits()), v6: p.Addr().Is6()}
}

func (k pkey) prefix() netip.Prefix {
	if k.v6 {
		return netip.PrefixFrom(netip.AddrFrom16(k.a), int(k.bits))
	}
	return netip.PrefixFrom(netip.AddrFrom16(k.a).Unmap(), int(k.bits))
}

// replay is a replay of the bucket under way.
type replay struct {
	// here holds the fleet bans here when the watch began, and own this
	// host's bans the fleet should have; each key the bucket shows is
	// struck off. What is left of here at the end was unbanned while this
	// host was away (lifted); what is left of own, the bucket lacks
	// (published again).
	here          map[pkey]struct{}
	own           map[pkey]store.Entry
	keys, applied int
	puts          []update
	t0            time.Time // when the watch began, for status
}

func (f *Fleet) startReplay(pub *publisher) *replay {
	rp := &replay{here: map[pkey]struct{}{}, own: map[pkey]store.Entry{}, t0: time.Now()}
	f.bans.Each(f.now(), func(e store.Entry) {
		switch {
		case e.Origin == ban.OriginFleet:
			rp.here[pkeyOf(e.Prefix)] = struct{}{}
		case pub.publishable(e):
			rp.own[pkeyOf(e.Prefix)] = e
		}
	})
	return rp
}

// replayChunk applies part of the bucket's state.
func (f *Fleet) replayChunk(rp *replay, us []update) {
	puts := slices.Grow(rp.puts[:0], len(us))
	for _, u := range us {
		k := pkeyOf(u.p)
		if u.del {
			// Unbanned since the watch began (a delete reads after the
			// put it ends): lifted at the end if it is a fleet ban here.
			rp.here[k] = struct{}{}
			continue
		}
		if len(rp.own) > 0 {
			delete(rp.own, k)
		}
		if u.v.Host == f.host || f.accepted(u.v) != "" {
			continue
		}
		delete(rp.here, k)
		puts = append(puts, u)
	}
	rp.keys += len(puts)
	rp.applied += f.apply(puts, f.now(), false)
	clear(puts)
	rp.puts = puts[:0]
}

// finishReplay lifts the fleet bans here that the bucket no longer has
// (unbanned while this host was away) and publishes this host's own bans
// that the bucket lacks (made while NATS was unreachable).
func (f *Fleet) finishReplay(rp *replay, pub *publisher, read time.Duration) {
	now := f.now()
	lifted := 0
	for k := range rp.here {
		p := k.prefix()
		if ok, err := f.bans.DelRemote(p, now); err != nil {
			f.log.Warn("fleet: lifting a ban the fleet no longer has", "addr", ban.PrefixString(p), "err", err)
		} else if ok {
			lifted++
		}
	}
	own := make([]store.Entry, 0, len(rp.own))
	for _, e := range rp.own {
		own = append(own, e)
	}
	republished := pub.missing(own, now)
	took := time.Since(rp.t0)
	last := &Replay{At: now, Keys: rp.keys, Applied: rp.applied, Lifted: lifted, Republished: republished,
		Read: Duration(read), Took: Duration(took)}
	f.mu.Lock()
	f.st.Removed += uint64(lifted)
	f.st.Replays++
	f.st.LastReplay = last
	f.mu.Unlock()
	t0, keys := rp.t0, rp.applied
	f.bans.ReleaseRemoteWrites(func() {
		saved := time.Since(t0)
		f.mu.Lock()
		if f.st.LastReplay == last { // not a later replay's
			c := *last // readers hold copies of the old one
			c.Saved = Duration(saved)
			f.st.LastReplay = &c
		}
		f.mu.Unlock()
		f.log.Info("fleet: the replayed bans are saved", "applied", keys, "since the replay began", saved.Round(time.Millisecond))
	})
	f.log.Info("fleet: replayed the bucket", "keys", rp.keys, "applied", rp.applied, "lifted", lifted, "republished", republished,
		"read", read.Round(time.Millisecond), "took", took.Round(time.Millisecond))
}

// live applies updates as they arrive.
func (f *Fleet) live(us []update) {
	now := f.now()
	puts := f.puts[:0]
	defer func() { clear(puts); f.puts = puts[:0] }()
	for _, u := range us {
		if !u.del {
			if u.v.Host == f.host {
				continue
			}
			f.seen(u.v.Host, now)
			if why := f.accepted(u.v); why != "" {
				f.refuse(why, 1)
				continue
			}
			puts = append(puts, u)
			continue
		}
		// An unban at some host: what came before it goes first.
		if len(puts) > 0 {
			f.apply(puts, now, true)
			puts = puts[:0]
		}
		ok, err := f.bans.DelRemote(u.p, now)
		if err != nil {
			f.log.Warn("fleet: remote unban", "addr", ban.PrefixString(u.p), "err", err)
		}
		if ok {
			f.mu.Lock()
			f.st.Removed++
			f.mu.Unlock()
			f.bus.Publish(events.Event{Time: now, Kind: events.Unban, Prefix: u.p, Origin: ban.OriginFleet})
			f.log.Info("fleet: unbanned by the fleet", "addr", ban.PrefixString(u.p))
		}
	}
	if len(puts) > 0 {
		f.apply(puts, now, true)
	}
}

// reasonKey is what a remote ban's reason here is made of.
type reasonKey struct{ origin, host, reason string }

// reason words a remote ban's reason, keeping the few a fleet repeats.
func (f *Fleet) reason(v Value) string {
	k := reasonKey{v.Origin, v.Host, v.Reason}
	if s, ok := f.reasons[k]; ok {
		return s
	}
	s := fmt.Sprintf("%s at %s: %s", v.Origin, v.Host, v.Reason)
	if f.reasons == nil || len(f.reasons) >= maxInterned {
		f.reasons = map[reasonKey]string{}
	}
	f.reasons[k] = s
	return s
}

// apply hands remote bans to the policy and counts what it did. live
// bans are announced on the bus and their delay recorded.
func (f *Fleet) apply(rs []update, now time.Time, live bool) int {
	if len(rs) == 0 {
		return 0
	}
	req := f.req[:0]
	for _, r := range rs {
		req = append(req, ban.Remote{Prefix: r.p, Until: r.v.Until, Host: r.v.Host, Reason: f.reason(r.v)})
	}
	out, err := f.bans.AddRemote(req, now)
	clear(req)
	f.req = req[:0]
	if err != nil {
		f.log.Error("fleet: applying remote bans", "err", err)
	}
	if f.bans.RemoteBacklog() > storeBacklog {
		f.bans.Flush()
	}
	applied := 0
	f.mu.Lock()
	for i, o := range out {
		r := rs[i]
		if !live {
			f.seenLocked(r.v.Host, now)
		}
		if o.Skipped != "" {
			f.st.Refused[o.Skipped]++
			if o.Skipped == ban.SkipProtected {
				f.log.Warn("fleet: refused a remote ban of a protected address", "addr", ban.PrefixString(r.p), "host", r.v.Host, "why", o.Detail)
			}
			continue
		}
		applied++
		f.st.Received++
		if h := f.st.hosts[r.v.Host]; h != nil {
			h.Received++
		}
		if live {
			f.recordLag(now.Sub(r.v.Created))
		}
	}
	f.mu.Unlock()
	if live {
		for i, o := range out {
			if o.Skipped == "" {
				ev := events.Event{Time: now, Kind: events.Ban, Prefix: o.Entry.Prefix, Origin: ban.OriginFleet,
					Reason: o.Entry.Reason, Until: o.Entry.Expires, Count: o.Entry.Count, Host: rs[i].v.Host}
				f.bus.Publish(ev)
			}
		}
	}
	return applied
}

func (f *Fleet) refuse(why string, n uint64) {
	f.mu.Lock()
	f.st.Refused[why] += n
	f.mu.Unlock()
}

func (f *Fleet) seen(host string, now time.Time) {
	f.mu.Lock()
	f.seenLocked(host, now)
	f.mu.Unlock()
}

func (f *Fleet) seenLocked(host string, now time.Time) {
	h := f.st.hosts[host]
	if h == nil {
		if len(f.st.hosts) >= 10_000 { // a bucket full of made-up hosts must not fill memory
			return
		}
		h = &HostSeen{Name: host}
		f.st.hosts[host] = h
	}
	h.Last = now
}

func (f *Fleet) recordLag(d time.Duration) {
	d = max(d, 0)
	if len(f.lag) < lagSamples {
		f.lag = append(f.lag, d)
		return
	}
	f.lag[f.lagAt] = d
	f.lagAt = (f.lagAt + 1) % lagSamples
}

// Duration marshals as milliseconds with a fraction, for status.
type Duration time.Duration

// MarshalJSON writes milliseconds.
func (d Duration) MarshalJSON() ([]byte, error) {
	return fmt.Appendf(nil, "%.3f", float64(d)/float64(time.Millisecond)), nil
}

// UnmarshalJSON reads milliseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var ms float64
	if _, err := fmt.Sscanf(string(b), "%g", &ms); err != nil {
		return err
	}
	*d = Duration(ms * float64(time.Millisecond))
	return nil
}

// Status is what `moat fleet status` shows.
type Status struct {
	Enabled       bool              `json:"enabled"`
	Connected     bool              `json:"connected"`
	Error         string            `json:"error,omitempty"` // why not connected
	Host          string            `json:"host"`
	Bucket        string            `json:"bucket"`
	Servers       []string          `json:"servers"`
	Server        string            `json:"server,omitempty"` // the one connected to
	ServerVersion string            `json:"server_version,omitempty"`
	Hosts         []HostSeen        `json:"hosts"` // hosts whose bans were seen
	Sent          uint64            `json:"sent"`  // local bans the bucket acknowledged
	SendFailed    uint64            `json:"send_failed"`
	Unbans        uint64            `json:"unbans_sent"`
	Dropped       uint64            `json:"dropped"`  // local bans that did not fit the queue
	Received      uint64            `json:"received"` // remote bans applied
	Removed       uint64            `json:"removed"`  // remote bans lifted by a remote unban or a replay
	Refused       map[string]uint64 `json:"refused"`  // remote bans not applied, by reason
	Lag           *Lag              `json:"lag,omitempty"`
	Replays       int               `json:"replays"`
	LastReplay    *Replay           `json:"last_replay,omitempty"`

	hosts map[string]*HostSeen
}

// HostSeen is a host of the fleet.
type HostSeen struct {
	Name     string    `json:"name"`
	Last     time.Time `json:"last_seen"`
	Received uint64    `json:"received"`
}

// Lag summarizes the delay from a ban at its host to its application
// here, over the last lagSamples remote bans applied live.
type Lag struct {
	Samples int      `json:"samples"`
	P50     Duration `json:"p50_ms"`
	P99     Duration `json:"p99_ms"`
	Max     Duration `json:"max_ms"`
	Last    Duration `json:"last_ms"`
}

// Replay is what the last replay of the bucket did.
type Replay struct {
	At          time.Time `json:"at"`
	Keys        int       `json:"keys"` // remote bans in the bucket that the config accepts
	Applied     int       `json:"applied"`
	Lifted      int       `json:"lifted"`      // fleet bans here the bucket no longer had
	Republished int       `json:"republished"` // this host's bans the bucket lacked
	Read        Duration  `json:"read_ms"`     // reading the bucket
	Took        Duration  `json:"took_ms"`     // reading it and applying it all: all of it in the kernel
	Saved       Duration  `json:"saved_ms"`    // till all of it was in the store too (0: not yet)
}

// Status returns a snapshot of the counters.
func (f *Fleet) Status() Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.st
	s.Refused = make(map[string]uint64, len(f.st.Refused))
	for k, v := range f.st.Refused {
		s.Refused[k] = v
	}
	s.Hosts = make([]HostSeen, 0, len(f.st.hosts))
	for _, h := range f.st.hosts {
		s.Hosts = append(s.Hosts, *h)
	}
	sort.Slice(s.Hosts, func(i, j int) bool { return s.Hosts[i].Name < s.Hosts[j].Name })
	s.hosts = nil
	if f.sub != nil {
		s.Dropped = f.sub.Dropped()
	}
	if n := len(f.lag); n > 0 {
		last := f.lag[(f.lagAt+n-1)%n]
		sorted := slices.Clone(f.lag)
		slices.Sort(sorted)
		s.Lag = &Lag{Samples: n, P50: Duration(sorted[n/2]), P99: Duration(sorted[min(n-1, n*99/100)]),
			Max: Duration(sorted[n-1]), Last: Duration(last)}
	}
	return s
}

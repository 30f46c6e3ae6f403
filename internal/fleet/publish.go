package fleet

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/moat-fw/moat/internal/ban"
	"github.com/moat-fw/moat/internal/events"
	"github.com/moat-fw/moat/internal/store"
)

// maxPending is how many publications may await the bucket's
// acknowledgement; past half of it the publisher waits for them (the
// events bus queues, and drops and counts, meanwhile).
const maxPending = 16384

// publisher puts this host's bans in the bucket.
type publisher struct {
	f      *Fleet
	js     jetstream.JetStream // with the ack counters
	prefix string              // "$KV.<bucket>."

	mu   sync.Mutex
	keys map[netip.Prefix]bool // keys seen in the replay under way
}

func newPublisher(nc *nats.Conn, f *Fleet) (*publisher, error) {
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(maxPending),
		jetstream.WithPublishAsyncTimeout(10*time.Second),
		jetstream.WithPublishAsyncAckHandler(func(jetstream.JetStream, *nats.Msg, *jetstream.PubAck) {
			f.mu.Lock()
			f.st.Sent++
			f.mu.Unlock()
		}),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) {
			f.mu.Lock()
			f.st.SendFailed++
			f.mu.Unlock()
			f.log.Debug("fleet: a shared ban was not acknowledged (it is published again at the next connect)", "subject", m.Subject, "err", err)
		}))
	if err != nil {
		return nil, err
	}
	return &publisher{f: f, js: js, prefix: "$KV." + f.cfg.Bucket + ".", keys: map[netip.Prefix]bool{}}, nil
}

// run publishes the bus's bans and unbans until ctx ends.
func (p *publisher) run(ctx context.Context, kv jetstream.KeyValue, sub *events.Sub) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-sub.C:
			if !ok {
				return nil
			}
			switch {
			case ev.Kind == events.Ban && p.shared(ev):
				p.put(ev.Prefix, Value{Origin: ev.Origin, Reason: ev.Reason, Host: p.f.host, Count: max(ev.Count, 1),
					Created: ev.Time, Until: ev.Until}, p.f.now())
			case ev.Kind == events.Unban && ev.Origin == ban.OriginManual:
				// An unban here lifts the ban everywhere, whoever made it.
				dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				err := kv.Delete(dctx, Key(ev.Prefix))
				cancel()
				if err != nil {
					p.f.log.Warn("fleet: could not share an unban", "addr", ban.PrefixString(ev.Prefix), "err", err)
					continue
				}
				p.f.mu.Lock()
				p.f.st.Unbans++
				p.f.mu.Unlock()
			}
		}
	}
}

// shared says whether a local ban event goes to the fleet. A ban limited
// to a jail's ports stays here: the fleet's values carry no ports, and
// sharing it would ban the address on every port of every host.
func (p *publisher) shared(ev events.Event) bool {
	if ev.Host != "" || len(ev.Ports) > 0 || !slices.Contains(p.f.cfg.Publish, ev.Origin) {
		return false // a remote ban, a port-limited one, or an origin not shared
	}
	return ev.Origin != ban.OriginManual || ev.Fleet
}

// put publishes one ban with a TTL of its remaining time. It does not wait
// for the acknowledgement (counted by the handlers).
func (p *publisher) put(pfx netip.Prefix, v Value, now time.Time) bool {
	var opts []jetstream.PublishOpt
	if !v.Until.IsZero() {
		left := v.Until.Sub(now)
		if left < 500*time.Millisecond {
			return false // ending anyway
		}
		// The server counts TTLs in whole seconds, at least one; the value
		// carries the exact end, which is what receivers use.
		opts = append(opts, jetstream.WithMsgTTL(left.Round(time.Second)+time.Second))
	}
	if p.js.PublishAsyncPending() > maxPending/2 {
		select {
		case <-p.js.PublishAsyncComplete():
		case <-time.After(10 * time.Second): // the error handler counts what times out
		}
	}
	if _, err := p.js.PublishAsync(p.prefix+Key(pfx), v.Encode(), opts...); err != nil {
		p.f.mu.Lock()
		p.f.st.SendFailed++
		p.f.mu.Unlock()
		return false
	}
	return true
}

// mine records a key seen in a replay.
func (p *publisher) mine(pfx netip.Prefix) {
	p.mu.Lock()
	p.keys[pfx] = true
	p.mu.Unlock()
}

// missing publishes the live local bans the bucket lacks: those made while
// NATS was unreachable, or whose publication was lost. Manual bans are not
// among them: whether one was meant for the fleet is not kept.
func (p *publisher) missing(bans []store.Entry, now time.Time) int {
	p.mu.Lock()
	have := p.keys
	p.keys = map[netip.Prefix]bool{}
	p.mu.Unlock()
	n := 0
	for _, e := range bans {
		if e.Host != "" || len(e.Ports) > 0 || e.Origin == ban.OriginManual || !slices.Contains(p.f.cfg.Publish, e.Origin) || have[e.Prefix] {
			continue
		}
		if p.put(e.Prefix, Value{Origin: e.Origin, Reason: e.Reason, Host: p.f.host, Count: max(e.Count, 1), Created: e.Created, Until: e.Expires}, now) {
			n++
		}
	}
	return n
}

package fleet

import (
	"context"
	"net/netip"
	"slices"
	"strconv"
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

	// retry holds publications the bucket did not acknowledge (a node
	// lost, a stream leader being elected): they are sent again, a few
	// times, backing off. A replay brings back the guards' bans the bucket
	// lacks, but not manual ones (the store does not say which were
	// shared), so a manual --fleet ban made during a failover would be
	// lost without this.
	retry chan retryMsg
}

// retryMsg is a publication to send again after at.
type retryMsg struct {
	msg      *nats.Msg
	attempts int
	at       time.Time
}

// maxRetries bounds the attempts after the first: 1+2+4+8+16 s, past
// a NATS cluster's leader election, short of an outage (after one, the
// replay at reconnect takes over for the guards' bans).
const maxRetries = 5

func newPublisher(nc *nats.Conn, f *Fleet) (*publisher, error) {
	p := &publisher{f: f, prefix: "$KV." + f.cfg.Bucket + ".", retry: make(chan retryMsg, 1024)}
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
			f.log.Debug("fleet: a shared ban was not acknowledged; sending it again", "subject", m.Subject, "err", err)
			p.again(m)
		}))
	if err != nil {
		return nil, err
	}
	p.js = js
	return p, nil
}

// again queues m to be sent again, unless it was tried enough or the
// queue is full (counted as dropped).
func (p *publisher) again(m *nats.Msg) {
	n := 0
	if v := m.Header.Get(hdrAttempt); v != "" {
		n, _ = strconv.Atoi(v)
	}
	if n >= maxRetries {
		return
	}
	r := &nats.Msg{Subject: m.Subject, Data: m.Data, Header: nats.Header{}}
	for k, vs := range m.Header {
		r.Header[k] = append([]string(nil), vs...)
	}
	r.Header.Set(hdrAttempt, strconv.Itoa(n+1))
	select {
	case p.retry <- retryMsg{msg: r, attempts: n + 1, at: p.f.now().Add(time.Second << n)}:
	default:
		p.f.mu.Lock()
		p.f.st.Dropped++
		p.f.mu.Unlock()
	}
}

// forget drops the retries queued for subject, those still in the
// channel included.
func (p *publisher) forget(pending []retryMsg, subject string) []retryMsg {
	for {
		select {
		case r := <-p.retry:
			pending = append(pending, r)
			continue
		default:
		}
		break
	}
	return slices.DeleteFunc(pending, func(r retryMsg) bool { return r.msg.Subject == subject })
}

// hdrAttempt counts a publication's attempts after the first.
const hdrAttempt = "Moat-Attempt"

// resend sends the retries that are due and keeps the others.
func (p *publisher) resend(pending []retryMsg) []retryMsg {
	now := p.f.now()
	kept := pending[:0]
	for _, r := range pending {
		if r.at.After(now) {
			kept = append(kept, r)
			continue
		}
		if _, err := p.js.PublishMsgAsync(r.msg); err != nil {
			p.again(r.msg)
		}
	}
	return kept
}

// run publishes the bus's bans and unbans until ctx ends.
func (p *publisher) run(ctx context.Context, kv jetstream.KeyValue, sub *events.Sub) error {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	var pending []retryMsg
	for {
		select {
		case <-ctx.Done():
			return nil
		case r := <-p.retry:
			pending = append(pending, r)
		case <-tick.C:
			pending = p.resend(pending)
		case ev, ok := <-sub.C:
			if !ok {
				return nil
			}
			switch {
			case ev.Kind == events.Ban && p.shared(ev):
				p.put(ev.Prefix, Value{Origin: ev.Origin, Reason: ev.Reason, Host: p.f.host, Count: max(ev.Count, 1),
					Created: ev.Time, Until: ev.Until}, p.f.now())
			case ev.Kind == events.Unban && ev.Origin == ban.OriginManual:
				// A retry of the ban must not bring it back after the unban.
				pending = p.forget(pending, p.prefix+Key(ev.Prefix))
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

// publishable says whether a local ban in the store is one the fleet
// should have (see missing). Manual bans are not: whether one was meant for
// the fleet is not kept.
func (p *publisher) publishable(e store.Entry) bool {
	return e.Host == "" && len(e.Ports) == 0 && e.Origin != ban.OriginManual && e.Origin != ban.OriginFleet &&
		slices.Contains(p.f.cfg.Publish, e.Origin)
}

// missing publishes the live local bans the bucket lacks: those made while
// NATS was unreachable, or whose publication was lost.
func (p *publisher) missing(bans []store.Entry, now time.Time) int {
	n := 0
	for _, e := range bans {
		if p.put(e.Prefix, Value{Origin: e.Origin, Reason: e.Reason, Host: p.f.host, Count: max(e.Count, 1), Created: e.Created, Until: e.Expires}, now) {
			n++
		}
	}
	return n
}

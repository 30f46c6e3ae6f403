// Package events carries what moat's guards did (bans, unbans, scans
// detected, doors opened and closed) to whoever watches inside the daemon:
// the live page's feed, alerts, fleet publishing. Publishing never blocks
// and never slows a guard: each subscriber has a bounded queue, and what
// does not fit is dropped and counted, because a slow webhook or browser
// must never delay a ban.
package events

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Kind is what happened.
type Kind string

// Kinds of events.
const (
	Ban   Kind = "ban"   // a ban took (Origin, Reason, Until, Count)
	Unban Kind = "unban" // a ban was lifted by hand (Origin "manual") or by a remote host
	Scan  Kind = "scan"  // the scan guard saw a scanner reach a new danger level (Level, Types, Ports)
	Door  Kind = "door"  // a door grant opened, closed or expired (Door, Action, Ports, Until)
)

// Event is one thing a guard did. Fields that do not apply to its Kind are
// zero.
type Event struct {
	Seq    uint64       `json:"seq"` // set by Publish: 1, 2, ... in publishing order
	Time   time.Time    `json:"time"`
	Kind   Kind         `json:"kind"`
	Prefix netip.Prefix `json:"prefix"` // the address (/32, /128) or prefix concerned
	Origin string       `json:"origin,omitempty"`
	Reason string       `json:"reason,omitempty"`
	Until  time.Time    `json:"until,omitzero"`
	Count  int          `json:"count,omitempty"`      // how many times this prefix was banned
	Level  int          `json:"level,omitempty"`      // scan danger level, 1-5
	Types  string       `json:"types,omitempty"`      // scan types, "SYN,FIN"
	Probes int          `json:"probes,omitempty"`     // scan: packets seen
	NPorts int          `json:"port_count,omitempty"` // scan: distinct ports probed
	Ports  []string     `json:"ports,omitempty"`      // door: the granted ports, "tcp/22"; ban: the only ports banned (empty: all)
	Door   string       `json:"door,omitempty"`
	Action string       `json:"action,omitempty"` // door: opened, closed, expired
	Host   string       `json:"host,omitempty"`   // the fleet host a ban came from
	// Fleet marks a manual ban its author asked to share with the fleet
	// (`moat ban add --fleet`).
	Fleet bool `json:"fleet,omitempty"`
}

// Bus delivers events to subscribers and keeps the last few for those
// who arrive later (a page opened after the fact).
type Bus struct {
	mu   sync.Mutex
	seq  uint64
	ring []Event // the last cap(ring) events, oldest first once full
	head int     // next slot to write once the ring is full
	subs map[*Sub]struct{}
}

// New returns a bus that remembers the last keep events.
func New(keep int) *Bus {
	return &Bus{ring: make([]Event, 0, max(keep, 1)), subs: map[*Sub]struct{}{}}
}

// Sub is one subscriber's queue.
type Sub struct {
	C       <-chan Event
	c       chan Event
	dropped atomic.Uint64
}

// Dropped is how many events did not fit the subscriber's queue.
func (s *Sub) Dropped() uint64 { return s.dropped.Load() }

// Publish hands e to every subscriber that has room and returns it with
// its sequence number. It never blocks.
func (b *Bus) Publish(e Event) Event {
	if b == nil {
		return e
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	e.Seq = b.seq
	if len(b.ring) < cap(b.ring) {
		b.ring = append(b.ring, e)
	} else {
		b.ring[b.head] = e
		b.head = (b.head + 1) % len(b.ring)
	}
	for s := range b.subs {
		select {
		case s.c <- e:
		default:
			s.dropped.Add(1)
		}
	}
	return e
}

// Subscribe returns a queue of buf events that receives every event
// published from now on, until ctx ends; then its channel is closed.
func (b *Bus) Subscribe(ctx context.Context, buf int) *Sub {
	s := &Sub{c: make(chan Event, max(buf, 1))}
	s.C = s.c
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	// Closing under b.mu: Publish sends under it, so it never sends on a
	// closed channel.
	context.AfterFunc(ctx, func() {
		b.mu.Lock()
		delete(b.subs, s)
		close(s.c)
		b.mu.Unlock()
	})
	return s
}

// Recent returns up to n of the last events, oldest first, with Seq
// greater than after (0: all kept).
func (b *Bus) Recent(n int, after uint64) []Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]Event, 0, min(n, len(b.ring)))
	all := append(append([]Event(nil), b.ring[b.head:]...), b.ring[:b.head]...)
	for _, e := range all {
		if e.Seq > after {
			out = append(out, e)
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}

// Last is the sequence number of the last event published.
func (b *Bus) Last() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.seq
}

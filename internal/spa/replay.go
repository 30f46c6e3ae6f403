package spa

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
)

// replayCache remembers the nonces of authentic packets for exactly as
// long as the timestamp check would still let them in: a packet stamped ts
// passes the window check until ts+window, so its nonce is kept until
// then and no longer. Older packets need no memory: the window refuses them.
//
// Memory is bounded per client. Only packets that passed the seal reach
// the cache, so filling it takes the client's key; even then, when a
// client's share is full the oldest entry is dropped and the client's
// floor rises to its timestamp, and everything stamped at or before the
// floor is refused. Replay protection stays exact (a dropped nonce can
// never come back in), at the price that, under such a flood, a genuine
// packet older than the flood's oldest is refused as stale.
type replayCache struct {
	window    int64 // seconds
	perClient int
	floor     int64 // every client: refuse ts <= floor (set after a lost snapshot)
	clients   map[ID]*replayClient
}

type replayClient struct {
	floor int64
	seen  map[[NonceLen]byte]int64 // nonce -> timestamp
}

func newReplayCache(window int64, perClient int) *replayCache {
	return &replayCache{window: window, perClient: perClient, clients: map[ID]*replayClient{}}
}

// check refuses ts/nonce if it was seen or is at or below a floor, and
// otherwise records it. now and ts are Unix seconds; the caller has
// already checked |now-ts| <= window.
func (c *replayCache) check(id ID, nonce *[NonceLen]byte, ts, now int64) Reason {
	rc := c.clients[id]
	if ts <= c.floor || (rc != nil && ts <= rc.floor) {
		return ReasonStale
	}
	if rc != nil {
		if _, ok := rc.seen[*nonce]; ok {
			return ReasonReplay
		}
	} else {
		rc = &replayClient{seen: map[[NonceLen]byte]int64{}}
		c.clients[id] = rc
	}
	if len(rc.seen) >= c.perClient {
		c.expire(rc, now)
	}
	for len(rc.seen) >= c.perClient {
		c.evictOldest(rc)
		if ts <= rc.floor {
			return ReasonStale
		}
	}
	rc.seen[*nonce] = ts
	return 0
}

// expire drops the entries the window already refuses.
func (c *replayCache) expire(rc *replayClient, now int64) {
	for n, ts := range rc.seen {
		if ts+c.window < now {
			delete(rc.seen, n)
		}
	}
}

func (c *replayCache) evictOldest(rc *replayClient) {
	var oldest [NonceLen]byte
	first, low := true, int64(0)
	for n, ts := range rc.seen {
		if first || ts < low {
			first, low, oldest = false, ts, n
		}
	}
	delete(rc.seen, oldest)
	rc.floor = max(rc.floor, low)
}

func (c *replayCache) len() int {
	n := 0
	for _, rc := range c.clients {
		n += len(rc.seen)
	}
	return n
}

// Snapshot format (all integers big-endian):
//
//	"moat-spa-replay\x01"   16 bytes: magic and format version
//	floor                  int64: the cache-wide floor
//	clients                uint32
//	per client, by id:     id [8] | floor int64 | entries uint32 | entries × (nonce [16] | ts int64)
const snapshotMagic = "moat-spa-replay\x01"

// appendSnapshot writes the entries still inside the window at now.
func (c *replayCache) appendSnapshot(b []byte, now int64) []byte {
	b = append(b, snapshotMagic...)
	b = binary.BigEndian.AppendUint64(b, uint64(c.floor))
	ids := slices.SortedFunc(maps.Keys(c.clients), func(a, b ID) int { return slices.Compare(a[:], b[:]) })
	b = binary.BigEndian.AppendUint32(b, uint32(len(ids)))
	for _, id := range ids {
		rc := c.clients[id]
		c.expire(rc, now)
		nonces := slices.SortedFunc(maps.Keys(rc.seen), func(a, b [NonceLen]byte) int { return slices.Compare(a[:], b[:]) })
		b = append(b, id[:]...)
		b = binary.BigEndian.AppendUint64(b, uint64(rc.floor))
		b = binary.BigEndian.AppendUint32(b, uint32(len(nonces)))
		for _, n := range nonces {
			b = append(b, n[:]...)
			b = binary.BigEndian.AppendUint64(b, uint64(rc.seen[n]))
		}
	}
	return b
}

var errSnapshot = errors.New("spa: replay snapshot is damaged; delete it and restart (then every SPA packet is refused for one window)")

// loadSnapshot merges a snapshot into the cache, keeping the clients keep
// says to keep, dropping entries the window refuses at now, and holding
// each client to its share as check does.
func (c *replayCache) loadSnapshot(b []byte, now int64, keep func(ID) bool) error {
	// Check the framing first, so a damaged snapshot changes nothing.
	if err := c.walkSnapshot(b, now, nil); err != nil {
		return err
	}
	return c.walkSnapshot(b, now, keep)
}

// walkSnapshot parses b and, unless keep is nil, merges it.
func (c *replayCache) walkSnapshot(b []byte, now int64, keep func(ID) bool) error {
	if len(b) < len(snapshotMagic)+12 || string(b[:len(snapshotMagic)]) != snapshotMagic {
		return errSnapshot
	}
	b = b[len(snapshotMagic):]
	if keep != nil {
		c.floor = max(c.floor, int64(binary.BigEndian.Uint64(b)))
	}
	n := binary.BigEndian.Uint32(b[8:])
	b = b[12:]
	for range n {
		if len(b) < IDLen+12 {
			return errSnapshot
		}
		id := ID(b[:IDLen])
		floor := int64(binary.BigEndian.Uint64(b[IDLen:]))
		m := int(binary.BigEndian.Uint32(b[IDLen+8:]))
		b = b[IDLen+12:]
		if m > len(b)/(NonceLen+8) {
			return errSnapshot
		}
		entries := b[:m*(NonceLen+8)]
		b = b[m*(NonceLen+8):]
		if keep == nil || !keep(id) {
			continue
		}
		rc := c.clients[id]
		if rc == nil {
			rc = &replayClient{seen: map[[NonceLen]byte]int64{}}
			c.clients[id] = rc
		}
		rc.floor = max(rc.floor, floor)
		for ; len(entries) > 0; entries = entries[NonceLen+8:] {
			nonce := [NonceLen]byte(entries)
			ts := int64(binary.BigEndian.Uint64(entries[NonceLen:]))
			if ts+c.window < now || ts <= rc.floor {
				continue
			}
			if len(rc.seen) >= c.perClient {
				c.expire(rc, now)
			}
			for len(rc.seen) >= c.perClient {
				c.evictOldest(rc)
			}
			if ts > rc.floor {
				rc.seen[nonce] = ts
			}
		}
	}
	if len(b) != 0 {
		return fmt.Errorf("%w: %d bytes after the last client", errSnapshot, len(b))
	}
	return nil
}

package login

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/moat-fw/moat/internal/lru"
)

// Counter counts failures per address in a sliding window, in fixed memory:
// at most max addresses are tracked, and when a new one arrives the least
// recently seen is forgotten, so a flood of invented addresses costs no more
// than max slots. It is not safe for concurrent use.
type Counter struct {
	retry  int           // failures in window that reach the threshold
	window time.Duration // sliding window
	table  *lru.Table[slot]
	times  [][]int64 // per lru chunk: retry failure times (unix ns) per slot, a ring
}

type slot struct {
	n    uint16 // failures stored, at most retry
	pos  uint16 // ring position of the next write
	tags uint32 // the caller's bits, ORed over the failures (kinds seen)
	conn uint16 // the caller's connection id of the last failure (sshd: client port)
}

// NewCounter returns a counter that reports an address once it has failed
// retry times within window, tracking at most max addresses.
func NewCounter(retry int, window time.Duration, max int) *Counter {
	c := &Counter{retry: min(max1(retry), 1<<15), window: window, table: lru.New[slot](max)}
	// The failure times live beside the table, by slot: fixed-size rings
	// that a value type cannot hold when retry is configurable.
	c.table.OnMove = func(from, to uint32) { copy(c.ring(to), c.ring(from)) }
	return c
}

func max1(n int) int {
	if n < 1 {
		return 1
	}
	return n
}

// ring returns slot i's failure times, allocating its chunk on first use.
func (c *Counter) ring(i uint32) []int64 {
	for int(i/lru.ChunkSize) >= len(c.times) {
		c.times = append(c.times, make([]int64, lru.ChunkSize*c.retry))
	}
	off := int(i%lru.ChunkSize) * c.retry
	return c.times[i/lru.ChunkSize][off : off+c.retry]
}

// Len is the number of addresses being counted.
func (c *Counter) Len() int { return c.table.Len() }

// Fail records n failures of a at now, tagged with tag's bits, and returns
// how many fall within the window and the tags seen so far; reached reports
// the threshold was met (the caller bans and calls Forget).
func (c *Counter) Fail(a netip.Addr, n int, tag uint32, now time.Time) (count int, tags uint32, reached bool) {
	return c.FailConn(a, n, tag, 0, now)
}

// FailConn is Fail for a failure on connection conn (non-zero): LastConn
// then tells a connection's closing message from a new attempt.
func (c *Counter) FailConn(a netip.Addr, n int, tag uint32, conn uint16, now time.Time) (count int, tags uint32, reached bool) {
	s, i, _ := c.table.Touch(a.Unmap().As16())
	s.tags |= tag
	s.conn = conn
	ring := c.ring(i)
	t := now.UnixNano()
	for range min(n, c.retry) {
		ring[s.pos] = t
		s.pos = uint16((int(s.pos) + 1) % c.retry)
		if int(s.n) < c.retry {
			s.n++
		}
	}
	count = c.within(s, ring, now)
	return count, s.tags, count >= c.retry
}

func (c *Counter) within(s *slot, ring []int64, now time.Time) int {
	cutoff, count := now.UnixNano()-int64(c.window), 0
	for k := range int(s.n) {
		if ring[k] > cutoff {
			count++
		}
	}
	return count
}

// Count returns a's failures within the window at now.
func (c *Counter) Count(a netip.Addr, now time.Time) int {
	s, i, ok := c.table.Get(a.Unmap().As16())
	if !ok {
		return 0
	}
	return c.within(s, c.ring(i), now)
}

// LastConn returns the connection id of a's last counted failure, 0 if none.
func (c *Counter) LastConn(a netip.Addr) uint16 {
	if s, _, ok := c.table.Get(a.Unmap().As16()); ok {
		return s.conn
	}
	return 0
}

// Forget drops a's failures (after a ban, or a successful login).
func (c *Counter) Forget(a netip.Addr) { c.table.Delete(a.Unmap().As16()) }

// AppendSnapshot appends the counter's state (addresses, failure times) to
// b, least recently seen first, so a restart can resume counting.
func (c *Counter) AppendSnapshot(b []byte) []byte {
	b = append(b, 1) // format version
	b = binary.AppendUvarint(b, uint64(c.retry))
	b = binary.AppendUvarint(b, uint64(c.table.Len()))
	c.table.Oldest(func(k [16]byte, s *slot, i uint32) {
		b = append(b, k[:]...)
		b = binary.AppendUvarint(b, uint64(s.tags))
		b = binary.AppendUvarint(b, uint64(s.n))
		ring := c.ring(i)
		for j := range int(s.n) {
			b = binary.AppendVarint(b, ring[j])
		}
	})
	return b
}

// LoadSnapshot restores what AppendSnapshot saved into an empty counter,
// dropping failures that left the window by now. A snapshot from a counter
// with another retry, or a damaged one, is refused whole.
func (c *Counter) LoadSnapshot(b []byte, now time.Time) error {
	bad := errors.New("damaged login counter snapshot")
	if len(b) == 0 || b[0] != 1 {
		return bad
	}
	b = b[1:]
	next := func() (uint64, bool) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, false
		}
		b = b[n:]
		return v, true
	}
	retry, ok := next()
	if !ok || int(retry) != c.retry {
		return fmt.Errorf("login counter snapshot for max_retry %d, now %d: starting afresh", retry, c.retry)
	}
	count, ok := next()
	if !ok {
		return bad
	}
	cutoff := now.UnixNano() - int64(c.window)
	for range count {
		if len(b) < 16 {
			return bad
		}
		var k [16]byte
		copy(k[:], b)
		b = b[16:]
		tags, ok1 := next()
		n, ok2 := next()
		if !ok1 || !ok2 || n > retry {
			return bad
		}
		var live []int64
		for range n {
			t, m := binary.Varint(b)
			if m <= 0 {
				return bad
			}
			b = b[m:]
			if t > cutoff {
				live = append(live, t)
			}
		}
		if len(live) == 0 {
			continue
		}
		s, i, _ := c.table.Touch(k)
		s.tags = uint32(tags)
		ring := c.ring(i)
		for _, t := range live {
			ring[s.pos] = t
			s.pos = uint16((int(s.pos) + 1) % c.retry)
			if int(s.n) < c.retry {
				s.n++
			}
		}
	}
	return nil
}

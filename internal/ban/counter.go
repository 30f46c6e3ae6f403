package ban

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Counter counts failures per address in a sliding window, in fixed memory:
// at most max addresses are tracked, and when a new one arrives the least
// recently seen is forgotten, so a flood of invented addresses costs no more
// than max slots. It is not safe for concurrent use.
type Counter struct {
	retry  int           // failures in window that reach the threshold
	window time.Duration // sliding window
	max    int
	index  map[[16]byte]uint32
	n      int       // slots in use
	slots  [][]slot  // chunks of chunkSlots, so growing never copies
	times  [][]int64 // per chunk: retry failure times (unix ns) per slot, a ring
	head   uint32    // most recently seen slot, or none
	tail   uint32    // least recently seen slot, or none
}

// chunkSlots is how many slots are allocated at a time: growing in fixed
// chunks keeps the peak at what is used, where doubling a slice would hold
// the old array too (a 1M-address flood peaked at 250 MB RSS that way).
const chunkSlots = 4096

func (c *Counter) at(i uint32) *slot { return &c.slots[i/chunkSlots][i%chunkSlots] }

// ring returns slot i's failure times.
func (c *Counter) ring(i uint32) []int64 {
	off := int(i%chunkSlots) * c.retry
	return c.times[i/chunkSlots][off : off+c.retry]
}

const none = ^uint32(0)

type slot struct {
	key        [16]byte
	prev, next uint32
	n          uint16 // failures stored, at most retry
	pos        uint16 // ring position of the next write
	tags       uint32 // the caller's bits, ORed over the failures (kinds seen)
	conn       uint16 // the caller's connection id of the last failure (sshd: client port)
}

// NewCounter returns a counter that reports an address once it has failed
// retry times within window, tracking at most max addresses.
func NewCounter(retry int, window time.Duration, max int) *Counter {
	retry = min(max1(retry), 1<<15)
	return &Counter{retry: retry, window: window, max: max1(max), index: make(map[[16]byte]uint32),
		head: none, tail: none}
}

func max1(n int) int {
	if n < 1 {
		return 1
	}
	return n
}

// Len is the number of addresses being counted.
func (c *Counter) Len() int { return len(c.index) }

// Fail records n failures of a at now, tagged with tag's bits, and returns
// how many fall within the window and the tags seen so far; reached reports
// the threshold was met (the caller bans and calls Forget).
func (c *Counter) Fail(a netip.Addr, n int, tag uint32, now time.Time) (count int, tags uint32, reached bool) {
	return c.FailConn(a, n, tag, 0, now)
}

// FailConn is Fail for a failure on connection conn (non-zero): LastConn
// then tells a connection's closing message from a new attempt.
func (c *Counter) FailConn(a netip.Addr, n int, tag uint32, conn uint16, now time.Time) (count int, tags uint32, reached bool) {
	i := c.slot(a.Unmap().As16())
	s := c.at(i)
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
	cutoff := t - int64(c.window)
	for k := range int(s.n) {
		if ring[k] > cutoff {
			count++
		}
	}
	return count, s.tags, count >= c.retry
}

// Count returns a's failures within the window at now.
func (c *Counter) Count(a netip.Addr, now time.Time) int {
	i, ok := c.index[a.Unmap().As16()]
	if !ok {
		return 0
	}
	ring := c.ring(i)
	cutoff, count := now.UnixNano()-int64(c.window), 0
	for k := range int(c.at(i).n) {
		if ring[k] > cutoff {
			count++
		}
	}
	return count
}

// LastConn returns the connection id of a's last counted failure, 0 if none.
func (c *Counter) LastConn(a netip.Addr) uint16 {
	if i, ok := c.index[a.Unmap().As16()]; ok {
		return c.at(i).conn
	}
	return 0
}

// Forget drops a's failures (after a ban, or a successful login).
func (c *Counter) Forget(a netip.Addr) {
	k := a.Unmap().As16()
	i, ok := c.index[k]
	if !ok {
		return
	}
	c.unlink(i)
	delete(c.index, k)
	// Move the last slot into the hole so slots stay dense.
	last := uint32(c.n - 1)
	if i != last {
		c.move(last, i)
	}
	c.n--
}

// Each calls fn for every counted address with its failures within the
// window, most recently seen first.
func (c *Counter) Each(now time.Time, fn func(a netip.Addr, count int)) {
	for i := c.head; i != none; i = c.at(i).next {
		fn(netip.AddrFrom16(c.at(i).key).Unmap(), c.Count(netip.AddrFrom16(c.at(i).key), now))
	}
}

// slot finds or makes the slot for k and marks it most recently seen.
func (c *Counter) slot(k [16]byte) uint32 {
	if i, ok := c.index[k]; ok {
		c.unlink(i)
		c.pushFront(i)
		return i
	}
	var i uint32
	if c.n < c.max {
		i = uint32(c.n)
		if int(i/chunkSlots) == len(c.slots) {
			c.slots = append(c.slots, make([]slot, chunkSlots))
			c.times = append(c.times, make([]int64, chunkSlots*c.retry))
		}
		c.n++
	} else {
		i = c.tail // forget the least recently seen
		c.unlink(i)
		delete(c.index, c.at(i).key)
	}
	*c.at(i) = slot{key: k, prev: none, next: none}
	c.index[k] = i
	c.pushFront(i)
	return i
}

func (c *Counter) unlink(i uint32) {
	s := c.at(i)
	if s.prev != none {
		c.at(s.prev).next = s.next
	} else {
		c.head = s.next
	}
	if s.next != none {
		c.at(s.next).prev = s.prev
	} else {
		c.tail = s.prev
	}
	s.prev, s.next = none, none
}

func (c *Counter) pushFront(i uint32) {
	s := c.at(i)
	s.prev, s.next = none, c.head
	if c.head != none {
		c.at(c.head).prev = i
	}
	c.head = i
	if c.tail == none {
		c.tail = i
	}
}

// move relocates slot from to the free index to, fixing its links.
func (c *Counter) move(from, to uint32) {
	s := *c.at(from)
	*c.at(to) = s
	copy(c.ring(to), c.ring(from))
	c.index[s.key] = to
	if s.prev != none {
		c.at(s.prev).next = to
	} else {
		c.head = to
	}
	if s.next != none {
		c.at(s.next).prev = to
	} else {
		c.tail = to
	}
}

// AppendSnapshot appends the counter's state (addresses, failure times) to
// b, least recently seen first, so a restart can resume counting.
func (c *Counter) AppendSnapshot(b []byte) []byte {
	b = append(b, 1) // format version
	b = binary.AppendUvarint(b, uint64(c.retry))
	b = binary.AppendUvarint(b, uint64(c.n))
	for i := c.tail; i != none; i = c.at(i).prev {
		s := c.at(i)
		b = append(b, s.key[:]...)
		b = binary.AppendUvarint(b, uint64(s.tags))
		b = binary.AppendUvarint(b, uint64(s.n))
		ring := c.ring(i)
		for k := range int(s.n) {
			b = binary.AppendVarint(b, ring[k])
		}
	}
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
		i := c.slot(k)
		s := c.at(i)
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

package portscan

import (
	"hash/maphash"
	"math"
	"math/bits"
	"net/netip"
	"slices"
	"time"

	"github.com/moat-fw/moat/internal/osfp"
)

// Sizes of the per-source sets.
const (
	portBits = 1024 // distinct destination ports
	addrBits = 256  // distinct local addresses
)

// source is what is known of one source address in its current window:
// 288 bytes, plus about 20 in the index.
type source struct {
	key         [16]byte
	prev, next  uint32
	hash        uint32 // low bits of the index hash, to move it without rehashing
	packets     uint32 // probes in the window
	first, last int64  // unix ns
	types       ScanTypes
	flags       uint64                // TCP flag combinations seen (FIN..URG: 64 of them)
	ports       [portBits / 64]uint64 // destination ports, hashed
	addrs       [addrBits / 64]uint64 // local addresses, by Detector.dstBit
	protos      [4]uint64             // IP protocols, exact
	few         [8]uint16             // the first distinct ports, exactly
	nfew        uint8
	portBits    uint16 // bits set in ports
	addrBits    uint16 // bits set in addrs
	lowPort     uint16
	highPort    uint16
	level       uint8    // the level last reported
	spared      uint8    // evictions escaped in this window (see table.evict)
	syn         osfp.SYN // the window's first SYN, for the report's OS guess
}

func (s *source) reset(ts int64) {
	*s = source{key: s.key, prev: s.prev, next: s.next, hash: s.hash, first: ts, last: ts}
}

// addPort adds a port, whose keyed hash is h.
func (s *source) addPort(port uint16, h uint64) {
	if int(s.nfew) < len(s.few) && !slices.Contains(s.few[:s.nfew], port) {
		s.few[s.nfew] = port
		s.nfew++
	}
	b := h & (portBits - 1)
	w, m := &s.ports[b>>6], uint64(1)<<(b&63)
	if *w&m == 0 {
		*w |= m
		s.portBits++
	}
}

func (s *source) setAddr(b uint) {
	w, m := &s.addrs[b>>6], uint64(1)<<(b&63)
	if *w&m == 0 {
		*w |= m
		s.addrBits++
	}
}

// portCount is the number of distinct ports: exact for the first few,
// whose count decides the breadth rule, then estimated from the set.
func (s *source) portCount() int {
	if int(s.nfew) < len(s.few) {
		return int(s.nfew)
	}
	return max(len(s.few), int(portEstimate[s.portBits]))
}

// breadth is how widely s probed: distinct ports, local addresses, or
// protocols other than TCP and UDP (a client may try a port over both).
func (s *source) breadth() int {
	n := 0
	for _, w := range s.protos {
		n += bits.OnesCount64(w)
	}
	const tcpUDP = 1<<6 | 1<<17
	n -= bits.OnesCount64(s.protos[0] & tcpUDP)
	return max(s.portCount(), int(s.addrBits), n)
}

func (s *source) decision() Decision {
	return Decision{
		Src:     netip.AddrFrom16(s.key).Unmap(),
		Level:   int(s.level),
		Types:   s.types,
		Packets: int(s.packets),
		Ports:   s.portCount(),
		First:   time.Unix(0, s.first),
		Last:    time.Unix(0, s.last),
	}
}

// Linear counting: with b of m bits set, about -m·ln(1-b/m) distinct values
// went in. Exact enough while few bits collide (the first few dozen), an
// estimate beyond, saturated when every bit is set.
var portEstimate [portBits + 1]uint16

func init() {
	const m = float64(portBits)
	for b := range portEstimate {
		v := m * (math.Log(m) + 0.5772) // all set: the coupon collector's expectation
		if b < portBits {
			v = -m * math.Log(1-float64(b)/m)
		}
		portEstimate[b] = uint16(math.Round(v))
	}
}

// table holds at most max sources in a slab of fixed-size chunks (growing
// without copying), found through an open-addressing index (linear probing,
// at most half full), and linked in least-recently-seen order. Once full,
// a new source takes the least recently seen one's slot. Nothing on the
// way allocates once the slab and index have grown to max.
type table struct {
	max        int
	n          int
	chunks     [][]source
	cells      []uint64 // slot+1 in the low 32 bits, hash in the high; 0: empty
	mask       uint64
	hashSeed   maphash.Seed
	head, tail uint32
	evicted    uint64
}

const (
	none      = ^uint32(0)
	chunkBits = 10 // 1024 sources, 288 KiB, per chunk
)

func (t *table) init(maxSources int) {
	t.max = maxSources
	t.hashSeed = maphash.MakeSeed()
	t.head, t.tail = none, none
	t.cells = make([]uint64, min(1024, cellsFor(maxSources)))
	t.mask = uint64(len(t.cells) - 1)
}

// cellsFor is the index size for n sources: a power of two at least 2n.
func cellsFor(n int) int {
	c := 16
	for c < 2*n {
		c <<= 1
	}
	return c
}

func (t *table) at(i uint32) *source {
	return &t.chunks[i>>chunkBits][i&(1<<chunkBits-1)]
}

func (t *table) hashKey(k *[16]byte) uint64 {
	return maphash.Bytes(t.hashSeed, k[:])
}

// lookup finds or makes k's slot, marks it most recently seen and returns
// it. A new slot is zero but for its key.
func (t *table) lookup(k *[16]byte, ts int64, window int64) uint32 {
	h := t.hashKey(k)
	for c := h & t.mask; ; c = (c + 1) & t.mask {
		v := t.cells[c]
		if v == 0 {
			break
		}
		if uint32(v>>32) == uint32(h) {
			if i := uint32(v) - 1; t.at(i).key == *k {
				if i != t.head {
					t.unlink(i)
					t.pushFront(i)
				}
				return i
			}
		}
	}
	var i uint32
	if t.n < t.max {
		i = uint32(t.n)
		if int(i>>chunkBits) == len(t.chunks) {
			t.chunks = append(t.chunks, make([]source, 1<<chunkBits))
		}
		t.n++
		if 2*t.n > len(t.cells) {
			t.grow()
		}
	} else {
		i = t.evict(ts, window)
	}
	s := t.at(i)
	*s = source{key: *k, hash: uint32(h)}
	t.place(i, h)
	t.pushFront(i)
	return i
}

// place puts slot i, whose key hashes to h, in the index.
func (t *table) place(i uint32, h uint64) {
	c := h & t.mask
	for t.cells[c] != 0 {
		c = (c + 1) & t.mask
	}
	t.cells[c] = uint64(uint32(h))<<32 | uint64(i+1)
}

// grow doubles the index: on the way to max, never after.
func (t *table) grow() {
	old := t.cells
	t.cells = make([]uint64, 2*len(old))
	t.mask = uint64(len(t.cells) - 1)
	for _, v := range old {
		if v != 0 {
			t.place(uint32(v)-1, v>>32)
		}
	}
}

// evict frees the least recently seen slot and returns it. A source at a
// level above 0 whose window is still open is spared (moved to the front)
// as many times as its level, so a flood of forged one-packet sources does
// not wipe out the record of a real scan at once; at most 8 are spared per
// call, which bounds the work.
func (t *table) evict(ts, window int64) uint32 {
	for range 8 {
		s := t.at(t.tail)
		if s.level == 0 || s.spared >= s.level || ts-s.last > window || t.tail == t.head {
			break
		}
		s.spared++
		i := t.tail
		t.unlink(i)
		t.pushFront(i)
	}
	i := t.tail
	t.unlink(i)
	t.unindex(i)
	t.evicted++
	return i
}

// cellOf returns the index cell holding slot i.
func (t *table) cellOf(i uint32) uint64 {
	h := uint64(t.at(i).hash)
	for c := h & t.mask; ; c = (c + 1) & t.mask {
		if uint32(t.cells[c]) == i+1 {
			return c
		}
	}
}

// unindex removes slot i from the index, shifting back the entries after
// it (no tombstones: lookups stay short however many sources churn).
func (t *table) unindex(i uint32) {
	c := t.cellOf(i)
	t.cells[c] = 0
	for j := (c + 1) & t.mask; t.cells[j] != 0; j = (j + 1) & t.mask {
		home := (t.cells[j] >> 32) & t.mask
		// Move j into the hole at c unless its home lies cyclically in (c, j].
		if c <= j && (home <= c || home > j) || c > j && home <= c && home > j {
			t.cells[c] = t.cells[j]
			t.cells[j] = 0
			c = j
		}
	}
}

// find returns k's slot without touching the order, none if absent.
func (t *table) find(k *[16]byte) uint32 {
	h := t.hashKey(k)
	for c := h & t.mask; t.cells[c] != 0; c = (c + 1) & t.mask {
		if v := t.cells[c]; uint32(v>>32) == uint32(h) && t.at(uint32(v)-1).key == *k {
			return uint32(v) - 1
		}
	}
	return none
}

// remove forgets k, moving the last slot into its place so slots stay dense.
func (t *table) remove(k *[16]byte) {
	i := t.find(k)
	if i == none {
		return
	}
	t.unlink(i)
	t.unindex(i)
	last := uint32(t.n - 1)
	if i != last {
		c := t.cellOf(last)
		t.cells[c] = t.cells[c]&^0xffffffff | uint64(i+1)
		s := t.at(last)
		*t.at(i) = *s
		if s.prev != none {
			t.at(s.prev).next = i
		} else {
			t.head = i
		}
		if s.next != none {
			t.at(s.next).prev = i
		} else {
			t.tail = i
		}
	}
	*t.at(last) = source{}
	t.n--
}

func (t *table) unlink(i uint32) {
	s := t.at(i)
	if s.prev != none {
		t.at(s.prev).next = s.next
	} else {
		t.head = s.next
	}
	if s.next != none {
		t.at(s.next).prev = s.prev
	} else {
		t.tail = s.prev
	}
	s.prev, s.next = none, none
}

func (t *table) pushFront(i uint32) {
	s := t.at(i)
	s.prev, s.next = none, t.head
	if t.head != none {
		t.at(t.head).prev = i
	}
	t.head = i
	if t.tail == none {
		t.tail = i
	}
}

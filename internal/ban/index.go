package ban

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
)

// index finds a record's slot by its key: an open-addressing hash table of
// slot numbers, the keys being in the records themselves. A Go map of key
// to slot took 34 MB for a million bans; this takes 8 (4 bytes a cell, at
// most two thirds full). The hash is seeded per table: addresses are
// chosen by attackers, and a fixed hash would let them pick colliding ones.
type index struct {
	cells []uint32 // slot+1; 0 is empty
	n     int
	seed  uint64
}

func (x *index) hash(k *key) uint64 {
	lo := binary.LittleEndian.Uint64(k.a[:8])
	hi := binary.LittleEndian.Uint64(k.a[8:])
	t := uint64(k.bits) | uint64(b2u(k.v6))<<8
	h := mix(lo^x.seed, hi^0x9e3779b97f4a7c15)
	return mix(h, t^x.seed)
}

func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b^0xe7037ed1a0b428db)
	return hi ^ lo
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// get returns k's slot.
func (x *index) get(recs []rec, k key) (uint32, bool) {
	if len(x.cells) == 0 {
		return 0, false
	}
	mask := uint64(len(x.cells) - 1)
	for i := x.hash(&k) & mask; ; i = (i + 1) & mask {
		c := x.cells[i]
		if c == 0 {
			return 0, false
		}
		if recs[c-1].k == k {
			return c - 1, true
		}
	}
}

// put adds slot, whose record holds its key, which must not be in x yet.
func (x *index) put(recs []rec, slot uint32) {
	if 3*(x.n+1) > 2*len(x.cells) {
		x.grow(recs, max(2*len(x.cells), 16))
	}
	x.insert(recs, slot)
	x.n++
}

func (x *index) insert(recs []rec, slot uint32) {
	mask := uint64(len(x.cells) - 1)
	i := x.hash(&recs[slot].k) & mask
	for x.cells[i] != 0 {
		i = (i + 1) & mask
	}
	x.cells[i] = slot + 1
}

// reserve sizes x for n entries in all.
func (x *index) reserve(recs []rec, n int) {
	size := 16
	for 3*n > 2*size {
		size *= 2
	}
	if size > len(x.cells) {
		x.grow(recs, size)
	}
}

func (x *index) grow(recs []rec, size int) {
	if x.seed == 0 {
		x.seed = rand.Uint64() | 1
	}
	old := x.cells
	x.cells = make([]uint32, size)
	for _, c := range old {
		if c != 0 {
			x.insert(recs, c-1)
		}
	}
}

// del removes k, shifting back the cells after it that probed past it, so
// that no tombstones pile up.
func (x *index) del(recs []rec, k key) {
	if len(x.cells) == 0 {
		return
	}
	mask := uint64(len(x.cells) - 1)
	i := x.hash(&k) & mask
	for {
		c := x.cells[i]
		if c == 0 {
			return
		}
		if recs[c-1].k == k {
			break
		}
		i = (i + 1) & mask
	}
	x.cells[i] = 0
	x.n--
	for j := (i + 1) & mask; x.cells[j] != 0; j = (j + 1) & mask {
		home := x.hash(&recs[x.cells[j]-1].k) & mask
		// Move j back to i if its home is not cyclically in (i, j].
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			x.cells[i], x.cells[j] = x.cells[j], 0
			i = j
		}
	}
}

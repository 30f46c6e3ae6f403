// Package lru holds per-address state in fixed memory: a table keyed by a
// 16-byte address that, when full, reuses the slot of the least recently
// touched entry. A flood of invented addresses costs no more than the
// table's capacity. Slots live in chunks allocated as needed, so growing
// never copies nor keeps a doubled array alive. It is not safe for
// concurrent use.
package lru

// ChunkSize is how many slots are allocated at a time. Callers keeping
// per-slot data beside the table (see Table.OnMove) can size it likewise.
const ChunkSize = 4096

const none = ^uint32(0)

type node[V any] struct {
	key        [16]byte
	prev, next uint32
	val        V
}

// Table maps addresses to values of type V.
type Table[V any] struct {
	max    int
	n      int
	index  map[[16]byte]uint32
	chunks [][]node[V]
	head   uint32 // most recently touched slot, or none
	tail   uint32 // least recently touched slot, or none

	// OnMove, if set, is called when Delete moves the entry in slot from
	// to slot to (slots stay dense), for data kept by slot outside V.
	OnMove func(from, to uint32)
}

// New returns a table holding at most capacity entries (at least 1).
func New[V any](capacity int) *Table[V] {
	return &Table[V]{max: max(capacity, 1), index: make(map[[16]byte]uint32), head: none, tail: none}
}

func (t *Table[V]) at(i uint32) *node[V] { return &t.chunks[i/ChunkSize][i%ChunkSize] }

// Len is the number of entries.
func (t *Table[V]) Len() int { return t.n }

// Get returns k's value and slot without touching it.
func (t *Table[V]) Get(k [16]byte) (*V, uint32, bool) {
	i, ok := t.index[k]
	if !ok {
		return nil, 0, false
	}
	return &t.at(i).val, i, true
}

// Touch returns k's value and slot, making k the most recently touched.
// fresh reports a new entry: its value is zero, in a new slot or in the
// slot of the least recently touched entry, which is forgotten.
func (t *Table[V]) Touch(k [16]byte) (v *V, slot uint32, fresh bool) {
	if i, ok := t.index[k]; ok {
		if i != t.head {
			t.unlink(i)
			t.pushFront(i)
		}
		return &t.at(i).val, i, false
	}
	var i uint32
	if t.n < t.max {
		i = uint32(t.n)
		if int(i/ChunkSize) == len(t.chunks) {
			t.chunks = append(t.chunks, make([]node[V], ChunkSize))
		}
		t.n++
	} else {
		i = t.tail
		t.unlink(i)
		delete(t.index, t.at(i).key)
	}
	*t.at(i) = node[V]{key: k, prev: none, next: none}
	t.index[k] = i
	t.pushFront(i)
	return &t.at(i).val, i, true
}

// Delete forgets k.
func (t *Table[V]) Delete(k [16]byte) {
	i, ok := t.index[k]
	if !ok {
		return
	}
	t.unlink(i)
	delete(t.index, k)
	last := uint32(t.n - 1)
	if i != last {
		nd := *t.at(last)
		*t.at(i) = nd
		t.index[nd.key] = i
		if nd.prev != none {
			t.at(nd.prev).next = i
		} else {
			t.head = i
		}
		if nd.next != none {
			t.at(nd.next).prev = i
		} else {
			t.tail = i
		}
		if t.OnMove != nil {
			t.OnMove(last, i)
		}
	}
	t.n--
}

// Reset forgets every entry and frees the slots.
func (t *Table[V]) Reset() {
	clear(t.index)
	t.chunks, t.n = nil, 0
	t.head, t.tail = none, none
}

// Oldest calls fn for every entry, least recently touched first.
func (t *Table[V]) Oldest(fn func(k [16]byte, v *V, slot uint32)) {
	for i := t.tail; i != none; i = t.at(i).prev {
		nd := t.at(i)
		fn(nd.key, &nd.val, i)
	}
}

func (t *Table[V]) unlink(i uint32) {
	nd := t.at(i)
	if nd.prev != none {
		t.at(nd.prev).next = nd.next
	} else {
		t.head = nd.next
	}
	if nd.next != none {
		t.at(nd.next).prev = nd.prev
	} else {
		t.tail = nd.prev
	}
	nd.prev, nd.next = none, none
}

func (t *Table[V]) pushFront(i uint32) {
	nd := t.at(i)
	nd.prev, nd.next = none, t.head
	if t.head != none {
		t.at(t.head).prev = i
	}
	t.head = i
	if t.tail == none {
		t.tail = i
	}
}

package lru

import (
	"math/rand/v2"
	"testing"
)

func key(n int) [16]byte { return [16]byte{15: byte(n), 14: byte(n >> 8)} }

// TestModel drives random touches and deletes against a map with the same
// eviction rule, checking values, order and OnMove.
func TestModel(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const capacity = 37
	tab := New[int](capacity)
	side := map[uint32]int{} // per-slot data kept beside the table
	tab.OnMove = func(from, to uint32) { side[to] = side[from]; delete(side, from) }
	model := map[[16]byte]int{}
	seen := map[[16]byte]int{}
	for step := range 50000 {
		k := key(r.IntN(100))
		if r.IntN(5) == 0 {
			tab.Delete(k)
			delete(model, k)
			continue
		}
		if _, ok := model[k]; !ok && len(model) == capacity {
			var oldest [16]byte
			first := true
			for mk := range model {
				if first || seen[mk] < seen[oldest] {
					oldest, first = mk, false
				}
			}
			delete(model, oldest)
		}
		seen[k] = step
		v, slot, fresh := tab.Touch(k)
		if _, ok := model[k]; ok == fresh {
			t.Fatalf("step %d: fresh=%v but in model=%v", step, fresh, ok)
		}
		if !fresh && (*v != model[k] || side[slot] != model[k]) {
			t.Fatalf("step %d: value %d, side %d, want %d", step, *v, side[slot], model[k])
		}
		*v = step
		side[slot] = step
		model[k] = step
		if tab.Len() != len(model) {
			t.Fatalf("step %d: len %d, model %d", step, tab.Len(), len(model))
		}
	}
	prev := -1
	tab.Oldest(func(k [16]byte, v *int, _ uint32) {
		if seen[k] < prev {
			t.Fatal("Oldest is not in touch order")
		}
		prev = seen[k]
	})
}

func TestGetDoesNotTouch(t *testing.T) {
	tab := New[int](2)
	tab.Touch(key(1))
	tab.Touch(key(2))
	if _, _, ok := tab.Get(key(1)); !ok {
		t.Fatal("missing")
	}
	tab.Touch(key(3)) // evicts 1, the least recently touched despite the Get
	if _, _, ok := tab.Get(key(1)); ok {
		t.Fatal("Get counted as a touch")
	}
}

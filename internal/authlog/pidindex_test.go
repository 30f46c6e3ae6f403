package authlog

import (
	"math/rand/v2"
	"testing"
)

// The PID index answers as a map does through any sequence of sets and
// deletes, with PIDs crowded so that probes collide and wrap around.
func TestPIDIndexLikeAMap(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 7))
		const max = 8
		x := newPIDIndex(max)
		m := map[uint32]int32{}
		for op := range 5000 {
			pid := uint32(rng.IntN(40))
			switch {
			case rng.IntN(2) == 0 && (len(m) < max || m[pid] != 0):
				if pid == 0 {
					break // never indexed
				}
				slot := int32(op + 1)
				x.set(pid, slot)
				m[pid] = slot
			default:
				x.delete(pid)
				delete(m, pid)
			}
			if x.len() != len(m) {
				t.Fatalf("seed %d op %d: len %d, map %d", seed, op, x.len(), len(m))
			}
			for p := range uint32(40) {
				got, ok := x.get(p)
				want, wok := m[p]
				if ok != wok || got != want {
					t.Fatalf("seed %d op %d: get(%d) = %d %v, map %d %v", seed, op, p, got, ok, want, wok)
				}
			}
		}
	}
}

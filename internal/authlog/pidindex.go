package authlog

// pidIndex maps an sshd PID to its Joiner slot: an open-addressing table
// with linear probing, at most half full, deletions by backward shift (no
// tombstones). The Joiner looks a PID up on every line and inserts and
// deletes one per connection; Go's map did that at several times the
// cost (a fifth of `moat explain`'s time on a million lines). PID 0 marks
// an empty cell: the Joiner never indexes it.
type pidIndex struct {
	cells []pidCell
	mask  uint32
	n     int
}

type pidCell struct {
	pid  uint32
	slot int32
}

// newPIDIndex returns an index for up to max PIDs.
func newPIDIndex(max int) pidIndex {
	size := 16
	for size < 2*max {
		size *= 2
	}
	return pidIndex{cells: make([]pidCell, size), mask: uint32(size - 1)}
}

// home is pid's first cell (Fibonacci hashing: PIDs are often close).
func (x *pidIndex) home(pid uint32) uint32 { return (pid * 0x9E3779B1) & x.mask }

func (x *pidIndex) get(pid uint32) (int32, bool) {
	if pid == 0 {
		return 0, false
	}
	for i := x.home(pid); ; i = (i + 1) & x.mask {
		c := &x.cells[i]
		if c.pid == pid {
			return c.slot, true
		}
		if c.pid == 0 {
			return 0, false
		}
	}
}

// set maps pid to slot; the caller keeps the count under the max given
// to newPIDIndex.
func (x *pidIndex) set(pid uint32, slot int32) {
	if pid == 0 {
		return
	}
	for i := x.home(pid); ; i = (i + 1) & x.mask {
		c := &x.cells[i]
		if c.pid == pid {
			c.slot = slot
			return
		}
		if c.pid == 0 {
			c.pid, c.slot = pid, slot
			x.n++
			return
		}
	}
}

func (x *pidIndex) delete(pid uint32) {
	if pid == 0 {
		return
	}
	i := x.home(pid)
	for ; x.cells[i].pid != pid; i = (i + 1) & x.mask {
		if x.cells[i].pid == 0 {
			return
		}
	}
	x.n--
	// Shift back the cells after i that probing would no longer find.
	for j := (i + 1) & x.mask; x.cells[j].pid != 0; j = (j + 1) & x.mask {
		h := x.home(x.cells[j].pid)
		// The cell at j may move to i when its home is not in (i, j]
		// (cyclically).
		if (j > i && (h <= i || h > j)) || (j < i && h <= i && h > j) {
			x.cells[i] = x.cells[j]
			i = j
		}
	}
	x.cells[i] = pidCell{}
}

func (x *pidIndex) len() int { return x.n }

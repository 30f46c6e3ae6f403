package knock

import (
	"net/netip"
	"time"

	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/lru"
)

// Daemon-mode doors (doors with commands or one-time sequences) are verified
// by moat from the packets the kernel logs with prefix "moat:knock": every
// packet to a knock port, and every closed-port packet from a source that
// knocked recently. The semantics are the kernel-mode ones: a source in the
// middle of a sequence that sends anything but its next knock or a repeat of
// its last one starts over; the whole sequence must arrive within
// seq_timeout. Per-source state lives in a table of fixed size: when it is
// full the least recently seen source is forgotten, so a flood of invented
// sources costs no memory and cannot push out a knocker who is still
// knocking faster than the flood fills the table.

// knockStep is one knock of a sequence: a protocol and a port.
type knockStep struct {
	proto config.Proto
	port  uint16
}

// Result says what a packet did to a door.
type Result uint8

// Results of Observe.
const (
	Ignored   Result = iota // not a knock for this door, and the source was not knocking
	Advanced                // a valid step, the sequence goes on
	Repeated                // the last step again: tolerated
	Reset                   // the source was knocking and sent something else
	Completed               // the whole sequence: open the door
	Closed                  // the whole close sequence: close the door
)

func (r Result) String() string {
	return [...]string{"ignored", "advanced", "repeated", "reset", "completed", "closed"}[r]
}

// Door verifies one door's sequences in user space.
type Door struct {
	Name    string
	flags   config.TCPFlags
	timeout time.Duration
	open    machine
	close   machine
}

// machine tracks one sequence for every knocking source.
type machine struct {
	steps []knockStep
	table *lru.Table[state]
}

// maxDaemonPending caps the user-space table whatever max_pending says:
// unlike a kernel set it evicts the least recently seen source, so it only
// needs to outlast one real knock (milliseconds) under a flood, and 2^17
// sources do at 50,000 forged packets/s for 2.6 s, in about 12 MB.
const maxDaemonPending = 1 << 17

// NewDoor returns the verifier for a door; sequence may be replaced later
// (one-time sequences) with SetSequence.
func NewDoor(d config.Door) *Door {
	dr := &Door{Name: d.Name, flags: d.TCPFlags, timeout: d.SeqTimeout}
	capacity := min(d.MaxPending, maxDaemonPending)
	dr.open = machine{steps: steps(d.Sequence), table: lru.New[state](capacity)}
	if len(d.CloseSequence) > 0 {
		dr.close = machine{steps: steps(d.CloseSequence), table: lru.New[state](capacity)}
	}
	return dr
}

func steps(ps []config.PortSpec) []knockStep {
	out := make([]knockStep, len(ps))
	for i, p := range ps {
		out[i] = knockStep{proto: p.Proto, port: p.From}
	}
	return out
}

// SetSequence replaces the open sequence (the next one-time sequence) and
// forgets every knock in progress.
func (d *Door) SetSequence(seq []config.PortSpec) {
	d.open.steps = steps(seq)
	d.open.table.Reset()
}

// Pending is how many sources are in the middle of a sequence.
func (d *Door) Pending() int {
	n := d.open.table.Len()
	if d.close.table != nil {
		n += d.close.table.Len()
	}
	return n
}

// Observe feeds one packet from src: proto and port are the destination,
// tcpFlags the TCP flags (ignored for UDP). It returns what the packet did
// to the open sequence, or to the close sequence when it did nothing there.
func (d *Door) Observe(src netip.Addr, proto config.Proto, port uint16, tcpFlags uint8, now time.Time) Result {
	valid := proto != config.TCP || d.flags.Match(tcpFlags)
	s := knockStep{proto: proto, port: port}
	r := d.open.observe(src.Unmap().As16(), s, valid, d.timeout, now)
	if d.close.table != nil {
		if rc := d.close.observe(src.Unmap().As16(), s, valid, d.timeout, now); r == Ignored || rc == Completed {
			r = rc
			if r == Completed {
				r = Closed
			}
		}
	}
	return r
}

func (m *machine) observe(k [16]byte, s knockStep, valid bool, timeout time.Duration, now time.Time) Result {
	n := len(m.steps)
	if n == 0 {
		return Ignored
	}
	var st state
	p, _, ok := m.table.Get(k)
	if ok {
		st = *p
	}
	if ok && now.Sub(time.Unix(0, st.start)) > timeout {
		m.table.Delete(k)
		ok = false
	}
	if ok {
		cur := m.steps[st.stage-1]
		next := m.steps[st.stage]
		switch {
		case s == next && valid:
			if int(st.stage)+1 == n {
				m.table.Delete(k)
				return Completed
			}
			m.put(k, state{stage: st.stage + 1, start: st.start})
			return Advanced
		case s == cur:
			return Repeated
		case s == next:
			return Ignored // the right port with the wrong flags: neither a step nor a reset
		}
		m.table.Delete(k)
		// The reset packet may itself start the sequence again.
		if s == m.steps[0] && valid {
			return m.start(k, n, now)
		}
		return Reset
	}
	if s == m.steps[0] && valid {
		return m.start(k, n, now)
	}
	return Ignored
}

func (m *machine) start(k [16]byte, n int, now time.Time) Result {
	if n == 1 {
		return Completed
	}
	m.put(k, state{stage: 1, start: now.UnixNano()})
	return Advanced
}

func (m *machine) put(k [16]byte, st state) {
	v, _, _ := m.table.Touch(k)
	*v = st
}

// state is where one source is in a sequence.
type state struct {
	stage uint8 // knocks done, 1..n-1
	start int64 // unix ns of the first knock
}

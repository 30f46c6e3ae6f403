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
// knocked recently. The semantics are knockd's (knockd.c, sniff()), which
// the kernel-mode rules implement too:
//
//   - a door's open and close sequences are two state machines, each
//     tracking every source's progress (a stage and the time of its first
//     knock); the whole sequence must arrive within seq_timeout;
//   - a source in the middle of any sequence ("busy") has each of its
//     sequences judged by the packet: the next knock advances it, a TCP
//     packet with the wrong flags is ignored, anything else ends it. A busy
//     source's packet never starts a sequence, not even the one it just
//     ended or completed;
//   - a source in no sequence starts every sequence whose first knock the
//     packet is.
//
// Two differences, both deliberate: moat sees every packet to a closed port
// where knockd sees only packets to knock ports, so a sweep through other
// ports ends a sequence; and a repeat of the knock just made changes
// nothing, so a retransmitted SYN does not end it (knockd ends it).
//
// Per-source state lives in tables of fixed size: when one is full the
// least recently seen source is forgotten, so a flood of invented sources
// costs no memory and cannot push out a knocker who is still knocking
// faster than the flood fills the table.

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

// Door verifies one door's sequences in user space. Doors that should judge
// a packet together, as knockd's doors do, belong to one Group.
type Door struct {
	Name    string
	flags   config.TCPFlags
	timeout time.Duration
	open    machine
	close   machine
	solo    *Group // for Observe
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

// NewDoor returns the verifier for a door on its own (a Group of one);
// sequence may be replaced later (one-time sequences) with SetSequence.
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

// Observe feeds one packet from src to this door alone: proto and port are
// the destination, tcpFlags the TCP flags (ignored for UDP). It returns
// what the packet did to the open sequence, or to the close sequence when
// it did nothing there. Doors configured together must see packets
// through their Group, so that a source busy at one door does not start
// another (knockd's rule).
func (d *Door) Observe(src netip.Addr, proto config.Proto, port uint16, tcpFlags uint8, now time.Time) Result {
	if d.solo == nil {
		d.solo = NewGroup(d)
	}
	return d.solo.Observe(src, proto, port, tcpFlags, now)[0]
}

// Group is the doors that judge every packet together, as all of knockd's
// doors do: a source in the middle of any of their sequences starts none.
type Group struct {
	doors   []*Door
	results []Result // reused by Observe: the hot path does not allocate
}

// NewGroup returns the group of doors, in config order.
func NewGroup(doors ...*Door) *Group {
	return &Group{doors: doors, results: make([]Result, len(doors))}
}

// Observe feeds one packet from src to every door of the group and returns
// each door's result, in the group's order. The slice is reused by the next
// call.
func (g *Group) Observe(src netip.Addr, proto config.Proto, port uint16, tcpFlags uint8, now time.Time) []Result {
	if len(g.results) != len(g.doors) {
		g.results = make([]Result, len(g.doors))
	}
	k := src.Unmap().As16()
	s := knockStep{proto: proto, port: port}
	// knockd first forgets attempts that timed out, then asks whether the
	// source is in the middle of any sequence.
	busy := false
	for _, d := range g.doors {
		busy = d.open.expire(k, d.timeout, now) || busy
		if d.close.table != nil {
			busy = d.close.expire(k, d.timeout, now) || busy
		}
	}
	for i, d := range g.doors {
		// knockd judges only TCP and UDP, and a TCP packet only when its
		// flags are the door's: other packets neither step nor reset.
		valid := proto == config.UDP || proto == config.TCP && d.flags.Match(tcpFlags)
		r := d.open.observe(k, s, valid, busy, now)
		if d.close.table != nil {
			rc := d.close.observe(k, s, valid, busy, now)
			switch {
			case rc == Completed:
				r = Closed
			case r == Completed:
			case r == Ignored:
				r = rc
			}
		}
		g.results[i] = r
	}
	return g.results
}

// expire forgets k's attempt when it timed out and reports whether k is
// still in the middle of this sequence.
func (m *machine) expire(k [16]byte, timeout time.Duration, now time.Time) bool {
	if len(m.steps) == 0 {
		return false
	}
	p, _, ok := m.table.Get(k)
	if !ok {
		return false
	}
	if now.Sub(time.Unix(0, p.start)) >= timeout {
		m.table.Delete(k)
		return false
	}
	return true
}

func (m *machine) observe(k [16]byte, s knockStep, valid, busy bool, now time.Time) Result {
	n := len(m.steps)
	if n == 0 || !valid {
		return Ignored
	}
	if !busy {
		if s != m.steps[0] {
			return Ignored
		}
		if n == 1 {
			return Completed
		}
		m.put(k, state{stage: 1, start: now.UnixNano()})
		return Advanced
	}
	p, _, ok := m.table.Get(k)
	if !ok {
		return Ignored // busy elsewhere: this sequence does not start
	}
	st := *p
	switch s {
	case m.steps[st.stage]:
		if int(st.stage)+1 == n {
			m.table.Delete(k)
			return Completed
		}
		m.put(k, state{stage: st.stage + 1, start: st.start})
		return Advanced
	case m.steps[st.stage-1]:
		return Repeated
	}
	m.table.Delete(k)
	return Reset
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

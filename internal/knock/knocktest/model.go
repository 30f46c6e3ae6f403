package knocktest

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/knock"
)

// A reference model of knockd's semantics, written after knockd 0.8's
// knockd.c (sniff(), process_attempt(), flags_match(),
// generate_pcap_filter()) and kept as close to its shape as Go allows, so
// that a reader can hold the two side by side:
//
//   - every door (and every close sequence: in knockd.conf it is a door of
//     its own) is a sequence; knockd keeps one list of attempts, each a
//     (source, door, stage, seq_start);
//   - each packet first removes attempts that completed, failed, or whose
//     seq_start is seq_timeout or more in the past;
//   - if the source has attempts, each is judged: a TCP packet whose flags
//     are not the door's is ignored; the door's next knock advances it (and
//     the last one opens); anything else fails it (stage -1). No attempt is
//     started for this packet, whatever it is;
//   - if the source has none, an attempt starts at every door whose first
//     knock the packet is (flags matching).
//
// knockd sees only packets that its pcap filter lets through: TCP to a
// knock port with one door's flags, UDP to a knock port. The model's moat
// switch applies moat's two deliberate differences: every TCP or UDP packet
// to a closed port is seen (so a sweep through other ports fails an
// attempt), and a repeat of the knock just made is ignored rather than
// failing the attempt (a retransmitted SYN).
type Model struct {
	moat     bool
	doors    []*modelDoor
	attempts []*modelAttempt
}

type modelDoor struct {
	index   int  // the moat door this sequence belongs to
	close   bool // the door's close sequence
	seq     []step
	flags   config.TCPFlags
	timeout time.Duration
}

type modelAttempt struct {
	door     *modelDoor
	stage    int
	src      netip.Addr
	seqStart time.Time
}

// NewModel models doors as knockd would (moat false) or with moat's two
// deliberate differences (moat true).
func NewModel(moat bool, doors []config.Door) *Model {
	m := &Model{moat: moat}
	for i, d := range doors {
		m.doors = append(m.doors, &modelDoor{index: i, seq: steps(d.Sequence), flags: d.TCPFlags, timeout: d.SeqTimeout})
		if len(d.CloseSequence) > 0 {
			m.doors = append(m.doors, &modelDoor{index: i, close: true, seq: steps(d.CloseSequence), flags: d.TCPFlags, timeout: d.SeqTimeout})
		}
	}
	return m
}

func (d *modelDoor) flagsMatch(proto config.Proto, flags uint8) bool {
	return proto != config.TCP || d.flags.Match(flags)
}

// Sniff is knockd's sniff() for one packet; it returns, per moat door,
// what the packet did, combined as Group.Observe combines a door's two
// sequences.
func (m *Model) Sniff(src netip.Addr, proto config.Proto, port uint16, flags uint8, now time.Time, nDoors int) []knock.Result {
	out := make([]knock.Result, nDoors)
	open, closed := make([]knock.Result, nDoors), make([]knock.Result, nDoors)
	set := func(d *modelDoor, r knock.Result) {
		if d.close {
			closed[d.index] = r
		} else {
			open[d.index] = r
		}
	}
	s := step{proto: proto, port: port}
	src = src.Unmap()
	if !m.seen(s, flags) {
		return out
	}
	// clean up expired/completed/failed attempts
	m.attempts = slices.DeleteFunc(m.attempts, func(a *modelAttempt) bool {
		return a.stage >= len(a.door.seq) || a.stage < 0 || now.Sub(a.seqStart) >= a.door.timeout
	})
	var found []*modelAttempt
	for _, a := range m.attempts {
		if a.src == src {
			found = append(found, a)
		}
	}
	if len(found) > 0 {
		for _, a := range found {
			match := a.door.flagsMatch(proto, flags)
			switch {
			case match && s == a.door.seq[a.stage]:
				set(a.door, m.process(a))
			case !match:
				// TCP flags didn't match: ignore the packet, keep the attempt
			case m.moat && a.stage > 0 && s == a.door.seq[a.stage-1]:
				set(a.door, knock.Repeated)
			default:
				a.stage = -1
				set(a.door, knock.Reset)
			}
		}
	} else {
		for _, d := range m.doors {
			if d.flagsMatch(proto, flags) && s == d.seq[0] {
				a := &modelAttempt{door: d, src: src, seqStart: now}
				m.attempts = append(m.attempts, a)
				set(d, m.process(a))
			}
		}
	}
	for i := range out {
		switch r, rc := open[i], closed[i]; {
		case rc == knock.Completed:
			out[i] = knock.Closed
		case r == knock.Completed, r != knock.Ignored:
			out[i] = r
		default:
			out[i] = rc
		}
	}
	return out
}

// process is process_attempt(): level up, and open at the last stage.
func (m *Model) process(a *modelAttempt) knock.Result {
	a.stage++
	if a.stage >= len(a.door.seq) {
		return knock.Completed // OPEN SESAME
	}
	return knock.Advanced
}

// seen is knockd's pcap filter, or moat's view of closed-port packets.
func (m *Model) seen(s step, flags uint8) bool {
	if s.proto != config.TCP && s.proto != config.UDP {
		return false
	}
	if m.moat {
		return true
	}
	for _, d := range m.doors {
		if slices.Contains(d.seq, s) && d.flagsMatch(s.proto, flags) {
			return true
		}
	}
	return false
}

// step is one knock of a sequence: a protocol and a port.
type step struct {
	proto config.Proto
	port  uint16
}

func steps(ps []config.PortSpec) []step {
	out := make([]step, len(ps))
	for i, p := range ps {
		out[i] = step{proto: p.Proto, port: p.From}
	}
	return out
}

// Describe prints doors for a failure message.
func Describe(doors []config.Door) string {
	s := ""
	for _, d := range doors {
		s += fmt.Sprintf("[%s open %v close %v flags %s timeout %v] ", d.Name, d.Sequence, d.CloseSequence, d.TCPFlags, d.SeqTimeout)
	}
	return s
}

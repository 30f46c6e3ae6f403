package knock

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/config"
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
type knockdModel struct {
	moat     bool
	doors    []*modelDoor
	attempts []*modelAttempt
}

type modelDoor struct {
	index   int  // the moat door this sequence belongs to
	close   bool // the door's close sequence
	seq     []knockStep
	flags   config.TCPFlags
	timeout time.Duration
}

type modelAttempt struct {
	door     *modelDoor
	stage    int
	src      netip.Addr
	seqStart time.Time
}

func newKnockdModel(moat bool, doors []config.Door) *knockdModel {
	m := &knockdModel{moat: moat}
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

// sniff is knockd's sniff() for one packet; it returns, per moat door,
// what the packet did, combined as Group.Observe combines a door's two
// sequences.
func (m *knockdModel) sniff(src netip.Addr, proto config.Proto, port uint16, flags uint8, now time.Time, nDoors int) []Result {
	out := make([]Result, nDoors)
	open, closed := make([]Result, nDoors), make([]Result, nDoors)
	set := func(d *modelDoor, r Result) {
		if d.close {
			closed[d.index] = r
		} else {
			open[d.index] = r
		}
	}
	s := knockStep{proto: proto, port: port}
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
				set(a.door, Repeated)
			default:
				a.stage = -1
				set(a.door, Reset)
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
		case rc == Completed:
			out[i] = Closed
		case r == Completed, r != Ignored:
			out[i] = r
		default:
			out[i] = rc
		}
	}
	return out
}

// process is process_attempt(): level up, and open at the last stage.
func (m *knockdModel) process(a *modelAttempt) Result {
	a.stage++
	if a.stage >= len(a.door.seq) {
		return Completed // OPEN SESAME
	}
	return Advanced
}

// seen is knockd's pcap filter, or moat's view of closed-port packets.
func (m *knockdModel) seen(s knockStep, flags uint8) bool {
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

// The model itself, on the cases its source makes plain.
func TestKnockdModel(t *testing.T) {
	a := netip.MustParseAddr("10.210.0.2")
	debian := []config.Door{{Name: "ssh", Sequence: []config.PortSpec{tcp(7000), tcp(8000), tcp(9000)},
		CloseSequence: []config.PortSpec{tcp(9000), tcp(8000), tcp(7000)}, SeqTimeout: 5 * time.Second, TCPFlags: config.TCPFlags{Set: syn}}}
	for _, moat := range []bool{false, true} {
		m := newKnockdModel(moat, debian)
		now := t0
		knock := func(ports ...uint16) (last Result) {
			for _, p := range ports {
				now = now.Add(100 * time.Millisecond)
				last = m.sniff(a, config.TCP, p, syn, now, 1)[0]
			}
			return last
		}
		if r := knock(7000, 8000, 9000); r != Completed {
			t.Fatalf("moat=%v: open: %v", moat, r)
		}
		if r := knock(9000, 8000, 7000); r != Closed {
			t.Fatalf("moat=%v: close: %v", moat, r)
		}
		if r := knock(7000, 8000, 9000); r != Completed {
			t.Fatalf("moat=%v: open again: %v", moat, r)
		}
		// The packet that fails an attempt starts nothing, not even at
		// the first knock: 7000 8000 7000 8000 9000 does not open.
		if r := knock(7000, 8000, 7000, 8000, 9000); r == Completed {
			t.Fatalf("moat=%v: a failing packet started a sequence", moat)
		}
		// An ascending sweep: knockd sees only the knock ports and opens.
		now = now.Add(time.Minute)
		opened := false
		for p := uint16(6990); p < 9010; p++ {
			now = now.Add(time.Millisecond)
			opened = opened || m.sniff(a, config.TCP, p, syn, now, 1)[0] == Completed
		}
		if opened == moat {
			t.Fatalf("moat=%v: an ascending sweep opened=%v", moat, opened)
		}
	}
}

// TestDoorsEqualKnockdModel is the property: for random door configs
// within config validation's rules and random knock streams from several
// sources (correct knocks, close knocks, sweeps, stray packets, wrong
// flags, pauses past seq_timeout, all interleaved), moat's daemon-mode
// verifier decides exactly what the model decides, packet by packet.
func TestDoorsEqualKnockdModel(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 6))
	n := 3000
	if testing.Short() {
		n = 300
	}
	for i := range n {
		doors := RandomDoors(r)
		stream := RandomStream(r, doors, 80)
		checkAgainstModel(t, fmt.Sprintf("case %d", i), doors, stream)
	}
}

func checkAgainstModel(t *testing.T, name string, doors []config.Door, stream []Packet) {
	t.Helper()
	vs := make([]*Door, len(doors))
	for i, d := range doors {
		vs[i] = NewDoor(d)
	}
	g := NewGroup(vs...)
	m := newKnockdModel(true, doors)
	for j, p := range stream {
		got := g.Observe(p.Src, p.Proto, p.Port, p.Flags, p.At)
		want := m.sniff(p.Src, p.Proto, p.Port, p.Flags, p.At, len(doors))
		if !slices.Equal(got, want) {
			t.Fatalf("%s: doors %v\npacket %d (%v): moat %v, model %v\nstream:\n%s", name, describe(doors), j, p, got, want, formatStream(stream[:j+1]))
		}
	}
}

func describe(doors []config.Door) string {
	s := ""
	for _, d := range doors {
		s += fmt.Sprintf("[%s open %v close %v flags %s timeout %v] ", d.Name, d.Sequence, d.CloseSequence, d.TCPFlags, d.SeqTimeout)
	}
	return s
}

func formatStream(ps []Packet) string {
	s := ""
	for _, p := range ps {
		s += fmt.Sprintf("  %v\n", p)
	}
	return s
}

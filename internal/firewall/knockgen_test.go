package firewall_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/knock"
)

// Copies of internal/knock's test generators (gen_test.go: RandomDoors,
// RandomStream) and of its reference model of knockd (model_test.go, moat's
// view only), which test files of another package cannot import. Keep them
// in step with the originals: the property test there is what shows the
// daemon verifier equals this model, and the kernel replay here leans on
// both.

// genPacket is one packet of a generated knock stream.
type genPacket struct {
	Src   netip.Addr
	Proto config.Proto
	Port  uint16
	Flags uint8
	At    time.Time
}

func (p genPacket) String() string {
	return fmt.Sprintf("%s %s/%d flags %#x at +%v", p.Src, p.Proto, p.Port, p.Flags, p.At.Sub(genT0))
}

var (
	genT0   = time.Unix(1_700_000_000, 0)
	genSrcs = []netip.Addr{netip.MustParseAddr("10.210.0.2"), netip.MustParseAddr("10.210.0.3"), netip.MustParseAddr("fd00:210::2")}
)

// knockPool is the ports generated doors knock on: few, so that sequences
// share ports, repeat them, and are each other's reverse.
var knockPool = []uint16{7000, 7002, 8000, 8002, 9000}

// genDoors returns 1 to 3 doors that config validation accepts (with
// allow_weak: one-knock doors too): no knock equal or next to the one
// before it, no two sequences alike; half have a close sequence, often the
// reverse of the open one.
func genDoors(r *rand.Rand) []config.Door {
	seen := map[string]bool{}
	randSeq := func() []config.PortSpec {
		for {
			n := 1 + r.IntN(4)
			if r.IntN(4) == 0 {
				n = 1
			}
			var seq []config.PortSpec
			for len(seq) < n {
				s := config.PortSpec{Proto: config.TCP, From: knockPool[r.IntN(len(knockPool))]}
				if r.IntN(4) == 0 {
					s.Proto = config.UDP
				}
				s.To = s.From
				if len(seq) > 0 {
					prev := seq[len(seq)-1]
					if prev.Proto == s.Proto && (prev.From == s.From || prev.From+1 == s.From || s.From+1 == prev.From) {
						continue
					}
				}
				seq = append(seq, s)
			}
			if !seen[fmt.Sprint(seq)] {
				seen[fmt.Sprint(seq)] = true
				return seq
			}
		}
	}
	flags := []config.TCPFlags{{Set: 0x02}, {Set: 0x02, Clear: 0x10}, {}}
	var doors []config.Door
	for i := range 1 + r.IntN(3) {
		d := config.Door{Name: fmt.Sprintf("d%d", i), Sequence: randSeq(), MaxPending: 1000,
			SeqTimeout: time.Duration(1+r.IntN(4)) * time.Second, TCPFlags: flags[r.IntN(len(flags))]}
		switch r.IntN(4) {
		case 0:
			d.CloseSequence = randSeq()
		case 1:
			rev := slices.Clone(d.Sequence)
			slices.Reverse(rev)
			if !seen[fmt.Sprint(rev)] {
				seen[fmt.Sprint(rev)] = true
				d.CloseSequence = rev
			}
		}
		doors = append(doors, d)
	}
	return doors
}

// genStream returns about n packets from a few sources: whole correct
// open and close knocks, interleaved between sources, with stray packets,
// ordered sweeps over the knock ports and their neighbours, wrong TCP
// flags, and pauses past seq_timeout.
func genStream(r *rand.Rand, doors []config.Door, n int) []genPacket {
	srcs := genSrcs
	now := genT0
	var out []genPacket
	// queues holds, per source, the knocks it still means to send.
	queues := make([][]config.PortSpec, len(srcs))
	flagsFor := func(p config.Proto) uint8 {
		if p != config.TCP {
			return 0
		}
		return []uint8{0x02, 0x02, 0x02, 0x12, 0x10}[r.IntN(5)]
	}
	for len(out) < n {
		switch r.IntN(10) {
		case 0:
			now = now.Add(time.Duration(1+r.IntN(5)) * time.Second) // a pause, often past seq_timeout
		default:
			now = now.Add(time.Duration(1+r.IntN(300)) * time.Millisecond)
		}
		i := r.IntN(len(srcs))
		switch k := r.IntN(10); {
		case len(queues[i]) == 0 && k < 5:
			d := doors[r.IntN(len(doors))]
			queues[i] = slices.Clone(d.Sequence)
			if len(d.CloseSequence) > 0 && r.IntN(2) == 0 {
				queues[i] = slices.Clone(d.CloseSequence)
			}
		case len(queues[i]) > 0 && k < 8:
			s := queues[i][0]
			queues[i] = queues[i][1:]
			out = append(out, genPacket{Src: srcs[i], Proto: s.Proto, Port: s.From, At: now})
			if s.Proto == config.TCP {
				out[len(out)-1].Flags = 0x02
			} else {
				out[len(out)-1].Flags = 0
			}
			if r.IntN(8) == 0 { // a retransmission
				p := out[len(out)-1]
				p.At = p.At.Add(time.Millisecond)
				out = append(out, p)
			}
		case k == 8:
			// an ordered sweep over a stretch of the knock ports, TCP
			// then UDP for each port as a TCP+UDP sweeper does
			from := knockPool[r.IntN(len(knockPool))] - uint16(r.IntN(3))
			for p := from; p < from+uint16(2+r.IntN(6)); p++ {
				now = now.Add(time.Millisecond)
				out = append(out, genPacket{Src: srcs[i], Proto: config.TCP, Port: p, Flags: 0x02, At: now})
				if r.IntN(2) == 0 {
					out = append(out, genPacket{Src: srcs[i], Proto: config.UDP, Port: p, At: now})
				}
			}
		default:
			proto := config.TCP
			if r.IntN(3) == 0 {
				proto = config.UDP
			}
			port := knockPool[r.IntN(len(knockPool))] + uint16(r.IntN(3)) - 1
			if r.IntN(4) == 0 {
				port = 22
			}
			out = append(out, genPacket{Src: srcs[i], Proto: proto, Port: port, Flags: flagsFor(proto), At: now})
		}
	}
	return out
}

// model is knockd's sniff() as internal/knock's knockdModel has it, with
// moat's two differences always on: every packet to a closed port is seen,
// and a repeat of the knock just made is ignored.
type model struct {
	doors    []*modelSeq
	attempts []*modelAttempt
}

type modelStep struct {
	proto config.Proto
	port  uint16
}

type modelSeq struct {
	index   int  // the moat door this sequence belongs to
	close   bool // the door's close sequence
	seq     []modelStep
	flags   config.TCPFlags
	timeout time.Duration
}

type modelAttempt struct {
	door     *modelSeq
	stage    int
	src      netip.Addr
	seqStart time.Time
}

func modelSteps(ps []config.PortSpec) []modelStep {
	out := make([]modelStep, len(ps))
	for i, p := range ps {
		out[i] = modelStep{p.Proto, p.From}
	}
	return out
}

func newModel(doors []config.Door) *model {
	m := &model{}
	for i, d := range doors {
		m.doors = append(m.doors, &modelSeq{index: i, seq: modelSteps(d.Sequence), flags: d.TCPFlags, timeout: d.SeqTimeout})
		if len(d.CloseSequence) > 0 {
			m.doors = append(m.doors, &modelSeq{index: i, close: true, seq: modelSteps(d.CloseSequence), flags: d.TCPFlags, timeout: d.SeqTimeout})
		}
	}
	return m
}

func (d *modelSeq) flagsMatch(proto config.Proto, flags uint8) bool {
	return proto != config.TCP || d.flags.Match(flags)
}

// sniff returns, per moat door, what the packet did, a door's two
// sequences combined as knock.Group.Observe combines them.
func (m *model) sniff(src netip.Addr, proto config.Proto, port uint16, flags uint8, now time.Time, nDoors int) []knock.Result {
	out := make([]knock.Result, nDoors)
	open, closed := make([]knock.Result, nDoors), make([]knock.Result, nDoors)
	set := func(d *modelSeq, r knock.Result) {
		if d.close {
			closed[d.index] = r
		} else {
			open[d.index] = r
		}
	}
	s := modelStep{proto, port}
	src = src.Unmap()
	if proto != config.TCP && proto != config.UDP {
		return out
	}
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
			case a.stage > 0 && s == a.door.seq[a.stage-1]:
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

func (m *model) process(a *modelAttempt) knock.Result {
	a.stage++
	if a.stage >= len(a.door.seq) {
		return knock.Completed
	}
	return knock.Advanced
}

// Package knocktest generates knock doors and knock streams at random and
// holds a reference model of knockd's semantics, for the property tests
// that hold moat's daemon-mode verifier (package knock) and its kernel-mode
// doors (package firewall) to knockd's behaviour.
package knocktest

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"github.com/moat-fw/moat/internal/config"
)

// T0 is when generated streams begin.
var T0 = time.Unix(1_700_000_000, 0)

// Sources are the addresses generated streams send from: two IPv4, one
// IPv6, all test addresses. A test sending real packets maps them to its
// namespaces' addresses.
var Sources = []netip.Addr{netip.MustParseAddr("10.210.0.2"), netip.MustParseAddr("10.210.0.3"), netip.MustParseAddr("fd00:210::2")}

// Packet is one packet of a generated knock stream.
type Packet struct {
	Src   netip.Addr
	Proto config.Proto
	Port  uint16
	Flags uint8
	At    time.Time
}

func (p Packet) String() string {
	return fmt.Sprintf("%s %s/%d flags %#x at +%v", p.Src, p.Proto, p.Port, p.Flags, p.At.Sub(T0))
}

// knockPool is the ports generated doors knock on: few, so that sequences
// share ports, repeat them, and are each other's reverse.
var knockPool = []uint16{7000, 7002, 8000, 8002, 9000}

// RandomDoors returns 1 to 3 doors that config validation accepts (with
// allow_weak: one-knock doors too): no knock equal or next to the one
// before it, no two sequences alike; half have a close sequence, often the
// reverse of the open one.
func RandomDoors(r *rand.Rand) []config.Door {
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

// RandomStream returns about n packets from a few sources: whole correct
// open and close knocks, interleaved between sources, with stray packets,
// ordered sweeps over the knock ports and their neighbours, wrong TCP
// flags, and pauses past seq_timeout.
func RandomStream(r *rand.Rand, doors []config.Door, n int) []Packet {
	srcs := Sources
	now := T0
	var out []Packet
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
			out = append(out, Packet{Src: srcs[i], Proto: s.Proto, Port: s.From, At: now})
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
				out = append(out, Packet{Src: srcs[i], Proto: config.TCP, Port: p, Flags: 0x02, At: now})
				if r.IntN(2) == 0 {
					out = append(out, Packet{Src: srcs[i], Proto: config.UDP, Port: p, At: now})
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
			out = append(out, Packet{Src: srcs[i], Proto: proto, Port: port, Flags: flagsFor(proto), At: now})
		}
	}
	return out
}

package firewall

import (
	"strings"

	"github.com/moat-fw/moat/internal/config"
)

// Kernel-verified doors judge packets as knockd does (see package knock
// for the semantics and the reference model they are tested against). For
// a sequence s1..sn the kernel keeps, per address family, a "clock" set
// (sources that began the sequence within seq_timeout) and a stage set per
// step 1..n-1 (sources whose last knock was step k). A source is busy when
// it is on the clock of any kernel door's sequence.
//
// Chain knock (closed-port packets), after the daemon-mode handoff:
//
//   - a busy source goes to chain knock_busy;
//   - otherwise every sequence whose first knock the packet is starts
//     (clock and stage 1; a one-knock sequence grants at once).
//
// Chain knock_busy, for every sequence the source is on the clock of:
//
//   - fail: in stage k, a TCP packet with the door's flags or a UDP packet
//     that is neither s(k) again nor s(k+1) leaves the stage and the clock;
//   - step k (n..2): in stage k-1, s(k) moves it on; step n grants (or, for
//     a close sequence, revokes) the door's ports.
//
// No rule of a sequence ends the packet's way through the chains, so every
// sequence sees every packet, as knockd's attempts do: Debian's close
// sequence 9000,8000,7000 completes although 7000 is the open sequence's
// first knock. A busy source's packet starts nothing, so the open
// sequence's last knock 9000 does not start the close sequence early.
// Packets to any knock port end as a closed port of their protocol would,
// whatever they did (closedReply).

// KnockBusyChain is the chain that judges packets of busy sources.
const KnockBusyChain = "knock_busy"

// kernelKnockRules returns the kernel doors' sets, the rules that go at the
// end of chain knock, and chain knock_busy's rules.
func kernelKnockRules(doors []config.Door, logGroup uint16, reject bool) (sets []SetDef, start, busy []Rule) {
	var ports []config.PortSpec
	seen := map[config.PortSpec]bool{}
	var gotos, fails, steps []Rule
	for _, v6 := range []bool{false, true} {
		for _, dr := range doors {
			for _, sq := range doorSequences(dr) {
				for _, s := range sq.steps {
					if !seen[s] {
						seen[s] = true
						ports = append(ports, s)
					}
				}
				ks := kernelSequence(dr, sq, v6, logGroup)
				sets = append(sets, ks.sets...)
				if ks.clock != "" {
					gotos = append(gotos, rule(saddrIn(ks.clock, v6), gotoChain(KnockBusyChain)))
				}
				start = append(start, ks.start)
				fails, steps = append(fails, ks.fails...), append(steps, ks.steps...)
			}
		}
	}
	if len(ports) == 0 {
		return nil, nil, nil
	}
	// The end of every knock port's way: the answer a closed port of its
	// protocol gets (closedReply), so a knock port never stands out, before,
	// during or after a sequence.
	var ends []Rule
	for _, proto := range []config.Proto{config.TCP, config.UDP} {
		var ps []config.PortSpec
		for _, p := range ports {
			if p.Proto == proto {
				ps = append(ps, p)
			}
		}
		if len(ps) > 0 {
			ends = append(ends, rule(protoPortIn(ps), closedReply(proto, reject)))
		}
	}
	start = append(append(gotos, start...), ends...)
	if len(gotos) > 0 {
		busy = append(append(fails, steps...), ends...)
	}
	return sets, start, busy
}

type kernelSeq struct {
	sets         []SetDef
	clock        string // "" for a one-knock sequence
	start        Rule
	fails, steps []Rule
}

func kernelSequence(dr config.Door, sq sequence, v6 bool, logGroup uint16) kernelSeq {
	var ks kernelSeq
	n := len(sq.steps)
	name := func(stage int) string { return KnockSetName(dr.Name, sq.tag, stage, v6) }
	grantSet := SetGrant4
	if v6 {
		grantSet = SetGrant6
	}
	flags := func() []stmt {
		if (dr.TCPFlags.Set | dr.TCPFlags.Clear) == 0 {
			return nil
		}
		return []stmt{tcpFlags(dr.TCPFlags.Set, dr.TCPFlags.Set|dr.TCPFlags.Clear, false)}
	}
	match := func(s config.PortSpec) []stmt {
		m := []stmt{portMatch(byte(s.Proto), false, s.From)}
		if s.Proto == config.TCP {
			m = append(m, flags()...)
		}
		return m
	}
	final := func() []stmt {
		var out []stmt
		for _, p := range dr.Open {
			for port := p.From; ; port++ {
				pp := config.PortSpec{Proto: p.Proto, From: port, To: port}
				if sq.close {
					out = append(out, grantUpdate(dynsetOpDelete, grantSet, v6, pp, 0))
				} else {
					out = append(out, grantUpdate(0, grantSet, v6, pp, dr.OpenFor))
				}
				if port == p.To {
					break
				}
			}
		}
		// After the grant updates: a set too full to take the grant stops
		// the rule before the log, so the daemon never logs what did not happen.
		return append(out, grantLog(dr.Name, sq.close, logGroup))
	}
	first := match(sq.steps[0])
	if n == 1 {
		ks.start = rule(append(first, final()...)...)
		return ks
	}
	ks.clock = name(0)
	for k := 0; k < n; k++ {
		ks.sets = append(ks.sets, SetDef{Name: name(k), V6: v6, Type: SetSources, Size: uint32(dr.MaxPending), Timeout: dr.SeqTimeout})
	}
	// A start forgets the source's place in any later stage, left there
	// when its clock ran out, so that an old stage cannot be stepped on.
	first = append(first, setUpdate(0, name(0), v6), setUpdate(0, name(1), v6))
	for k := 2; k < n; k++ {
		first = append(first, setUpdate(dynsetOpDelete, name(k), v6))
	}
	ks.start = rule(first...)
	for k := 1; k < n; k++ {
		not := protoPortNotIn([]config.PortSpec{sq.steps[k-1], sq.steps[k]})
		// With the protocol pinned, nft prints the port by its protocol.
		notProto := func(proto string) stmt {
			s := not
			s.text = strings.Replace(s.text, " th dport", " "+proto+" dport", 1)
			return s
		}
		// nft prints "meta l4proto udp" as part of "udp dport".
		udpNot := notProto("udp")
		udpNot.exprs = cat(metaL4(protoUDP).exprs, udpNot.exprs)
		leave := []stmt{setUpdate(dynsetOpDelete, name(k), v6), setUpdate(dynsetOpDelete, name(0), v6)}
		in := []stmt{saddrIn(name(k), v6), saddrIn(name(0), v6)}
		ks.fails = append(ks.fails,
			rule(stmts(in, []stmt{udpNot}, leave)...),
			rule(stmts(in, []stmt{metaL4(protoTCP)}, flags(), []stmt{notProto("tcp")}, leave)...))
	}
	for k := n; k >= 2; k-- {
		r := []stmt{saddrIn(name(k-1), v6), saddrIn(name(0), v6)}
		r = append(r, match(sq.steps[k-1])...)
		r = append(r, setUpdate(dynsetOpDelete, name(k-1), v6))
		if k == n {
			r = append(r, setUpdate(dynsetOpDelete, name(0), v6))
			r = append(r, final()...)
		} else {
			r = append(r, setUpdate(0, name(k), v6))
		}
		ks.steps = append(ks.steps, rule(r...))
	}
	return ks
}

func stmts(parts ...[]stmt) []stmt {
	var out []stmt
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

package firewall

import (
	"cmp"
	"fmt"
	"time"

	"github.com/moat-fw/moat/internal/config"
)

// Kernel-verified knock doors: see knockseq.go for the rules.

// sequence is one state machine of a door: its open or its close sequence.
type sequence struct {
	tag   string // "" for the open sequence, "c" for the close sequence
	steps []config.PortSpec
	close bool
}

func doorSequences(dr config.Door) []sequence {
	out := []sequence{{steps: dr.Sequence}}
	if len(dr.CloseSequence) > 0 {
		out = append(out, sequence{tag: "c", steps: dr.CloseSequence, close: true})
	}
	return out
}

// KnockSetName names a door's knock sets: stage 0 is the clock.
func KnockSetName(door, tag string, stage int, v6 bool) string {
	fam := "4"
	if v6 {
		fam = "6"
	}
	name := "knock_" + door + "_"
	if tag != "" {
		name += tag + "_"
	}
	if stage == 0 {
		return name + "clock" + fam
	}
	return fmt.Sprintf("%s%d_%s", name, stage, fam)
}

// closedReply is the verdict a closed port of proto gets (see Build), for
// rules that take a knock: drop, or with reject the TCP reset or ICMP port
// unreachable, which the kernel rate limits the same way whichever rule
// sends it.
func closedReply(proto config.Proto, reject bool) stmt {
	switch {
	case !reject:
		return drop()
	case proto == config.TCP:
		return rejectTCPReset()
	case proto == config.UDP:
		return rejectPortUnreachable()
	}
	return drop()
}

// Sets and prefix of daemon-verified doors.
const (
	SetKnockPending4 = "knockd_pending4"
	SetKnockPending6 = "knockd_pending6"
	// SetKnockRate4 and SetKnockRate6 hold each knocking source's rate
	// limit (an nftables meter).
	SetKnockRate4 = "knockd_rate4"
	SetKnockRate6 = "knockd_rate6"
	// CounterKnock counts knock packets handed to the daemon.
	CounterKnock = "knock"
	// CounterKnockLimited counts knock packets not handed to the daemon
	// because their source, or all sources together, went over the limit.
	CounterKnockLimited = "knock_limited"
	// ChainKnockLog logs a knock to the daemon and answers it.
	ChainKnockLog = "knock_log"
)

// KnockPrefix is the NFLOG prefix of packets daemon-mode doors verify.
var KnockPrefix = LogPrefix("knock")

// knockRateSetSize caps the per-source meters; knockRateTimeout forgets
// a source's meter once it has been quiet that long. A flood of invented
// sources fills the meter set (about 60,000 per second of flood); a source
// without a meter is held to the total limit alone.
const (
	knockRateSetSize = 65536
	knockRateTimeout = time.Second
)

// daemonKnockRules hands daemon-mode doors their packets: packets to one
// of their knock ports, and every closed-port packet from a source that
// knocked within seq_timeout, which the daemon needs to reset sequences.
//
// Every knock packet is answered as a closed port of its protocol is
// (closedReply). The handoff is rate limited, so that a forged flood costs
// the daemon a bounded amount of CPU (each packet is a netlink message
// decoded and run through every door) instead of overrunning the NFLOG
// socket, which loses packets at random, real knocks included:
//
//   - per source (knock_rate_per_source, a meter): over it, a packet is
//     counted in knock_limited and not logged;
//   - a source already part-way through a sequence (in knockd_pending)
//     goes on without the total limit, so a knock whose first packet got
//     through completes whatever the flood does;
//   - other sources share knock_rate; over it, counted and not logged;
//   - a pending source's packets to other closed ports, which reset its
//     sequences, are logged up to knock_rate.
//
// Knocks are logged with queue-threshold 1 (the daemon sees them at once),
// except a first knock from a source not pending, on a port that is never
// a later step (firstOnly): that one may wait in the kernel's NFLOG batch
// (32 packets or 10 ms), since it cannot complete a sequence and the
// source's next knock, pending by then, flushes the batch ahead of itself
// in order. A forged flood at a first knock port (every packet a new
// source) so reaches the daemon 32 to a datagram instead of one, which cut
// the daemon's CPU under a 60,000/s flood from ~38% of a core and took the
// contention out of the real knocks' latency.
func daemonKnockRules(doors []config.Door, fw config.Firewall) (sets []SetDef, rules []Rule, chains []Chain) {
	var ports []config.PortSpec
	seen := map[config.PortSpec]bool{}
	size, timeout := 0, time.Duration(0)
	first, later := map[config.PortSpec]bool{}, map[config.PortSpec]bool{}
	for _, dr := range doors {
		for _, seq := range [][]config.PortSpec{dr.Sequence, dr.CloseSequence} {
			for i, p := range seq {
				if !seen[p] {
					seen[p] = true
					ports = append(ports, p)
				}
				// A one-knock sequence completes on its first packet; a
				// one-time door's sequence here is every line's ports
				// flattened (expandDoors), so position means nothing.
				if i == 0 && len(seq) > 1 && dr.OneTimeSequences == "" {
					first[p] = true
				} else {
					later[p] = true
				}
			}
		}
		size, timeout = max(size, dr.MaxPending), max(timeout, dr.SeqTimeout)
	}
	firstOnly := map[config.Proto][]config.PortSpec{}
	for _, p := range ports {
		if first[p] && !later[p] {
			firstOnly[p.Proto] = append(firstOnly[p.Proto], p)
		}
	}
	if len(ports) == 0 {
		return nil, nil, nil
	}
	reject := fw.ClosedResponse == "reject"
	byProto := map[config.Proto][]config.PortSpec{}
	for _, p := range ports {
		byProto[p.Proto] = append(byProto[p.Proto], p)
	}
	protos := []config.Proto{}
	for _, proto := range []config.Proto{config.TCP, config.UDP} {
		if len(byProto[proto]) > 0 {
			protos = append(protos, proto)
		}
	}
	// A Firewall built in code, not parsed, may leave the limits out.
	perSourceRate, total := cmp.Or(fw.KnockRatePerSource, config.DefaultKnockRatePerSource), cmp.Or(fw.KnockRate, config.DefaultKnockRate)
	perSource, perSourceBurst := uint64(perSourceRate), 2*perSourceRate
	pending := func(v6 bool) string {
		if v6 {
			return SetKnockPending6
		}
		return SetKnockPending4
	}
	meter := func(v6 bool) string {
		if v6 {
			return SetKnockRate6
		}
		return SetKnockRate4
	}
	logChain := Chain{Name: ChainKnockLog}
	for _, v6 := range []bool{false, true} {
		sets = append(sets, SetDef{Name: pending(v6), V6: v6, Type: SetSources, Size: uint32(size), Timeout: timeout},
			SetDef{Name: meter(v6), V6: v6, Type: SetSources, Size: knockRateSetSize, Timeout: knockRateTimeout})
		for _, proto := range protos {
			rules = append(rules, rule(metaNfproto(v6), protoPortIn(byProto[proto]),
				setLimitOver(meter(v6), v6, perSource, perSourceBurst), counterObj(CounterKnockLimited), closedReply(proto, reject)))
			// The log comes before the update: with the set full the
			// packet is still seen.
			if fo := firstOnly[proto]; len(fo) > 0 {
				logChain.Rules = append(logChain.Rules, rule(metaNfproto(v6), protoPortIn(fo),
					nflog(KnockPrefix, fw.LogGroup, logSnaplen), setRefresh(pending(v6), v6), counterObj(CounterKnock), closedReply(proto, reject)))
			}
			logChain.Rules = append(logChain.Rules, rule(metaNfproto(v6), metaL4(byte(proto)),
				nflogNow(KnockPrefix, fw.LogGroup, logSnaplen), setRefresh(pending(v6), v6), counterObj(CounterKnock), closedReply(proto, reject)))
		}
	}
	for _, v6 := range []bool{false, true} {
		rules = append(rules, rule(saddrIn(pending(v6), v6), protoPortIn(ports), jumpChain(ChainKnockLog)))
	}
	rules = append(rules, rule(protoPortIn(ports), limitRate(uint64(total), total), jumpChain(ChainKnockLog)))
	for _, proto := range protos {
		rules = append(rules, rule(protoPortIn(byProto[proto]), counterObj(CounterKnockLimited), closedReply(proto, reject)))
	}
	// Other packets of a pending source have a limit of their own: the
	// meters cannot serve here, as an element's limit keeps the "over" or
	// not of the rule that made it.
	for _, v6 := range []bool{false, true} {
		rules = append(rules, rule(saddrIn(pending(v6), v6), limitRate(uint64(total), total),
			nflog(KnockPrefix, fw.LogGroup, logSnaplen)))
	}
	return sets, rules, []Chain{logChain}
}

package firewall

import (
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

// Sets and prefix of daemon-verified doors.
const (
	SetKnockPending4 = "knockd_pending4"
	SetKnockPending6 = "knockd_pending6"
	// CounterKnock counts knock packets handed to the daemon.
	CounterKnock = "knock"
)

// KnockPrefix is the NFLOG prefix of packets daemon-mode doors verify.
var KnockPrefix = LogPrefix("knock")

// daemonKnockRules hands daemon-mode doors their packets: every packet to
// one of their knock ports (unlimited, so a flood cannot crowd out a real
// knock), and every closed-port packet from a source that knocked within
// seq_timeout, which the daemon needs to reset sequences.
func daemonKnockRules(doors []config.Door, logGroup uint16) (sets []SetDef, rules []Rule) {
	var ports []config.PortSpec
	seen := map[config.PortSpec]bool{}
	size, timeout := 0, time.Duration(0)
	for _, dr := range doors {
		for _, p := range append(append([]config.PortSpec{}, dr.Sequence...), dr.CloseSequence...) {
			if !seen[p] {
				seen[p] = true
				ports = append(ports, p)
			}
		}
		size, timeout = max(size, dr.MaxPending), max(timeout, dr.SeqTimeout)
	}
	if len(ports) == 0 {
		return nil, nil
	}
	for _, v6 := range []bool{false, true} {
		set := SetKnockPending4
		if v6 {
			set = SetKnockPending6
		}
		sets = append(sets, SetDef{Name: set, V6: v6, Type: SetSources, Size: uint32(size), Timeout: timeout})
		// The log comes before the update: with the set full the packet is
		// still seen.
		rules = append(rules, rule(metaNfproto(v6), protoPortIn(ports), nflogNow(KnockPrefix, logGroup, logSnaplen),
			setRefresh(set, v6), counterObj(CounterKnock), drop()))
	}
	for _, v6 := range []bool{false, true} {
		set := SetKnockPending4
		if v6 {
			set = SetKnockPending6
		}
		rules = append(rules, rule(saddrIn(set, v6), nflog(KnockPrefix, logGroup, logSnaplen)))
	}
	return sets, rules
}

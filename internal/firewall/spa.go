package firewall

import (
	"github.com/moat-fw/moat/internal/config"
)

// SPA: datagrams to the [spa] ports go to moat whole (NFLOG, at once) and
// are answered as any closed UDP port is, so an SPA port cannot be told
// from one (drop: nothing; reject: port unreachable). moat verifies them
// and opens through the grant sets, as doors do.
const (
	// SPAPrefix is the NFLOG prefix of SPA datagrams.
	SPAPrefix = "moat:spa"
	// CounterSPA counts datagrams handed to moat; CounterSPALimited those
	// over the rate limits, answered and not handed over.
	CounterSPA        = "spa"
	CounterSPALimited = "spa_limited"
	// SetSPARate4 and SetSPARate6 are the per-source meters.
	SetSPARate4 = "spa_rate4"
	SetSPARate6 = "spa_rate6"

	// A real client sends one datagram per door opening; 4 a second per
	// source (bursts of 8) is plenty, and a flood from forged sources
	// shares spaRate, which bounds moat's work (a rejected datagram costs
	// it about a microsecond; a well-formed one from a known client with
	// a bad seal about 0.6 µs more).
	spaRatePerSource = 4
	spaRate          = 20000
	// spaSnaplen holds the largest datagram (1232 bytes of UDP payload,
	// see internal/spa) with its IPv6 and UDP headers.
	spaSnaplen = 1280
)

func spaRules(fw config.Firewall) (sets []SetDef, rules []Rule) {
	if len(fw.SPAPorts) == 0 {
		return nil, nil
	}
	reject := fw.ClosedResponse == "reject"
	meter := func(v6 bool) string {
		if v6 {
			return SetSPARate6
		}
		return SetSPARate4
	}
	for _, v6 := range []bool{false, true} {
		sets = append(sets, SetDef{Name: meter(v6), V6: v6, Type: SetSources, Size: knockRateSetSize, Timeout: knockRateTimeout})
		rules = append(rules, rule(metaNfproto(v6), protoPortIn(fw.SPAPorts),
			setLimitOver(meter(v6), v6, spaRatePerSource, 2*spaRatePerSource), counterObj(CounterSPALimited), closedReply(config.UDP, reject)))
	}
	log := nflogNow(SPAPrefix, fw.LogGroup, spaSnaplen)
	rules = append(rules,
		rule(protoPortIn(fw.SPAPorts), limitRate(spaRate, spaRate), log, counterObj(CounterSPA), closedReply(config.UDP, reject)),
		rule(protoPortIn(fw.SPAPorts), counterObj(CounterSPALimited), closedReply(config.UDP, reject)))
	return sets, rules
}

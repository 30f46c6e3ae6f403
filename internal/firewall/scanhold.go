package firewall

import (
	"net/netip"
	"time"

	"github.com/moat-fw/moat/internal/blocklist"
	"github.com/moat-fw/moat/internal/config"
)

// The scan hold stops a scanner in the kernel, within its first burst of
// probes, before the daemon's ban can arrive. nmap -sS at its default
// timing sends ten probes within a millisecond; the scan guard decides at
// the third, but the ban's round trip through the daemon and a netlink
// commit takes longer than the rest of the burst, so all ten used to get
// the host's answer. With the hold, a source that sends crafted SYNs (no
// SACK-permitted, see craftedSYN) to closed ports faster than a client's
// retransmissions would goes into a hold set, and its crafted SYNs to any
// port, open ones included, are then dropped (or reset, in reject mode:
// every port looks closed) for the hold's length, refreshed by each one.
// The held probes are still logged, so the scan guard scores the whole
// scan and bans by its own rules.
//
// Only crafted SYNs are held, never the source's other traffic: the
// evidence is a packet, which anyone can forge with any source address.
// Forged crafted SYNs from the gateway's or an administrator's address
// hold only that address's crafted SYNs, which their operating systems
// never send (they offer SACK). That is why the hold needs no list of
// protected addresses, and why it is not a ban.

// Names of the hold's sets and counter.
const (
	SetScanHold4     = "scanhold4"
	SetScanHold6     = "scanhold6"
	SetScanMeter4    = "scanmeter4"
	SetScanMeter6    = "scanmeter6"
	SetScanIgnore4   = "scanignore4"
	SetScanIgnore6   = "scanignore6"
	CounterScanHold  = "scanhold"
	scanHoldSetSize  = 32768
	scanMeterSetSize = 32768
	scanMeterTimeout = 10 * time.Second
	scanMeterRate    = 10 // crafted SYNs per second to closed ports...
	scanMeterBurst   = 3  // ... beyond a burst of 3 put the source on hold
)

func scanHoldSet(v6 bool) string {
	if v6 {
		return SetScanHold6
	}
	return SetScanHold4
}

func scanMeterSet(v6 bool) string {
	if v6 {
		return SetScanMeter6
	}
	return SetScanMeter4
}

func scanIgnoreSet(v6 bool) string {
	if v6 {
		return SetScanIgnore6
	}
	return SetScanIgnore4
}

// knockTCPPorts are the TCP ports of every door's sequences: a held source
// may still knock with crafted SYNs (hping3 and nmap are knock clients
// too), and the closed-port meter never sees knocks, which the knock
// chain answers itself.
func knockTCPPorts(doors []config.Door) []portRange {
	var out []portRange
	seen := map[config.PortSpec]bool{}
	for _, dr := range doors {
		for _, seq := range [][]config.PortSpec{dr.Sequence, dr.CloseSequence} {
			for _, p := range seq {
				if p.Proto == config.TCP && !seen[p] {
					seen[p] = true
					out = append(out, portRange{p.From, p.From})
				}
			}
		}
	}
	return out
}

// scanHoldSets are the hold's sets: the hold itself, the meter of crafted
// SYNs to closed ports, and the [scan] ignore prefixes, which are never
// metered (the guard never counts them either).
func scanHoldSets(fw config.Firewall) []SetDef {
	var out []SetDef
	for _, v6 := range []bool{false, true} {
		out = append(out,
			SetDef{Name: scanHoldSet(v6), V6: v6, Type: SetSources, Size: scanHoldSetSize, Timeout: fw.ScanHold},
			SetDef{Name: scanMeterSet(v6), V6: v6, Type: SetSources, Size: scanMeterSetSize, Timeout: scanMeterTimeout})
		if ign := ignoreRanges(fw.ScanHoldIgnore, v6); len(ign) > 0 {
			out = append(out, SetDef{Name: scanIgnoreSet(v6), V6: v6, Type: SetBlocklist, Ranges: ign})
		}
	}
	return out
}

func ignoreRanges(ps []netip.Prefix, v6 bool) []blocklist.Range {
	var out []blocklist.Range
	for _, p := range ps {
		if p.Addr().Is6() == v6 {
			out = append(out, blocklist.FromPrefix(p.Masked()))
		}
	}
	return blocklist.Aggregate(out)
}

// scanHoldDrops drop a held source's crafted SYNs, to any port but the
// knock ports, after logging them for the scan guard (within the shared
// log limit). They come before the open ports' accept: that a port is open
// is what a scanner wants to learn.
func scanHoldDrops(fw config.Firewall, doors []config.Door) []Rule {
	knocks := knockTCPPorts(doors)
	var out []Rule
	for _, v6 := range []bool{false, true} {
		match := []stmt{metaNfproto(v6), craftedSYN()}
		if len(knocks) > 0 {
			match = append(match, dportsNot(protoTCP, knocks))
		}
		match = append(match, saddrIn(scanHoldSet(v6), v6))
		// Logged in the kernel's batches (32 packets or 10 ms), not one
		// netlink message each as craftedSYNRule does: the source is held
		// already, so nothing waits on the guard, and a flood of held
		// sources costs the kernel a fraction of the messages.
		logged := append(append([]stmt{}, match...), setRefresh(scanHoldSet(v6), v6), limitObj(LimitLog),
			nflog(LogPrefix(CounterClosed), fw.LogGroup, logSnaplen))
		dropped := append(append([]stmt{}, match...), counterObj(CounterScanHold), closedReply(config.TCP, fw.ClosedResponse == "reject"))
		out = append(out, rule(logged...), rule(dropped...))
	}
	return out
}

// scanHoldMeters put a source on hold once its crafted SYNs to closed
// ports go beyond scanMeterRate (burst scanMeterBurst). A client that
// retransmits a SYN to a closed port does so a second or more apart and
// never gets there. They sit in the closed path, after every accept and
// the knock chain, and let the packet go on to the closed-port rules.
func scanHoldMeters(fw config.Firewall) []Rule {
	var out []Rule
	for _, v6 := range []bool{false, true} {
		match := []stmt{metaNfproto(v6), craftedSYN()}
		if len(ignoreRanges(fw.ScanHoldIgnore, v6)) > 0 {
			match = append(match, saddrNotIn(scanIgnoreSet(v6), v6))
		}
		match = append(match, setLimitOver(scanMeterSet(v6), v6, scanMeterRate, scanMeterBurst), setRefresh(scanHoldSet(v6), v6))
		out = append(out, rule(match...))
	}
	return out
}

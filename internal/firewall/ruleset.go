// Package firewall builds the nftables table moat owns (pure: config in,
// rules out, in nft text and in kernel expressions) and applies it, its bans
// and its allows over netlink in atomic transactions.
package firewall

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/moat-fw/moat/internal/blocklist"
	"github.com/moat-fw/moat/internal/config"
)

// TableName is the one table moat owns, in the inet family. moat never
// touches any other table.
const TableName = "moat"

// Names of the sets whose elements moat manages at run time. Banned hosts
// go in hash sets (one element each, O(1) to add, find and delete, so a
// million restore in one transaction in well under a second); banned
// prefixes in interval sets beside them. Allows are few: intervals.
const (
	SetBan4    = "ban4"
	SetBan6    = "ban6"
	SetBanNet4 = "bannet4"
	SetBanNet6 = "bannet6"
	SetAllow4  = "allow4"
	SetAllow6  = "allow6"
)

// LogPrefix is the NFLOG prefix for packets dropped for reason: "moat:closed",
// "moat:null", ... The scan guard counts and classifies by it.
func LogPrefix(reason string) string { return "moat:" + reason }

// logSnaplen is how much of each dropped packet goes to NFLOG: enough for
// IPv6 with extension headers and TCP with options.
const logSnaplen = 128

// Names of the named counters, one per reason a packet is dropped, so
// `moat status` can show what the firewall did.
const (
	CounterBan     = "ban"
	CounterInvalid = "invalid"
	CounterClosed  = "closed"
	CounterMapped  = "v4mapped"
)

// LimitLog names the named limit every NFLOG rule shares. Not "log": that
// is an nft keyword, and `nft -f` could not load back what `nft list`
// prints for a limit of that name.
const LimitLog = "loglimit"

// mapped6 are IPv4-mapped IPv6 addresses. They never belong on the wire
// (RFC 4291 section 2.5.5.2), yet Linux delivers IPv6 packets from them to
// input, where a dual-stack socket would take them for IPv4 peers: a
// forger's way to pass as an IPv4 address, or to get one banned.
var mapped6 = netip.MustParsePrefix("::ffff:0.0.0.0/96")

// Chain is one chain of the table.
type Chain struct {
	Name     string
	Hook     string // "prerouting", "input", "forward", "output", or "" for a regular chain
	Priority int32  // of a base chain; 0 is nft's "filter"
	Policy   string // "accept" or "drop" for base chains
	Rules    []Rule
}

// SetDef is a named set of the table.
type SetDef struct {
	Name    string
	V6      bool
	Type    SetType
	Size    uint32        // element cap (dynamic sets)
	Timeout time.Duration // default element timeout (dynamic sets)
	// Ranges are a blocklist set's elements (aggregated, one family),
	// installed with the table so a reload never empties the list.
	Ranges []blocklist.Range
}

// SetType says what a named set holds.
type SetType int

// The set types.
const (
	// SetPrefixes holds bans or allows: intervals with timeouts.
	SetPrefixes SetType = iota
	// SetSources holds sources in the middle of a knock, added by the
	// packet path with the set's timeout.
	SetSources
	// SetGrants holds source . protocol . port triples a door opened.
	SetGrants
	// SetBlocklist holds a blocklist's ranges: intervals without
	// timeouts, filled from Ranges (see blocklist.go).
	SetBlocklist
	// SetHosts holds banned host addresses: a hash with timeouts.
	SetHosts
)

// Names of the grant sets knock doors add to.
const (
	SetGrant4 = "grant4"
	SetGrant6 = "grant6"
)

// grantSetSize caps the grants open at once.
const grantSetSize = 65536

// Ruleset is the whole `inet moat` table, built from the config alone.
type Ruleset struct {
	Sets     []SetDef
	Counters []string
	LogRate  uint32
	LogBurst uint32
	Chains   []Chain
}

// stealthRule is one of the reference guide's stealth drops.
type stealthRule struct {
	reason string
	match  []stmt
}

func stealthRules() []stealthRule {
	return []stealthRule{
		// Specific combinations first so each gets its own log prefix.
		{"allflags", []stmt{tcpFlags(flagAll, flagAll, false)}},
		{"null", []stmt{tcpFlags(0, flagAll, false)}},
		{"xmas", []stmt{tcpFlags(flagFIN|flagPSH|flagURG, flagAll, false)}},
		{"synfin", []stmt{tcpFlags(flagSYN|flagFIN, flagSYN|flagFIN, false)}},
		{"synrst", []stmt{tcpFlags(flagSYN|flagRST, flagSYN|flagRST, false)}},
		{"finnoack", []stmt{tcpFlags(flagFIN, flagFIN|flagACK, false)}},
		// New connections must start with a bare SYN: catches ACK, window
		// and Maimon scans and the rest of nmap's non-SYN probes.
		{"nosyn", []stmt{tcpFlags(flagSYN, flagFIN|flagSYN|flagRST|flagACK, true), ctNew()}},
	}
}

// CounterFragment counts the fragments the fragments chain dropped.
const CounterFragment = "fragment"

// StealthReasons lists the log reasons of the stealth rules, fragments
// included, for the scan guard and status.
func StealthReasons() []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range stealthRules() {
		if !seen[r.reason] {
			seen[r.reason] = true
			out = append(out, r.reason)
		}
	}
	return append(out, CounterFragment)
}

// ICMPv6 types IPv6 cannot work without: neighbour discovery and router
// advertisements. Hop limit 255 proves they came from the link itself.
var ndTypes = map[byte]string{
	134: "nd-router-advert",
	135: "nd-neighbor-solicit",
	136: "nd-neighbor-advert",
}

var linkLocal6 = netip.MustParsePrefix("fe80::/10")

// The MLD message types, named as nft names them.
var mldNames = map[byte]string{
	130: "mld-listener-query",
	131: "mld-listener-report",
	132: "mld-listener-done",
	143: "mld2-listener-report",
}

func mldTypes() []byte { return []byte{130, 131, 132, 143} }

// Build turns the firewall config into the ruleset. sshPorts resolves the
// "ssh" alias in open (nil means 22). Doors verified in the kernel add their
// knock sets and rules.
func Build(fw config.Firewall, sshPorts []uint16, doors ...config.Door) *Ruleset {
	rs := &Ruleset{
		Sets: []SetDef{{Name: SetBan4, Type: SetHosts}, {Name: SetBan6, V6: true, Type: SetHosts},
			{Name: SetBanNet4}, {Name: SetBanNet6, V6: true}, {Name: SetAllow4}, {Name: SetAllow6, V6: true}},
		Counters: []string{CounterBan, CounterInvalid, CounterClosed, CounterMapped},
		LogRate:  fw.LogRate,
		LogBurst: fw.LogBurst,
	}
	if fw.Stealth {
		rs.Counters = append(rs.Counters, StealthReasons()...)
	}

	input := Chain{Name: "input", Hook: "input", Policy: "drop"}
	input.Rules = append(input.Rules, rule(iifLo(), accept()))
	// Before the interface dispatch, so that sshd's peers on every
	// interface are vouched for (see sshpeer.go).
	peerSets, peerRules := sshPeerRules(sshPorts, fw.LogGroup)
	rs.Sets = append(rs.Sets, peerSets...)
	input.Rules = append(input.Rules, peerRules...)
	input.Rules = append(input.Rules, dispatchRules(fw)...)

	logged := func(reason string, match ...stmt) []Rule {
		logRule := append(append([]stmt{}, match...), limitObj(LimitLog), nflog(LogPrefix(reason), fw.LogGroup, logSnaplen))
		dropRule := append(append([]stmt{}, match...), counterObj(reason), drop())
		return []Rule{rule(logRule...), rule(dropRule...)}
	}

	guard := Chain{Name: "guard"}
	add := func(r ...Rule) { guard.Rules = append(guard.Rules, r...) }
	add(rule(saddrPrefix(mapped6), counterObj(CounterMapped), drop()))
	// Bans come before conntrack so a ban also cuts connections already open.
	add(banDrops(false)...)
	pbSets, pbRules := portBanRules()
	rs.Sets = append(rs.Sets, pbSets...)
	rs.Counters = append(rs.Counters, CounterPortBan)
	add(pbRules...)
	add(blocklistRules(rs, fw)...)
	if fw.Stealth {
		openTCP := portRanges(config.ResolveSSH(fw.Open, sshPorts), config.TCP)
		for _, r := range stealthRules() {
			if r.reason == "nosyn" && len(openTCP) > 0 {
				// Not to open ports: a connection that was open before moat
				// started (the SSH session moat is installed from) was not
				// tracked, and conntrack picks it up mid-stream, as a new
				// connection without SYN. Dropping it would cut that session.
				// A probe of an open port gets the host's own answer anyway.
				r.match = append(r.match, dportsNot(protoTCP, openTCP))
			}
			add(logged(r.reason, r.match...)...)
		}
	}
	add(rule(ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED, "established,related"), accept()))
	add(logged(CounterInvalid, ctState(expr.CtStateBitINVALID, "invalid"))...)
	add(rule(saddrIn(SetAllow4, false), accept()),
		rule(saddrIn(SetAllow6, true), accept()))
	add(linkRules()...)
	if fw.ScanHold > 0 {
		rs.Sets = append(rs.Sets, scanHoldSets(fw)...)
		rs.Counters = append(rs.Counters, CounterScanHold)
		add(scanHoldDrops(fw, doors)...)
	}
	if fw.Ping {
		add(rule(icmpType(8, "echo-request"), accept()),
			rule(icmpv6Types([]byte{128}, map[byte]string{128: "echo-request"}), accept()))
	}
	if len(doors) > 0 || len(fw.SPAPorts) > 0 {
		rs.Sets = append(rs.Sets, SetDef{Name: SetGrant4, Type: SetGrants, Size: grantSetSize},
			SetDef{Name: SetGrant6, V6: true, Type: SetGrants, Size: grantSetSize})
		add(rule(grantLookup(SetGrant4, false), accept()), rule(grantLookup(SetGrant6, true), accept()))
	}
	for _, proto := range []config.Proto{config.TCP, config.UDP} {
		if ranges := portRanges(config.ResolveSSH(fw.Open, sshPorts), proto); len(ranges) > 0 {
			add(rule(dports(byte(proto), ranges), accept()))
		}
	}
	if sets, rules := spaRules(fw); len(rules) > 0 {
		rs.Sets = append(rs.Sets, sets...)
		rs.Counters = append(rs.Counters, CounterSPA, CounterSPALimited, CounterSPAUnknown)
		add(rules...)
	}
	if len(doors) > 0 {
		knock := Chain{Name: "knock"}
		var kernelDoors, daemonDoors []config.Door
		for _, dr := range doors {
			if dr.Daemon() {
				daemonDoors = append(daemonDoors, dr)
			} else {
				kernelDoors = append(kernelDoors, dr)
			}
		}
		sets, handoff, handoffChains := daemonKnockRules(daemonDoors, fw)
		rs.Sets = append(rs.Sets, sets...)
		if len(handoff) > 0 {
			rs.Counters = append(rs.Counters, CounterKnock, CounterKnockLimited)
		}
		ksets, start, busy := kernelKnockRules(kernelDoors, fw.LogGroup, fw.ClosedResponse == "reject")
		rs.Sets = append(rs.Sets, ksets...)
		knock.Rules = append(handoff, start...)
		rs.Chains = append(append(rs.Chains, knock), handoffChains...)
		if len(busy) > 0 {
			rs.Chains = append(rs.Chains, Chain{Name: KnockBusyChain, Rules: busy})
		}
		add(rule(jumpChain("knock")))
	}
	add(rejectRules(fw.Reject)...)
	if fw.ScanHold > 0 {
		add(scanHoldMeters(fw)...)
	}
	add(craftedSYNRule(fw))
	add(rule(limitObj(LimitLog), nflog(LogPrefix(CounterClosed), fw.LogGroup, logSnaplen)))
	if fw.ClosedResponse == "reject" {
		// A closed port answers as a host without a listener would.
		add(rule(metaL4(protoTCP), counterObj(CounterClosed), rejectTCPReset()),
			rule(metaL4(protoUDP), counterObj(CounterClosed), rejectPortUnreachable()))
	}
	add(rule(counterObj(CounterClosed), drop()))

	rs.Chains = append([]Chain{input, guard}, rs.Chains...)
	if len(fw.TrustedInterfaces) > 0 {
		rs.Chains = append(rs.Chains, trustedChain())
	}
	if len(fw.Interfaces) > 0 {
		rs.Chains = append(rs.Chains, unlistedChain(fw, sshPorts))
	}
	if len(fw.Reject) > 0 {
		rs.Counters = append(rs.Counters, CounterRejected)
	}
	if fw.Output == "deny" {
		rs.Counters = append(rs.Counters, CounterOutput)
	}
	rs.Chains = append(rs.Chains, outputChain(fw))
	if fw.Stealth {
		rs.Chains = append(rs.Chains, fragmentChain(fw))
	}

	switch fw.Forward {
	case "ban":
		rs.Chains = append(rs.Chains, Chain{Name: "forward", Hook: "forward", Policy: "accept", Rules: banDrops(false)})
	case "drop":
		rs.Chains = append(rs.Chains, Chain{Name: "forward", Hook: "forward", Policy: "drop", Rules: append(banDrops(false),
			rule(ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED, "established,related"), accept()))})
	}
	return rs
}

// String renders the table in nft syntax, as `nft list table inet moat`
// prints it (counters and set elements aside).
func (rs *Ruleset) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", TableName)
	for _, c := range rs.Counters {
		fmt.Fprintf(&b, "\tcounter %s {\n\t}\n\n", c)
	}
	fmt.Fprintf(&b, "\tlimit %s {\n\t\trate %d/second burst %d packets\n\t}\n\n", LimitLog, rs.LogRate, rs.LogBurst)
	for _, s := range rs.Sets {
		typ := "ipv4_addr"
		if s.V6 {
			typ = "ipv6_addr"
		}
		switch s.Type {
		case SetPrefixes:
			fmt.Fprintf(&b, "\tset %s {\n\t\ttype %s\n\t\tflags interval,timeout\n\t}\n\n", s.Name, typ)
		case SetHosts:
			// The least size: the kernel's grows with the bans (see
			// hostSetSize).
			fmt.Fprintf(&b, "\tset %s {\n\t\ttype %s\n\t\tsize %d\n\t\tflags timeout\n\t}\n\n", s.Name, typ, minHostSet)
		case SetSources:
			fmt.Fprintf(&b, "\tset %s {\n\t\ttype %s\n\t\tsize %d\n\t\tflags dynamic,timeout\n\t\ttimeout %s\n\t}\n\n",
				s.Name, typ, s.Size, nftDuration(s.Timeout))
		case SetGrants:
			fmt.Fprintf(&b, "\tset %s {\n\t\ttype %s . inet_proto . inet_service\n\t\tsize %d\n\t\tflags dynamic,timeout\n\t}\n\n",
				s.Name, typ, s.Size)
		case SetBlocklist:
			fmt.Fprintf(&b, "\tset %s {\n\t\ttype %s\n\t\tflags interval\n\t}\n\n", s.Name, typ)
		}
	}
	for i, c := range rs.Chains {
		fmt.Fprintf(&b, "\tchain %s {\n", c.Name)
		if c.Hook != "" {
			prio := "filter"
			if c.Priority != 0 {
				prio = fmt.Sprint(c.Priority)
			}
			fmt.Fprintf(&b, "\t\ttype filter hook %s priority %s; policy %s;\n", c.Hook, prio, c.Policy)
		}
		for _, r := range c.Rules {
			fmt.Fprintf(&b, "\t\t%s\n", r.Text())
		}
		b.WriteString("\t}\n")
		if i < len(rs.Chains)-1 {
			b.WriteString("\n")
		}
	}
	b.WriteString("}\n")
	return b.String()
}

func (c Chain) hooknum() *nftables.ChainHook {
	switch c.Hook {
	case "input":
		return nftables.ChainHookInput
	case "forward":
		return nftables.ChainHookForward
	case "prerouting":
		return nftables.ChainHookPrerouting
	case "output":
		return nftables.ChainHookOutput
	}
	return nil
}

func (c Chain) policy() *nftables.ChainPolicy {
	p := nftables.ChainPolicyAccept
	if c.Policy == "drop" {
		p = nftables.ChainPolicyDrop
	}
	return &p
}

// portRanges are the port ranges of specs for one protocol.
func portRanges(specs []config.PortSpec, proto config.Proto) []portRange {
	var out []portRange
	for _, p := range specs {
		if p.Proto == proto {
			out = append(out, portRange{p.From, p.To})
		}
	}
	return out
}

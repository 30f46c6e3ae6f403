package firewall

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/moat-fw/moat/internal/config"
)

// The parts of the reference guide's iptables script beyond the guard
// chain: egress filtering (with bans on output), per-port REJECT, and
// interfaces that never fail open.

// Counters of these rules.
const (
	CounterRejected = "rejected" // closed ports answered by [firewall] reject
	CounterOutput   = "output"   // what output = "deny" stopped
)

// Chains the input chain dispatches to, besides guard.
const (
	chainTrusted  = "trusted"
	chainUnlisted = "unlisted"
)

// dispatchRules send each packet that reached the input chain's dispatch
// to its chain: trusted interfaces to trusted, the guarded ones (all, when
// interfaces is empty) to guard, and every other interface to unlisted,
// which is default deny too. Nothing is left to the chain policy, so no
// interface, misspelt or added later, is ever open by omission.
func dispatchRules(fw config.Firewall) []Rule {
	var out []Rule
	for _, name := range fw.TrustedInterfaces {
		out = append(out, rule(iifname(name), gotoChain(chainTrusted)))
	}
	if len(fw.Interfaces) == 0 {
		return append(out, rule(gotoChain("guard")))
	}
	for _, entry := range fw.Interfaces {
		name, _ := config.InterfaceName(entry)
		out = append(out, rule(iifname(name), gotoChain("guard")))
	}
	return append(out, rule(gotoChain(chainUnlisted)))
}

// trustedChain accepts what a trusted interface brings, bans aside: a
// banned address is banned everywhere.
func trustedChain() Chain {
	return Chain{Name: chainTrusted, Rules: append(banDrops(false), rule(accept()))}
}

// banDrops drops what the ban sets hold, hosts and prefixes, IPv4 and
// IPv6 (source addresses, or destinations with dst).
func banDrops(dst bool) []Rule {
	return []Rule{
		rule(addrIn(SetBan4, false, dst), counterObj(CounterBan), drop()),
		rule(addrIn(SetBanNet4, false, dst), counterObj(CounterBan), drop()),
		rule(addrIn(SetBan6, true, dst), counterObj(CounterBan), drop()),
		rule(addrIn(SetBanNet6, true, dst), counterObj(CounterBan), drop()),
	}
}

// unlistedChain is default deny for interfaces not in interfaces: what
// keeps the host working (replies, the allow list, ND and MLD, DHCPv6,
// ping if asked) and the open ports, and nothing else. moat does not
// watch there: no stealth rules, no logging (so no scan guard), no doors;
// closed ports are silent but for the reject list.
func unlistedChain(fw config.Firewall, sshPorts []uint16) Chain {
	c := Chain{Name: chainUnlisted}
	add := func(r ...Rule) { c.Rules = append(c.Rules, r...) }
	add(rule(saddrPrefix(mapped6), counterObj(CounterMapped), drop()))
	add(banDrops(false)...)
	add(rule(ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED, "established,related"), accept()))
	add(rule(ctState(expr.CtStateBitINVALID, "invalid"), counterObj(CounterInvalid), drop()))
	add(rule(saddrIn(SetAllow4, false), accept()), rule(saddrIn(SetAllow6, true), accept()))
	add(linkRules()...)
	if fw.Ping {
		add(rule(icmpType(8, "echo-request"), accept()),
			rule(icmpv6Types([]byte{128}, map[byte]string{128: "echo-request"}), accept()))
	}
	for _, proto := range []config.Proto{config.TCP, config.UDP} {
		if ranges := portRanges(config.ResolveSSH(fw.Open, sshPorts), proto); len(ranges) > 0 {
			add(rule(dports(byte(proto), ranges), accept()))
		}
	}
	add(rejectRules(fw.Reject)...)
	add(rule(counterObj(CounterClosed), drop()))
	return c
}

// linkRules accept what IPv6 needs from the link: ND and router
// advertisements (hop limit 255 proves they came from the link itself);
// MLD (RFC 4890 section 4.4.1: switches that snoop MLD stop sending the
// host its solicited-node groups, and so ND, when its reports go
// unheard; a link-local source and hop limit 1 prove it stayed on the
// link, RFC 3810 section 5); DHCPv6 replies, which come unicast from a
// link-local server to a multicast request, which conntrack cannot pair.
func linkRules() []Rule {
	types := make([]byte, 0, len(ndTypes))
	for t := range ndTypes {
		types = append(types, t)
	}
	return []Rule{
		rule(icmpv6Types(types, ndTypes), hoplimit255(), accept()),
		rule(saddrPrefix(linkLocal6), hoplimit(1), icmpv6Types(mldTypes(), mldNames), accept()),
		rule(saddrPrefix(linkLocal6), portMatch(protoUDP, true, 547), portMatch(protoUDP, false, 546), accept()),
	}
}

// rejectRules answer the reject list's ports as a host with nothing
// listening would, whatever closed_response says, and without logging
// them: the guide rejects netbios quietly because Windows neighbours
// chatter on it all day.
func rejectRules(specs []config.PortSpec) []Rule {
	var out []Rule
	if r := portRanges(specs, config.TCP); len(r) > 0 {
		out = append(out, rule(dports(protoTCP, r), counterObj(CounterRejected), rejectTCPReset()))
	}
	if r := portRanges(specs, config.UDP); len(r) > 0 {
		out = append(out, rule(dports(protoUDP, r), counterObj(CounterRejected), rejectPortUnreachable()))
	}
	return out
}

// What this host sends that IPv6 cannot do without: router and neighbour
// solicitations and advertisements, and MLD reports and dones.
var outLinkTypes = map[byte]string{
	131: "mld-listener-report",
	132: "mld-listener-done",
	133: "nd-router-solicit",
	135: "nd-neighbor-solicit",
	136: "nd-neighbor-advert",
	143: "mld2-listener-report",
}

// outputChain filters what this host starts. Bans come first and apply
// whatever the policy (psad's IPT_AUTO_CHAIN2: nothing goes to a banned
// address, UDP included). With output = "deny", only replies, loopback,
// trusted interfaces, IPv6's own link traffic and output_allow leave.
func outputChain(fw config.Firewall) Chain {
	deny := fw.Output == "deny"
	c := Chain{Name: "output", Hook: "output", Policy: "accept"}
	if deny {
		c.Policy = "drop"
	}
	add := func(r ...Rule) { c.Rules = append(c.Rules, r...) }
	add(rule(oifLo(), accept()))
	add(banDrops(true)...)
	if !deny {
		return c
	}
	add(rule(ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED, "established,related"), accept()))
	for _, name := range fw.TrustedInterfaces {
		add(rule(oifname(name), accept()))
	}
	types := make([]byte, 0, len(outLinkTypes))
	for t := range outLinkTypes {
		types = append(types, t)
	}
	add(rule(icmpv6Types(types, outLinkTypes), accept()))
	for _, r := range fw.OutputAllow {
		var match []stmt
		if r.To.IsValid() {
			match = append(match, daddrPrefix(r.To))
		}
		match = append(match, dports(byte(r.Port.Proto), []portRange{{r.Port.From, r.Port.To}}), accept())
		add(rule(match...))
	}
	add(rule(counterObj(CounterOutput), drop()))
	return c
}

// addrIn matches the source (or destination, when dst) address against a
// named set.
func addrIn(setName string, v6, dst bool) stmt {
	if !dst {
		return saddrIn(setName, v6)
	}
	fam, off, n, kw := byte(unix.NFPROTO_IPV4), uint32(16), uint32(4), "ip"
	if v6 {
		fam, off, n, kw = unix.NFPROTO_IPV6, 24, 16, "ip6"
	}
	return stmt{text: fmt.Sprintf("%s daddr @%s", kw, setName), exprs: cat(nfproto(fam), []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Lookup{SourceRegister: 1, SetName: setName},
	})}
}

// daddrPrefix is saddrPrefix for the destination.
func daddrPrefix(p netip.Prefix) stmt {
	s := saddrPrefix(p)
	s.text = strings.Replace(s.text, " saddr ", " daddr ", 1)
	for _, e := range s.exprs {
		if pl, ok := e.(*expr.Payload); ok && pl.Base == expr.PayloadBaseNetworkHeader {
			pl.Offset += uint32(p.Addr().BitLen() / 8) // saddr 12 -> daddr 16, 8 -> 24
		}
	}
	if p.Bits() == p.Addr().BitLen() {
		s.text = strings.TrimSuffix(s.text, fmt.Sprintf("/%d", p.Bits()))
	}
	return s
}

// oifLo matches output to loopback, index 1 in every namespace.
func oifLo() stmt {
	return stmt{text: `oif "lo"`, exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIF, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.NativeEndian.AppendUint32(nil, 1)},
	}}
}

// oifname is iifname for the output interface.
func oifname(name string) stmt {
	s := iifname(name)
	s.text = "o" + strings.TrimPrefix(s.text, "i")
	s.exprs[0] = &expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1}
	return s
}

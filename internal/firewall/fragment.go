package firewall

import (
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/moat-fw/moat/internal/config"
)

// PriorityBeforeDefrag is the priority of the fragments chain: the
// kernel's NF_IP_PRI_RAW_BEFORE_DEFRAG. Connection tracking reassembles
// fragments at NF_IP_PRI_CONNTRACK_DEFRAG (-400) in prerouting, and from
// then on no chain sees a fragment, only the whole packet: a fragment rule
// in the input chain never fires. The kernel test shows the chain counts
// real fragments.
const PriorityBeforeDefrag = -450

// fragmentChain drops every fragment as it arrives, before reassembly, as
// the reference guide's `iptables -A INPUT -f -j DROP` meant to. Nothing
// moat guards needs fragments: TCP negotiates its segment size and the
// doors' knocks are single small packets, so a fragmented packet to this
// host is an evasion attempt (nmap -f) or an attack on reassembly. What
// it costs: UDP services answering datagrams bigger than the path MTU (DNS
// over UDP with big answers is client-side; a server behind moat receiving
// them, such as a WireGuard peer, never fragments) and knocks a client
// sends fragmented, which moat now refuses rather than judging whole.
//
// It is a prerouting chain, so it sees every interface: loopback and the
// trusted interfaces return to the rest of the ruleset untouched.
func fragmentChain(fw config.Firewall) Chain {
	c := Chain{Name: "fragments", Hook: "prerouting", Priority: PriorityBeforeDefrag, Policy: "accept"}
	c.Rules = append(c.Rules, rule(iifLo(), verdict(expr.VerdictReturn, "return")))
	for _, name := range fw.TrustedInterfaces {
		c.Rules = append(c.Rules, rule(iifname(name), verdict(expr.VerdictReturn, "return")))
	}
	for _, m := range []stmt{fragAnyV4(), fragV6()} {
		c.Rules = append(c.Rules,
			rule(m, limitObj(LimitLog), nflog(LogPrefix(CounterFragment), fw.LogGroup, logSnaplen)),
			rule(m, counterObj(CounterFragment), drop()))
	}
	return c
}

// fragAnyV4 matches every IPv4 fragment, the first one too: more
// fragments set, or a non-zero offset.
func fragAnyV4() stmt {
	return stmt{text: "ip frag-off & 16383 != 0", exprs: cat(nfproto(unix.NFPROTO_IPV4), []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 6, Len: 2},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 2, Mask: []byte{0x3f, 0xff}, Xor: []byte{0, 0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0}},
	})}
}

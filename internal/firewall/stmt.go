package firewall

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/moat-fw/moat/internal/config"
)

// A stmt is one piece of a rule in two forms built side by side: the text
// `nft list` prints for it and the expressions the kernel runs. Building both
// from one constructor is what keeps `moat firewall show` honest; the
// integration test compares the text with what nft reads back from the kernel.
type stmt struct {
	text  string
	exprs []expr.Any
	anon  *anonSet // an anonymous set the exprs look up, created with the rule
}

// anonSet is a constant set that belongs to one rule, like nft's `{ 22, 443 }`.
type anonSet struct {
	keyType  nftables.SetDatatype
	interval bool
	concat   bool
	elems    []nftables.SetElement
	lookup   *expr.Lookup // patched with the set's name and id when applied
}

// Rule is one rule of a chain.
type Rule struct {
	stmts []stmt
}

func rule(s ...stmt) Rule { return Rule{stmts: s} }

// Text is the rule in nft syntax.
func (r Rule) Text() string {
	parts := make([]string, 0, len(r.stmts))
	for _, s := range r.stmts {
		parts = append(parts, s.text)
	}
	return strings.Join(parts, " ")
}

func (r Rule) exprs() []expr.Any {
	var out []expr.Any
	for _, s := range r.stmts {
		out = append(out, s.exprs...)
	}
	return out
}

func (r Rule) anonSets() []*anonSet {
	var out []*anonSet
	for _, s := range r.stmts {
		if s.anon != nil {
			out = append(out, s.anon)
		}
	}
	return out
}

// Protocol numbers as nft matches them in the inet family.
const (
	protoICMP   = unix.IPPROTO_ICMP
	protoTCP    = unix.IPPROTO_TCP
	protoUDP    = unix.IPPROTO_UDP
	protoICMPv6 = unix.IPPROTO_ICMPV6
)

// TCP flag bits.
const (
	flagFIN = 0x01
	flagSYN = 0x02
	flagRST = 0x04
	flagPSH = 0x08
	flagACK = 0x10
	flagURG = 0x20
	flagAll = flagFIN | flagSYN | flagRST | flagPSH | flagACK | flagURG
)

func nfproto(fam byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{fam}},
	}
}

func l4proto(p byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
	}
}

func cat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// iifLo matches the loopback interface by index, which is 1 in every namespace.
func iifLo() stmt {
	return stmt{text: `iif "lo"`, exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIF, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.NativeEndian.AppendUint32(nil, 1)},
	}}
}

// iifname matches an interface by name; a trailing '*' matches a prefix.
func iifname(name string) stmt {
	var data []byte
	if p, ok := strings.CutSuffix(name, "*"); ok {
		data = []byte(p)
	} else {
		data = make([]byte, unix.IFNAMSIZ) // names compare NUL-padded
		copy(data, name)
	}
	return stmt{text: fmt.Sprintf("iifname %q", name), exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data},
	}}
}

// saddrIn matches the source address against a named set of the family of v6.
func saddrIn(setName string, v6 bool) stmt {
	fam, off, n, kw := byte(unix.NFPROTO_IPV4), uint32(12), uint32(4), "ip"
	if v6 {
		fam, off, n, kw = unix.NFPROTO_IPV6, 8, 16, "ip6"
	}
	return stmt{text: fmt.Sprintf("%s saddr @%s", kw, setName), exprs: cat(nfproto(fam), []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Lookup{SourceRegister: 1, SetName: setName},
	})}
}

// saddrPrefix matches a source prefix, loading only the bytes the mask covers
// as nft itself does.
func saddrPrefix(p netip.Prefix) stmt {
	fam, off, kw := byte(unix.NFPROTO_IPV4), uint32(12), "ip"
	if p.Addr().Is6() {
		fam, off, kw = unix.NFPROTO_IPV6, 8, "ip6"
	}
	// Byte-aligned prefixes load only their bytes; others load the whole
	// address and mask it, which is what nft decompiles back to a prefix.
	nbytes := p.Bits() / 8
	if p.Bits()%8 != 0 {
		nbytes = p.Addr().BitLen() / 8
	}
	addr := p.Addr().AsSlice()[:nbytes]
	mask := make([]byte, nbytes)
	for i := range p.Bits() {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	e := cat(nfproto(fam), []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: uint32(nbytes)},
	})
	if p.Bits()%8 != 0 {
		e = append(e, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: uint32(nbytes), Mask: mask, Xor: make([]byte, nbytes)})
	}
	e = append(e, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr})
	return stmt{text: fmt.Sprintf("%s saddr %s", kw, p), exprs: e}
}

var flagNames = []struct {
	bit  byte
	name string
}{{flagFIN, "fin"}, {flagSYN, "syn"}, {flagRST, "rst"}, {flagPSH, "psh"}, {flagACK, "ack"}, {flagURG, "urg"}}

func flagText(f byte) string {
	var names []string
	for _, n := range flagNames {
		if f&n.bit != 0 {
			names = append(names, n.name)
		}
	}
	return strings.Join(names, ",")
}

// tcpFlags matches `tcp flags & mask == want` (or != when neq).
func tcpFlags(want, mask byte, neq bool) stmt {
	op, opText := expr.CmpOpEq, ""
	if neq {
		op, opText = expr.CmpOpNeq, "!= "
	}
	var text string
	if want == 0 && !neq {
		text = "tcp flags ! " + flagText(mask)
	} else {
		text = fmt.Sprintf("tcp flags %s%s / %s", opText, flagText(want), flagText(mask))
	}
	return stmt{text: text, exprs: cat(l4proto(protoTCP), []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{mask}, Xor: []byte{0}},
		&expr.Cmp{Op: op, Register: 1, Data: []byte{want}},
	})}
}

// ctState matches when any of the given conntrack states is set.
func ctState(bits uint32, names string) stmt {
	return stmt{text: "ct state " + names, exprs: []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, bits), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}}
}

func ctNew() stmt {
	return ctState(expr.CtStateBitNEW, "new")
}

// fragV6 matches IPv6 packets carrying a fragment header.
func fragV6() stmt {
	return stmt{text: "exthdr frag exists", exprs: cat(nfproto(unix.NFPROTO_IPV6), []expr.Any{
		&expr.Exthdr{DestRegister: 1, Type: unix.IPPROTO_FRAGMENT, Offset: 0, Len: 1,
			Flags: unix.NFT_EXTHDR_F_PRESENT, Op: expr.ExthdrOpIpv6},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{1}},
	})}
}

// icmpType matches one ICMP (v4) type.
func icmpType(t byte, name string) stmt {
	return stmt{text: "icmp type " + name, exprs: cat(l4proto(protoICMP), []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{t}},
	})}
}

// icmpv6Types matches any of the given ICMPv6 types (sorted by value, as nft lists them).
func icmpv6Types(types []byte, names map[byte]string) stmt {
	sort.Slice(types, func(i, j int) bool { return types[i] < types[j] })
	head := cat(l4proto(protoICMPv6), []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
	})
	if len(types) == 1 {
		return stmt{text: "icmpv6 type " + names[types[0]],
			exprs: append(head, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{types[0]}})}
	}
	lk := &expr.Lookup{SourceRegister: 1}
	as := &anonSet{keyType: nftables.TypeICMP6Type, lookup: lk}
	var ns []string
	for _, t := range types {
		as.elems = append(as.elems, nftables.SetElement{Key: []byte{t}})
		ns = append(ns, names[t])
	}
	return stmt{text: "icmpv6 type { " + strings.Join(ns, ", ") + " }", exprs: append(head, lk), anon: as}
}

func hoplimit255() stmt { return hoplimit(255) }

// hoplimit matches an IPv6 hop limit: 255 proves a packet was sent on the
// link (ND), 1 that it was not meant to leave it (MLD).
func hoplimit(n byte) stmt {
	return stmt{text: fmt.Sprintf("ip6 hoplimit %d", n), exprs: cat(nfproto(unix.NFPROTO_IPV6), []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 7, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{n}},
	})}
}

// portMatch matches a transport port (source when src) of proto.
func portMatch(proto byte, src bool, port uint16) stmt {
	off, dir := uint32(2), "dport"
	if src {
		off, dir = 0, "sport"
	}
	return stmt{text: fmt.Sprintf("%s %s %d", protoName(proto), dir, port), exprs: cat(l4proto(proto), []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: off, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, port)},
	})}
}

// portRange is an inclusive destination port range.
type portRange struct{ from, to uint16 }

// dports matches destination ports of proto: one port, one range, or a set.
func dports(proto byte, ranges []portRange) stmt { return dportsOp(proto, ranges, false) }

// dportsNot matches the protocol's packets to any port outside ranges.
func dportsNot(proto byte, ranges []portRange) stmt { return dportsOp(proto, ranges, true) }

func dportsOp(proto byte, ranges []portRange, not bool) stmt {
	sort.Slice(ranges, func(i, j int) bool { return ranges[i].from < ranges[j].from })
	head := cat(l4proto(proto), []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
	})
	be := func(p uint16) []byte { return binary.BigEndian.AppendUint16(nil, p) }
	prefix := protoName(proto) + " dport "
	op := expr.CmpOpEq
	if not {
		prefix, op = prefix+"!= ", expr.CmpOpNeq
	}
	if len(ranges) == 1 {
		r := ranges[0]
		if r.from == r.to {
			return stmt{text: fmt.Sprintf("%s%d", prefix, r.from),
				exprs: append(head, &expr.Cmp{Op: op, Register: 1, Data: be(r.from)})}
		}
		return stmt{text: fmt.Sprintf("%s%d-%d", prefix, r.from, r.to),
			exprs: append(head, &expr.Range{Op: op, Register: 1, FromData: be(r.from), ToData: be(r.to)})}
	}
	lk := &expr.Lookup{SourceRegister: 1, Invert: not}
	as := &anonSet{keyType: nftables.TypeInetService, lookup: lk}
	var names []string
	for _, r := range ranges {
		if r.from != r.to {
			as.interval = true
		}
	}
	for _, r := range ranges {
		if r.from == r.to {
			names = append(names, fmt.Sprint(r.from))
		} else {
			names = append(names, fmt.Sprintf("%d-%d", r.from, r.to))
		}
		if !as.interval {
			as.elems = append(as.elems, nftables.SetElement{Key: be(r.from)})
			continue
		}
		as.elems = append(as.elems, nftables.SetElement{Key: be(r.from)})
		if r.to == 65535 {
			as.elems[len(as.elems)-1].IntervalOpen = true
		} else {
			as.elems = append(as.elems, nftables.SetElement{Key: be(r.to + 1), IntervalEnd: true})
		}
	}
	return stmt{text: prefix + "{ " + strings.Join(names, ", ") + " }", exprs: append(head, lk), anon: as}
}

func protoName(p byte) string {
	switch p {
	case protoTCP:
		return "tcp"
	case protoUDP:
		return "udp"
	}
	return fmt.Sprint(p)
}

func metaL4(proto byte) stmt {
	return stmt{text: "meta l4proto " + protoName(proto), exprs: l4proto(proto)}
}

// limitObj applies the table's shared log rate limit (a named limit object),
// so all NFLOG output together stays under one kernel-enforced budget.
func limitObj(name string) stmt {
	return stmt{text: fmt.Sprintf("limit name %q", name), exprs: []expr.Any{
		&expr.Objref{Type: int(nftables.ObjTypeLimit), Name: name},
	}}
}

func counterObj(name string) stmt {
	return stmt{text: fmt.Sprintf("counter name %q", name), exprs: []expr.Any{
		&expr.Objref{Type: int(nftables.ObjTypeCounter), Name: name},
	}}
}

// nflog sends the packet's first snaplen bytes to an NFLOG group. Key must
// name every attribute set, or the kernel silently ignores them.
func nflog(prefix string, group uint16, snaplen uint32) stmt {
	return stmt{text: fmt.Sprintf("log prefix %q group %d snaplen %d", prefix, group, snaplen), exprs: []expr.Any{
		&expr.Log{
			Key:     1<<unix.NFTA_LOG_PREFIX | 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_SNAPLEN,
			Data:    []byte(prefix),
			Group:   group,
			Snaplen: snaplen,
		},
	}}
}

func verdict(k expr.VerdictKind, text string) stmt {
	return stmt{text: text, exprs: []expr.Any{&expr.Verdict{Kind: k}}}
}

func accept() stmt { return verdict(expr.VerdictAccept, "accept") }
func drop() stmt   { return verdict(expr.VerdictDrop, "drop") }

func gotoChain(name string) stmt {
	return stmt{text: "goto " + name, exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictGoto, Chain: name}}}
}

func rejectTCPReset() stmt {
	return stmt{text: "reject with tcp reset", exprs: []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}}}
}

// rejectPortUnreachable sends ICMP or ICMPv6 port unreachable, per family.
func rejectPortUnreachable() stmt {
	return stmt{text: "reject", exprs: []expr.Any{
		&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_PORT_UNREACH},
	}}
}

// Registers for concatenations: a 16-byte address fills NFT_REG_1, which
// is NFT_REG32_00..03; the next 32-bit registers hold the other fields.
const (
	reg32After4 = unix.NFT_REG32_00 + 1 // first free 32-bit register after an IPv4 address
	reg32After6 = unix.NFT_REG32_00 + 4 // ... after an IPv6 address
)

func saddrLoad(v6 bool) (kw string, e []expr.Any) {
	if v6 {
		return "ip6", cat(nfproto(unix.NFPROTO_IPV6), []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 16}})
	}
	return "ip", cat(nfproto(unix.NFPROTO_IPV4), []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4}})
}

// grantLookup matches packets whose source, protocol and destination port
// are in a grant set: `ip saddr . meta l4proto . th dport @grant4`.
func grantLookup(setName string, v6 bool) stmt {
	kw, e := saddrLoad(v6)
	r := uint32(reg32After4)
	if v6 {
		r = reg32After6
	}
	e = append(e,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: r},
		&expr.Payload{DestRegister: r + 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: 1, SetName: setName})
	return stmt{text: fmt.Sprintf("%s saddr . meta l4proto . th dport @%s", kw, setName), exprs: e}
}

// protoPortNotIn matches packets whose protocol and destination port are
// none of specs: `meta l4proto . th dport != { tcp . 7000, udp . 8000 }`.
func protoPortNotIn(specs []config.PortSpec) stmt {
	lk := &expr.Lookup{SourceRegister: 1, Invert: true}
	as := &anonSet{keyType: nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService), concat: true, lookup: lk}
	var names []string
	for _, s := range specs {
		as.elems = append(as.elems, nftables.SetElement{Key: []byte{byte(s.Proto), 0, 0, 0, byte(s.From >> 8), byte(s.From), 0, 0}})
		names = append(names, fmt.Sprintf("%s . %d", s.Proto, s.From))
	}
	return stmt{text: "meta l4proto . th dport != { " + strings.Join(names, ", ") + " }", exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Payload{DestRegister: reg32After4, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		lk,
	}, anon: as}
}

// setUpdate adds the source to (or deletes it from) a dynamic set.
func setUpdate(op uint32, setName string, v6 bool) stmt {
	kw, e := saddrLoad(v6)
	verb := "add"
	if op == dynsetOpDelete {
		verb = "delete"
	}
	return stmt{text: fmt.Sprintf("%s @%s { %s saddr }", verb, setName, kw),
		exprs: append(e, &expr.Dynset{SrcRegKey: 1, SetName: setName, Operation: op})}
}

// grantUpdate adds (with a timeout) or deletes source . proto . port in a
// grant set, from the packet path.
func grantUpdate(op uint32, setName string, v6 bool, p config.PortSpec, timeout time.Duration) stmt {
	kw, e := saddrLoad(v6)
	r := uint32(reg32After4)
	if v6 {
		r = reg32After6
	}
	e = append(e,
		&expr.Immediate{Register: r, Data: []byte{byte(p.Proto)}},
		&expr.Immediate{Register: r + 1, Data: []byte{byte(p.From >> 8), byte(p.From)}})
	verb, tail := "add", ""
	if op == dynsetOpDelete {
		verb = "delete"
	} else {
		tail = " timeout " + nftDuration(timeout)
	}
	// nft lists the protocol by name although it only reads it back as a number.
	return stmt{text: fmt.Sprintf("%s @%s { %s saddr . %s . %d%s }", verb, setName, kw, p.Proto, p.From, tail),
		exprs: append(e, &expr.Dynset{SrcRegKey: 1, SetName: setName, Operation: op, Timeout: timeout})}
}

// nftDuration formats a duration as nft lists it: "1d2h3m4s5ms".
func nftDuration(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	ms := d.Milliseconds()
	var b strings.Builder
	for _, u := range []struct {
		n    int64
		name string
	}{{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}, {1, "ms"}} {
		if ms >= u.n {
			fmt.Fprintf(&b, "%d%s", ms/u.n, u.name)
			ms %= u.n
		}
	}
	return b.String()
}

func jumpChain(name string) stmt {
	return stmt{text: "jump " + name, exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: name}}}
}

// dynsetOpDelete is NFT_DYNSET_OP_DELETE (linux/netfilter/nf_tables.h,
// kernel 5.12+), which x/sys does not define.
const dynsetOpDelete = 2

// protoPortIn matches packets whose protocol and destination port are one
// of specs: `meta l4proto . th dport { tcp . 7000, udp . 8000 }`.
func protoPortIn(specs []config.PortSpec) stmt {
	s := protoPortNotIn(specs)
	s.anon.lookup.Invert = false
	s.text = strings.Replace(s.text, " != ", " ", 1)
	return s
}

func metaNfproto(v6 bool) stmt {
	if v6 {
		return stmt{text: "meta nfproto ipv6", exprs: nfproto(unix.NFPROTO_IPV6)}
	}
	return stmt{text: "meta nfproto ipv4", exprs: nfproto(unix.NFPROTO_IPV4)}
}

// setRefresh adds the source to a dynamic set or refreshes its timeout.
func setRefresh(setName string, v6 bool) stmt {
	kw, e := saddrLoad(v6)
	return stmt{text: fmt.Sprintf("update @%s { %s saddr }", setName, kw),
		exprs: append(e, &expr.Dynset{SrcRegKey: 1, SetName: setName, Operation: unix.NFT_DYNSET_OP_UPDATE})}
}

// nflogNow is nflog with a queue threshold of 1: the kernel sends the
// packet to user space at once instead of batching it (up to 10 ms).
// Knocks use it: a lone last knock would otherwise wait for the batch timer.
func nflogNow(prefix string, group uint16, snaplen uint32) stmt {
	s := nflog(prefix, group, snaplen)
	l := s.exprs[0].(*expr.Log)
	l.Key |= 1 << unix.NFTA_LOG_QTHRESHOLD
	l.QThreshold = 1
	s.text += " queue-threshold 1"
	return s
}

// setLimitOver updates the source's element of a dynamic set (a meter),
// which carries a packet rate limit of its own, and matches once the
// source goes beyond rate (burst).
func setLimitOver(setName string, v6 bool, rate uint64, burst uint32) stmt {
	kw, e := saddrLoad(v6)
	return stmt{text: fmt.Sprintf("update @%s { %s saddr limit rate over %d/second burst %d packets }", setName, kw, rate, burst),
		exprs: append(e, &expr.Dynset{SrcRegKey: 1, SetName: setName, Operation: unix.NFT_DYNSET_OP_UPDATE,
			Exprs: []expr.Any{&expr.Limit{Type: expr.LimitTypePkts, Rate: rate, Unit: expr.LimitTimeSecond, Burst: burst, Over: true}}})}
}

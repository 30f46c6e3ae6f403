// Package packet decodes the IP, TCP, UDP and ICMP headers of logged packets by hand, without allocating.
//
// The input is what NFLOG hands over: the packet from its IP header on,
// usually cut to a snap length (128 bytes in moat's ruleset). A cut payload
// is normal and not an error; a cut inside the headers is ErrTruncated. The
// decoder never reads outside the slice and never panics, whatever the
// bytes: a spoofed flood is attacker-controlled input.
package packet

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strconv"
	"strings"
)

// Errors returned by Decode. They are plain sentinel values, so returning
// one does not allocate: compare with errors.Is or ==.
var (
	// ErrTruncated: the input ends inside the IP header, an IPv6 extension
	// header or the fixed part of the TCP, UDP or ICMP header (a snap length
	// shorter than the headers, or a first fragment that splits them). The
	// fields before the cut are set: Src and Dst are valid when the fixed IP
	// header was complete. TCPFlags must not be trusted then: zero does not
	// mean a NULL scan.
	ErrTruncated = errors.New("packet: truncated inside the headers")
	// ErrBadVersion: the IP version nibble is not 4 or 6, or does not match
	// the family the caller passed.
	ErrBadVersion = errors.New("packet: bad IP version")
	// ErrBadHeader: a header contradicts itself or the one around it (IPv4
	// header length under 20, TCP data offset under 20 or past the IP
	// length, more than 16 IPv6 extension headers).
	ErrBadHeader = errors.New("packet: malformed header")
)

// IP protocol numbers Decode knows about.
const (
	ProtoHopByHop = 0
	ProtoICMP     = 1
	ProtoTCP      = 6
	ProtoUDP      = 17
	ProtoDCCP     = 33
	ProtoRouting  = 43
	ProtoFragment = 44
	ProtoESP      = 50
	ProtoAH       = 51
	ProtoICMPv6   = 58
	ProtoNoNext   = 59
	ProtoDstOpts  = 60
	ProtoMobility = 135
	ProtoUDPLite  = 136
	ProtoSCTP     = 132
	ProtoHIP      = 139
	ProtoShim6    = 140
)

// Flags are the eight TCP flag bits of header byte 13, FIN to CWR.
type Flags uint8

// TCP flags, as they sit in the header.
const (
	FIN Flags = 1 << iota
	SYN
	RST
	PSH
	ACK
	URG
	ECE
	CWR
)

// String lists the flags in tcpdump's letters: "S", "SA", "FPU"; "." for
// none. E is ECE and W is CWR.
func (f Flags) String() string {
	if f == 0 {
		return "."
	}
	var b [8]byte
	n := 0
	for i, c := range "FSRPAUEW" {
		if f&(1<<i) != 0 {
			b[n] = byte(c)
			n++
		}
	}
	return string(b[:n])
}

// TCPOpts records which TCP options a segment carried, and whether the
// option list was sound. It is what tells scanners apart: nmap's SYN probes
// carry MSS 1460 alone, masscan's none, an operating system's connect()
// several (MSS, SACK permitted, timestamps, window scale).
type TCPOpts uint16

// TCP option bits.
const (
	OptMSS       TCPOpts = 1 << iota // kind 2
	OptWScale                        // kind 3
	OptSACKPerm                      // kind 4
	OptSACK                          // kind 5
	OptTimestamp                     // kind 8
	OptNOP                           // kind 1
	OptEOL                           // kind 0
	OptOther                         // any other kind
	// OptMalformed: an option length under 2, running past the data
	// offset, or wrong for its kind (MSS not 4 bytes...). Parsing stops.
	OptMalformed
	// OptCut: the snap length ended inside the options; the ones after
	// the cut are not recorded.
	OptCut
)

// Packet is one decoded packet. Decode overwrites every field, so one
// Packet can be reused for every packet of a stream.
type Packet struct {
	Src, Dst netip.Addr

	Family uint8 // 4 or 6
	Proto  uint8 // L4 protocol, after IPv6 extension headers (ESP, 59 "no next header" end the chain)
	TTL    uint8 // IPv4 TTL or IPv6 hop limit
	TOS    uint8 // IPv4 TOS or IPv6 traffic class (DSCP and ECN)
	IPID   uint16
	Length uint16 // IPv4 total length or IPv6 payload length, as claimed by the header
	DF     bool   // IPv4 don't fragment
	// Fragment: a non-first fragment (IPv4 offset != 0, or an IPv6
	// fragment header with offset != 0). It has no L4 header, so the
	// ports and TCP fields are zero.
	Fragment bool
	// MoreFragments: the MF bit; with Fragment false this is a first
	// fragment, whose L4 header may be split (nmap -f).
	MoreFragments bool

	// SrcPort and DstPort are set for TCP, UDP, UDP-Lite, SCTP and DCCP.
	SrcPort, DstPort uint16
	// PayloadLen is the L4 payload length the headers claim (IP length
	// minus the IP, extension and L4 headers), whatever was captured.
	PayloadLen uint16

	TCPFlags  Flags
	TCPOptLen uint8 // option bytes claimed by the data offset (0: no options, as masscan sends)
	TCPWindow uint16
	TCPSeq    uint32
	TCPAck    uint32
	TCPOpts   TCPOpts
	MSS       uint16 // 0 if absent
	WScale    uint8  // valid if TCPOpts&OptWScale
	TSVal     uint32 // valid if TCPOpts&OptTimestamp
	// TCPOptOrder is the options' kinds in the order they came, for
	// passive OS fingerprints (an operating system's SYN has its own
	// order): 4 bits each, the first in the low bits, 0 after the last.
	// See OptCode; past 16 options the rest are not recorded.
	TCPOptOrder uint64

	ICMPType, ICMPCode uint8
	// ICMPID and ICMPSeq are set for echo, timestamp, information and
	// address mask requests and replies (ICMPv6: echo only), the probes
	// of ping sweeps.
	ICMPID, ICMPSeq uint16
}

// Decode decodes the packet in b, which starts at the IP header (an NFLOG
// payload), into p. family is 4 or 6, or 0 to take it from the version
// nibble. p is overwritten in full, even on error.
//
// Decode returns nil when every header up to and including the fixed L4
// header was present (a cut payload or TCP option list is normal), and one
// of the sentinel errors otherwise; see ErrTruncated for what is set then.
// It does not allocate.
func Decode(family uint8, b []byte, p *Packet) error {
	*p = Packet{}
	if len(b) == 0 {
		return ErrTruncated
	}
	v := b[0] >> 4
	if family == 0 {
		family = v
	}
	if v != family {
		return ErrBadVersion
	}
	switch family {
	case 4:
		return decode4(b, p)
	case 6:
		return decode6(b, p)
	}
	return ErrBadVersion
}

func decode4(b []byte, p *Packet) error {
	if len(b) < 20 {
		return ErrTruncated
	}
	p.Family = 4
	p.TOS = b[1]
	total := int(binary.BigEndian.Uint16(b[2:4]))
	p.Length = uint16(total)
	p.IPID = binary.BigEndian.Uint16(b[4:6])
	frag := binary.BigEndian.Uint16(b[6:8])
	p.DF = frag&0x4000 != 0
	p.MoreFragments = frag&0x2000 != 0
	p.TTL = b[8]
	p.Proto = b[9]
	p.Src = netip.AddrFrom4([4]byte(b[12:16]))
	p.Dst = netip.AddrFrom4([4]byte(b[16:20]))

	ihl := int(b[0]&0x0f) * 4
	if total == 0 {
		// GRO'd packets over 64 KiB ("BIG TCP") carry 0: the captured
		// bytes are all we know.
		total = len(b)
	}
	if ihl < 20 || total < ihl {
		return ErrBadHeader
	}
	if len(b) < ihl {
		return ErrTruncated
	}
	if frag&0x1fff != 0 {
		p.Fragment = true
		return nil
	}
	end := min(len(b), total)
	return decodeL4(b[ihl:end], total-ihl, p)
}

// maxExtHeaders bounds the IPv6 extension header walk. Real chains hold a
// few; an attacker's may hold hundreds of 8-byte headers.
const maxExtHeaders = 16

func decode6(b []byte, p *Packet) error {
	if len(b) < 40 {
		return ErrTruncated
	}
	p.Family = 6
	p.TOS = b[0]<<4 | b[1]>>4
	plen := int(binary.BigEndian.Uint16(b[4:6]))
	p.Length = uint16(plen)
	next := b[6]
	p.Proto = next
	p.TTL = b[7]
	p.Src = netip.AddrFrom16([16]byte(b[8:24]))
	p.Dst = netip.AddrFrom16([16]byte(b[24:40]))

	if plen == 0 {
		// A jumbogram (or BIG TCP): the length is in a hop-by-hop option;
		// the captured bytes are all we know.
		plen = len(b) - 40
	}
	rest := b[40:min(len(b), 40+plen)]
	claimed := plen // bytes after the headers walked so far, as claimed
	for range maxExtHeaders {
		p.Proto = next
		var hlen int
		switch next {
		case ProtoHopByHop, ProtoRouting, ProtoDstOpts, ProtoMobility, ProtoHIP, ProtoShim6:
			if len(rest) < 2 {
				return truncOrBad(claimed, 2)
			}
			hlen = (int(rest[1]) + 1) * 8
		case ProtoAH:
			if len(rest) < 2 {
				return truncOrBad(claimed, 2)
			}
			hlen = (int(rest[1]) + 2) * 4
		case ProtoFragment:
			hlen = 8
			if len(rest) < hlen {
				return truncOrBad(claimed, hlen)
			}
			fo := binary.BigEndian.Uint16(rest[2:4])
			p.MoreFragments = fo&1 != 0
			if fo>>3 != 0 {
				p.Fragment = true
				p.Proto = rest[0]
				return nil
			}
		default:
			return decodeL4(rest, claimed, p)
		}
		if len(rest) < hlen {
			return truncOrBad(claimed, hlen)
		}
		next = rest[0]
		rest = rest[hlen:]
		claimed -= hlen
	}
	return ErrBadHeader
}

// truncOrBad tells a capture cut from a header claiming more than the IP
// length allows.
func truncOrBad(claimed, need int) error {
	if claimed < need {
		return ErrBadHeader
	}
	return ErrTruncated
}

// decodeL4 decodes the L4 header in b (the captured bytes, no further than
// the IP length); claimed is the L4 length the IP header claims.
func decodeL4(b []byte, claimed int, p *Packet) error {
	switch p.Proto {
	case ProtoTCP:
		return decodeTCP(b, claimed, p)
	case ProtoUDP, ProtoUDPLite:
		if len(b) >= 4 {
			p.SrcPort = binary.BigEndian.Uint16(b[0:2])
			p.DstPort = binary.BigEndian.Uint16(b[2:4])
		}
		if len(b) < 8 {
			return truncOrFrag(claimed, 8, p)
		}
		p.PayloadLen = sat16(claimed - 8)
	case ProtoSCTP, ProtoDCCP:
		if len(b) < 4 {
			return truncOrFrag(claimed, 4, p)
		}
		p.SrcPort = binary.BigEndian.Uint16(b[0:2])
		p.DstPort = binary.BigEndian.Uint16(b[2:4])
	case ProtoICMP, ProtoICMPv6:
		if len(b) >= 2 {
			p.ICMPType, p.ICMPCode = b[0], b[1]
		}
		if len(b) < 8 {
			return truncOrFrag(claimed, 8, p)
		}
		if hasICMPID(p.Proto, p.ICMPType) {
			p.ICMPID = binary.BigEndian.Uint16(b[4:6])
			p.ICMPSeq = binary.BigEndian.Uint16(b[6:8])
		}
		p.PayloadLen = sat16(claimed - 8)
	}
	return nil
}

// truncOrFrag is truncOrBad, except that a first fragment may legitimately
// end inside the L4 header.
func truncOrFrag(claimed, need int, p *Packet) error {
	if claimed < need && !p.MoreFragments {
		return ErrBadHeader
	}
	return ErrTruncated
}

// sat16 caps a length at 65535: an IPv6 jumbogram may claim more.
func sat16(n int) uint16 {
	return uint16(min(n, 0xffff))
}

func hasICMPID(proto, typ uint8) bool {
	if proto == ProtoICMPv6 {
		return typ == 128 || typ == 129 // echo request, reply
	}
	switch typ {
	case 0, 8, 13, 14, 15, 16, 17, 18: // echo, timestamp, information, address mask
		return true
	}
	return false
}

func decodeTCP(b []byte, claimed int, p *Packet) error {
	if len(b) >= 4 {
		p.SrcPort = binary.BigEndian.Uint16(b[0:2])
		p.DstPort = binary.BigEndian.Uint16(b[2:4])
	}
	if len(b) < 20 {
		return truncOrFrag(claimed, 20, p)
	}
	p.TCPSeq = binary.BigEndian.Uint32(b[4:8])
	p.TCPAck = binary.BigEndian.Uint32(b[8:12])
	p.TCPFlags = Flags(b[13])
	p.TCPWindow = binary.BigEndian.Uint16(b[14:16])
	doff := int(b[12]>>4) * 4
	if doff < 20 {
		return ErrBadHeader
	}
	if claimed < doff {
		// A first fragment may split the options; anything else claims a
		// header longer than the packet.
		if !p.MoreFragments {
			return ErrBadHeader
		}
		p.TCPOpts |= OptCut
		doff = claimed
	}
	p.TCPOptLen = uint8(doff - 20)
	p.PayloadLen = sat16(claimed - doff)
	opts := b[20:min(doff, len(b))]
	if len(opts) < doff-20 {
		p.TCPOpts |= OptCut
	}
	parseTCPOptions(opts, p)
	return nil
}

// OptCode is how TCPOptOrder writes an option kind: the kind plus one for
// kinds 0 to 8 (EOL 1, NOP 2, MSS 3, window scale 4, SACK permitted 5,
// SACK 6, timestamps 9), 15 for any other.
func OptCode(kind uint8) uint8 {
	if kind <= 8 {
		return kind + 1
	}
	return 15
}

// NoteOption appends kind to p.TCPOptOrder, n being the options noted so
// far (a decoder's count, starting at 0).
func (p *Packet) NoteOption(n *uint, kind uint8) {
	if *n < 16 {
		p.TCPOptOrder |= uint64(OptCode(kind)) << (4 * *n)
		*n++
	}
}

func parseTCPOptions(o []byte, p *Packet) {
	var n uint // options noted in TCPOptOrder
	// A run past the captured bytes is OptCut when the capture was cut
	// there, and OptMalformed when the options themselves end there.
	overrun := OptMalformed
	if p.TCPOpts&OptCut != 0 {
		overrun = OptCut
	}
	for i := 0; i < len(o); {
		kind := o[i]
		switch kind {
		case 0:
			p.TCPOpts |= OptEOL
			p.NoteOption(&n, 0)
			return
		case 1:
			p.TCPOpts |= OptNOP
			p.NoteOption(&n, 1)
			i++
			continue
		}
		if i+1 >= len(o) {
			p.TCPOpts |= overrun
			return
		}
		l := int(o[i+1])
		if l < 2 {
			p.TCPOpts |= OptMalformed
			return
		}
		if i+l > len(o) {
			p.TCPOpts |= overrun
			return
		}
		v := o[i+2 : i+l]
		p.NoteOption(&n, kind)
		switch kind {
		case 2:
			if len(v) != 2 {
				p.TCPOpts |= OptMalformed
				return
			}
			p.TCPOpts |= OptMSS
			p.MSS = binary.BigEndian.Uint16(v)
		case 3:
			if len(v) != 1 {
				p.TCPOpts |= OptMalformed
				return
			}
			p.TCPOpts |= OptWScale
			p.WScale = v[0]
		case 4:
			p.TCPOpts |= OptSACKPerm
		case 5:
			p.TCPOpts |= OptSACK
		case 8:
			if len(v) != 8 {
				p.TCPOpts |= OptMalformed
				return
			}
			p.TCPOpts |= OptTimestamp
			p.TSVal = binary.BigEndian.Uint32(v)
		default:
			p.TCPOpts |= OptOther
		}
		i += l
	}
}

// String formats the packet for logs and test failures, tcpdump-like:
// "IPv4 10.0.0.2:40000 > 10.0.0.1:22 tcp S win 1024 mss 1460 ttl 64".
// It allocates; the hot path never calls it.
func (p *Packet) String() string {
	var b strings.Builder
	b.WriteString("IPv")
	b.WriteString(strconv.Itoa(int(p.Family)))
	b.WriteByte(' ')
	hasPorts := p.SrcPort != 0 || p.DstPort != 0
	if hasPorts {
		b.WriteString(netip.AddrPortFrom(p.Src, p.SrcPort).String())
		b.WriteString(" > ")
		b.WriteString(netip.AddrPortFrom(p.Dst, p.DstPort).String())
	} else {
		b.WriteString(p.Src.String())
		b.WriteString(" > ")
		b.WriteString(p.Dst.String())
	}
	b.WriteByte(' ')
	switch p.Proto {
	case ProtoTCP:
		b.WriteString("tcp")
	case ProtoUDP:
		b.WriteString("udp")
	case ProtoICMP:
		b.WriteString("icmp")
	case ProtoICMPv6:
		b.WriteString("icmp6")
	default:
		b.WriteString("proto ")
		b.WriteString(strconv.Itoa(int(p.Proto)))
	}
	if p.Fragment {
		b.WriteString(" frag")
	}
	switch {
	case p.Proto == ProtoTCP && !p.Fragment:
		b.WriteByte(' ')
		b.WriteString(p.TCPFlags.String())
		b.WriteString(" win ")
		b.WriteString(strconv.Itoa(int(p.TCPWindow)))
		if p.TCPOpts&OptMSS != 0 {
			b.WriteString(" mss ")
			b.WriteString(strconv.Itoa(int(p.MSS)))
		}
		if p.TCPOptLen == 0 {
			b.WriteString(" noopts")
		}
	case (p.Proto == ProtoICMP || p.Proto == ProtoICMPv6) && !p.Fragment:
		b.WriteString(" type ")
		b.WriteString(strconv.Itoa(int(p.ICMPType)))
		b.WriteString(" code ")
		b.WriteString(strconv.Itoa(int(p.ICMPCode)))
	}
	b.WriteString(" ttl ")
	b.WriteString(strconv.Itoa(int(p.TTL)))
	return b.String()
}

// Checksum is the Internet checksum of a TCP, UDP or ICMPv6 message (its
// checksum field zero) from src to dst, pseudo-header included, for the
// tools that forge packets in tests and benches.
func Checksum(src, dst netip.Addr, proto byte, msg []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i < len(b); i += 2 {
			hi := uint32(b[i]) << 8
			if i+1 < len(b) {
				hi |= uint32(b[i+1])
			}
			sum += hi
		}
	}
	add(src.AsSlice())
	add(dst.AsSlice())
	sum += uint32(proto) + uint32(len(msg))
	add(msg)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

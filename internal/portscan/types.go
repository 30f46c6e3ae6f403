package portscan

import (
	"strings"

	"github.com/moat-fw/moat/internal/packet"
)

// ScanTypes is a set of the kinds of probe a source has sent.
type ScanTypes uint32

// Kinds of probe, as they look at the firewall.
const (
	// TypeSYN: a bare SYN without the options an operating system's
	// connect() sends: nmap -sS (MSS 1460 alone, window 1024), masscan,
	// zmap, hping.
	TypeSYN ScanTypes = 1 << iota
	// TypeConnect: a bare SYN with the operating system's usual options
	// (SACK permitted, timestamps or window scale): nmap -sT, or any
	// client connecting to a closed port.
	TypeConnect
	// TypeNoOpts: a SYN with no TCP options at all, which no operating
	// system sends: masscan-style. Noted alongside TypeSYN.
	TypeNoOpts
	TypeFIN    // FIN alone: nmap -sF
	TypeXMAS   // FIN+PSH+URG: nmap -sX
	TypeNULL   // no flags: nmap -sN
	TypeACK    // ACK alone, no payload, no options: nmap -sA and -sW (see typeNames)
	TypeMaimon // FIN+ACK, no payload, no options: nmap -sM
	TypeSYNFIN // SYN+FIN, with or without other flags
	// TypeInvalid: other combinations no TCP stack sends: all flags,
	// SYN+RST, PSH or URG without ACK...
	TypeInvalid
	TypeUDP // a UDP datagram to a closed port: nmap -sU
	TypeSCTP
	// TypeProto: a protocol other than TCP, UDP, ICMP and SCTP (GRE, PIM,
	// ESP, IPv6 no-next-header...): nmap -sO.
	TypeProto
	TypePing // ICMP or ICMPv6 echo request
	// TypeICMPProbe: ICMP queries only scanners send: timestamp, information
	// and address mask requests (types 13, 15, 17), extended echo (42),
	// undefined types, an echo request with a code (nmap -O); ICMPv6 node
	// information queries.
	TypeICMPProbe
	// TypeSweep: probes to several local addresses (a horizontal scan);
	// set once a source reaches the first sweep tier.
	TypeSweep
	TypeFragment // a fragment, whose flags cannot be read (nmap -f)

	numTypes = iota
)

// signatureTypes are the probes only scanners send: they raise the danger
// level as psad's signatures do.
const signatureTypes = TypeFIN | TypeXMAS | TypeNULL | TypeMaimon | TypeSYNFIN | TypeInvalid | TypeICMPProbe

// rawSYNTypes are SYNs crafted by a scanner rather than made by connect():
// MSS as the only option (nmap -sS) or none (masscan). Every operating
// system's own SYN adds SACK-permitted, timestamps or window scaling. They
// add Config.RawSYNBoost to a level the probe count already gave, without the
// signature floor (with Config.RawSYNBoost 1, nmap -sS of 1000 ports is at
// level 3 after 15 logged probes rather than 150). The cost: a small
// embedded stack sending MSS-only SYNs to 15 closed ports gets there as fast.
const rawSYNTypes = TypeSYN | TypeNoOpts

var typeNames = [numTypes]string{
	"syn", "connect", "noopts", "fin", "xmas", "null",
	// -sW differs from -sA only in how nmap reads the RSTs that come back:
	// the probes are the same, so the firewall cannot tell them apart.
	"ack/window",
	"maimon", "synfin", "invalid", "udp", "sctp", "proto", "ping", "icmp-probe", "sweep", "fragment",
}

// Names lists the types in t by name, in a fixed order.
func (t ScanTypes) Names() []string {
	var out []string
	for i, n := range typeNames {
		if t&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

// String joins the names with commas: "syn,noopts,sweep"; "none" for the
// empty set.
func (t ScanTypes) String() string {
	if t == 0 {
		return "none"
	}
	return strings.Join(t.Names(), ",")
}

// Signature reports whether t holds a probe only scanners send.
func (t ScanTypes) Signature() bool { return t&signatureTypes != 0 }

// classify tells what kind of probe p is. Zero means p is not a probe and is
// not scored: traffic of a connection the firewall forgot (PSH+ACK, RST, an
// ACK or FIN+ACK carrying data or options), backscatter (SYN+ACK, echo
// replies, ICMP errors), which innocent hosts send.
func classify(p *packet.Packet, prefix []byte) ScanTypes {
	// A fragment's flags cannot be read (a first fragment may split the
	// TCP header: its zero flags do not mean NULL).
	if p.Fragment || p.MoreFragments || string(prefix) == "moat:fragment" {
		return TypeFragment
	}
	switch p.Proto {
	case packet.ProtoTCP:
		return classifyTCP(p)
	case packet.ProtoUDP, packet.ProtoUDPLite:
		return TypeUDP
	case packet.ProtoSCTP:
		return TypeSCTP
	case packet.ProtoICMP:
		if p.Family != 4 {
			return TypeProto
		}
		return classifyICMP(p.ICMPType, p.ICMPCode)
	case packet.ProtoICMPv6:
		if p.Family != 6 {
			return TypeProto
		}
		switch p.ICMPType {
		case 128:
			if p.ICMPCode != 0 {
				return TypePing | TypeICMPProbe
			}
			return TypePing
		case 139: // node information query
			return TypeICMPProbe
		}
		return 0
	}
	return TypeProto
}

func classifyICMP(typ, code uint8) ScanTypes {
	switch typ {
	case 8:
		if code != 0 {
			// nmap's OS detection sends echo requests with code 9.
			return TypePing | TypeICMPProbe
		}
		return TypePing
	case 13, 15, 17, 42: // timestamp, information, address mask, extended echo
		return TypeICMPProbe
	case 0, 3, 4, 5, 9, 10, 11, 12, 14, 16, 18, 43:
		// Replies and errors: backscatter, or late answers.
		return 0
	}
	return TypeICMPProbe // undefined or deprecated
}

const flags6 = packet.FIN | packet.SYN | packet.RST | packet.PSH | packet.ACK | packet.URG

func classifyTCP(p *packet.Packet) ScanTypes {
	// ECE and CWR are left out: an ECN-capable SYN sets both.
	f := p.TCPFlags & flags6
	switch {
	case f == packet.SYN:
		return synType(p)
	case f == 0:
		return TypeNULL
	case f == packet.FIN:
		return TypeFIN
	case f == packet.FIN|packet.PSH|packet.URG:
		return TypeXMAS
	case f == flags6:
		return TypeInvalid
	case f&(packet.SYN|packet.FIN) == packet.SYN|packet.FIN:
		return TypeSYNFIN
	case f&(packet.SYN|packet.RST) == packet.SYN|packet.RST:
		return TypeInvalid
	// Scanners craft bare ACK and FIN+ACK headers. A real stack's
	// segments on a connection the firewall forgot (after a reboot, a
	// conntrack timeout) carry data or timestamps (Linux, macOS, the
	// BSDs): those are not probes. Windows sends no timestamps; the
	// breadth rule keeps one such client at level 1.
	case f == packet.ACK && p.PayloadLen == 0 && p.TCPOptLen == 0:
		return TypeACK
	case f == packet.FIN|packet.ACK && p.PayloadLen == 0 && p.TCPOptLen == 0:
		return TypeMaimon
	case f == packet.RST || f&packet.ACK != 0:
		// A reset, a SYN+ACK, data: a connection the firewall does not
		// know, or backscatter from someone spoofing this host.
		return 0
	}
	return TypeInvalid // PSH, URG, FIN+PSH... without ACK
}

// synType tells nmap -sS from -sT by the SYN's options: a raw scanner
// writes its own (nmap: MSS 1460 alone; masscan: none), connect() gets
// the operating system's (Linux: MSS, SACK permitted, timestamps, window
// scale; Windows: MSS, window scale, SACK permitted).
func synType(p *packet.Packet) ScanTypes {
	o := p.TCPOpts
	switch {
	case p.TCPOptLen == 0:
		return TypeSYN | TypeNoOpts
	case o&(packet.OptSACKPerm|packet.OptTimestamp|packet.OptWScale) != 0:
		return TypeConnect
	case o&packet.OptCut != 0 && p.TCPOptLen >= 8:
		// Options not all seen (a kernel log line without OPT): an
		// operating system's take 8 bytes or more, nmap's 4.
		return TypeConnect
	}
	return TypeSYN
}

// hasPorts reports whether p's protocol has ports.
func hasPorts(p *packet.Packet) bool {
	switch p.Proto {
	case packet.ProtoTCP, packet.ProtoUDP, packet.ProtoUDPLite, packet.ProtoSCTP, packet.ProtoDCCP:
		return !p.Fragment
	}
	return false
}

// MarshalText writes t as String does, so that a record can keep the set
// and spell it only when it is written out.
func (t ScanTypes) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText reads what MarshalText wrote; a name it does not know (a
// type a later version dropped) is skipped.
func (t *ScanTypes) UnmarshalText(b []byte) error {
	*t = 0
	for name := range strings.SplitSeq(string(b), ",") {
		for i, n := range typeNames {
			if n == name {
				*t |= 1 << i
			}
		}
	}
	return nil
}

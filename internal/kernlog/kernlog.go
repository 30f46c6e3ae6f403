// Package kernlog parses the kernel's iptables/nftables LOG lines ("IN= OUT= SRC= DST= ... PROTO= SPT= DPT= ..."), for moat explain --kernel-log.
//
// iptables' LOG target and nftables' log statement (without a group) both
// print through the kernel's nf_log_syslog, in one format:
//
//	Drop Syn IN=eth0 OUT= MAC=... SRC=198.51.100.7 DST=203.0.113.1 LEN=44 TOS=0x00 PREC=0x00 TTL=48 ID=31557 PROTO=TCP SPT=58038 DPT=9001 WINDOW=1024 RES=0x00 SYN URGP=0 OPT (020405B4)
//
// Parse reads such a line, as syslog, journalctl or dmesg show it, into a
// packet.Packet, so the scan guard can be replayed over an old log (psad
// reads the same lines); Time reads the line's timestamp, so the replay
// keeps the time between packets.
//
// Only feed it the kernel's own messages: `journalctl -k`, `dmesg`,
// /var/log/kern.log. A line is text, and any program can write one that
// looks like the kernel's into syslog or the journal (`logger` does), with
// the source address it likes. Parse refuses lines that are not in the
// kernel's shape, but it cannot tell who wrote them.
package kernlog

import (
	"bytes"
	"encoding/binary"

	"github.com/moat-fw/moat/internal/packet"
)

// Keys the kernel prints once each per packet; seen twice, the line is not
// the kernel's.
const (
	kSRC uint32 = 1 << iota
	kDST
	kLEN
	kTOS
	kPREC
	kTTL
	kID
	kTC
	kHOPLIMIT
	kFLOWLBL
	kFRAG
	kPROTO
	kIPOPT
	// After PROTO=.
	kSPT
	kDPT
	kWINDOW
	kSEQ
	kACK
	kTYPE
	kCODE
	kL4LEN
	kTCPOPT
	kURGP
	kRES
	kICMPID
)

// Parse fills p from one kernel LOG line and returns the log prefix (the
// text between the syslog or dmesg header and "IN=", spaces trimmed; it
// points into line). It refuses (ok false) a line that does not have the
// kernel's shape: "IN=<interface> OUT=", SRC and DST of one family, LEN,
// TTL or HOPLIMIT, PROTO, and for TCP, UDP and ICMP the header fields
// (unless the packet is a fragment), each key at most once. A line the
// kernel marked INCOMPLETE (headers cut short) is refused too, as Decode
// refuses a truncated packet: its flags would mean nothing. Parse never
// allocates and never panics.
//
// Without --log-tcp-options (iptables) or flags tcp options (nftables) the
// line holds no TCP options. Unless the lengths leave no room for any,
// p.TCPOpts then has packet.OptCut: the options were not seen. For a SYN, which carries no data, p.TCPOptLen is what the
// lengths leave for them (so 0 still means a SYN without options, and 20 an
// operating system's); for other segments it is 0 and p.PayloadLen counts
// the options too. IPv6 extension headers other than a fragment header are
// not printed either; lengths assume none.
//
// p is overwritten in full; on a refused line it is left zero.
func Parse(line []byte, p *packet.Packet) (prefix []byte, ok bool) {
	*p = packet.Packet{}
	prefix, ok = parse(line, p)
	if !ok {
		*p = packet.Packet{}
		return nil, false
	}
	return prefix, true
}

func parse(line []byte, p *packet.Packet) (prefix []byte, ok bool) {
	in := findIN(line)
	if in < 0 {
		return nil, false
	}
	prefix = trimHeader(line[:in])

	var (
		seen    uint32
		l4      bool // past PROTO=
		ipLen   int  // LEN, the whole IP packet
		ipOpt   int  // IPv4 option bytes (OPT before PROTO)
		udpLen  int
		incompl bool // INCOMPLETE after PROTO: the L4 header is cut
		fragOff bool // v6: the last key was FRAG, so INCOMPLETE means more fragments
		pendOpt bool // the last word was OPT: its bytes follow in parentheses
		tcpOpts [40]byte
		nOpts   = -1
	)
	rest := line[in:]
	for len(rest) > 0 {
		// Tokens are short: a plain loop beats IndexByte's setup.
		i := 0
		for i < len(rest) && rest[i] != ' ' {
			i++
		}
		tok := rest[:i]
		rest = rest[min(i+1, len(rest)):]
		if len(tok) == 0 {
			continue
		}
		if tok[0] == '[' {
			// An ICMP error's quoted packet, or "INCOMPLETE [n bytes]":
			// never the packet itself.
			break
		}
		wasOpt, wasFrag := pendOpt, fragOff
		pendOpt, fragOff = false, false
		eq := 0
		for eq < len(tok) && tok[eq] != '=' {
			eq++
		}
		isKV := eq < len(tok)
		key, val := tok[:eq], tok[min(eq+1, len(tok)):]
		if !isKV {
			switch {
			case string(tok) == "OPT":
				pendOpt = true
			case wasOpt && tok[0] == '(' && tok[len(tok)-1] == ')' && len(tok) >= 2:
				// "OPT (020405B4)": IP options before PROTO, TCP after.
				n, good := unhex(tcpOpts[:], tok[1:len(tok)-1])
				if !good {
					return nil, false
				}
				if !l4 {
					if !once(&seen, kIPOPT) {
						return nil, false
					}
					ipOpt = n
				} else if p.Proto == packet.ProtoTCP {
					if !once(&seen, kTCPOPT) {
						return nil, false
					}
					nOpts = n
				}
			case !l4 && string(tok) == "DF":
				p.DF = true
			case !l4 && string(tok) == "MF":
				p.MoreFragments = true
			case !l4 && string(tok) == "INCOMPLETE" && wasFrag:
				p.MoreFragments = true // IPv6: "FRAG:0 INCOMPLETE ID:..."
			case !l4 && bytes.HasPrefix(tok, []byte("FRAG:")):
				off, good := num(tok[5:], 0xffff)
				if !good || !once(&seen, kFRAG) {
					return nil, false
				}
				p.Fragment = off != 0
				fragOff = true
			case l4 && string(tok) == "INCOMPLETE":
				incompl = true
			case l4 && p.Proto == packet.ProtoTCP:
				f, isFlag := flagWord(tok)
				if isFlag {
					if p.TCPFlags&f != 0 {
						return nil, false
					}
					p.TCPFlags |= f
				}
			}
			continue
		}
		if !l4 {
			if !ipField(p, key, val, &seen, &ipLen, &l4) {
				return nil, false
			}
			continue
		}
		if !l4Field(p, key, val, &seen, &udpLen) {
			return nil, false
		}
	}

	// The shape every kernel line has.
	if seen&(kSRC|kDST|kLEN|kPROTO) != kSRC|kDST|kLEN|kPROTO || incompl {
		return nil, false
	}
	switch p.Family {
	case 4:
		if seen&kTTL == 0 || seen&(kHOPLIMIT|kFLOWLBL|kTC) != 0 {
			return nil, false
		}
		p.Length = uint16(ipLen)
	case 6:
		if seen&kHOPLIMIT == 0 || seen&(kTTL|kTOS|kPREC|kIPOPT) != 0 || ipLen < 40 {
			return nil, false
		}
		p.Length = uint16(ipLen - 40) // the kernel adds the fixed header; Decode does not
	}
	l4Len := ipLen - 20 - ipOpt
	if p.Family == 6 {
		l4Len = ipLen - 40
	}
	if p.Fragment {
		return prefix, true
	}
	switch p.Proto {
	case packet.ProtoTCP:
		if seen&(kSPT|kDPT|kWINDOW) != kSPT|kDPT|kWINDOW {
			return nil, false
		}
		rest := max(l4Len-20, 0)
		if nOpts >= 0 {
			p.TCPOptLen = uint8(nOpts)
			parseTCPOptions(tcpOpts[:nOpts], p)
			p.PayloadLen = uint16(max(rest-nOpts, 0))
		} else if rest > 0 {
			// Options not logged, or data: which, the line cannot say.
			p.TCPOpts = packet.OptCut
			if p.TCPFlags&(packet.SYN|packet.ACK) == packet.SYN {
				p.TCPOptLen = uint8(min(rest, 40))
			}
			p.PayloadLen = uint16(rest - int(p.TCPOptLen))
		}
	case packet.ProtoUDP, packet.ProtoUDPLite:
		if seen&(kSPT|kDPT) != kSPT|kDPT {
			return nil, false
		}
		if udpLen >= 8 {
			p.PayloadLen = uint16(udpLen - 8)
		}
	case packet.ProtoICMP, packet.ProtoICMPv6:
		if seen&(kTYPE|kCODE) != kTYPE|kCODE {
			return nil, false
		}
		p.PayloadLen = uint16(max(l4Len-8, 0))
	}
	return prefix, true
}

func echoType(p *packet.Packet) bool {
	if p.Proto == packet.ProtoICMPv6 {
		return p.ICMPType == 128 || p.ICMPType == 129
	}
	return p.ICMPType == 8 || p.ICMPType == 0
}

func once(seen *uint32, k uint32) bool {
	if *seen&k != 0 {
		return false
	}
	*seen |= k
	return true
}

// ipField reads one KEY=VALUE before PROTO= (and PROTO= itself).
func ipField(p *packet.Packet, key, val []byte, seen *uint32, ipLen *int, l4 *bool) bool {
	var k uint32
	switch string(key) {
	case "SRC", "DST":
		a, fam, good := parseAddr(val)
		if !good || p.Family != 0 && p.Family != fam {
			return false
		}
		p.Family = fam
		k = kSRC
		if key[0] == 'S' {
			p.Src = a
		} else {
			p.Dst, k = a, kDST
		}
	case "LEN":
		n, good := num(val, 0xffff)
		if !good {
			return false
		}
		*ipLen, k = int(n), kLEN
	case "TOS", "PREC":
		n, good := hexByte(val)
		if !good {
			return false
		}
		p.TOS |= n // the kernel splits the byte: TOS bits, precedence bits
		k = kTOS
		if key[0] == 'P' {
			k = kPREC
		}
	case "TTL", "HOPLIMIT":
		n, good := num(val, 255)
		if !good {
			return false
		}
		p.TTL = uint8(n)
		k = kTTL
		if key[0] == 'H' {
			k = kHOPLIMIT
		}
	case "TC":
		n, good := num(val, 255)
		if !good {
			return false
		}
		p.TOS, k = uint8(n), kTC
	case "ID":
		n, good := num(val, 0xffff)
		if !good {
			return false
		}
		p.IPID, k = uint16(n), kID
	case "FLOWLBL":
		if _, good := num(val, 0xfffff); !good {
			return false
		}
		k = kFLOWLBL
	case "PROTO":
		proto, good := protoNumber(val)
		if !good {
			return false
		}
		p.Proto, k = proto, kPROTO
		*l4 = true
	default:
		return true // IN, OUT, MAC, PHYSIN... and keys of newer kernels
	}
	return once(seen, k)
}

// l4Field reads one KEY=VALUE after PROTO=.
func l4Field(p *packet.Packet, key, val []byte, seen *uint32, udpLen *int) bool {
	var k uint32
	var n uint64
	var good bool
	switch string(key) {
	case "SPT", "DPT", "WINDOW", "TYPE", "CODE", "LEN", "ID", "SEQ", "ACK", "URGP":
		limit := uint64(0xffff)
		switch string(key) {
		case "TYPE", "CODE":
			limit = 255
		case "SEQ", "ACK":
			limit = 0xffffffff
		}
		if n, good = num(val, limit); !good {
			return false
		}
	case "RES":
		if _, good = hexByte(val); !good {
			return false
		}
		return once(seen, kRES)
	default:
		return true // MTU, GATEWAY, SPI, UID, GID, MARK...
	}
	tcp := p.Proto == packet.ProtoTCP
	udp := p.Proto == packet.ProtoUDP || p.Proto == packet.ProtoUDPLite
	icmp := p.Proto == packet.ProtoICMP || p.Proto == packet.ProtoICMPv6
	switch {
	case string(key) == "SPT" && (tcp || udp):
		p.SrcPort, k = uint16(n), kSPT
	case string(key) == "DPT" && (tcp || udp):
		p.DstPort, k = uint16(n), kDPT
	case string(key) == "WINDOW" && tcp:
		p.TCPWindow, k = uint16(n), kWINDOW
	case string(key) == "URGP" && tcp:
		k = kURGP
	case string(key) == "SEQ" && tcp:
		p.TCPSeq, k = uint32(n), kSEQ
	case string(key) == "ACK" && tcp:
		p.TCPAck, k = uint32(n), kACK
	case string(key) == "LEN" && udp:
		*udpLen, k = int(n), kL4LEN
	case string(key) == "TYPE" && icmp:
		p.ICMPType, k = uint8(n), kTYPE
	case string(key) == "CODE" && icmp:
		p.ICMPCode, k = uint8(n), kCODE
	case (string(key) == "ID" || string(key) == "SEQ") && icmp:
		// Printed for echo requests and replies only, after TYPE.
		if *seen&kTYPE == 0 || !echoType(p) {
			return false
		}
		if key[0] == 'I' {
			p.ICMPID, k = uint16(n), kICMPID
		} else {
			p.ICMPSeq, k = uint16(n), kSEQ
		}
	default:
		return false // a key of another protocol: not the kernel's
	}
	return once(seen, k)
}

// findIN finds where the kernel's part starts: "IN=" followed by an
// interface name (or nothing) and " OUT=". The prefix comes right before,
// with no space if the administrator wrote none ("moat:closedIN=eth0").
func findIN(line []byte) int {
	for off := 0; ; {
		i := bytes.Index(line[off:], []byte("IN="))
		if i < 0 {
			return -1
		}
		i += off
		rest := line[i+3:]
		j := bytes.IndexByte(rest, ' ')
		if j >= 0 && j <= 15 && bytes.HasPrefix(rest[j:], []byte(" OUT=")) && ifname(rest[:j]) {
			return i
		}
		off = i + 3
	}
}

func ifname(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || c == '/' || c == '=' {
			return false
		}
	}
	return true
}

// trimHeader strips what precedes the prefix: a syslog or journal header
// ("Mar  1 12:00:00 host kernel: "), then a kernel timestamp ("[ 123.456] ",
// "[Sun Mar  1 12:00:00 2026] " from dmesg -T).
func trimHeader(b []byte) []byte {
	if i := bytes.Index(b, []byte("kernel: ")); i >= 0 {
		b = b[i+len("kernel: "):]
	}
	b = bytes.TrimLeft(b, " ")
	if len(b) > 0 && b[0] == '[' {
		if j := bytes.IndexByte(b, ']'); j >= 0 {
			b = b[j+1:]
		}
	}
	return bytes.TrimSpace(b)
}

func protoNumber(v []byte) (uint8, bool) {
	switch string(v) {
	case "TCP":
		return packet.ProtoTCP, true
	case "UDP":
		return packet.ProtoUDP, true
	case "UDPLITE":
		return packet.ProtoUDPLite, true
	case "ICMP":
		return packet.ProtoICMP, true
	case "ICMPv6":
		return packet.ProtoICMPv6, true
	case "AH":
		return packet.ProtoAH, true
	case "ESP":
		return packet.ProtoESP, true
	}
	n, ok := num(v, 255)
	return uint8(n), ok
}

func flagWord(w []byte) (packet.Flags, bool) {
	switch string(w) {
	case "FIN":
		return packet.FIN, true
	case "SYN":
		return packet.SYN, true
	case "RST":
		return packet.RST, true
	case "PSH":
		return packet.PSH, true
	case "ACK":
		return packet.ACK, true
	case "URG":
		return packet.URG, true
	case "ECE":
		return packet.ECE, true
	case "CWR":
		return packet.CWR, true
	}
	return 0, false
}

// num parses a decimal number up to limit, as the kernel prints it (no
// sign, no leading zeros but for 0 itself).
func num(b []byte, limit uint64) (uint64, bool) {
	if len(b) == 0 || len(b) > 10 || len(b) > 1 && b[0] == '0' {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, n <= limit
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// hexByte parses "0x1F" (TOS, PREC, RES).
func hexByte(b []byte) (uint8, bool) {
	if len(b) != 4 || b[0] != '0' || b[1] != 'x' && b[1] != 'X' {
		return 0, false
	}
	h, ok1 := hexDigit(b[2])
	l, ok2 := hexDigit(b[3])
	return h<<4 | l, ok1 && ok2
}

// unhex decodes hex digits into dst, refusing more than fits.
func unhex(dst, src []byte) (int, bool) {
	if len(src)%2 != 0 || len(src)/2 > len(dst) {
		return 0, false
	}
	for i := 0; i < len(src); i += 2 {
		h, ok1 := hexDigit(src[i])
		l, ok2 := hexDigit(src[i+1])
		if !ok1 || !ok2 {
			return 0, false
		}
		dst[i/2] = h<<4 | l
	}
	return len(src) / 2, true
}

// parseTCPOptions records the options as packet.Decode does.
func parseTCPOptions(o []byte, p *packet.Packet) {
	var n uint
	for i := 0; i < len(o); {
		switch o[i] {
		case 0:
			p.TCPOpts |= packet.OptEOL
			p.NoteOption(&n, 0)
			return
		case 1:
			p.TCPOpts |= packet.OptNOP
			p.NoteOption(&n, 1)
			i++
			continue
		}
		if i+1 >= len(o) || o[i+1] < 2 || i+int(o[i+1]) > len(o) {
			p.TCPOpts |= packet.OptMalformed
			return
		}
		kind, v := o[i], o[i+2:i+int(o[i+1])]
		p.NoteOption(&n, kind)
		switch {
		case kind == 2 && len(v) == 2:
			p.TCPOpts |= packet.OptMSS
			p.MSS = binary.BigEndian.Uint16(v)
		case kind == 3 && len(v) == 1:
			p.TCPOpts |= packet.OptWScale
			p.WScale = v[0]
		case kind == 4:
			p.TCPOpts |= packet.OptSACKPerm
		case kind == 5:
			p.TCPOpts |= packet.OptSACK
		case kind == 8 && len(v) == 8:
			p.TCPOpts |= packet.OptTimestamp
			p.TSVal = binary.BigEndian.Uint32(v)
		case kind == 2 || kind == 3 || kind == 8:
			p.TCPOpts |= packet.OptMalformed
			return
		default:
			p.TCPOpts |= packet.OptOther
		}
		i += int(o[i+1])
	}
}

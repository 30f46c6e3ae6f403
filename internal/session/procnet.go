package session

import (
	"bytes"
	"net/netip"
)

// tcpEstablished is TCP_ESTABLISHED in the kernel's state numbering, the
// "st" column of /proc/net/tcp.
const tcpEstablished = 0x01

// TCPEntry is one socket of /proc/net/tcp or /proc/net/tcp6 (and of
// /proc/net/udp{,6}, which have the same columns).
type TCPEntry struct {
	Local, Remote netip.AddrPort // IPv4-mapped IPv6 addresses unmapped
	State         uint8          // the kernel's TCP state number (1: established, 2: SYN sent, 10: listen)
	Inode         uint64         // the socket's inode: /proc/PID/fd links read socket:[Inode]
}

// Established reports whether the socket is an established connection.
func (e TCPEntry) Established() bool { return e.State == tcpEstablished }

// ParseTCP calls fn for every socket listed in a /proc/net/tcp{,6} table.
// It is the one parser of these tables in moat.
// Malformed lines are skipped: the kernel's format is fixed, so they are
// the header or a future extension. It does not allocate.
func ParseTCP(data []byte, fn func(TCPEntry)) {
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if e, ok := parseTCPLine(line); ok {
			fn(e)
		}
	}
}

// parseTCPLine parses one line of /proc/net/tcp{,6}:
//
//	sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
//	0: 01D2D20A:0016 02D2D20A:C350 01 00000000:00000000 02:00000000 00000000 0 0 4242 ...
//
// The header line fails to parse and is skipped by the caller.
func parseTCPLine(line []byte) (TCPEntry, bool) {
	var e TCPEntry
	var field [10][]byte
	n := 0
	for n < len(field) {
		line = bytes.TrimLeft(line, " \t")
		if len(line) == 0 {
			break
		}
		i := bytes.IndexAny(line, " \t")
		if i < 0 {
			i = len(line)
		}
		field[n], line = line[:i], line[i:]
		n++
	}
	if n < len(field) {
		return e, false
	}
	var ok bool
	if e.Local, ok = parseHexAddrPort(field[1]); !ok {
		return e, false
	}
	if e.Remote, ok = parseHexAddrPort(field[2]); !ok {
		return e, false
	}
	st, ok := parseHex(field[3], 2)
	if !ok {
		return e, false
	}
	e.State = uint8(st)
	if e.Inode, ok = parseDec(field[9]); !ok {
		return e, false
	}
	e.Local = netip.AddrPortFrom(e.Local.Addr().Unmap(), e.Local.Port())
	e.Remote = netip.AddrPortFrom(e.Remote.Addr().Unmap(), e.Remote.Port())
	if e.Local.Addr().Is4() != e.Remote.Addr().Is4() {
		// Both ends of one socket have one family (a dual-stack socket's
		// IPv4 peers are mapped at both ends); anything else is noise.
		return e, false
	}
	return e, true
}

// parseHexAddrPort parses "0100007F:0016" (IPv4) or 32 hex digits and a
// port (IPv6): the address as 32-bit words in host order (little-endian on
// every architecture moat ships for), the port as big-endian hex.
func parseHexAddrPort(b []byte) (netip.AddrPort, bool) {
	i := bytes.IndexByte(b, ':')
	if i != 8 && i != 32 {
		return netip.AddrPort{}, false
	}
	port, ok := parseHex(b[i+1:], 4)
	if !ok {
		return netip.AddrPort{}, false
	}
	var raw [16]byte
	for w := 0; w < i/8; w++ {
		v, ok := parseHex(b[w*8:w*8+8], 8)
		if !ok {
			return netip.AddrPort{}, false
		}
		// The word's host-order (little-endian) bytes are the address's
		// bytes in network order.
		raw[w*4], raw[w*4+1], raw[w*4+2], raw[w*4+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
	}
	var a netip.Addr
	if i == 8 {
		a = netip.AddrFrom4([4]byte(raw[:4]))
	} else {
		a = netip.AddrFrom16(raw)
	}
	return netip.AddrPortFrom(a, uint16(port)), true
}

// parseHex parses 1 to max hex digits.
func parseHex(b []byte, max int) (uint64, bool) {
	if len(b) == 0 || len(b) > max {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		v = v<<4 | uint64(c)
	}
	return v, true
}

// parseDec parses a decimal uint64 of at most 19 digits (no overflow).
func parseDec(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	return v, true
}

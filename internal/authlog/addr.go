package authlog

import (
	"bytes"
	"net/netip"
)

// parseAddr parses an address as sshd prints it: dotted-quad IPv4 (no
// leading zeros) or IPv6, optionally with a %zone, which is dropped. An
// IPv4-mapped IPv6 address is unmapped. It does not allocate, unlike
// netip.ParseAddr with a zone or on error.
func parseAddr(b []byte) (netip.Addr, bool) {
	zone := bytes.IndexByte(b, '%')
	colon := bytes.IndexByte(b, ':') >= 0
	if zone >= 0 {
		if !colon || zone == len(b)-1 || !validZone(b[zone+1:]) {
			return netip.Addr{}, false
		}
		b = b[:zone]
	}
	if colon {
		ip, ok := parseIPv6(b)
		if !ok {
			return netip.Addr{}, false
		}
		return netip.AddrFrom16(ip).Unmap(), true
	}
	ip, ok := parseIPv4(b)
	if !ok {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(ip), true
}

// validZone accepts interface names and numbers.
func validZone(z []byte) bool {
	if len(z) > 64 {
		return false
	}
	for _, c := range z {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-' || c == '@') {
			return false
		}
	}
	return true
}

func parseIPv4(b []byte) (ip [4]byte, ok bool) {
	i := 0
	for n := range 4 {
		if n > 0 {
			if i >= len(b) || b[i] != '.' {
				return ip, false
			}
			i++
		}
		start, v := i, 0
		for i < len(b) && i-start < 3 && b[i] >= '0' && b[i] <= '9' {
			v = v*10 + int(b[i]-'0')
			i++
		}
		if d := i - start; d == 0 || v > 255 || d > 1 && b[start] == '0' {
			return ip, false
		}
		ip[n] = byte(v)
	}
	return ip, i == len(b)
}

func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// parseIPv6 follows netip's parser: up to eight groups of up to four hex
// digits, one "::", and an optional trailing dotted quad.
func parseIPv6(s []byte) (ip [16]byte, ok bool) {
	ellipsis := -1 // index in ip where "::" stands
	if len(s) >= 2 && s[0] == ':' && s[1] == ':' {
		ellipsis = 0
		s = s[2:]
		if len(s) == 0 {
			return ip, true
		}
	}
	i := 0
	for i < 16 {
		off, acc := 0, 0
		for ; off < len(s); off++ {
			v := hexVal(s[off])
			if v < 0 {
				break
			}
			if off == 4 {
				return ip, false
			}
			acc = acc<<4 | v
		}
		if off == 0 {
			return ip, false
		}
		if off < len(s) && s[off] == '.' {
			// A dotted quad ends the address, in the last 32 bits.
			if ellipsis < 0 && i != 12 || i+4 > 16 {
				return ip, false
			}
			v4, ok := parseIPv4(s)
			if !ok {
				return ip, false
			}
			copy(ip[i:], v4[:])
			i += 4
			s = s[len(s):]
			break
		}
		ip[i] = byte(acc >> 8)
		ip[i+1] = byte(acc)
		i += 2
		s = s[off:]
		if len(s) == 0 {
			break
		}
		if s[0] != ':' || len(s) == 1 {
			return ip, false
		}
		s = s[1:]
		if s[0] == ':' {
			if ellipsis >= 0 {
				return ip, false
			}
			ellipsis = i
			s = s[1:]
			if len(s) == 0 {
				break
			}
		}
	}
	if len(s) != 0 {
		return ip, false
	}
	if i < 16 {
		if ellipsis < 0 {
			return ip, false
		}
		n := 16 - i
		copy(ip[ellipsis+n:], ip[ellipsis:i])
		clear(ip[ellipsis : ellipsis+n])
	} else if ellipsis >= 0 {
		// "::" must stand for at least one group of zeros.
		return ip, false
	}
	return ip, true
}

// parsePort parses a decimal port as sshd prints it (%d: no sign, no
// leading zeros).
func parsePort(b []byte) (uint16, bool) {
	if len(b) == 0 || len(b) > 5 || len(b) > 1 && b[0] == '0' {
		return 0, false
	}
	v := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	if v > 65535 {
		return 0, false
	}
	return uint16(v), true
}

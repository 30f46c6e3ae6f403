package kernlog

import (
	"bytes"
	"net/netip"
)

// parseAddr parses an address as the kernel prints it: IPv4 dotted quad
// (%pI4), IPv6 as eight groups of four hex digits (%pI6), or compressed
// with "::" as other printers write it. It does not allocate.
func parseAddr(b []byte) (netip.Addr, uint8, bool) {
	if bytes.IndexByte(b, ':') < 0 {
		ip, ok := parseIPv4(b)
		return netip.AddrFrom4(ip), 4, ok
	}
	ip, ok := parseIPv6(b)
	return netip.AddrFrom16(ip), 6, ok
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
		if i == start || v > 255 || i-start > 1 && b[start] == '0' {
			return ip, false
		}
		ip[n] = byte(v)
	}
	return ip, i == len(b)
}

func parseIPv6(b []byte) (ip [16]byte, ok bool) {
	var groups [8]uint16
	n, gap := 0, -1 // groups read; where "::" stood
	i := 0
	if len(b) >= 2 && b[0] == ':' && b[1] == ':' {
		gap, i = 0, 2
	}
	for i < len(b) {
		if n == 8 {
			return ip, false
		}
		start, v := i, 0
		for i < len(b) && i-start < 4 {
			d, isHex := hexDigit(b[i])
			if !isHex {
				break
			}
			v = v<<4 | int(d)
			i++
		}
		if i == start {
			return ip, false
		}
		groups[n] = uint16(v)
		n++
		if i == len(b) {
			break
		}
		if b[i] != ':' {
			return ip, false
		}
		i++
		if i < len(b) && b[i] == ':' {
			if gap >= 0 {
				return ip, false
			}
			gap = n
			i++
			if i == len(b) {
				break
			}
		} else if i == len(b) {
			return ip, false // a trailing single colon
		}
	}
	switch {
	case gap < 0 && n != 8, gap >= 0 && n > 7:
		return ip, false
	}
	// Spread the groups around the gap.
	var full [8]uint16
	if gap < 0 {
		full = groups
	} else {
		copy(full[:gap], groups[:gap])
		copy(full[8-(n-gap):], groups[gap:n])
	}
	for k, g := range full {
		ip[2*k], ip[2*k+1] = byte(g>>8), byte(g)
	}
	return ip, true
}

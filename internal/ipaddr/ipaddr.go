// Package ipaddr parses IP addresses from byte slices without allocating,
// for the log parsers' per-line paths: netip.ParseAddr needs a string, and
// converting a line's bytes to one allocates.
package ipaddr

// Parse4 parses a dotted quad as netip does: four decimal octets, no
// leading zeros.
func Parse4(b []byte) (ip [4]byte, ok bool) {
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

// Parse6 follows netip's parser: up to eight groups of up to four hex
// digits, one "::", and an optional trailing dotted quad.
func Parse6(s []byte) (ip [16]byte, ok bool) {
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
			v4, ok := Parse4(s)
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

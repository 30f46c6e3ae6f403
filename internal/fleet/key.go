package fleet

import (
	"bytes"
	"errors"
	"net/netip"
	"strconv"
	"strings"
)

// A key names the banned prefix. NATS keys hold only letters, digits and
// "-_=." ("." separates subject tokens), so an IPv6 address cannot be
// written as is. The form stays readable in `nats kv ls`:
//
//	4_192-0-2-7_32          192.0.2.7/32
//	6_2001-db8--1_128       2001:db8::1/128
//	6_0000-...-ffff-0102-0304_128   (an IPv4-mapped address, written expanded)
//
// The family comes first so that one prefix has one key and a watcher can
// filter a family ("4_*" is not a NATS wildcard, but the form keeps the
// door open). The separators '-' and '_' never occur in netip's text.

// Key returns the bucket key of p (masked).
func Key(p netip.Prefix) string {
	var b [maxKey]byte
	return string(appendKey(b[:0], p))
}

// maxKey bounds a key's length: "6_" and an expanded IPv6 address (39)
// and "_128" are 45.
const maxKey = 64

// appendKey appends the key of p (masked) to b.
func appendKey(b []byte, p netip.Prefix) []byte {
	p = p.Masked()
	a := p.Addr()
	sep := byte('.')
	if a.Is4() {
		b = append(b, "4_"...)
	} else {
		b = append(b, "6_"...)
		sep = ':'
	}
	n := len(b)
	b = a.AppendTo(b)
	if a.Is6() && bytes.IndexByte(b[n:], '.') >= 0 { // ::ffff:1.2.3.4: dots would be subject tokens
		b = append(b[:n], a.StringExpanded()...)
	}
	for i := n; i < len(b); i++ {
		if b[i] == sep {
			b[i] = '-'
		}
	}
	b = append(b, '_')
	return strconv.AppendInt(b, int64(p.Bits()), 10)
}

var errKey = errors.New("not a moat ban key")

// ParseKey decodes a key written by Key. Only the one form Key writes for
// a prefix is accepted, so that a prefix never hides under two keys. An
// IPv4 key (most of a fleet's) is read without allocating.
func ParseKey(k string) (netip.Prefix, error) {
	if len(k) > maxKey || len(k) < 2 || k[1] != '_' {
		return netip.Prefix{}, errKey
	}
	addr, bits, ok := strings.Cut(k[2:], "_")
	if !ok {
		return netip.Prefix{}, errKey
	}
	var a netip.Addr
	switch k[0] {
	case '4':
		a, ok = parseDashed4(addr)
	case '6':
		var err error
		a, err = netip.ParseAddr(strings.ReplaceAll(addr, "-", ":"))
		ok = err == nil && a.Is6() && a.Zone() == ""
	default:
		ok = false
	}
	if !ok {
		return netip.Prefix{}, errKey
	}
	n, err := strconv.Atoi(bits)
	if err != nil || n < 0 || n > a.BitLen() {
		return netip.Prefix{}, errKey
	}
	p := netip.PrefixFrom(a, n)
	var buf [maxKey]byte
	if p != p.Masked() || string(appendKey(buf[:0], p)) != k {
		return netip.Prefix{}, errKey
	}
	return p, nil
}

// parseDashed4 reads "192-0-2-7". Leading zeros and other forms that Key
// does not write are refused afterwards, by comparing with Key's.
func parseDashed4(s string) (netip.Addr, bool) {
	var b [4]byte
	for i := range 4 {
		j := 0
		v := 0
		for j < len(s) && j < 4 && s[j] >= '0' && s[j] <= '9' {
			v = v*10 + int(s[j]-'0')
			j++
		}
		if j == 0 || j > 3 || v > 255 {
			return netip.Addr{}, false
		}
		b[i] = byte(v)
		s = s[j:]
		if i < 3 {
			if len(s) == 0 || s[0] != '-' {
				return netip.Addr{}, false
			}
			s = s[1:]
		}
	}
	return netip.AddrFrom4(b), len(s) == 0
}

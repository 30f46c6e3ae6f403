package fleet

import (
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
	p = p.Masked()
	a := p.Addr()
	var b strings.Builder
	b.Grow(64)
	if a.Is4() {
		b.WriteString("4_")
		b.WriteString(strings.ReplaceAll(a.String(), ".", "-"))
	} else {
		b.WriteString("6_")
		s := a.String()
		if strings.Contains(s, ".") { // ::ffff:1.2.3.4: dots would be subject tokens
			s = a.StringExpanded()
		}
		b.WriteString(strings.ReplaceAll(s, ":", "-"))
	}
	b.WriteByte('_')
	b.WriteString(strconv.Itoa(p.Bits()))
	return b.String()
}

var errKey = errors.New("not a moat ban key")

// ParseKey decodes a key written by Key. Only the one form Key writes for
// a prefix is accepted, so that a prefix never hides under two keys.
func ParseKey(k string) (netip.Prefix, error) {
	if len(k) > 64 {
		return netip.Prefix{}, errKey
	}
	fam, rest, ok := strings.Cut(k, "_")
	if !ok {
		return netip.Prefix{}, errKey
	}
	addr, bits, ok := strings.Cut(rest, "_")
	if !ok {
		return netip.Prefix{}, errKey
	}
	switch fam {
	case "4":
		addr = strings.ReplaceAll(addr, "-", ".")
	case "6":
		addr = strings.ReplaceAll(addr, "-", ":")
	default:
		return netip.Prefix{}, errKey
	}
	a, err := netip.ParseAddr(addr)
	if err != nil || a.Zone() != "" || a.Is4() != (fam == "4") {
		return netip.Prefix{}, errKey
	}
	n, err := strconv.Atoi(bits)
	if err != nil || n < 0 || n > a.BitLen() {
		return netip.Prefix{}, errKey
	}
	p := netip.PrefixFrom(a, n)
	if p != p.Masked() || Key(p) != k {
		return netip.Prefix{}, errKey
	}
	return p, nil
}

package blocklist

import (
	"cmp"
	"net/netip"
	"slices"
)

// Range is the addresses from From to To, both included, of one family.
// An nftables interval set holds ranges, so a list's ranges, merged, are
// the fewest elements the kernel can hold it in: never more than its
// prefixes.
type Range struct {
	From, To netip.Addr
}

// FromPrefix is the range of p.
func FromPrefix(p netip.Prefix) Range {
	p = p.Masked()
	return Range{p.Addr(), lastAddr(p)}
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().As16()
	off := 0
	if p.Addr().Is4() {
		off = 12
	}
	for i := p.Bits(); i < p.Addr().BitLen(); i++ {
		b[off+i/8] |= 0x80 >> (i % 8)
	}
	a := netip.AddrFrom16(b)
	if p.Addr().Is4() {
		a = a.Unmap()
	}
	return a
}

// Contains reports whether a is in r.
func (r Range) Contains(a netip.Addr) bool {
	return a.Is4() == r.From.Is4() && r.From.Compare(a) <= 0 && a.Compare(r.To) <= 0
}

// IsValid reports whether r is a range: both ends valid, of one family,
// in order.
func (r Range) IsValid() bool {
	return r.From.IsValid() && r.To.IsValid() && r.From.Is4() == r.To.Is4() && r.From.Compare(r.To) <= 0
}

func (r Range) String() string {
	if r.From == r.To {
		return r.From.String()
	}
	if ps := r.Prefixes(); len(ps) == 1 {
		return ps[0].String()
	}
	return r.From.String() + "-" + r.To.String()
}

// Prefixes are the fewest CIDR prefixes that cover exactly r.
func (r Range) Prefixes() []netip.Prefix {
	var out []netip.Prefix
	from := r.From
	for {
		bits := from.BitLen()
		// Widen while the prefix starts at from and ends at or before To.
		for bits > 0 {
			p := netip.PrefixFrom(from, bits-1).Masked()
			if p.Addr() != from || lastAddr(p).Compare(r.To) > 0 {
				break
			}
			bits--
		}
		p := netip.PrefixFrom(from, bits)
		out = append(out, p)
		end := lastAddr(p)
		if end.Compare(r.To) >= 0 {
			return out
		}
		from = end.Next()
	}
}

func compareRanges(a, b Range) int {
	if a.From.Is4() != b.From.Is4() {
		if a.From.Is4() {
			return -1
		}
		return 1
	}
	return cmp.Or(a.From.Compare(b.From), a.To.Compare(b.To))
}

// Aggregate sorts rs (IPv4 first) and merges overlapping and adjacent
// ranges: the fewest ranges covering the same addresses. It reuses rs.
func Aggregate(rs []Range) []Range {
	rs = slices.DeleteFunc(rs, func(r Range) bool { return !r.IsValid() })
	slices.SortFunc(rs, compareRanges)
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 {
			last := &out[n-1]
			next := last.To.Next()
			if last.From.Is4() == r.From.Is4() && (!next.IsValid() || r.From.Compare(next) <= 0) {
				if r.To.Compare(last.To) > 0 {
					last.To = r.To
				}
				continue
			}
		}
		out = append(out, r)
	}
	if cap(out) > len(out)+len(out)/4 {
		// Merging shrank the list (or the caller's slice had room to
		// spare): keep no more memory than the ranges need.
		return slices.Clone(out)
	}
	return slices.Clip(out)
}

// Subtract returns rs without the addresses in holes; both must be
// aggregated (sorted, disjoint). A range with a hole inside is split
// around it: a list naming 192.0.2.0/24 when the gateway is 192.0.2.1
// still blocks the other 255 addresses. When no hole touches rs, rs
// itself is returned: a million-range list is not copied for nothing.
func Subtract(rs, holes []Range) []Range {
	var out []Range
	copied := false
	h := 0
	for k, r := range rs {
		// Holes wholly before r can be skipped for good: later ranges
		// start later.
		for h < len(holes) && compareEnd(holes[h], r) < 0 {
			h++
		}
		cur := r
		alive := true
		if !copied && touched(r, holes, h) {
			out = append(make([]Range, 0, len(rs)+8), rs[:k]...)
			copied = true
		}
		if !copied {
			continue
		}
		for i := h; i < len(holes) && alive; i++ {
			hole := holes[i]
			if hole.From.Is4() != cur.From.Is4() {
				if hole.From.Is4() {
					continue
				}
				break
			}
			if hole.From.Compare(cur.To) > 0 {
				break
			}
			if hole.To.Compare(cur.From) < 0 {
				continue
			}
			if hole.From.Compare(cur.From) > 0 {
				out = append(out, Range{cur.From, hole.From.Prev()})
			}
			if hole.To.Compare(cur.To) >= 0 {
				alive = false
				break
			}
			cur.From = hole.To.Next()
		}
		if alive {
			out = append(out, cur)
		}
	}
	if !copied {
		return rs
	}
	return out
}

// touched reports whether a hole from holes[h:] overlaps r.
func touched(r Range, holes []Range, h int) bool {
	for i := h; i < len(holes); i++ {
		hole := holes[i]
		if hole.From.Is4() != r.From.Is4() {
			if hole.From.Is4() {
				continue
			}
			return false
		}
		if hole.From.Compare(r.To) > 0 {
			return false
		}
		if hole.To.Compare(r.From) >= 0 {
			return true
		}
	}
	return false
}

// compareEnd orders hole against r: negative when hole ends before r
// starts (and is of the same family, or of IPv4 when r is IPv6).
func compareEnd(hole, r Range) int {
	if hole.From.Is4() != r.From.Is4() {
		if hole.From.Is4() {
			return -1
		}
		return 1
	}
	if hole.To.Compare(r.From) < 0 {
		return -1
	}
	return 1
}

// Diff says what turns old into new, both aggregated: the ranges to
// delete (in old, not in new) and to add (in new, not in old). A range
// that only grew or shrank is deleted and added whole: an interval set's
// element is its two ends.
func Diff(old, new []Range) (del, add []Range) {
	i, j := 0, 0
	for i < len(old) || j < len(new) {
		switch {
		case j == len(new):
			del = append(del, old[i])
			i++
		case i == len(old):
			add = append(add, new[j])
			j++
		default:
			switch c := compareRanges(old[i], new[j]); {
			case c == 0:
				i++
				j++
			case c < 0:
				del = append(del, old[i])
				i++
			default:
				add = append(add, new[j])
				j++
			}
		}
	}
	return del, add
}

// Split returns the IPv4 and IPv6 parts of aggregated rs (IPv4 first).
func Split(rs []Range) (v4, v6 []Range) {
	i, _ := slices.BinarySearchFunc(rs, true, func(r Range, _ bool) int {
		if r.From.Is4() {
			return -1
		}
		return 1
	})
	return rs[:i], rs[i:]
}

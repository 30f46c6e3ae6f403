package blocklist

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"
)

// million writes n entries, half IPv4 and half IPv6 hosts, none adjacent.
func million(n int) []byte {
	var b bytes.Buffer
	b.WriteString("# generated\n")
	for i := range n {
		if i%2 == 0 {
			v := uint32(100<<24|64<<16) + uint32(i)
			fmt.Fprintln(&b, netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}))
		} else {
			a := [16]byte{0xfd, 0x00, 0x02, 0x10, 0xff}
			a[12], a[13], a[14], a[15] = byte(i>>23), byte(i>>15), byte(i>>7), byte(i<<1)
			fmt.Fprintln(&b, netip.AddrFrom16(a))
		}
	}
	return b.Bytes()
}

// BenchmarkParseAggregate is a refresh's work in user space for a
// 1,000,000-entry list: parse, merge, cut the protected holes out, and
// diff with the previous version (1% changed).
func BenchmarkParseAggregate(b *testing.B) {
	const n = 1_000_000
	old := million(n)
	res, err := Parse(bytes.NewReader(old), Plain)
	if err != nil {
		b.Fatal(err)
	}
	prev := Aggregate(res.Ranges)
	next := million(n + n/100)[len("# generated\n"):]
	next = next[bytes.IndexByte(next, '\n')+1:]
	holes := Aggregate([]Range{FromPrefix(netip.MustParsePrefix("100.64.0.0/30")), FromPrefix(netip.MustParsePrefix("fd00:210:ff00::/120"))})
	b.ResetTimer()
	for range b.N {
		res, err := ParseBytes(next, Plain)
		if err != nil {
			b.Fatal(err)
		}
		want := Subtract(Aggregate(res.Ranges), holes)
		Diff(prev, want)
	}
}

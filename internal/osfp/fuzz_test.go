package osfp

import (
	"testing"

	"github.com/moat-fw/moat/internal/packet"
)

// FuzzParse feeds the table parser: it must not panic, and what it
// accepts must match without panicking.
func FuzzParse(f *testing.F) {
	f.Add(signaturesTxt)
	f.Add("x | os | 64 | df | mss*10,1 | none | none | - | 54321")
	f.Add("x | scanner | * | * | * | * | * | * | *")
	f.Fuzz(func(t *testing.T, text string) {
		tb, err := Parse(text)
		if err != nil {
			return
		}
		tb.Match(SYN{Bits: BitSeen, TTL: 64, Window: 1024, MSS: 1460, Layout: 3})
	})
}

// FuzzSYN decodes any bytes as a packet and takes and matches its
// fingerprint: a spoofed flood is attacker-controlled.
func FuzzSYN(f *testing.F) {
	f.Add([]byte{0x45, 0, 0, 44, 0, 1, 0, 0, 64, 6, 0, 0, 10, 210, 0, 2, 10, 210, 0, 1, 0x9c, 0x40, 0, 22, 0, 0, 0, 0, 0, 0, 0, 0, 0x60, 2, 4, 0, 0, 0, 0, 0, 2, 4, 5, 0xb4})
	f.Fuzz(func(t *testing.T, b []byte) {
		var p packet.Packet
		if packet.Decode(0, b, &p) != nil {
			return
		}
		s, ok := FromPacket(&p)
		if !ok {
			return
		}
		g, ok := Match(s)
		if ok && (g.Name == "" || g.Hops < 0 || g.Hops > 254) {
			t.Fatalf("guess %+v for %v", g, &p)
		}
		_ = s.Summary()
		_ = LayoutString(s.Layout)
	})
}

func FuzzParseLayout(f *testing.F) {
	f.Add("mss,sok,ts,nop,ws")
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLayout(s)
		if err != nil || l == layoutAny {
			return
		}
		l2, err := ParseLayout(LayoutString(l))
		if err != nil || l2 != l {
			t.Fatalf("%q -> %#x -> %q -> %#x %v", s, l, LayoutString(l), l2, err)
		}
	})
}

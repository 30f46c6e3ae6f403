package ipaddr

import (
	"net/netip"
	"testing"
)

// FuzzParse checks both parsers against netip.ParseAddr.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"10.210.0.1", "010.1.1.1", "fd00:210::1", "::ffff:1.2.3.4", "1::2::3", "::", "1:2:3:4:5:6:7:8", "1.2.3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := netip.ParseAddr(s)
		if err == nil && want.Zone() != "" {
			return // zones are the callers' business
		}
		var got netip.Addr
		ok := false
		if ip, ok4 := Parse4([]byte(s)); ok4 {
			got, ok = netip.AddrFrom4(ip), true
		} else if ip, ok6 := Parse6([]byte(s)); ok6 {
			got, ok = netip.AddrFrom16(ip), true
		}
		if ok != (err == nil) || ok && got.Unmap() != want.Unmap() {
			t.Fatalf("%q: got %v %v, netip says %v %v", s, got, ok, want, err)
		}
	})
}

func TestNoAllocs(t *testing.T) {
	b4, b6 := []byte("10.210.3.4"), []byte("fd00:210:ab::9")
	if n := testing.AllocsPerRun(100, func() { Parse4(b4); Parse6(b6) }); n != 0 {
		t.Fatalf("%v allocs", n)
	}
}

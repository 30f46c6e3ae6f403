package login

import (
	"net/netip"
	"strings"
	"testing"
)

func TestNameAddr(t *testing.T) {
	a := netip.MustParseAddr
	protected := a("10.210.0.1")
	spared := func(x netip.Addr) (string, bool) {
		if x == protected {
			return "protected: a router", true
		}
		return "", false
	}
	for _, c := range []struct {
		name  string
		addrs []netip.Addr
		want  netip.Addr
		why   string // a part of the reason when want is invalid
	}{
		{"one address", []netip.Addr{a("10.210.0.9")}, a("10.210.0.9"), ""},
		{"one IPv6 address", []netip.Addr{a("fd00:210::9")}, a("fd00:210::9"), ""},
		{"mapped and plain: one address", []netip.Addr{a("::ffff:10.210.0.9"), a("10.210.0.9")}, a("10.210.0.9"), ""},
		{"none", nil, netip.Addr{}, "no address"},
		{"several", []netip.Addr{a("10.210.0.9"), a("10.210.0.10")}, netip.Addr{}, "2 addresses"},
		{"dual stack", []netip.Addr{a("10.210.0.9"), a("fd00:210::9")}, netip.Addr{}, "2 addresses"},
		{"the protected one", []netip.Addr{protected}, netip.Addr{}, "never banned (protected: a router)"},
		{"a protected one among others", []netip.Addr{a("10.210.0.9"), protected}, netip.Addr{}, "never banned"},
		{"protected, mapped", []netip.Addr{netip.AddrFrom16(protected.As16())}, netip.Addr{}, "never banned"},
		{"loopback", []netip.Addr{a("127.0.0.1")}, netip.Addr{}, "no usable address"},
		{"unspecified", []netip.Addr{a("::")}, netip.Addr{}, "no usable address"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, why := NameAddr(c.addrs, spared)
			if got != c.want {
				t.Fatalf("NameAddr(%v) = %v (%s), want %v", c.addrs, got, why, c.want)
			}
			if c.want.IsValid() != (why == "") || !strings.Contains(why, c.why) {
				t.Fatalf("NameAddr(%v): why %q, want one with %q", c.addrs, why, c.why)
			}
		})
	}
}

package firewall

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/moat-fw/moat/internal/config"
)

func TestParseSSHConnection(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7 51234 192.0.2.1 22":                 "192.0.2.7 192.0.2.1:22",
		"::ffff:192.0.2.7 51234 ::ffff:192.0.2.1 2222": "192.0.2.7 192.0.2.1:2222",
		"2001:db8::7 51234 2001:db8::1 22":             "2001:db8::7 [2001:db8::1]:22",
		"fe80::7%eth0 51234 fe80::1%eth0 22":           "fe80::7 [fe80::1]:22",
		"":                                             "",
		"192.0.2.7 51234 192.0.2.1":                    "",
		"192.0.2.7 51234 192.0.2.1 0":                  "",
		"192.0.2.7 51234 192.0.2.1 70000":              "",
		"x 1 y 2":                                      "",
	} {
		s, ok := ParseSSHConnection(in)
		got := ""
		if ok {
			got = s.Client.String() + " " + s.Server.String()
		}
		if got != want {
			t.Errorf("ParseSSHConnection(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParseSSHConnection(f *testing.F) {
	f.Add("192.0.2.7 51234 192.0.2.1 22")
	f.Add("::ffff:192.0.2.7 1 ::1 65535")
	f.Fuzz(func(t *testing.T, in string) {
		s, ok := ParseSSHConnection(in)
		if ok && (!s.Client.IsValid() || s.Server.Port() == 0 || s.Client.Is4In6() || s.Client.Zone() != "") {
			t.Fatalf("accepted %q as %+v", in, s)
		}
	})
}

func TestCutsOff(t *testing.T) {
	sess := func(client string, port uint16) Session {
		return Session{Client: netip.MustParseAddr(client), Server: netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), port)}
	}
	open := func(specs ...config.PortSpec) config.Firewall { return config.Firewall{Open: specs} }
	ssh := config.PortSpec{Proto: config.TCP, SSH: true}
	for _, c := range []struct {
		name  string
		fw    config.Firewall
		extra []netip.Prefix
		s     Session
		cut   bool
	}{
		{"ssh alias covers the session port", open(ssh), nil, sess("198.51.100.7", 2222), false},
		{"port not open", open(ssh), nil, sess("198.51.100.7", 443), true},
		{"range covers it", open(config.PortSpec{Proto: config.TCP, From: 400, To: 500}), nil, sess("198.51.100.7", 443), false},
		{"udp does not count", open(config.PortSpec{Proto: config.UDP, From: 443, To: 443}), nil, sess("198.51.100.7", 443), true},
		{"client allowed by config", config.Firewall{Allow: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}}, nil, sess("198.51.100.7", 443), false},
		{"client allowed at run time", config.Firewall{}, []netip.Prefix{netip.MustParsePrefix("198.51.100.7/32")}, sess("198.51.100.7", 443), false},
		{"nothing open at all", config.Firewall{}, nil, sess("198.51.100.7", 22), true},
		{"no session", config.Firewall{}, nil, Session{}, false},
	} {
		why := CutsOff(c.fw, []uint16{22, 2222}, c.extra, c.s)
		if (why != "") != c.cut {
			t.Errorf("%s: CutsOff = %q, want cut=%v", c.name, why, c.cut)
		}
		if why != "" && !strings.Contains(why, "--force") {
			t.Errorf("%s: the refusal should say how to override: %q", c.name, why)
		}
	}
}

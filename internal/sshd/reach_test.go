package sshd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"strings"
	"testing"

	"github.com/moat-fw/moat/internal/config"
)

func TestCheckReachable(t *testing.T) {
	tcp := func(from, to uint16) config.PortSpec { return config.PortSpec{Proto: config.TCP, From: from, To: to} }
	ssh := config.PortSpec{Proto: config.TCP, SSH: true}
	listen := func(ports []uint16, err error) func(context.Context) ([]uint16, error) {
		return func(context.Context) ([]uint16, error) { return ports, err }
	}
	door := func(name string, open ...config.PortSpec) config.Door { return config.Door{Name: name, Open: open} }
	allow := []netip.Prefix{netip.MustParsePrefix("10.210.1.0/24")}
	tests := []struct {
		name   string
		fw     config.Firewall
		doors  []config.Door
		listen func(context.Context) ([]uint16, error)
		want   []string // parts of each warning, in order; nil: no warning
		notes  []string // parts of each note, in order; nil: no note
	}{
		{"alias follows sshd", config.Firewall{Open: []config.PortSpec{ssh}}, nil, listen([]uint16{2222}, nil), nil, nil},
		{"port open", config.Firewall{Open: []config.PortSpec{tcp(22, 22)}}, nil, listen([]uint16{22}, nil), nil, nil},
		{"range covers it", config.Firewall{Open: []config.PortSpec{tcp(2000, 3000)}}, nil, listen([]uint16{2222}, nil), nil, nil},
		{"open wins over a door", config.Firewall{Open: []config.PortSpec{tcp(22, 22)}}, []config.Door{door("ssh", tcp(22, 22))}, listen([]uint16{22}, nil), nil, nil},
		{"moved port", config.Firewall{Open: []config.PortSpec{tcp(22, 22), tcp(443, 443)}}, nil, listen([]uint16{22, 2222}, nil),
			[]string{`sshd listens on tcp/2222, but [firewall] open has neither "ssh" nor "tcp/2222" and no [[door]] opens it: with this config no new SSH session can reach this host; add "ssh" to open, or put the port behind a door`}, nil},
		{"behind nothing", config.Firewall{}, nil, listen([]uint16{22}, nil), []string{"tcp/22\" and no [[door]] opens it: with this config no new SSH session can reach this host"}, nil},
		{"udp is not tcp", config.Firewall{Open: []config.PortSpec{{Proto: config.UDP, From: 22, To: 22}}}, nil, listen([]uint16{22}, nil), []string{"tcp/22"}, nil},
		{"allow list", config.Firewall{Allow: allow}, nil, listen([]uint16{22}, nil),
			[]string{"only sources in [firewall] allow (10.210.1.0/24) can open an SSH session"}, nil},
		{"behind a door", config.Firewall{}, []config.Door{door("web", tcp(443, 443)), door("ssh", tcp(22, 22))}, listen([]uint16{22}, nil),
			nil, []string{`sshd's tcp/22 is behind door "ssh": knock first (moat knock HOST --door ssh)`}},
		{"door range", config.Firewall{}, []config.Door{door("admin", tcp(2000, 3000))}, listen([]uint16{2222}, nil),
			nil, []string{`sshd's tcp/2222 is behind door "admin": knock first (moat knock HOST --door admin)`}},
		{"behind two doors", config.Firewall{}, []config.Door{door("a", tcp(22, 22)), door("b", tcp(22, 22))}, listen([]uint16{22}, nil),
			nil, []string{`sshd's tcp/22 is behind doors "a", "b": knock on one first (moat knock HOST --door a)`}},
		{"door with allow list", config.Firewall{Allow: allow}, []config.Door{door("ssh", tcp(22, 22))}, listen([]uint16{22}, nil),
			nil, []string{`sshd's tcp/22 is behind door "ssh": knock first (moat knock HOST --door ssh); sources in [firewall] allow (10.210.1.0/24) need no knock`}},
		{"udp door is not tcp", config.Firewall{}, []config.Door{door("dns", config.PortSpec{Proto: config.UDP, From: 22, To: 22})}, listen([]uint16{22}, nil),
			[]string{"no new SSH session"}, nil},
		{"one port open, one behind a door, one behind nothing", config.Firewall{Open: []config.PortSpec{tcp(22, 22)}}, []config.Door{door("ssh", tcp(2222, 2222))},
			listen([]uint16{22, 2222, 2223}, nil), []string{"tcp/2223"}, []string{"tcp/2222"}},
		{"no sshd", config.Firewall{}, nil, listen(nil, fmt.Errorf("sshd not found: %w", fs.ErrNotExist)), nil, nil},
		{"sshd -T fails", config.Firewall{Open: []config.PortSpec{tcp(80, 80)}}, nil, listen(nil, errors.New("sshd -T: exit status 255")),
			[]string{"cannot read sshd's ports (sshd -T: exit status 255): checking tcp/22", "tcp/22"}, nil},
		{"sshd -T fails, door opens 22", config.Firewall{}, []config.Door{door("ssh", tcp(22, 22))}, listen(nil, errors.New("sshd -T: exit status 255")),
			[]string{"checking tcp/22"}, []string{`tcp/22 is behind door "ssh"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			called := false
			warnings, notes := CheckReachable(context.Background(), tt.fw, tt.doors, func(ctx context.Context) ([]uint16, error) {
				called = true
				return tt.listen(ctx)
			})
			check(t, "warning", warnings, tt.want)
			check(t, "note", notes, tt.notes)
			if called && tt.name == "alias follows sshd" {
				t.Error("the ssh alias needs no sshd -T")
			}
		})
	}
}

// check matches got against want: one entry per message, in order, each
// a part of its message.
func check(t *testing.T, kind string, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%ss %q, want %d", kind, got, len(want))
	}
	for i, w := range want {
		if !strings.Contains(got[i], w) {
			t.Errorf("%s %q, want it to contain %q", kind, got[i], w)
		}
	}
}

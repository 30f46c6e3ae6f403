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
	tests := []struct {
		name   string
		fw     config.Firewall
		listen func(context.Context) ([]uint16, error)
		want   []string // parts of each warning, in order; nil: no warning
	}{
		{"alias follows sshd", config.Firewall{Open: []config.PortSpec{ssh}}, listen([]uint16{2222}, nil), nil},
		{"port open", config.Firewall{Open: []config.PortSpec{tcp(22, 22)}}, listen([]uint16{22}, nil), nil},
		{"range covers it", config.Firewall{Open: []config.PortSpec{tcp(2000, 3000)}}, listen([]uint16{2222}, nil), nil},
		{"moved port", config.Firewall{Open: []config.PortSpec{tcp(22, 22), tcp(443, 443)}}, listen([]uint16{22, 2222}, nil),
			[]string{`sshd listens on tcp/2222, but [firewall] open has neither "ssh" nor "tcp/2222": with this config no new SSH session can reach this host; add "ssh" to open`}},
		{"udp is not tcp", config.Firewall{Open: []config.PortSpec{{Proto: config.UDP, From: 22, To: 22}}}, listen([]uint16{22}, nil), []string{"tcp/22"}},
		{"allow list", config.Firewall{Allow: []netip.Prefix{netip.MustParsePrefix("10.210.1.0/24")}}, listen([]uint16{22}, nil),
			[]string{"only sources in [firewall] allow (10.210.1.0/24) can open an SSH session"}},
		{"no sshd", config.Firewall{}, listen(nil, fmt.Errorf("sshd not found: %w", fs.ErrNotExist)), nil},
		{"sshd -T fails", config.Firewall{Open: []config.PortSpec{tcp(80, 80)}}, listen(nil, errors.New("sshd -T: exit status 255")),
			[]string{"cannot read sshd's ports (sshd -T: exit status 255): checking tcp/22", "tcp/22"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			called := false
			got := CheckReachable(context.Background(), tt.fw, func(ctx context.Context) ([]uint16, error) {
				called = true
				return tt.listen(ctx)
			})
			if len(got) != len(tt.want) {
				t.Fatalf("warnings %q, want %d", got, len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("warning %q, want %q", got[i], w)
				}
			}
			if called && tt.name == "alias follows sshd" {
				t.Error("the ssh alias needs no sshd -T")
			}
		})
	}
}

package daemon

import (
	"slices"
	"testing"

	"github.com/moat-fw/moat/internal/store"
)

func TestParseBanPorts(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want []store.Port
	}{
		{[]string{"tcp/80,tcp/443"}, []store.Port{{Proto: 6, Port: 80}, {Proto: 6, Port: 443}}},
		{[]string{"ssh", "udp/5060-5061", "tcp/80", "tcp/80"}, []store.Port{{Proto: 6, Port: 22}, {Proto: 6, Port: 2222}, {Proto: 17, Port: 5060}, {Proto: 17, Port: 5061}, {Proto: 6, Port: 80}}},
		{nil, nil},
	} {
		got, err := parseBanPorts(c.in, []uint16{22, 2222})
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("parseBanPorts(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"80", "tcp/0", "http", "tcp/1-1000"} {
		if got, err := parseBanPorts([]string{bad}, nil); err == nil {
			t.Errorf("parseBanPorts(%q) = %v, want an error", bad, got)
		}
	}
}

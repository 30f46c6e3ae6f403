package demo

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/events"
)

// The lab's moat.toml is a valid config whose page stays on the lab
// server's loopback and whose addresses are the lab's.
func TestLabConfigIsValid(t *testing.T) {
	d := &demo{lab: &lab{dir: "/tmp/moat-demo-test"}}
	cfg, err := config.Parse([]byte(d.config()), "lab.toml")
	if err != nil {
		t.Fatalf("the lab's config: %v\n%s", err, d.config())
	}
	if cfg.Page.Listen != "127.0.0.1:9734" || cfg.Page.AllowRemote {
		t.Fatalf("page %+v: want loopback only", cfg.Page)
	}
	if cfg.Daemon.OnExit != "remove" || !strings.HasPrefix(cfg.Daemon.StateDir, "/tmp/moat-demo-test/") {
		t.Fatalf("daemon %+v: want its state in the lab's directory, and its table removed at exit", cfg.Daemon)
	}
	if len(cfg.Doors) != 1 || cfg.Doors[0].Open[0].From != doorSSH {
		t.Fatalf("doors %+v", cfg.Doors)
	}
	for _, a := range []netip.Addr{gateway, server, client, scanner, guesser, sweeper} {
		if !netip.MustParsePrefix("10.210.0.0/16").Contains(a) {
			t.Fatalf("%s is outside the test range", a)
		}
	}
}

func TestDescribe(t *testing.T) {
	p := netip.MustParsePrefix("10.210.99.4/32")
	until := time.Date(2026, 1, 1, 10, 20, 30, 0, time.UTC)
	for _, c := range []struct {
		e    events.Event
		want string
	}{
		{events.Event{Kind: events.Ban, Prefix: p, Origin: "scan", Reason: "port scan", Until: until}, "banned 10.210.99.4 until 10:20:30 (scan: port scan)"},
		{events.Event{Kind: events.Unban, Prefix: netip.MustParsePrefix("10.210.99.0/24")}, "lifted the ban on 10.210.99.0/24"},
		{events.Event{Kind: events.Scan, Prefix: p, Level: 3, Types: "syn", Probes: 15, NPorts: 15}, "scan from 10.210.99.4 reached danger level 3 (syn; 15 probes, 15 ports)"},
		{events.Event{Kind: events.Door, Prefix: p, Door: "ssh", Action: "opened", Ports: []string{"tcp/22"}}, "door ssh opened for 10.210.99.4: tcp/22"},
	} {
		if got := describe(c.e); got != c.want {
			t.Errorf("describe(%+v) = %q, want %q", c.e, got, c.want)
		}
	}
}

package daemon

import (
	"bufio"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/authlog"
	"github.com/moat-fw/moat/internal/ban"
	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/login"
)

// The daemon's login path (guard, policy adapter, decide.go, a real ban
// manager) and a login.DryRun, explain's policy, ban the same addresses
// from the same lines. The e2e test TestExplainAgreesWithTheDaemon does the
// same through the binary, as root.
func TestLoginPathAgreesWithDryRun(t *testing.T) {
	var lines []string
	logs, _ := filepath.Glob("../authlog/testdata/*")
	for _, p := range logs {
		if strings.HasSuffix(p, ".golden") {
			continue // what the parser makes of a log, not a log
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if l := sc.Text(); l != "" && !strings.HasPrefix(l, "#") {
				lines = append(lines, l)
			}
		}
		f.Close()
	}
	if len(lines) == 0 {
		t.Fatal("no test logs")
	}
	for _, l := range []string{"Failed password for root from 2001:db8:1::1 port 1 ssh2", "Failed password for root from 2001:db8:1::2 port 1 ssh2"} {
		lines = append(lines, l, l, l)
	}
	for _, mode := range []string{"normal", "aggressive"} {
		t.Run(mode, func(t *testing.T) {
			g := trustGuardWith(t, &fakeHandshakes{down: true}, nil, func(c *config.Login) {
				c.Mode = mode
				c.IPv6PrefixAfter = 2
				c.Ignore = []netip.Prefix{netip.MustParsePrefix("203.0.113.16/32")}
			})
			g.accepted, g.protected = nil, nil // sessions are the daemon's alone
			backoff := ban.Backoff{Base: g.cfg.BanTime, Multiplier: g.cfg.BanTimeMultiplier, Max: g.cfg.MaxBanTime}
			dry := login.NewDryRun(nil, backoff.For)
			det := login.New(g.cfg, dry)
			for i, l := range lines {
				now := t0.Add(time.Duration(i) * time.Millisecond)
				var ev authlog.Event
				if !authlog.ParseSSHD([]byte(l), &ev) && !authlog.ParseSSHDMessage([]byte(l), &ev) {
					continue
				}
				// The protected set's link-local entries stand apart: the
				// fake daemon here has no protected set.
				if ev.Addr.IsLinkLocalUnicast() {
					continue
				}
				g.sshd(&ev, now)
				dry.Apply(det.Observe(login.SSHD, &ev, now), now)
			}
			var daemonBans, dryBans []string
			for _, e := range g.bans.(*ban.Manager).List(t0.Add(time.Minute)) {
				daemonBans = append(daemonBans, e.Prefix.String())
			}
			for _, p := range dry.Prefixes() {
				dryBans = append(dryBans, p.String())
			}
			slices.Sort(daemonBans)
			slices.Sort(dryBans)
			if len(daemonBans) < 2 || !slices.Equal(daemonBans, dryBans) {
				t.Fatalf("the daemon banned %v, the dry run %v", daemonBans, dryBans)
			}
			t.Logf("both banned %v", daemonBans)
		})
	}
}

package daemon

import (
	"bufio"
	"fmt"
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
	for i, a := range []string{"2001:db8:1::1", "2001:db8:1::2"} {
		for k := range 3 {
			lines = append(lines, fmt.Sprintf("Mar  1 12:00:00 h sshd[%d]: Failed password for root from %s port %d ssh2", 800+i, a, 1+k))
		}
	}
	lines = append(lines, multiLine...)
	// Every Accepted line stands for a connection a logged-in sshd holds,
	// so the file path's trust check lets it through, as the dry run does.
	conns := map[connKey]bool{}
	for _, l := range lines {
		var ev authlog.Event
		if authlog.ParseSSHD([]byte(l), &ev) && ev.Kind == authlog.Accepted {
			conns[connKey{ev.Addr, ev.Port}] = true
		}
	}
	for _, mode := range []string{"normal", "aggressive"} {
		t.Run(mode, func(t *testing.T) {
			g := trustGuardWith(t, &fakeHandshakes{down: true}, conns, func(c *config.Login) {
				c.Mode = mode
				c.IPv6PrefixAfter = 2
				c.Ignore = []netip.Prefix{netip.MustParsePrefix("203.0.113.16/32")}
			})
			g.accepted, g.protected = nil, nil // sessions are the daemon's alone
			backoff := ban.Backoff{Base: g.cfg.BanTime, Multiplier: g.cfg.BanTimeMultiplier, Max: g.cfg.MaxBanTime}
			dry := login.NewDryRun(nil, backoff.For)
			det := login.New(g.cfg, dry)
			// The daemon's file source: its own joiner, through fileLine
			// as followLogin calls it. The dry run: explain's joiner.
			jd, jx := newJoiner(), authlog.NewJoiner(authlog.JoinerConfig{Names: true})
			var devs, xevs []authlog.Event
			for i, l := range lines {
				now := t0.Add(time.Duration(i) * time.Millisecond)
				devs = g.fileLine(jd, devs, []byte(l), now)
				xevs = jx.LineOrMessage([]byte(l), now, xevs[:0])
				for k := range xevs {
					if xevs[k].Addr.IsValid() {
						dry.Apply(det.Observe(login.SSHD, &xevs[k], now), now)
					}
				}
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
			// The multi-line cases: banned only if the joiner is wired.
			want := []string{"10.210.9.1/32", "10.210.9.2/32", "10.210.9.4/32"}
			if mode == "aggressive" {
				want = append(want, "10.210.9.5/32")
			}
			for _, w := range want {
				if !slices.Contains(daemonBans, w) {
					t.Errorf("the daemon did not ban %s, whose failures are spread over lines of one sshd PID", w)
				}
			}
			if slices.Contains(daemonBans, "10.210.9.3/32") {
				t.Errorf("the daemon banned 10.210.9.3, an earlier client of a reused PID")
			}
			t.Logf("both banned %v", daemonBans)
		})
	}
}

// multiLine are failures sshd spreads over several lines of one PID
// (docs/login-parser.md, "the Joiner"), three of each so that max_retry 3
// bans.
var multiLine = func() []string {
	var out []string
	for i := range 3 {
		pid := 700 + i
		// The address only on a later line (before OpenSSH 7.3).
		out = append(out,
			fmt.Sprintf("Mar  1 12:00:00 h sshd[%d]: Disconnecting: Too many authentication failures for root [preauth]", pid),
			fmt.Sprintf("Mar  1 12:00:00 h sshd[%d]: Connection closed by 10.210.9.1 [preauth]", pid))
		// The address on an earlier line (LogLevel VERBOSE).
		pid += 10
		out = append(out,
			fmt.Sprintf("Mar  1 12:00:00 h sshd[%d]: Connection from 10.210.9.2 port %d on 10.210.0.1 port 22", pid, 40000+i),
			fmt.Sprintf("Mar  1 12:00:00 h sshd[%d]: Disconnecting: Too many authentication failures for admin [preauth]", pid))
		// A PID reused by a new connection: .3 logged in, then .4's
		// failure on the same PID is .4's.
		out = append(out,
			"Mar  1 12:00:00 h sshd[730]: Connection from 10.210.9.3 port 41000 on 10.210.0.1 port 22",
			"Mar  1 12:00:00 h sshd[730]: Accepted password for alice from 10.210.9.3 port 41000 ssh2",
			"Mar  1 12:00:00 h sshd[730]: Disconnecting: Too many authentication failures for root [preauth]",
			"Mar  1 12:00:00 h sshd[730]: Connection closed by 10.210.9.4 [preauth]")
		// OpenSSH 8's kex_exchange_identification (aggressive mode).
		pid += 30
		out = append(out,
			fmt.Sprintf("Mar  1 12:00:00 h sshd[%d]: error: kex_exchange_identification: Connection closed by remote host", pid),
			fmt.Sprintf("Mar  1 12:00:00 h sshd[%d]: Connection closed by 10.210.9.5 port %d", pid, 42000+i))
	}
	return out
}()

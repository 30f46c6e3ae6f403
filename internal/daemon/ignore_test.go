package daemon

import (
	"net/netip"
	"testing"

	"github.com/moat-fw/moat/internal/authlog"
	"github.com/moat-fw/moat/internal/config"
)

// The architecture review found that deleting [login] ignore,
// forget_on_success or [scan] ignore left the whole suite passing. Each has
// a test of its own here.

func TestLoginIgnoreIsNeverCounted(t *testing.T) {
	g := trustGuardWith(t, &fakeHandshakes{down: true}, nil, func(c *config.Login) {
		c.Ignore = []netip.Prefix{netip.MustParsePrefix("10.210.7.0/24")}
	})
	ignored, other := netip.MustParseAddr("10.210.7.7"), netip.MustParseAddr("10.210.8.8")
	for i := range 5 {
		g.sshd(journalFailure(t, ignored, 40000+i), t0)
		g.sshd(journalFailure(t, other, 40000+i), t0)
	}
	if g.bans.Active(ignored, t0) {
		t.Fatal("an address in [login] ignore was banned")
	}
	if !g.bans.Active(other, t0) {
		t.Fatal("the control address was not banned")
	}
}

func TestForgetOnSuccess(t *testing.T) {
	for _, forget := range []bool{true, false} {
		g := trustGuardWith(t, &fakeHandshakes{down: true}, nil, func(c *config.Login) { c.ForgetOnSuccess = forget })
		// The login's connection is over: only the forgetting is tested.
		g.accepted, g.protected = nil, nil
		a := netip.MustParseAddr("10.210.7.9")
		for i := range 2 { // max_retry is 3
			g.sshd(journalFailure(t, a, 40000+i), t0)
		}
		var ok authlog.Event
		if !authlog.ParseSSHDMessage([]byte("Accepted publickey for root from 10.210.7.9 port 40100 ssh2: ED25519 SHA256:x"), &ok) {
			t.Fatal("not an Accepted line")
		}
		g.sshd(&ok, t0)
		g.sshd(journalFailure(t, a, 40002), t0)
		if got := g.bans.Active(a, t0); got == forget {
			t.Fatalf("forget_on_success = %v: banned %v after 2 failures, a login and 1 failure", forget, got)
		}
	}
}

func TestScanIgnoreIsNeverCounted(t *testing.T) {
	cfg := defaultScan(t)
	cfg.Ignore = []netip.Prefix{netip.MustParsePrefix("10.210.7.0/24")}
	g, m := testScanGuard(t, cfg, nil)
	scan(g, netip.MustParseAddr("10.210.7.7"), 60, t0)
	scan(g, netip.MustParseAddr("10.210.8.8"), 60, t0)
	if m.Active(netip.MustParseAddr("10.210.7.7"), t0) {
		t.Fatal("an address in [scan] ignore was banned")
	}
	if !m.Active(netip.MustParseAddr("10.210.8.8"), t0) {
		t.Fatal("the control scanner was not banned")
	}
}

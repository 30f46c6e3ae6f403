package daemon

import (
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/authlog"
	"github.com/moat-fw/moat/internal/ban"
	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/login"
	"github.com/moat-fw/moat/internal/store"
)

// fakeBans is the ban policy reduced to a map, refusing what refuse names.
type fakeBans struct {
	reqs   []ban.Request
	active map[netip.Prefix]bool
	refuse map[netip.Prefix]bool
}

var _ loginBans = (*fakeBans)(nil)

func (f *fakeBans) Add(r ban.Request, now time.Time) (store.Entry, error) {
	f.reqs = append(f.reqs, r)
	if f.refuse[r.Prefix] {
		return store.Entry{}, errors.New("refused")
	}
	f.active[r.Prefix] = true
	return store.Entry{Prefix: r.Prefix, Origin: r.Origin, Expires: now.Add(r.Backoff.For(1)), Count: 1}, nil
}

func (f *fakeBans) IsAllowed(netip.Addr, time.Time) bool { return false }

func (f *fakeBans) Active(a netip.Addr, _ time.Time) bool {
	for p := range f.active {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (f *fakeBans) CountWithin(p netip.Prefix, _ string, _ time.Time) int {
	n := 0
	for q := range f.active {
		if q.Bits() >= p.Bits() && p.Contains(q.Addr()) {
			n++
		}
	}
	return n
}

func fakeLoginGuard(bans *fakeBans) *loginGuard {
	cfg := config.Login{Enabled: true, Mode: "normal", MaxRetry: 2, FindTime: time.Minute, BanTime: time.Hour,
		BanTimeMultiplier: 3, MaxBanTime: 24 * time.Hour, MaxTracked: 100, IPv6PrefixAfter: 1}
	return newLoginGuard(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), bans)
}

// The daemon's login path bans through the policy with the config's
// backoff, counts what it banned, and escalates to the /64 only after the
// address's own ban took.
func TestLoginDecisionsReachThePolicy(t *testing.T) {
	a := netip.MustParseAddr("2001:db8::7")
	bans := &fakeBans{active: map[netip.Prefix]bool{}}
	g := fakeLoginGuard(bans)
	for i := range 2 {
		g.sshd(journalFailure(t, a, 40000+i), t0)
	}
	if len(bans.reqs) != 2 {
		t.Fatalf("requests %+v, want the address then its /64", bans.reqs)
	}
	r := bans.reqs[0]
	if r.Prefix != netip.PrefixFrom(a, 128) || r.Origin != OriginLogin || !r.NoWait ||
		*r.Backoff != (ban.Backoff{Base: time.Hour, Multiplier: 3, Max: 24 * time.Hour}) {
		t.Fatalf("address ban request %+v", r)
	}
	if bans.reqs[1].Prefix != netip.MustParsePrefix("2001:db8::/64") {
		t.Fatalf("escalation %+v", bans.reqs[1])
	}
	if st := g.status(nil); st.Banned != 1 || st.Events != 2 {
		t.Fatalf("status %+v: want 1 ban (the /64 is not counted as one) and 2 events", st)
	}
}

func TestLoginEscalatesOnlyAfterTheAddressBan(t *testing.T) {
	a := netip.MustParseAddr("2001:db8::8")
	bans := &fakeBans{active: map[netip.Prefix]bool{}, refuse: map[netip.Prefix]bool{netip.PrefixFrom(a, 128): true}}
	g := fakeLoginGuard(bans)
	for i := range 2 {
		g.sshd(journalFailure(t, a, 40000+i), t0)
	}
	if len(bans.reqs) != 1 {
		t.Fatalf("requests %+v: the /64 was asked for although the address's ban was refused", bans.reqs)
	}
	if st := g.status(nil); st.Banned != 0 {
		t.Fatalf("a refused ban was counted: %+v", st)
	}
}

// A [[login.rule]] with its own find_time and ban_time (a fail2ban jail's
// findtime and bantime) counts over its own window and bans for its own
// time; rules of one name (one jail's failregexes) count together.
func TestLoginRuleOwnTimes(t *testing.T) {
	bans := &fakeBans{active: map[netip.Prefix]bool{}}
	cfg := config.Login{Enabled: true, Mode: "normal", MaxRetry: 5, FindTime: time.Hour, BanTime: time.Hour,
		BanTimeMultiplier: 2, MaxBanTime: 24 * time.Hour, MaxTracked: 100,
		Rules: []config.LoginRule{
			{Name: "jail", Source: "/var/log/a.log", Pattern: "^a <HOST>$", MaxRetry: 2, FindTime: time.Minute, BanTime: 48 * time.Hour},
			{Name: "jail", Source: "/var/log/b.log", Pattern: "^b <HOST>$", MaxRetry: 2, FindTime: time.Minute, BanTime: 48 * time.Hour},
		}}
	g := newLoginGuard(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), bans)
	slow, fast := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	g.rule("jail", slow, t0)
	g.rule("jail", slow, t0.Add(2*time.Minute)) // outside the rule's minute
	if len(bans.reqs) != 0 {
		t.Fatalf("failures 2 minutes apart banned under a 1-minute find_time: %+v", bans.reqs)
	}
	g.rule("jail", fast, t0)
	g.rule("jail", fast, t0.Add(30*time.Second))
	if len(bans.reqs) != 1 || bans.reqs[0].Prefix != netip.PrefixFrom(fast, 32) {
		t.Fatalf("two failures within the rule's minute: requests %+v, want a ban of %s", bans.reqs, fast)
	}
	if b := *bans.reqs[0].Backoff; b.Base != 48*time.Hour || b.Max < 48*time.Hour {
		t.Fatalf("ban length policy %+v, want the rule's 48h ban_time", b)
	}
	if rules := g.det.Rules(); len(rules) != 2 {
		t.Fatalf("counters %v: want sshd and one for the jail", rules)
	}
}

// The daemon's path for a [[login.rule]] line (login.RuleSet, then
// loginGuard.ruleLine, as followLogin calls them for each line of a rule's
// file) bans from failures whose address another line of the same
// connection id wrote.
func TestLoginRuleTwoLineBan(t *testing.T) {
	bans := &fakeBans{active: map[netip.Prefix]bool{}}
	rule := func(kind, pattern string) config.LoginRule {
		return config.LoginRule{Name: "app", Source: "/var/log/app.log", Kind: kind, MaxRetry: 2, Pattern: pattern}
	}
	cfg := config.Login{Enabled: true, Mode: "normal", MaxRetry: 5, FindTime: time.Hour, BanTime: time.Hour,
		BanTimeMultiplier: 2, MaxBanTime: 24 * time.Hour, MaxTracked: 100,
		Rules: []config.LoginRule{
			rule("note", `^app\[(?P<id>\d+)\]: connect from <HOST>$`),
			rule("", `^app\[(?P<id>\d+)\]: auth failed for \S+$`),
		}}
	rules, err := login.CompileRules(cfg)
	if err != nil {
		t.Fatal(err)
	}
	g := newLoginGuard(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), bans)
	var ms []login.RuleLine
	for _, l := range []string{
		"app[1]: connect from 192.0.2.1",
		"app[2]: auth failed for bob", // no address yet: waits
		"app[1]: auth failed for bob",
		"app[3]: connect from 192.0.2.3",
		"app[1]: auth failed for bob",
	} {
		ms = rules.Match("/var/log/app.log", []byte(l), false, ms[:0])
		for i := range ms {
			g.ruleLine(&ms[i], t0)
		}
	}
	if len(bans.reqs) != 1 || bans.reqs[0].Prefix != netip.MustParsePrefix("192.0.2.1/32") {
		t.Fatalf("requests %+v, want one ban of 192.0.2.1", bans.reqs)
	}
}

// rule takes a one-line failure of rule name for a, as a followed file's
// line that rule matched would.
func (g *loginGuard) rule(name string, a netip.Addr, now time.Time) {
	m := login.RuleLine{Rule: name, Kind: config.RuleFailure, RuleMatch: authlog.RuleMatch{Addr: a}}
	g.ruleLine(&m, now)
}

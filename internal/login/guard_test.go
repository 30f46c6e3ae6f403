package login

import (
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/authlog"
	"github.com/moat-fw/moat/internal/config"
)

var t0 = time.Unix(1_700_000_000, 0)

func testConfig() config.Login {
	return config.Login{Enabled: true, Mode: "normal", MaxRetry: 3, FindTime: 10 * time.Minute, BanTime: time.Hour,
		BanTimeMultiplier: 2, MaxBanTime: 24 * time.Hour, ForgetOnSuccess: true, MaxTracked: 1000}
}

// fakePolicy exempts what it is told and remembers bans forever.
type fakePolicy struct {
	exempt map[netip.Addr]string
	banned map[netip.Prefix]bool
}

func (f *fakePolicy) Exempt(a netip.Addr, _ time.Time) (string, bool) {
	why, ok := f.exempt[a]
	return why, ok
}

func (f *fakePolicy) Banned(a netip.Addr, _ time.Time) bool {
	for p := range f.banned {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (f *fakePolicy) BannedWithin(p netip.Prefix, _ time.Time) int {
	n := 0
	for q := range f.banned {
		if q.Bits() >= p.Bits() && p.Contains(q.Addr()) {
			n++
		}
	}
	return n
}

// step is one line fed to the guard: a journal message for sshd, or an
// address matched by a rule.
type step struct {
	rule string // "" is SSHD
	msg  string // sshd message, or the rule's address
	at   time.Duration
}

func sshdLine(t testing.TB, msg string) authlog.Event {
	t.Helper()
	var ev authlog.Event
	if !authlog.ParseSSHDMessage([]byte(msg), &ev) {
		t.Fatalf("not an sshd message: %s", msg)
	}
	return ev
}

func failed(a string, port int) string {
	return "Failed password for root from " + a + " port " + strconv.Itoa(port) + " ssh2"
}

func closed(a string, port int) string {
	return "Connection closed by authenticating user root " + a + " port " + strconv.Itoa(port) + " [preauth]"
}

// run feeds steps to a guard over a fakePolicy that applies every ban, and
// returns the prefixes banned, in order.
func run(t *testing.T, cfg config.Login, pol *fakePolicy, steps []step) []string {
	t.Helper()
	if pol.banned == nil {
		pol.banned = map[netip.Prefix]bool{}
	}
	g := New(cfg, pol)
	var out []string
	for _, s := range steps {
		var ev authlog.Event
		rule := s.rule
		if rule == "" {
			rule = SSHD
			ev = sshdLine(t, s.msg)
		} else {
			ev = authlog.Event{Addr: netip.MustParseAddr(s.msg), Count: 1}
		}
		for _, d := range g.Observe(rule, &ev, t0.Add(s.at)) {
			if d.Action == Ban {
				pol.banned[d.Prefix] = true
				out = append(out, d.Prefix.String())
			}
		}
	}
	return out
}

func repeat(n int, f func(i int) step) []step {
	var out []step
	for i := range n {
		out = append(out, f(i))
	}
	return out
}

func TestObserve(t *testing.T) {
	const a, b = "203.0.113.5", "203.0.113.6"
	accepted := "Accepted publickey for root from " + a + " port 41000 ssh2: ED25519 SHA256:x"
	aggressive := "Did not receive identification string from " + a + " port 41001"
	rules := []config.LoginRule{{Name: "web", Source: "/var/log/web.log", Pattern: "^x <HOST>$", MaxRetry: 2}}
	tests := []struct {
		name  string
		edit  func(*config.Login)
		pol   fakePolicy
		steps []step
		want  string // banned prefixes, space separated
	}{
		{name: "three failures ban",
			steps: repeat(3, func(i int) step { return step{msg: failed(a, 40000+i)} }), want: a + "/32"},
		{name: "two do not",
			steps: repeat(2, func(i int) step { return step{msg: failed(a, 40000+i)} })},
		{name: "failures outside find_time do not",
			steps: repeat(3, func(i int) step { return step{msg: failed(a, 40000+i), at: time.Duration(i) * 6 * time.Minute} })},
		{name: "failure + its own connection closed is one attempt", edit: func(c *config.Login) { c.MaxRetry = 5 },
			steps: repeat(6, func(i int) step {
				if i%2 == 0 {
					return step{msg: failed(a, 40000+i/2)}
				}
				return step{msg: closed(a, 40000+i/2)}
			})},
		{name: "a closed connection alone counts",
			steps: repeat(3, func(i int) step { return step{msg: closed(a, 40000+i)} }), want: a + "/32"},
		{name: "forget_on_success",
			steps: append(append(repeat(2, func(i int) step { return step{msg: failed(a, 40000+i)} }), step{msg: accepted}), step{msg: failed(a, 40005)})},
		{name: "no forget_on_success", edit: func(c *config.Login) { c.ForgetOnSuccess = false },
			steps: append(append(repeat(2, func(i int) step { return step{msg: failed(a, 40000+i)} }), step{msg: accepted}), step{msg: failed(a, 40005)}),
			want:  a + "/32"},
		{name: "ignore", edit: func(c *config.Login) { c.Ignore = []netip.Prefix{netip.MustParsePrefix(a + "/32")} },
			steps: repeat(6, func(i int) step {
				return step{msg: failed([]string{a, b}[i%2], 40000+i)}
			}), want: b + "/32"},
		{name: "exempt by policy", pol: fakePolicy{exempt: map[netip.Addr]string{netip.MustParseAddr(a): "a session"}},
			steps: repeat(3, func(i int) step { return step{msg: failed(a, 40000+i)} })},
		{name: "aggressive kinds need aggressive mode",
			steps: repeat(3, func(int) step { return step{msg: aggressive} })},
		{name: "aggressive mode", edit: func(c *config.Login) { c.Mode = "aggressive" },
			steps: repeat(3, func(int) step { return step{msg: aggressive} }), want: a + "/32"},
		{name: "already banned", pol: fakePolicy{banned: map[netip.Prefix]bool{netip.MustParsePrefix("203.0.113.0/24"): true}},
			steps: repeat(3, func(i int) step { return step{msg: failed(a, 40000+i)} })},
		{name: "rule with its own max_retry", edit: func(c *config.Login) { c.Rules = rules },
			steps: repeat(2, func(int) step { return step{rule: "web", msg: a} }), want: a + "/32"},
		{name: "rules count apart from sshd", edit: func(c *config.Login) { c.Rules = rules },
			steps: []step{{rule: "web", msg: a}, {msg: failed(a, 40000)}, {msg: failed(a, 40001)}}},
		{name: "unknown rule", steps: repeat(5, func(int) step { return step{rule: "nope", msg: a} })},
		{name: "mapped addresses count as IPv4",
			steps: repeat(3, func(i int) step { return step{msg: failed("::ffff:"+a, 40000+i)} }), want: a + "/32"},
		{name: "/64 escalation", edit: func(c *config.Login) { c.IPv6PrefixAfter = 2 },
			steps: repeat(6, func(i int) step { return step{msg: failed("2001:db8::"+strconv.Itoa(1+i/3), 40000+i)} }),
			want:  "2001:db8::1/128 2001:db8::2/128 2001:db8::/64"},
		{name: "no escalation for IPv4", edit: func(c *config.Login) { c.IPv6PrefixAfter = 1 },
			steps: repeat(3, func(i int) step { return step{msg: failed(a, 40000+i)} }), want: a + "/32"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			if tc.edit != nil {
				tc.edit(&cfg)
			}
			got := strings.Join(run(t, cfg, &tc.pol, tc.steps), " ")
			if got != tc.want {
				t.Fatalf("banned %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSkipSaysWhy(t *testing.T) {
	cfg := testConfig()
	cfg.Ignore = []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}
	g := New(cfg, &fakePolicy{})
	ev := sshdLine(t, failed("203.0.113.5", 40000))
	d := g.Observe(SSHD, &ev, t0)
	if len(d) != 1 || d[0].Action != Skip || d[0].Why != "in [login] ignore" {
		t.Fatalf("got %+v", d)
	}
	if st := g.Status(); st.Events != 0 || st.Counting != 0 {
		t.Fatalf("an ignored failure was counted: %+v", st)
	}
}

func TestStatusAndSnapshot(t *testing.T) {
	g := New(testConfig(), &fakePolicy{})
	for i := range 2 {
		ev := sshdLine(t, failed("203.0.113."+strconv.Itoa(i+1), 40000))
		g.Observe(SSHD, &ev, t0)
	}
	st := g.Status()
	if st.Events != 2 || st.Counting != 2 || len(st.TopUsers) != 1 || st.TopUsers[0] != (UserAttempt{"root", 2}) {
		t.Fatalf("status %+v", st)
	}
	r := New(testConfig(), &fakePolicy{banned: map[netip.Prefix]bool{}})
	if err := r.LoadSnapshot(SSHD, g.AppendSnapshot(SSHD, nil), t0); err != nil {
		t.Fatal(err)
	}
	// Two failures restored: one more bans.
	ev := sshdLine(t, failed("203.0.113.1", 40001))
	r.Observe(SSHD, &ev, t0)
	ev = sshdLine(t, failed("203.0.113.1", 40002))
	if d := r.Observe(SSHD, &ev, t0); len(d) != 1 || d[0].Action != Ban {
		t.Fatalf("restored counter did not carry the failures: %+v", d)
	}
	if err := r.LoadSnapshot("nope", nil, t0); err == nil {
		t.Fatal("a snapshot for an unknown rule was taken")
	}
}

// Observe does not allocate per event: it is on the per-line path.
func TestObserveAllocs(t *testing.T) {
	cfg := testConfig()
	cfg.MaxRetry = 1000
	g := New(cfg, &fakePolicy{})
	ev := sshdLine(t, failed("203.0.113.5", 40000))
	// Warm up: the user name is stored once, the table grows once.
	for i := range 400 {
		ev.Addr = netip.AddrFrom4([4]byte{203, 0, 113, byte(i % 200)})
		g.Observe(SSHD, &ev, t0)
	}
	i := 0
	allocs := testing.AllocsPerRun(500, func() {
		i++
		ev.Addr = netip.AddrFrom4([4]byte{203, 0, 113, byte(i % 200)})
		ev.Port = uint16(i)
		g.Observe(SSHD, &ev, t0)
	})
	if allocs != 0 {
		t.Fatalf("Observe allocates %v times per event", allocs)
	}
}

func BenchmarkObserve(b *testing.B) {
	g := New(testConfig(), &fakePolicy{banned: map[netip.Prefix]bool{}})
	ev := sshdLine(b, failed("203.0.113.5", 40000))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ev.Addr = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		g.Observe(SSHD, &ev, t0)
	}
}

// FuzzObserve: hostile events never panic, and every decision is about
// the event's own address, or its /64 by escalation.
func FuzzObserve(f *testing.F) {
	f.Add([]byte("Failed password for root from 2001:db8::1 port 1 ssh2"), uint8(0), int64(0))
	f.Add([]byte("Connection closed by authenticating user x 203.0.113.5 port 2 [preauth]"), uint8(1), int64(1e9))
	f.Add([]byte("Invalid user a from 1.2.3.4 port 5 from 6.6.6.6 port 7"), uint8(2), int64(3))
	f.Add([]byte("::ffff:10.0.0.1"), uint8(3), int64(-1))
	cfg := testConfig()
	cfg.MaxRetry = 2
	cfg.IPv6PrefixAfter = 1
	cfg.Mode = "aggressive"
	cfg.Rules = []config.LoginRule{{Name: "web", MaxRetry: 1}}
	pol := &fakePolicy{banned: map[netip.Prefix]bool{}}
	g := New(cfg, pol)
	f.Fuzz(func(t *testing.T, line []byte, sel uint8, at int64) {
		var ev authlog.Event
		rule := SSHD
		if sel%2 == 1 {
			rule = "web"
			a, err := netip.ParseAddr(string(line))
			if err != nil {
				return
			}
			ev = authlog.Event{Addr: a, Count: int(sel)}
		} else if !authlog.ParseSSHDMessage(line, &ev) {
			return
		}
		a := ev.Addr.Unmap()
		for range 3 {
			for _, d := range g.Observe(rule, &ev, t0.Add(time.Duration(at))) {
				switch {
				case d.Rule != rule:
					t.Fatalf("decision for rule %q on a %q event", d.Rule, rule)
				case d.Escalation:
					if !a.Is6() || d.Prefix != netip.PrefixFrom(a, 64).Masked() {
						t.Fatalf("escalated to %s for %s", d.Prefix, a)
					}
				case d.Prefix != netip.PrefixFrom(a, a.BitLen()):
					t.Fatalf("decision about %s for an event of %s", d.Prefix, ev.Addr)
				}
				if d.Action == Ban {
					pol.banned[d.Prefix] = true
				}
			}
		}
	})
}

// Counted leaves out a connection's closing line; Events, for status, does not.
func TestCountedLeavesOutEpilogues(t *testing.T) {
	g := New(testConfig(), &fakePolicy{})
	for _, m := range []string{failed("203.0.113.5", 40000), closed("203.0.113.5", 40000), closed("203.0.113.5", 40001)} {
		ev := sshdLine(t, m)
		g.Observe(SSHD, &ev, t0)
	}
	if g.Counted() != 2 || g.Status().Events != 3 {
		t.Fatalf("counted %d, events %d: want 2 and 3", g.Counted(), g.Status().Events)
	}
}

// DryRun spares what the ban policy spares: failures of a spared address
// are not counted, and a /64 that covers one is not banned.
func TestDryRunSpares(t *testing.T) {
	host := netip.MustParsePrefix("2001:db8::1/128")
	spared := func(p netip.Prefix) (string, bool) {
		if p.Overlaps(host) {
			return "the host", true
		}
		return "", false
	}
	cfg := testConfig()
	cfg.IPv6PrefixAfter = 1
	dry := NewDryRun(spared, func(int) time.Duration { return time.Hour })
	g := New(cfg, dry)
	var got []string
	for _, a := range []string{"2001:db8::1", "2001:db8::2", "2001:db8:1::2"} {
		for i := range 3 {
			ev := sshdLine(t, failed(a, 40000+i))
			for _, d := range dry.Apply(g.Observe(SSHD, &ev, t0), t0) {
				got = append(got, d.Prefix.String())
			}
		}
	}
	want := "2001:db8::2/128 2001:db8:1::2/128 2001:db8:1::/64"
	if strings.Join(got, " ") != want {
		t.Fatalf("banned %v, want %s", got, want)
	}
	if !dry.Banned(netip.MustParseAddr("2001:db8:1::77"), t0) || dry.Banned(netip.MustParseAddr("2001:db8:1::77"), t0.Add(time.Hour)) {
		t.Fatal("the /64 ban does not last its hour")
	}
}

// DryRun.Banned looks an address up per ban length; it must answer as a
// walk over every ban does, for both families, mapped and zoned
// addresses, /64s, expired bans, and a ban with host bits set.
func TestDryRunBannedLikeAWalk(t *testing.T) {
	walk := func(d *DryRun, a netip.Addr, now time.Time) bool {
		for p, b := range d.bans {
			if now.Before(b.until) && p.Contains(a) {
				return true
			}
		}
		return false
	}
	rng := rand.New(rand.NewPCG(1, 2))
	addr := func() netip.Addr {
		switch rng.IntN(4) {
		case 0:
			return netip.AddrFrom4([4]byte{203, 0, 113, byte(rng.IntN(8))})
		case 1:
			return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(rng.IntN(8)), 7: byte(rng.IntN(2))})
		case 2:
			return netip.AddrFrom16(netip.AddrFrom4([4]byte{203, 0, 113, byte(rng.IntN(8))}).As16())
		}
		return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(rng.IntN(8))}).WithZone("eth0")
	}
	for _, unmasked := range []bool{false, true} {
		dry := NewDryRun(nil, func(n int) time.Duration { return time.Duration(n) * time.Minute })
		for i := range 300 {
			now := t0.Add(time.Duration(i) * 10 * time.Second)
			a := addr().WithZone("")
			p := netip.PrefixFrom(a, a.BitLen())
			if a.Is6() && rng.IntN(3) == 0 {
				p = netip.PrefixFrom(a, 64)
				if !unmasked {
					p = p.Masked()
				}
			}
			dry.Apply([]Decision{{Action: Ban, Prefix: p}}, now)
			for range 20 {
				q := addr()
				if got, want := dry.Banned(q, now), walk(dry, q, now); got != want {
					t.Fatalf("Banned(%v) = %v after %d bans, a walk says %v", q, got, i+1, want)
				}
			}
		}
		if dry.unmasked != unmasked {
			t.Fatalf("unmasked = %v, want %v", dry.unmasked, unmasked)
		}
	}
}

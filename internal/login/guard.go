// Package login is the login guard: a pure detector that turns login events
// (sshd's, and matches of fail2ban-style [[login.rule]] patterns) into ban
// decisions. It counts failures per address in bounded memory, leaves alone
// the addresses it must never count, folds a connection's closing message
// into the failure before it, and escalates IPv6 bans to the /64. For
// [[login.rule]] lines it keeps fail2ban's multi-line bookkeeping: a
// bounded table of connection id -> address, through which a failure line
// without an address is counted for the address its id recorded (ids.go).
//
// It also plans where sshd's lines are read from (PlanSources), from what
// sshd -T says about its logging.
//
// It does no I/O and reads no clock: the daemon feeds it followed log lines
// and applies its decisions through the ban policy; `moat explain` feeds it
// a file and applies them to a dry run (DryRun). Both therefore ban the same
// addresses, by construction.
package login

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/moat-fw/moat/internal/authlog"
	"github.com/moat-fw/moat/internal/config"
)

// SSHD names the counter of the built-in sshd parser, beside the
// [[login.rule]] names (config refuses a rule named so).
const SSHD = "sshd"

// Policy is what the guard asks of whoever applies its decisions: the
// daemon's ban manager and protected set, or explain's dry run.
type Policy interface {
	// Exempt says why a failure of a must not even be counted (the allow
	// list; a protected address: the host, its routers, a logged-in
	// session, a door grant), if it must not.
	Exempt(a netip.Addr, now time.Time) (why string, ok bool)
	// Banned reports whether a is banned at now: lines about an address
	// just banned are still in flight, and earn no second ban.
	Banned(a netip.Addr, now time.Time) bool
	// BannedWithin counts the login guard's live bans inside p.
	BannedWithin(p netip.Prefix, now time.Time) int
}

// Action is what a Decision asks for.
type Action uint8

// Actions.
const (
	// Ban bans Prefix.
	Ban Action = iota + 1
	// Skip reports a failure not counted, and Why: its address is exempt.
	Skip
)

// Decision is one thing the guard decided about an event.
type Decision struct {
	Action Action
	Prefix netip.Prefix // the event's address, or its /64 (Escalation)
	Rule   string       // SSHD or the [[login.rule]] name
	Reason string       // Ban: shown with the ban
	Why    string       // Skip: why the failure was not counted
	// Escalation marks the /64 ban that follows its address's ban in the
	// same slice: apply it only if that ban took.
	Escalation bool
}

// Addr is the event's address: Prefix's for a single address.
func (d Decision) Addr() netip.Addr { return d.Prefix.Addr() }

// maxUsersTracked bounds the user names remembered for status.
const maxUsersTracked = 10_000

// Guard is the login guard. It is not safe for concurrent use: the daemon
// holds a lock around it.
type Guard struct {
	cfg      config.Login
	policy   Policy
	counters map[string]*Counter // SSHD, then one per rule
	users    map[string]*int     // user names tried, bounded
	events   uint64              // failures seen, not exempt
	counted  uint64              // of those, the ones counted: not a connection's epilogue
	buf      [2]Decision         // Observe's result, reused
	ids      map[idKey]*idTable  // connection ids per jail and file (ids.go)
}

// New returns a guard for cfg that asks policy about addresses.
func New(cfg config.Login, policy Policy) *Guard {
	g := &Guard{cfg: cfg, policy: policy, counters: map[string]*Counter{}, users: map[string]*int{}, ids: map[idKey]*idTable{}}
	g.counters[SSHD] = NewCounter(cfg.MaxRetry, cfg.FindTime, cfg.MaxTracked)
	for _, r := range cfg.Rules {
		// Rules of one name are one jail (config check makes them agree):
		// one counter, as fail2ban counts a jail's failregexes together.
		if g.counters[r.Name] == nil {
			g.counters[r.Name] = NewCounter(RuleMaxRetry(cfg, r.Name), RuleFindTime(cfg, r.Name), cfg.MaxTracked)
		}
	}
	return g
}

// RuleFindTime is how long rule's failures count: the rule's own
// find_time, else [login]'s.
func RuleFindTime(cfg config.Login, rule string) time.Duration {
	for _, r := range cfg.Rules {
		if r.Name == rule && r.FindTime > 0 {
			return r.FindTime
		}
	}
	return cfg.FindTime
}

// RuleBanTime is the first ban's length for rule: the rule's own
// ban_time, else [login]'s.
func RuleBanTime(cfg config.Login, rule string) time.Duration {
	for _, r := range cfg.Rules {
		if r.Name == rule && r.BanTime > 0 {
			return r.BanTime
		}
	}
	return cfg.BanTime
}

// RulePorts is the ports rule's bans are limited to (a [[login.rule]]'s
// ports, as a fail2ban jail's port = ...); empty: the whole host, as for
// SSHD.
func RulePorts(cfg config.Login, rule string) []config.PortSpec {
	for _, r := range cfg.Rules {
		if r.Name == rule && len(r.Ports) > 0 {
			return r.Ports
		}
	}
	return nil
}

// RuleMaxRetry is the failures within find_time that earn a ban for rule
// (SSHD or a [[login.rule]] name): the rule's own max_retry, else [login]'s.
func RuleMaxRetry(cfg config.Login, rule string) int {
	for _, r := range cfg.Rules {
		if r.Name == rule && r.MaxRetry > 0 {
			return r.MaxRetry
		}
	}
	return cfg.MaxRetry
}

// Rules lists the counters' names: SSHD first, then the rules in order.
func (g *Guard) Rules() []string {
	out := []string{SSHD}
	for _, r := range g.cfg.Rules {
		if !slices.Contains(out, r.Name) {
			out = append(out, r.Name)
		}
	}
	return out
}

// Observe takes one event of rule (SSHD, or a [[login.rule]] name with
// ev.Addr set and ev.Kind zero) at now, and returns what to do about it.
// The slice is the guard's own, valid until the next call: Observe does not
// allocate, except for the reason of a ban and a user name seen first.
func (g *Guard) Observe(rule string, ev *authlog.Event, now time.Time) []Decision {
	c := g.counters[rule]
	if c == nil {
		return nil
	}
	a := ev.Addr.Unmap()
	if rule == SSHD && ev.Kind == authlog.Accepted {
		if g.cfg.ForgetOnSuccess {
			c.Forget(a)
		}
		return nil
	}
	if !g.Counts(rule, ev) {
		return nil
	}
	if why := g.exempt(a, now); why != "" {
		g.buf[0] = Decision{Action: Skip, Prefix: netip.PrefixFrom(a, a.BitLen()), Rule: rule, Why: why}
		return g.buf[:1]
	}
	n := max(ev.Count, 1)
	g.events++
	if len(ev.User) > 0 {
		// A lookup by string(bytes) does not allocate; an insert does,
		// once per name.
		if p, ok := g.users[string(ev.User)]; ok {
			*p += n
		} else if len(g.users) < maxUsersTracked {
			v := n
			g.users[string(ev.User)] = &v
		}
	}
	if ev.Port != 0 && epilogue(ev.Kind) && c.LastConn(a) == ev.Port {
		return nil // this connection's failure was counted already
	}
	g.counted += uint64(n)
	count, kinds, reached := c.FailConn(a, n, 1<<ev.Kind, ev.Port, now)
	if !reached {
		return nil
	}
	c.Forget(a)
	if g.policy.Banned(a, now) {
		return nil // lines about a banned address still in flight
	}
	g.buf[0] = Decision{Action: Ban, Prefix: netip.PrefixFrom(a, a.BitLen()), Rule: rule,
		Reason: fmt.Sprintf("%s: %d failures in %s (%s)", rule, count, g.cfg.FindTime, kindList(kinds))}
	out := g.buf[:1]
	// IPv6 attackers get a whole /64 and rotate through it: ban it once
	// enough of its addresses are, this one included.
	if after := g.cfg.IPv6PrefixAfter; after > 0 && a.Is6() {
		p := netip.PrefixFrom(a, 64).Masked()
		if g.policy.BannedWithin(p, now)+1 >= after {
			g.buf[1] = Decision{Action: Ban, Prefix: p, Rule: rule, Escalation: true,
				Reason: fmt.Sprintf("%d addresses of this /64 banned by the login guard", after)}
			out = g.buf[:2]
		}
	}
	return out
}

// Counts reports whether ev is a failure the guard counts for rule: not a
// login, and not a kind only aggressive mode counts, in normal mode.
func (g *Guard) Counts(rule string, ev *authlog.Event) bool {
	if rule != SSHD {
		return true
	}
	return ev.Kind != authlog.Accepted && (!ev.Kind.Aggressive() || g.cfg.Mode == "aggressive")
}

// Counted is how many failures went into a counter since the start:
// Status's Events less the epilogues of connections already counted.
func (g *Guard) Counted() uint64 { return g.counted }

// exempt says why a is never counted, or "".
func (g *Guard) exempt(a netip.Addr, now time.Time) string {
	switch {
	case !a.IsValid():
		return "no address"
	case a.IsLoopback() || a.IsUnspecified() || a.IsMulticast():
		return "loopback or special address"
	}
	if why, ok := g.policy.Exempt(a, now); ok {
		return why
	}
	for _, p := range g.cfg.Ignore {
		if p.Contains(a) {
			return "in [login] ignore"
		}
	}
	return ""
}

// epilogue kinds close a connection whose failures were already counted:
// "Failed password" then "Connection closed by authenticating user" is one
// attempt, not two. Alone (a client that probes and leaves) they count.
func epilogue(k authlog.Kind) bool {
	switch k {
	case authlog.PreauthClosed, authlog.TooManyAuthFailures, authlog.MaxAuthTries:
		return true
	}
	return false
}

func kindList(bits uint32) string {
	var out []string
	for k := authlog.Kind(1); k < 32; k++ {
		if bits&(1<<k) != 0 {
			out = append(out, k.String())
		}
	}
	if len(out) == 0 {
		return "failed logins"
	}
	return strings.Join(out, ", ")
}

// Status is the guard's part of `moat status`.
type Status struct {
	Counting int           // addresses with failures being counted
	Events   uint64        // failures counted since start
	TopUsers []UserAttempt // the ten names tried most
}

// UserAttempt is a user name and how often it was tried.
type UserAttempt struct {
	User     string `json:"user"`
	Attempts int    `json:"attempts"`
}

// Status returns a snapshot of the guard's counts.
func (g *Guard) Status() Status {
	st := Status{Events: g.events}
	for _, c := range g.counters {
		st.Counting += c.Len()
	}
	for u, n := range g.users {
		st.TopUsers = append(st.TopUsers, UserAttempt{User: u, Attempts: *n})
	}
	sort.Slice(st.TopUsers, func(i, j int) bool {
		if st.TopUsers[i].Attempts != st.TopUsers[j].Attempts {
			return st.TopUsers[i].Attempts > st.TopUsers[j].Attempts
		}
		return st.TopUsers[i].User < st.TopUsers[j].User
	})
	if len(st.TopUsers) > 10 {
		st.TopUsers = st.TopUsers[:10]
	}
	return st
}

// AppendSnapshot appends rule's counter state to b (see
// Counter.AppendSnapshot), so a restart resumes counting.
func (g *Guard) AppendSnapshot(rule string, b []byte) []byte {
	if c := g.counters[rule]; c != nil {
		return c.AppendSnapshot(b)
	}
	return b
}

// LoadSnapshot restores rule's counter from what AppendSnapshot saved.
func (g *Guard) LoadSnapshot(rule string, b []byte, now time.Time) error {
	c := g.counters[rule]
	if c == nil {
		return fmt.Errorf("no counter %q in this config", rule)
	}
	return c.LoadSnapshot(b, now)
}

// CountingRule is how many addresses rule's counter holds (0 for a rule
// it does not know): fail2ban-client status JAIL's "currently failed".
func (g *Guard) CountingRule(rule string) int {
	if c := g.counters[rule]; c != nil {
		return c.Len()
	}
	return 0
}

// Failures are a's failures being counted now, by rule (SSHD or a
// [[login.rule]] name); rules with none are left out.
func (g *Guard) Failures(a netip.Addr, now time.Time) map[string]int {
	out := map[string]int{}
	for name, c := range g.counters {
		if n := c.Count(a.Unmap(), now); n > 0 {
			out[name] = n
		}
	}
	return out
}

package config

import (
	"fmt"
	"math"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moat-fw/moat/internal/authlog"
)

// Login configures the login guard: bans for addresses that keep failing to
// log in, read from sshd's logs (and from other services' through rules).
type Login struct {
	Enabled           bool           // enabled: the guard runs
	Sources           []string       // sources: "auto", "journal", or absolute log file paths
	Mode              string         // mode: "normal" or "aggressive" (also banner, kex and timeout errors)
	MaxRetry          int            // max_retry: failures within find_time that earn a ban
	FindTime          time.Duration  // find_time: the counting window
	BanTime           time.Duration  // ban_time: the first ban's length
	BanTimeMultiplier float64        // ban_time_multiplier: each repeat ban lasts this many times longer...
	MaxBanTime        time.Duration  // max_ban_time: ...up to this
	Ignore            []netip.Prefix // ignore: sources never counted
	IPv6PrefixAfter   int            // ipv6_prefix_after: ban the /64 once this many of its addresses are banned (0: never)
	ForgetOnSuccess   bool           // forget_on_success: a successful login clears the address's failures
	MaxTracked        int            // max_tracked: addresses counted at once; the least recently seen are evicted
	UseDNS            string         // use_dns: "no", "warn" or "yes", fail2ban's usedns: what to do with host names sshd writes (UseDNS yes)
	Rules             []LoginRule    // rule: patterns for other services
}

// LoginRule is a fail2ban-style pattern for a service other than sshd.
type LoginRule struct {
	Name     string // name: shown in bans' reasons
	Source   string // source: an absolute log file path
	Pattern  string // pattern: a Go regexp anchored with ^ and $, with one <HOST>
	MaxRetry int    // max_retry: overrides [login] max_retry when > 0
	// The keys below come with `moat import fail2ban`, where every jail has
	// its own window, ban length and ports. Zero or empty: [login]'s.
	FindTime time.Duration // find_time: overrides [login] find_time when > 0
	BanTime  time.Duration // ban_time: overrides [login] ban_time when > 0
	Ports    []PortSpec    // ports: the service's ports; its bans drop only these (port-limited bans)
	// Multi-line bookkeeping, fail2ban's <F-MLFID> (docs/login-rules.md,
	// "Failures spread over lines"): a rule whose pattern marks a
	// connection id, (?P<id>...), may be a failure without an address,
	// attributed to the address its id recorded, or a line that only
	// records or forgets.
	Kind   string // kind: "failure" (default), "note" (records id -> address) or "success" (cancels the id's failures waiting for an address)
	Forget bool   // forget: after this line, the id is forgotten
}

// Rule kinds ([[login.rule]] kind).
const (
	RuleFailure = "failure"
	RuleNote    = "note"
	RuleSuccess = "success"
)

var loginRuleKindValues = []string{RuleFailure, RuleNote, RuleSuccess}

// RuleKind is the rule's kind, "failure" when it says none.
func (r LoginRule) RuleKind() string {
	if r.Kind == "" {
		return RuleFailure
	}
	return r.Kind
}

var loginModeValues = []string{"normal", "aggressive"}

// loginUseDNSValues are fail2ban's usedns values. "no" is the default: the
// client controls its reverse DNS, and so the name sshd writes and which
// addresses it resolves to (docs/login-parser.md, "Host names").
var loginUseDNSValues = []string{"no", "warn", "yes"}

func defaultLogin() Login {
	return Login{
		Enabled:           true,
		Sources:           []string{"auto"},
		Mode:              "normal",
		MaxRetry:          5,
		FindTime:          10 * time.Minute,
		BanTime:           time.Hour,
		BanTimeMultiplier: 2,
		MaxBanTime:        7 * 24 * time.Hour,
		ForgetOnSuccess:   true,
		MaxTracked:        1_000_000,
		UseDNS:            "no",
	}
}

var loginKeys = []key{
	{"enabled", func(d *decoder, p string, v any) { d.bool(p, v, &d.cfg.Login.Enabled) }},
	{"sources", func(d *decoder, p string, v any) {
		var out []string
		if d.list(p, v, `a list like ["auto"], ["journal"] or ["/var/log/auth.log"]`, func(p string, e any) {
			if s, ok := e.(string); ok {
				out = append(out, s)
				return
			}
			d.badType(p, e, `"auto", "journal" or an absolute path`)
		}) {
			d.cfg.Login.Sources = out
		}
	}},
	{"mode", func(d *decoder, p string, v any) { d.enum(p, v, loginModeValues, &d.cfg.Login.Mode) }},
	{"max_retry", func(d *decoder, p string, v any) {
		if n, ok := d.uint(p, v, 1, 1000); ok {
			d.cfg.Login.MaxRetry = int(n)
		}
	}},
	{"find_time", func(d *decoder, p string, v any) { d.duration(p, v, &d.cfg.Login.FindTime) }},
	{"ban_time", func(d *decoder, p string, v any) { d.duration(p, v, &d.cfg.Login.BanTime) }},
	{"ban_time_multiplier", func(d *decoder, p string, v any) { d.number(p, v, &d.cfg.Login.BanTimeMultiplier) }},
	{"max_ban_time", func(d *decoder, p string, v any) { d.duration(p, v, &d.cfg.Login.MaxBanTime) }},
	{"ignore", func(d *decoder, p string, v any) { d.prefixes(p, v, &d.cfg.Login.Ignore) }},
	{"ipv6_prefix_after", func(d *decoder, p string, v any) {
		if n, ok := d.uint(p, v, 0, 1<<16); ok {
			d.cfg.Login.IPv6PrefixAfter = int(n)
		}
	}},
	{"forget_on_success", func(d *decoder, p string, v any) { d.bool(p, v, &d.cfg.Login.ForgetOnSuccess) }},
	{"max_tracked", func(d *decoder, p string, v any) {
		if n, ok := d.uint(p, v, 1000, 100_000_000); ok {
			d.cfg.Login.MaxTracked = int(n)
		}
	}},
	{"use_dns", func(d *decoder, p string, v any) { d.enum(p, v, loginUseDNSValues, &d.cfg.Login.UseDNS) }},
	{"rule", func(d *decoder, p string, v any) {
		d.cfg.Login.Rules = nil
		d.tables(p, v, loginRuleKeys, func() { d.cfg.Login.Rules = append(d.cfg.Login.Rules, LoginRule{}) })
	}},
}

// loginRuleKeys fill the last rule appended.
var loginRuleKeys = []key{
	{"name", func(d *decoder, p string, v any) { d.str(p, v, &d.lastRule().Name) }},
	{"source", func(d *decoder, p string, v any) { d.str(p, v, &d.lastRule().Source) }},
	{"pattern", func(d *decoder, p string, v any) { d.str(p, v, &d.lastRule().Pattern) }},
	{"max_retry", func(d *decoder, p string, v any) {
		if n, ok := d.uint(p, v, 1, 1000); ok {
			d.lastRule().MaxRetry = int(n)
		}
	}},
	{"find_time", func(d *decoder, p string, v any) { d.duration(p, v, &d.lastRule().FindTime) }},
	{"ban_time", func(d *decoder, p string, v any) { d.duration(p, v, &d.lastRule().BanTime) }},
	{"ports", func(d *decoder, p string, v any) {
		d.portList(p, v, `a list like ["tcp/80", "tcp/443"]`, portForms, true, &d.lastRule().Ports)
	}},
	{"kind", func(d *decoder, p string, v any) { d.enum(p, v, loginRuleKindValues, &d.lastRule().Kind) }},
	{"forget", func(d *decoder, p string, v any) { d.bool(p, v, &d.lastRule().Forget) }},
}

func (d *decoder) lastRule() *LoginRule { return &d.cfg.Login.Rules[len(d.cfg.Login.Rules)-1] }

func (d *decoder) str(path string, v any, dst *string) {
	s, ok := v.(string)
	if !ok {
		d.badType(path, v, "a string in quotes")
		return
	}
	*dst = s
}

func (d *decoder) prefixes(path string, v any, dst *[]netip.Prefix) {
	var out []netip.Prefix
	ok := d.list(path, v, `a list like ["192.0.2.7", "2001:db8::/32"]`, func(p string, e any) {
		s, ok := e.(string)
		if !ok {
			d.badType(p, e, `an address like "192.0.2.7" or a network like "2001:db8::/32"`)
			return
		}
		pfx, err := ParseAddrOrPrefix(s)
		if err != nil {
			d.bad(p, e, "%v", err)
			return
		}
		out = append(out, pfx)
	})
	if ok {
		*dst = out
	}
}

// tables decodes an array of tables ([[login.rule]]): each element is
// appended with add, then its keys are set against keys.
func (d *decoder) tables(path string, v any, keys []key, add func()) {
	elems, ok := v.([]map[string]any)
	if !ok {
		d.badType(path, v, fmt.Sprintf("tables written [[%s]]", path))
		return
	}
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = k.name
	}
	for i, m := range elems {
		add()
		ep := joinIndex(path, i)
		for _, k := range sortedKeys(m) {
			kp := joinKey(ep, k)
			idx := slices.IndexFunc(keys, func(x key) bool { return x.name == k })
			if idx < 0 {
				d.bad(kp, nil, "unknown key%s; [[%s]] has %s", suggest(k, names), path, strings.Join(names, ", "))
				continue
			}
			keys[idx].set(d, kp, m[k])
		}
	}
}

// anchored reports whether a rule pattern is anchored at both ends, so
// text an attacker controls cannot sit around <HOST> unchecked.
var anchoredRe = regexp.MustCompile(`^\^.*\$$`)

func (l *Login) problems() []problem {
	var out []problem
	bad := func(path, value, format string, args ...any) {
		out = append(out, problem{path: path, value: value, msg: fmt.Sprintf(format, args...)})
	}
	q := strconv.Quote
	for i, s := range l.Sources {
		p := joinIndex("login.sources", i)
		switch {
		case s == "auto" || s == "journal":
		case !filepath.IsAbs(s):
			bad(p, q(s), `want "auto", "journal" or an absolute path like "/var/log/auth.log"`)
		}
	}
	if !slices.Contains(loginModeValues, l.Mode) {
		bad("login.mode", q(l.Mode), "want %s", quotedOr(loginModeValues))
	}
	if !slices.Contains(loginUseDNSValues, l.UseDNS) {
		bad("login.use_dns", q(l.UseDNS), "want %s", quotedOr(loginUseDNSValues))
	}
	if l.MaxRetry < 1 {
		bad("login.max_retry", strconv.Itoa(l.MaxRetry), "want at least 1")
	}
	if l.FindTime < time.Second {
		bad("login.find_time", q(l.FindTime.String()), `too short; want at least "1s"`)
	}
	if l.BanTime < time.Second {
		bad("login.ban_time", q(l.BanTime.String()), `too short; want at least "1s"`)
	}
	if l.BanTimeMultiplier < 1 || math.IsNaN(l.BanTimeMultiplier) || math.IsInf(l.BanTimeMultiplier, 0) {
		bad("login.ban_time_multiplier", strconv.FormatFloat(l.BanTimeMultiplier, 'g', -1, 64), "want a number of at least 1 (1: every ban is ban_time long)")
	}
	if l.MaxBanTime < l.BanTime {
		bad("login.max_ban_time", q(l.MaxBanTime.String()), "shorter than ban_time (%s)", l.BanTime)
	}
	names := map[string]LoginRule{}
	for i, r := range l.Rules {
		p := joinIndex("login.rule", i)
		first, seen := names[r.Name]
		switch {
		case r.Name == "":
			bad(joinKey(p, "name"), "", "every rule needs a name, shown in the reason of its bans")
		case r.Name == "sshd":
			// The built-in parser's counter, and explain --rule's name for it.
			bad(joinKey(p, "name"), q(r.Name), `"sshd" names the built-in sshd parser; choose another name`)
		case seen && !sameJail(first, r):
			// Rules of one name are one jail, as fail2ban's failregexes of
			// one filter are: they count together (moat import fail2ban
			// writes one rule per failregex), so they must count alike.
			bad(joinKey(p, "name"), q(r.Name), "another [[login.rule]] of this name has other max_retry, find_time, ban_time or ports; rules of one name count together, so give them the same settings or another name")
		}
		if !seen {
			names[r.Name] = r
		}
		if !filepath.IsAbs(r.Source) {
			bad(joinKey(p, "source"), q(r.Source), `want the absolute path of the service's log file`)
		}
		// Zero means "as [login]"; a value given must be usable on its own.
		if r.FindTime != 0 && r.FindTime < time.Second {
			bad(joinKey(p, "find_time"), q(r.FindTime.String()), `too short; want at least "1s"`)
		}
		if r.BanTime != 0 && r.BanTime < time.Second {
			bad(joinKey(p, "ban_time"), q(r.BanTime.String()), `too short; want at least "1s"`)
		}
		hosts, hasID := strings.Count(r.Pattern, "<HOST>"), authlog.HasIDGroup(r.Pattern)
		kind := r.RuleKind()
		switch {
		case !slices.Contains(loginRuleKindValues, kind):
			bad(joinKey(p, "kind"), q(r.Kind), "want %s", quotedOr(loginRuleKindValues))
		case kind != RuleFailure && !hasID:
			bad(joinKey(p, "kind"), q(r.Kind), "a %s rule records or clears what a connection id stands for: its pattern needs the id, (?P<id>...); see docs/login-rules.md", kind)
		case kind == RuleNote && hosts == 0 && !r.Forget:
			bad(joinKey(p, "kind"), q(r.Kind), "a note records the address of a connection id: its pattern needs <HOST> (or forget = true, for a line that ends the connection)")
		}
		if r.Forget && !hasID {
			bad(joinKey(p, "forget"), "true", "forget clears a connection id: the pattern needs the id, (?P<id>...); see docs/login-rules.md")
		}
		switch {
		case hosts > 1 || hosts == 0 && !hasID:
			bad(joinKey(p, "pattern"), q(r.Pattern), "want exactly one <HOST> where the service writes the client address (none only with a connection id, (?P<id>...), whose address another line gives)")
		case !anchoredRe.MatchString(r.Pattern):
			bad(joinKey(p, "pattern"), q(r.Pattern), "must start with ^ and end with $: unanchored, text an attacker controls (a user name) could supply the address; see docs/login-rules.md")
		default:
			// The very compiler the daemon uses, with its shape check: a
			// rule config check accepts is a rule the daemon runs.
			if _, err := authlog.CompileRule(r.Pattern); err != nil {
				bad(joinKey(p, "pattern"), q(r.Pattern), "%s", strings.TrimPrefix(err.Error(), "login rule "+q(r.Pattern)+": "))
			}
		}
	}
	return out
}

// sameJail reports whether two rules of one name count alike.
func sameJail(a, b LoginRule) bool {
	return a.MaxRetry == b.MaxRetry && a.FindTime == b.FindTime && a.BanTime == b.BanTime && slices.Equal(a.Ports, b.Ports)
}

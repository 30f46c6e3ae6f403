package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/moat-fw/moat/internal/authlog"
	"github.com/moat-fw/moat/internal/ban"
	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/daemon"
	"github.com/moat-fw/moat/internal/kernlog"
	"github.com/moat-fw/moat/internal/login"
	"github.com/moat-fw/moat/internal/packet"
	"github.com/moat-fw/moat/internal/portscan"
	"github.com/moat-fw/moat/internal/protect"
)

// explainCmd is moat's fail2ban-regex: what moat makes of each log line.
func (a *app) explainCmd() *cobra.Command {
	var asJSON, kernelLog, useDNS bool
	var mode, rule string
	cmd := &cobra.Command{
		Use:   "explain [--json] [--rule NAME] [--mode normal|aggressive] [--kernel-log] FILE|-",
		Short: "Show what the login guard (or, with --kernel-log, the scan guard) makes of log lines",
		Long: "explain runs the daemon's own login guard over log lines: sshd's (syslog, RFC 5424, ISO-8601\n" +
			"or bare journal messages) and every [[login.rule]] of the config, with [login] ignore,\n" +
			"the allow list and each line's own timestamp, banning nothing. It prints, per rule, lines\n" +
			"matched, failures per address and the addresses the daemon would ban (like fail2ban-regex);\n" +
			"with --json, one object per matched line. --rule limits it to one rule (sshd: the built-in\n" +
			"parser). It spares what the daemon spares as far as it can see: the allow list and this\n" +
			"host's own addresses, routers and resolvers, not the sessions and door grants a running\n" +
			"daemon tracks.\n\n" +
			"With --kernel-log it reads the kernel's iptables/nftables LOG lines (IN= OUT= SRC= DST= ...)\n" +
			"and prints the scan guard's report, as psad -A does. Feed it kernel lines only: any process\n" +
			"can write text that looks like one to syslog.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in := io.Reader(os.Stdin)
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			ld, err := daemon.LoadConfig(a.configPath, a.explicit)
			if err != nil {
				return err
			}
			if kernelLog {
				return explainKernel(in, a.out, asJSON, ld.Cfg, time.Now())
			}
			lc := ld.Cfg.Login
			if cmd.Flags().Changed("mode") {
				if mode != "normal" && mode != "aggressive" {
					return fmt.Errorf(`--mode %q: want "normal" or "aggressive"`, mode)
				}
				lc.Mode = mode
			}
			o := explainOptions{login: lc, allow: ld.Cfg.Firewall.Allow, rule: rule, json: asJSON}
			switch {
			case useDNS && lc.UseDNS == "no":
				return errors.New(`--use-dns: the config's [login] use_dns is "no", so the daemon counts no host name; set it to "warn" or "yes" first`)
			case useDNS:
				o.names = &dnsNames{res: net.DefaultResolver, cache: map[string]dnsAnswer{}}
			case lc.UseDNS != "no":
				o.names = noNames{why: fmt.Sprintf("not resolved: the daemon would (use_dns = %q); pass --use-dns to resolve", lc.UseDNS)}
			}
			return explain(in, a.out, o, time.Now())
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per matched line and nothing else")
	cmd.Flags().StringVar(&mode, "mode", "normal", `"normal" or "aggressive" (default: [login] mode)`)
	cmd.Flags().StringVar(&rule, "rule", "", `only this rule: a [[login.rule]] name, or "sshd" for the built-in parser`)
	cmd.Flags().BoolVar(&useDNS, "use-dns", false, `resolve the host names sshd wrote, as the daemon does with [login] use_dns = "warn" or "yes" (explain does no DNS without it)`)
	cmd.Flags().BoolVar(&kernelLog, "kernel-log", false, "read kernel LOG lines and print the scan report (like psad -A)")
	return cmd
}

// explainLine is one matched line in `explain --json`.
type explainLine struct {
	Line     int        `json:"line"`
	Rule     string     `json:"rule"`
	Kind     string     `json:"kind,omitempty"`
	IP       netip.Addr `json:"ip"` // zero: "" (as MarshalText has it)
	User     jsonText   `json:"user,omitempty"`
	WouldBan bool       `json:"would_ban"`
	// Prefix is the /64 also banned when the line's ban escalates.
	Prefix  string `json:"prefix,omitempty"`
	Ignored string `json:"ignored,omitempty"` // why the failure is not counted
	// Host is the client's host name where sshd wrote one (UseDNS yes);
	// IP is then the address it was counted for, or empty.
	Host string `json:"host,omitempty"`
}

// jsonText is text that encodes as a JSON string, as a string would: the
// user name as the line holds it, not copied into a string for each of a
// million lines.
type jsonText []byte

func (t jsonText) MarshalJSON() ([]byte, error) { return json.Marshal(string(t)) }

type explainOptions struct {
	login config.Login
	allow []netip.Prefix // [firewall] allow
	rule  string         // "": every rule
	json  bool
	// names looks up the host names sshd wrote; nil: none is (use_dns
	// "no", or no --use-dns: explain does no DNS unless asked).
	names nameLooker
}

// nameLooker resolves a host name for explain.
type nameLooker interface {
	lookup(name string) ([]netip.Addr, error)
}

// noNames is explain without DNS: host names are shown, never counted.
type noNames struct{ why string }

func (n noNames) lookup(string) ([]netip.Addr, error) {
	if n.why == "" {
		return nil, errors.New(`not resolved (use_dns = "no"), not counted`)
	}
	return nil, errors.New(n.why)
}

// dnsNames resolves names with the system's resolver, each once, each
// lookup bounded: explain reads a file once, and may wait for DNS.
type dnsNames struct {
	res   *net.Resolver
	cache map[string]dnsAnswer
}

type dnsAnswer struct {
	addrs []netip.Addr
	err   error
}

func (d *dnsNames) lookup(name string) ([]netip.Addr, error) {
	if a, ok := d.cache[name]; ok {
		return a.addrs, a.err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	addrs, err := d.res.LookupNetIP(ctx, "ip", name)
	cancel()
	if err != nil {
		err = fmt.Errorf("does not resolve: %w", err)
	}
	d.cache[name] = dnsAnswer{addrs, err}
	return addrs, err
}

// explainRule is one rule's matcher and what it found.
type explainRule struct {
	name    string
	sshd    bool // the built-in sshd parser, not a [[login.rule]] name
	matched int
	// notes are lines of the rule's multi-line bookkeeping that are not
	// failures (yet): an id's address recorded, forgotten, or a failure
	// waiting for its id's address.
	notes    int
	kinds    map[authlog.Kind]int
	failures map[netip.Addr]int
	ignored  map[string]int // why → lines
	// epilogues are lines that close a connection whose failure was
	// counted already: one attempt, not two.
	epilogues int
	bans      []netip.Prefix // in order, repeats included
}

// explain runs the login guard over in with a dry-run policy and prints
// what it matched and would ban.
func explain(in io.Reader, out io.Writer, o explainOptions, now time.Time) error {
	var rules []*explainRule
	if o.rule == "" || o.rule == login.SSHD {
		rules = append(rules, &explainRule{name: login.SSHD, sshd: true})
	}
	// The daemon's matcher: a line counts once per rule name, through
	// the guard's bookkeeping of connection ids.
	set, err := login.CompileRules(o.login)
	if err != nil {
		return err
	}
	byName := map[string]*explainRule{}
	for _, r := range o.login.Rules {
		if o.rule != "" && o.rule != r.Name || byName[r.Name] != nil {
			continue
		}
		byName[r.Name] = &explainRule{name: r.Name}
		rules = append(rules, byName[r.Name])
	}
	if len(rules) == 0 {
		names := []string{login.SSHD}
		for _, r := range o.login.Rules {
			names = append(names, r.Name)
		}
		return fmt.Errorf("--rule %q: the config has no such rule; choose one of %s", o.rule, strings.Join(names, ", "))
	}
	for _, r := range rules {
		r.kinds, r.failures, r.ignored = map[authlog.Kind]int{}, map[netip.Addr]int{}, map[string]int{}
	}
	g, dry := newExplainGuard(o.login, o.allow)

	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	bw := bufio.NewWriter(out)
	defer bw.Flush()
	var jbuf []byte
	encode := func(j *explainLine) error {
		jbuf = j.appendJSON(jbuf[:0])
		_, err := bw.Write(jbuf)
		return err
	}
	n := 0
	var last time.Time // the last line's time, for lines without one
	lineTime := func(t time.Time, ok bool) time.Time {
		switch {
		case ok && !t.IsZero():
			last = t
		case last.IsZero():
			last = now // no timestamp yet: the lines are one burst
		}
		return last
	}
	// One joiner for the file, as the daemon keeps one per source.
	jn := authlog.NewJoiner(authlog.JoinerConfig{Names: true})
	var evs []authlog.Event
	var ms []login.RuleLine
	names := o.names
	if names == nil {
		names = noNames{}
	}
	handle := func(r *explainRule, ev *authlog.Event, t time.Time) error {
		j := explainLine{Line: n, Rule: r.name, User: ev.User}
		if r.sshd {
			j.Kind = ev.Kind.String()
		}
		if !ev.Addr.IsValid() {
			// A host name sshd wrote: counted only for the one address
			// login.NameAddr allows, as the daemon does.
			j.Host = string(ev.Host)
			addrs, err := names.lookup(j.Host)
			var a netip.Addr
			why := ""
			switch {
			case err != nil:
				why = "host name: " + err.Error()
			default:
				a, why = login.NameAddr(addrs, func(a netip.Addr) (string, bool) { return dry.Exempt(a, t) })
				if why != "" {
					why = "host name: " + why
				}
			}
			if why != "" {
				if !g.Counts(r.name, ev) {
					return nil
				}
				r.matched++
				if r.sshd {
					r.kinds[ev.Kind]++
				}
				j.Ignored = why
				r.ignored[why]++
				if o.json {
					return encode(&j)
				}
				return nil
			}
			e := *ev
			e.Addr, e.Host = a, nil
			ev = &e
		}
		j.IP = ev.Addr.Unmap()
		if ev.Kind == authlog.Accepted {
			// The daemon honors an Accepted line from a log file only
			// while a logged-in sshd holds that very connection (a forged
			// line would otherwise make its address immune); for a log
			// read afterwards that is never, so explain does not either:
			// the login forgets nothing. (fail2ban's sshd sample made
			// the two disagree on 192.0.2.1.)
			return nil
		}
		counted := g.Counted()
		decs := g.Observe(r.name, ev, t)
		if !g.Counts(r.name, ev) {
			return nil // a login, or a kind this mode does not count
		}
		r.matched++
		if r.sshd {
			r.kinds[ev.Kind]++
		}
		if len(decs) == 1 && decs[0].Action == login.Skip {
			j.Ignored = decs[0].Why
			r.ignored[j.Ignored]++
		} else if g.Counted() > counted {
			r.failures[ev.Addr.Unmap()]++
		} else {
			r.epilogues++
		}
		for _, b := range dry.Apply(decs, t) {
			r.bans = append(r.bans, b.Prefix)
			if b.Escalation {
				j.Prefix = b.Prefix.String()
			} else {
				j.WouldBan = true
			}
		}
		if o.json {
			return encode(&j)
		}
		return nil
	}
	for sc.Scan() {
		n++
		line := sc.Bytes()
		for _, r := range rules {
			if !r.sshd {
				continue
			}
			// The joiner's clock is the log's: the last line's time.
			evs = jn.LineOrMessage(line, lineTime(time.Time{}, false), evs[:0])
			for i := range evs {
				if err := handle(r, &evs[i], lineTime(authlog.InferYear(evs[i].Time, now), true)); err != nil {
					return err
				}
			}
		}
		if len(byName) == 0 {
			continue
		}
		ms = set.Match("", line, true, ms[:0])
		var t time.Time // the line's, read once for all its rules
		for i := range ms {
			m := &ms[i]
			r := byName[m.Rule]
			if r == nil {
				continue // not the --rule asked for
			}
			if t.IsZero() {
				t = lineTime(kernlog.Time(line, now))
			}
			ev, ok := g.Attribute(m, t)
			if !ok {
				r.notes++
				if o.json {
					j := explainLine{Line: n, Rule: r.name, Kind: "waiting", IP: m.Addr, User: m.User}
					if m.Kind != config.RuleFailure {
						j.Kind = m.Kind
					}
					if err := encode(&j); err != nil {
						return err
					}
				}
				continue
			}
			if err := handle(r, &ev, t); err != nil {
				return err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading line %d: %w", n+1, err)
	}
	if o.json {
		return nil
	}
	fmt.Fprintf(bw, "lines read: %d\n", n)
	for _, r := range rules {
		printRuleSummary(bw, r, o.login)
	}
	return nil
}

// newExplainGuard is the daemon's login guard over a dry run that spares
// what the daemon's ban policy spares, as far as explain can know it: the
// allow list of the config, and the protected addresses this host shows
// (its own, its routers and resolvers, link-local sources; not the
// sessions and door grants a running daemon tracks). Bans last as long as
// the daemon's backoff makes them.
func newExplainGuard(cfg config.Login, allow []netip.Prefix) (*login.Guard, *login.DryRun) {
	found := protect.Discover(protect.System{Root: "/"})
	protected := protect.New(found.Entries(), protect.LinkLocal)
	spared := func(p netip.Prefix) (string, bool) {
		for _, q := range allow {
			if q.Overlaps(p) {
				return "in the allow list", true
			}
		}
		if e, ok := protected.Overlaps(p); ok {
			return "protected: " + e.Why, true
		}
		return "", false
	}
	backoff := ban.Backoff{Base: cfg.BanTime, Multiplier: cfg.BanTimeMultiplier, Max: cfg.MaxBanTime}
	dry := login.NewDryRun(spared, backoff.For)
	return login.New(cfg, dry), dry
}

func printRuleSummary(w io.Writer, r *explainRule, cfg config.Login) {
	fmt.Fprintf(w, "\nrule %s (max_retry %d in %s", r.name, login.RuleMaxRetry(cfg, r.name), cfg.FindTime)
	if r.sshd {
		fmt.Fprintf(w, ", mode %s", cfg.Mode)
	}
	fmt.Fprintf(w, ")\n  lines matched:      %d\n", r.matched)
	if len(r.kinds) > 0 {
		ks := make([]authlog.Kind, 0, len(r.kinds))
		for k := range r.kinds {
			ks = append(ks, k)
		}
		sort.Slice(ks, func(i, j int) bool {
			return r.kinds[ks[i]] > r.kinds[ks[j]] || r.kinds[ks[i]] == r.kinds[ks[j]] && ks[i].String() < ks[j].String()
		})
		for _, k := range ks {
			fmt.Fprintf(w, "    %-28s %d\n", k, r.kinds[k])
		}
	}
	for why, c := range r.ignored {
		fmt.Fprintf(w, "  not counted (%s): %d\n", why, c)
	}
	if r.notes > 0 {
		fmt.Fprintf(w, "  connection id bookkeeping, not failures (yet): %d\n", r.notes)
	}
	if r.epilogues > 0 {
		fmt.Fprintf(w, "  not counted (closes a connection whose failure counted): %d\n", r.epilogues)
	}
	addrs := make([]netip.Addr, 0, len(r.failures))
	for a := range r.failures {
		addrs = append(addrs, a)
	}
	sort.Slice(addrs, func(i, j int) bool {
		fi, fj := r.failures[addrs[i]], r.failures[addrs[j]]
		return fi > fj || fi == fj && addrs[i].Less(addrs[j])
	})
	fmt.Fprintf(w, "  failures per address (%d addresses):\n", len(addrs))
	const shown = 20
	for _, a := range addrs[:min(len(addrs), shown)] {
		fmt.Fprintf(w, "    %-40s %d\n", a, r.failures[a])
	}
	if len(addrs) > shown {
		fmt.Fprintf(w, "    ... and %d more\n", len(addrs)-shown)
	}
	times := map[netip.Prefix]int{}
	for _, p := range r.bans {
		times[p]++
	}
	ps := make([]netip.Prefix, 0, len(times))
	for p := range times {
		ps = append(ps, p)
	}
	slices.SortFunc(ps, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	fmt.Fprintf(w, "  would ban: %d\n", len(ps))
	for _, p := range ps {
		fmt.Fprintf(w, "    %s (%d times)\n", ban.PrefixString(p), times[p])
	}
}

// explainKernel runs kernel LOG lines through the daemon's scan detector
// (the same settings: ScanDetectorConfig), each at its own timestamp, and
// prints its report.
func explainKernel(in io.Reader, out io.Writer, asJSON bool, cfg *config.Config, now time.Time) error {
	det := portscan.New(daemon.ScanDetectorConfig(cfg.Scan, cfg.Doors, nil))
	r := bufio.NewScanner(in)
	r.Buffer(make([]byte, 64<<10), 1<<20)
	var p packet.Packet
	lines, parsed := 0, 0
	var last time.Time
	for r.Scan() {
		lines++
		prefix, ok := kernlog.Parse(r.Bytes(), &p)
		if !ok {
			continue
		}
		parsed++
		if t, ok := kernlog.Time(r.Bytes(), now); ok {
			last = t
		} else if last.IsZero() {
			last = now
		}
		det.Observe(&p, prefix, last)
	}
	if err := r.Err(); err != nil {
		return fmt.Errorf("reading line %d: %w", lines+1, err)
	}
	at := now
	if !last.IsZero() {
		at = last // the report as of the log's end: the window slides with the lines
	}
	rep := det.Report(at, 50)
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	fmt.Fprintf(out, "lines read: %d, kernel LOG lines: %d, sources: %d\n", lines, parsed, len(rep.Sources))
	printScanReport(out, rep)
	return nil
}

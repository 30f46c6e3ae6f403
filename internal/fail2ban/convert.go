package fail2ban

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"time"

	"github.com/moat-fw/moat/internal/authlog"
)

// Pattern is one failregex converted for moat, or the reason it was not.
type Pattern struct {
	FailRegex string // as fail2ban has it, tags substituted
	Pattern   string // moat's whole-line pattern; "" when refused
	Err       error  // why it was refused
}

// Converted is a filter's failregexes converted to moat patterns.
type Converted struct {
	Filter   *Filter
	Patterns []Pattern
	Notes    []string // what does not carry over, for the whole filter
}

// ConvertFilter turns each failregex of f into a moat pattern: the
// filter's date (datepattern) at the line's start, then the prefregex
// with the failregex at its <F-CONTENT>, translated to RE2 with
// fail2ban's tags replaced by moat's, then checked by
// authlog.CompileRule, the check the daemon runs.
func ConvertFilter(f *Filter) *Converted {
	out := &Converted{Filter: f}
	if len(f.IgnoreRegex) > 0 {
		out.Notes = append(out.Notes, fmt.Sprintf("ignoreregex not carried over (%d patterns): moat rules have no ignore patterns, so lines fail2ban would drop are counted", len(f.IgnoreRegex)))
	}
	if f.MaxLines > 1 {
		out.Notes = append(out.Notes, fmt.Sprintf("maxlines = %d: moat rules match one line; failregexes spanning lines are refused", f.MaxLines))
	}
	date, dateErr := dateRegex(f.DatePattern)
	var pref string
	if f.PrefRegex != "" {
		p, err := translatePython(f.PrefRegex)
		if err != nil {
			dateErr = errors.Join(dateErr, fmt.Errorf("prefregex: %w", err))
		}
		pref = p
	}
	for _, fr := range f.FailRegex {
		p := Pattern{FailRegex: fr}
		if dateErr != nil {
			p.Err = dateErr
		} else {
			p.Pattern, p.Err = convertRegex(date, pref, fr)
		}
		out.Patterns = append(out.Patterns, p)
	}
	return out
}

// Imported counts the patterns that converted.
func (c *Converted) Imported() int {
	n := 0
	for _, p := range c.Patterns {
		if p.Err == nil {
			n++
		}
	}
	return n
}

var (
	leadFlagsRe  = regexp.MustCompile(`^(\(\?[imsU-]+\))*`)
	contentRe    = regexp.MustCompile(`<F-CONTENT>.*</F-CONTENT>`)
	fTagRe       = regexp.MustCompile(`<(/?)F-([A-Z0-9_\-]+)(/?)>`)
	hostTagRe    = regexp.MustCompile(`<(?:HOST|ADDR)>`)
	ipTagRe      = regexp.MustCompile(`<(?:IP4|IP6)>`)
	refusedTagRe = regexp.MustCompile(`<(DNS|CIDR|SUBNET|SKIPLINES)>`)
)

// stripAnchors removes a leading ^ (after flags) and a trailing
// unescaped $ from a Go pattern, saying which were there.
func stripAnchors(p string) (flags, body string, start, end bool) {
	flags = leadFlagsRe.FindString(p)
	body = p[len(flags):]
	// Filters nest prefixes that each start with ^ ("^^..."): all of
	// them anchor at the same place.
	for strings.HasPrefix(body, "^") || strings.HasPrefix(body, `\A`) {
		body, start = strings.TrimPrefix(strings.TrimPrefix(body, "^"), `\A`), true
	}
	if strings.HasSuffix(body, "$") && !strings.HasSuffix(body, `\$`) {
		body, end = body[:len(body)-1], true
	} else if strings.HasSuffix(body, `\z`) {
		body, end = body[:len(body)-2], true
	}
	return flags, body, start, end
}

// topAlternation reports whether a Go pattern is an alternation at its
// top level, where stripping or adding anchors would change only one
// branch.
func topAlternation(p string) bool {
	re, err := syntax.Parse(strings.NewReplacer("<HOST>", "h").Replace(p), syntax.Perl)
	return err == nil && re.Op == syntax.OpAlternate
}

func convertRegex(date, pref, fr string) (string, error) {
	switch {
	case strings.Contains(fr, "<SKIPLINES>") || strings.Contains(fr, `\n`):
		return "", errors.New("spans several lines (<SKIPLINES> or \\n): moat rules match one line")
	case strings.Contains(fr, "<F-NOFAIL>") || strings.Contains(fr, "<F-MLFFORGET>") || strings.Contains(fr, "<F-MLFGAINED>"):
		return "", errors.New("marks a line for fail2ban's multi-line bookkeeping (<F-NOFAIL>/<F-MLFFORGET>/<F-MLFGAINED>), not a failure")
	}
	if m := refusedTagRe.FindStringSubmatch(fr); m != nil {
		return "", fmt.Errorf("<%s>: moat bans addresses only, at one fixed place", m[1])
	}
	g, err := translatePython(fr)
	if err != nil {
		return "", err
	}
	flags, body, start, end := stripAnchors(g)
	if topAlternation(body) {
		if !start && !end {
			body = "(?:" + body + ")"
		} else {
			return "", errors.New("alternation (a|b) at the top level with anchors: write each branch as its own failregex")
		}
	}
	if !start {
		body = ".*?" + body // fail2ban searches: anything may precede
	}
	if !end {
		body += ".*"
	}
	// The failregex is now anchored at both ends of what it sees (the
	// line less its date, or the prefregex's content).
	line := flags + "^" + body + "$"
	if pref != "" {
		line = flags + body
		if !contentRe.MatchString(pref) {
			return "", errors.New("prefregex has no <F-CONTENT>...</F-CONTENT>")
		}
		line = contentRe.ReplaceAllLiteralString(pref, line)
	}
	lflags, lbody, lstart, lend := stripAnchors(line)
	if !lstart {
		lbody = ".*?" + lbody
	}
	if !lend {
		lbody += ".*"
	}
	// fail2ban cuts only the date out of the line: "[Sun Jan 23 ...] x"
	// reaches the regex as "[] x", which filters match with
	// <__date_ambit>, (?:\[\])?. Put the date back between the brackets.
	dated := date
	if b := strings.TrimPrefix(lbody, `\s*`); strings.HasPrefix(b, `(?:\[\])?`) || strings.HasPrefix(b, `(\[\])?`) {
		lbody = b
	}
	switch {
	case strings.HasPrefix(lbody, `(?:\[\])?`) || strings.HasPrefix(lbody, `(\[\])?`):
		lbody = lbody[strings.Index(lbody, ")?")+2:]
		dated = `(?:\[` + date + `\]|` + date + `)`
	case strings.HasPrefix(lbody, `\[\]`):
		lbody = lbody[len(`\[\]`):]
		dated = `\[` + date + `\]`
	}
	full := "^" + dated + lflags + lbody + "$"
	full, err = moatTags(full)
	if err != nil {
		return "", err
	}
	if _, err := authlog.CompileRule(full); err != nil {
		msg := err.Error()
		if i := strings.Index(msg, "\": "); strings.HasPrefix(msg, "login rule \"") && i > 0 {
			msg = msg[i+3:]
		}
		return "", fmt.Errorf("moat's shape check: %s", msg)
	}
	return full, nil
}

// moatTags replaces fail2ban's tags with moat's: the address tags with
// <HOST>, <F-NAME>...</F-NAME> captures with plain groups (moat keeps
// only the address), <F-ID/> and <F-PORT/> with their expressions.
func moatTags(p string) (string, error) {
	var err error
	p = fTagRe.ReplaceAllStringFunc(p, func(t string) string {
		m := fTagRe.FindStringSubmatch(t)
		name := m[2]
		switch {
		case m[3] == "/": // self-closing <F-ID/>
			switch name {
			case "ID":
				return `\S+`
			case "PORT":
				return `\w+`
			case "IP4", "IP6", "ADDR":
				return "<HOST>"
			}
			err = fmt.Errorf("<F-%s/>: moat bans addresses only", name)
			return t
		case m[1] == "/":
			return ")"
		}
		return "(?:"
	})
	if err != nil {
		return "", err
	}
	// fail2ban's <HOST> and <ADDR> allow [brackets] around the address.
	p = hostTagRe.ReplaceAllLiteralString(p, `\[?<HOST>\]?`)
	p = ipTagRe.ReplaceAllLiteralString(p, `<HOST>`)
	switch n := strings.Count(p, "<HOST>"); {
	case n == 0:
		return "", errors.New("no address on this line (fail2ban takes it from another line with <F-MLFID>): moat rules match one line")
	case n > 1:
		return "", fmt.Errorf("the address tag appears %d times (alternatives): moat needs the address at one fixed place", n)
	}
	return p, nil
}

// Rule is one [[login.rule]] to print.
type Rule struct {
	Name, Source, Pattern string
	MaxRetry              int
	FindTime, BanTime     time.Duration
	Ports                 []string
}

// JailReport is what became of one enabled jail.
type JailReport struct {
	Jail      Jail
	Converted *Converted // nil when the filter could not be read
	Rules     []Rule
	Notes     []string
}

// Result is the whole import.
type Result struct {
	Dir   string
	Jails []JailReport
}

// Import reads dir (a fail2ban configuration directory) and converts
// every enabled jail. servicesFile resolves port names ("/etc/services").
func Import(dir, servicesFile string) (*Result, error) {
	jails, err := LoadJails(dir)
	if err != nil {
		return nil, err
	}
	res := &Result{Dir: dir}
	for _, j := range jails {
		if !j.Enabled {
			continue
		}
		jr := JailReport{Jail: j}
		if j.Filter == "sshd" || j.Name == "sshd" {
			jr.Notes = append(jr.Notes, fmt.Sprintf("not imported: moat reads sshd's log with its own parser; set [login] max_retry = %d, find_time = %q, ban_time = %q to keep the jail's numbers",
				j.MaxRetry, fmtDuration(j.FindTime), fmtDuration(j.BanTime)))
			res.Jails = append(res.Jails, jr)
			continue
		}
		if j.Filter == "" {
			jr.Notes = append(jr.Notes, "not imported: the jail has no filter")
			res.Jails = append(res.Jails, jr)
			continue
		}
		f, err := LoadFilter(dir, j.Filter, j.FilterArgs, j.Backend, j.FilterOpts)
		if err != nil {
			jr.Notes = append(jr.Notes, fmt.Sprintf("not imported: %v", err))
			res.Jails = append(res.Jails, jr)
			continue
		}
		jr.Converted = ConvertFilter(f)
		var sources []string
		switch {
		case strings.HasPrefix(j.Backend, "systemd"):
			jr.Notes = append(jr.Notes, fmt.Sprintf("backend %s (journalmatch %s): moat's rules read log files; the rules below name the jail's logpath, which may not be written", j.Backend, strings.Join(f.JournalMatch, " + ")))
		}
		for _, lp := range j.LogPath {
			if !filepath.IsAbs(lp) {
				jr.Notes = append(jr.Notes, fmt.Sprintf("logpath %q is not an absolute path: skipped", lp))
				continue
			}
			if strings.ContainsAny(lp, "*?[") {
				matches, _ := filepath.Glob(lp)
				if len(matches) == 0 {
					jr.Notes = append(jr.Notes, fmt.Sprintf("logpath %q matches no file here, and moat does not expand globs: edit source", lp))
					sources = append(sources, lp)
					continue
				}
				sources = append(sources, matches...)
				continue
			}
			sources = append(sources, lp)
		}
		if len(sources) == 0 {
			jr.Notes = append(jr.Notes, "no logpath: edit source")
			sources = []string{"/var/log/EDIT-ME.log"}
		}
		ports, pnotes := convertPorts(j.Port, j.Protocol, servicesFile)
		jr.Notes = append(jr.Notes, pnotes...)
		ban := j.BanTime
		if ban < 0 {
			jr.Notes = append(jr.Notes, "bantime is negative (for ever): moat's bans end; [login] ban_time and max_ban_time apply")
			ban = 0
		}
		for _, p := range jr.Converted.Patterns {
			if p.Err != nil {
				continue
			}
			for _, src := range sources {
				jr.Rules = append(jr.Rules, Rule{Name: j.Name, Source: src, Pattern: p.Pattern,
					MaxRetry: j.MaxRetry, FindTime: j.FindTime, BanTime: ban, Ports: ports})
			}
		}
		res.Jails = append(res.Jails, jr)
	}
	return res, nil
}

// convertPorts turns fail2ban's port list (names, numbers, a:b ranges,
// comma separated) into moat port specs. The whole range means no limit.
func convertPorts(port, proto, servicesFile string) ([]string, []string) {
	port = strings.TrimSpace(port)
	if port == "" || port == "0:65535" || port == "1:65535" || port == "all" {
		return nil, nil
	}
	proto = strings.ToLower(strings.TrimSpace(proto))
	if proto != "tcp" && proto != "udp" {
		return nil, []string{fmt.Sprintf("protocol %q: moat's port specs are tcp or udp; ports left out: its bans drop every port", proto)}
	}
	var services map[string]int
	var out []string
	for _, p := range strings.FieldsFunc(port, func(r rune) bool { return r == ',' || r == ' ' }) {
		if p == "ssh" {
			out = append(out, "ssh")
			continue
		}
		from, to, isRange := strings.Cut(p, ":")
		num := func(s string) (int, bool) {
			if n, err := strconv.Atoi(s); err == nil {
				return n, n >= 1 && n <= 65535
			}
			if services == nil {
				services = servicePorts(servicesFile, proto)
			}
			n, ok := services[s]
			return n, ok
		}
		a, ok := num(from)
		if !ok {
			return nil, []string{fmt.Sprintf("port %q: unknown service or port; ports left out", p)}
		}
		if !isRange {
			out = append(out, fmt.Sprintf("%s/%d", proto, a))
			continue
		}
		b, ok := num(to)
		if !ok || b < a {
			return nil, []string{fmt.Sprintf("port range %q: ports left out", p)}
		}
		out = append(out, fmt.Sprintf("%s/%d-%d", proto, a, b))
	}
	return out, nil
}

func fmtDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	case d%time.Second == 0:
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return d.String()
}

// tomlString writes s as a TOML literal string when it can, else as a
// basic string with \ and " escaped.
func tomlString(s string) string {
	if !strings.ContainsAny(s, "'\n\r") {
		return "'" + s + "'"
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`).Replace(s) + `"`
}

// TOML renders the imported rules as [[login.rule]] tables.
func (r *Result) TOML() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# moat import fail2ban %s\n# Check with `moat config check`; see docs/fail2ban-import.md.\n", r.Dir)
	for _, j := range r.Jails {
		fmt.Fprintf(&b, "\n# jail %s", j.Jail.Name)
		if j.Converted != nil {
			fmt.Fprintf(&b, ": filter %s, %d of %d failregexes imported", j.Jail.Filter, j.Converted.Imported(), len(j.Converted.Patterns))
		}
		b.WriteString("\n")
		for _, n := range j.Notes {
			fmt.Fprintf(&b, "# note: %s\n", n)
		}
		for _, rule := range j.Rules {
			fmt.Fprintf(&b, "[[login.rule]]\nname = %s\nsource = %s\npattern = %s\n", strconv.Quote(rule.Name), tomlString(rule.Source), tomlString(rule.Pattern))
			if rule.MaxRetry > 0 {
				fmt.Fprintf(&b, "max_retry = %d\n", rule.MaxRetry)
			}
			if rule.FindTime > 0 {
				fmt.Fprintf(&b, "find_time = %q\n", fmtDuration(rule.FindTime))
			}
			if rule.BanTime > 0 {
				fmt.Fprintf(&b, "ban_time = %q\n", fmtDuration(rule.BanTime))
			}
			if len(rule.Ports) > 0 {
				q := make([]string, len(rule.Ports))
				for i, p := range rule.Ports {
					q[i] = strconv.Quote(p)
				}
				fmt.Fprintf(&b, "ports = [%s]\n", strings.Join(q, ", "))
			}
		}
	}
	return b.String()
}

// Report is the per-jail, per-filter account of what was not converted
// and why, for stderr.
func (r *Result) Report() string {
	var b strings.Builder
	for _, j := range r.Jails {
		fmt.Fprintf(&b, "jail %s", j.Jail.Name)
		if c := j.Converted; c != nil {
			fmt.Fprintf(&b, " (filter %s): %d of %d failregexes imported, %d rules\n", j.Jail.Filter, c.Imported(), len(c.Patterns), len(j.Rules))
			for _, n := range c.Notes {
				fmt.Fprintf(&b, "  note: %s\n", n)
			}
			for i, p := range c.Patterns {
				if p.Err != nil {
					fmt.Fprintf(&b, "  failregex %d not imported: %v\n    %s\n", i+1, p.Err, p.FailRegex)
				}
			}
		} else {
			b.WriteString(":\n")
		}
		for _, n := range j.Notes {
			fmt.Fprintf(&b, "  %s\n", n)
		}
	}
	if len(r.Jails) == 0 {
		b.WriteString("no enabled jail\n")
	}
	return b.String()
}

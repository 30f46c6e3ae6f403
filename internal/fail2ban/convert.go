package fail2ban

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moat-fw/moat/internal/authlog"
)

// Pattern is one failregex converted for moat, or the reason it was not.
type Pattern struct {
	FailRegex string // as fail2ban has it, tags substituted
	// Moat holds moat's whole-line patterns: one, or one per place the
	// failregex's alternatives put the address (moat wants <HOST> at one
	// fixed place). Empty when refused.
	Moat []string
	// Marks says, for each of Moat, what fail2ban's multi-line
	// bookkeeping tags made of it: the [[login.rule]]'s kind and forget.
	Marks []Marks
	Err   error // why it (or some of its alternatives) was refused
}

// Marks are a rule's kind and forget, from fail2ban's <F-NOFAIL>,
// <F-MLFGAINED> and <F-MLFFORGET> (see docs/login-rules.md, "Failures
// spread over lines").
type Marks struct {
	Kind   string // "" (a failure), "note" or "success"
	Forget bool
}

// Converted is a filter's failregexes converted to moat patterns.
type Converted struct {
	Filter   *Filter
	Patterns []Pattern
	Notes    []string // what does not carry over, for the whole filter
	// Relies says which of the service's own settings on this host the
	// imported failregexes rely on ("" for none): the rules carry it as
	// a comment, as it holds only until those settings change.
	Relies string
}

// ConvertFilter turns each failregex of f into moat patterns: the
// filter's date (datepattern) at the line's start, then the prefregex
// with the failregex at its <F-CONTENT>, translated to RE2 with
// fail2ban's tags replaced by moat's, then checked by
// authlog.CompileRule, the check the daemon runs.
//
// Some narrowings are safe only under a service's own settings
// (ServiceSettings, dovecot's); s answers for this host, and a nil s
// refuses them.
func ConvertFilter(f *Filter, s ServiceSettings) *Converted {
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
	pref = servicePrefix(f.Name, pref)
	var gated []string
	for i, fr := range f.FailRegex {
		p := Pattern{FailRegex: fr}
		need, gateErr := serviceGate(f.Name, s, fr)
		switch {
		case dateErr != nil:
			p.Err = dateErr
		case gateErr != nil:
			p.Err = fmt.Errorf("it is safe from addresses the client writes only under some of %s's settings (%s); here: %w", f.Name, need, gateErr)
		default:
			if need != "" {
				// Numbered from 1, as the report numbers them.
				gated = append(gated, fmt.Sprintf("%d (%s)", i+1, need))
			}
			p.Moat, p.Err = convertRegex(date, serviceContent(f.Name, pref, fr), serviceFields(f.Name, fr))
			p.Moat, p.Marks, p.Err = bookkeeping(p.Moat, p.Err)
		}
		out.Patterns = append(out.Patterns, p)
	}
	if len(gated) > 0 {
		out.Relies = fmt.Sprintf("failregexes %s are imported because %s's settings on this host keep them from taking an address the client wrote: import again after changing those settings", strings.Join(gated, ", "), f.Name)
	}
	out.dropUnusedIDs()
	return out
}

// Placeholders for fail2ban's bookkeeping tags while a failregex is
// converted: named groups, which the parser keeps where they are.
var markGroups = []struct{ tag, group string }{
	{"NOFAIL", "moatnofail"},
	{"MLFFORGET", "moatforget"},
	{"MLFGAINED", "moatgained"},
}

// bookkeeping turns the bookkeeping tags left in converted patterns into
// each one's Marks, and refuses the patterns where moat cannot carry
// them exactly: a tag inside an alternative or an optional part (whether
// the line records or fails would depend on the way the regex went), a
// tag without fail2ban's connection id, a note without an address.
func bookkeeping(pats []string, err error) ([]string, []Marks, error) {
	var out []string
	var marks []Marks
	errs := []error{err}
	for _, p := range pats {
		m, q, err := marksOf(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out, marks = append(out, q), append(marks, m)
	}
	err = errors.Join(errs...)
	if len(out) > 0 && len(out) < len(pats) {
		err = fmt.Errorf("some alternatives: %w", err)
	}
	return out, marks, err
}

// hoistMarks checks that the bookkeeping tags of a converted pattern
// (the groups fTags made of them) are on every way through it, and moves
// each to an empty group at the pattern's start, where the rewriting of
// the address's alternatives (hostVariants) keeps it, for bookkeeping to
// read. A tag wrapped around <HOST> would otherwise be opened with the
// groups that hold the address.
func hoistMarks(p string) (string, error) {
	if !strings.Contains(p, "(?P<moat") {
		return p, nil
	}
	tree, err := syntax.Parse(p, syntax.Perl)
	if err != nil {
		return "", fmt.Errorf("as Go RE2: %w", err)
	}
	var hoisted string
	for _, g := range markGroups {
		named := func(re *syntax.Regexp) bool { return re.Op == syntax.OpCapture && re.Name == g.group }
		if !holds(tree, named) {
			continue
		}
		if !unconditional(tree, named) {
			return "", fmt.Errorf("<F-%s> is inside an alternative or an optional part: whether fail2ban takes the line as a failure depends on the way its regex went, which a moat rule cannot say", g.tag)
		}
		p = strings.ReplaceAll(p, "(?P<"+g.group+">", "(?:")
		hoisted += "(?P<" + g.group + ">)"
	}
	rest, ok := strings.CutPrefix(p, "^")
	if !ok {
		return "", errors.New("the converted pattern does not start with ^") // convertBranch writes it so
	}
	return "^" + hoisted + rest, nil
}

// marksOf reads and removes what hoistMarks left in a pattern.
func marksOf(p string) (Marks, string, error) {
	var m Marks
	has := map[string]bool{}
	for _, g := range markGroups {
		empty := "(?P<" + g.group + ">)"
		if strings.Contains(p, empty) {
			has[g.tag] = true
			p = strings.ReplaceAll(p, empty, "")
		}
	}
	if len(has) > 0 && !strings.Contains(p, "(?P<id>") {
		return m, "", errors.New("multi-line bookkeeping tags (<F-NOFAIL>, <F-MLFFORGET>, <F-MLFGAINED>) without <F-MLFID>: there is no connection id to keep")
	}
	switch {
	case has["MLFGAINED"]:
		m.Kind = "success"
	case has["NOFAIL"]:
		m.Kind = "note"
	}
	m.Forget = has["MLFFORGET"]
	if m.Kind == "note" && !m.Forget && !strings.Contains(p, "<HOST>") {
		return m, "", errors.New("<F-NOFAIL> on a line without an address: it records nothing moat keeps")
	}
	return m, p, nil
}

// unconditional reports whether a part that is is on every way through
// re: reached through sequences and groups only.
func unconditional(re *syntax.Regexp, is func(*syntax.Regexp) bool) bool {
	if is(re) {
		return true
	}
	switch re.Op {
	case syntax.OpConcat, syntax.OpCapture:
		for _, s := range re.Sub {
			if unconditional(s, is) {
				return true
			}
		}
	}
	return false
}

// dropUnusedIDs removes the connection id from a filter's patterns when
// its bookkeeping cannot change what they count: every pattern a failure
// with its own address, none that records or forgets (sendmail-auth's
// <F-MLFID> in its prefregex). The id only slows the match then: a rule
// with an id takes the regexp's slower path (authlog.Rule.MatchLine).
func (c *Converted) dropUnusedIDs() {
	for _, p := range c.Patterns {
		for i, q := range p.Moat {
			if p.Marks[i] != (Marks{}) || !strings.Contains(q, "<HOST>") {
				return
			}
		}
	}
	for _, p := range c.Patterns {
		for i := range p.Moat {
			p.Moat[i] = strings.ReplaceAll(p.Moat[i], "(?P<id>", "(?:")
		}
	}
}

// Imported counts the patterns that converted.
func (c *Converted) Imported() int {
	n := 0
	for _, p := range c.Patterns {
		if len(p.Moat) > 0 {
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

// convertRegex converts one failregex into moat's whole-line patterns.
// fail2ban's regex is Python's, searched in the line less its date; an
// alternation at its top level (^a|b$) is one regex per branch, each with
// its own anchors; an address that alternatives put at different places
// ((?:IPv6:<IP6>|<IP4>)) gives one pattern per place. Each pattern passes
// the shape check on its own. The error names what was refused, also
// when some branches were imported.
func convertRegex(date dates, pref, fr string) ([]string, error) {
	switch {
	case strings.Contains(fr, "<SKIPLINES>") || hasNewline(fr):
		return nil, errors.New("spans several lines (<SKIPLINES> or \\n): moat rules match one line")
	}
	if m := refusedTagRe.FindStringSubmatch(fr); m != nil {
		return nil, fmt.Errorf("<%s>: moat bans addresses only, at one fixed place", m[1])
	}
	g, err := translatePython(fr)
	if err != nil {
		return nil, err
	}
	if err := reservedGroups(g + pref); err != nil {
		return nil, err
	}
	// fail2ban turns <F-NAME>...</F-NAME> into a group before it compiles
	// the regex: "<F-USER>\S+|.*?</F-USER>" is an alternation inside a
	// group, not at the top level.
	if g, err = fTags(g); err != nil {
		return nil, err
	}
	flags := leadFlagsRe.FindString(g)
	var out []string
	var errs []error
	for _, branch := range splitTop(g[len(flags):]) {
		ps, err := convertBranch(date, pref, flags+branch)
		out = append(out, ps...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 && len(out) > 0 {
		return out, fmt.Errorf("some alternatives: %w", errors.Join(errs...))
	}
	return out, errors.Join(errs...)
}

// hasNewline reports whether the regex p has a \n escape (a newline:
// fail2ban joins maxlines lines with one). A backslash escaped by another
// one is a literal backslash: apache-noscript's (?:\\n)? matches the two
// characters "\n" apache writes in "Got error 'Primary script unknown\n'",
// on one line.
func hasNewline(p string) bool {
	for i := 0; i < len(p)-1; i++ {
		if p[i] == '\\' {
			if p[i+1] == 'n' {
				return true
			}
			i++ // the escaped character, a backslash included
		}
	}
	return false
}

// reservedGroupRe finds groups whose names mean something to moat: id (the
// connection id, which only <F-MLFID> may write) and moat... (the
// converter's own placeholders).
var reservedGroupRe = regexp.MustCompile(`\(\?P?<(id|moat[a-z]*)>`)

// reservedGroups refuses a filter's own group of a name moat reserves.
func reservedGroups(p string) error {
	if m := reservedGroupRe.FindStringSubmatch(p); m != nil {
		return fmt.Errorf("a group named %q: moat reserves the name (the connection id comes from <F-MLFID> only)", m[1])
	}
	return nil
}

// splitTop splits a Go pattern at the "|" of its top level.
func splitTop(p string) []string {
	var out []string
	depth, inClass, start := 0, false, 0
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '\\':
			i++
		case inClass:
			if c == ']' {
				inClass = false
			}
		case c == '[':
			inClass = true
			// "]" first in a class is a literal.
			if strings.HasPrefix(p[i+1:], "^]") {
				i += 2
			} else if strings.HasPrefix(p[i+1:], "]") {
				i++
			}
		case c == '(':
			depth++
		case c == ')':
			depth--
		case c == '|' && depth == 0:
			out = append(out, p[start:i])
			start = i + 1
		}
	}
	return append(out, p[start:])
}

// convertBranch converts a failregex (translated, without a top-level
// alternation) into moat's patterns.
func convertBranch(date dates, pref, g string) ([]string, error) {
	flags, body, start, end := stripAnchors(g)
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
			return nil, errors.New("prefregex has no <F-CONTENT>...</F-CONTENT>")
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
	var full string
	if b, ok := auditDated(lbody); date.epoch && ok {
		full = "^" + lflags + b + "$"
	} else if i := strings.Index(lbody, `\[\]`); date.mid != "" && i > 0 && !strings.HasPrefix(strings.TrimPrefix(lbody, `\s*`), `(?:\[\])?`) && !strings.HasPrefix(strings.TrimPrefix(lbody, `\s*`), `(\[\])?`) {
		// A date in the middle of the line (an access log's
		// "- - [18/Nov/2018:...]") reaches the failregex as "[]" there.
		full = "^" + lflags + lbody[:i] + `\[` + date.mid + `\]` + lbody[i+len(`\[\]`):] + "$"
	} else {
		// With no "[]" in the failregex, fail2ban's ^[^\[]*\[({DATE})
		// still cuts the date after the line's first '[', inside what
		// the failregex's open parts match (apache-badbots' `.*`):
		// afterFirstBracket writes it there exactly. (Not for
		// fail2ban's default dates, which it searches anywhere.)
		var mid string
		if date.mid != "" && !date.anywhere {
			if m, ok := afterFirstBracket(lbody, date.mid); ok {
				mid = lflags + m
			}
		}
		switch {
		case date.start == "" && mid == "":
			return nil, errors.New("the datepattern takes the date from the first [brackets] of the line, and this failregex has no [] where it was")
		case date.start == "":
			full = "^" + mid + "$"
		default:
			body := startDated(date.start, lflags, lbody)
			if m := leadingBracket.FindStringSubmatch(lbody); date.anywhere && m != nil {
				// fail2ban searches its default dates anywhere:
				// Domino writes "[pid:tid] 22-06-2014 09:56:12 ...",
				// which reaches the failregex as "[pid:tid]  ...",
				// taken by its optional leading "(?:\[…\])?\s*".
				// The date may also follow that bracket.
				body = "(?:" + body + "|" + lflags + m[1] + `\s*` + date.start + `\s*` + lbody[len(m[0]):] + ")"
			}
			full = "^" + body + "$"
			if mid != "" {
				full = "^(?:" + body + "|" + mid + ")$"
			}
		}
	}
	full, err := fTags(narrowPrefix(full))
	if err != nil {
		return nil, err
	}
	if full, err = hoistMarks(full); err != nil {
		return nil, err
	}
	// Some ways through the regex may be refused (a lookahead of no
	// fixed words) while others convert.
	variants, err := hostVariants(full)
	var out []string
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	for _, v := range variants {
		v = restoreBackrefs(v)
		if _, err := authlog.CompileRule(v); err != nil {
			msg := err.Error()
			if i := strings.Index(msg, "\": "); strings.HasPrefix(msg, "login rule \"") && i > 0 {
				msg = msg[i+3:]
			}
			errs = append(errs, fmt.Errorf("moat's shape check: %s", msg))
			continue
		}
		out = append(out, v)
	}
	return out, errors.Join(errs...)
}

// postfixClient is postfix's "client name[address]" as fail2ban's postfix
// filter matches it, and postfixClientNarrow the same without white
// space in the name. The name is open text there, so the shape check
// refuses every postfix failregex (the client's HELO, sender and
// recipient follow the address). Postfix's smtpd logs a name only after
// valid_hostname() accepted it (letters, digits, "-", "_", ".") and
// "unknown" otherwise, so the narrow form matches every line postfix
// writes; it is applied to postfix's filters only, where that holds.
const (
	postfixClient       = `[^[]*\[<HOST>\]`
	postfixClientNarrow = `[^[\s]*\[<HOST>\]`
)

// leadingBracket is a failregex that starts with an optional bracketed
// field (not the empty "[]" of a date) and white space, (?:\[…\])?\s*,
// the bracket in group 1.
var leadingBracket = regexp.MustCompile(`^\(\?:(\\\[[^()|]+\\\])\)\?\\s\*`)

// startDated is a failregex body with the date at the line's start, in
// the brackets fail2ban's <__date_ambit> leaves when it has them.
func startDated(date, lflags, lbody string) string {
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
	return dated + lflags + lbody
}

// serviceFields narrows, in the failregex of filter name, the fields the
// service itself writes without white space that fail2ban matches more
// loosely (see postfixClient).
func serviceFields(name, fr string) string {
	switch {
	case name == "postfix" || strings.HasPrefix(name, "postfix-"):
		return strings.ReplaceAll(fr, postfixClient, postfixClientNarrow)
	case name == "nginx-http-auth" && strings.HasSuffix(fr, nginxHandshake):
		return fr + nginxHandshakeEnd
	case name == "domino-smtp":
		return strings.ReplaceAll(fr, dominoID, dominoIDNarrow)
	case name == "dovecot" && strings.Contains(fr, dovecotReason):
		fr = strings.ReplaceAll(fr, dovecotReason, dovecotReasonNarrow)
		fr = strings.ReplaceAll(fr, dovecotUserTagged, dovecotUserTaggedNarrow)
		return strings.ReplaceAll(fr, dovecotUser, dovecotUserNarrow)
	case name == "exim" && strings.HasSuffix(fr, eximAuthEnd):
		fr = strings.ReplaceAll(fr, eximQuoted, eximQuotedRE2)
		return strings.ReplaceAll(fr, eximSender, "")
	}
	return fr
}

// nginxHandshake ends nginx-http-auth's failregex for a failed TLS
// handshake (mode aggressive), and nginxHandshakeEnd is what nginx writes
// after the address on that line. fail2ban leaves the line open after the
// address, and the OpenSSL reason before it is open text too, so the shape
// check refused the failregex. nginx logs a connection that has no request
// yet (a handshake) as "..., client: ADDR, server: LISTEN" (the listening
// socket's address, ngx_http_log_error) and nothing after it: the request
// line, host and referrer, which the client writes, come only with a
// request. Pinning the end to that text matches every such line nginx
// writes and leaves the client no field after the address.
const (
	nginxHandshake    = `[^,]*, client: <HOST>`
	nginxHandshakeEnd = `, server: \S+\s*$`
)

// dominoID is a bracketed Domino process and thread id ("[28325:00010-
// 3735542592]", "[000527:000013-0000001227564800]") as fail2ban's
// domino-smtp filter matches it, and dominoIDNarrow the same without white
// space, which Domino does not write there. fail2ban's form makes the
// start of "SMTP Server [id] Connection from [ADDR] rejected for policy
// reasons." open text, and the line is open after it (Domino appends the
// reason), so the shape check refused it although nothing before the
// address is the client's.
const (
	dominoID       = `\[[^\]]+\]`
	dominoIDNarrow = `\[[^\]\s]+\]`
)

// dovecot's failregexes for a login process's disconnect after failed
// (1) or no (4, mode aggressive) logins, "REASON (EXTRA): user=<NAME>,
// method=MECH, rip=ADDR, lip=..., ...", leave two open parts before the
// address: the reason (fail2ban's _bypass_reject_reason, dovecotReason)
// and the user name (user=<[^>]*>), with open text after it too, so the
// shape check refused them. The narrow forms keep to what dovecot writes
// there, per its login-common sources (2.2: client-common.c client_destroy
// and client_get_extra_disconnect_reason; 2.3: client-common.c
// client_disconnect, client_idle_disconnect_timeout, client_read,
// clients_destroy_all, client_destroy_oldest, client_start_tls;
// imap-login-client.c "Disconnected: Too many invalid commands" and
// "Aborted login" on LOGOUT): the login process logs
// reason + " " + client_get_extra_disconnect_reason(), whose text is its
// own ("(auth failed, %u attempts in %u secs)" and fixed strings), then
// ": " and log_format_elements. The reasons are fixed strings, except
// 2.3's "Connection closed: " + the stream's error, io_stream_get_
// disconnect_reason(): read()'s strerror or OpenSSL's reason strings,
// library text of which the narrow form takes the common ones by name
// (others are missed). The IMAP parser's fatal errors
// ("Disconnected: " + imap_parser_get_error(), lib-imap imap-parser.c)
// are fixed strings too, but only "Literal size too large" is fatal there.
// The user name is the client's (%u, str_sanitize()d: control characters
// only, so ">", "," and spaces stay): the narrow form takes it without
// white space, which makes a name with spaces miss; but a client can end
// a short name with ">" itself and go on with ", method=..., rip=FAKE".
// What stops that fake is what dovecot writes after the name, which
// depends on login_log_format_elements: ConvertFilter imports the
// narrowed failregexes only where dovecotLogSafe accepts this host's
// setting (see dovecotGate).
const (
	dovecotReason       = `(?:: (?:\w+\([^\):]*\) \w+|[^\(]+))*`
	dovecotReasonNarrow = `(?:: (?:Inactivity(?: during authentication)?|Too many invalid commands\.?|Connection queue full|Shutting down|Input buffer full|TLS initialization failed\.|Literal size too large|` +
		`Connection closed(?:: (?:(?:read|write)\(size=\d+\) failed|SSL_(?:accept|read|write)\(\) syscall failed): (?:Connection reset by peer|Broken pipe|Connection timed out)` +
		`|: SSL_accept\(\) failed: error:[0-9A-Fa-f]+:SSL routines:\w*:(?:wrong version number|unknown protocol|unsupported protocol|http request|no shared cipher|version too low|no protocols available))?))?`
	dovecotUserTagged       = `(?: user=<<F-USER>[^>]*</F-USER>>,)?`
	dovecotUserTaggedNarrow = `(?: user=<<F-USER>[^>\s]*</F-USER>>,)?`
	dovecotUser             = `(?: user=<[^>]*>,)?`
	dovecotUserNarrow       = `(?: user=<[^>\s]*>,)?`
)

// serviceContent narrows the prefregex pref for the failregex fr of filter
// name where that failregex's own narrowing needs it: dovecot's prefix
// has "auth-worker(PID)" and "conn unix:auth-worker (pid=P,uid=U)" parts
// (auth-worker-server.c), fail2ban's \([^\)]+\), which may hold spaces
// for it. Narrowed, failregex 3's passdb(\S*,<HOST>) passes the shape
// check, and the \S* name is the client's: it is imported only where
// dovecotNamesSafe accepts this host's auth_username_* settings.
func serviceContent(name, pref, fr string) string {
	if name == "dovecot" {
		return strings.ReplaceAll(pref, dovecotWorkerParen, dovecotWorkerParenNarrow)
	}
	return pref
}

// serviceGate says which of the service's own settings a failregex's
// narrowing relies on ("" for none), and whether this host has them so.
func serviceGate(name string, s ServiceSettings, fr string) (need string, err error) {
	if name != "dovecot" {
		return "", nil
	}
	return dovecotGate(s, fr)
}

const (
	// dovecotPassdb marks failregex 3: the auth process's
	// "passdb(user,addr[,session]): unknown user|...".
	dovecotPassdb = `\(\S*,<HOST>(?:,\S*)?\): (?:[Uu]nknown user`

	dovecotWorkerParen       = `\([^\)]+\)`
	dovecotWorkerParenNarrow = `\([^\)\s]+\)`
)

// exim's failregex for "SMTP protocol error in "CMD" HOST AUTH command
// used when not advertised" (eximAuthEnd) converts with two exact
// rewrites. Its quoted command, eximQuoted, has a lookahead that RE2
// lacks; the lookahead only asks that a quote come next, and what comes
// next in every way through the pattern (another turn of the repetition,
// or the closing quote) starts with one, so eximQuotedRE2, the same
// without it, matches the same lines and takes the same address (a way
// the lookahead would cut fails one character later). And exim writes
// that line with synprot_error, "SMTP %s error in \"%s\" %s %s" with
// the command, host_and_ident(TRUE) (H=name (helo) [addr]:port, I=, U=)
// and the message: never a sender, so fail2ban's optional F=<sender>
// (eximSender, from exim-common.conf's host suffix, whose local part is
// open text) is dropped. The line is then fixed text from the address to
// its end, and the command the client writes stands only before it.
const (
	eximAuthEnd   = `\sAUTH command used when not advertised\s*$`
	eximQuoted    = `(?:"+[^"]*(?="))*?"`
	eximQuotedRE2 = `(?:"+[^"]*)*?"`
	eximSender    = `(?: F=(?:<>|[^@]+@\S+))?`
)

// servicePrefix narrows, in the prefregex of filter name, the log prefix
// fields the service itself writes without white space that fail2ban
// matches more loosely (see asteriskSource).
func servicePrefix(name, pref string) string {
	if name == "asterisk" {
		return strings.ReplaceAll(pref, asteriskSource, asteriskSourceNarrow)
	}
	return pref
}

// asteriskSource is the "file.c:line function:" part of asterisk's log
// prefix as fail2ban's asterisk filter has it (log_prefix), and
// asteriskSourceNarrow the same without white space in the names.
// Asterisk's logger writes there a source file name and a C function
// name, or, for the dialplan's Log() application, "Ext. EXTEN:PRIORITY in
// @ CONTEXT:" (fail2ban's samples have both): only the "Ext. " and "@ "
// the logger adds hold a space. fail2ban's form lets the optional
// "function:" part run over white space up to any colon, so the
// failregex's content may start inside a field the client wrote: a SIP
// From display name "x: 192.0.2.66 failed to authenticate" on a PJSIP
// "Request ... from '...' failed for ..." line makes fail2ban ban
// 192.0.2.66 (testdata/forged/asterisk.log, TestForgeableFilters). The
// narrow form matches the prefixes asterisk writes and starts the content
// where asterisk's message starts.
const (
	asteriskSource       = ` [^:]+:\d*(?:(?: in)? [^:]+:)? `
	asteriskSourceNarrow = ` (?:Ext\. )?[^:\s]+:\d*(?:(?: in)? (?:@ )?[^:\s]+:)? `
)

// syslogLevel is fail2ban's __prefix_line part for a syslog
// "<facility.level>" before the host name (common.conf), and
// syslogLevelNarrow the same without white space or ">" inside the
// brackets. fail2ban's form lets the brackets span words ("<a b.c d>"),
// which makes everything before <HOST> open text for the shape check;
// a facility and level never hold a space, so the narrow form matches
// the same syslog lines and leaves no room for a client's words.
const (
	syslogLevel       = `<[^.]+\.[^.]+>`
	syslogLevelNarrow = `<[^.>\s]+\.[^.>\s]+>`
)

// narrowPrefix narrows fail2ban's syslog prefix (see syslogLevel). The
// result matches a subset of the lines, so it can take no address the
// original would not; the shape check still judges it.
func narrowPrefix(p string) string {
	return strings.ReplaceAll(p, syslogLevel, syslogLevelNarrow)
}

// fTags replaces fail2ban's <F-NAME>...</F-NAME> captures with plain
// groups (moat keeps only the address), <F-ID/> and <F-PORT/> with their
// expressions, <F-IP4/>... with <HOST>.
func fTags(p string) (string, error) {
	var err error
	p = fTagRe.ReplaceAllStringFunc(p, func(t string) string {
		m := fTagRe.FindStringSubmatch(t)
		name := m[2]
		switch {
		case name == "CONTENT":
			return t // the prefregex's slot, filled by convertBranch
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
		case name == "MLFID":
			return "(?P<id>" // the connection id: see bookkeeping
		}
		for _, g := range markGroups {
			if name == g.tag {
				return "(?P<" + g.group + ">"
			}
		}
		return "(?:"
	})
	return p, err
}

// hostPlaceholder stands for <HOST> while a pattern is parsed: a named
// group, so that the parser neither merges it with the text around it
// nor factors it out of alternatives.
const hostPlaceholder = `(?P<moathostplaceholder>0)`

// maxVariants bounds the patterns one failregex may become.
const maxVariants = 16

// hostVariants turns fail2ban's address tags (<HOST>, <ADDR>, <IP4>,
// <IP6>) into moat's <HOST>, at one fixed place per pattern: where the
// address sits inside alternatives ((?:IPv6:<IP6>|<IP4>)) or an optional
// group, the pattern is written out once per alternative, an exact
// rewrite (a(b|c)d matches what abd and acd match together). The
// alternatives without an address are dropped: moat bans the address.
func hostVariants(p string) ([]string, error) {
	// fail2ban's <HOST> and <ADDR> allow [brackets] around the address.
	p = hostTagRe.ReplaceAllLiteralString(p, `\[?<HOST>\]?`)
	p = ipTagRe.ReplaceAllLiteralString(p, `<HOST>`)
	n := strings.Count(p, "<HOST>")
	if n == 0 {
		if strings.Contains(p, "(?P<id>") {
			return []string{p}, nil // the address comes from another line of the id
		}
		return nil, errors.New("no address on this line, and no connection id (<F-MLFID>) to take it from another line")
	}
	tree, err := syntax.Parse(strings.ReplaceAll(p, "<HOST>", hostPlaceholder), syntax.Perl)
	if err != nil {
		return nil, fmt.Errorf("as Go RE2: %w", err)
	}
	if tree.Op == syntax.OpConcat && n == 1 && !holds(tree, isLookahead) && !holds(tree, isPositive) {
		for _, s := range tree.Sub {
			if isHost(s) {
				return []string{p}, nil // already at a fixed place
			}
		}
	}
	seqs, err := flatten(tree)
	if err != nil {
		return nil, err
	}
	var out []string
	var errs []error
	seen := map[string]bool{}
	for _, seq := range seqs {
		hosts := 0
		for _, s := range seq {
			if isHost(s) {
				hosts++
			}
		}
		if hosts != 1 {
			continue // no address here (or twice): not a ban
		}
		seq, err := resolveLookaheads(seq)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		v := strings.ReplaceAll(render(seq), hostPlaceholder, "<HOST>")
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		if len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
		return nil, fmt.Errorf("the address tag appears %d times, and no way through the regex passes exactly one: moat needs the address at one fixed place", n)
	}
	return out, errors.Join(errs...)
}

// render writes a way through a pattern as a pattern again: each part
// as Go prints it (with its own flags), an alternation in a group, and
// the anchors as ^ and $, which moat's configuration wants to see at the
// ends of a rule's text.
func render(seq []*syntax.Regexp) string {
	var b strings.Builder
	for _, s := range seq {
		switch s.Op {
		case syntax.OpBeginText:
			b.WriteString("^")
		case syntax.OpEndText:
			b.WriteString("$")
		case syntax.OpAlternate:
			b.WriteString("(?:" + s.String() + ")")
		default:
			b.WriteString(s.String())
		}
	}
	return b.String()
}

func isHost(re *syntax.Regexp) bool {
	return re.Op == syntax.OpCapture && re.Name == "moathostplaceholder"
}

func holdsHost(re *syntax.Regexp) bool { return holds(re, isHost) }

// holds reports whether re or a part of it is one that is.
func holds(re *syntax.Regexp, is func(*syntax.Regexp) bool) bool {
	if is(re) {
		return true
	}
	for _, s := range re.Sub {
		if holds(s, is) {
			return true
		}
	}
	return false
}

// isAtom tells the parts flatten brings to the top: the address and the
// lookaheads (which are rewritten with what follows them).
func isAtom(re *syntax.Regexp) bool { return isHost(re) || isLookahead(re) || isPositive(re) }

// flatten returns the ways through re as sequences of parts in which the
// address and each lookahead, where there are some, are parts of their
// own: alternatives and optional groups that hold them are written out,
// groups that hold them are opened. Other parts are kept as they are.
func flatten(re *syntax.Regexp) ([][]*syntax.Regexp, error) {
	if isAtom(re) || !holds(re, isAtom) {
		return [][]*syntax.Regexp{{re}}, nil
	}
	switch re.Op {
	case syntax.OpConcat:
		out := [][]*syntax.Regexp{nil}
		for _, s := range re.Sub {
			ways, err := flatten(s)
			if err != nil {
				return nil, err
			}
			var next [][]*syntax.Regexp
			for _, a := range out {
				for _, w := range ways {
					next = append(next, append(slices.Clip(a), w...))
				}
			}
			if len(next) > maxVariants {
				return nil, fmt.Errorf("the address sits in more than %d alternatives: moat needs it at one fixed place", maxVariants)
			}
			out = next
		}
		return out, nil
	case syntax.OpCapture:
		return flatten(re.Sub[0])
	case syntax.OpQuest:
		ways, err := flatten(re.Sub[0])
		if err != nil {
			return nil, err
		}
		return append(ways, nil), nil
	case syntax.OpAlternate:
		var out [][]*syntax.Regexp
		for _, s := range re.Sub {
			ways, err := flatten(s)
			if err != nil {
				return nil, err
			}
			out = append(out, ways...)
			if len(out) > maxVariants {
				return nil, fmt.Errorf("the address sits in more than %d alternatives: moat needs it at one fixed place", maxVariants)
			}
		}
		return out, nil
	}
	if !holdsHost(re) {
		if holds(re, isPositive) {
			return nil, errPositive
		}
		return nil, errLookahead // in a repetition: nothing fixed follows it
	}
	return nil, errors.New("the address is inside a repetition: moat needs it at one fixed place")
}

// Rule is one [[login.rule]] to print.
type Rule struct {
	Name, Source, Pattern string
	MaxRetry              int
	FindTime, BanTime     time.Duration
	Ports                 []string
	Marks                 // kind and forget, from fail2ban's bookkeeping tags
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
// every enabled jail. servicesFile resolves port names ("/etc/services");
// settings answers for the services' own settings (ConvertFilter).
func Import(dir, servicesFile string, settings ServiceSettings) (*Result, error) {
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
		jr.Converted = ConvertFilter(f, settings)
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
			for i, pat := range p.Moat {
				for _, src := range sources {
					jr.Rules = append(jr.Rules, Rule{Name: j.Name, Source: src, Pattern: pat,
						MaxRetry: j.MaxRetry, FindTime: j.FindTime, BanTime: ban, Ports: ports, Marks: p.Marks[i]})
				}
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
		if j.Converted != nil && j.Converted.Relies != "" {
			fmt.Fprintf(&b, "# note: %s\n", j.Converted.Relies)
		}
		for _, n := range j.Notes {
			fmt.Fprintf(&b, "# note: %s\n", n)
		}
		for _, rule := range j.Rules {
			fmt.Fprintf(&b, "[[login.rule]]\nname = %s\nsource = %s\npattern = %s\n", strconv.Quote(rule.Name), tomlString(rule.Source), tomlString(rule.Pattern))
			if rule.Kind != "" {
				fmt.Fprintf(&b, "kind = %q\n", rule.Kind)
			}
			if rule.Forget {
				b.WriteString("forget = true\n")
			}
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
			if c.Relies != "" {
				fmt.Fprintf(&b, "  note: %s\n", c.Relies)
			}
			for i, p := range c.Patterns {
				if p.Err == nil {
					continue
				}
				// errors.Join writes one reason a line.
				why := strings.ReplaceAll(p.Err.Error(), "\n", "; ")
				if len(p.Moat) > 0 {
					fmt.Fprintf(&b, "  failregex %d partly imported (%d patterns): %s\n    %s\n", i+1, len(p.Moat), why, p.FailRegex)
				} else {
					fmt.Fprintf(&b, "  failregex %d not imported: %s\n    %s\n", i+1, why, p.FailRegex)
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

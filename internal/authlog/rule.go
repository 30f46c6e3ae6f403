package authlog

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Rule is a compiled generic login rule: a Go regexp matching one whole
// log line of a service other than sshd, with the client's address at
// <HOST>. It is safe for concurrent use.
type Rule struct {
	pattern string
	re      *regexp.Regexp
	host    int // submatch index of <HOST>, or -1 (a rule with an id only)
	user    int // submatch index of <USER>, or -1
	id      int // submatch index of (?P<id>...), or -1
	// need is text every matching line contains (the literals among the
	// pattern's top-level parts, longest first): a line without one of
	// them is refused by substring searches, far cheaper than the regexp,
	// whose long alternations (fail2ban's dates) make it slow on every line.
	need [][]byte
	// split is the faster path to the regexp's answer (rulematch.go),
	// built on first use; nil when the pattern does not suit it.
	splitOnce sync.Once
	split     *splitMatcher
	// refs are the pattern's backreferences (backref.go): a match
	// counts only where each copy equals its group. pins holds the
	// pattern with groups pinned to texts (see pinnedMatch).
	refs []backref
	pins pins
}

// hostRE is what <HOST> stands for: a strict IPv4 address, or something
// shaped like IPv6 (parseAddr then decides), with an optional zone.
const (
	octetRE = `(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])`
	ipv4RE  = octetRE + `(?:\.` + octetRE + `){3}`
	ipv6RE  = `(?:[0-9A-Fa-f]{0,4}:){2,7}(?:` + ipv4RE + `|[0-9A-Fa-f]{1,4})?(?:%[0-9A-Za-z_.@-]+)?`
	hostRE  = `(?P<host>` + ipv4RE + `|` + ipv6RE + `)`
	userRE  = `(?P<user>.*?)`
)

// errUnanchored explains the one rule every pattern must follow.
var errUnanchored = errors.New("it must match the whole line, from ^ to $: " +
	"with either end open, text the client controls (a user name, a URL) " +
	"can carry its own \"from 1.2.3.4\" and get that address banned. " +
	"Start the pattern with ^ and end it with $")

// idGroupRe finds the connection id's group, (?P<id>...) or (?<id>...).
var idGroupRe = regexp.MustCompile(`\(\?P?<id>`)

// HasIDGroup reports whether a rule pattern marks a connection id,
// (?P<id>...): config's checks of kind and forget ask it before the
// pattern compiles.
func HasIDGroup(pattern string) bool { return idGroupRe.MatchString(pattern) }

// maxIDLen bounds an id: a longer one is not taken (see MatchLine).
const maxIDLen = 256

// CompileRule compiles a generic rule. pattern is a Go regexp
// (https://golang.org/s/re2syntax) that contains <HOST> exactly once and
// <USER> at most once, starts with ^ and ends with $, and does not let
// open-ended text ("(.*)", "(.+)", <USER>) stand on both sides of <HOST>.
// A rule may also mark a connection id with a group named id, (?P<id>...),
// under the same shape check, with no open text inside; a rule with an id
// may leave <HOST> out: its address comes from another line of that id
// (package login keeps the table). (?P=name) repeats the text of the
// group named name, as in Python (backref.go). See docs/login-rules.md.
func CompileRule(pattern string) (*Rule, error) {
	ids := len(idGroupRe.FindAllStringIndex(pattern, -1))
	if ids > 1 {
		return nil, fmt.Errorf("login rule %q: the group id appears %d times: at most once, where the service writes the connection's id", pattern, ids)
	}
	if n := strings.Count(pattern, "<HOST>"); n > 1 || n == 0 && ids == 0 {
		return nil, fmt.Errorf("login rule %q: <HOST> appears %d times: it must appear exactly once, where the service writes the client's address "+
			"(or not at all in a rule with a connection id, (?P<id>...), whose address another line of that id gives)", pattern, n)
	}
	if n := strings.Count(pattern, "<USER>"); n > 1 {
		return nil, fmt.Errorf("login rule %q: <USER> appears %d times: at most once", pattern, n)
	}
	if strings.Contains(pattern, "(?P<host>") || strings.Contains(pattern, "(?P<user>") ||
		strings.Contains(pattern, "(?<host>") || strings.Contains(pattern, "(?<user>") {
		return nil, fmt.Errorf("login rule %q: the group names host and user are reserved: use <HOST> and <USER>", pattern)
	}
	if strings.Contains(pattern, "(?P<"+backrefGroup) || strings.Contains(pattern, "(?<"+backrefGroup) {
		return nil, fmt.Errorf("login rule %q: group names starting with %s are reserved: moat names its copies of (?P=name) so", pattern, backrefGroup)
	}
	expanded := strings.Replace(strings.Replace(pattern, "<HOST>", hostRE, 1), "<USER>", userRE, 1)
	expanded, refNames, err := expandBackrefs(expanded)
	if err != nil {
		return nil, fmt.Errorf("login rule %q: %w", pattern, err)
	}
	re, err := regexp.Compile(expanded)
	if err != nil {
		return nil, fmt.Errorf("login rule %q: %w", pattern, err)
	}
	tree, err := syntax.Parse(expanded, syntax.Perl)
	if err != nil {
		return nil, fmt.Errorf("login rule %q: %w", pattern, err)
	}
	// The tree as written: Simplify expands x{0,3} into nested optional
	// copies, where the repetition the shape check looks for is gone.
	if err := checkShape(tree); err != nil {
		return nil, fmt.Errorf("login rule %q: %w", pattern, err)
	}
	r := &Rule{pattern: pattern, re: re, host: -1, user: -1, id: -1, need: requiredLiterals(tree)}
	for i, name := range re.SubexpNames() {
		switch name {
		case "host":
			r.host = i
		case "user":
			r.user = i
		case "id":
			r.id = i
		}
	}
	for i, name := range refNames {
		r.refs = append(r.refs, backref{name: name, group: re.SubexpIndex(name), copy: re.SubexpIndex(backrefGroup + strconv.Itoa(i))})
	}
	r.pins.off = !canPin(tree, r.refs)
	return r, nil
}

// HasHost reports whether the rule takes an address from its line.
func (r *Rule) HasHost() bool { return r.host >= 0 }

// HasID reports whether the rule takes a connection id from its line.
func (r *Rule) HasID() bool { return r.id >= 0 }

// RuleMatch is what a rule took from a line. ID and User alias the line.
type RuleMatch struct {
	Addr netip.Addr // at <HOST>, unmapped, without zone; invalid for a rule without <HOST>
	ID   []byte     // at (?P<id>...); nil for a rule without one
	User []byte     // at <USER>; nil without one
}

// MatchLine reports whether line matches the rule and returns what the
// rule takes from it; the user only when wantUser, or for a rule with an
// id (which needs it: see package login), as extracting it costs the
// faster path. A rule with an id whose id comes out empty or longer than
// 256 bytes does not match: an id names one connection in package
// login's table, which keeps ids short.
func (r *Rule) MatchLine(line []byte, wantUser bool) (RuleMatch, bool) {
	if r.id < 0 {
		a, user, ok := r.match(line, wantUser)
		return RuleMatch{Addr: a, User: user}, ok
	}
	m := r.indexes(line)
	if m == nil || m[2*r.id] < 0 {
		return RuleMatch{}, false
	}
	var out RuleMatch
	out.ID = line[m[2*r.id]:m[2*r.id+1]]
	if len(out.ID) == 0 || len(out.ID) > maxIDLen {
		return RuleMatch{}, false
	}
	if r.host >= 0 {
		if m[2*r.host] < 0 {
			return RuleMatch{}, false
		}
		a, ok := parseAddr(line[m[2*r.host]:m[2*r.host+1]])
		if !ok {
			return RuleMatch{}, false
		}
		out.Addr = a
	}
	if r.user >= 0 && m[2*r.user] >= 0 {
		out.User = line[m[2*r.user]:m[2*r.user+1]]
	}
	return out, true
}

// checkShape checks that the pattern is anchored at both ends and that
// open text does not surround <HOST>.
func checkShape(re *syntax.Regexp) error {
	if re.Op != syntax.OpConcat || len(re.Sub) < 2 {
		return errUnanchored
	}
	first, last := re.Sub[0], re.Sub[len(re.Sub)-1]
	if first.Op != syntax.OpBeginText || last.Op != syntax.OpEndText {
		if first.Op == syntax.OpBeginLine || last.Op == syntax.OpEndLine {
			return errors.New("(?m) makes ^ and $ match at every newline inside the line, " +
				"and the client's text may contain newlines: drop (?m)")
		}
		return errUnanchored
	}
	if hasCapture(re, "id") {
		if err := checkPlace(re, "id", "the connection id (?P<id>...)"); err != nil {
			return err
		}
		for _, s := range re.Sub {
			if s.Op == syntax.OpCapture && s.Name == "id" {
				if o := openText(s.Sub[0]); o != nil {
					return fmt.Errorf("the connection id (?P<id>...) holds open text (%s): the client could write another connection's id there; "+
						"match only what the service writes for the id (a number, a queue id, \\S+)", shortRE(o))
				}
			}
		}
		if !hasCapture(re, "host") {
			return nil
		}
	}
	return checkPlace(re, "host", "<HOST>")
}

// checkPlace checks that the capture name sits at the pattern's top
// level, and that open text does not stand on both sides of it: then
// one side is the service's text all the way to an anchor, and the
// client's text cannot move what the capture takes.
func checkPlace(re *syntax.Regexp, name, what string) error {
	hostAt := -1
	for i, s := range re.Sub {
		if s.Op == syntax.OpCapture && s.Name == name {
			hostAt = i
		}
	}
	if hostAt < 0 {
		if hasCapture(re, name) {
			return fmt.Errorf("%s must not be inside a group, an alternation or a repetition: "+
				"it must be at one fixed place in the line", what)
		}
		return fmt.Errorf("%s is missing", what)
	}
	var before, after *syntax.Regexp
	for _, s := range re.Sub[:hostAt] {
		if before == nil {
			before = openText(s)
		}
	}
	for _, s := range re.Sub[hostAt+1:] {
		if after == nil {
			after = openText(s)
		}
	}
	if before == nil {
		before = spacedTokens(re.Sub[:hostAt], false)
	}
	if after == nil {
		after = spacedTokens(re.Sub[hostAt+1:], true)
	}
	if before != nil && after != nil {
		return fmt.Errorf("open text (.*, .+, <USER>, any repetition that can span spaces, or an optional group of two tokens with only white space between them) "+
			"stands on both sides of %s: the client could write a line where a fake one "+
			"sits in either part. Make one side fixed text: write what the service itself "+
			"prints between %s and the end of the line (or the start) (open before it: %s; after it: %s)",
			what, what, shortRE(before), shortRE(after))
	}
	return nil
}

// shortRE prints a piece of a pattern for an error message, cut to a
// readable length.
func shortRE(re *syntax.Regexp) string {
	s := re.String()
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return "`" + s + "`"
}

func hasCapture(re *syntax.Regexp, name string) bool {
	if re.Op == syntax.OpCapture && re.Name == name {
		return true
	}
	for _, s := range re.Sub {
		if hasCapture(s, name) {
			return true
		}
	}
	return false
}

// openText finds in re a repetition of something that can
// match a space: text in which a client can write "from 6.6.6.6 port 22".
// A bound does not make it safe: (?: \S+){0,3} or .{0,60} carries a fake
// address as well as .* does. A run of white space alone (\s*, " +") is
// not open: it cannot hold an address's digits, and fail2ban's filters,
// which `moat import fail2ban` converts, put \s* and \s+ everywhere.
//
// It returns the first such repetition, or nil.
func openText(re *syntax.Regexp) *syntax.Regexp {
	switch re.Op {
	case syntax.OpStar, syntax.OpPlus:
		if matchesSpace(re.Sub[0]) && !onlySpace(re.Sub[0]) {
			return re
		}
	case syntax.OpRepeat:
		if re.Max != 1 && matchesSpace(re.Sub[0]) && !onlySpace(re.Sub[0]) {
			return re
		}
	}
	for _, s := range re.Sub {
		if o := openText(s); o != nil {
			return o
		}
	}
	return nil
}

// spacedTokens finds, in the parts, an optional group holding a token
// that can hold a word (a repetition of a class with letters) followed,
// across nothing but white space, by a token that can hold an address
// (digits and "." or ":"). No repetition spans a space there, yet the
// service may write the group or leave it out, so a client that fills
// its two tokens writes "from 6.6.6.6" where the rule then ends:
// `^.* from <HOST>(?: \S+ \S+)?$` takes the fake on "x from 203.0.113.7
// from 6.6.6.6". Mandatory tokens cannot do that (the rule needs as many
// after the fake address as the service wrote after the real one), and
// a single token next to <HOST> is left to the service, as the rest of
// the check leaves it (docs/login-rules.md, "What the check cannot
// know"). Before <HOST> (after false) only a lazy group counts: a greedy
// one is taken whenever it can be, and with the client's words in it,
// it can, leaving <HOST> the service's address. It returns the address
// token, or nil.
func spacedTokens(parts []*syntax.Regexp, after bool) *syntax.Regexp {
	for _, re := range parts {
		optional := re.Op == syntax.OpQuest || re.Op == syntax.OpStar || re.Op == syntax.OpRepeat && re.Min == 0
		if optional && (after || re.Flags&syntax.NonGreedy != 0) {
			if found, _ := spaced(re.Sub, false); found != nil {
				return found
			}
		}
		if found := spacedTokens(re.Sub, after); found != nil {
			return found
		}
	}
	return nil
}

// spaced walks parts with word: whether a word token may stand just
// before, with only white space since. It returns the address token
// found after one, and whether a word token may stand at the end.
func spaced(parts []*syntax.Regexp, word bool) (*syntax.Regexp, bool) {
	for _, re := range parts {
		var found *syntax.Regexp
		found, word = spacedOne(re, word)
		if found != nil {
			return found, word
		}
	}
	return nil, word
}

func spacedOne(re *syntax.Regexp, word bool) (*syntax.Regexp, bool) {
	switch re.Op {
	case syntax.OpStar, syntax.OpPlus, syntax.OpRepeat:
		if c := re.Sub[0]; c.Op == syntax.OpCharClass || c.Op == syntax.OpAnyChar || c.Op == syntax.OpAnyCharNotNL {
			if onlySpace(c) {
				return nil, word
			}
			if word && classHas(c, '0') && (classHas(c, '.') || classHas(c, ':')) {
				return re, true
			}
			return nil, classHas(c, 'a') || classHas(c, 'A')
		}
		// A repeated group: twice through, for a word at the end of one
		// round and an address at the start of the next; it may also
		// not be there.
		found, w := spaced(re.Sub, word)
		if found == nil {
			found, w = spaced(re.Sub, w)
		}
		return found, w || word
	case syntax.OpQuest:
		found, w := spaced(re.Sub, word)
		return found, w || word
	case syntax.OpCapture, syntax.OpConcat:
		return spaced(re.Sub, word)
	case syntax.OpAlternate:
		any := false
		for _, s := range re.Sub {
			found, w := spaced([]*syntax.Regexp{s}, word)
			if found != nil {
				return found, w
			}
			any = any || w
		}
		return nil, any
	case syntax.OpEmptyMatch, syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText, syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return nil, word
	}
	if onlySpace(re) {
		return nil, word
	}
	return nil, false
}

// classHas reports whether the single-character re matches c.
func classHas(re *syntax.Regexp, c rune) bool {
	switch re.Op {
	case syntax.OpAnyChar:
		return true
	case syntax.OpAnyCharNotNL:
		return c != '\n'
	case syntax.OpCharClass:
		for i := 0; i+1 < len(re.Rune); i += 2 {
			if re.Rune[i] <= c && c <= re.Rune[i+1] {
				return true
			}
		}
	}
	return false
}

// onlySpace reports whether re matches nothing but ASCII white space.
func onlySpace(re *syntax.Regexp) bool {
	isSpace := func(r rune) bool { return r == ' ' || r >= '\t' && r <= '\r' }
	switch re.Op {
	case syntax.OpCharClass:
		for i := 0; i+1 < len(re.Rune); i += 2 {
			for r := re.Rune[i]; r <= re.Rune[i+1]; r++ {
				if !isSpace(r) {
					return false
				}
			}
		}
		return len(re.Rune) > 0
	case syntax.OpLiteral:
		for _, r := range re.Rune {
			if !isSpace(r) {
				return false
			}
		}
		return len(re.Rune) > 0
	case syntax.OpConcat, syntax.OpAlternate, syntax.OpCapture, syntax.OpStar, syntax.OpPlus, syntax.OpQuest, syntax.OpRepeat:
		for _, s := range re.Sub {
			if !onlySpace(s) {
				return false
			}
		}
		return len(re.Sub) > 0
	}
	return false
}

// matchesSpace reports whether re can match a string containing ' '.
func matchesSpace(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL, syntax.OpCharClass:
		return classHas(re, ' ')
	case syntax.OpLiteral:
		for _, r := range re.Rune {
			if r == ' ' {
				return true
			}
		}
		return false
	}
	for _, s := range re.Sub {
		if matchesSpace(s) {
			return true
		}
	}
	return false
}

// String returns the pattern as written.
func (r *Rule) String() string { return r.pattern }

// Match reports whether line matches the rule and returns the address at
// <HOST>, unmapped and without zone.
func (r *Rule) Match(line []byte) (netip.Addr, bool) {
	a, _, ok := r.match(line, false)
	return a, ok
}

// MatchUser is Match that also returns the text at <USER> (nil without
// <USER>), aliasing line.
func (r *Rule) MatchUser(line []byte) (netip.Addr, []byte, bool) {
	return r.match(line, true)
}

// matchRegexp is MatchUser by the whole pattern's regexp.
// indexes returns the submatch indexes of r's match of line (as
// submatch), or nil. A line without the pattern's required text is
// refused by substring searches; then Match: it does not allocate, and
// most lines do not match.
func (r *Rule) indexes(line []byte) []int {
	for _, n := range r.need {
		if !bytes.Contains(line, n) {
			return nil
		}
	}
	if !r.re.Match(line) {
		return nil
	}
	return r.submatch(line)
}

func (r *Rule) matchRegexp(line []byte) (netip.Addr, []byte, bool) {
	if r.host < 0 {
		return netip.Addr{}, nil, false // an id only: see MatchLine
	}
	m := r.indexes(line)
	if m == nil || m[2*r.host] < 0 {
		return netip.Addr{}, nil, false
	}
	a, ok := parseAddr(line[m[2*r.host]:m[2*r.host+1]])
	if !ok {
		return netip.Addr{}, nil, false
	}
	var user []byte
	if r.user >= 0 && m[2*r.user] >= 0 {
		user = line[m[2*r.user]:m[2*r.user+1]]
	}
	return a, user, true
}

// requiredLiterals returns the case-sensitive literals among the
// top-level parts of an anchored pattern, longest first: every match
// contains each of them.
func requiredLiterals(re *syntax.Regexp) [][]byte {
	if re.Op != syntax.OpConcat {
		return nil
	}
	var out [][]byte
	for _, s := range re.Sub {
		if s.Op == syntax.OpLiteral && s.Flags&syntax.FoldCase == 0 {
			out = append(out, []byte(string(s.Rune)))
		}
	}
	slices.SortStableFunc(out, func(a, b []byte) int { return len(b) - len(a) })
	return out
}

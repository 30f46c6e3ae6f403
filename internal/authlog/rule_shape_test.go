package authlog

import (
	"regexp"
	"strings"
	"testing"
)

// An IPv6 address with an embedded IPv4 tail is taken whole even when
// what follows <HOST> could take the rest: ::ffff:1.2.3.4 was read as
// ::ffff:1 (the tail's first digit as a hex group) when ".*" followed.
func TestRuleEmbeddedIPv4Tail(t *testing.T) {
	r, err := CompileRule(`^\S+ LOGIN REFUSED FROM <HOST>.*$`)
	if err != nil {
		t.Fatal(err)
	}
	for line, want := range map[string]string{
		"ROOT LOGIN REFUSED FROM ::ffff:1.2.3.4":         "1.2.3.4",
		"ROOT LOGIN REFUSED FROM ::ffff:192.0.2.17 port": "192.0.2.17",
		"ROOT LOGIN REFUSED FROM 64:ff9b::192.0.2.17":    "64:ff9b::c000:211",
		"ROOT LOGIN REFUSED FROM 2001:db8::1234.x":       "2001:db8::1234",
	} {
		a, ok := r.Match([]byte(line))
		if !ok || a.String() != want {
			t.Errorf("%s: got %v %v, want %s", line, a, ok, want)
		}
	}
}

// The shape check's refusal names the open parts on each side, so that a
// rule's author (or moat import fail2ban's report) sees what to fix.
func TestShapeErrorNamesOpenParts(t *testing.T) {
	_, err := CompileRule(`^\S+ myapp: user [^)]* failed from <HOST>(?: \S+){0,3}$`)
	if err == nil || !strings.Contains(err.Error(), "open text") ||
		!strings.Contains(err.Error(), "before it: `[^\\)]*`") || !strings.Contains(err.Error(), "after it: `(?: [^\\t\\n\\f\\r ]+){0,3}`") {
		t.Fatalf("got %v", err)
	}
}

// The delimiter argument for open text on both sides of <HOST>, and why
// the shape check does not accept it (docs/login-rules.md, "Open text on
// both sides"). The first and third patterns meet that argument's
// condition: the part after <HOST> cannot hold the delimiter, and every
// open part before it is followed by the delimiter, which the pattern
// requires; the second is dovecot's failregex 1 reduced, whose delimiter
// is optional. Each takes an address of the client's choice: the check
// cannot know on which side the client writes (the argument covers text
// written before the address only), nor that a line was written by the
// message the pattern describes (the third). The test shows each forgery
// with the pattern compiled past the check (so it fails if a
// counterexample is wrong) and that CompileRule refuses the pattern.
func TestShapeDelimiterArgumentIsNotEnough(t *testing.T) {
	for _, c := range []struct {
		pattern, line, real, fake string
	}{
		{
			// The client writes after the address (a session note),
			// including the delimiter.
			pattern: `^\S+ app: login failed: <.*> rip=<HOST>[^>]*$`,
			line:    `host app: login failed: <bob> rip=203.0.113.7, note=x> rip=192.0.2.66`,
			real:    "203.0.113.7", fake: "192.0.2.66",
		},
		{
			// dovecot's failregex 1 reduced: the delimiter ">" closes
			// the user name, but the user=<...> part is optional, and a
			// line without it has only the reason before "(auth
			// failed...)": open text followed by nothing the right side
			// cannot hold.
			pattern: `^\S+ imap-login: Disconnected(?:: [^(]+)? \(auth failed\):(?: user=<[^>]*>,)? rip=<HOST>[^>]*$`,
			line:    `host imap-login: Disconnected: x (auth failed): rip=192.0.2.66, y (auth failed): rip=203.0.113.7, lip=198.51.100.1`,
			real:    "203.0.113.7", fake: "192.0.2.66",
		},
		{
			// The same with user=<...> required: its ">" follows every
			// open part, but a line the service writes without a user
			// name gets its ">" from the client's reason.
			pattern: `^\S+ imap-login: Disconnected(?:: [^(]+)? \(auth failed\): user=<[^>]*>, rip=<HOST>[^>]*$`,
			line:    `host imap-login: Disconnected: x (auth failed): user=<y>, rip=192.0.2.66, z (auth failed): rip=203.0.113.7, lip=198.51.100.1`,
			real:    "203.0.113.7", fake: "192.0.2.66",
		},
	} {
		re := regexp.MustCompile(strings.Replace(c.pattern, "<HOST>", hostRE, 1))
		m := re.FindStringSubmatch(c.line)
		if m == nil || m[re.SubexpIndex("host")] != c.fake {
			t.Errorf("%s: the counterexample does not forge (%q): fix the test", c.pattern, m)
		}
		if _, err := CompileRule(c.pattern); err == nil {
			t.Errorf("%s: accepted; on %q it takes %s, not %s", c.pattern, c.line, c.fake, c.real)
		}
	}
}

// An optional group of two tokens, a word then an address, with only
// white space between them holds a client's "from 6.6.6.6" though no
// repetition in it spans a space: the shape check counts it as open.
// Each forgery is shown with the pattern compiled past the check. Two
// mandatory tokens, or one optional token, cannot move the address (the
// rule needs as many tokens after the fake as the service wrote after
// the real one), nor can a greedy group before <HOST> (taken whenever it
// can be): those patterns stay accepted.
func TestShapeOptionalTokenPair(t *testing.T) {
	for _, c := range []struct{ pattern, line string }{
		{`^.* from <HOST>(?: \S+ \S+)?$`, "x from 203.0.113.7 from 192.0.2.66"},
		{`^.* from <HOST>(?:\s+\w+\s+[^\]]+)?$`, "x from 203.0.113.7 from 192.0.2.66"},
		{`^(?:\S+ \S+ )??<HOST> failed .*$`, "192.0.2.66 failed 203.0.113.7 failed x"},
		{`^x(?: (?:\w+) (?:\S+))*? <HOST> failed .*$`, "x 192.0.2.66 failed 203.0.113.7 failed x"},
	} {
		re := regexp.MustCompile(strings.Replace(c.pattern, "<HOST>", hostRE, 1))
		if m := re.FindStringSubmatch(c.line); m == nil || m[re.SubexpIndex("host")] != "192.0.2.66" {
			t.Errorf("%s: the counterexample does not forge (%q): fix the test", c.pattern, m)
		}
		if _, err := CompileRule(c.pattern); err == nil || !strings.Contains(err.Error(), "optional group of two tokens") {
			t.Errorf("%s: %v; on %q it takes 192.0.2.66, not 203.0.113.7", c.pattern, err, c.line)
		}
	}
	for _, p := range []string{
		`^.* from <HOST>\s+\w+\s+\S+$`,
		`^.* from <HOST>(?: user \S+)?$`,
		`^.* from <HOST> port \d+(?: \S+ \d+)?$`,
		`^\S+ \S+ \S+ \S+ app: from <HOST>(?: user \S+)?$`,
		`^(?:\S+ \S+ )?<HOST> failed .*$`,
	} {
		if _, err := CompileRule(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

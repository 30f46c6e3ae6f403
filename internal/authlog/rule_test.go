package authlog

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestCompileRuleRefuses(t *testing.T) {
	tests := []struct {
		pattern, want string
	}{
		{`Failed login from <HOST>`, "from ^ to $"},
		{`^Failed login from <HOST>`, "from ^ to $"},
		{`Failed login from <HOST>$`, "from ^ to $"},
		{`^a <HOST>$|^b$`, "from ^ to $"},
		{`^a$|^b <HOST>$`, "from ^ to $"},
		{`(?m)^login from <HOST>$`, "(?m)"},
		{`^login from <HOST> and <HOST>$`, "exactly once"},
		{`^login from$`, "exactly once"},
		{`^<USER> <USER> <HOST>$`, "at most once"},
		{`^.* from <HOST> .*$`, "both sides"},
		{`^<USER> from <HOST>: .+$`, "both sides"},
		{`^x(?: y)* <HOST>(?: z)*$`, "both sides"},
		// The review's M7: bounded repetitions were exempt (and Simplify
		// hid them), so a client's text could carry the address.
		{`^.* myapp\[\d+\]: login failed from <HOST>(?: \S+){0,3}$`, "both sides"},
		{`^.* myapp\[\d+\]: login failed from <HOST>.{0,60}$`, "both sides"},
		{`^.{0,16} from <HOST> .{0,5}$`, "both sides"},
		// White space may repeat, but not white space and anything else.
		{`^.* from <HOST>[\s\d]*$`, "both sides"},
		{`^.* from <HOST>(?:\s+\S)*$`, "both sides"},
		{`^(?:a <HOST>)?$`, "fixed place"},
		{`^(?:a <HOST>|b)$`, "fixed place"},
		{`^(<HOST>)$`, "fixed place"},
		{`^(?P<host>x) <HOST>$`, "reserved"},
		{`^login from <HOST>[$`, "missing closing"},
	}
	for _, tt := range tests {
		_, err := CompileRule(tt.pattern)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want it to mention %q", tt.pattern, err, tt.want)
		}
	}
}

// A bound of one is a fixed place, not open text.
func TestCompileRuleAcceptsSingleOptionalText(t *testing.T) {
	for _, p := range []string{
		`^.* from <HOST>(?: port \d+)?$`,
		`^.* from <HOST>(?: ssh2){1}$`,
		`^\w{3} +\d+ [\d:]+ \S+ myapp\[\d+\]: auth failure for \S+ from <HOST>$`,
		// Runs of white space cannot hold an address (fail2ban's \s*$).
		`^.* from <HOST>\s*$`,
		`^.* from <HOST>\s+port \d+[ \t]*$`,
	} {
		if _, err := CompileRule(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

func TestRuleMatch(t *testing.T) {
	tests := []struct {
		pattern string
		line    string
		addr    string // "" for no match
		user    string
	}{
		{`^\S+ \S+ \S+ \S+ dovecot: auth: passwd-file\(<USER>,<HOST>\): unknown user$`, "Nov 21 06:29:01 host dovecot: auth: passwd-file(bob,203.0.113.5): unknown user", "203.0.113.5", "bob"},
		{`^.*Authentication failure for <USER> from <HOST>$`, "x Authentication failure for a from 6.6.6.6 from 203.0.113.6", "203.0.113.6", "a from 6.6.6.6"},
		{`^login failed from <HOST> for .*$`, "login failed from 203.0.113.7 for x from 6.6.6.6", "203.0.113.7", ""},
		{`^login failed from <HOST> for .*$`, "login failed from 2001:db8::7 for x", "2001:db8::7", ""},
		{`^login failed from <HOST> for .*$`, "login failed from ::ffff:203.0.113.8 for x", "203.0.113.8", ""},
		{`^login failed from <HOST> for .*$`, "login failed from fe80::1%eth0 for x", "fe80::1", ""},
		{`^login failed from <HOST> for .*$`, "login failed from 203.0.113.256 for x", "", ""},
		{`^login failed from <HOST> for .*$`, "login failed from 1:2:3:4:5:6:7:8:9 for x", "", ""},
		{`^login failed from <HOST> for .*$`, "prefix login failed from 203.0.113.7 for x", "", ""},
		{`^login failed from \[<HOST>\]:\d+$`, "login failed from [2001:db8::9]:22", "2001:db8::9", ""},
		{`^login failed from <HOST>$`, "login failed from 203.0.113.7\nlogin failed from 6.6.6.6", "", ""},
	}
	for _, tt := range tests {
		r, err := CompileRule(tt.pattern)
		if err != nil {
			t.Errorf("%s: %v", tt.pattern, err)
			continue
		}
		if r.String() != tt.pattern {
			t.Errorf("String() = %q", r.String())
		}
		a, user, ok := r.MatchUser([]byte(tt.line))
		if tt.addr == "" {
			if ok {
				t.Errorf("%s on %q: matched %v", tt.pattern, tt.line, a)
			}
			continue
		}
		if !ok || a != netip.MustParseAddr(tt.addr) || string(user) != tt.user {
			t.Errorf("%s on %q: got %v %q %v, want %s %q", tt.pattern, tt.line, a, user, ok, tt.addr, tt.user)
		}
		if a2, ok2 := r.Match([]byte(tt.line)); a2 != a || ok2 != ok {
			t.Errorf("Match differs from MatchUser")
		}
	}
}

func FuzzRule(f *testing.F) {
	f.Add(`^login failed from <HOST> for .*$`, "login failed from 203.0.113.7 for x")
	f.Add(`^.*for <USER> from <HOST>$`, "x for a from 6.6.6.6 from 203.0.113.6")
	f.Add(`^\S+ <HOST> \d+$`, "x ::1 5")
	f.Add(`Failed <HOST>`, "Failed 1.2.3.4")
	f.Add(`^\S+ app\[(?P<id>\d+)\]: failed for .*$`, "h app[42]: failed for x app[7]")
	f.Add(`^\S+ app\[(?P<id>\d+)\]: from <HOST>$`, "h app[42]: from 192.0.2.1")
	f.Add(`^arg1=(?P<e><\S+>), relay=\[<HOST>\], reject=(?: (?P=e)\.)?x$`, "arg1=<a>, relay=[10.0.0.1], reject= <b>.x")
	f.Fuzz(func(t *testing.T, pattern, line string) {
		r, err := CompileRule(pattern)
		if err != nil {
			return
		}
		if m, ok := r.MatchLine([]byte(line), true); ok {
			if r.HasID() && (len(m.ID) == 0 || len(m.ID) > maxIDLen) {
				t.Fatalf("%q on %q: id %q", pattern, line, m.ID)
			}
			if r.HasHost() != m.Addr.IsValid() || !r.re.MatchString(line) {
				t.Fatalf("%q on %q: inconsistent %+v", pattern, line, m)
			}
		}
		a, ok := r.Match([]byte(line))
		if !ok {
			return
		}
		if !a.IsValid() || a.Is4In6() || a.Zone() != "" {
			t.Fatalf("%q on %q: bad address %v", pattern, line, a)
		}
		// A compiled rule matches whole lines only.
		if !r.re.MatchString(line) {
			t.Fatal("inconsistent match")
		}
	})
}

// TestDocExamples keeps docs/login-rules.md honest.
func TestDocExamples(t *testing.T) {
	good := map[string]string{
		`^\S+ \S+ \S+ \S+ dovecot: auth: passwd-file\(<USER>,<HOST>\): unknown user$`:                                         "Nov 21 06:29:01 h dovecot: auth: passwd-file(a,203.0.113.1): unknown user",
		`^\S+ \S+ \S+ \S+ postfix/smtpd\[\d+\]: warning: unknown\[<HOST>\]: SASL (?:LOGIN|PLAIN) authentication failed: \S+$`: "Nov 21 06:29:01 h postfix/smtpd[12]: warning: unknown[203.0.113.2]: SASL LOGIN authentication failed: UGFzc3dvcmQ6",
		`^\S+ \S+ \S+ \S+ myapp\[\d+\]: login failed for <USER> from <HOST>$`:                                                 "Nov 21 06:29:01 h myapp[1]: login failed for x from 6.6.6.6 from 203.0.113.3",
		`^\S+ \S+ \S+ \S+ myapp\[\d+\]: client <HOST> sent bad password for user .*$`:                                         "Nov 21 06:29:01 h myapp[1]: client 203.0.113.4 sent bad password for user x client 6.6.6.6 sent",
	}
	for p, line := range good {
		r, err := CompileRule(p)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		a, ok := r.Match([]byte(line))
		if !ok || a.String() == "6.6.6.6" || !strings.HasPrefix(a.String(), "203.0.113.") {
			t.Errorf("%s on %q: %v %v", p, line, a, ok)
		}
	}
	for _, p := range []string{`^.* client: <HOST>, server: .*$`, `Authentication failure for .* from <HOST>`} {
		if _, err := CompileRule(p); err == nil {
			t.Errorf("%s: accepted", p)
		}
	}
}

// The substring prefilter takes only text every match must contain, so
// it never refuses a line the pattern matches.
func TestRuleRequiredLiterals(t *testing.T) {
	r, err := CompileRule(`^(?:\d{4}/\d\d/\d\d|\w{3} \d+) \[error\] user "(?:[^"]+)": (?:password mismatch|not found), client: <HOST>, server: \S+$`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range r.need {
		got = append(got, string(n))
	}
	if want := []string{` [error] user "`, ", client: ", ", server: ", `": `}; !slices.Equal(got, want) {
		t.Errorf("need %q, want %q", got, want)
	}
	for _, line := range []string{
		`2026/12/06 [error] user "bob": not found, client: 10.210.0.9, server: x`,
		`Dec 6 [error] user "b, client: 1.2.3.4": password mismatch, client: 10.210.0.9, server: x`,
	} {
		if a, ok := r.Match([]byte(line)); !ok || a.String() != "10.210.0.9" {
			t.Errorf("%q: %v %v", line, a, ok)
		}
	}
	if _, ok := r.Match([]byte(`2026/12/06 [error] user "bob": not found, client: 10.210.0.9`)); ok {
		t.Error("matched a line without its server part")
	}
}

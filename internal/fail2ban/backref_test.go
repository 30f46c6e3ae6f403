package fail2ban

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat-fw/moat/internal/authlog"
)

// TestSendmailBackref imports sendmail-reject, whose failregex 0 repeats
// the recipient with (?P=email), and checks that the rule takes a line
// where the two agree and refuses the same line with the second changed,
// which fail2ban's regex does not match either.
func TestSendmailBackref(t *testing.T) {
	if _, err := os.Stat(filepath.Join(f2bDir, "filter.d", "sendmail-reject.conf")); err != nil {
		t.Skipf("fail2ban's filters are not installed (%v)", err)
	}
	f, err := LoadFilter(f2bDir, "sendmail-reject", nil, "auto", nil)
	if err != nil {
		t.Fatal(err)
	}
	c := ConvertFilter(f, defaultSettings)
	var rules []*authlog.Rule
	for _, p := range c.Patterns[0].Moat {
		if !strings.Contains(p, "(?P=email)") {
			t.Errorf("failregex 0 converted without its backreference: %s", p)
		}
		r, err := authlog.CompileRule(p)
		if err != nil {
			t.Fatal(err)
		}
		rules = append(rules, r)
	}
	if len(rules) == 0 {
		t.Fatalf("failregex 0 refused: %v", c.Patterns[0].Err)
	}
	const good = "Feb 27 15:49:02 batman sm-mta[88377]: s1REn1un088377: ruleset=check_rcpt, arg1=<non-existing-user@example.com>, relay=x.example.net [189.30.205.74], reject=550 5.1.1 <non-existing-user@example.com>... User unknown"
	for _, c := range []struct {
		line, want string
	}{
		{good, "189.30.205.74"},
		{strings.Replace(good, "... User", "x... User", 1), ""},
		{strings.Replace(good, "5.1.1 <non", "5.1.1 <Non", 1), ""},
	} {
		got := ""
		for _, r := range rules {
			if a, ok := r.Match([]byte(c.line)); ok {
				got = a.String()
			}
		}
		if got != c.want {
			t.Errorf("%s: got %q, want %q", c.line, got, c.want)
		}
	}
}

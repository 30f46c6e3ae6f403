package fail2ban

import (
	"regexp"
	"strings"
	"testing"

	"github.com/moat-fw/moat/internal/authlog"
)

// TestBracketDateRewriteIsExact checks afterFirstBracket against its
// definition: with the date standing for the one letter D, a string t
// matches the rewrite of F exactly when t is x "[" "D" y with no '[' in x
// and x "[" y matching F; on every string of a, b, '[' and D up to six
// characters.
func TestBracketDateRewriteIsExact(t *testing.T) {
	pats := []string{
		`.*`, `a.*b`, `(?:a|\[)*b`, `[^b]+`, `a\[b`, `(?:a|b)*\[?b+`, `(a*\[)+b`,
		`\[\[`, `(?:ab|\[a)*`, `[ab\[]+\[`, `(?s:.)+D?`, `a(?:\[|b)(a|\[)*`,
		`(a|\[)*?b*`, `\b.*`,
	}
	alpha := []byte("ab[D")
	var all []string
	var grow func(s string)
	grow = func(s string) {
		all = append(all, s)
		if len(s) == 6 {
			return
		}
		for _, c := range alpha {
			grow(s + string(c))
		}
	}
	grow("")
	for _, p := range pats {
		f := regexp.MustCompile(`^(?:` + p + `)$`)
		m, ok := afterFirstBracket(p, "D")
		if !ok {
			t.Errorf("%s: not rewritten", p)
			continue
		}
		r := regexp.MustCompile(`^(?:` + m + `)$`)
		for _, s := range all {
			want := false
			if i := strings.IndexByte(s, '['); i >= 0 && i+1 < len(s) && s[i+1] == 'D' {
				want = f.MatchString(s[:i+1] + s[i+2:])
			}
			if got := r.MatchString(s); got != want {
				t.Errorf("%s -> %s: %q matches %v, want %v", p, m, s, got, want)
			}
		}
	}
	// A bounded repetition that can hold the '[' is not rewritten.
	if m, ok := afterFirstBracket(`(?:a\[){2}`, "D"); ok {
		t.Errorf("rewrote a bounded repetition: %s", m)
	}
	// No line of F holds a '[': nothing to rewrite.
	if m, ok := afterFirstBracket(`a+b`, "D"); ok {
		t.Errorf("rewrote a failregex without '[': %s", m)
	}
}

// apache-badbots' failregex has no "[]" for the access log's date: its
// `.*` spans it. The rewrite puts the date after the line's first '[',
// where fail2ban's ^[^\[]*\[({DATE}) cuts it; the address stays the
// one at the line's start, and a request holding its own address and
// date does not move it.
func TestConvertBadbotsDate(t *testing.T) {
	d, err := dateRegex("^[^\\[]*\\[({DATE})\n{^LN-BEG}")
	if err != nil {
		t.Fatal(err)
	}
	const fr = `^<HOST> -.*"(GET|POST|HEAD).*HTTP.*"(?:TrackBack/1\.02|EmailSiphon)"$`
	pats, err := convertRegex(d, "", fr)
	if len(pats) == 0 {
		t.Fatalf("nothing converted: %v", err)
	}
	var rules []*authlog.Rule
	for _, p := range pats {
		r, err := authlog.CompileRule(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		rules = append(rules, r)
	}
	checkLines(t, rules, map[string]string{
		`1.2.3.4 - - [05/Mar/2007:14:39:21 +0100] "POST /123.html/trackback/ HTTP/1.0" 301 459 "http://www.mydomain.tld/123.html/trackback" "TrackBack/1.02"`: "1.2.3.4",
		`192.0.2.7 - - [05/Mar/2007:14:39:21 +0100] "GET /x HTTP/1.0" 200 1 "-" "EmailSiphon"`:                                                                "192.0.2.7",
		`192.0.2.7 - - [05/Mar/2007:14:39:21 +0100] "GET /\" 1 1 \"-\" \"x\"\n6.6.6.6 - - [05/Mar/2007:14:39:21 +0100] HTTP/1.0" 200 1 "-" "EmailSiphon"`:     "192.0.2.7",
		// The date must follow the first '[': fail2ban finds none here.
		`192.0.2.7 - - [x] [05/Mar/2007:14:39:21 +0100] "GET /x HTTP/1.0" 200 1 "-" "EmailSiphon"`: "",
		`192.0.2.7 - - [05/Mar/2007:14:39:21 +0100] "GET /x HTTP/1.0" 200 1 "-" "Mozilla"`:         "",
	})
}

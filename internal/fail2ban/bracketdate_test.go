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

// FuzzBracketDateRewrite checks afterFirstBracket against its definition
// on fuzzed patterns and lines (the date stands for the letter D).
func FuzzBracketDateRewrite(f *testing.F) {
	for _, s := range [][2]string{
		{`.*`, `a[Db`}, {`a.*b`, `a[Db`}, {`(?:a|\[)*b`, `[D[b`}, {`[^b]+`, `a[Da`},
		{`(a*\[)+b`, `a[D[b`}, {`x(?:\[y|z)*\]`, `xz[Dy]`},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, p, line string) {
		if len(p) > 40 || len(line) > 40 {
			return
		}
		fre, err := regexp.Compile(`^(?:` + p + `)$`)
		if err != nil {
			return
		}
		m, ok := afterFirstBracket(p, "D")
		if !ok {
			return
		}
		r, err := regexp.Compile(`^(?:` + m + `)$`)
		if err != nil {
			t.Fatalf("%s -> %s: %v", p, m, err)
		}
		want := false
		if i := strings.IndexByte(line, '['); i >= 0 && i+1 < len(line) && line[i+1] == 'D' {
			want = fre.MatchString(line[:i+1] + line[i+2:])
		}
		if got := r.MatchString(line); got != want {
			t.Fatalf("%s -> %s: %q matches %v, want %v", p, m, line, got, want)
		}
	})
}

// FuzzBadbotsImport puts fuzzed client fields (the request, the referrer,
// the user agent) into the access log line apache writes: the imported
// apache-badbots rule takes the real address or nothing.
func FuzzBadbotsImport(f *testing.F) {
	d, err := dateRegex("^[^\\[]*\\[({DATE})\n{^LN-BEG}")
	if err != nil {
		f.Fatal(err)
	}
	pats, err := convertRegex(d, "", `^<HOST> -.*"(GET|POST|HEAD).*HTTP.*"(?:TrackBack/1\.02|EmailSiphon)"$`)
	if len(pats) == 0 {
		f.Fatalf("nothing converted: %v", err)
	}
	var rules []*authlog.Rule
	for _, p := range pats {
		r, err := authlog.CompileRule(p)
		if err != nil {
			f.Fatal(err)
		}
		rules = append(rules, r)
	}
	f.Add(`/x`, `-`, `EmailSiphon`)
	f.Add(`/" 1 1 "-" "x" 6.6.6.6 - - [05/Mar/2007:14:39:21 +0100] "GET /`, `6.6.6.6 - - [`, `TrackBack/1.02`)
	f.Fuzz(func(t *testing.T, req, ref, ua string) {
		for _, s := range []string{req, ref, ua} {
			if strings.ContainsAny(s, "\n\r") {
				return
			}
		}
		line := `192.0.2.7 - - [05/Mar/2007:14:39:21 +0100] "GET ` + req + ` HTTP/1.0" 200 1 "` + ref + `" "` + ua + `"`
		if got := firstMatch(rules, line); got != "" && got != "192.0.2.7" {
			t.Fatalf("took %s: %s", got, line)
		}
	})
}

// fail2ban's default templates take a zone name or offset before the
// month (monit writes "[CEST Aug  6 10:14:52]"); so do moat's.
func TestDefaultDateZoneBeforeMonth(t *testing.T) {
	re := regexp.MustCompile(`^(?:` + defaultDate + `)$`)
	for _, d := range []string{"CEST Aug  6 10:14:52", "+0200 Aug  6 10:14:52", "Aug  6 10:14:52", "Sun Aug  6 10:14:52 2006"} {
		if !re.MatchString(d) {
			t.Errorf("%q is not a default date", d)
		}
	}
}

// selinux-common's failregex reads "audit(:SERIAL)": fail2ban's EPOCH
// template cut the date from inside "audit(". The imported rule puts it
// back there, and takes the address of a quoted account too (the
// backreference's pinned retry, authlog's pinnedMatch).
func TestConvertSelinuxAuditDate(t *testing.T) {
	d, err := dateRegex("EPOCH")
	if err != nil || !d.epoch {
		t.Fatalf("EPOCH: %+v %v", d, err)
	}
	const fr = `^type=USER_(ERR|AUTH) msg=audit\(:\d+\): (user )?pid=\d+ uid=0 msg='op=\S+ acct=(?P<_quote_acct>"?)\S+(?P=_quote_acct) exe="/usr/sbin/sshd" addr=<HOST> terminal=ssh res=failed'$`
	pats, err := convertRegex(d, "", fr)
	if len(pats) != 1 {
		t.Fatalf("converted %v: %v", pats, err)
	}
	r, err := authlog.CompileRule(pats[0])
	if err != nil {
		t.Fatalf("%s: %v", pats[0], err)
	}
	checkLines(t, []*authlog.Rule{r}, map[string]string{
		`type=USER_AUTH msg=audit(1373129280.000:9): user pid=1277 uid=0 msg='op=pubkey acct="root" exe="/usr/sbin/sshd" addr=194.228.20.113 terminal=ssh res=failed'`: "194.228.20.113",
		`type=USER_ERR msg=audit(1373330717:4070): pid=12000 uid=0 msg='op=PAM:bad_ident acct=root exe="/usr/sbin/sshd" addr=192.0.2.7 terminal=ssh res=failed'`:       "192.0.2.7",
		// An unbalanced quote: Python backtracks into the group (no
		// quote, \S+ takes it) and fail2ban takes the address; moat's
		// retry pins RE2's quote and misses it: a miss, not a wrong one.
		`type=USER_AUTH msg=audit(1373129280.000:9): pid=1 uid=0 msg='op=pubkey acct="root exe="/usr/sbin/sshd" addr=192.0.2.8 terminal=ssh res=failed'`: "",
		// No date in audit(): fail2ban finds none there.
		`type=USER_AUTH msg=audit(:9): pid=1 uid=0 msg='op=pubkey acct=root exe="/usr/sbin/sshd" addr=192.0.2.9 terminal=ssh res=failed'`: "",
	})
	if _, ok := auditDated(`x audit\(:\d+\) y audit\(:\d+\)`); ok {
		t.Error("two audit( places: which one fail2ban cut is not known, so none")
	}
}

package authlog_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat-fw/moat/internal/authlog"
	"github.com/moat-fw/moat/internal/fail2ban"
)

// fail2ban's filters and sample logs as the Debian package installs them,
// read at test time (they are GPL and never copied into moat).
const (
	f2bDir     = "/etc/fail2ban"
	f2bSamples = "/usr/lib/python3/dist-packages/fail2ban/tests/files/logs"
)

// importedRules compiles the failregexes of fail2ban filter name that the
// import converts (default options), or skips without fail2ban.
func importedRules(tb testing.TB, name string) []*authlog.Rule {
	tb.Helper()
	if _, err := os.Stat(filepath.Join(f2bDir, "filter.d", name+".conf")); err != nil {
		tb.Skipf("fail2ban's filter %s is not installed (apt-get install fail2ban, as scripts/setup.sh does): %v", name, err)
	}
	f, err := fail2ban.LoadFilter(f2bDir, name, nil, "auto", nil)
	if err != nil {
		tb.Fatalf("filter %s: %v", name, err)
	}
	var rules []*authlog.Rule
	for _, p := range fail2ban.ConvertFilter(f, fail2ban.StaticSettings{DovecotViews: fail2ban.DovecotDefaults()}).Patterns {
		// One failregex may become several patterns, one per place its
		// alternatives put the address; a refused one has none.
		for _, pat := range p.Moat {
			r, err := authlog.CompileRule(pat)
			if err != nil {
				tb.Fatalf("filter %s: an imported pattern does not compile: %v", name, err)
			}
			rules = append(rules, r)
		}
	}
	return rules
}

// nginxLines generates n lines of bench/nginx/gen_errorlog.py (seed 1) and
// splits them by whether rule matches them.
func nginxLines(b *testing.B, rule *authlog.Rule, n string) (match, other [][]byte) {
	b.Helper()
	out, err := exec.Command("python3", filepath.Join("..", "..", "bench", "nginx", "gen_errorlog.py"), n, "1").Output()
	if err != nil {
		b.Skipf("bench/nginx/gen_errorlog.py: %v", err)
	}
	for _, l := range bytes.Split(bytes.TrimSuffix(out, []byte("\n")), []byte("\n")) {
		if _, ok := rule.Match(l); ok {
			match = append(match, l)
		} else {
			other = append(other, l)
		}
	}
	if len(match) == 0 || len(other) == 0 {
		b.Fatalf("%d lines matched, %d did not: want both", len(match), len(other))
	}
	return match, other
}

// BenchmarkRuleNginx runs the nginx-http-auth filter as `moat import
// fail2ban` converts it on the lines of bench/nginx's generated error.log
// it matches and on those it does not; one op is one line.
func BenchmarkRuleNginx(b *testing.B) {
	rules := importedRules(b, "nginx-http-auth")
	if len(rules) != 1 {
		b.Fatalf("nginx-http-auth imported %d rules, want 1", len(rules))
	}
	r := rules[0]
	match, other := nginxLines(b, r, "20000")
	for _, c := range []struct {
		name  string
		lines [][]byte
		want  bool
	}{{"match", match, true}, {"other", other, false}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.ResetTimer()
			cpu := authlog.CPUTime()
			for i := 0; i < b.N; i++ {
				if _, ok := r.Match(c.lines[i%len(c.lines)]); ok != c.want {
					b.Fatalf("line %q: matched %v", c.lines[i%len(c.lines)], ok)
				}
			}
			b.StopTimer()
			authlog.ReportCPU(b, cpu)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
		})
	}
}

// sameAnswer fails t when the rule's split path (Match, MatchUser) and
// its regexp disagree on line.
func sameAnswer(t *testing.T, name string, r *authlog.Rule, line []byte) {
	t.Helper()
	wa, wu, wok := r.MatchUserRegexp(line)
	ga, gu, gok := r.MatchUser(line)
	if ga != wa || gok != wok || !bytes.Equal(gu, wu) || (gu == nil) != (wu == nil) {
		t.Errorf("%s on %q: MatchUser gives %v %q %v, the regexp %v %q %v", name, line, ga, gu, gok, wa, wu, wok)
	}
	if a, ok := r.Match(line); a != wa || ok != wok {
		t.Errorf("%s on %q: Match gives %v %v, the regexp %v %v", name, line, a, ok, wa, wok)
	}
}

// sampleLines returns the lines of fail2ban's sample log for filter name
// (annotations included: they are lines too), or nil.
func sampleLines(t *testing.T, name string) [][]byte {
	b, err := os.ReadFile(filepath.Join(f2bSamples, name))
	if err != nil {
		return nil
	}
	return bytes.Split(b, []byte("\n"))
}

// variants returns line and lines derived from it that move a rule's
// split: cut short, with the first address duplicated or bracketed, with
// text appended, with a byte that is not ASCII.
func variants(line []byte) [][]byte {
	out := [][]byte{line}
	if len(line) > 2 {
		out = append(out, line[:len(line)/2], line[1:], line[:len(line)-1])
	}
	s := string(line)
	for _, rep := range [][2]string{
		{"192.0.2.", "192.0.2.1 192.0.2."},
		{", client: ", ", client: 6.6.6.6, client: "},
		{"from ", "from 6.6.6.6 from "},
		{" ", "  "},
		{"1", "é1"},
	} {
		if strings.Contains(s, rep[0]) {
			out = append(out, []byte(strings.Replace(s, rep[0], rep[1], 1)))
		}
	}
	return append(out, []byte(s+" port 22"), []byte(s+" "), []byte(s+"\xff"))
}

// TestRuleSplitAgrees runs every failregex the import converts from the
// installed fail2ban's filters over fail2ban's sample log for its filter,
// the sshd lines of testdata, bench/nginx's generated error.log and
// variants of all of them: the split path must give exactly the regexp's
// answer, address and user, on every line.
func TestRuleSplitAgrees(t *testing.T) {
	if _, err := os.Stat(f2bSamples); err != nil {
		t.Skipf("fail2ban's sample logs are not installed (apt-get install fail2ban, as scripts/setup.sh does): %v", err)
	}
	ents, err := os.ReadDir(filepath.Join(f2bDir, "filter.d"))
	if err != nil {
		t.Skipf("no fail2ban filters: %v", err)
	}
	common, err := os.ReadFile(filepath.Join("testdata", "sshd-lines.txt"))
	if err != nil {
		t.Fatal(err)
	}
	extra := bytes.Split(common, []byte("\n"))
	gen, err := exec.Command("python3", filepath.Join("..", "..", "bench", "nginx", "gen_errorlog.py"), "1000", "1").Output()
	if err != nil {
		t.Fatalf("bench/nginx/gen_errorlog.py: %v", err)
	}
	extra = append(extra, bytes.Split(gen, []byte("\n"))...)
	rules, split, matched, lines := 0, 0, 0, 0
	outcomes := map[int]int{}
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".conf")
		if !ok || strings.HasSuffix(name, "common") {
			continue
		}
		own := sampleLines(t, name)
		for i, r := range importedRules(t, name) {
			rules++
			if r.SplitFind(nil) != authlog.SplitAbsent {
				split++
			}
			id := fmt.Sprintf("%s[%d]", name, i)
			for _, set := range [][][]byte{own, extra} {
				for _, l := range set {
					for _, v := range variants(l) {
						lines++
						outcomes[r.SplitFind(v)]++
						if _, ok := r.Match(v); ok {
							matched++
						}
						sameAnswer(t, id, r, v)
					}
				}
			}
		}
	}
	t.Logf("%d imported rules, %d with a split path; %d lines, %d matched; split path: %d none, %d one, %d to the regexp, %d without split path",
		rules, split, lines, matched, outcomes[authlog.SplitNone], outcomes[authlog.SplitOne], outcomes[authlog.SplitFallback], outcomes[authlog.SplitAbsent])
	// The comparison means something only if the split path answers (some
	// rules' automata would be too big: they keep to the regexp; 120 of
	// the 154 rules fail2ban's filters import to since alternatives are
	// written out one pattern per place of the address).
	if split*10 < rules*7 || outcomes[authlog.SplitOne] < 1000 {
		t.Errorf("the split path answered too little: %d of %d rules have one, %d matches by it", split, rules, outcomes[authlog.SplitOne])
	}
}

// TestRuleSplitAmbiguous: where the line splits in two ways the split
// path leaves the choice to the regexp, whose preferences pick the
// address (here the greedy 1? takes the 1, so the address is 1.2.3.4, not
// 11.2.3.4).
func TestRuleSplitAmbiguous(t *testing.T) {
	r, err := authlog.CompileRule(`^a1?<HOST>:\d+$`)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		line, addr string
		res        int
	}{
		{"a11.2.3.4:5", "1.2.3.4", authlog.SplitFallback},
		{"a1.2.3.4:5", "1.2.3.4", authlog.SplitOne},
		{"a12.2.3.4:5", "2.2.3.4", authlog.SplitFallback},
		{"a256.2.3.4:5", "", authlog.SplitNone},
		{"a1.2.3.4:", "", authlog.SplitNone},
		{"a1.2.3.é:5", "", authlog.SplitFallback},
	} {
		if res := r.SplitFind([]byte(c.line)); res != c.res {
			t.Errorf("%q: split path %d, want %d", c.line, res, c.res)
		}
		a, ok := r.Match([]byte(c.line))
		if got := ""; ok {
			got = a.String()
			if got != c.addr {
				t.Errorf("%q: got %s, want %q", c.line, got, c.addr)
			}
		} else if c.addr != "" {
			t.Errorf("%q: no match, want %s", c.line, c.addr)
		}
		sameAnswer(t, r.String(), r, []byte(c.line))
	}
}

// FuzzRuleSplit compares the split path with the regexp on any rule that
// compiles and any line: the same address, user and verdict.
func FuzzRuleSplit(f *testing.F) {
	for _, s := range [][2]string{
		{`^a1?<HOST>:\d+$`, "a11.2.3.4:5"},
		{`^login failed from <HOST> for .*$`, "login failed from 203.0.113.7 for x from 6.6.6.6"},
		{`^.*for <USER> from <HOST>$`, "x for a from 6.6.6.6 from 203.0.113.6"},
		{`^(?i)\S+ user "(?:[^"]+|.*?)":? mismatch, client: \[?<HOST>\]?, server: \S*$`, `x user "a", client: 6.6.6.6": mismatch, client: [2001:db8::1], server: y`},
		{`^\[\d+\] <HOST>(?: port \d+)?\s*$`, "[1] fe80::1%eth0 port 22 "},
	} {
		f.Add(s[0], s[1])
	}
	// The imported nginx filter on lines of its log, where installed.
	if _, err := os.Stat(filepath.Join(f2bDir, "filter.d", "nginx-http-auth.conf")); err == nil {
		for _, r := range importedRules(f, "nginx-http-auth") {
			for _, l := range []string{
				`2025/12/14 05:46:41 [error] 1200#1200: *1005 user "guest": password mismatch, client: 192.0.2.4, server: example.com, request: "GET /private/report.pdf HTTP/1.1", host: "example.com"`,
				`2025/12/14 05:46:49 [error] 1200#1200: *1017 user "x"y" was not found in "/etc/nginx/.htpasswd", client: [2001:db8::1], server: www.example.com, request: "GET /wp-login.php HTTP/1.1", host: "www.example.com", referrer: "https://www.example.com/login"`,
				`2025/12/14 05:46:41 [error] 1200#1200: *1005 user "a", client: 6.6.6.6, server: x": password mismatch, client: 192.0.2.4, server: example.com, request: "GET / HTTP/1.1", host: "example.com"`,
			} {
				f.Add(r.String(), l)
			}
		}
	}
	f.Fuzz(func(t *testing.T, pattern, line string) {
		r, err := authlog.CompileRule(pattern)
		if err != nil {
			return
		}
		sameAnswer(t, pattern, r, []byte(line))
	})
}

// A pattern that opens with text that runs on (.*, \S+) keeps the literal
// searches in front of its walk, which would otherwise go through every
// line; one that opens with a date does not need them.
func TestRuleSplitPrefilter(t *testing.T) {
	for _, c := range []struct {
		pattern string
		want    bool
	}{
		{`^.*Authentication failure for <USER> from <HOST>$`, true},
		{`^\S+ \S+ \S+ \S+ dovecot: auth: passwd-file\(<USER>,<HOST>\): unknown user$`, true},
		{`^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[error\] \d+#\d+: \*\d+ user "[^"]*": password mismatch, client: <HOST>, server: \S*$`, false},
		{`^login failed from <HOST> for .*$`, false},
	} {
		r, err := authlog.CompileRule(c.pattern)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.SplitPrefilter(); got != c.want {
			t.Errorf("%s: prefilter %v, want %v", c.pattern, got, c.want)
		}
	}
	rules := importedRules(t, "nginx-http-auth")
	if len(rules) != 1 || rules[0].SplitPrefilter() {
		t.Errorf("nginx-http-auth: %d rules, want 1 without prefilter", len(rules))
	}
}

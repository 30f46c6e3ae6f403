package fail2ban

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/authlog"
	moatconfig "github.com/moat-fw/moat/internal/config"
)

func TestParseINI(t *testing.T) {
	src := "# comment\n[DEFAULT]\nA = 1 ; inline\n[s]\nkey: v1\n  v2\n\n  v3\n; comment in value\n  v4\nb=#not a comment\n"
	f, err := parseINI("x", strings.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	if f.defaults["a"] != "1" {
		t.Errorf("inline comment or lower-casing: %q", f.defaults["a"])
	}
	if got := f.sections["s"]["key"]; got != "v1\nv2\n\nv3\nv4" {
		t.Errorf("multi-line value: %q", got)
	}
	if got := f.sections["s"]["b"]; got != "#not a comment" {
		t.Errorf("# is not an inline comment: %q", got)
	}
	for _, bad := range []string{"[s]\na=1\na=2\n", "[s]\n[s]\n", "a = 1\n", "[s]\njust words\n"} {
		if _, err := parseINI("bad.conf", strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "bad.conf:") {
			t.Errorf("%q: want an error naming the file and line, got %v", bad, err)
		}
	}
}

func TestInterpolation(t *testing.T) {
	c := newConfig()
	f1, _ := parseINI("1", strings.NewReader("[DEFAULT]\nd = dd\n[a]\nx = 1\ny = %(x)s-%(d)s-%(__name__)s-%%\nz = %(b/w)s\n[b]\nw = W\n"))
	f2, _ := parseINI("2", strings.NewReader("[a]\nx = %(known/x)s+2\n"))
	c.merge(f1)
	c.merge(f2)
	if v, err := c.get("a", "y", nil); err != nil || v != "1+2-dd-a-%" {
		t.Errorf("y = %q, %v", v, err)
	}
	if v, err := c.get("a", "z", nil); err != nil || v != "W" {
		t.Errorf("z = %q, %v", v, err)
	}
	if v, _ := c.get("a", "x", map[string]string{"x": "V"}); v != "V" {
		t.Errorf("vars come first: %q", v)
	}
	loop, _ := parseINI("3", strings.NewReader("[l]\na = %(b)s\nb = %(a)s\n"))
	c.merge(loop)
	if _, err := c.get("l", "a", nil); err == nil {
		t.Error("an interpolation loop must be an error")
	}
	if _, err := c.get("a", "missing", nil); err == nil {
		t.Error("a missing key must be an error")
	}
}

func TestSubstituteTags(t *testing.T) {
	opts := map[string]string{"logtype": "file", "lt_file/pre": "P", "mode": "m2", "re-m2": "<lt_<logtype>/pre> x <HOST>"}
	lookup := func(s string) (string, bool) { v, ok := opts[s]; return v, ok }
	got, err := substituteTags("failregex", "^<re-<mode>>$", lookup)
	if err != nil || got != "^P x <HOST>$" {
		t.Errorf("got %q, %v", got, err)
	}
	opts["self"] = "<self>a"
	if _, err := substituteTags("x", "<self>", lookup); !errors.Is(err, errTagLoop) {
		t.Errorf("self reference: %v", err)
	}
}

func TestTranslatePython(t *testing.T) {
	ok := []struct{ in, want string }{
		{`(?P<x>\d+)\s+\Z`, `(?P<x>\d+)\s+\z`},
		{`a{,3}`, `a{0,3}`},
		{`(?#note)x`, `x`},
		{`(?iu)x`, `(?i)x`},
		{`(?<n>x)`, `(?P<n>x)`},
		{`[[x]`, `[\[x]`},
		{`[]a]`, `[]a]`},
		{`\u00e9`, `\x{00e9}`},
		{`<HOST> <F-USER>\S+</F-USER>`, `<HOST> <F-USER>\S+</F-USER>`},
	}
	for _, tt := range ok {
		got, err := translatePython(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("%s: got %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	// A negative lookahead becomes a group for convertRegex to rewrite
	// (lookahead.go).
	if got, err := translatePython(`x(?!y)`); err != nil || !strings.HasPrefix(got, "x(?P<"+lookaheadName) {
		t.Errorf("x(?!y): got %q, %v", got, err)
	}
	// A named backreference stands as an empty group until the
	// conversion writes it back for moat's rule (authlog's backref.go).
	if got, err := translatePython(`(?P<a>x)(?P=a)`); err != nil || restoreBackrefs(got) != `(?P<a>x)(?P=a)` {
		t.Errorf("(?P<a>x)(?P=a): got %q, %v", got, err)
	}
	refused := []struct{ in, construct string }{
		{`(?<=x)y`, "lookbehind"},
		{`(?<!x)y`, "lookbehind"},
		{`(a)\1`, `backreference \1`},
		{`(?P<a>x)(?P=a b)`, "backreference"},
		{`(?(1)a|b)`, "conditional"},
		{`(?x) a b`, "verbose"},
		{`a*+`, "possessive"},
	}
	for _, tt := range refused {
		_, err := translatePython(tt.in)
		var ue *UnsupportedError
		if !errors.As(err, &ue) || !strings.Contains(ue.Construct, tt.construct) {
			t.Errorf("%s: got %v, want the construct %q named", tt.in, err, tt.construct)
		}
	}
}

func TestParseTime(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"600": 600 * time.Second, "10m": 10 * time.Minute, "1h 30m": 90 * time.Minute,
		"1d": 24 * time.Hour, "2w": 14 * 24 * time.Hour, "1h+30m": 90 * time.Minute,
		"-1": -time.Second, "1mo": time.Duration(30.4375 * 24 * float64(time.Hour)), "5 minutes": 5 * time.Minute,
	} {
		if got, err := ParseTime(in); err != nil || got != want {
			t.Errorf("%q: got %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "ten", "10q"} {
		if _, err := ParseTime(bad); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
}

func TestExtractOptions(t *testing.T) {
	name, args, err := extractOptions(`sshd[mode=aggressive, x="a, b", y='c']`)
	if err != nil || name != "sshd" || args["mode"] != "aggressive" || args["x"] != "a, b" || args["y"] != "c" {
		t.Errorf("got %q %v %v", name, args, err)
	}
}

// The fixture is written for these tests (it is not fail2ban's): it has
// an include, a .local with %(known/...)s, [Init], a jail.d override, a
// filter argument selecting the mode and a refused regex of each kind.
func TestImportFixture(t *testing.T) {
	res, err := Import("testdata/etc", "testdata/services", defaultSettings)
	if err != nil {
		t.Fatal(err)
	}
	toml, report := res.TOML(), res.Report()
	if !strings.Contains(report, "lookbehind (?<=...)") || !strings.Contains(report, "moat's shape check: open text") ||
		!strings.Contains(report, "ignoreregex not carried over") || !strings.Contains(report, "jail sshd") {
		t.Errorf("report:\n%s", report)
	}
	cfg, err := moatconfig.Parse([]byte(toml), "imported.toml")
	if err != nil {
		t.Fatalf("the import does not pass config check: %v\n%s", err, toml)
	}
	byName := map[string][]moatconfig.LoginRule{}
	for _, r := range cfg.Login.Rules {
		byName[r.Name] = append(byName[r.Name], r)
	}
	my := byName["myapp"]
	if len(my) != 2 || my[0].MaxRetry != 3 || my[0].BanTime != 48*time.Hour || my[0].FindTime != 10*time.Minute ||
		len(my[0].Ports) != 2 || my[0].Ports[0].String() != "tcp/80" || my[0].Source != "/var/log/myapp.log" {
		t.Errorf("myapp: %+v", my)
	}
	other := byName["other"]
	// aggressive mode: 3 imported failregexes, one of them written out
	// for IPv6 and IPv4 (4 patterns), times 2 log files.
	if len(other) != 8 || other[0].FindTime != 90*time.Minute || other[0].BanTime != 0 || other[0].Ports[0].String() != "tcp/8000-8100" {
		t.Errorf("other: %+v", other)
	}
	if len(byName["sshd"]) != 0 {
		t.Error("sshd's jail is moat's own parser's, not a rule")
	}
	rule, err := authlog.CompileRule(my[0].Pattern)
	if err != nil {
		t.Fatal(err)
	}
	for line, want := range map[string]string{
		"Jan 23 21:59:59 host myapp[12]: login failed for bob from 192.0.2.7 port 5":       "192.0.2.7",
		"2005-01-23 21:59:59 host myapp[12]: login failed for bob from [2001:db8::1]":      "2001:db8::1",
		"Jan 23 21:59:59 host myapp[12]: login failed for x from 6.6.6.6 from 192.0.2.8":   "",
		"Jan 23 21:59:59 host myapp[12]: login failed for bob from 192.0.2.7 from 6.6.6.6": "",
	} {
		a, ok := rule.Match([]byte(line))
		if want == "" && ok || want != "" && (!ok || a.String() != want) {
			t.Errorf("%s: got %v %v, want %q", line, a, ok, want)
		}
	}
}

func FuzzParseINI(f *testing.F) {
	f.Add("[DEFAULT]\na = %(b)s\nb = x\n[s]\nk = v\n  cont\n")
	f.Add("[INCLUDES]\nbefore = x.conf\n[Definition]\nfailregex = ^<HOST>$\n")
	f.Fuzz(func(t *testing.T, src string) {
		ini, err := parseINI("f", strings.NewReader(src))
		if err != nil {
			return
		}
		c := newConfig()
		c.merge(ini)
		for _, s := range ini.order {
			for k := range ini.sections[s] {
				_, _ = c.get(s, k, nil)
				_, _ = c.getEx(s, "known/"+k, nil)
			}
		}
	})
}

func FuzzTranslatePython(f *testing.F) {
	for _, s := range []string{`(?P<x>a)\1`, `(?<=a)b`, `[[:x]]`, `a{,2}\Z`, `(?#c)(?iu)x`, `\u12`, `[^]x]`, `\0\07`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		g, err := translatePython(p)
		if err != nil {
			return
		}
		if _, err := regexp.Compile(g); err != nil {
			t.Fatalf("%q became %q, which Go refuses: %v", p, g, err)
		}
		if _, err := convertRegex(anyDate, "", p); err == nil {
			// Whatever converts must pass the daemon's check.
			if _, err := convertRegex(anyDate, "", p); err != nil {
				t.Fatal("not deterministic")
			}
		}
	})
}

// The kind and forget of rules converted from fail2ban's bookkeeping
// tags reach the written configuration.
func TestTOMLBookkeeping(t *testing.T) {
	res := &Result{Dir: "/etc/fail2ban", Jails: []JailReport{{Jail: Jail{Name: "mailer"}, Rules: []Rule{
		{Name: "mailer", Source: "/var/log/mail.log", Pattern: `^x\[(?P<id>\d+)\]: closed by <HOST>$`, Marks: Marks{Kind: "note", Forget: true}},
		{Name: "mailer", Source: "/var/log/mail.log", Pattern: `^x\[(?P<id>\d+)\]: failed$`},
	}}}}
	cfg, err := moatconfig.Parse([]byte(res.TOML()), "imported.toml")
	if err != nil {
		t.Fatalf("%v\n%s", err, res.TOML())
	}
	r := cfg.Login.Rules
	if len(r) != 2 || r[0].Kind != "note" || !r[0].Forget || r[1].Kind != "" || r[1].Forget {
		t.Errorf("rules %+v", r)
	}
}

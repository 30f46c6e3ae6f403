package fail2ban

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moat-fw/moat/internal/authlog"
)

// forgedCase is one line of testdata/forged: a client-chosen field holds
// the address fake, the service's own text the address real.
type forgedCase struct {
	line       string
	fake, real string
	// forged: fail2ban takes fake (the proof that its filter is
	// forgeable). Else the line is an attempt that fails against fail2ban
	// too (the evidence for a refusal that is only cautious). A "model"
	// line is forged too, in a field the shape check must assume the
	// client may fill (any open text) but that the service was not shown
	// to fill with the client's text: it proves that no shape check
	// treating open text as the client's can accept the failregex
	// (docs/login-rules.md, "Open text on both sides").
	forged bool
	// when is the dovecot setting the service must have to write the
	// line ("key = value"; "" for its defaults): moat's import under
	// that setting must not take the fake either.
	when string
}

// forgedFile is a testdata/forged/<filter>.log: its cases and what moat's
// import must do with the filter's failregexes (by index, in the filter's
// default mode unless "# mode:" says otherwise).
type forgedFile struct {
	mode              string
	refused, imported []int
	cases             []forgedCase
}

func readForged(t *testing.T, path string) forgedFile {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var ff forgedFile
	var pending *forgedCase
	ints := func(s string) []int {
		var out []int
		for _, f := range strings.Fields(s) {
			n, err := strconv.Atoi(f)
			if err != nil {
				t.Fatalf("%s: %q is not a failregex index", path, f)
			}
			out = append(out, n)
		}
		return out
	}
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 1<<16), 1<<16)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		c, ok := strings.CutPrefix(line, "# ")
		switch {
		case line == "" || line == "#":
		case ok && strings.HasPrefix(c, "refused: "):
			ff.refused = ints(strings.TrimPrefix(c, "refused: "))
		case ok && strings.HasPrefix(c, "imported: "):
			ff.imported = ints(strings.TrimPrefix(c, "imported: "))
		case ok && strings.HasPrefix(c, "mode: "):
			ff.mode = strings.TrimPrefix(c, "mode: ")
		case ok && (strings.HasPrefix(c, "forge ") || strings.HasPrefix(c, "hold ") || strings.HasPrefix(c, "model ")):
			c, when, _ := strings.Cut(c, " when ")
			f := strings.Fields(c)
			if len(f) != 4 || f[2] != "real" {
				t.Fatalf("%s:%d: want \"# forge|hold|model FAKE real REAL [when SETTING = VALUE]\", got %q", path, n, line)
			}
			pending = &forgedCase{fake: f[1], real: f[3], forged: f[0] != "hold", when: when}
		case strings.HasPrefix(line, "#"):
		case pending == nil:
			t.Fatalf("%s:%d: a log line without a \"# forge\" or \"# hold\" line before it", path, n)
		default:
			pending.line = line
			ff.cases = append(ff.cases, *pending)
			pending = nil
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(ff.cases) == 0 {
		t.Fatalf("%s: no cases", path)
	}
	return ff
}

// TestForgeableFilters proves, with the real fail2ban, which of the
// failregexes moat refuses a client can aim at an address of its choice:
// every line of testdata/forged/<filter>.log is one the service writes
// when a client fills one of its fields (each file's header names the
// field and the service's source). fail2ban-regex, with the host's
// filter, must take the fake address on "# forge" lines and not on
// "# hold" lines; moat's import of the same filter must refuse the
// failregexes the file names and, with whatever it does import, take the
// real address or none, never the fake one.
func TestForgeableFilters(t *testing.T) {
	bin, err := exec.LookPath("fail2ban-regex")
	if err != nil {
		t.Skip("fail2ban-regex is not installed (apt-get install fail2ban): the forged lines are proven against the real fail2ban")
	}
	if _, err := os.Stat(filepath.Join(f2bDir, "filter.d")); err != nil {
		t.Skipf("no fail2ban filters: %v", err)
	}
	files, err := filepath.Glob("testdata/forged/*.log")
	if err != nil || len(files) == 0 {
		t.Fatalf("no forged lines in testdata/forged: %v", err)
	}
	for _, path := range files {
		name := strings.TrimSuffix(filepath.Base(path), ".log")
		t.Run(name, func(t *testing.T) {
			ff := readForged(t, path)
			args := map[string]string{}
			filterArg := filepath.Join(f2bDir, "filter.d", name+".conf")
			if ff.mode != "" {
				args["mode"] = ff.mode
				filterArg += "[mode=" + ff.mode + "]"
			}
			f, err := LoadFilter(f2bDir, name, args, "auto", nil)
			if err != nil {
				t.Fatal(err)
			}
			c := ConvertFilter(f, defaultSettings)
			for i, p := range c.Patterns {
				switch {
				case slices.Contains(ff.refused, i) && p.Err == nil:
					t.Errorf("failregex %d imports, the file says moat refuses it: %s", i, p.FailRegex)
				case slices.Contains(ff.imported, i) && (p.Err != nil || len(p.Moat) == 0):
					t.Errorf("failregex %d is refused (%v), the file says moat imports it: %s", i, p.Err, p.FailRegex)
				}
			}
			for _, i := range append(slices.Clone(ff.refused), ff.imported...) {
				if i >= len(c.Patterns) {
					t.Fatalf("the filter has %d failregexes, the file names %d", len(c.Patterns), i)
				}
			}
			rulesWhen := map[string][]*authlog.Rule{"": compiled(t, c)}
			for _, fc := range ff.cases {
				if _, ok := rulesWhen[fc.when]; !ok {
					rulesWhen[fc.when] = compiled(t, ConvertFilter(f, dovecotWhen(t, fc.when)))
				}
			}
			for _, fc := range ff.cases {
				rules := rulesWhen[fc.when]
				took := fail2banTakes(t, bin, filterArg, fc.line)
				switch {
				case fc.forged && !slices.Contains(took, fc.fake):
					t.Errorf("fail2ban took %v, not the forged %s: %s", took, fc.fake, fc.line)
				case !fc.forged && slices.Contains(took, fc.fake):
					t.Errorf("fail2ban took the fake %s on a line marked hold: %s", fc.fake, fc.line)
				}
				if got := firstMatch(rules, fc.line); got != "" && got != fc.real {
					t.Errorf("moat's import took %s (real %s): %s", got, fc.real, fc.line)
				}
			}
		})
	}
}

// fail2banTakes runs fail2ban-regex with the filter on the one line and
// returns the addresses it takes.
func fail2banTakes(t *testing.T, bin, filter, line string) []string {
	t.Helper()
	log := filepath.Join(t.TempDir(), "line.log")
	if err := os.WriteFile(log, []byte(line+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-o", "ip", log, filter).CombinedOutput()
	if err != nil {
		t.Fatalf("fail2ban-regex: %v\n%s", err, out)
	}
	return strings.Fields(string(out))
}

// compiled compiles what c imported.
func compiled(t *testing.T, c *Converted) []*authlog.Rule {
	t.Helper()
	var rules []*authlog.Rule
	for _, p := range c.Patterns {
		for _, pat := range p.Moat {
			r, err := authlog.CompileRule(pat)
			if err != nil {
				t.Fatalf("an imported pattern does not compile: %v", err)
			}
			rules = append(rules, r)
		}
	}
	return rules
}

// dovecotWhen is dovecot's defaults with the setting "key = value" in
// every protocol.
func dovecotWhen(t *testing.T, when string) StaticSettings {
	t.Helper()
	k, v, ok := strings.Cut(when, " =")
	views := DovecotDefaults()
	for i := range views {
		if !ok || !views[i].set(k, strings.TrimSpace(v)) {
			t.Fatalf("\"when %s\": want one of dovecot's settings checked at import, as \"KEY = VALUE\"", when)
		}
	}
	return StaticSettings{DovecotViews: views}
}

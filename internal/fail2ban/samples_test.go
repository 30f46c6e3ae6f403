package fail2ban

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	moatconfig "github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/login"
)

// fail2ban's own annotated sample logs and filters, as the Debian package
// installs them. They are read here at test time and never copied into
// moat (they are GPL).
const (
	f2bDir     = "/etc/fail2ban"
	f2bSamples = "/usr/lib/python3/dist-packages/fail2ban/tests/files/logs"
)

var annotationRe = regexp.MustCompile(`^#+ ?(failJSON|fileOptions|filterOptions|addFILE):(.+)$`)

// sampleStats is one filter's agreement with fail2ban's annotations.
type sampleStats struct {
	filter                string
	imported, failregexes int
	lines, agree          int
	missed, extra, wrong  int
	names                 int // the annotation's host is a name: moat never bans names
	skipped               int // journal blocks, constraints and conditions fail2ban evaluates in Python
	reasons               map[string]int
}

// TestFail2banSamples compares, for every filter of the installed
// fail2ban, what the imported rules match (and which address they take)
// with the failJSON annotations of fail2ban's sample log for that filter,
// as fail2ban's tests/samplestestcase.py reads them. Wrong addresses fail
// the test; the agreement is a measurement, written to the file named by
// MOAT_F2B_TABLE when set (docs/fail2ban-import.md has it).
func TestFail2banSamples(t *testing.T) {
	if _, err := os.Stat(f2bSamples); err != nil {
		t.Skipf("fail2ban's sample logs are not installed (%v): apt-get install fail2ban to measure the import against them", err)
	}
	ents, err := os.ReadDir(filepath.Join(f2bDir, "filter.d"))
	if err != nil {
		t.Skipf("no fail2ban filters: %v", err)
	}
	var all []*sampleStats
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".conf")
		if !ok || strings.HasSuffix(name, "common") {
			continue
		}
		if _, err := os.Stat(filepath.Join(f2bSamples, name)); err != nil {
			continue
		}
		st := measureFilter(t, name)
		all = append(all, st)
	}
	var tot sampleStats
	var b strings.Builder
	b.WriteString("| filter | failregexes imported | annotated lines | agree | missed | extra matches | wrong address | host names | skipped |\n|---|---|---|---|---|---|---|---|---|\n")
	over95 := 0
	for _, s := range all {
		pct := "–"
		if d := s.lines - s.names; d > 0 && s.imported > 0 {
			pct = fmt.Sprintf("%.1f%%", 100*float64(s.agree)/float64(d))
		}
		name := s.filter
		if s.filter == "sshd" {
			// moat import fail2ban never converts the sshd jail: moat's
			// own parser reads sshd (internal/authlog's
			// TestFail2banSamples measures it on this same log). The
			// row is for information and stays out of the totals.
			name = "sshd (not imported: moat's parser)"
		}
		fmt.Fprintf(&b, "| %s | %d/%d | %d | %s | %d | %d | %d | %d | %d |\n", name, s.imported, s.failregexes, s.lines, pct, s.missed, s.extra, s.wrong, s.names, s.skipped)
		if s.imported > 0 && s.filter != "sshd" {
			if d := s.lines - s.names; d == 0 || 100*s.agree >= 95*d {
				over95++
			}
			tot.lines += s.lines
			tot.agree += s.agree
			tot.names += s.names
			tot.missed += s.missed
			tot.extra += s.extra
			tot.wrong += s.wrong
			tot.imported++
		}
		if s.wrong > 0 {
			t.Errorf("%s: %d wrong addresses", s.filter, s.wrong)
		}
	}
	fmt.Fprintf(&b, "\nFilters that import at least one failregex (sshd left out): %d of %d; %d of them agree on at least 95%% of their lines. On their annotated lines: %d of %d agree (%.1f%%; host names left out: %d), %d missed, %d extra matches, %d wrong addresses.\n",
		tot.imported, len(all)-1, over95, tot.agree, tot.lines-tot.names, 100*float64(tot.agree)/float64(max(1, tot.lines-tot.names)), tot.names, tot.missed, tot.extra, tot.wrong)
	// Why failregexes did not import, over all filters (default options),
	// offsets and regexes left out so that kinds add up.
	kinds := map[string]int{}
	offset := regexp.MustCompile(` at offset \d+|datepattern "[^"]*"|"[^"]*"`)
	for _, s := range all {
		for r, n := range s.reasons {
			r = strings.ReplaceAll(r, "\n", "; ")
			if len(r) > 110 {
				r = r[:110] + "..."
			}
			kinds[offset.ReplaceAllString(r, "…")] += n
		}
	}
	var ks []string
	for k := range kinds {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool {
		return kinds[ks[i]] > kinds[ks[j]] || kinds[ks[i]] == kinds[ks[j]] && ks[i] < ks[j]
	})
	b.WriteString("\n| failregexes not imported (\"some alternatives\": partly) | why |\n|---|---|\n")
	for _, k := range ks {
		fmt.Fprintf(&b, "| %d | %s |\n", kinds[k], strings.ReplaceAll(k, "|", `\|`))
	}
	t.Log("\n" + b.String())
	if p := os.Getenv("MOAT_F2B_TABLE"); p != "" {
		if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func measureFilter(t *testing.T, name string) *sampleStats {
	st := &sampleStats{filter: name, reasons: map[string]int{}}
	// A variant is one set of filter options: its rules, run through
	// the login guard's matcher and multi-line bookkeeping (connection
	// ids), with a state of its own, as fail2ban keeps one filter object
	// (and its id cache) per set of options.
	type variant struct {
		cfg   moatconfig.Login
		set   *login.RuleSet
		guard *login.Guard
		ms    []login.RuleLine
	}
	cache := map[string]*variant{}
	load := func(opts map[string]any) *variant {
		args := map[string]string{}
		for k, v := range opts {
			if !strings.HasPrefix(k, "test.") {
				args[k] = fmt.Sprint(v)
			}
		}
		key := fmt.Sprint(args)
		if v, ok := cache[key]; ok {
			return v
		}
		v := &variant{}
		cache[key] = v
		f, err := LoadFilter(f2bDir, name, args, "auto", nil)
		if err != nil {
			st.reasons["load: "+err.Error()]++
			return v
		}
		c := ConvertFilter(f, defaultSettings)
		if len(cache) == 1 {
			st.imported, st.failregexes = c.Imported(), len(c.Patterns)
		}
		for _, p := range c.Patterns {
			if p.Err != nil {
				st.reasons[p.Err.Error()]++
			}
			for i, pat := range p.Moat {
				// moat's configuration wants the anchors in the text.
				if !strings.HasPrefix(pat, "^") || !strings.HasSuffix(pat, "$") {
					t.Fatalf("%s: an imported pattern is not written from ^ to $: %s", name, pat)
				}
				v.cfg.Rules = append(v.cfg.Rules, moatconfig.LoginRule{Name: name, Source: "/f2b", Pattern: pat,
					Kind: p.Marks[i].Kind, Forget: p.Marks[i].Forget})
			}
		}
		// fail2ban's id cache lives five minutes of wall clock: the whole
		// sample. The lines are fed at one time, so nothing ages out.
		v.cfg.FindTime, v.cfg.MaxRetry, v.cfg.MaxTracked = 100*365*24*time.Hour, 1000, 1000
		// The rules as moat import fail2ban writes them must pass config
		// check (name "f2b-" + name: the sshd filter's rules may not be
		// named "sshd").
		var jr JailReport
		for _, r := range v.cfg.Rules {
			jr.Rules = append(jr.Rules, Rule{Name: "f2b-" + name, Source: r.Source, Pattern: r.Pattern, Marks: Marks{Kind: r.Kind, Forget: r.Forget}})
		}
		if _, err := moatconfig.Parse([]byte((&Result{Jails: []JailReport{jr}}).TOML()), name+".toml"); err != nil {
			t.Fatalf("%s: config check refuses the imported rules: %v", name, err)
		}
		set, err := login.CompileRules(v.cfg)
		if err != nil {
			t.Fatalf("%s: an imported pattern does not compile: %v", name, err)
		}
		v.set, v.guard = set, login.New(v.cfg, login.NewDryRun(nil, func(int) time.Duration { return time.Hour }))
		return v
	}
	// match runs line through v as the daemon does: the jail's first
	// pattern that matches, then the bookkeeping, which says whether the
	// line counts a failure and for which address.
	t0 := time.Unix(1_700_000_000, 0)
	match := func(v *variant, line string) (netip.Addr, bool) {
		v.ms = v.set.Match("", []byte(line), true, v.ms[:0])
		if len(v.ms) == 0 {
			return netip.Addr{}, false
		}
		ev, ok := v.guard.Attribute(&v.ms[0], t0)
		return ev.Addr, ok
	}
	variants := []*variant{load(nil)}
	files := []string{name}
	var common map[string]any
	for i := 0; i < len(files); i++ {
		fh, err := os.Open(filepath.Join(f2bSamples, files[i]))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		skipBlock := false
		var pending map[string]any
		for sc.Scan() {
			line := strings.TrimRight(sc.Text(), "\r\n")
			if m := annotationRe.FindStringSubmatch(line); m != nil {
				switch m[1] {
				case "fileOptions":
					_ = json.Unmarshal([]byte(m[2]), &common)
				case "addFILE":
					var f string
					if json.Unmarshal([]byte(m[2]), &f) == nil {
						files = append(files, f)
					}
				case "filterOptions":
					var list []map[string]any
					if json.Unmarshal([]byte(m[2]), &list) != nil {
						var one map[string]any
						_ = json.Unmarshal([]byte(m[2]), &one)
						list = []map[string]any{one}
					}
					variants, skipBlock = nil, false
					for _, o := range list {
						opts := map[string]any{}
						for k, v := range common {
							opts[k] = v
						}
						for k, v := range o {
							opts[k] = v
						}
						// Python conditions and journal lines (no date,
						// a prefix fail2ban's systemd backend makes) are
						// not something a moat file rule sees.
						if opts["test.condition"] != nil || opts["logtype"] == "journal" {
							skipBlock = true
							continue
						}
						variants = append(variants, load(opts))
					}
				case "failJSON":
					pending = nil
					_ = json.Unmarshal([]byte(m[2]), &pending)
				}
				continue
			}
			if pending == nil {
				// fail2ban reads the lines without annotation too:
				// their ids count for the lines after them.
				if !skipBlock && line != "" && !strings.HasPrefix(line, "#") {
					for _, v := range variants {
						match(v, line)
					}
				}
				continue
			}
			fd := pending
			pending = nil
			if skipBlock || fd["constraint"] != nil || len(variants) == 0 {
				st.skipped++
				continue
			}
			want, _ := fd["match"].(bool)
			host, _ := fd["host"].(string)
			for _, v := range variants {
				st.lines++
				got, matched := match(v, line)
				exp, err := netip.ParseAddr(host)
				switch {
				case want && host != "" && err != nil:
					st.names++
					if matched {
						st.wrong++
						t.Logf("%s: took %v where fail2ban's annotation says the name %q: %s", name, got, host, line)
					}
				case want && !matched:
					st.missed++
					if os.Getenv("MOAT_F2B_MISSES") != "" {
						t.Logf("%s: missed: %s", name, line)
					}
				case want && matched && host != "" && got != exp.Unmap():
					st.wrong++
					t.Logf("%s: took %v, want %v: %s", name, got, exp, line)
				case !want && matched:
					st.extra++
				default:
					st.agree++
				}
			}
		}
		fh.Close()
	}
	return st
}

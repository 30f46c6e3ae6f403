package authlog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// fail2ban's own sshd sample logs are GPL: they are read from the installed
// Debian package at test time, never copied here. scripts/setup.sh installs
// fail2ban; $MOAT_FAIL2BAN_LOGS points elsewhere.
func fail2banLogs(t *testing.T) string {
	t.Helper()
	dirs := []string{os.Getenv("MOAT_FAIL2BAN_LOGS"), "/usr/lib/python3/dist-packages/fail2ban/tests/files/logs"}
	for _, d := range dirs {
		if d == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "sshd")); err == nil {
			return d
		}
	}
	t.Skip("fail2ban's annotated test logs are not installed (apt-get install fail2ban, as scripts/setup.sh does, or set MOAT_FAIL2BAN_LOGS to fail2ban/tests/files/logs)")
	return ""
}

// f2bSample is one annotated line: the line after a "# failJSON: {...}"
// comment, and what fail2ban's sshd filter must find in it per mode.
type f2bSample struct {
	file   string
	lineno int
	line   string
	// expect maps fail2ban's mode ("normal", "ddos", "extra",
	// "aggressive") to the annotation that holds in it; a mode missing
	// from the map is not tested on this line.
	expect map[string]f2bExpect
	// modes are the fail2ban modes of the line's block.
	modes map[string]bool
	// journal: the line is "HOST sshd[PID]: MESSAGE" as fail2ban's
	// journal backend formats it; moat reads MESSAGE and _PID.
	journal bool
}

type f2bExpect struct {
	match bool
	host  string // "" when the annotation names none
	// several: the annotation counts attempts from several lines
	// ("attempts" above 1, or a "users" list): fail2ban matches the line
	// because of the lines before it.
	several bool
}

var f2bDirective = regexp.MustCompile(`^#+ ?(failJSON|(?:file|filter)Options|addFILE):(.+)$`)

// readFail2ban reads an annotated log the way fail2ban's
// tests/samplestestcase.py does: fileOptions apply to the whole file,
// filterOptions (one or a list of option sets) to the lines that follow,
// and a failJSON comment to the next line, under every option set whose
// test.condition and the annotation's constraint hold. The few Python
// expressions the sshd logs use are evaluated here; any other fails the
// test rather than being guessed.
func readFail2ban(t *testing.T, dir, name string) []f2bSample {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		common  map[string]any
		filters = []map[string]any{{}}
		out     []f2bSample
		pending map[string]any
		lineno  int
	)
	cond := func(expr string, opts map[string]any) bool {
		mode, _ := opts["mode"].(string)
		switch strings.ReplaceAll(expr, " ", "") {
		case "name=='sshd'":
			return true // the filter under test is sshd itself
		case "opts.get('mode')!='aggressive'":
			return mode != "aggressive"
		case "opts.get('mode')=='aggressive'":
			return mode == "aggressive"
		}
		t.Fatalf("%s:%d: unknown condition %q", name, lineno, expr)
		return false
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lineno++
		line := strings.TrimRight(sc.Text(), "\r\n")
		if m := f2bDirective.FindStringSubmatch(line); m != nil {
			var v any
			if err := json.Unmarshal([]byte(m[2]), &v); err != nil {
				t.Fatalf("%s:%d: %v", name, lineno, err)
			}
			switch m[1] {
			case "fileOptions":
				common = v.(map[string]any)
			case "filterOptions":
				filters = nil
				list, ok := v.([]any)
				if !ok {
					list = []any{v}
				}
				for _, o := range list {
					opts := map[string]any{}
					for k, x := range common {
						opts[k] = x
					}
					for k, x := range o.(map[string]any) {
						opts[k] = x
					}
					filters = append(filters, opts)
				}
			case "addFILE":
				// The caller reads sshd-journal itself.
			case "failJSON":
				pending = v.(map[string]any)
			}
			continue
		}
		if pending == nil {
			continue
		}
		s := f2bSample{file: name, lineno: lineno, line: line, expect: map[string]f2bExpect{}, modes: map[string]bool{}}
		for _, opts := range filters {
			if mode, _ := opts["mode"].(string); mode != "" {
				s.modes[mode] = true
			} else {
				s.modes["normal"] = true
			}
			if c, ok := opts["test.condition"].(string); ok && !cond(c, opts) {
				continue
			}
			if c, ok := pending["constraint"].(string); ok && !cond(c, opts) {
				continue
			}
			mode, _ := opts["mode"].(string)
			if mode == "" {
				mode = "normal"
			}
			if lt, _ := opts["logtype"].(string); lt == "journal" {
				s.journal = true
			}
			match, _ := pending["match"].(bool)
			host, _ := pending["host"].(string)
			for _, k := range []string{"ip4", "ip6"} {
				if h, ok := pending[k].(string); ok && host == "" {
					host = h
				}
			}
			attempts, _ := pending["attempts"].(float64)
			_, users := pending["users"]
			s.expect[mode] = f2bExpect{match, host, attempts > 1 || users}
		}
		pending = nil
		if len(s.expect) > 0 {
			out = append(out, s)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// expectFor is the annotation moat's mode is judged by. moat's aggressive
// mode counts everything fail2ban's aggressive mode does (which includes
// ddos and extra); where a block has no aggressive set, its normal one
// stands. moat's normal mode is judged only where fail2ban has a normal set.
func (s *f2bSample) expectFor(aggressive bool) (f2bExpect, bool) {
	if !aggressive {
		e, ok := s.expect["normal"]
		return e, ok
	}
	if s.modes["aggressive"] {
		// A constraint may leave the line out of aggressive mode.
		e, ok := s.expect["aggressive"]
		return e, ok
	}
	for _, m := range []string{"normal", "extra", "ddos"} {
		if e, ok := s.expect[m]; ok {
			return e, true
		}
	}
	return f2bExpect{}, false
}

// singleLine reports whether the line itself holds the address fail2ban
// expects and fail2ban's match stands for this line alone: the rest need
// the lines before or after it.
func (e f2bExpect) singleLine(line string) bool {
	return e.match && !e.several && e.host != "" && strings.Contains(line, e.host)
}

// journalMessage splits fail2ban's "HOST sshd[PID]: MESSAGE" journal
// rendering into what the journal follower hands on: MESSAGE and _PID.
func journalMessage(line string) ([]byte, uint32, bool) {
	i := strings.Index(line, ": ")
	if i < 0 {
		return nil, 0, false
	}
	head, msg := line[:i], line[i+2:]
	var pid uint32
	if j := strings.LastIndexByte(head, '['); j >= 0 && strings.HasSuffix(head, "]") {
		fmt.Sscanf(head[j+1:len(head)-1], "%d", &pid)
	}
	return []byte(msg), pid, true
}

// f2bResult tallies one mode over one log.
type f2bResult struct {
	lines, hit, named, wrong, extra int // single-line
	mlLines, mlHit, mlWrong         int // multi-line (the joiner)
	misses, wrongs, extras          []string
}

// judge compares the events moat made of one line with fail2ban's
// annotation. The host may be a name (UseDNS yes): moat reports it as a
// name, never as an address.
func judge(r *f2bResult, s *f2bSample, e f2bExpect, evs []Event, aggressive, single bool) {
	var got []string
	for i := range evs {
		if evs[i].Kind.Aggressive() && !aggressive || evs[i].Kind == Accepted {
			continue
		}
		if evs[i].Addr.IsValid() {
			got = append(got, evs[i].Addr.String())
		} else {
			got = append(got, "name:"+string(evs[i].Host))
		}
	}
	where := fmt.Sprintf("%s:%d: %s", s.file, s.lineno, s.line)
	if !e.match {
		if len(got) > 0 {
			r.extra++
			r.extras = append(r.extras, fmt.Sprintf("%s -> %v", where, got))
		}
		return
	}
	want := e.host
	if a, err := netip.ParseAddr(want); err == nil {
		want = a.Unmap().String()
	} else if want != "" {
		want = "name:" + want
	}
	ok, wrong := false, false
	for _, g := range got {
		if want == "" || g == want {
			ok = true
		} else {
			wrong = true
		}
	}
	if single {
		r.lines++
	} else {
		r.mlLines++
	}
	switch {
	case wrong:
		if single {
			r.wrong++
		} else {
			r.mlWrong++
		}
		r.wrongs = append(r.wrongs, fmt.Sprintf("%s -> %v, want %s", where, got, want))
	case ok && single:
		r.hit++
		if strings.HasPrefix(want, "name:") {
			r.named++
		}
	case ok:
		r.mlHit++
	default:
		r.misses = append(r.misses, where)
	}
}

// runFail2ban feeds one annotated log, every line in order, through a
// Joiner (as the login guard would) and judges each annotated line.
func runFail2ban(t *testing.T, samples []f2bSample, aggressive bool) f2bResult {
	var r f2bResult
	j := NewJoiner(JoinerConfig{Names: true})
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var buf []Event
	for i := range samples {
		s := &samples[i]
		now = now.Add(time.Second)
		if s.journal {
			msg, pid, ok := journalMessage(s.line)
			if !ok {
				continue
			}
			buf = j.Message(msg, pid, now, buf[:0])
		} else {
			buf = j.Line([]byte(s.line), now, buf[:0])
		}
		e, ok := s.expectFor(aggressive)
		if !ok {
			continue
		}
		// Every line is judged by what the login guard would get: the
		// Joiner's events, which are the parser's plus those the lines
		// before and after complete. A line is single-line when it holds
		// the address fail2ban expects, multi-line when not.
		judge(&r, s, e, buf, aggressive, e.singleLine(s.line))
	}
	return r
}

// TestFail2banSamples measures the sshd parser and the joiner on fail2ban's
// annotated sshd logs: recall on the lines that hold their own address, in
// both modes, and no wrong address anywhere. docs/login-parser.md has the
// table (go test -run TestFail2banSamples -v prints it).
func TestFail2banSamples(t *testing.T) {
	dir := fail2banLogs(t)
	logs := map[string][]f2bSample{
		"sshd":         readFail2ban(t, dir, "sshd"),
		"sshd-journal": readFail2ban(t, dir, "sshd-journal"),
	}
	for _, name := range []string{"sshd", "sshd-journal"} {
		for _, aggressive := range []bool{false, true} {
			// Each mode gets a fresh pass: the joiner's state is per run.
			r := runFail2ban(t, logs[name], aggressive)
			mode := "normal"
			if aggressive {
				mode = "aggressive"
			}
			t.Logf("| %s | %s | %d/%d (%.1f%%, %d as names) | %d | %d/%d | %d | %d |", name, mode,
				r.hit, r.lines, pct(r.hit, r.lines), r.named, r.wrong, r.mlHit, r.mlLines, r.mlWrong, r.extra)
			for _, m := range r.misses {
				t.Logf("  %s miss: %s", mode, m)
			}
			for _, x := range r.extras {
				t.Logf("  %s extra: %s", mode, x)
			}
			for _, w := range r.wrongs {
				t.Errorf("%s: wrong address: %s", mode, w)
			}
			if aggressive && pct(r.hit, r.lines) < 90 {
				t.Errorf("%s, aggressive: single-line recall %.1f%% < 90%%", name, pct(r.hit, r.lines))
			}
		}
	}
}

func pct(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

// TestSSHGuardOnFail2ban runs sshguard's parser on the same single-line
// samples, one line per process so that each answer belongs to its line,
// for the comparison in docs/login-parser.md. Only -v prints it.
func TestSSHGuardOnFail2ban(t *testing.T) {
	const bin = "/usr/libexec/sshguard/sshg-parser"
	if _, err := os.Stat(bin); err != nil || !testing.Verbose() {
		t.Skip("needs sshguard's sshg-parser and -v (a comparison, not a check)")
	}
	dir := fail2banLogs(t)
	samples := readFail2ban(t, dir, "sshd")
	for _, aggressive := range []bool{false, true} {
		lines, hit, wrong := 0, 0, 0
		var wrongs []string
		for _, s := range samples {
			e, ok := s.expectFor(aggressive)
			if !ok || !e.singleLine(s.line) {
				continue
			}
			lines++
			cmd := exec.Command(bin)
			cmd.Stdin = strings.NewReader(s.line + "\n")
			out, _ := cmd.Output()
			fields := strings.Fields(string(bytes.TrimSpace(out)))
			if len(fields) < 2 {
				continue
			}
			want := e.host
			if a, err := netip.ParseAddr(want); err == nil {
				want = a.Unmap().String()
			}
			if fields[1] == want {
				hit++
			} else {
				wrong++
				wrongs = append(wrongs, fmt.Sprintf("%s -> %s", s.line, fields[1]))
			}
		}
		sort.Strings(wrongs)
		t.Logf("sshg-parser, fail2ban %v set: %d/%d (%.1f%%), %d wrong: %q", map[bool]string{false: "normal", true: "aggressive"}[aggressive], hit, lines, pct(hit, lines), wrong, wrongs)
	}
}

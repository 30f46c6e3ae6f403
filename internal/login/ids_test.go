package login

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/config"
)

// appRules are a service that writes a connection's address on one line
// and its failures on others of the same id (its PID), as sendmail and
// sshd do.
func appRules(source string) []config.LoginRule {
	r := func(kind string, forget bool, pattern string) config.LoginRule {
		return config.LoginRule{Name: "app", Source: source, Kind: kind, Forget: forget, Pattern: pattern}
	}
	return []config.LoginRule{
		r("note", false, `^app\[(?P<id>\d+)\]: connect from <HOST>$`),
		r("", false, `^app\[(?P<id>\d+)\]: auth failed for <USER>$`),
		r("failure", false, `^app\[(?P<id>\d+)\]: denied <HOST>$`),
		r("success", false, `^app\[(?P<id>\d+)\]: accepted for <USER>$`),
		r("note", true, `^app\[(?P<id>\d+)\]: disconnect$`),
		r("failure", true, `^app\[(?P<id>\d+)\]: too many failures, bye$`),
	}
}

// idFeed is a guard over appRules: it feeds a line and says which address
// the line counted a failure for ("" none).
type idFeed struct {
	t     *testing.T
	rules *RuleSet
	g     *Guard
	ms    []RuleLine
}

func newIDFeed(t *testing.T, cfg config.Login) *idFeed {
	t.Helper()
	rs, err := CompileRules(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &idFeed{t: t, rules: rs, g: New(cfg, &fakePolicy{banned: map[netip.Prefix]bool{}})}
}

func (f *idFeed) line(source, line string, now time.Time) string {
	f.ms = f.rules.Match(source, []byte(line), true, f.ms[:0])
	got := ""
	for i := range f.ms {
		if ev, ok := f.g.Attribute(&f.ms[i], now); ok {
			got += ev.Addr.String()
		}
	}
	return got
}

func TestMultiLineAttribution(t *testing.T) {
	type l struct {
		line, want string // want: the address counted, "" none
		at         time.Duration
	}
	tests := []struct {
		name  string
		lines []l
	}{
		{"the failure takes its id's address", []l{
			{"app[1]: connect from 192.0.2.1", "", 0},
			{"app[2]: connect from 192.0.2.2", "", 0},
			{"app[1]: auth failed for bob", "192.0.2.1", 0},
			{"app[2]: auth failed for bob", "192.0.2.2", 0},
			{"app[1]: auth failed for bob", "192.0.2.1", 0},
		}},
		{"an unknown id counts for no one", []l{
			{"app[1]: connect from 192.0.2.1", "", 0},
			{"app[3]: auth failed for bob", "", 0},
		}},
		{"a failure before its address waits for it, and counts once", []l{
			{"app[1]: auth failed for bob", "", 0},
			{"app[1]: auth failed for bob", "", 0},
			{"app[1]: connect from 192.0.2.1", "192.0.2.1", 0},
			{"app[1]: connect from 192.0.2.1", "", 0},
			{"app[1]: auth failed for bob", "192.0.2.1", 0},
		}},
		{"a failure with its own address counts for it, and the id takes it", []l{
			{"app[1]: connect from 192.0.2.1", "", 0},
			{"app[1]: denied 192.0.2.7", "192.0.2.7", 0},
			{"app[1]: auth failed for bob", "192.0.2.7", 0},
		}},
		{"forget ends the id", []l{
			{"app[1]: connect from 192.0.2.1", "", 0},
			{"app[1]: disconnect", "", 0},
			{"app[1]: auth failed for bob", "", 0},
		}},
		{"a failure that forgets counts, then the id is gone", []l{
			{"app[1]: connect from 192.0.2.1", "", 0},
			{"app[1]: too many failures, bye", "192.0.2.1", 0},
			{"app[1]: auth failed for bob", "", 0},
		}},
		{"a success cancels the failures waiting", []l{
			{"app[1]: auth failed for bob", "", 0},
			{"app[1]: accepted for bob", "", 0},
			{"app[1]: connect from 192.0.2.1", "", 0},
		}},
		{"several users on one connection: its success counts", []l{
			{"app[1]: connect from 192.0.2.1", "", 0},
			{"app[1]: auth failed for root", "192.0.2.1", 0},
			{"app[1]: accepted for bob", "192.0.2.1", 0},
		}},
		{"one user's success does not count", []l{
			{"app[1]: connect from 192.0.2.1", "", 0},
			{"app[1]: auth failed for bob", "192.0.2.1", 0},
			{"app[1]: accepted for bob", "", 0},
		}},
		{"an id lives find_time from its address", []l{
			{"app[1]: connect from 192.0.2.1", "", 0},
			{"app[1]: auth failed for bob", "192.0.2.1", 10 * time.Minute},
			{"app[1]: auth failed for bob", "", 10*time.Minute + time.Second},
		}},
		{"a later address of the id replaces the first (a reused PID)", []l{
			{"app[1]: connect from 192.0.2.1", "", 0},
			{"app[1]: disconnect", "", 0},
			{"app[1]: connect from 192.0.2.9", "", time.Second},
			{"app[1]: auth failed for bob", "192.0.2.9", time.Second},
		}},
		// A failure waiting for its address belongs to its connection:
		// once that connection's id is forgotten or has aged out, a later
		// connection that reuses the id does not inherit it.
		{"a forgotten id's waiting failure is gone", []l{
			{"app[1]: auth failed for bob", "", 0},
			{"app[1]: disconnect", "", 0},
			{"app[1]: connect from 192.0.2.9", "", time.Second},
		}},
		{"a waiting failure ages out", []l{
			{"app[1]: auth failed for bob", "", 0},
			{"app[1]: connect from 192.0.2.9", "", 10*time.Minute + time.Second},
			{"app[1]: auth failed for bob", "192.0.2.9", 10*time.Minute + time.Second},
		}},
		// A client writes the service's words into its user name: the
		// rules take the id and the address where the service writes
		// them, so the line neither records a fake address nor counts
		// for another connection.
		{"a user name that writes a note and another id", []l{
			{"app[1]: connect from 192.0.2.1", "", 0},
			{"app[2]: connect from 192.0.2.2", "", 0},
			{"app[1]: auth failed for x\napp[2]: connect from 203.0.113.9", "", 0},
			{"app[1]: auth failed for ]: connect from 203.0.113.9", "192.0.2.1", 0},
			{"app[1]: auth failed for app[2]: auth failed for bob", "192.0.2.1", 0},
			{"app[2]: auth failed for bob", "192.0.2.2", 0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.Rules = appRules("/var/log/app.log")
			f := newIDFeed(t, cfg)
			for i, l := range tt.lines {
				if got := f.line("/var/log/app.log", l.line, t0.Add(l.at)); got != l.want {
					t.Errorf("line %d %q: counted %q, want %q", i+1, l.line, got, l.want)
				}
			}
		})
	}
}

// Ids are per jail and per file: another jail's or another file's line
// with the same id records nothing for this one.
func TestMultiLineIDsApart(t *testing.T) {
	cfg := testConfig()
	cfg.Rules = append(appRules("/var/log/app.log"), appRules("/var/log/other.log")...)
	other := appRules("/var/log/app.log")
	for i := range other {
		other[i].Name = "other"
	}
	cfg.Rules = append(cfg.Rules, other...)
	f := newIDFeed(t, cfg)
	f.line("/var/log/other.log", "app[1]: connect from 192.0.2.66", t0)
	if got := f.line("/var/log/app.log", "app[1]: auth failed for bob", t0); got != "" {
		t.Errorf("another file's id counted for %s", got)
	}
	// The line recorded id 1 for both jails that read app.log; forget it
	// in "app" only.
	f.line("/var/log/app.log", "app[7]: connect from 192.0.2.7", t0)
	f.ms = f.rules.Match("/var/log/app.log", []byte("app[7]: disconnect"), true, f.ms[:0])
	for i := range f.ms {
		if f.ms[i].Rule == "app" {
			f.g.Attribute(&f.ms[i], t0)
		}
	}
	f.ms = f.rules.Match("/var/log/app.log", []byte("app[7]: auth failed for bob"), true, f.ms[:0])
	var got []string
	for i := range f.ms {
		if ev, ok := f.g.Attribute(&f.ms[i], t0); ok {
			got = append(got, f.ms[i].Rule+" "+ev.Addr.String())
		}
	}
	if !slices.Equal(got, []string{"other 192.0.2.7"}) {
		t.Errorf("got %q", got)
	}
}

// A hostile log that opens connection after connection fills the table
// to its bound, no further: the oldest ids go, and their failures count
// for no one.
func TestMultiLineTableBounded(t *testing.T) {
	cfg := testConfig()
	cfg.Rules = appRules("/l")
	f := newIDFeed(t, cfg)
	f.line("/l", "app[1]: connect from 192.0.2.1", t0)
	for i := range 3 * maxIDs {
		f.line("/l", fmt.Sprintf("app[%d]: connect from 198.51.100.%d", 1000+i, i%250+1), t0)
	}
	if n := f.g.IDs(); n != maxIDs {
		t.Errorf("the table holds %d ids, want %d", n, maxIDs)
	}
	if got := f.line("/l", "app[1]: auth failed for bob", t0); got != "" {
		t.Errorf("an evicted id counted for %s", got)
	}
	last := fmt.Sprintf("app[%d]: auth failed for bob", 1000+3*maxIDs-1)
	if got := f.line("/l", last, t0); got != fmt.Sprintf("198.51.100.%d", (3*maxIDs-1)%250+1) {
		t.Errorf("the newest id counted for %q", got)
	}
	// Failures without an address for ids never seen hold entries too
	// (they wait), under the same bound.
	for i := range 2 * maxIDs {
		f.line("/l", fmt.Sprintf("app[%d]: auth failed for bob", 900000+i), t0)
	}
	if n := f.g.IDs(); n != maxIDs {
		t.Errorf("the table holds %d ids, want %d", n, maxIDs)
	}
}

// Ids that have aged out leave the table when the next id comes: the
// table holds what lives, not what a quiet hour ago filled it with.
func TestMultiLineTableAges(t *testing.T) {
	cfg := testConfig()
	cfg.Rules = appRules("/l")
	f := newIDFeed(t, cfg)
	for i := range 100 {
		f.line("/l", fmt.Sprintf("app[%d]: connect from 198.51.100.%d", i, i+1), t0)
	}
	f.line("/l", "app[500]: connect from 192.0.2.5", t0.Add(cfg.FindTime+time.Second))
	if n := f.g.IDs(); n != 1 {
		t.Errorf("the table holds %d ids after the others aged out, want 1", n)
	}
}

// A forget line of an id the table does not hold makes no entry, even
// with an address: else a later connection reusing the id (a PID) would
// have its failures counted for that address.
func TestForgetUnknownIDRecordsNothing(t *testing.T) {
	cfg := testConfig()
	cfg.Rules = append(appRules("/l"), config.LoginRule{Name: "app", Source: "/l", Kind: "note", Forget: true,
		Pattern: `^app\[(?P<id>\d+)\]: closed by <HOST>$`})
	f := newIDFeed(t, cfg)
	f.line("/l", "app[5]: closed by 192.0.2.5", t0)
	if n := f.g.IDs(); n != 0 {
		t.Errorf("the table holds %d ids after a forget line, want 0", n)
	}
	if got := f.line("/l", "app[5]: auth failed for bob", t0); got != "" {
		t.Errorf("a failure of a reused id counted for %s, the address of a forget line", got)
	}
}

// Two-line failures earn a ban through Observe, like one-line ones; a
// rule's line counts once for its jail however many of its patterns
// match it.
func TestMultiLineBan(t *testing.T) {
	cfg := testConfig()
	cfg.Rules = append(appRules("/l"), config.LoginRule{Name: "app", Source: "/l", Pattern: `^app\[(?P<id>\d+)\]: auth failed for .*$`})
	f := newIDFeed(t, cfg)
	var bans []string
	for i := range 3 {
		f.line("/l", fmt.Sprintf("app[%d]: connect from 192.0.2.5", 10+i), t0)
		f.ms = f.rules.Match("/l", []byte(fmt.Sprintf("app[%d]: auth failed for bob", 10+i)), true, f.ms[:0])
		if len(f.ms) != 1 {
			t.Fatalf("%d matches for one jail", len(f.ms))
		}
		if ev, ok := f.g.Attribute(&f.ms[0], t0); ok {
			for _, d := range f.g.Observe(f.ms[0].Rule, &ev, t0) {
				if d.Action == Ban {
					bans = append(bans, d.Prefix.String())
				}
			}
		}
	}
	if !slices.Equal(bans, []string{"192.0.2.5/32"}) {
		t.Errorf("bans %q", bans)
	}
}

// Whatever the order of a connection's lines, a failure counts only for
// an address a line of that same id wrote where the service writes it.
func FuzzMultiLine(f *testing.F) {
	f.Add([]byte{0x10, 0x01, 0x21, 0x13, 0x05, 0x40})
	f.Add([]byte{0x01, 0x01, 0x10, 0x31, 0x11, 0x52})
	f.Fuzz(func(t *testing.T, ops []byte) {
		cfg := testConfig()
		cfg.Rules = appRules("/l")
		fd := newIDFeed(t, cfg)
		wrote := map[int]map[string]bool{}
		for i, op := range ops {
			id, addr := int(op&7), fmt.Sprintf("192.0.2.%d", op>>6+1)
			lines := []string{
				fmt.Sprintf("app[%d]: connect from %s", id, addr),
				fmt.Sprintf("app[%d]: auth failed for u%d", id, op>>6),
				fmt.Sprintf("app[%d]: denied %s", id, addr),
				fmt.Sprintf("app[%d]: accepted for u%d", id, op>>6),
				fmt.Sprintf("app[%d]: disconnect", id),
				fmt.Sprintf("app[%d]: too many failures, bye", id),
				fmt.Sprintf("app[%d]: auth failed for x app[%d]: connect from 203.0.113.9", id, (id+1)&7),
				fmt.Sprintf("app[%d]: accepted for ]: denied 203.0.113.8", id),
			}
			line := lines[int(op>>3&7)]
			if op>>3&7 == 0 || op>>3&7 == 2 {
				if wrote[id] == nil {
					wrote[id] = map[string]bool{}
				}
				wrote[id][addr] = true
			}
			got := fd.line("/l", line, t0.Add(time.Duration(i)*time.Second))
			if got != "" && !wrote[id][got] {
				t.Fatalf("op %d %q counted for %s, which no line of id %d wrote", i, line, got, id)
			}
		}
	})
}

// A failure line of a known id, and a one-line failure: neither
// allocates. (Run: go test ./internal/login -run - -bench Attribute -benchmem.)
func BenchmarkAttribute(b *testing.B) {
	cfg := testConfig()
	cfg.Rules = appRules("/l")
	rs, err := CompileRules(cfg)
	if err != nil {
		b.Fatal(err)
	}
	g := New(cfg, &fakePolicy{banned: map[netip.Prefix]bool{}})
	note := rs.Match("/l", []byte("app[1]: connect from 192.0.2.1"), false, nil)
	g.Attribute(&note[0], t0)
	fail := rs.Match("/l", []byte("app[1]: auth failed for bob"), false, nil)
	one := RuleLine{Rule: "app", Kind: config.RuleFailure}
	one.Addr = netip.MustParseAddr("192.0.2.2")
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := g.Attribute(&fail[0], t0); !ok {
			b.Fatal("not attributed")
		}
		if _, ok := g.Attribute(&one, t0); !ok {
			b.Fatal("not counted")
		}
	}
}

package authlog

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeJournalctl puts a journalctl in PATH that records its arguments,
// prints the entries in out (or, on the runs listed in fail, complains
// and exits), and then stays, as journalctl --follow does.
func fakeJournalctl(t *testing.T, out string) (argsFile string) {
	t.Helper()
	dir := t.TempDir()
	argsFile = filepath.Join(dir, "args")
	outFile := filepath.Join(dir, "out")
	if err := os.WriteFile(outFile, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	script := `#!/bin/sh
echo "$@" >> "` + argsFile + `"
run=$(wc -l < "` + argsFile + `")
case "$*" in
*--after-cursor=bogus*) echo "Failed to seek to cursor: Invalid argument" >&2; exit 1 ;;
esac
if [ -f "` + outFile + `.$run" ]; then cat "` + outFile + `.$run"; else cat "` + outFile + `"; fi
if [ -f "` + dir + `/exit.$run" ]; then echo "journal went away" >&2; exit 1; fi
# A child holding stdout, as a pipeline would: the whole group must go.
sleep 1000 &
wait
`
	if err := os.WriteFile(filepath.Join(dir, "journalctl"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return argsFile
}

type journalCollector struct {
	mu      sync.Mutex
	msgs    []string
	cursors []string
	warns   []string
}

func (c *journalCollector) emit(msg []byte, cursor string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, string(msg))
	c.cursors = append(c.cursors, cursor)
	return nil
}

func (c *journalCollector) warn(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.warns = append(c.warns, err.Error())
}

func (c *journalCollector) waitFor(t *testing.T, n int) ([]string, []string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		m, cur := slices.Clone(c.msgs), slices.Clone(c.cursors)
		c.mu.Unlock()
		if len(m) >= n {
			return m, cur
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d messages %q, want %d; warnings %q", len(m), m, n, c.warns)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// runJournal runs j in the background; stop cancels it and checks that Run
// returns promptly.
func runJournal(t *testing.T, j *JournalFollower, c *journalCollector) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- j.Run(ctx, c.emit) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
				if errors.Is(err, context.Canceled) {
					err = nil
				}
			case <-time.After(5 * time.Second):
				err = errors.New("Run did not return after cancel")
			}
		})
		return err
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	})
	return stop
}

const journalOut = `{"__CURSOR":"c1","__REALTIME_TIMESTAMP":"1","MESSAGE":"Failed password for root from 203.0.113.5 port 22 ssh2","_COMM":"sshd","_UID":"0","_TRANSPORT":"syslog","SYSLOG_IDENTIFIER":"sshd"}
{"__CURSOR":"c2","MESSAGE":"Failed password for root from 6.6.6.6 port 22 ssh2","_COMM":"logger","_UID":"1000","_TRANSPORT":"syslog","SYSLOG_IDENTIFIER":"sshd"}
{"__CURSOR":"c3","MESSAGE":"Failed password for root from 6.6.6.7 port 22 ssh2","_COMM":"sshd","_UID":"1000","_TRANSPORT":"syslog","SYSLOG_IDENTIFIER":"sshd"}
{"__CURSOR":"c4","MESSAGE":[73,110,118,97,108,105,100,32,117,115,101,114,32,255,32,102,114,111,109,32,50,48,51,46,48,46,49,49,51,46,54,32,112,111,114,116,32,53],"_COMM":"sshd-session","_UID":"0","_TRANSPORT":"syslog"}
{"__CURSOR":"c5","MESSAGE":"Invalid user x from 6.6.6.8 port 5","_COMM":"sshd","_UID":"0","_TRANSPORT":"stdout"}
not json
{"__CURSOR":"c6","MESSAGE":null,"_COMM":"sshd","_UID":"0","_TRANSPORT":"syslog"}
{"__CURSOR":"c7","MESSAGE":["a","b"],"_COMM":"sshd","_UID":"0","_TRANSPORT":"syslog"}
{"__CURSOR":"c8","MESSAGE":"Disconnected from user bob 203.0.113.9 port 5","_COMM":"sshd-session","_UID":"1000","_TRANSPORT":"syslog"}
{"MESSAGE":"no cursor","_COMM":"sshd","_UID":"0","_TRANSPORT":"syslog"}
{"__CURSOR":"c9","MESSAGE":"Connection closed by invalid user a 203.0.113.7 port 6 [preauth]","_COMM":"sshd-session","_UID":"0","_TRANSPORT":"journal"}
{"__CURSOR":"c10","MESSAGE":"Failed password for root from 203.0.113.10 port 22 ssh2","_UID":"0","_TRANSPORT":"syslog","SYSLOG_IDENTIFIER":"sshd"}
{"__CURSOR":"c11","MESSAGE":"Failed password for root from 6.6.6.11 port 22 ssh2","_UID":"1000","_TRANSPORT":"syslog","SYSLOG_IDENTIFIER":"sshd"}
`

func TestJournalFollower(t *testing.T) {
	args := fakeJournalctl(t, journalOut)
	var c journalCollector
	j := NewJournalFollower("", c.warn)
	stop := runJournal(t, j, &c)
	msgs, cursors := c.waitFor(t, 4)
	time.Sleep(50 * time.Millisecond)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// c10: journald could not read _COMM of a sender that had exited; _UID
	// 0 (the kernel's word) and sshd's tag are enough. c11 is not root.
	want := []string{
		"Failed password for root from 203.0.113.5 port 22 ssh2",
		"Invalid user \xff from 203.0.113.6 port 5",
		"Connection closed by invalid user a 203.0.113.7 port 6 [preauth]",
		"Failed password for root from 203.0.113.10 port 22 ssh2",
	}
	if !slices.Equal(msgs, want) || !slices.Equal(cursors, []string{"c1", "c4", "c9", "c10"}) {
		t.Errorf("got %q %q", msgs, cursors)
	}
	var ev Event
	if !ParseSSHDMessage([]byte(msgs[1]), &ev) || ev.Addr.String() != "203.0.113.6" || string(ev.User) != "\xff" {
		t.Errorf("byte-array message: %s", describe(true, &ev))
	}
	s := j.Stats()
	if s.Entries != 4 || s.Forged != 3 || s.Stderr != 1 || s.Bad != 3 {
		t.Errorf("stats %+v", s)
	}
	if len(c.warns) != 2 || !strings.Contains(c.warns[0], "6.6.6.6") || !strings.Contains(c.warns[1], "-e") {
		t.Errorf("warnings %q", c.warns)
	}
	a, _ := os.ReadFile(args)
	got := strings.TrimSpace(string(a))
	wantArgs := "--follow --output=json --output-fields=MESSAGE,_COMM,_UID,_TRANSPORT,SYSLOG_IDENTIFIER,_PID --no-pager --lines=0 " +
		"_SYSTEMD_UNIT=ssh.service + _SYSTEMD_UNIT=sshd.service + SYSLOG_IDENTIFIER=sshd + SYSLOG_IDENTIFIER=sshd-session + SYSLOG_IDENTIFIER=sshd-auth"
	if got != wantArgs {
		t.Errorf("args\n got %s\nwant %s", got, wantArgs)
	}
}

// TestJournalRestart: journalctl dies; it is run again after the last
// cursor it printed.
func TestJournalRestart(t *testing.T) {
	args := fakeJournalctl(t, journalOut)
	dir := filepath.Dir(args)
	os.WriteFile(filepath.Join(dir, "exit.1"), nil, 0o644)
	os.WriteFile(filepath.Join(dir, "out.2"), []byte(`{"__CURSOR":"d1","MESSAGE":"Invalid user y from 203.0.113.8 port 5","_COMM":"sshd","_UID":"0","_TRANSPORT":"syslog"}`+"\n"), 0o644)
	var c journalCollector
	j := NewJournalFollower("c0", c.warn)
	j.retry = 10 * time.Millisecond
	runJournal(t, j, &c)
	msgs, _ := c.waitFor(t, 5)
	if msgs[4] != "Invalid user y from 203.0.113.8 port 5" {
		t.Errorf("got %q", msgs)
	}
	a, _ := os.ReadFile(args)
	runs := strings.Split(strings.TrimSpace(string(a)), "\n")
	if len(runs) != 2 || !strings.Contains(runs[0], "--after-cursor=c0") || strings.Contains(runs[0], "--lines") ||
		!strings.Contains(runs[1], "--after-cursor=c11") {
		t.Errorf("runs %q", runs)
	}
	if j.Stats().Restarts != 1 || len(c.warns) == 0 || !strings.Contains(c.warns[len(c.warns)-1], "journal went away") {
		t.Errorf("stats %+v, warnings %q", j.Stats(), c.warns)
	}
}

// TestJournalBadCursor: a cursor journalctl rejects is dropped after a
// second try, with a warning, and following goes on from new entries.
func TestJournalBadCursor(t *testing.T) {
	args := fakeJournalctl(t, journalOut)
	var c journalCollector
	j := NewJournalFollower("bogus", c.warn)
	j.retry = 10 * time.Millisecond
	runJournal(t, j, &c)
	c.waitFor(t, 3)
	a, _ := os.ReadFile(args)
	runs := strings.Split(strings.TrimSpace(string(a)), "\n")
	if len(runs) != 3 || !strings.Contains(runs[2], "--lines=0") {
		t.Errorf("runs %q", runs)
	}
	found := false
	for _, w := range c.warns {
		found = found || strings.Contains(w, "cannot resume")
	}
	if !found {
		t.Errorf("warnings %q", c.warns)
	}
}

func TestJournalEmitError(t *testing.T) {
	fakeJournalctl(t, journalOut)
	j := NewJournalFollower("", nil)
	boom := errors.New("boom")
	done := make(chan error, 1)
	go func() {
		done <- j.Run(context.Background(), func([]byte, string) error { return boom })
	}()
	select {
	case err := <-done:
		if !errors.Is(err, boom) {
			t.Fatalf("got %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
}

func TestJournalNoJournalctl(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	err := NewJournalFollower("", nil).Run(context.Background(), func([]byte, string) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "journalctl") {
		t.Fatalf("got %v", err)
	}
}

func FuzzJournalEntry(f *testing.F) {
	for _, l := range strings.Split(journalOut, "\n") {
		f.Add([]byte(l))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		var e journalEntry
		if err := parseJournalEntry(line, &e); err != nil {
			return
		}
		if e.cursor == "" {
			t.Fatal("entry without cursor accepted")
		}
		var ev Event
		if ParseSSHDMessage(e.message, &ev) {
			checkEvent(t, e.message, &ev)
		}
	})
}

// TestJournalPID: _PID is handed on for the Joiner; absent or not a
// number, it is 0 and the message stands alone.
func TestJournalPID(t *testing.T) {
	for line, want := range map[string]uint32{
		`{"__CURSOR":"c","MESSAGE":"m","_COMM":"sshd","_UID":"0","_TRANSPORT":"syslog","_PID":"4242"}`: 4242,
		`{"__CURSOR":"c","MESSAGE":"m","_COMM":"sshd","_UID":"0","_TRANSPORT":"syslog"}`:               0,
		`{"__CURSOR":"c","MESSAGE":"m","_PID":"42x"}`:                                                  0,
		`{"__CURSOR":"c","MESSAGE":"m","_PID":"99999999999"}`:                                          0,
	} {
		var e journalEntry
		if err := parseJournalEntry([]byte(line), &e); err != nil || e.pid != want {
			t.Errorf("%s: pid %d, err %v; want %d", line, e.pid, err, want)
		}
	}
}

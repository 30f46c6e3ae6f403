package authlog

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"sync/atomic"
	"syscall"
	"time"
)

// JournalStats counts what a JournalFollower did.
type JournalStats struct {
	Entries  uint64 // entries handed on
	Forged   uint64 // entries that would have been login events but were not written by root's sshd
	Stderr   uint64 // entries from sshd's standard error (sshd -e), ignored
	Bad      uint64 // lines journalctl wrote that were not entries
	Restarts uint64 // times journalctl was started again
}

// JournalFollower follows sshd's entries in the systemd journal by running
// journalctl (the journal's C library would need cgo).
type JournalFollower struct {
	cursor     string
	warn       func(error)
	journalctl string        // program to run
	retry      time.Duration // first pause before running journalctl again

	entries, forged, stderr, bad, restarts atomic.Uint64
	warnedForged, warnedStderr             bool
}

// NewJournalFollower returns a follower that starts after cursor (a
// __CURSOR value handed to emit before), or with new entries if cursor is
// empty. warn, if not nil, hears about problems Run works around.
func NewJournalFollower(cursor string, warn func(error)) *JournalFollower {
	if warn == nil {
		warn = func(error) {}
	}
	return &JournalFollower{cursor: cursor, warn: warn, journalctl: "journalctl", retry: time.Second}
}

// Stats returns counters; safe to call while Run runs.
func (j *JournalFollower) Stats() JournalStats {
	return JournalStats{Entries: j.entries.Load(), Forged: j.forged.Load(), Stderr: j.stderr.Load(),
		Bad: j.bad.Load(), Restarts: j.restarts.Load()}
}

// journalMatches select sshd's entries; "+" joins them with OR. The
// selection is wide on purpose: trust is decided per entry, from the
// fields journald itself sets.
var journalMatches = []string{
	"_SYSTEMD_UNIT=ssh.service", "+", "_SYSTEMD_UNIT=sshd.service", "+",
	"SYSLOG_IDENTIFIER=sshd", "+", "SYSLOG_IDENTIFIER=sshd-session", "+", "SYSLOG_IDENTIFIER=sshd-auth",
}

func (j *JournalFollower) args() []string {
	a := []string{"--follow", "--output=json", "--output-fields=MESSAGE,_COMM,_UID,_TRANSPORT,SYSLOG_IDENTIFIER,_PID", "--no-pager"}
	if j.cursor != "" {
		a = append(a, "--after-cursor="+j.cursor)
	} else {
		a = append(a, "--lines=0")
	}
	return append(a, journalMatches...)
}

// errEmit wraps the caller's error so that Run returns it as is.
type errEmit struct{ err error }

func (e errEmit) Error() string { return e.err.Error() }

// Run runs journalctl and calls emit with the MESSAGE of each entry sshd
// wrote (the slice is valid only during the call) and the entry's cursor,
// to store and resume from. If journalctl exits, Run runs it again after a
// pause, from the last cursor. It returns when ctx is done (ctx's error),
// when emit fails (emit's error), or when journalctl cannot be run at all,
// always after journalctl has exited.
func (j *JournalFollower) Run(ctx context.Context, emit func(msg []byte, cursor string) error) error {
	return j.RunPID(ctx, func(msg []byte, _ uint32, cursor string) error { return emit(msg, cursor) })
}

// RunPID is Run that also hands on the entry's _PID (0 if absent), which
// journald sets from the sending process: what a Joiner needs to tie an
// sshd process's messages together (Joiner.Message).
func (j *JournalFollower) RunPID(ctx context.Context, emit func(msg []byte, pid uint32, cursor string) error) error {
	if _, err := exec.LookPath(j.journalctl); err != nil {
		return fmt.Errorf("journal: %w: install systemd's journalctl, or follow a log file instead", err)
	}
	pause := j.retry
	failedAtCursor := 0
	for {
		n, err := j.runOnce(ctx, emit)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ee errEmit
		if errors.As(err, &ee) {
			return ee.err
		}
		if n > 0 {
			pause, failedAtCursor = j.retry, 0
		} else if j.cursor != "" {
			// A cursor from another machine, or one the journal no longer
			// holds, makes journalctl fail at once, every time.
			if failedAtCursor++; failedAtCursor >= 2 {
				j.warn(fmt.Errorf("journal: cannot resume after the stored cursor (%v): following new entries from now", err))
				j.cursor, failedAtCursor = "", 0
				continue
			}
		}
		j.warn(fmt.Errorf("journal: journalctl stopped (%v): running it again in %v", err, pause))
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		pause = min(2*pause, 30*time.Second)
		j.restarts.Add(1)
	}
}

// runOnce runs journalctl until it exits or ctx is done, and returns how
// many entries it read.
func (j *JournalFollower) runOnce(ctx context.Context, emit func([]byte, uint32, string) error) (int, error) {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(runCtx, j.journalctl, j.args()...)
	// Its own process group, killed whole: nothing it started may keep
	// the pipe open, and it dies with us.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	var errOut tailBuffer
	cmd.Stderr = &errOut
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, fmt.Errorf("journal: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("journal: starting journalctl: %w", err)
	}

	n, runErr := j.read(out, emit)
	if runErr != nil {
		cancel()
	}
	// Drain what is left so that journalctl is not blocked on a full pipe
	// while it is being killed.
	_, _ = io.Copy(io.Discard, out)
	werr := cmd.Wait()
	if runErr != nil {
		return n, runErr
	}
	if werr == nil {
		werr = errors.New("exited")
	}
	if msg := bytes.TrimSpace(errOut.Bytes()); len(msg) > 0 {
		return n, fmt.Errorf("%w: %s", werr, msg)
	}
	return n, werr
}

// read hands on entries until out ends or emit fails.
func (j *JournalFollower) read(out io.Reader, emit func([]byte, uint32, string) error) (int, error) {
	br := bufio.NewReaderSize(out, 1<<20)
	var e journalEntry
	n := 0
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// An entry over a megabyte: not sshd's. Skip to its end.
			j.bad.Add(1)
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err != nil {
				return n, nil
			}
			continue
		}
		if len(line) > 0 && (err == nil || errors.Is(err, io.EOF)) {
			if perr := parseJournalEntry(line, &e); perr != nil {
				j.bad.Add(1)
			} else {
				n++
				j.cursor = e.cursor
				if j.trusted(&e) && len(e.message) > 0 {
					j.entries.Add(1)
					if eerr := emit(e.message, e.pid, e.cursor); eerr != nil {
						return n, errEmit{eerr}
					}
				}
			}
		}
		if err != nil {
			return n, nil
		}
	}
}

// trusted decides whether root's sshd wrote the entry. SYSLOG_IDENTIFIER
// is whatever the sender says (logger -t sshd), but journald sets _COMM and
// _UID from the sending process's credentials. Any process can name itself
// sshd, so _UID must be 0 too: sshd logs login attempts as root (the
// unprivileged pre-auth child's messages go through the root monitor;
// after login, the user's own sshd-session logs only the session's end).
// Entries sshd wrote to its standard error (sshd -e) are refused too: that
// path does not escape newlines, so a user name can start a forged line.
//
// journald reads _COMM from /proc when it handles the message: from a
// process that exited in between (sshd's per-connection monitor logs the
// failure and the close, then exits) it gets nothing, and under load it
// often does (a real journald lost 1 in 4 failures this way). _UID comes
// from the socket's credentials, which the kernel vouches for, so an
// entry without _COMM is taken when _UID is 0 and the tag is sshd's:
// only root can write it, and root can ban whom it likes anyway.
func (j *JournalFollower) trusted(e *journalEntry) bool {
	comm := e.comm
	if comm == "" && e.uid == "0" {
		comm = e.ident
	}
	if !isSSHDProgram([]byte(comm)) || e.uid != "0" {
		var ev Event
		if ParseSSHDMessage(e.message, &ev) && ev.Kind != Accepted {
			j.forged.Add(1)
			if !j.warnedForged {
				j.warnedForged = true
				j.warn(fmt.Errorf("journal: ignored a login failure not written by root's sshd (program %q, uid %q, tag %q): "+
					"someone on this host may be trying to get %v banned", e.comm, e.uid, e.ident, ev.Addr))
			}
		}
		return false
	}
	switch e.transport {
	case "syslog", "journal":
		return true
	case "stdout":
		j.stderr.Add(1)
		if !j.warnedStderr {
			j.warnedStderr = true
			j.warn(errors.New("journal: sshd logs to its standard error (started with -e?): " +
				"that output does not escape newlines in user names, so moat ignores it; " +
				"remove -e from sshd's command line so that it logs through syslog"))
		}
		return false
	}
	return false // kernel, audit, driver: not sshd
}

// journalEntry holds the fields of one journalctl JSON line that matter.
type journalEntry struct {
	cursor    string
	comm      string
	uid       string
	transport string
	ident     string
	pid       uint32 // 0 if absent or not a number
	message   []byte // reused from entry to entry
}

// rawEntry is how encoding/json sees a line. Values stay raw: journalctl
// writes a field as a string, as an array of byte values (not UTF-8 or
// not printable), as null (too long), or as an array of those (the field
// appears more than once).
type rawEntry struct {
	Cursor    json.RawMessage `json:"__CURSOR"`
	Comm      json.RawMessage `json:"_COMM"`
	UID       json.RawMessage `json:"_UID"`
	Transport json.RawMessage `json:"_TRANSPORT"`
	Ident     json.RawMessage `json:"SYSLOG_IDENTIFIER"`
	PID       json.RawMessage `json:"_PID"`
	Message   json.RawMessage `json:"MESSAGE"`
}

// parseJournalEntry parses one line of journalctl --output=json.
func parseJournalEntry(line []byte, e *journalEntry) error {
	var r rawEntry
	if err := json.Unmarshal(line, &r); err != nil {
		return err
	}
	msg, err := journalValue(r.Message, e.message[:0])
	if err != nil {
		return fmt.Errorf("MESSAGE: %w", err)
	}
	var fields [6][]byte
	for i, raw := range [...]json.RawMessage{r.Cursor, r.Comm, r.UID, r.Transport, r.Ident, r.PID} {
		if fields[i], err = journalValue(raw, nil); err != nil {
			return err
		}
	}
	if len(fields[0]) == 0 {
		return errors.New("no __CURSOR")
	}
	e.message = msg
	e.cursor, e.comm, e.uid, e.transport, e.ident = string(fields[0]), string(fields[1]), string(fields[2]), string(fields[3]), string(fields[4])
	e.pid = parsePID(fields[5])
	return nil
}

// journalValue decodes a single-valued field, appending it to dst. An
// absent or null field is empty. A field with several values is an error:
// which one would count?
func journalValue(raw json.RawMessage, dst []byte) ([]byte, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return dst, nil
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return dst, err
		}
		return append(dst, s...), nil
	case '[':
		var vals []json.RawMessage
		if err := json.Unmarshal(raw, &vals); err != nil {
			return dst, err
		}
		for _, v := range vals {
			var b uint8
			if err := json.Unmarshal(v, &b); err != nil {
				return dst, errors.New("not a string or byte array (several values?)")
			}
			dst = append(dst, b)
		}
		return dst, nil
	}
	return dst, fmt.Errorf("unexpected value %.20q", raw)
}

// tailBuffer keeps the last 4 KiB written to it: journalctl's complaint.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	const max = 4 << 10
	t.b = append(t.b, p...)
	if len(t.b) > max {
		t.b = append(t.b[:0], t.b[len(t.b)-max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) Bytes() []byte { return t.b }

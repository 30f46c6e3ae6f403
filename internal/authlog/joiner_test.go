package authlog

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// feed runs lines through j one second apart and returns, per line, the
// events rendered as "kind addr".
func feed(j *Joiner, start time.Time, lines ...string) [][]string {
	var out [][]string
	now := start
	for _, l := range lines {
		var got []string
		for _, ev := range j.Line([]byte(l), now, nil) {
			s := ev.Kind.String() + " " + ev.Addr.String()
			if ev.Host != nil {
				s = ev.Kind.String() + " name:" + string(ev.Host)
			}
			got = append(got, s)
		}
		out = append(out, got)
		now = now.Add(time.Second)
	}
	return out
}

func TestJoiner(t *testing.T) {
	const p = "Nov 23 21:50:19 host sshd[8148]: "
	tests := []struct {
		name  string
		lines []string
		want  []string // per line, events joined by ", "
	}{
		{"too many, then the close names the client",
			[]string{p + "Disconnecting: Too many authentication failures for root [preauth]", p + "Connection closed by 61.0.0.1 [preauth]"},
			[]string{"", "too-many-auth-failures 61.0.0.1"}},
		{"an earlier line names the client",
			[]string{p + "Failed publickey for git from 192.0.2.111 port 57910 ssh2: RSA x", p + "Disconnecting: Too many authentication failures for git [preauth]"},
			[]string{"failed-publickey 192.0.2.111", "too-many-auth-failures 192.0.2.111"}},
		{"connection line (VERBOSE)",
			[]string{p + "Connection from 192.0.2.3 port 39678 on 192.168.1.9 port 22", p + "fatal: Unable to negotiate a key exchange method [preauth]", p + "fatal: Unable to negotiate a key exchange method [preauth]"},
			[]string{"", "no-matching-algorithm 192.0.2.3", "no-matching-algorithm 192.0.2.3"}},
		{"OpenSSH 8 kex error, then the close",
			[]string{p + "error: kex_exchange_identification: Connection closed by remote host", p + "Connection closed by 192.0.2.15 port 35352"},
			[]string{"", "banner-error 192.0.2.15"}},
		{"another PID's close does not take it",
			[]string{p + "Disconnecting: Too many authentication failures for root [preauth]", "Nov 23 21:50:37 host sshd[7148]: Connection closed by 61.0.0.1 [preauth]"},
			[]string{"", "preauth-disconnect 61.0.0.1"}},
		{"a new connection on a reused PID drops the old one's failure",
			[]string{p + "Disconnecting: Too many authentication failures for root [preauth]", p + "Connection from 192.0.2.7 port 1 on 192.0.2.254 port 22", p + "Connection closed by 192.0.2.7 port 1"},
			[]string{"", "", ""}},
		{"the close ends the process: a later failure on the PID waits again",
			[]string{p + "Invalid user a from 192.0.2.8 port 2", p + "Connection closed by invalid user a 192.0.2.8 port 2 [preauth]", p + "error: kex_exchange_identification: Connection closed by remote host"},
			[]string{"invalid-user 192.0.2.8", "preauth-closed 192.0.2.8", ""}},
		{"a logged-in client's address is not lent to the next process on its PID",
			[]string{p + "Accepted publickey for a from 198.51.100.4 port 1 ssh2: ED25519 SHA256:x", p + "error: kex_exchange_identification: Connection closed by remote host", p + "Connection closed by 192.0.2.9 port 2"},
			[]string{"accepted 198.51.100.4", "", "banner-error 192.0.2.9"}},
		{"nor a timed-out client's",
			[]string{p + "Failed password for a from 198.51.100.5 port 1 ssh2", p + "fatal: Timeout before authentication for 198.51.100.5 port 1", p + "fatal: Read from socket failed: Connection reset by peer [preauth]"},
			[]string{"failed-password 198.51.100.5", "preauth-timeout 198.51.100.5", ""}},
		{"a session's end names no client for a failure",
			[]string{p + "Disconnecting: Too many authentication failures [preauth]", p + "Disconnected from user deploy 198.51.100.4 port 6004"},
			[]string{"", ""}},
		{"names only when asked",
			[]string{p + "User root from host.example not allowed because not listed in AllowUsers"},
			[]string{""}},
		{"lines without a PID pass through",
			[]string{"Mar  3 00:17:22 [sshd]: User root from 211.188.220.49 not allowed because not listed in AllowUsers", "Mar  3 00:17:22 [sshd]: Disconnecting: Too many authentication failures [preauth]"},
			[]string{"not-allowed 211.188.220.49", ""}},
	}
	for _, tt := range tests {
		j := NewJoiner(JoinerConfig{})
		got := feed(j, t0, tt.lines...)
		for i := range tt.lines {
			if g := strings.Join(got[i], ", "); g != tt.want[i] {
				t.Errorf("%s: line %d %q: got %q, want %q", tt.name, i+1, tt.lines[i], g, tt.want[i])
			}
		}
	}
}

func TestJoinerNames(t *testing.T) {
	j := NewJoiner(JoinerConfig{Names: true})
	got := feed(j, t0, "Nov 23 21:50:19 host sshd[1]: error: PAM: authentication error for james from example.com via 192.168.1.201")
	if g := strings.Join(got[0], ", "); g != "pam-failure name:example.com" {
		t.Errorf("got %q", g)
	}
}

// TestJoinerUser: a joined failure keeps its user name after the line's
// buffer is reused.
func TestJoinerUser(t *testing.T) {
	j := NewJoiner(JoinerConfig{})
	buf := []byte("Nov 23 21:50:19 host sshd[8148]: Disconnecting: Too many authentication failures for invalid user oracle [preauth]")
	j.Line(buf, t0, nil)
	for i := range buf {
		buf[i] = 'X'
	}
	evs := j.Line([]byte("Nov 23 21:50:20 host sshd[8148]: Connection closed by 61.0.0.1 [preauth]"), t0, nil)
	if len(evs) != 1 || string(evs[0].User) != "oracle" || !evs[0].Invalid || evs[0].PID != 8148 ||
		!evs[0].Time.Equal(time.Date(0, 11, 23, 21, 50, 19, 0, time.UTC)) {
		t.Fatalf("got %+v", evs)
	}
}

func TestJoinerTTL(t *testing.T) {
	const p = "Nov 23 21:50:19 host sshd[8148]: "
	// The address is forgotten TTL after the process's last line.
	j := NewJoiner(JoinerConfig{TTL: time.Minute})
	j.Line([]byte(p+"Connection from 192.0.2.3 port 39678 on 192.168.1.9 port 22"), t0, nil)
	if evs := j.Line([]byte(p+"fatal: Unable to negotiate a key exchange method [preauth]"), t0.Add(2*time.Minute), nil); len(evs) != 0 {
		t.Errorf("stale address used: %v", evs)
	}
	// A failure waits PendingTTL for its address.
	j = NewJoiner(JoinerConfig{PendingTTL: 10 * time.Second})
	j.Line([]byte(p+"Disconnecting: Too many authentication failures [preauth]"), t0, nil)
	if evs := j.Line([]byte(p+"Connection closed by 61.0.0.1 [preauth]"), t0.Add(11*time.Second), nil); len(evs) != 0 {
		t.Errorf("stale failure joined: %v", evs)
	}
}

// TestJoinerBounded: the Joiner remembers at most MaxProcs processes, the
// least recently seen forgotten first, and each holds at most maxPending
// failures.
func TestJoinerBounded(t *testing.T) {
	j := NewJoiner(JoinerConfig{MaxProcs: 8})
	for pid := 1; pid <= 100; pid++ {
		j.Line(fmt.Appendf(nil, "Nov 23 21:50:19 host sshd[%d]: Connection from 192.0.2.%d port 1 on 192.0.2.254 port 22", pid, pid), t0, nil)
		if j.Len() > 8 {
			t.Fatalf("%d processes remembered", j.Len())
		}
	}
	// 93..100 remain; 92 was forgotten. (In this order: a line of an
	// unknown PID makes room for it.)
	for _, c := range []struct{ pid, want int }{{100, 1}, {93, 1}, {92, 0}, {1, 0}} {
		pid, want := c.pid, c.want
		evs := j.Line(fmt.Appendf(nil, "Nov 23 21:50:19 host sshd[%d]: fatal: Unable to negotiate a key exchange method [preauth]", pid), t0, nil)
		if len(evs) != want {
			t.Errorf("pid %d: %d events, want %d", pid, len(evs), want)
			continue
		}
		if want == 1 && evs[0].Addr != netip.AddrFrom4([4]byte{192, 0, 2, byte(pid)}) {
			t.Errorf("pid %d: %v", pid, evs[0].Addr)
		}
	}
	j = NewJoiner(JoinerConfig{})
	for range 10 {
		j.Line([]byte("Nov 23 21:50:19 host sshd[5]: Disconnecting: Too many authentication failures [preauth]"), t0, nil)
	}
	if evs := j.Line([]byte("Nov 23 21:50:19 host sshd[5]: Connection closed by 61.0.0.1 [preauth]"), t0, nil); len(evs) != maxPending {
		t.Errorf("%d events, want %d", len(evs), maxPending)
	}
}

// joinFuzzLines are the pieces FuzzJoiner builds logs from.
var joinFuzzLines = []string{
	"Connection from %s port 1 on 192.0.2.254 port 22",
	"Connection closed by %s [preauth]",
	"Connection closed by %s port 2",
	"Disconnecting: Too many authentication failures for %s [preauth]",
	"error: kex_exchange_identification: Connection closed by remote host",
	"Failed password for %s from %s port 3 ssh2",
	"Invalid user x from %s",
	"Address %s maps to x.example, but this does not map back to the address",
	"fatal: Read from socket failed: Connection reset by peer [preauth]",
	"Received disconnect from %s port 4:11: %s [preauth]",
	"Accepted publickey for a from %s port 5 ssh2: ED25519 SHA256:x",
	"User %s from %s not allowed because listed in DenyUsers",
}

// FuzzJoiner: whatever the order of lines and PIDs, every event the Joiner
// returns carries an address that sshd wrote, in its own place, on a line
// of the same PID (what parseLine finds there), and the Joiner stays within
// its bounds.
func FuzzJoiner(f *testing.F) {
	f.Add([]byte{0, 1, 3, 2, 4, 5, 6, 7, 8, 9, 10, 11}, "6.6.6.6", uint8(3))
	f.Add([]byte{3, 1, 4, 2, 8, 1}, "x 6.6.6.6 port 22", uint8(1))
	f.Fuzz(func(t *testing.T, ops []byte, text string, npids uint8) {
		if len(ops) > 200 {
			ops = ops[:200]
		}
		pids := int(npids%5) + 1
		j := NewJoiner(JoinerConfig{MaxProcs: 3, Names: true})
		seen := map[uint32]map[netip.Addr]bool{}
		now := t0
		for i, op := range ops {
			pid := uint32(i*7+int(op>>4))%uint32(pids) + 1
			a := fmt.Sprintf("192.0.2.%d", op)
			tmpl := joinFuzzLines[int(op)%len(joinFuzzLines)]
			args := []any{a, text}
			if strings.Count(tmpl, "%s") == 2 {
				args = []any{text, a}
				if strings.HasPrefix(tmpl, "Received") {
					args = []any{a, text}
				}
			} else if strings.HasPrefix(tmpl, "Disconnecting") {
				args = []any{text}
			}
			msg := sshdRender(fmt.Sprintf(tmpl, args[:strings.Count(tmpl, "%s")]...))
			line := fmt.Appendf(nil, "Nov 23 21:50:19 host sshd[%d]: %s", pid, msg)
			var ev Event
			if parseLine(line, &ev); ev.Addr.IsValid() {
				if seen[pid] == nil {
					seen[pid] = map[netip.Addr]bool{}
				}
				seen[pid][ev.Addr] = true
			}
			for _, e := range j.Line(line, now, nil) {
				if e.Host != nil {
					continue
				}
				if !seen[e.PID][e.Addr] || e.PID != pid {
					t.Fatalf("line %q: event %s pid %d: address not written by sshd for this PID", line, describe(true, &e), e.PID)
				}
			}
			if j.Len() > 3 {
				t.Fatalf("%d processes", j.Len())
			}
			now = now.Add(time.Duration(op) * time.Second)
		}
	})
}

// LineOrMessage takes syslog lines with their PIDs, and bare messages
// (explain's input may be a journal export) alone.
func TestJoinerLineOrMessage(t *testing.T) {
	j := NewJoiner(JoinerConfig{})
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var evs []Event
	evs = j.LineOrMessage([]byte("Failed password for root from 10.210.0.7 port 5 ssh2"), now, evs[:0])
	if len(evs) != 1 || evs[0].Addr != netip.MustParseAddr("10.210.0.7") || evs[0].PID != 0 {
		t.Fatalf("bare message: %+v", evs)
	}
	evs = j.LineOrMessage([]byte("Mar  1 12:00:00 h sshd[9]: Disconnecting: Too many authentication failures [preauth]"), now, evs[:0])
	if len(evs) != 0 {
		t.Fatalf("an address-less failure came out before its address: %+v", evs)
	}
	evs = j.LineOrMessage([]byte("Mar  1 12:00:00 h sshd[9]: Connection closed by 10.210.0.8 [preauth]"), now, evs[:0])
	if len(evs) != 1 || evs[0].Kind != TooManyAuthFailures || evs[0].Addr != netip.MustParseAddr("10.210.0.8") || evs[0].PID != 9 {
		t.Fatalf("joined: %+v", evs)
	}
}

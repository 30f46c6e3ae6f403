package authlog

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

// describe renders an event for golden files and failure messages.
func describe(ok bool, ev *Event) string {
	if !ok {
		return "-"
	}
	s := fmt.Sprintf("%s %s port=%d user=%q", ev.Kind, ev.Addr, ev.Port, ev.User)
	if ev.Invalid {
		s += " invalid"
	}
	if ev.Count != 1 {
		s += fmt.Sprintf(" count=%d", ev.Count)
	}
	if ev.Repeated != 0 {
		s += fmt.Sprintf(" repeated=%d", ev.Repeated)
	}
	if !ev.Time.IsZero() {
		s += " time=" + ev.Time.Format(time.RFC3339Nano)
	}
	return s
}

func (r parseResult) String() string {
	return [...]string{"none", "event", "host-name", "no-address", "connection-start", "connection-info", "connection-end"}[r]
}

func describeJoin(ev *Event) string {
	s := ev.Kind.String()
	if ev.Addr.IsValid() {
		s += " " + ev.Addr.String()
	}
	if ev.Host != nil {
		s += fmt.Sprintf(" host=%q", ev.Host)
	}
	if len(ev.User) > 0 {
		s += fmt.Sprintf(" user=%q", ev.User)
	}
	return s + fmt.Sprintf(" pid=%d", ev.PID)
}

func readLines(t testing.TB, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || l[0] == '#' {
			continue
		}
		lines = append(lines, l)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

func TestGolden(t *testing.T) {
	lines := readLines(t, "testdata/sshd-lines.txt")
	var out bytes.Buffer
	for _, l := range lines {
		var ev Event
		ok := ParseSSHD([]byte(l), &ev)
		d := describe(ok, &ev)
		if !ok {
			// What the Joiner takes from a line that is no event alone.
			if res := parseLine([]byte(l), &ev); res != resNone {
				d += fmt.Sprintf(" (joiner: %s %s)", res, describeJoin(&ev))
			}
		}
		fmt.Fprintf(&out, "%s\n\t%s\n", l, d)
	}
	const golden = "testdata/sshd-lines.golden"
	if *update {
		if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run TestGolden -update)", err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		got := strings.Split(out.String(), "\n")
		exp := strings.Split(string(want), "\n")
		for i := 0; i < len(got) || i < len(exp); i++ {
			var g, e string
			if i < len(got) {
				g = got[i]
			}
			if i < len(exp) {
				e = exp[i]
			}
			if g != e {
				t.Errorf("golden line %d:\n got: %s\nwant: %s", i+1, g, e)
			}
		}
	}
}

// TestKinds pins one line per kind and what comes out of it.
func TestKinds(t *testing.T) {
	const pre = "Nov 21 06:29:01 host sshd[1234]: "
	tests := []struct {
		line    string
		kind    Kind
		addr    string
		port    uint16
		user    string
		invalid bool
	}{
		{pre + "Failed password for root from 203.0.113.5 port 52314 ssh2", FailedPassword, "203.0.113.5", 52314, "root", false},
		{pre + "Failed password for invalid user admin from 203.0.113.5 port 52314 ssh2", FailedPassword, "203.0.113.5", 52314, "admin", true},
		{pre + "Failed publickey for git from 2001:db8::6 port 4 ssh2: ED25519 SHA256:abc", FailedPublickey, "2001:db8::6", 4, "git", false},
		{pre + "Failed keyboard-interactive/pam for invalid user o from 203.0.113.7 port 1 ssh2", FailedKbdInteractive, "203.0.113.7", 1, "o", true},
		{pre + "Failed hostbased for root from 203.0.113.8 port 2 ssh2: RSA SHA256:x, client user \"r\", client host \"h\"", FailedOther, "203.0.113.8", 2, "root", false},
		{pre + "Invalid user test from 203.0.113.10 port 1185", InvalidUser, "203.0.113.10", 1185, "test", true},
		{pre + "User bob from 203.0.113.11 not allowed because not listed in AllowUsers", NotAllowed, "203.0.113.11", 0, "bob", false},
		{pre + "ROOT LOGIN REFUSED FROM 203.0.113.12 port 5555", RootRefused, "203.0.113.12", 5555, "", false},
		{pre + "error: PAM: Authentication failure for illegal user admin from 203.0.113.13", PAMFailure, "203.0.113.13", 0, "admin", true},
		{pre + "error: maximum authentication attempts exceeded for root from 203.0.113.14 port 6000 ssh2 [preauth]", MaxAuthTries, "203.0.113.14", 6000, "root", false},
		{pre + "Disconnecting invalid user admin 203.0.113.15 port 6001: Too many authentication failures [preauth]", TooManyAuthFailures, "203.0.113.15", 6001, "admin", true},
		{pre + "Connection closed by authenticating user root 203.0.113.16 port 6002 [preauth]", PreauthClosed, "203.0.113.16", 6002, "root", false},
		{pre + "Disconnected from authenticating user root ::ffff:203.0.113.16 port 6002 [preauth]", PreauthClosed, "203.0.113.16", 6002, "root", false},
		{pre + "Did not receive identification string from 203.0.113.19 port 6005", BannerError, "203.0.113.19", 6005, "", false},
		{pre + "Unable to negotiate with 203.0.113.22 port 6008: no matching key exchange method found. Their offer: x [preauth]", NoMatchingAlgo, "203.0.113.22", 6008, "", false},
		{pre + "fatal: Timeout before authentication for 203.0.113.23 port 6009", PreauthTimeout, "203.0.113.23", 6009, "", false},
		{pre + "Received disconnect from 203.0.113.18 port 57815:11: Bye Bye [preauth]", PreauthDisconnect, "203.0.113.18", 57815, "", false},
		{pre + "Accepted publickey for deploy from fe80::1%eth0 port 50000 ssh2: ED25519 SHA256:x", Accepted, "fe80::1", 50000, "deploy", false},
		{pre + "Received disconnect from 203.0.113.28: 3: com.jcraft.jsch.JSchException: Auth fail", ClientAuthFail, "203.0.113.28", 0, "", false},
		{pre + "refused connect from x@::ffff:203.0.113.29 (::ffff:203.0.113.29)", WrapperRefused, "203.0.113.29", 0, "", false},
	}
	seen := map[Kind]bool{}
	for _, tt := range tests {
		var ev Event
		if !ParseSSHD([]byte(tt.line), &ev) {
			t.Errorf("%s: no event", tt.line)
			continue
		}
		seen[ev.Kind] = true
		if ev.Kind != tt.kind || ev.Addr != netip.MustParseAddr(tt.addr) || ev.Port != tt.port ||
			string(ev.User) != tt.user || ev.Invalid != tt.invalid || ev.Count != 1 {
			t.Errorf("%s:\n got %s", tt.line, describe(true, &ev))
		}
		if want := time.Date(0, 11, 21, 6, 29, 1, 0, time.UTC); !ev.Time.Equal(want) {
			t.Errorf("%s: time %v, want %v", tt.line, ev.Time, want)
		}
	}
	for k := FailedPassword; k < numKinds; k++ {
		if !seen[k] {
			t.Errorf("kind %v not covered", k)
		}
	}
}

func TestKindNames(t *testing.T) {
	names := map[string]bool{}
	for k := Kind(0); k < numKinds; k++ {
		if k.String() == "" || names[k.String()] {
			t.Errorf("kind %d: name %q empty or repeated", k, k)
		}
		names[k.String()] = true
	}
	if Kind(200).String() != "unknown" {
		t.Error("out of range kind")
	}
	for _, k := range []Kind{BannerError, NoMatchingAlgo, PreauthTimeout, PreauthDisconnect} {
		if !k.Aggressive() {
			t.Errorf("%v should be aggressive", k)
		}
	}
	for _, k := range []Kind{FailedPassword, InvalidUser, PreauthClosed, Accepted} {
		if k.Aggressive() {
			t.Errorf("%v should not be aggressive", k)
		}
	}
}

func TestTimes(t *testing.T) {
	tests := []struct {
		line string
		want time.Time
	}{
		{"2026-11-21T06:29:01.123456+01:00 h sshd[1]: Invalid user a from 1.2.3.4 port 5", time.Date(2026, 11, 21, 5, 29, 1, 123456000, time.UTC)},
		{"2026-11-21T06:29:01Z h sshd[1]: Invalid user a from 1.2.3.4 port 5", time.Date(2026, 11, 21, 6, 29, 1, 0, time.UTC)},
		{"2026-11-21T06:29:01-02:30 h sshd[1]: Invalid user a from 1.2.3.4 port 5", time.Date(2026, 11, 21, 8, 59, 1, 0, time.UTC)},
		{"2026-11-21T06:29:01+0100 h sshd[1]: Invalid user a from 1.2.3.4 port 5", time.Time{}}, // not RFC 3339: no time, still an event
		{"<38>1 2026-11-21T06:29:01.5Z h sshd 1 - - Invalid user a from 1.2.3.4 port 5", time.Date(2026, 11, 21, 6, 29, 1, 500000000, time.UTC)},
		{"Feb 29 23:59:60 h sshd[1]: Invalid user a from 1.2.3.4 port 5", time.Date(0, 2, 29, 23, 59, 60, 0, time.UTC)},
		{"Foo 29 23:59:59 h sshd[1]: Invalid user a from 1.2.3.4 port 5", time.Time{}},
	}
	for _, tt := range tests {
		var ev Event
		if !ParseSSHD([]byte(tt.line), &ev) {
			t.Errorf("%s: no event", tt.line)
			continue
		}
		if !ev.Time.Equal(tt.want) {
			t.Errorf("%s: time %v, want %v", tt.line, ev.Time, tt.want)
		}
	}
}

func TestInferYear(t *testing.T) {
	loc := time.FixedZone("X", 3600)
	now := time.Date(2026, 1, 2, 10, 0, 0, 0, loc)
	tests := []struct {
		in, want time.Time
	}{
		{time.Date(0, 1, 2, 9, 0, 0, 0, time.UTC), time.Date(2026, 1, 2, 9, 0, 0, 0, loc)},
		{time.Date(0, 1, 3, 9, 0, 0, 0, time.UTC), time.Date(2026, 1, 3, 9, 0, 0, 0, loc)}, // clock skew: within a day
		{time.Date(0, 12, 31, 23, 0, 0, 0, time.UTC), time.Date(2025, 12, 31, 23, 0, 0, 0, loc)},
		{time.Date(0, 2, 29, 1, 0, 0, 0, time.UTC), time.Date(2024, 2, 29, 1, 0, 0, 0, loc)},
		{time.Date(2020, 5, 1, 0, 0, 0, 0, time.UTC), time.Date(2020, 5, 1, 0, 0, 0, 0, time.UTC)},
		{time.Time{}, time.Time{}},
	}
	for _, tt := range tests {
		if got := InferYear(tt.in, now); !got.Equal(tt.want) {
			t.Errorf("InferYear(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestRepeated(t *testing.T) {
	var ev Event
	line := "Nov 21 06:29:01 host sshd[1234]: message repeated 12 times: [ Failed password for root from 203.0.113.24 port 6010 ssh2]"
	// One forged line must not stand for twelve failures: it counts once.
	if !ParseSSHD([]byte(line), &ev) || ev.Count != 1 || ev.Repeated != 12 || ev.Kind != FailedPassword {
		t.Fatalf("got %s", describe(true, &ev))
	}
	for _, bad := range []string{
		"message repeated 3 times: [ message repeated 3 times: [ Failed password for root from 203.0.113.24 port 6010 ssh2]]",
		"message repeated 3 times: [ Failed password for root from 203.0.113.24 port 6010 ssh2",
		"message repeated x times: [ Failed password for root from 203.0.113.24 port 6010 ssh2]",
		"message repeated 1234567890 times: [ Failed password for root from 203.0.113.24 port 6010 ssh2]",
	} {
		if ParseSSHDMessage([]byte(bad), &ev) {
			t.Errorf("%s: got %s", bad, describe(true, &ev))
		}
	}
}

// TestTruncated: sshd cuts messages at 500 bytes, possibly inside the
// client's text, so a 500-byte message may end in text the client wrote.
func TestTruncated(t *testing.T) {
	user := strings.Repeat("A", 60)
	msg := "Connection closed by authenticating user " + user
	pad := maxSSHDMessage - len(msg) - len(" 6.6.6.6 port 22 [preauth]")
	msg = "Connection closed by authenticating user " + user + strings.Repeat("\\", pad) + " 6.6.6.6 port 22 [preauth]"
	if len(msg) != maxSSHDMessage {
		t.Fatalf("len %d", len(msg))
	}
	var ev Event
	if ParseSSHDMessage([]byte(msg), &ev) {
		t.Errorf("500-byte message taken: %s", describe(true, &ev))
	}
	short := "Connection closed by authenticating user " + user + " 1.2.3.4 port 22 [preauth]"
	if !ParseSSHDMessage([]byte(short), &ev) || ev.Addr != netip.MustParseAddr("1.2.3.4") {
		t.Errorf("short message: %s", describe(true, &ev))
	}
}

// sampleLines returns one line per kind, and some that are not events.
func sampleLines(t testing.TB) []string {
	return readLines(t, "testdata/sshd-lines.txt")
}

func TestZeroAllocs(t *testing.T) {
	var ev Event
	for _, l := range sampleLines(t) {
		b := []byte(l)
		if a := testing.AllocsPerRun(200, func() { ParseSSHD(b, &ev) }); a != 0 {
			t.Errorf("%s: %v allocations", l, a)
		}
		if i := bytes.Index(b, []byte("]: ")); i > 0 {
			m := b[i+3:]
			if a := testing.AllocsPerRun(200, func() { ParseSSHDMessage(m, &ev) }); a != 0 {
				t.Errorf("%s: %v allocations (message)", m, a)
			}
		}
	}
}

func TestAddrDifferential(t *testing.T) {
	for _, s := range []string{
		"1.2.3.4", "0.0.0.0", "255.255.255.255", "256.1.1.1", "01.2.3.4", "1.2.3", "1.2.3.4.5", "1..2.3",
		"::", "::1", "1::", "2001:db8::1", "2001:DB8:0:0:0:0:0:1", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8:9",
		"1:2:3:4:5:6:7::", "::1:2:3:4:5:6:7", "1:2:3:4:5:6::7:8", "::ffff:1.2.3.4", "::1.2.3.4", "1:2:3:4:5:6:1.2.3.4",
		"1:2:3:4:5:6:7:1.2.3.4", ":::", "1:::2", "12345::", "::g", "", ":", "1:", ":1", "1.2.3.4:5", "[::1]",
	} {
		a, ok := parseAddr([]byte(s))
		w, err := netip.ParseAddr(s)
		if ok != (err == nil) || ok && a != w.Unmap() {
			t.Errorf("%q: got %v %v, netip %v %v", s, a, ok, w, err)
		}
	}
	for s, want := range map[string]string{"fe80::1%eth0": "fe80::1", "fe80::1%2": "fe80::1", "1.2.3.4%eth0": "", "fe80::1%": "", "fe80::1%a b": "", "::ffff:10.0.0.1%x": "10.0.0.1"} {
		a, ok := parseAddr([]byte(s))
		if want == "" {
			if ok {
				t.Errorf("%q: got %v", s, a)
			}
		} else if !ok || a != netip.MustParseAddr(want) {
			t.Errorf("%q: got %v %v, want %s", s, a, ok, want)
		}
	}
}

func TestParsePort(t *testing.T) {
	for s, want := range map[string]int{"0": 0, "22": 22, "65535": 65535, "65536": -1, "022": -1, "": -1, "123456": -1, "1a": -1, "-1": -1} {
		p, ok := parsePort([]byte(s))
		if want < 0 && ok || want >= 0 && (!ok || int(p) != want) {
			t.Errorf("%q: %d %v", s, p, ok)
		}
	}
}

func FuzzParseAddr(f *testing.F) {
	for _, s := range []string{"1.2.3.4", "::ffff:1.2.3.4", "2001:db8::1", "fe80::1%eth0", "1:2:3:4:5:6:7:8"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, ok := parseAddr([]byte(s))
		if strings.IndexByte(s, '%') >= 0 {
			if ok && !a.IsValid() {
				t.Fatal("invalid address accepted")
			}
			return
		}
		w, err := netip.ParseAddr(s)
		if ok != (err == nil) || ok && a != w.Unmap() {
			t.Fatalf("%q: got %v %v, netip %v %v", s, a, ok, w, err)
		}
	})
}

func checkEvent(t *testing.T, line []byte, ev *Event) {
	t.Helper()
	if !ev.Addr.IsValid() || ev.Addr.Is4In6() || ev.Addr.Zone() != "" {
		t.Fatalf("%q: bad address %v", line, ev.Addr)
	}
	if ev.Kind == 0 || ev.Kind >= numKinds || ev.Count < 1 {
		t.Fatalf("%q: %s", line, describe(true, ev))
	}
	if len(ev.User) > 0 && !aliases(line, ev.User) {
		t.Fatalf("%q: user does not alias the line", line)
	}
}

// aliases reports whether sub lies inside b's memory.
func aliases(b, sub []byte) bool {
	if len(sub) == 0 || len(b) == 0 {
		return true
	}
	for i := range b {
		if &b[i] == &sub[0] {
			return i+len(sub) <= len(b)
		}
	}
	return false
}

func FuzzParseSSHD(f *testing.F) {
	for _, l := range readLines(f, "testdata/sshd-lines.txt") {
		f.Add([]byte(l))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		var ev Event
		if ParseSSHD(line, &ev) {
			checkEvent(t, line, &ev)
		} else if ev.Kind != 0 || ev.Addr.IsValid() || ev.User != nil {
			t.Fatalf("no event but %s", describe(true, &ev))
		}
	})
}

func FuzzParseSSHDMessage(f *testing.F) {
	for _, l := range readLines(f, "testdata/sshd-lines.txt") {
		if i := strings.Index(l, "]: "); i > 0 {
			f.Add([]byte(l[i+3:]))
		}
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		var ev Event
		if ParseSSHDMessage(msg, &ev) {
			checkEvent(t, msg, &ev)
		}
	})
}

// syslogLine builds a classic syslog line for msg.
func syslogLine(msg string) []byte {
	return []byte("Nov 21 06:29:01 host sshd[1234]: " + msg)
}

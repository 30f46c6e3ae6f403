package authlog

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// The client chooses its user name (and, for certificates, the key ID; for
// hostbased, the client user and host; its disconnect message and its
// algorithm offer). Whatever it puts there, the address of an event must be
// the one sshd wrote, or there must be no event.

// template is an sshd message with the client's text in it. end reports
// that only sshd's text follows the client's, so the parser must find the
// event whatever the client wrote (a hostile name cannot dodge counting).
type template struct {
	name string
	end  bool
	make func(user, extra, addr string) string
}

func trunc(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// The formats are auth.c's, auth-pam.c's and packet.c's, with their
// precision limits on the client's text.
var templates = []template{
	{"failed-password", true, func(u, _, a string) string {
		return fmt.Sprintf("Failed password for %.100s from %s port 5 ssh2", u, a)
	}},
	{"failed-password-invalid", true, func(u, _, a string) string {
		return fmt.Sprintf("Failed password for invalid user %.100s from %s port 5 ssh2", u, a)
	}},
	{"failed-kbdint", true, func(u, _, a string) string {
		return fmt.Sprintf("Failed keyboard-interactive/pam for %.100s from %s port 5 ssh2", u, a)
	}},
	{"failed-publickey", false, func(u, _, a string) string {
		return fmt.Sprintf("Failed publickey for %.100s from %s port 5 ssh2: RSA SHA256:abc", u, a)
	}},
	{"failed-publickey-cert", false, func(u, x, a string) string {
		return fmt.Sprintf("Failed publickey for %.100s from %s port 5 ssh2: RSA-CERT SHA256:abc ID %s (serial 1) CA ED25519 SHA256:def", u, a, x)
	}},
	{"failed-hostbased", false, func(u, x, a string) string {
		return fmt.Sprintf("Failed hostbased for %.100s from %s port 5 ssh2: RSA SHA256:abc, client user \"%.100s\", client host \"%.100s\"", u, a, x, x)
	}},
	{"failed-gssapi", false, func(u, x, a string) string {
		// The principal's name ends the message.
		return fmt.Sprintf("Failed gssapi-with-mic for %.100s from %s port 5 ssh2: %s", u, a, x)
	}},
	{"accepted-publickey", false, func(u, _, a string) string {
		return fmt.Sprintf("Accepted publickey for %.100s from %s port 5 ssh2: ED25519 SHA256:abc", u, a)
	}},
	{"invalid-user", true, func(u, _, a string) string {
		return fmt.Sprintf("Invalid user %.100s from %s port 5", u, a)
	}},
	{"invalid-user-old", true, func(u, _, a string) string {
		return fmt.Sprintf("Invalid user %.100s from %s", u, a)
	}},
	{"not-allowed", true, func(u, _, a string) string {
		return fmt.Sprintf("User %.100s from %s not allowed because listed in DenyUsers", u, a)
	}},
	{"pam", true, func(u, _, a string) string {
		return fmt.Sprintf("error: PAM: Authentication failure for %.100s from %s", u, a)
	}},
	{"pam-illegal", true, func(u, _, a string) string {
		return fmt.Sprintf("error: PAM: Authentication failure for illegal user %.100s from %s", u, a)
	}},
	{"max-auth-tries", true, func(u, _, a string) string {
		return fmt.Sprintf("error: maximum authentication attempts exceeded for invalid user %.100s from %s port 5 ssh2 [preauth]", u, a)
	}},
	{"too-many", true, func(u, _, a string) string {
		return fmt.Sprintf("Disconnecting %.200s %s port 5: Too many authentication failures [preauth]", "authenticating user "+u, a)
	}},
	{"closed", true, func(u, _, a string) string {
		return fmt.Sprintf("Connection closed by %.200s %s port 5 [preauth]", "invalid user "+u, a)
	}},
	{"reset", true, func(u, _, a string) string {
		return fmt.Sprintf("Connection reset by %.200s %s port 5 [preauth]", "authenticating user "+u, a)
	}},
	{"disconnected", true, func(u, _, a string) string {
		return fmt.Sprintf("Disconnected from %.200s %s port 5 [preauth]", "authenticating user "+u, a)
	}},
	{"bad-version", true, func(u, _, a string) string {
		return fmt.Sprintf("Bad protocol version identification '%.100s' from %s port 5", u, a)
	}},
	{"no-match", false, func(_, x, a string) string {
		return fmt.Sprintf("Unable to negotiate with %s port 5: no matching cipher found. Their offer: %s [preauth]", a, x)
	}},
	{"received-disconnect", false, func(_, x, a string) string {
		return fmt.Sprintf("Received disconnect from %s port 5:11: %.400s [preauth]", a, x)
	}},
	{"received-disconnect-user", false, func(u, x, a string) string {
		return fmt.Sprintf("Received disconnect from %.200s %s port 5:11: %.400s [preauth]", "authenticating user "+u, a, x)
	}},
	// Older generations and other platforms.
	{"failed-password-no-suffix", true, func(u, _, a string) string {
		return fmt.Sprintf("Failed password for %.100s from %s port 5", u, a)
	}},
	{"failed-password-no-port", true, func(u, _, a string) string {
		return fmt.Sprintf("Failed password for invalid user %.100s from %s", u, a)
	}},
	{"failed-password-ssh1", true, func(u, _, a string) string {
		return fmt.Sprintf("Failed password for %.100s from %s port 5 ssh1", u, a)
	}},
	{"failed-password-ssh1-ruser", false, func(u, x, a string) string {
		return fmt.Sprintf("Failed password for %.100s from %s port 5 ssh1: ruser %.100s from 192.0.2.200", u, a, x)
	}},
	{"received-disconnect-old", false, func(_, x, a string) string {
		return fmt.Sprintf("Received disconnect from %s: 11: %.400s [preauth]", a, x)
	}},
	{"received-disconnect-auth-fail", false, func(_, x, a string) string {
		return fmt.Sprintf("Received disconnect from %s: 3: %.300s: Auth fail", a, x)
	}},
	{"received-disconnect-auth-fail-port", false, func(_, x, a string) string {
		return fmt.Sprintf("error: Received disconnect from %s port 5:3: %.300s: Auth fail [preauth]", a, x)
	}},
	{"pam-macos", true, func(u, _, a string) string {
		return fmt.Sprintf("error: PAM: authentication error for %.100s from %s via 192.0.2.254", u, a)
	}},
	{"pam-user-not-known", true, func(u, _, a string) string {
		return fmt.Sprintf("error: PAM: User not known to the underlying authentication module for illegal user %.100s from %s", u, a)
	}},
	{"not-allowed-groups", true, func(u, _, a string) string {
		return fmt.Sprintf("User %.100s from %s not allowed because none of user's groups are listed in AllowGroups", u, a)
	}},
	{"tcp-wrappers", true, func(u, _, a string) string {
		// The ident user name is the client's.
		return fmt.Sprintf("refused connect from %.100s@%s (%s)", u, a, a)
	}},
	{"bad-version-old", true, func(u, _, a string) string {
		return fmt.Sprintf("Bad protocol version identification '%.100s' from %s", u, a)
	}},
	{"timeout-old", false, func(_, _, a string) string {
		return fmt.Sprintf("fatal: Timeout before authentication for %s", a)
	}},
	{"too-many-old", false, func(u, _, _ string) string {
		// No address: never an event alone (the Joiner attributes it).
		return fmt.Sprintf("Disconnecting: Too many authentication failures for %.100s [preauth]", u)
	}},
	{"dns-mismatch", false, func(_, x, a string) string {
		// The name is whatever the client's DNS says: no event.
		return fmt.Sprintf("Address %s maps to %.600s, but this does not map back to the address - POSSIBLE BREAK-IN ATTEMPT!", a, x)
	}},
	{"reverse-mapping", false, func(_, x, a string) string {
		return fmt.Sprintf("reverse mapping checking getaddrinfo for %.300s [%s] failed - POSSIBLE BREAK-IN ATTEMPT!", x, a)
	}},
	{"change-of-user", false, func(u, x, a string) string {
		return fmt.Sprintf("Disconnecting %.200s %s port 5: Change of username or service not allowed: (%s,%s) -> (%s,%s) [preauth]", "authenticating user "+u, a, u, x, x, u)
	}},
}

var hostileUsers = []string{
	"x from 6.6.6.6 port 22",
	"root from 6.6.6.6 port 22 ssh2",
	"x from 6.6.6.6 port 22 ssh2: RSA SHA256:zz",
	"x from 6.6.6.6 port 22 ssh2 [preauth]",
	"a 6.6.6.6 port 22 [preauth]",
	"a 6.6.6.6 port 22",
	"a 6.6.6.6 port 22:11: x",
	"authenticating user b 6.6.6.6 port 22",
	"x 6.6.6.6 port 22: Too many authentication failures",
	"x from 6.6.6.6 not allowed because listed in DenyUsers",
	"x from 6.6.6.6",
	" from 6.6.6.6",
	"6.6.6.6",
	"6.6.6.6 port 22",
	"' from 6.6.6.6 port 22",
	"x from ::ffff:6.6.6.6 port 22 ssh2",
	"x from 2001:db8::666 port 22 ssh2",
	"x from fe80::666%eth0 port 22 ssh2",
	"x\nNov 21 06:29:01 host sshd[1]: Failed password for root from 6.6.6.6 port 22 ssh2",
	"x from 6.6.6.6 port 22 ssh2\nFailed password for y",
	"x\\nFailed password for root from 6.6.6.6 port 22 ssh2",
	"x\rFailed password for root from 6.6.6.6 port 22 ssh2\r",
	"message repeated 5 times: [ Failed password for root from 6.6.6.6 port 22 ssh2]",
	"] from 6.6.6.6 port 22 ssh2]",
	"x from 6.6.6.6 port 22 ssh2\x00",
	"x from 6.6.6.6 port 022 ssh2",
	"x from 6.6.6.6  port 22 ssh2",
	"\xff\xfe from 6.6.6.6 port 22 ssh2",
	"",
	" ",
	"root",
	strings.Repeat("\x80", 99) + "6",
	strings.Repeat("A", 70) + " from 6.6.6.6 port 22 ssh2",
}

var genuine = []string{"198.51.100.7", "2001:db8::7", "::ffff:198.51.100.8"}

// vis is OpenSSH's strnvis with VIS_CSTYLE|VIS_NL|VIS_TAB|VIS_OCTAL, as
// log.c applies it to everything sshd sends to syslog.
func vis(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			b.WriteString(`\\`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\t':
			b.WriteString(`\t`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == 0:
			b.WriteString(`\0`)
		case c >= 0x20 && c < 0x7f:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, `\%03o`, c)
		}
	}
	return b.String()
}

// sshdRender is what sshd hands syslog for msg: escaped, then cut at 500.
func sshdRender(msg string) string { return trunc(vis(msg), maxSSHDMessage) }

// checkHostile parses msg every way a line can reach the parser and fails
// if an event has another address than want.
func checkHostile(t *testing.T, msg, want string) (found bool) {
	t.Helper()
	w := netip.MustParseAddr(want).Unmap()
	lines := [][]byte{
		[]byte("Nov 21 06:29:01 host sshd[1234]: " + msg),
		[]byte("<38>1 2026-11-21T06:29:01Z host sshd-session 1234 - - " + msg),
		[]byte("Nov 21 06:29:01 host sshd[1234]: message repeated 2 times: [ " + msg + "]"),
		[]byte("Nov 1 06:29:01 sshd[1234]: [ID 800047 auth.info] " + msg),
		[]byte("Nov 21 06:29:01 [sshd] " + msg),
	}
	var ev Event
	for i, l := range lines {
		if ParseSSHD(l, &ev) {
			if ev.Addr != w {
				t.Fatalf("line %q: address %v, want %v (%s)", l, ev.Addr, w, describe(true, &ev))
			}
			if i == 0 {
				found = true
			}
		}
	}
	if ParseSSHDMessage([]byte(msg), &ev) && ev.Addr != w {
		t.Fatalf("message %q: address %v, want %v", msg, ev.Addr, w)
	}
	return found
}

func TestHostileUsers(t *testing.T) {
	for _, tm := range templates {
		t.Run(tm.name, func(t *testing.T) {
			for _, g := range genuine {
				for _, u := range hostileUsers {
					for _, x := range []string{"k", u} {
						raw := tm.make(u, x, g)
						found := checkHostile(t, raw, g)
						// End-anchored messages: no name dodges counting,
						// unless it makes the message one sshd would cut, or
						// (auth_log lines, whose ending may be followed by
						// client text) it carries a second ending.
						dodges := len(raw) >= maxSSHDMessage ||
							isAuthLog(tm.name) && strings.Contains(u, " ssh2:")
						if tm.end && !found && !dodges {
							t.Errorf("%q: no event", raw)
						}
						checkHostile(t, sshdRender(raw), g)
					}
				}
			}
		})
	}
}

func isAuthLog(name string) bool {
	return strings.HasPrefix(name, "failed-") || strings.HasPrefix(name, "accepted-")
}

// TestBenignUsers: with ordinary text everywhere, every template but the
// ones that are not events yields its event.
func TestBenignUsers(t *testing.T) {
	noEvent := map[string]bool{"received-disconnect-user": true, "change-of-user": true,
		// Alone, these name no client, or name one without a failure.
		"too-many-old": true, "dns-mismatch": true, "reverse-mapping": true,
		// It ends like a line of a release that wrote no suffix, whose
		// user name could have held " ssh1: ruser ...": ambiguous.
		"failed-password-ssh1-ruser": true}
	for _, tm := range templates {
		for _, g := range genuine {
			msg := sshdRender(tm.make("alice", "ssh-rsa", g))
			found := checkHostile(t, msg, g)
			if found == noEvent[tm.name] {
				t.Errorf("%s: %q: event %v", tm.name, msg, found)
			}
		}
	}
}

// TestCutAttack: the client pads its name so that sshd's 500-byte cut falls
// right after a forged ending.
func TestCutAttack(t *testing.T) {
	for _, tm := range templates {
		for _, fake := range []string{" 6.6.6.6 port 22 [preauth]", " from 6.6.6.6 port 22 ssh2", " from 6.6.6.6 port 22", " from 6.6.6.6"} {
			for pad := 0; pad < 600; pad += 7 {
				u := strings.Repeat("\x80", pad/4) + strings.Repeat("a", pad%4) + fake
				x := strings.Repeat("b", pad) + fake
				for _, g := range genuine {
					checkHostile(t, sshdRender(tm.make(u, x, g)), g)
					checkHostile(t, sshdRender(tm.make("u", x, g)), g)
				}
			}
		}
	}
}

func FuzzHostile(f *testing.F) {
	for i, u := range hostileUsers {
		f.Add(uint8(i), u, hostileUsers[(i+1)%len(hostileUsers)], uint8(i))
	}
	f.Fuzz(func(t *testing.T, tmpl uint8, user, extra string, g uint8) {
		tm := templates[int(tmpl)%len(templates)]
		want := genuine[int(g)%len(genuine)]
		raw := tm.make(user, extra, want)
		checkHostile(t, raw, want)
		checkHostile(t, sshdRender(raw), want)
	})
}

// TestHostileNames: with UseDNS sshd writes the client's host name where
// the address goes. Whatever the client's text, the parser reports that
// name as a name, never an address, and never another name.
func TestHostileNames(t *testing.T) {
	const name = "client-7.example.net"
	for _, tm := range templates {
		// sshd writes a name only in allowed_user's and auth-pam.c's
		// messages; everywhere else it writes the address.
		if !strings.HasPrefix(tm.name, "not-allowed") && !strings.HasPrefix(tm.name, "pam") {
			continue
		}
		for _, u := range hostileUsers {
			for _, x := range []string{"k", u} {
				msg := sshdRender(tm.make(u, x, name))
				var ev Event
				switch res := parseLine(syslogLine(msg), &ev); res {
				case resEvent, resConnStart, resConnInfo, resConnEnd, resNoAddr:
					t.Errorf("%s: %q: %v %v from the client's text", tm.name, msg, res, ev.Addr)
				case resHost:
					if string(ev.Host) != name {
						t.Errorf("%s: %q: host %q, want %q", tm.name, msg, ev.Host, name)
					}
				}
			}
		}
	}
}

// joinTemplates are the multi-line forms: lines of one sshd process, the
// client's text in them, and the one line (if any) that names the client.
var joinTemplates = []struct {
	name  string
	lines func(u, x, a string) []string
}{
	{"too-many-then-close", func(u, _, a string) []string {
		return []string{
			fmt.Sprintf("Disconnecting: Too many authentication failures for %.100s [preauth]", u),
			fmt.Sprintf("Connection closed by %s [preauth]", a),
		}
	}},
	{"connection-then-too-many", func(u, _, a string) []string {
		return []string{
			fmt.Sprintf("Connection from %s port 5 on 192.0.2.254 port 22", a),
			fmt.Sprintf("Failed password for %.100s from %s port 5 ssh2", u, a),
			fmt.Sprintf("Disconnecting: Too many authentication failures for %.100s [preauth]", u),
		}
	}},
	{"kex-then-close", func(_, x, a string) []string {
		return []string{
			"error: kex_exchange_identification: client sent invalid protocol identifier \"" + trunc(x, 100) + "\"",
			fmt.Sprintf("Connection closed by %s port 5", a),
		}
	}},
	{"audit-then-reset", func(u, x, a string) []string {
		return []string{
			fmt.Sprintf("SSH: Server;Ltype: Version;Remote: %s-1780;Protocol: 2.0;Client: %.100s", a, x),
			fmt.Sprintf("SSH: Server;Ltype: Authname;Remote: %s-1780;Name: %.100s [preauth]", a, u),
			"fatal: Read from socket failed: Connection reset by peer [preauth]",
		}
	}},
	{"dns-then-kex", func(_, x, a string) []string {
		return []string{
			fmt.Sprintf("reverse mapping checking getaddrinfo for %.300s [%s] failed - POSSIBLE BREAK-IN ATTEMPT!", x, a),
			"fatal: Unable to negotiate a key exchange method [preauth]",
		}
	}},
	{"client-forges-close", func(u, x, a string) []string {
		// Everything the client can put in lines of its own process.
		return []string{
			fmt.Sprintf("Disconnecting: Too many authentication failures for %.100s [preauth]", u),
			fmt.Sprintf("Invalid user %.100s from %s port 5", u, a),
			fmt.Sprintf("Received disconnect from %s port 5:11: %.400s [preauth]", a, x),
		}
	}},
}

// TestHostileJoined: the Joiner attributes a failure only to the address
// sshd wrote on a line of the same process, whatever the client wrote.
func TestHostileJoined(t *testing.T) {
	for _, jt := range joinTemplates {
		for _, g := range genuine {
			w := netip.MustParseAddr(g).Unmap()
			for _, u := range hostileUsers {
				for _, x := range []string{"k", u} {
					j := NewJoiner(JoinerConfig{Names: true})
					now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
					// Another process's lines around it: a different client.
					other := j.Line([]byte("Nov 21 06:29:01 host sshd[999]: Connection from 192.0.2.99 port 6 on 192.0.2.254 port 22"), now, nil)
					n := 0
					for _, m := range jt.lines(u, x, g) {
						for _, ev := range j.Line([]byte("Nov 21 06:29:01 host sshd[1234]: "+sshdRender(m)), now, nil) {
							n++
							if ev.Addr != w {
								t.Fatalf("%s: %q: event %s, want address %v", jt.name, m, describe(true, &ev), w)
							}
						}
					}
					if len(other) != 0 {
						t.Fatalf("connection line made events: %v", other)
					}
					if x == "k" && u == "root" && n == 0 {
						t.Errorf("%s: no event", jt.name)
					}
				}
			}
		}
	}
}

func FuzzHostileJoined(f *testing.F) {
	for i, u := range hostileUsers {
		f.Add(uint8(i), u, hostileUsers[(i+1)%len(hostileUsers)], uint8(i))
	}
	f.Fuzz(func(t *testing.T, tmpl uint8, user, extra string, g uint8) {
		jt := joinTemplates[int(tmpl)%len(joinTemplates)]
		want := netip.MustParseAddr(genuine[int(g)%len(genuine)]).Unmap()
		j := NewJoiner(JoinerConfig{Names: true})
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		for _, m := range jt.lines(user, extra, want.String()) {
			for _, ev := range j.Line([]byte("Nov 21 06:29:01 host sshd[1234]: "+sshdRender(m)), now, nil) {
				if ev.Addr != want {
					t.Fatalf("%s: %q: event %s, want %v", jt.name, m, describe(true, &ev), want)
				}
			}
		}
	})
}

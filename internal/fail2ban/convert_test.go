package fail2ban

import (
	"strings"
	"testing"

	"github.com/moat-fw/moat/internal/authlog"
)

// syslogPrefix is fail2ban's __prefix_line for a daemon (common.conf),
// as filters have it after tag substitution.
const syslogPrefix = `^(?:\[\])?\s*(?:<[^.]+\.[^.]+>\s+)?(?:\S+\s+)?(?:(?:(?:\[\d+\])?:\s+[\[\(]?myapp(?:\(\S+\))?[\]\)]?:?|[\[\(]?myapp(?:\(\S+\))?[\]\)]?:?(?:\[\d+\])?:?)\s+)?`

// convertAll converts a failregex (with an optional prefregex) and
// compiles the result, failing the test when nothing converts.
func convertAll(t *testing.T, pref, fr string) []*authlog.Rule {
	t.Helper()
	if pref != "" {
		p, err := translatePython(pref)
		if err != nil {
			t.Fatalf("prefregex %s: %v", pref, err)
		}
		pref = p
	}
	pats, err := convertRegex(anyDate, pref, fr)
	if len(pats) == 0 {
		t.Fatalf("%s: nothing converted: %v", fr, err)
	}
	var rules []*authlog.Rule
	for _, p := range pats {
		if !strings.HasPrefix(p, "^") || !strings.HasSuffix(p, "$") {
			t.Fatalf("not written from ^ to $, as moat's configuration wants: %s", p)
		}
		r, err := authlog.CompileRule(p)
		if err != nil {
			t.Fatalf("%s: converted pattern refused: %v", p, err)
		}
		rules = append(rules, r)
	}
	return rules
}

// firstMatch is what the login guard does with a jail's rules: the first
// rule that matches gives the address.
func firstMatch(rules []*authlog.Rule, line string) string {
	for _, r := range rules {
		if a, ok := r.Match([]byte(line)); ok {
			return a.String()
		}
	}
	return ""
}

// checkLines runs lines through rules: want "" means no match.
func checkLines(t *testing.T, rules []*authlog.Rule, lines map[string]string) {
	t.Helper()
	for line, want := range lines {
		if got := firstMatch(rules, line); got != want {
			t.Errorf("%s\n  got %q, want %q", line, got, want)
		}
	}
}

// Alternatives that put the address at different places become one
// pattern per place; each passes the shape check on its own, and a
// client's text cannot choose the address.
func TestConvertAddressAlternatives(t *testing.T) {
	rules := convertAll(t, "", syslogPrefix+`AUTH failure \([^\)]+\): authentication failure: [^,]*, relay=(?:\S+ )?\[(?:IPv6:<IP6>|<IP4>)\](?: \(may be forged\))?$`)
	if len(rules) != 2 {
		t.Fatalf("%d patterns, want one per alternative (2)", len(rules))
	}
	checkLines(t, rules, map[string]string{
		"Jan 23 21:59:59 host myapp[1]: AUTH failure (LOGIN): authentication failure: checkpass failed, relay=x.example [192.0.2.7]":       "192.0.2.7",
		"Jan 23 21:59:59 host myapp[1]: AUTH failure (LOGIN): authentication failure: checkpass failed, relay=[IPv6:2001:db8::7]":          "2001:db8::7",
		"Jan 23 21:59:59 host myapp[1]: AUTH failure (LOGIN): authentication failure: checkpass failed, relay=[192.0.2.7] (may be forged)": "192.0.2.7",
		// The client's text (the SASL message) carries a fake relay:
		// the address is still the one the daemon wrote last, fixed to
		// the end of the line.
		"Jan 23 21:59:59 host myapp[1]: AUTH failure (LOGIN): authentication failure: relay=[6.6.6.6], relay=[192.0.2.7]":   "192.0.2.7",
		"Jan 23 21:59:59 host myapp[1]: AUTH failure (LOGIN): authentication failure: relay=[IPv6:::6], relay=[192.0.2.7]":  "192.0.2.7",
		"Jan 23 21:59:59 host myapp[1]: AUTH failure (LOGIN): authentication failure: x, relay=[6.6.6.6] [192.0.2.7]":       "192.0.2.7",
		"Jan 23 21:59:59 host myapp[1]: AUTH failure (LOGIN): authentication failure: x, relay=[192.0.2.7] relay=[6.6.6.6]": "",
		// The bracket fixed to the end is the address; what comes
		// before it is the relay's name.
		"Jan 23 21:59:59 host myapp[1]: AUTH failure (LOGIN): authentication failure: x, relay=[192.0.2.7] [IPv6:2001:db8::6]": "2001:db8::6",
	})
}

// fail2ban writes <F-USER>\S+|.*?</F-USER>: an alternation inside the
// user's group, not at the top of the regex, so the failregex is judged
// as a whole: the user's open text before the address with the open port
// list after it is refused.
func TestConvertUserGroupAlternation(t *testing.T) {
	fr := syslogPrefix + `User <F-USER>\S+|.*?</F-USER> from <HOST> not allowed because not listed in AllowUsers(?: (?:port \d+|on \S+|\[preauth\])){0,3}\s*$`
	pats, err := convertRegex(anyDate, "", fr)
	if len(pats) != 0 || err == nil || !strings.Contains(err.Error(), "open text") {
		t.Fatalf("got %q, %v: want the shape check's refusal", pats, err)
	}
	// With the port list fixed to the end, the user's text is the only
	// open part, and the failregex imports.
	rules := convertAll(t, "", strings.Replace(fr, `(?: (?:port \d+|on \S+|\[preauth\])){0,3}`, `(?: port \d+)?`, 1))
	checkLines(t, rules, map[string]string{
		"Jan 23 21:59:59 host myapp[1]: User bob from 192.0.2.7 not allowed because not listed in AllowUsers":                                                         "192.0.2.7",
		"Jan 23 21:59:59 host myapp[1]: User bob smith from 192.0.2.7 not allowed because not listed in AllowUsers port 22":                                           "192.0.2.7",
		"Jan 23 21:59:59 host myapp[1]: User x from 6.6.6.6 not allowed because not listed in AllowUsers from 192.0.2.7 not allowed because not listed in AllowUsers": "192.0.2.7",
		"Jan 23 21:59:59 host myapp[1]: User x from 192.0.2.7 not allowed because not listed in AllowUsers from 6.6.6.6 x":                                            "",
	})
}

// postfix's client name is open text in fail2ban's filter ([^[]*), which
// makes every postfix failregex fail the shape check; postfix writes a
// validated host name there (or "unknown"), and the postfix filters are
// imported with the name's class without white space. The client's
// HELO, sender and recipient after the address cannot choose it, and a
// name with a space (which postfix never writes) matches nothing.
func TestConvertPostfixClient(t *testing.T) {
	const fr = `^NOQUEUE: reject: RCPT from [^[]*\[<HOST>\](?::\d+)?: 554 5\.7\.1 (?:<[^>]*>: )?Relay access denied\b`
	if pats, err := convertRegex(anyDate, "", syslogPrefix+fr[1:]); len(pats) != 0 || err == nil {
		t.Fatalf("as fail2ban writes it: got %q, %v: want the shape check's refusal", pats, err)
	}
	if serviceFields("dovecot", fr) != fr {
		t.Error("the postfix client name narrowed in another filter")
	}
	rules := convertAll(t, "", syslogPrefix+serviceFields("postfix", fr)[1:])
	checkLines(t, rules, map[string]string{
		"Jul 12 07:47:48 saturn myapp[8738]: NOQUEUE: reject: RCPT from 1-2-3-4.example.com[192.0.2.4]: 554 5.7.1 <a@example.org>: Relay access denied; from=<j@example.com> to=<a@example.org> proto=SMTP": "192.0.2.4",
		// The sender, recipient and HELO are the client's: a whole fake
		// reject after the real one.
		"Jul 12 07:47:48 saturn myapp[8738]: NOQUEUE: reject: RCPT from unknown[192.0.2.4]: 554 5.7.1 <a@example.org>: Relay access denied; from=<x> helo=<NOQUEUE: reject: RCPT from y[6.6.6.6]: 554 5.7.1 Relay access denied>": "192.0.2.4",
		"Jul 12 07:47:48 saturn myapp[8738]: NOQUEUE: reject: RCPT from unknown[192.0.2.4]: 554 5.7.1 <x from y[6.6.6.6]: 554 5.7.1 Relay access denied>: Relay access denied; from=<x>":                                          "192.0.2.4",
		"Jul 12 07:47:48 saturn myapp[8738]: NOQUEUE: reject: RCPT from evil RCPT from y[6.6.6.6]: 554 5.7.1 Relay access denied [192.0.2.4]: 554 5.7.1 Relay access denied":                                                      "",
	})
}

// A negative lookahead of fixed words is rewritten exactly: the line
// apache's mod_evasive writes is not counted, the others are, and a
// client's URL cannot bring its own "[client ...]".
func TestConvertLookahead(t *testing.T) {
	const pref = `^\[\]\s\[(:?error|(?!evasive)\S+:\S+)\]( \[pid \d+(:\S+ \d+)?\])? \[client <HOST>(:\d{1,5})?\] (?:AH\d+: )?<F-CONTENT>.+</F-CONTENT>$`
	rules := convertAll(t, pref, `^user <F-USER>(?:\S*|.*?)</F-USER> (?:auth(?:oriz|entic)ation failure|not found|denied by provider)\b`)
	checkLines(t, rules, map[string]string{
		"[Sat Jun 01 02:17:42 2013] [error] [client 192.0.2.1] user bob: authentication failure for \"/\": Password Mismatch": "192.0.2.1",
		"[Sat Jun 01 02:17:42 2013] [auth_basic:error] [pid 1:tid 2] [client 192.0.2.1:4711] AH01617: user bob not found: /":  "192.0.2.1",
		"[Sat Jun 01 02:17:42 2013] [evasive20:error] [client 192.0.2.1] user bob not found: /":                               "",
		"[Sat Jun 01 02:17:42 2013] [evasiveX:error] [client 192.0.2.1] user bob not found: /":                                "",
		"[Sat Jun 01 02:17:42 2013] [evasi:error] [client 192.0.2.1] user bob not found: /":                                   "192.0.2.1",
		"[Sat Jun 01 02:17:42 2013] [error] [client 192.0.2.1] user x] [client 6.6.6.6] user y not found: /":                  "192.0.2.1",
	})
}

// (?=...) is refused only in the alternatives that go through it.
func TestConvertPositiveLookaheadPartly(t *testing.T) {
	const pref = syslogPrefix + `(?:lost connection after(?! DATA) [A-Z]+|disconnect(?= from \S+(?: \S+=\d+)* auth=0/\d+)) <F-CONTENT>.+</F-CONTENT>$`
	p, err := translatePython(pref)
	if err != nil {
		t.Fatal(err)
	}
	pats, err := convertRegex(anyDate, p, serviceFields("postfix", `^from [^[]*\[<HOST>\](?::\d+)?:?`))
	if len(pats) == 0 || err == nil || !strings.Contains(err.Error(), "(?=") {
		t.Fatalf("got %q, %v: want the lookahead-free alternative, and the other refused", pats, err)
	}
	rules := convertAll(t, pref, serviceFields("postfix", `^from [^[]*\[<HOST>\](?::\d+)?:?`))
	checkLines(t, rules, map[string]string{
		"Feb 18 09:45:10 xxx myapp[42]: lost connection after CONNECT from spammer.example.com[192.0.2.10]": "192.0.2.10",
		"Feb 18 09:45:10 xxx myapp[42]: lost connection after DATA from spammer.example.com[192.0.2.10]":    "",
		"Feb 10 13:26:34 srv myapp[123]: disconnect from unknown[192.0.2.2] ehlo=1 auth=0/1 commands=3/4":   "",
	})
}

// fail2ban's syslog prefix allows "<facility.level>" before the host
// name as <[^.]+\.[^.]+>, which spans words: every failregex without a
// $ (open text after the address) would fail the shape check for it.
// Narrowed to no white space (syslog writes none there), the prefix is
// closed, and the client's text after the address cannot choose it.
func TestConvertSyslogLevelPrefix(t *testing.T) {
	fr := syslogPrefix + `Host <HOST> failed to authenticate as '[^']*'`
	rules := convertAll(t, "", fr)
	if strings.Contains(rules[0].String(), syslogLevel) {
		t.Fatalf("the prefix is not narrowed: %s", rules[0])
	}
	checkLines(t, rules, map[string]string{
		"Jan 23 21:59:59 host myapp[1]: Host 192.0.2.1 failed to authenticate as 'bob'":                                                    "192.0.2.1",
		"Jan 23 21:59:59 <auth.info> host myapp[1]: Host 192.0.2.1 failed to authenticate as 'bob'":                                        "192.0.2.1",
		"Jan 23 21:59:59 host myapp[1]: Host 192.0.2.1 failed to authenticate as 'x' Host 6.6.6.6 failed to authenticate as 'y'":           "192.0.2.1",
		"Jan 23 21:59:59 <x myapp[1]: Host 6.6.6.6 failed.a> host myapp[1]: Host 192.0.2.1 failed to authenticate as 'bob'":                "",
		"Jan 23 21:59:59 host myapp[1]: Host 192.0.2.1 failed to authenticate as '<x myapp[1]: Host 6.6.6.6 failed to authenticate as 'y'": "192.0.2.1",
	})
}

// An access log's date sits in brackets in the middle of the line;
// fail2ban cuts it out and the failregex has "[]" there. The date goes
// back between those brackets, and the client's request (after the
// address, which starts the line) cannot choose the address.
func TestConvertBracketDate(t *testing.T) {
	d, err := dateRegex(`^[^\[]*\[({DATE})`)
	if err != nil || d.mid == "" || d.start != "" {
		t.Fatalf("got %+v, %v: want the date between brackets only", d, err)
	}
	pats, err := convertRegex(d, "", `^<HOST> \- <F-USER>\S+</F-USER> \[\] \"(?:\S+) [^\"]+\" 401\b`)
	if len(pats) != 1 || err != nil {
		t.Fatalf("got %q, %v", pats, err)
	}
	r, err := authlog.CompileRule(pats[0])
	if err != nil {
		t.Fatal(err)
	}
	checkLines(t, []*authlog.Rule{r}, map[string]string{
		`10.0.0.2 - username [18/Nov/2018:21:34:34 +0000] "GET /dashboard/ HTTP/2.0" 401 17 "-" "Mozilla/5.0"`:              "10.0.0.2",
		`10.0.0.2 - username [18/Nov/2018:21:34:34 +0000] "GET /?6.6.6.6 - x [18/Nov/2018:21:34:34 +0000] HTTP/2.0" 401 17`: "10.0.0.2",
		// The request cannot hold a quote: nothing matches.
		`10.0.0.2 - username [18/Nov/2018:21:34:34 +0000] "GET /6.6.6.6 - x [18/Nov/2018:21:34:34 +0000] "GET / HTTP/2.0" 401 1" 401 17`: "",
		`10.0.0.2 - username [] "GET /dashboard/ HTTP/2.0" 401 17`:                                                                       "",
	})
	// A failregex without the brackets the date left gets the date
	// after the line's first '[', where fail2ban cut it
	// (TestBracketDateRewriteIsExact); one whose lines hold no '[' has
	// nowhere to take it.
	pats, err = convertRegex(d, "", `^<HOST> -.*"GET .*" 401$`)
	if len(pats) != 1 || err != nil {
		t.Fatalf("got %q, %v", pats, err)
	}
	if r, err = authlog.CompileRule(pats[0]); err != nil {
		t.Fatal(err)
	}
	checkLines(t, []*authlog.Rule{r}, map[string]string{
		`10.0.0.2 - - [18/Nov/2018:21:34:34 +0000] "GET /x" 401`: "10.0.0.2",
		`10.0.0.2 - - [x] "GET /x" 401`:                          "",
	})
	if _, err := convertRegex(d, "", `^<HOST> -[^\[]*"GET [^\[]*" 401$`); err == nil {
		t.Error("converted a failregex whose lines hold no '[' for the date")
	}
}

// fail2ban's multi-line bookkeeping converts into rules with a connection
// id and their kind; what moat cannot carry exactly is refused, saying
// why.
func TestConvertBookkeeping(t *testing.T) {
	pref, err := translatePython(`^<F-MLFID>\S+ myapp\[\d+\]: </F-MLFID><F-CONTENT>.+</F-CONTENT>$`)
	if err != nil {
		t.Fatal(err)
	}
	conv := func(pref, fr string) ([]string, []Marks, error) {
		pats, err := convertRegex(anyDate, pref, fr)
		return bookkeeping(pats, err)
	}
	for fr, want := range map[string]Marks{
		`^<F-NOFAIL>connect from <HOST></F-NOFAIL>$`:                                    {Kind: "note"},
		`^auth failed for \S+$`:                                                         {},
		`^auth failed for \S+ from <HOST>$`:                                             {},
		`^<F-NOFAIL><F-MLFFORGET>disconnect</F-MLFFORGET></F-NOFAIL>$`:                  {Kind: "note", Forget: true},
		`^<F-MLFFORGET><F-MLFGAINED>accepted</F-MLFGAINED></F-MLFFORGET> for \S+$`:      {Kind: "success", Forget: true},
		`^too many failures, <F-MLFFORGET>bye</F-MLFFORGET>$`:                           {Forget: true},
		`^<F-NOFAIL>connect from (?:IPv6:<IP6>|<IP4>)</F-NOFAIL> port \d+$`:             {Kind: "note"},
		`^<F-NOFAIL><F-MLFFORGET>closed</F-MLFFORGET></F-NOFAIL> by <HOST>(?: \[x\])?$`: {Kind: "note", Forget: true},
	} {
		pats, marks, err := conv(pref, fr)
		if err != nil || len(pats) == 0 {
			t.Errorf("%s: %v", fr, err)
			continue
		}
		for i, p := range pats {
			if marks[i] != want || !strings.Contains(p, "(?P<id>") || strings.Contains(p, "moat") {
				t.Errorf("%s: %s %+v, want %+v", fr, p, marks[i], want)
			}
			if _, err := authlog.CompileRule(p); err != nil {
				t.Errorf("%s: %v", p, err)
			}
		}
	}
	for _, tt := range []struct{ pref, fr, want string }{
		{pref, `^(?:<F-NOFAIL>publickey</F-NOFAIL>|\S+) failed from <HOST>$`, "<F-NOFAIL> is inside an alternative"},
		{pref, `^failed from <HOST>(?: <F-MLFFORGET>bye</F-MLFFORGET>)?$`, "<F-MLFFORGET> is inside an alternative"},
		{"", `^<F-NOFAIL>connect from <HOST></F-NOFAIL>$`, "without <F-MLFID>"},
		{"", `^auth failed for \S+$`, "no address on this line, and no connection id"},
		{pref, `^<F-NOFAIL>hello</F-NOFAIL>$`, "without an address"},
		// A filter's own group named id would pass for the connection id.
		{"", `^(?P<id>\S+) failed$`, "moat reserves the name"},
		{"", `^(?P<moatnofail>x) from <HOST>$`, "moat reserves the name"},
	} {
		pats, _, err := conv(tt.pref, tt.fr)
		if len(pats) != 0 || err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %q %v, want an error about %q", tt.fr, pats, err, tt.want)
		}
	}
	// An id that the client's text could write is refused by the shape
	// check: fail2ban's id here spans open text.
	open, err := translatePython(`^<F-MLFID>.*? myapp\[\d+\]: </F-MLFID><F-CONTENT>.+</F-CONTENT>$`)
	if err != nil {
		t.Fatal(err)
	}
	if pats, _, err := conv(open, `^auth failed for \S+$`); len(pats) != 0 || err == nil || !strings.Contains(err.Error(), "holds open text") {
		t.Errorf("an open id: %q %v", pats, err)
	}
}

// nginx-http-auth's failregex for a failed TLS handshake (mode
// aggressive) leaves the line open after the address and has OpenSSL's
// reason, open text, before it: refused as fail2ban writes it. nginx
// writes ", server: LISTEN" and nothing more after the address of a
// connection that has no request yet, so the import pins the end there;
// the request line and host, which the client writes, never follow.
func TestConvertNginxHandshake(t *testing.T) {
	const fr = `^\s*\[crit\] \d+#\d+: \*\d+ SSL_do_handshake\(\) failed \(SSL: error:\S+(?: \S+){1,3} too (?:long|short)\)[^,]*, client: <HOST>`
	if pats, err := convertRegex(anyDate, "", fr); len(pats) != 0 || err == nil {
		t.Fatalf("as fail2ban writes it: got %q, %v: want the shape check's refusal", pats, err)
	}
	if serviceFields("nginx-botsearch", fr) != fr {
		t.Error("the handshake line narrowed in another filter")
	}
	rules := convertAll(t, "", serviceFields("nginx-http-auth", fr))
	checkLines(t, rules, map[string]string{
		"2020/11/25 14:42:16 [crit] 76952#76952: *2454307 SSL_do_handshake() failed (SSL: error:1408F0C6:SSL routines:ssl3_get_record:packet length too long) while SSL handshaking, client: 192.0.2.4, server: 0.0.0.0:443": "192.0.2.4",
		"2020/11/25 15:47:47 [crit] 76952#76952: *5062354 SSL_do_handshake() failed (SSL: error:1408F0A0:SSL routines:ssl3_get_record:length too short) while SSL handshaking, client: 192.0.2.5, server: [::]:443":          "192.0.2.5",
		// Text after the listening address is not what nginx writes for
		// a handshake: a request's fields would be the client's.
		`2020/11/25 14:42:16 [crit] 76952#76952: *2454307 SSL_do_handshake() failed (SSL: error:1408F0C6:SSL routines:ssl3_get_record:packet length too long) while SSL handshaking, client: 192.0.2.4, server: 0.0.0.0:443, request: "GET / HTTP/1.1"`: "",
	})
}

// asterisk's log prefix in fail2ban's filter lets "function:" run over
// white space to any colon, so a failregex's content can start inside a
// SIP From display name (testdata/forged/asterisk.log proves fail2ban bans
// the address written there). Narrowed to asterisk's file and function
// names, which hold no white space, the prefix ends where asterisk's
// message starts: "<HOST> failed to authenticate" then has fixed text
// before the address and imports, and the forged line matches nothing.
func TestConvertAsteriskPrefix(t *testing.T) {
	const (
		pref = `^(?:\[\])?\s*(?:NOTICE|SECURITY|WARNING)(?:\s*\[\d+\]):?(?:\[C-[\da-f]*\])?:? [^:]+:\d*(?:(?: in)? [^:]+:)? <F-CONTENT>.+</F-CONTENT>$`
		fr   = `^(?:Host )?<HOST> (?:failed (?:to authenticate\b|MD5 authentication\b)|tried to authenticate with nonexistent user\b)`
	)
	if pats, err := convertRegex(anyDate, pref, fr); len(pats) != 0 || err == nil {
		t.Fatalf("as fail2ban writes it: got %q, %v: want the shape check's refusal", pats, err)
	}
	if servicePrefix("sogo-auth", pref) != pref {
		t.Error("asterisk's prefix narrowed in another filter")
	}
	rules := convertAll(t, servicePrefix("asterisk", pref), fr)
	checkLines(t, rules, map[string]string{
		"[2012-02-13 17:53:59] NOTICE[1638] chan_iax2.c: Host 192.0.2.4 failed to authenticate as 'Fail2ban'":                                                                                                                              "192.0.2.4",
		"[2016-06-09 00:01:02] NOTICE [22382] manager.c: 192.0.2.1 failed to authenticate as 'admin'":                                                                                                                                      "192.0.2.1",
		"[2016-06-09 00:01:02] NOTICE[22382] res_pjsip_session.c:2337 new_invite: 192.0.2.3 tried to authenticate with nonexistent user 'x'":                                                                                               "192.0.2.3",
		"[2013-11-11 14:33:38] WARNING[6756][C-0000001d] Ext. s: 192.0.2.6 failed to authenticate as 'x'":                                                                                                                                  "192.0.2.6",
		"[2013-11-11 14:33:38] WARNING[1195][C-00000b43]: Ext. s:6 in @ from-sip-external: 192.0.2.7 failed to authenticate as 'x'":                                                                                                        "192.0.2.7",
		`[2016-05-23 10:18:16] NOTICE[19388] res_pjsip/pjsip_distributor.c: Request 'INVITE' from '"x: 192.0.2.66 failed to authenticate" <sip:a@198.51.100.9>' failed for '203.0.113.7:5060' (callid: 1234) - No matching endpoint found`: "",
	})
}

// A \n escape is a newline (a failregex over several lines, refused); an
// escaped backslash before n is the two characters apache writes.
func TestHasNewline(t *testing.T) {
	for p, want := range map[string]bool{
		`^a\nb`:                   true,
		`^[^\n]*x`:                true,
		`unknown(?:\\n)?'`:        false,
		`a\\\nb`:                  true, // \\ then \n
		`a\\\\n`:                  false,
		`no escapes at all`:       false,
		`trailing backslash \`:    false,
		`^error '[Pp]rimary \w+'`: false,
	} {
		if got := hasNewline(p); got != want {
			t.Errorf("hasNewline(%s) = %v, want %v", p, got, want)
		}
	}
	rules := convertAll(t, "", `^\s*\[client <HOST>(?::\d+)?\] AH01071: Got error '[Pp]rimary script unknown(?:\\n)?'$`)
	checkLines(t, rules, map[string]string{
		`Mar 11 08:56:20 [client 192.0.2.106:50900] AH01071: Got error 'Primary script unknown\n'`: "192.0.2.106",
		`Mar 11 08:56:20 [client 192.0.2.106:50900] AH01071: Got error 'Primary script unknown'`:   "192.0.2.106",
	})
}

// Domino's bracketed process and thread ids hold no white space; narrowed,
// they leave nothing open before the address of "Connection from [ADDR]
// rejected for policy reasons.", whose end Domino fills with its reason.
func TestConvertDominoIDs(t *testing.T) {
	const fr = `^(?:\[[^\]]+\])?\s*SMTP Server(?::|\s+\[[^\]]+\]) Connection from \[?<HOST>\]? rejected for policy reasons\.`
	if pats, err := convertRegex(anyDate, "", fr); len(pats) != 0 || err == nil {
		t.Fatalf("as fail2ban writes it: got %q, %v: want the shape check's refusal", pats, err)
	}
	rules := convertAll(t, "", serviceFields("domino-smtp", fr))
	checkLines(t, rules, map[string]string{
		"2018-09-19 17:25:52   SMTP Server [000527:000013-0000001227564800] Connection from [192.0.2.2] rejected for policy reasons. IP address of connecting host not found in reverse DNS lookup.": "192.0.2.2",
		"2018-09-19 17:25:52   SMTP Server: Connection from [192.0.2.3] rejected for policy reasons. x Connection from [192.0.2.66] rejected for policy reasons.":                                    "192.0.2.3",
		"2018-09-19 17:25:52   SMTP Server [a b] Connection from [192.0.2.66] rejected for policy reasons.":                                                                                          "",
	})
}

// exim's "AUTH command used when not advertised" failregex: without its
// lookahead (which cut no match) and without the sender exim never writes
// on that line, it is fixed text from the address to the end. fail2ban's
// own sample has a command that repeats a host part; the address stays the
// real one.
func TestConvertEximAuth(t *testing.T) {
	const fr = `^(?: \[\d+\]| \w+ exim\[\d+\]:)? SMTP protocol error in "[^"]+(?:"+[^"]*(?="))*?" (?:H=([\w.-]+ )?(?:\(\S+\) )?)?\[<HOST>\](?::\d+)?(?: I=\[\S+\](:\d+)?)?(?: U=\S+)?(?: P=e?smtp)?(?: F=(?:<>|[^@]+@\S+))?\sAUTH command used when not advertised\s*$`
	if pats, err := convertRegex(anyDate, "", fr); len(pats) != 0 || err == nil {
		t.Fatalf("as fail2ban writes it: got %q, %v: want a refusal", pats, err)
	}
	rules := convertAll(t, "", serviceFields("exim", fr))
	checkLines(t, rules, map[string]string{
		`2016-03-18 00:34:06 [7513] SMTP protocol error in "AUTH LOGIN" H=(ylmf-pc) [192.0.2.7]:60723 I=[172.89.0.6]:587 AUTH command used when not advertised`:                                                       "192.0.2.7",
		`2016-03-19 18:40:44 [26221] SMTP protocol error in "AUTH LOGIN aW5mb0BtYW5iYXQub3Jn" H=([127.0.0.1]) [192.0.2.8]:14243 I=[172.89.0.6]:587 AUTH command used when not advertised`:                             "192.0.2.8",
		`2016-04-01 11:09:21 [18648] SMTP protocol error in "AUTH LOGIN" H=host.example.com (SERVER) [192.0.2.1]:4692 I=[172.89.0.6]:25 AUTH command used when not advertised`:                                        "192.0.2.1",
		`2017-11-28 14:14:32 SMTP protocol error in "aUtH lOgIn" H=(test) [8.8.8.8]" H=(roxzgj) [192.0.2.6] AUTH command used when not advertised`:                                                                    "192.0.2.6",
		`2016-03-18 00:34:06 [7513] SMTP protocol error in "AUTH x" H=(a) [192.0.2.66] AUTH command used when not advertised" H=(ylmf-pc) [192.0.2.7]:60723 I=[172.89.0.6]:587 AUTH command used when not advertised`: "192.0.2.7",
		// The forged line fail2ban falls for when an ident holds an "@"
		// (testdata/forged/exim.log, a hold line without one): moat takes
		// the real address, the quoted command spanning the fake.
		`2016-03-18 00:34:06 [7513] SMTP protocol error in "AUTH x" H=(a) [192.0.2.66] F=a" H=(ylmf-pc) [192.0.2.7]:60723 I=[172.89.0.6]:587 U=z@b AUTH command used when not advertised`: "192.0.2.7",
	})
}

// fail2ban finds its default dates anywhere in the line; Domino writes its
// date after the bracketed process and thread ids when it logs them. The
// date may follow the failregex's optional leading bracket; the address
// is still the one fixed to the end of the line.
func TestConvertDominoDateAfterIDs(t *testing.T) {
	const fr = `^(?:\[[^\]]+\])?\s*smtp: (?:[^\[]+ )*\[?<HOST>\]? authentication failure using internet password\s*$`
	rules := convertAll(t, "", serviceFields("domino-smtp", fr))
	checkLines(t, rules, map[string]string{
		"[28325:00010-3735542592] 22-06-2014 09:56:12   smtp: postmaster [1.2.3.4] authentication failure using internet password":                                                 "1.2.3.4",
		"08-09-2014 06:14:27   smtp: postmaster [1.2.3.4] authentication failure using internet password":                                                                          "1.2.3.4",
		"[28325:00010-3735542592] 22-06-2014 09:56:12   smtp: x [6.6.6.6] authentication failure using internet password [1.2.3.4] authentication failure using internet password": "",
		// One date, before or after the ids, not both or none.
		"[28325:00010-3735542592]   smtp: postmaster [1.2.3.4] authentication failure using internet password":                                         "",
		"22-06-2014 09:56:12 [28325:00010-3735542592] 22-06-2014 09:56:12   smtp: postmaster [1.2.3.4] authentication failure using internet password": "",
	})
}

// dovecot's disconnect after failed logins: narrowed to the reasons the
// login process writes and a user name without white space, failregex 1
// leaves nothing open before the address. A reason or user name holding
// the client's words matches nothing. Whether the narrowed failregexes
// are used at all depends on dovecot's settings (TestConvertDovecotGate):
// the shape check alone accepts failregex 3 once the prefregex's
// auth-worker parts are narrowed, and its spaceless name takes the last
// address, the auth process's.
func TestConvertDovecotDisconnect(t *testing.T) {
	const pref = `^\s*(?:\S+ )?(?:dovecot: )?(?:auth(?:-worker)?(?:\([^\)]+\))?: )?(?:(?:pop3|imap|managesieve|submission)-login: )?(?:Info: )?(?:conn \w+:auth(?:-worker)? \([^\)]+\): auth(?:-worker)?<\d+>: )?<F-CONTENT>.+</F-CONTENT>$`
	const fr = `^(?:Aborted login|Disconnected|Remote closed connection|Client has quit the connection)(?:: (?:\w+\([^\):]*\) \w+|[^\(]+))* \((?:auth failed, \d+ attempts(?: in \d+ secs)?|tried to use (?:disabled|disallowed) \S+ auth|proxy dest auth failed)\):(?: user=<<F-USER>[^>]*</F-USER>>,)?(?: method=\S+,)? rip=<HOST>(?:[^>]*(?:, session=<\S+>)?)\s*$`
	const fr3 = `^[a-z\-]{3,15}\(\S*,<HOST>(?:,\S*)?\): (?:[Uu]nknown user|[Ii]nvalid credentials|[Pp]assword mismatch)`
	p, err := translatePython(pref)
	if err != nil {
		t.Fatal(err)
	}
	if pats, err := convertRegex(anyDate, p, fr); len(pats) != 0 || err == nil {
		t.Fatalf("as fail2ban writes it: got %q, %v: want the shape check's refusal", pats, err)
	}
	if serviceFields("postfix", fr) != fr || serviceContent("postfix", pref, fr) != pref {
		t.Error("dovecot's fields narrowed in another filter")
	}
	if pats, err := convertRegex(anyDate, p, fr3); len(pats) != 0 || err == nil {
		t.Errorf("failregex 3 with fail2ban's prefregex: got %q, %v: want the shape check's refusal", pats, err)
	}
	checkLines(t, convertAll(t, serviceContent("dovecot", pref, fr3), fr3), map[string]string{
		"Jan 29 09:33:58 h dovecot: auth-worker(1234): passwd-file(grace,192.0.2.3,<Lsz0Oo7WXti3b7xe>): unknown user":       "192.0.2.3",
		"Jan 29 09:33:58 h dovecot: auth: passwd-file(x,192.0.2.66,192.0.2.4): Password mismatch":                           "192.0.2.4",
		"Jan 29 09:33:58 h dovecot: auth: passwd-file(x,192.0.2.66,192.0.2.5,<Lsz0Oo7WXti3b7xe>): unknown user":             "192.0.2.5",
		"Jan 29 09:33:58 h dovecot: auth: passwd-file(x,192.0.2.66):,192.0.2.6): unknown user":                              "192.0.2.6",
		"Jan 29 09:33:58 h dovecot: auth-worker(1 2): passwd-file(x,192.0.2.66,<a>): unknown user,192.0.2.7): unknown user": "",
	})
	rules := convertAll(t, serviceContent("dovecot", pref, fr), serviceFields("dovecot", fr))
	checkLines(t, rules, map[string]string{
		"Jan 29 09:33:58 h dovecot: pop3-login: Info: Aborted login (auth failed, 1 attempts in 2 secs): user=<grace>, method=PLAIN, rip=192.0.2.3":                                                                                                             "192.0.2.3",
		"Jan 29 09:33:58 h dovecot: imap-login: Disconnected: Connection closed: read(size=1003) failed: Connection reset by peer (auth failed, 1 attempts in 0 secs): user=<t@example.com>, rip=192.0.2.4, lip=127.0.0.19, session=<Lsz0Oo7WXti3b7xe>":         "192.0.2.4",
		"Jan 29 09:33:58 h dovecot: managesieve-login: Disconnected: Too many invalid commands. (auth failed, 1 attempts in 2 secs): user=<me>, method=PLAIN, rip=192.0.2.5, lip=0.0.0.0, TLS, TLSv1.3 with cipher TLS_CHACHA20_POLY1305_SHA256 (256/256 bits)": "192.0.2.5",
		"Jan 29 09:33:58 h dovecot: imap-login: Disconnected (auth failed, 1 attempts): method=PLAIN, rip=192.0.2.6, lip=198.51.100.1, TLS: Disconnected":                                                                                                       "192.0.2.6",
		// The reason as the client's words (the model in
		// testdata/forged/dovecot.log): not one of dovecot's.
		"Jan 29 09:33:58 h dovecot: imap-login: Disconnected: x (auth failed, 1 attempts): rip=192.0.2.66, lip=y (auth failed, 1 attempts): method=PLAIN, rip=203.0.113.7, lip=198.51.100.1, TLS": "",
		// A user name with spaces: the narrowed name cannot hold it.
		"Jan 29 09:33:58 h dovecot: imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<x, method=PLAIN, rip=192.0.2.66, lip=z, session=<a>, method=PLAIN, rip=203.0.113.7, lip=198.51.100.1": "",
	})
}

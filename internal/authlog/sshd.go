package authlog

import (
	"bytes"
	"net/netip"
	"time"
)

// maxSSHDMessage is where sshd cuts its messages: it hands syslog(3)
// "%.500s" of the formatted text. A message that long may have been cut
// inside text the client chose, so that what looks like sshd's fixed ending
// is the client's: such messages are never events.
const maxSSHDMessage = 500

// ParseSSHD parses one log line written for sshd (or sshd-session, which
// logs authentication since OpenSSH 9.8) into ev. It accepts classic syslog
// ("Nov 21 06:29:01 host sshd[123]: msg"), RFC 5424 ("<38>1
// 2026-11-21T06:29:01.123+00:00 host sshd 123 - - msg") and ISO 8601
// ("2026-11-21T06:29:01.123456+00:00 host sshd[123]: msg") lines, with or
// without a leading <PRI>. It reports whether the line is a login event;
// lines from other programs are not. It does not allocate; ev.User aliases
// line.
func ParseSSHD(line []byte, ev *Event) bool {
	*ev = Event{}
	var (
		ts      []byte
		tsClass bool // classic "Mmm dd hh:mm:ss"
		msg     []byte
		ok      bool
	)
	if len(line) > 0 && line[0] == '<' {
		// <PRI>: one to three digits.
		i := 1
		for i < len(line) && i < 5 && isDigit(line[i]) {
			i++
		}
		if i == 1 || i >= len(line) || line[i] != '>' {
			return false
		}
		line = line[i+1:]
		if len(line) >= 2 && line[0] == '1' && line[1] == ' ' {
			ts, msg, ok = splitRFC5424(line[2:])
			if !ok {
				return false
			}
			if !parseMessage(msg, ev) {
				*ev = Event{}
				return false
			}
			ev.Time = parseRFC3339(ts)
			return true
		}
	}
	if len(line) < 16 {
		return false
	}
	var rest []byte
	if isDigit(line[0]) {
		sp := bytes.IndexByte(line, ' ')
		if sp < 0 {
			return false
		}
		ts, rest = line[:sp], line[sp+1:]
	} else {
		// "Mmm dd hh:mm:ss " is 16 bytes.
		if line[3] != ' ' || line[6] != ' ' || line[9] != ':' || line[15] != ' ' {
			return false
		}
		ts, rest, tsClass = line[:15], line[16:], true
	}
	// Host, then the tag.
	sp := bytes.IndexByte(rest, ' ')
	if sp < 0 {
		return false
	}
	rest = rest[sp+1:]
	if msg, ok = cutTag(rest); !ok {
		return false
	}
	if !parseMessage(msg, ev) {
		*ev = Event{}
		return false
	}
	if tsClass {
		ev.Time = parseClassicTime(ts)
	} else {
		ev.Time = parseRFC3339(ts)
	}
	return true
}

// ParseSSHDMessage parses a bare sshd message, as the journal's MESSAGE
// field holds it, into ev. The caller must have checked that sshd wrote it
// (the journal follower checks _COMM). ev.Time is zero.
func ParseSSHDMessage(msg []byte, ev *Event) bool {
	*ev = Event{}
	if !parseMessage(msg, ev) {
		*ev = Event{}
		return false
	}
	return true
}

// isSSHDProgram reports whether a syslog tag or journal _COMM names sshd.
// sshd-auth (OpenSSH 10) is accepted for when it logs itself.
func isSSHDProgram(p []byte) bool {
	switch string(p) {
	case "sshd", "sshd-session", "sshd-auth":
		return true
	}
	return false
}

// cutTag checks "sshd[123]: " or "sshd: " and returns what follows.
func cutTag(b []byte) ([]byte, bool) {
	i := 0
	for i < len(b) && b[i] != '[' && b[i] != ':' && b[i] != ' ' {
		i++
	}
	if i == len(b) || !isSSHDProgram(b[:i]) {
		return nil, false
	}
	if b[i] == '[' {
		j := i + 1
		for j < len(b) && isDigit(b[j]) {
			j++
		}
		if j == i+1 || j >= len(b) || b[j] != ']' {
			return nil, false
		}
		i = j + 1
	}
	if len(b) < i+2 || b[i] != ':' || b[i+1] != ' ' {
		return nil, false
	}
	return b[i+2:], true
}

// splitRFC5424 splits "TIMESTAMP HOST APP PROCID MSGID SD [MSG]" (after
// "<PRI>1 ") and checks APP.
func splitRFC5424(b []byte) (ts, msg []byte, ok bool) {
	var f [5][]byte
	for n := range f {
		sp := bytes.IndexByte(b, ' ')
		if sp <= 0 {
			return nil, nil, false
		}
		f[n], b = b[:sp], b[sp+1:]
	}
	if !isSSHDProgram(f[2]) {
		return nil, nil, false
	}
	// Structured data: "-" or one or more [id param="value"...] elements;
	// values escape '"', '\' and ']' with '\'.
	if len(b) > 0 && b[0] == '-' {
		b = b[1:]
	} else {
		if len(b) == 0 || b[0] != '[' {
			return nil, nil, false
		}
		for len(b) > 0 && b[0] == '[' {
			i, quoted := 1, false
			for ; i < len(b); i++ {
				c := b[i]
				if quoted {
					if c == '\\' {
						i++
					} else if c == '"' {
						quoted = false
					}
					continue
				}
				if c == '"' {
					quoted = true
				} else if c == ']' {
					break
				}
			}
			if i >= len(b) {
				return nil, nil, false
			}
			b = b[i+1:]
		}
	}
	if len(b) > 0 {
		if b[0] != ' ' {
			return nil, nil, false
		}
		b = b[1:]
	}
	b = bytes.TrimPrefix(b, utf8BOM)
	if string(f[0]) == "-" {
		f[0] = nil
	}
	return f[0], b, true
}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func hasPrefix(b []byte, s string) bool {
	return len(b) >= len(s) && string(b[:len(s)]) == s
}

func hasSuffix(b []byte, s string) bool {
	return len(b) >= len(s) && string(b[len(b)-len(s):]) == s
}

func cutPrefix(b []byte, s string) ([]byte, bool) {
	if hasPrefix(b, s) {
		return b[len(s):], true
	}
	return b, false
}

func cutSuffix(b []byte, s string) ([]byte, bool) {
	if hasSuffix(b, s) {
		return b[:len(b)-len(s)], true
	}
	return b, false
}

// lastIndex is bytes.LastIndex for a string needle, without converting it.
func lastIndex(b []byte, s string) int {
	n := len(s)
	for i := len(b) - n; i >= 0; i-- {
		if b[i] == s[0] && string(b[i:i+n]) == s {
			return i
		}
	}
	return -1
}

var sepSSH2 = []byte(" ssh2")

// parseMessage dispatches on the fixed text at the start of an sshd message.
func parseMessage(msg []byte, ev *Event) bool {
	ev.Count = 1
	if inner, n, ok := cutRepeated(msg); ok {
		// The wrapper is rsyslog's, not sshd's: anyone who can write to
		// /dev/log can write it, and no one can check that the N lines it
		// stands for were ever sent. It counts as the one line it is.
		msg, ev.Repeated = inner, n
	}
	if len(msg) >= maxSSHDMessage || len(msg) == 0 {
		return false
	}
	// Levels sshd prefixes to some messages.
	if msg[0] == 'e' {
		msg, _ = cutPrefix(msg, "error: ")
	} else if msg[0] == 'f' {
		msg, _ = cutPrefix(msg, "fatal: ")
	}
	if len(msg) == 0 {
		return false
	}
	switch msg[0] {
	case 'F':
		if rest, ok := cutPrefix(msg, "Failed "); ok {
			return parseAuthLog(rest, false, ev)
		}
	case 'A':
		if rest, ok := cutPrefix(msg, "Accepted "); ok {
			return parseAuthLog(rest, true, ev)
		}
	case 'I':
		if rest, ok := cutPrefix(msg, "Invalid user "); ok {
			ev.Kind, ev.Invalid = InvalidUser, true
			return parseUserFrom(trimPreauth(rest), ev)
		}
	case 'U':
		if rest, ok := cutPrefix(msg, "User "); ok {
			return parseNotAllowed(rest, ev)
		}
		if rest, ok := cutPrefix(msg, "Unable to negotiate with "); ok {
			return parseNoMatch(rest, ev)
		}
	case 'R':
		if rest, ok := cutPrefix(msg, "ROOT LOGIN REFUSED FROM "); ok {
			ev.Kind = RootRefused
			return parseAddrMaybePort(trimPreauth(rest), ev)
		}
		if rest, ok := cutPrefix(msg, "Received disconnect from "); ok {
			return parseReceivedDisconnect(rest, ev)
		}
	case 'P':
		return parsePAM(msg, ev)
	case 'm':
		if rest, ok := cutPrefix(msg, "maximum authentication attempts exceeded for "); ok {
			ev.Kind = MaxAuthTries
			return parseUserFromSSH2(trimPreauth(rest), ev)
		}
	case 'D':
		if rest, ok := cutPrefix(msg, "Disconnecting "); ok {
			rest, ok = cutSuffix(trimPreauth(rest), ": Too many authentication failures")
			if !ok {
				return false
			}
			ev.Kind = TooManyAuthFailures
			_, ok = parseRemoteID(rest, ev)
			return ok
		}
		if rest, ok := cutPrefix(msg, "Disconnected from "); ok {
			return parsePreauthClose(rest, ev)
		}
		if rest, ok := cutPrefix(msg, "Did not receive identification string from "); ok {
			ev.Kind = BannerError
			return parseAddrMaybePort(rest, ev)
		}
	case 'C':
		if rest, ok := cutPrefix(msg, "Connection closed by "); ok {
			return parsePreauthClose(rest, ev)
		}
		if rest, ok := cutPrefix(msg, "Connection reset by "); ok {
			return parsePreauthClose(rest, ev)
		}
	case 'b':
		if rest, ok := cutPrefix(msg, "banner exchange: Connection from "); ok {
			// Only sshd's text follows: "A port P: invalid format".
			ev.Kind = BannerError
			_, ok = parseLeadingAddrPort(rest, ": ", ev)
			return ok
		}
	case 'B':
		if rest, ok := cutPrefix(msg, "Bad protocol version identification '"); ok {
			// The client's version string comes first; sshd writes
			// "' from A port P" after it.
			ev.Kind = BannerError
			return parseAfterLast(rest, "' from ", ev)
		}
	case 'T':
		if rest, ok := cutPrefix(msg, "Timeout before authentication for "); ok {
			ev.Kind = PreauthTimeout
			return parseAddrPortExact(rest, ev)
		}
	}
	return false
}

// cutRepeated unwraps rsyslog's "message repeated N times: [ msg]".
func cutRepeated(msg []byte) ([]byte, int, bool) {
	rest, ok := cutPrefix(msg, "message repeated ")
	if !ok {
		return nil, 0, false
	}
	n, i := 0, 0
	for i < len(rest) && isDigit(rest[i]) && i < 9 {
		n = n*10 + int(rest[i]-'0')
		i++
	}
	if i == 0 || n == 0 {
		return nil, 0, false
	}
	rest, ok = cutPrefix(rest[i:], " times: [")
	if !ok {
		return nil, 0, false
	}
	rest, ok = cutSuffix(rest, "]")
	if !ok {
		return nil, 0, false
	}
	rest, _ = cutPrefix(rest, " ")
	// One level only: a repeated "message repeated" is not a thing.
	if hasPrefix(rest, "message repeated ") {
		return nil, 0, false
	}
	return rest, n, true
}

// trimPreauth drops the " [preauth]" sshd's monitor appends to what its
// unprivileged child logs.
func trimPreauth(b []byte) []byte {
	b, _ = cutSuffix(b, " [preauth]")
	return b
}

// cutAddrPort parses "A port P" at the very end of b and returns what comes
// before A. The address is the token before the last " port ": whatever
// the client put earlier in the message cannot move it.
func cutAddrPort(b []byte) (head []byte, a netip.Addr, port uint16, ok bool) {
	i := lastIndex(b, " port ")
	if i < 0 {
		return nil, a, 0, false
	}
	if port, ok = parsePort(b[i+len(" port "):]); !ok {
		return nil, a, 0, false
	}
	b = b[:i]
	j := bytes.LastIndexByte(b, ' ')
	if a, ok = parseAddr(b[j+1:]); !ok {
		return nil, a, 0, false
	}
	return b[:j+1], a, port, true
}

// parseAuthLog parses what follows "Failed " or "Accepted " (auth.c
// auth_log): "METHOD for [invalid user ]USER from A port P ssh2[: EXTRA]".
func parseAuthLog(rest []byte, accepted bool, ev *Event) bool {
	sp := bytes.IndexByte(rest, ' ')
	if sp <= 0 {
		return false
	}
	method := rest[:sp]
	rest, ok := cutPrefix(rest[sp:], " for ")
	if !ok {
		return false
	}
	if accepted {
		ev.Kind = Accepted
	} else {
		switch {
		case string(method) == "password":
			ev.Kind = FailedPassword
		case string(method) == "publickey":
			ev.Kind = FailedPublickey
		case hasPrefix(method, "keyboard-interactive"):
			ev.Kind = FailedKbdInteractive
		case string(method) == "none":
			// Every client starts with "none" to learn the methods.
			return false
		default:
			ev.Kind = FailedOther
		}
	}
	// sshd may append ": EXTRA" after "ssh2": key type and fingerprint,
	// and text the client chose: a certificate's key ID, hostbased client
	// user and host names, a GSSAPI principal. Client text can then stand
	// on both sides of the address, so the line counts only if exactly one
	// place in it reads " from A port P ssh2" followed by the end or ": ".
	// (A user name carrying such a piece makes the line no event; the
	// "Invalid user" line sshd writes for a name no account has still
	// counts.)
	var found []byte
	for from := 0; ; {
		i := bytes.Index(rest[from:], sepSSH2)
		if i < 0 {
			break
		}
		i += from
		from = i + 1
		if after := rest[i+len(" ssh2"):]; len(after) > 0 && !hasPrefix(after, ": ") {
			continue
		}
		head, _, _, ok := cutAddrPort(rest[:i])
		if !ok || !hasSuffix(head, " from ") {
			continue
		}
		if found != nil {
			return false
		}
		found = rest[:i]
	}
	if found == nil {
		return false
	}
	return parseUserFromSSH2Core(found, ev)
}

// parseUserFromSSH2 parses "[invalid user ]USER from A port P ssh2".
func parseUserFromSSH2(b []byte, ev *Event) bool {
	core, ok := cutSuffix(b, " ssh2")
	if !ok {
		return false
	}
	return parseUserFromSSH2Core(core, ev)
}

// parseUserFromSSH2Core parses "[invalid user ]USER from A port P".
func parseUserFromSSH2Core(b []byte, ev *Event) bool {
	head, a, port, ok := cutAddrPort(b)
	if !ok {
		return false
	}
	user, ok := cutSuffix(head, " from ")
	if !ok {
		return false
	}
	if u, ok := cutPrefix(user, "invalid user "); ok {
		user, ev.Invalid = u, true
	}
	ev.Addr, ev.Port, ev.User = a, port, user
	return true
}

// parseUserFrom parses "USER from A port P" or, before OpenSSH 7.5,
// "USER from A".
func parseUserFrom(b []byte, ev *Event) bool {
	if head, a, port, ok := cutAddrPort(b); ok {
		if user, ok := cutSuffix(head, " from "); ok {
			ev.Addr, ev.Port, ev.User = a, port, user
			return true
		}
		return false
	}
	i := lastIndex(b, " from ")
	if i < 0 {
		return false
	}
	a, ok := parseAddr(b[i+len(" from "):])
	if !ok {
		return false
	}
	ev.Addr, ev.User = a, b[:i]
	return true
}

// notAllowedReasons are the fixed endings of auth.c allowed_user's messages
// that name an address.
var notAllowedReasons = [...]string{
	" not allowed because listed in DenyUsers",
	" not allowed because not listed in AllowUsers",
	" not allowed because not in any group",
	" not allowed because a group is listed in DenyGroups",
	" not allowed because none of user's groups are listed in AllowGroups",
}

// parseNotAllowed parses "USER from A not allowed because ..." (after
// "User "). With UseDNS the address is a host name: no event.
func parseNotAllowed(b []byte, ev *Event) bool {
	for _, r := range notAllowedReasons {
		if core, ok := cutSuffix(b, r); ok {
			i := lastIndex(core, " from ")
			if i < 0 {
				return false
			}
			a, ok := parseAddr(core[i+len(" from "):])
			if !ok {
				return false
			}
			ev.Kind, ev.Addr, ev.User = NotAllowed, a, core[:i]
			return true
		}
	}
	return false
}

// parsePAM parses auth-pam.c's "PAM: MSG for [illegal user ]USER from A".
func parsePAM(msg []byte, ev *Event) bool {
	rest, ok := cutPrefix(msg, "PAM: Authentication failure for ")
	if !ok {
		rest, ok = cutPrefix(msg, "PAM: User not known to the underlying authentication module for ")
		if !ok {
			return false
		}
	}
	rest = trimPreauth(rest)
	i := lastIndex(rest, " from ")
	if i < 0 {
		return false
	}
	a, ok := parseAddr(rest[i+len(" from "):])
	if !ok {
		return false
	}
	user := rest[:i]
	if u, ok := cutPrefix(user, "illegal user "); ok {
		user, ev.Invalid = u, true
	}
	ev.Kind, ev.Addr, ev.User = PAMFailure, a, user
	return true
}

// parseRemoteID parses packet.c's connection id, all of b:
// "[authenticating user U |invalid user U ]A port P", and reports whether
// it named a user. The post-authentication "user U " preamble is refused:
// a logged-in user's session is not a login attempt.
func parseRemoteID(b []byte, ev *Event) (named, ok bool) {
	head, a, port, ok := cutAddrPort(b)
	if !ok {
		return false, false
	}
	if len(head) > 0 {
		head = head[:len(head)-1] // the space before A
		if u, ok := cutPrefix(head, "authenticating user "); ok {
			ev.User = u
		} else if u, ok := cutPrefix(head, "invalid user "); ok {
			ev.User, ev.Invalid = u, true
		} else {
			return false, false
		}
	}
	ev.Addr, ev.Port = a, port
	return len(head) > 0, true
}

// parsePreauthClose parses "REMOTE_ID [preauth]" after "Connection closed
// by ", "Connection reset by " or "Disconnected from ". Without [preauth] it
// is the end of a session, not an event.
func parsePreauthClose(b []byte, ev *Event) bool {
	b, ok := cutSuffix(b, " [preauth]")
	if !ok {
		return false
	}
	named, ok := parseRemoteID(b, ev)
	if !ok {
		return false
	}
	if !named {
		// The client left before naming a user: a scanner, or a client
		// that only wanted the host key.
		ev.Kind = PreauthDisconnect
	} else {
		ev.Kind = PreauthClosed
	}
	return true
}

// parseLeadingAddrPort parses "A port P" at the start of b, followed by
// sep, and returns what follows sep. For messages where the client's text
// comes after the address, the address is read from the front, right after
// sshd's fixed text.
func parseLeadingAddrPort(b []byte, sep string, ev *Event) ([]byte, bool) {
	sp := bytes.IndexByte(b, ' ')
	if sp <= 0 {
		return nil, false
	}
	a, ok := parseAddr(b[:sp])
	if !ok {
		return nil, false
	}
	rest, ok := cutPrefix(b[sp:], " port ")
	if !ok {
		return nil, false
	}
	i := 0
	for i < len(rest) && isDigit(rest[i]) {
		i++
	}
	port, ok := parsePort(rest[:i])
	if !ok {
		return nil, false
	}
	if rest, ok = cutPrefix(rest[i:], sep); !ok {
		return nil, false
	}
	ev.Addr, ev.Port = a, port
	return rest, true
}

// parseNoMatch parses "A port P: no matching X found. Their offer: ..."
// (packet.c sshpkt_vfatal). The offer is the client's: read from the front.
func parseNoMatch(b []byte, ev *Event) bool {
	rest, ok := parseLeadingAddrPort(b, ": no matching ", ev)
	if !ok {
		return false
	}
	for _, what := range [...]string{"key exchange method", "cipher", "MAC", "host key type", "compression method"} {
		if hasPrefix(rest, what) && hasPrefix(rest[len(what):], " found") {
			ev.Kind = NoMatchingAlgo
			return true
		}
	}
	*ev = Event{}
	return false
}

// parseReceivedDisconnect parses "A port P:CODE: MSG [preauth]". MSG is
// the client's; with a user preamble (after the client named one) the
// client's text would stand on both sides of the address: no event.
func parseReceivedDisconnect(b []byte, ev *Event) bool {
	if !hasSuffix(b, " [preauth]") {
		return false
	}
	if _, ok := parseLeadingAddrPort(b, ":", ev); !ok {
		return false
	}
	ev.Kind = PreauthDisconnect
	return true
}

// parseAfterLast parses "A port P" or "A" after the last sep in b.
func parseAfterLast(b []byte, sep string, ev *Event) bool {
	i := lastIndex(b, sep)
	if i < 0 {
		return false
	}
	return parseAddrMaybePort(b[i+len(sep):], ev)
}

// parseAddrMaybePort parses exactly "A port P" or "A".
func parseAddrMaybePort(b []byte, ev *Event) bool {
	if bytes.IndexByte(b, ' ') < 0 {
		a, ok := parseAddr(b)
		ev.Addr = a
		return ok
	}
	return parseAddrPortExact(b, ev)
}

// parseAddrPortExact parses exactly "A port P".
func parseAddrPortExact(b []byte, ev *Event) bool {
	head, a, port, ok := cutAddrPort(b)
	if !ok || len(head) != 0 {
		return false
	}
	ev.Addr, ev.Port = a, port
	return true
}

var months = [...]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}

// parseClassicTime parses "Mmm dd hh:mm:ss" (day space-padded or not)
// into year 0, UTC; see Event.Time.
func parseClassicTime(b []byte) time.Time {
	if len(b) != 15 {
		return time.Time{}
	}
	mon := 0
	for i, m := range months {
		if string(b[:3]) == m {
			mon = i + 1
			break
		}
	}
	if mon == 0 {
		return time.Time{}
	}
	d1 := b[4]
	if d1 == ' ' {
		d1 = '0'
	}
	day, ok1 := num2(d1, b[5])
	h, ok2 := num2(b[7], b[8])
	m, ok3 := num2(b[10], b[11])
	s, ok4 := num2(b[13], b[14])
	if !ok1 || !ok2 || !ok3 || !ok4 || b[12] != ':' || day < 1 || day > 31 || h > 23 || m > 59 || s > 60 {
		return time.Time{}
	}
	return time.Date(0, time.Month(mon), day, h, m, s, 0, time.UTC)
}

func num2(a, b byte) (int, bool) {
	if !isDigit(a) || !isDigit(b) {
		return 0, false
	}
	return int(a-'0')*10 + int(b-'0'), true
}

// parseRFC3339 parses "YYYY-MM-DDThh:mm:ss[.frac](Z|+hh:mm|-hh:mm)"
// without allocating (time.Parse needs a string and FixedZone allocates):
// the result is in UTC. It returns the zero time on any error.
func parseRFC3339(b []byte) time.Time {
	if len(b) < 20 || b[4] != '-' || b[7] != '-' || (b[10] != 'T' && b[10] != 't') || b[13] != ':' || b[16] != ':' {
		return time.Time{}
	}
	y1, ok1 := num2(b[0], b[1])
	y2, ok2 := num2(b[2], b[3])
	mo, ok3 := num2(b[5], b[6])
	d, ok4 := num2(b[8], b[9])
	h, ok5 := num2(b[11], b[12])
	mi, ok6 := num2(b[14], b[15])
	s, ok7 := num2(b[17], b[18])
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 || !ok7 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60 {
		return time.Time{}
	}
	rest := b[19:]
	ns := 0
	if rest[0] == '.' {
		i, scale := 1, 100000000
		for i < len(rest) && isDigit(rest[i]) {
			ns += int(rest[i]-'0') * scale
			scale /= 10
			i++
		}
		if i == 1 {
			return time.Time{}
		}
		rest = rest[i:]
	}
	off := 0
	switch {
	case len(rest) == 1 && (rest[0] == 'Z' || rest[0] == 'z'):
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		oh, ok1 := num2(rest[1], rest[2])
		om, ok2 := num2(rest[4], rest[5])
		if !ok1 || !ok2 || oh > 23 || om > 59 {
			return time.Time{}
		}
		off = (oh*60 + om) * 60
		if rest[0] == '-' {
			off = -off
		}
	default:
		return time.Time{}
	}
	t := time.Date(y1*100+y2, time.Month(mo), d, h, mi, s, ns, time.UTC)
	return t.Add(-time.Duration(off) * time.Second)
}

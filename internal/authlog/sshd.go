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
// ("Nov 21 06:29:01 host sshd[123]: msg", also with a one-digit day, without
// the host, or with the "[sshd]" tag old syslog daemons write), RFC 5424
// ("<38>1 2026-11-21T06:29:01.123+00:00 host sshd 123 - - msg") and ISO
// 8601 ("2026-11-21T06:29:01.123456+00:00 host sshd[123]: msg") lines, with
// or without a leading <PRI>. It reports whether the line is a login event
// with the client's address; lines from other programs are not, nor are
// events whose client sshd wrote as a host name (UseDNS yes) or whose
// address is on another line (see Joiner). It does not allocate; ev.User
// aliases line.
func ParseSSHD(line []byte, ev *Event) bool {
	if parseLine(line, ev) != resEvent {
		*ev = Event{}
		return false
	}
	return true
}

// ParseSSHDMessage parses a bare sshd message, as the journal's MESSAGE
// field holds it, into ev. The caller must have checked that sshd wrote it
// (the journal follower checks _COMM). ev.Time is zero.
func ParseSSHDMessage(msg []byte, ev *Event) bool {
	if parseMessageResult(msg, ev) != resEvent {
		*ev = Event{}
		return false
	}
	return true
}

// parseResult says what a line told: an event, or what the Joiner needs to
// attribute the events sshd splits over several lines of one process.
type parseResult uint8

const (
	resNone parseResult = iota
	// resEvent: an event with the client's address.
	resEvent
	// resHost: an event whose client sshd wrote as a host name (UseDNS
	// yes): ev.Host holds it, ev.Addr is invalid.
	resHost
	// resNoAddr: a failure whose line names no client ("Disconnecting: Too
	// many authentication failures", "kex_exchange_identification: ..."):
	// ev.Kind is set, ev.Addr is invalid.
	resNoAddr
	// resConnStart: "Connection from A port P on B port Q": the process's
	// client, and a new connection. Not an event.
	resConnStart
	// resConnInfo: another line that names the process's client and is
	// no failure ("Address A maps to N, but this does not map back").
	resConnInfo
	// resConnEnd: "Connection closed by A port P" without [preauth]: the
	// process's client, and the end of its connection. Not an event.
	resConnEnd
)

// parseLine parses a syslog line into ev (see ParseSSHD) and sets ev.PID.
// On resNone ev is zero.
func parseLine(line []byte, ev *Event) parseResult {
	*ev = Event{}
	var (
		ts      []byte
		tsClass bool // classic "Mmm dd hh:mm:ss"
		msg     []byte
		pid     uint32
		ok      bool
	)
	if len(line) > 0 && line[0] == '<' {
		// <PRI>: one to three digits.
		i := 1
		for i < len(line) && i < 5 && isDigit(line[i]) {
			i++
		}
		if i == 1 || i >= len(line) || line[i] != '>' {
			return resNone
		}
		line = line[i+1:]
		if len(line) >= 2 && line[0] == '1' && line[1] == ' ' {
			ts, pid, msg, ok = splitRFC5424(line[2:])
			if !ok {
				return resNone
			}
			res := parseMessage(msg, ev)
			if res == resNone {
				*ev = Event{}
				return resNone
			}
			ev.Time, ev.PID = parseRFC3339(ts), pid
			return res
		}
	}
	if len(line) < 15 {
		return resNone
	}
	var rest []byte
	if isDigit(line[0]) {
		sp := bytes.IndexByte(line, ' ')
		if sp < 0 {
			return resNone
		}
		ts, rest = line[:sp], line[sp+1:]
	} else {
		// "Mmm dd hh:mm:ss " (day space-padded) is 16 bytes; some syslog
		// daemons write a one-digit day unpadded: "Mmm d hh:mm:ss ".
		n := 15
		if line[4] != ' ' && line[5] == ' ' {
			n = 14
		}
		if len(line) <= n || line[3] != ' ' || line[n-9] != ' ' || line[n-6] != ':' || line[n] != ' ' {
			return resNone
		}
		ts, rest, tsClass = line[:n], line[n+1:], true
	}
	// The host, then the tag; some daemons leave the host out.
	if msg, pid, ok = cutTag(rest); !ok {
		sp := bytes.IndexByte(rest, ' ')
		if sp < 0 {
			return resNone
		}
		if msg, pid, ok = cutTag(rest[sp+1:]); !ok {
			return resNone
		}
	}
	res := parseMessage(msg, ev)
	if res == resNone {
		*ev = Event{}
		return resNone
	}
	if tsClass {
		ev.Time = parseClassicTime(ts)
	} else {
		ev.Time = parseRFC3339(ts)
	}
	ev.PID = pid
	return res
}

// parseMessageResult parses a bare message (see ParseSSHDMessage).
func parseMessageResult(msg []byte, ev *Event) parseResult {
	*ev = Event{}
	res := parseMessage(msg, ev)
	if res == resNone {
		*ev = Event{}
	}
	return res
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

// cutTag checks "sshd[123]: ", "sshd: ", or the "[sshd]: " and "[sshd] "
// some old syslog daemons write, and returns what follows and the PID (0
// if none).
func cutTag(b []byte) ([]byte, uint32, bool) {
	if len(b) > 0 && b[0] == '[' {
		i := bytes.IndexByte(b, ']')
		if i < 0 || !isSSHDProgram(b[1:i]) {
			return nil, 0, false
		}
		b = b[i+1:]
		if hasPrefix(b, ": ") {
			return b[2:], 0, true
		}
		if hasPrefix(b, " ") {
			return b[1:], 0, true
		}
		return nil, 0, false
	}
	i := 0
	for i < len(b) && b[i] != '[' && b[i] != ':' && b[i] != ' ' {
		i++
	}
	if i == len(b) || !isSSHDProgram(b[:i]) {
		return nil, 0, false
	}
	var pid uint32
	if b[i] == '[' {
		j := i + 1
		var v uint64
		for j < len(b) && isDigit(b[j]) && j-i <= 10 {
			v = v*10 + uint64(b[j]-'0')
			j++
		}
		if j == i+1 || j >= len(b) || b[j] != ']' || v > 1<<32-1 {
			return nil, 0, false
		}
		pid, i = uint32(v), j+1
	}
	if len(b) < i+2 || b[i] != ':' || b[i+1] != ' ' {
		return nil, 0, false
	}
	return b[i+2:], pid, true
}

// parsePID parses RFC 5424's PROCID when it is a number.
func parsePID(b []byte) uint32 {
	if len(b) == 0 || len(b) > 10 {
		return 0
	}
	var v uint64
	for _, c := range b {
		if !isDigit(c) {
			return 0
		}
		v = v*10 + uint64(c-'0')
	}
	if v > 1<<32-1 {
		return 0
	}
	return uint32(v)
}

// splitRFC5424 splits "TIMESTAMP HOST APP PROCID MSGID SD [MSG]" (after
// "<PRI>1 ") and checks APP.
func splitRFC5424(b []byte) (ts []byte, pid uint32, msg []byte, ok bool) {
	var f [5][]byte
	for n := range f {
		sp := bytes.IndexByte(b, ' ')
		if sp <= 0 {
			return nil, 0, nil, false
		}
		f[n], b = b[:sp], b[sp+1:]
	}
	if !isSSHDProgram(f[2]) {
		return nil, 0, nil, false
	}
	// Structured data: "-" or one or more [id param="value"...] elements;
	// values escape '"', '\' and ']' with '\'.
	if len(b) > 0 && b[0] == '-' {
		b = b[1:]
	} else {
		if len(b) == 0 || b[0] != '[' {
			return nil, 0, nil, false
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
				return nil, 0, nil, false
			}
			b = b[i+1:]
		}
	}
	if len(b) > 0 {
		if b[0] != ' ' {
			return nil, 0, nil, false
		}
		b = b[1:]
	}
	b = bytes.TrimPrefix(b, utf8BOM)
	if string(f[0]) == "-" {
		f[0] = nil
	}
	return f[0], parsePID(f[3]), b, true
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

var sepSSH = []byte(" ssh")

// parseMessage dispatches on the fixed text at the start of an sshd message.
func parseMessage(msg []byte, ev *Event) parseResult {
	ev.Count = 1
	if inner, n, ok := cutRepeated(msg); ok {
		// The wrapper is rsyslog's, not sshd's: anyone who can write to
		// /dev/log can write it, and no one can check that the N lines it
		// stands for were ever sent. It counts as the one line it is.
		msg, ev.Repeated = inner, n
	}
	if len(msg) >= maxSSHDMessage || len(msg) == 0 {
		return resNone
	}
	// Solaris and old macOS syslog put "[ID 800047 auth.info] " first.
	if msg[0] == '[' {
		msg = cutSolarisID(msg)
	} else if msg[0] == 'k' {
		msg = cutKernelStamp(msg)
	}
	// Trailing blanks are the syslog daemon's or a copy's: sshd's own
	// endings (an address, "[preauth]") have none.
	for len(msg) > 0 && (msg[len(msg)-1] == ' ' || msg[len(msg)-1] == '\t' || msg[len(msg)-1] == '\r') {
		msg = msg[:len(msg)-1]
	}
	// Levels sshd prefixes to some messages.
	if len(msg) > 0 && msg[0] == 'e' {
		msg, _ = cutPrefix(msg, "error: ")
	} else if len(msg) > 0 && msg[0] == 'f' {
		msg, _ = cutPrefix(msg, "fatal: ")
	}
	if len(msg) == 0 {
		return resNone
	}
	switch msg[0] {
	case 'F':
		if rest, ok := cutPrefix(msg, "Failed "); ok {
			return result(parseAuthLog(rest, false, ev))
		}
	case 'A':
		if rest, ok := cutPrefix(msg, "Accepted "); ok {
			return result(parseAuthLog(rest, true, ev))
		}
		if rest, ok := cutPrefix(msg, "Address "); ok {
			// "Address A maps to N, but this does not map back to the
			// address[ - POSSIBLE BREAK-IN ATTEMPT!]": UseDNS found a
			// reverse name that does not resolve back. Legitimate clients
			// with sloppy DNS cause it too, so it is no failure (fail2ban
			// agrees); it still names the process's client.
			sp := bytes.IndexByte(rest, ' ')
			if sp > 0 && hasPrefix(rest[sp:], " maps to ") {
				if a, ok := parseAddr(rest[:sp]); ok {
					ev.Addr = a
					return resConnInfo
				}
			}
		}
	case 'I':
		if rest, ok := cutPrefix(msg, "Invalid user "); ok {
			ev.Kind, ev.Invalid = InvalidUser, true
			return result(parseUserFrom(trimPreauth(rest), ev))
		}
	case 'U':
		if rest, ok := cutPrefix(msg, "User "); ok {
			return parseNotAllowed(rest, ev)
		}
		if rest, ok := cutPrefix(msg, "Unable to negotiate with "); ok {
			return result(parseNoMatch(rest, ev))
		}
		if string(trimPreauth(msg)) == "Unable to negotiate a key exchange method" {
			// Before OpenSSH 7.0 the client is on the process's other lines.
			ev.Kind = NoMatchingAlgo
			return resNoAddr
		}
	case 'R':
		if rest, ok := cutPrefix(msg, "ROOT LOGIN REFUSED FROM "); ok {
			ev.Kind = RootRefused
			return result(parseAddrMaybePort(trimPreauth(rest), ev))
		}
		if rest, ok := cutPrefix(msg, "Received disconnect from "); ok {
			return result(parseReceivedDisconnect(rest, ev))
		}
		if string(msg) == "Read from socket failed: Connection reset by peer [preauth]" {
			// Before OpenSSH 7.2; the client is on the process's other lines.
			ev.Kind = PreauthDisconnect
			return resNoAddr
		}
	case 'P':
		return parsePAM(msg, ev)
	case 'm':
		if rest, ok := cutPrefix(msg, "maximum authentication attempts exceeded for "); ok {
			ev.Kind = MaxAuthTries
			return result(parseUserFromSSH2(trimPreauth(rest), ev))
		}
	case 'n':
		if rest, ok := cutPrefix(msg, "no matching "); ok {
			// Before OpenSSH 7.0: "no matching mac found: client X server Y
			// [preauth]"; the client is on the process's other lines.
			if i := bytes.Index(rest, []byte(" found: client ")); i > 0 && isAlgoWhat(rest[:i]) {
				ev.Kind = NoMatchingAlgo
				return resNoAddr
			}
		}
	case 'D':
		if rest, ok := cutPrefix(msg, "Disconnecting "); ok {
			rest, ok = cutSuffix(trimPreauth(rest), ": Too many authentication failures")
			if !ok {
				return resNone
			}
			ev.Kind = TooManyAuthFailures
			_, ok = parseRemoteID(rest, ev)
			return result(ok)
		}
		if rest, ok := cutPrefix(msg, "Disconnecting: Too many authentication failures"); ok {
			// Before OpenSSH 7.3 the line names no client: "Disconnecting:
			// Too many authentication failures[ for U] [preauth]".
			rest = trimPreauth(rest)
			if len(rest) > 0 {
				u, ok := cutPrefix(rest, " for ")
				if !ok {
					return resNone
				}
				if iu, ok := cutPrefix(u, "invalid user "); ok {
					u, ev.Invalid = iu, true
				}
				ev.User = u
			}
			ev.Kind = TooManyAuthFailures
			return resNoAddr
		}
		if rest, ok := cutPrefix(msg, "Disconnected from "); ok {
			return result(parsePreauthClose(rest, ev))
		}
		if rest, ok := cutPrefix(msg, "Did not receive identification string from "); ok {
			ev.Kind = BannerError
			return result(parseAddrMaybePort(rest, ev))
		}
	case 'C':
		if rest, ok := cutPrefix(msg, "Connection closed by "); ok {
			return parseClose(rest, ev)
		}
		if rest, ok := cutPrefix(msg, "Connection reset by "); ok {
			return parseClose(rest, ev)
		}
		if rest, ok := cutPrefix(msg, "Connection from "); ok {
			// "A port P on B port Q[ rdomain "R"]" (LogLevel VERBOSE) or,
			// before OpenSSH 5.x, "A port P": all of it is sshd's.
			rest, ok = parseLeadingAddrPortEnd(rest, ev)
			if ok && (len(rest) == 0 || hasPrefix(rest, " on ")) {
				return resConnStart
			}
			*ev = Event{}
		}
	case 'b':
		if rest, ok := cutPrefix(msg, "banner exchange: Connection from "); ok {
			// Only sshd's text follows: "A port P: invalid format".
			ev.Kind = BannerError
			_, ok = parseLeadingAddrPort(rest, ": ", ev)
			return result(ok)
		}
	case 'B':
		if rest, ok := cutPrefix(msg, "Bad protocol version identification '"); ok {
			// The client's version string comes first; sshd writes
			// "' from A port P" after it.
			ev.Kind = BannerError
			return result(parseAfterLast(rest, "' from ", ev))
		}
	case 'T':
		if rest, ok := cutPrefix(msg, "Timeout before authentication for "); ok {
			ev.Kind = PreauthTimeout
			return result(parseAddrMaybePort(rest, ev))
		}
	case 'k':
		if rest, ok := cutPrefix(msg, "kex_exchange_identification: "); ok {
			// OpenSSH 8.x writes these before "Connection closed by A port
			// P"; the client is on that line. (A banner line too long is
			// followed by its own "banner exchange" event.)
			switch string(rest) {
			case "Connection closed by remote host", "read: Connection reset by peer",
				"client sent invalid protocol identifier \"\"":
				ev.Kind = BannerError
				return resNoAddr
			}
			if hasPrefix(rest, "client sent invalid protocol identifier \"") {
				ev.Kind = BannerError
				return resNoAddr
			}
		}
	case 'S':
		if rest, ok := cutPrefix(msg, "SSH: Server;Ltype: "); ok {
			// A vendor patch's audit line: "SSH: Server;Ltype: Version;
			// Remote: A-P;Protocol: 2.0;Client: ...". The client's text
			// comes after the address. No failure; it names the client.
			i := 0
			for i < len(rest) && i < 16 && (rest[i] >= 'a' && rest[i] <= 'z' || rest[i] >= 'A' && rest[i] <= 'Z') {
				i++
			}
			if rest, ok := cutPrefix(rest[i:], ";Remote: "); ok && i > 0 {
				if d := bytes.IndexByte(rest, '-'); d > 0 {
					if a, ok := parseAddr(rest[:d]); ok {
						e := d + 1
						for e < len(rest) && isDigit(rest[e]) {
							e++
						}
						if p, ok := parsePort(rest[d+1 : e]); ok && e < len(rest) && rest[e] == ';' {
							ev.Addr, ev.Port = a, p
							return resConnInfo
						}
					}
				}
			}
		}
	case 'r':
		if rest, ok := cutPrefix(msg, "refused connect from "); ok {
			// TCP wrappers: "refused connect from CLIENT (A)". CLIENT may
			// hold an ident user name, which the client controls; the
			// parenthesized address at the end is sshd's.
			return result(parseRefused(rest, ev))
		}
		if rest, ok := cutPrefix(msg, "reverse mapping checking getaddrinfo for "); ok {
			// "... for N [A] failed[ - POSSIBLE BREAK-IN ATTEMPT!]": N is
			// the client's DNS; the bracketed address, read from the end,
			// is sshd's. No failure (see "Address ... maps to").
			rest, _ = cutSuffix(rest, " - POSSIBLE BREAK-IN ATTEMPT!")
			if rest, ok := cutSuffix(rest, "] failed"); ok {
				if i := bytes.LastIndexByte(rest, '['); i > 0 && rest[i-1] == ' ' {
					if a, ok := parseAddr(rest[i+1:]); ok {
						ev.Addr = a
						return resConnInfo
					}
				}
			}
		}
	}
	return resNone
}

// result maps a parser's ok to resEvent.
func result(ok bool) parseResult {
	if ok {
		return resEvent
	}
	return resNone
}

// cutSolarisID drops the "[ID 800047 auth.info] " Solaris's syslog puts
// before the message.
func cutSolarisID(msg []byte) []byte {
	rest, ok := cutPrefix(msg, "[ID ")
	if !ok {
		return msg
	}
	i := 0
	for i < len(rest) && i < 10 && isDigit(rest[i]) {
		i++
	}
	if i == 0 || i >= len(rest) || rest[i] != ' ' {
		return msg
	}
	rest = rest[i+1:]
	j := 0
	for j < len(rest) && j < 32 && (rest[j] >= 'a' && rest[j] <= 'z' || rest[j] == '.' || isDigit(rest[j])) {
		j++
	}
	if j == 0 || !hasPrefix(rest[j:], "] ") {
		return msg
	}
	return rest[j+2:]
}

// cutKernelStamp drops a "kernel:[  970.699396]: " some journal setups put
// before sshd's message (fail2ban's samples have three spellings).
func cutKernelStamp(msg []byte) []byte {
	rest, ok := cutPrefix(msg, "kernel:")
	if !ok {
		return msg
	}
	rest, _ = cutPrefix(rest, " ")
	if rest, ok = cutPrefix(rest, "["); !ok {
		return msg
	}
	i := 0
	for i < len(rest) && i < 12 && rest[i] == ' ' {
		i++
	}
	d := i
	for i < len(rest) && i < 32 && (isDigit(rest[i]) || rest[i] == '.') {
		i++
	}
	if i == d || i >= len(rest) || rest[i] != ']' {
		return msg
	}
	rest = rest[i+1:]
	rest, _ = cutPrefix(rest, ":")
	if rest, ok = cutPrefix(rest, " "); !ok {
		return msg
	}
	return rest
}

// isAlgoWhat reports whether b is kex.c's name for what did not match
// ("key exchange method", "cipher", "MAC", "host key type", ...).
func isAlgoWhat(b []byte) bool {
	if len(b) == 0 || len(b) > 40 {
		return false
	}
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == ' ' || c == '-') {
			return false
		}
	}
	return true
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
	// sshd wrote " ssh1" for protocol 1 until OpenSSH 7.4, and nothing at
	// all in some older releases.
	var (
		found     []byte // the piece before the suffix
		foundHead []byte // what precedes its address
		foundAddr netip.Addr
		foundPort uint16
	)
	for from := 0; ; {
		i := bytes.Index(rest[from:], sepSSH)
		if i < 0 {
			break
		}
		i += from
		from = i + 1
		if i+len(" ssh2") > len(rest) || rest[i+4] != '1' && rest[i+4] != '2' {
			continue
		}
		if after := rest[i+len(" ssh2"):]; len(after) > 0 && !hasPrefix(after, ": ") {
			continue
		}
		head, a, port, ok := cutAddrPort(rest[:i])
		if !ok || !hasSuffix(head, " from ") {
			continue
		}
		if found != nil {
			return false
		}
		found, foundHead, foundAddr, foundPort = rest[:i], head, a, port
	}
	// Old releases wrote no suffix for protocol 1 and ended the message
	// with "from A port P" or "from A". A line that ends so and also holds
	// a suffixed piece is either a modern line whose EXTRA ends in client
	// text, or an old line whose user name holds a suffix: no one can
	// tell which address is sshd's, so it is no event.
	if found == nil {
		return parseUserFromAny(rest, ev)
	}
	// A message that ends with its suffix (the usual case) has no such
	// tail; only an EXTRA can.
	if len(found)+len(" ssh2") < len(rest) {
		var tail Event
		if parseUserFromAny(rest, &tail) {
			return false
		}
	}
	user := foundHead[:len(foundHead)-len(" from ")]
	if u, ok := cutPrefix(user, "invalid user "); ok {
		user, ev.Invalid = u, true
	}
	ev.Addr, ev.Port, ev.User = foundAddr, foundPort, user
	return true
}

// parseUserFromAny parses "[invalid user ]USER from A[ port P]", all of b.
func parseUserFromAny(b []byte, ev *Event) bool {
	if !parseUserFrom(b, ev) {
		ev.Addr, ev.Port, ev.User = netip.Addr{}, 0, nil
		return false
	}
	if u, ok := cutPrefix(ev.User, "invalid user "); ok {
		ev.User, ev.Invalid = u, true
	}
	return true
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
// "User "). With UseDNS sshd writes the client's host name instead of A.
func parseNotAllowed(b []byte, ev *Event) parseResult {
	for _, r := range notAllowedReasons {
		if core, ok := cutSuffix(b, r); ok {
			i := lastIndex(core, " from ")
			if i < 0 {
				return resNone
			}
			ev.Kind, ev.User = NotAllowed, core[:i]
			return addrOrHost(core[i+len(" from "):], ev)
		}
	}
	return resNone
}

// addrOrHost sets ev.Addr, or ev.Host when sshd wrote a host name, from
// all of b: sshd's remote host as auth.c prints it.
func addrOrHost(b []byte, ev *Event) parseResult {
	if a, ok := parseAddr(b); ok {
		ev.Addr = a
		return resEvent
	}
	if validHostName(b) {
		ev.Host = b
		return resHost
	}
	ev.Kind, ev.User, ev.Invalid = 0, nil, false
	return resNone
}

// validHostName accepts what a resolver hands sshd: letters, digits, '-',
// '_' and dots, with at least one letter so that no dotted number (which
// inet_aton would read as an address: "192.030.0.6") passes for a name.
func validHostName(b []byte) bool {
	if len(b) == 0 || len(b) > 253 || b[0] == '.' || b[0] == '-' {
		return false
	}
	letter := false
	for _, c := range b {
		switch {
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			letter = true
		case c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.':
		default:
			return false
		}
	}
	return letter
}

// pamErrors are the pam_strerror texts auth-pam.c logs as "PAM: TEXT for
// [illegal user ]USER from HOST"; macOS writes the lower-case ones.
var pamErrors = [...]string{
	"Authentication failure for ",
	"authentication failure for ",
	"Authentication error for ",
	"authentication error for ",
	"User not known to the underlying authentication module for ",
}

// parsePAM parses auth-pam.c's "PAM: MSG for [illegal user ]USER from
// HOST", which macOS ends with " via LOCALADDR" (the server's address).
func parsePAM(msg []byte, ev *Event) parseResult {
	rest, ok := cutPrefix(msg, "PAM: ")
	if !ok {
		return resNone
	}
	ok = false
	for _, e := range pamErrors {
		if r, found := cutPrefix(rest, e); found {
			rest, ok = r, true
			break
		}
	}
	if !ok {
		return resNone
	}
	rest = trimPreauth(rest)
	// Only an address may follow " via ", and only at the very end: a
	// user name holding " via A" is followed by " from HOST".
	if i := lastIndex(rest, " via "); i >= 0 {
		if _, ok := parseAddr(rest[i+len(" via "):]); ok {
			rest = rest[:i]
		}
	}
	i := lastIndex(rest, " from ")
	if i < 0 {
		return resNone
	}
	user := rest[:i]
	if u, ok := cutPrefix(user, "illegal user "); ok {
		user, ev.Invalid = u, true
	}
	ev.Kind, ev.User = PAMFailure, user
	return addrOrHost(rest[i+len(" from "):], ev)
}

// parseRemoteID parses packet.c's connection id, all of b:
// "[authenticating user U |invalid user U ]A port P", and reports whether
// it named a user. The post-authentication "user U " preamble is refused:
// a logged-in user's session is not a login attempt.
func parseRemoteID(b []byte, ev *Event) (named, ok bool) {
	head, a, port, ok := cutAddrPort(b)
	if !ok {
		// Before OpenSSH 7.3: the address alone.
		if a, ok = parseAddr(b); !ok {
			return false, false
		}
		ev.Addr = a
		return false, true
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
	a, port, rest, ok := leadingAddrPort(b)
	if !ok {
		return nil, false
	}
	if rest, ok = cutPrefix(rest, sep); !ok {
		return nil, false
	}
	ev.Addr, ev.Port = a, port
	return rest, true
}

// leadingAddrPort reads "A port P" at the start of b and returns what
// follows the port's digits.
func leadingAddrPort(b []byte) (a netip.Addr, port uint16, rest []byte, ok bool) {
	sp := bytes.IndexByte(b, ' ')
	if sp <= 0 {
		return a, 0, nil, false
	}
	if a, ok = parseAddr(b[:sp]); !ok {
		return a, 0, nil, false
	}
	if rest, ok = cutPrefix(b[sp:], " port "); !ok {
		return a, 0, nil, false
	}
	i := 0
	for i < len(rest) && isDigit(rest[i]) {
		i++
	}
	if port, ok = parsePort(rest[:i]); !ok {
		return a, 0, nil, false
	}
	return a, port, rest[i:], true
}

// parseNoMatch parses "A port P: no matching X found. Their offer: ..."
// (packet.c sshpkt_vfatal). The offer is the client's: read from the front.
func parseNoMatch(b []byte, ev *Event) bool {
	rest, ok := parseLeadingAddrPort(b, ": no matching ", ev)
	if !ok {
		return false
	}
	// kex.c names what did not match ("key exchange method", "cipher",
	// "MAC", "host key type", ...); releases add names, so any plain
	// words do. The client's offer follows.
	if i := bytes.Index(rest, []byte(" found")); i > 0 && isAlgoWhat(rest[:i]) {
		ev.Kind = NoMatchingAlgo
		return true
	}
	*ev = Event{}
	return false
}

// parseReceivedDisconnect parses "A port P:CODE: MSG[ [preauth]]" or,
// before OpenSSH 7.3, "A: CODE: MSG[ [preauth]]". MSG is the client's, so
// the address is read from the front. With a user preamble (after the
// client named one) the client's text would stand on both sides of the
// address: no event.
func parseReceivedDisconnect(b []byte, ev *Event) bool {
	rest, ok := parseLeadingAddrPort(b, ":", ev)
	if !ok {
		// An IPv6 address holds ':' but never ": ".
		i := bytes.Index(b, []byte(": "))
		if i <= 0 {
			return false
		}
		a, ok := parseAddr(b[:i])
		if !ok {
			return false
		}
		ev.Addr, rest = a, b[i+2:]
	}
	code := 0
	i := 0
	for i < len(rest) && i < 3 && isDigit(rest[i]) {
		code = code*10 + int(rest[i]-'0')
		i++
	}
	if i == 0 || !hasPrefix(rest[i:], ": ") {
		*ev = Event{}
		return false
	}
	preauth := hasSuffix(rest, " [preauth]")
	reason := trimPreauth(rest[i+2:])
	switch {
	case code == 3 && hasSuffix(reason, ": Auth fail"):
		// JSch (and what embeds it) says so after its own failed
		// authentication, before sshd tagged [preauth] too. The text is
		// the client's own: it can only accuse its own address.
		ev.Kind = ClientAuthFail
	case preauth:
		ev.Kind = PreauthDisconnect
	default:
		// A session's end ("disconnected by user").
		*ev = Event{}
		return false
	}
	ev.Count = 1
	return true
}

// parseClose parses what follows "Connection closed by " or "Connection
// reset by ": with [preauth] an event, without it the end of a connection
// that names the process's client ("A port P" or "A" only: a session's end
// names its user, "user U A port P").
func parseClose(b []byte, ev *Event) parseResult {
	if hasSuffix(b, " [preauth]") {
		return result(parsePreauthClose(b, ev))
	}
	if !parseAddrMaybePort(b, ev) {
		*ev = Event{}
		ev.Count = 1
		return resNone
	}
	return resConnEnd
}

// parseLeadingAddrPortEnd parses "A port P" at the start of b, ended by
// the end of b or a space, and returns what follows.
func parseLeadingAddrPortEnd(b []byte, ev *Event) ([]byte, bool) {
	a, port, rest, ok := leadingAddrPort(b)
	if !ok || len(rest) > 0 && rest[0] != ' ' {
		return nil, false
	}
	ev.Addr, ev.Port = a, port
	return rest, true
}

// parseRefused parses "CLIENT (A)" after "refused connect from ".
func parseRefused(b []byte, ev *Event) bool {
	b, ok := cutSuffix(b, ")")
	if !ok {
		return false
	}
	i := lastIndex(b, " (")
	if i <= 0 {
		return false
	}
	a, ok := parseAddr(b[i+2:])
	if !ok {
		return false
	}
	ev.Kind, ev.Addr = WrapperRefused, a
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
	if len(b) == 14 {
		// "Mmm d hh:mm:ss": pad the day to the usual layout.
		var p [15]byte
		copy(p[:4], b[:4])
		p[4] = ' '
		copy(p[5:], b[4:])
		b = p[:]
	}
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

package session

import "bytes"

// OpenSSH rewrites each sshd process's argv (setproctitle) to say what the
// process is doing; /proc/PID/cmdline shows the result. The titles, from
// openssh-portable's sources (sshd.c, sshd-session.c, monitor.c, auth2.c,
// session.c), with "sshd: " (or "sshd-session: " from 9.8 on) in front:
//
//	/usr/sbin/sshd -D [listener] 0 of 10-100 startups   the listener
//	[accepted]                                           a new connection, before anything
//	[priv]  unknown [priv]  alice [priv]                 the privileged monitor (pre- and post-auth)
//	[net]   unknown [net]   alice [net]                  the unprivileged pre-auth child
//	alice                                                authenticated, no session channel yet (ssh -N)
//	alice@pts/0  alice@notty  alice@pts/0,pts/1          authenticated, with sessions
//	alice@internal-sftp                                  internal-sftp's forked child
//
// Only the last three are after authentication, and only they name no
// bracketed role. Pre-auth titles can carry a user name the client chose,
// but only one that exists (getpwnam), followed by " [priv]" or " [net]":
// a client cannot produce a title without a bracket before it logs in.

// titleKind says what a process title tells about an sshd process.
type titleKind uint8

const (
	titleOther    titleKind = iota // not an sshd title: the raw argv before setproctitle, or garbage
	titlePreAuth                   // the listener, a new connection or one still authenticating
	titlePostAuth                  // a logged-in user's process: it holds the connection after login
)

// classifyTitle classifies /proc/PID/cmdline of an sshd process and, for
// a post-auth title, returns the user name (a sub-slice of cmdline). It
// does not allocate.
func classifyTitle(cmdline []byte) (titleKind, []byte) {
	// setproctitle pads the old argv area with NULs; the title is the
	// first string.
	if i := bytes.IndexByte(cmdline, 0); i >= 0 {
		cmdline = cmdline[:i]
	}
	var rest []byte
	switch {
	case bytes.HasPrefix(cmdline, []byte("sshd: ")):
		rest = cmdline[len("sshd: "):]
	case bytes.HasPrefix(cmdline, []byte("sshd-session: ")):
		rest = cmdline[len("sshd-session: "):]
	default:
		return titleOther, nil
	}
	rest = bytes.TrimRight(rest, " ") // some setproctitle flavours pad with spaces
	if len(rest) == 0 {
		return titleOther, nil
	}
	// Every pre-auth title has a bracketed role; a user name never holds
	// a space or a bracket that the client could choose before login.
	if bytes.ContainsAny(rest, "[] \t\n") {
		return titlePreAuth, nil
	}
	return titlePostAuth, userOf(rest)
}

// userOf strips the "@ttys" part of a post-auth title ("alice@pts/0,pts/1",
// "alice@notty", "alice@internal-sftp") and keeps a bare one ("alice", the
// title of a login without a session channel, as with ssh -N). The tty
// part is recognised by its shape so a user name with an @ in it
// ("alice@example.com", from a directory service) survives.
func userOf(t []byte) []byte {
	i := bytes.LastIndexByte(t, '@')
	if i <= 0 {
		return t
	}
	tail := t[i+1:]
	if bytes.Equal(tail, []byte("notty")) || bytes.Equal(tail, []byte("internal-sftp")) {
		return t[:i]
	}
	// A tty list: comma-separated names like pts/0 or tty1, the ttys'
	// paths without /dev/ (session_tty_list(); before OpenSSH 6.x only the
	// last element, such as 0).
	for tty := range bytes.SplitSeq(tail, []byte(",")) {
		if !bytes.HasPrefix(tty, []byte("pts/")) && !bytes.HasPrefix(tty, []byte("tty")) && !digits(tty) {
			return t
		}
	}
	return t[:i]
}

func digits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}

// sshdComm reports whether a process's comm (/proc/PID/comm, without the
// newline) is OpenSSH's server: "sshd", or "sshd-session", the per-
// connection binary from 9.8 on. sshd-auth (10.0 on) only ever runs before
// authentication and is left out on purpose.
func sshdComm(comm []byte) bool {
	return string(comm) == "sshd" || string(comm) == "sshd-session"
}

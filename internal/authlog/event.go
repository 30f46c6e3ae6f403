// Package authlog turns sshd's (and other services') log lines into typed login events, and follows log files and the systemd journal.
//
// The parsers never take an address from text a client controls. sshd writes
// the client's address after the user name (which the client chooses), so the
// sshd parser reads each message from the fixed text sshd writes at its end,
// or, for the few messages where client text follows the address, from the
// fixed text at its start. Generic rules for other services must be anchored
// at both ends for the same reason (see CompileRule).
package authlog

import (
	"net/netip"
	"time"
)

// Kind says what a login event was.
type Kind uint8

// Kinds of events. The zero Kind is no event.
const (
	_ Kind = iota
	// FailedPassword: "Failed password for [invalid user ]U from A port P ssh2".
	FailedPassword
	// FailedPublickey: "Failed publickey for ... ssh2: KEY".
	FailedPublickey
	// FailedKbdInteractive: "Failed keyboard-interactive/pam for ...".
	FailedKbdInteractive
	// FailedOther: any other method (hostbased, gssapi-with-mic, ...).
	// "Failed none" (every client's first probe) is not an event.
	FailedOther
	// InvalidUser: "Invalid user U from A port P".
	InvalidUser
	// NotAllowed: "User U from A not allowed because listed in DenyUsers"
	// (and AllowUsers, DenyGroups, AllowGroups, no group). The variants
	// without an address (shell missing, account locked) are not events:
	// sshd logs the attempts that follow as for an invalid user.
	NotAllowed
	// RootRefused: "ROOT LOGIN REFUSED FROM A port P".
	RootRefused
	// PAMFailure: "error: PAM: Authentication failure for U from A".
	PAMFailure
	// MaxAuthTries: "error: maximum authentication attempts exceeded for U from A port P ssh2 [preauth]".
	MaxAuthTries
	// TooManyAuthFailures: "Disconnecting authenticating user U A port P: Too many authentication failures [preauth]".
	TooManyAuthFailures
	// PreauthClosed: "Connection closed by authenticating user U A port P [preauth]",
	// also "Connection reset by ..." and "Disconnected from ...", and for invalid users.
	PreauthClosed
	// BannerError (aggressive): "Did not receive identification string from A port P",
	// "banner exchange: Connection from A port P: invalid format",
	// "Bad protocol version identification 'V' from A port P".
	BannerError
	// NoMatchingAlgo (aggressive): "Unable to negotiate with A port P: no matching
	// key exchange method found. Their offer: ...".
	NoMatchingAlgo
	// PreauthTimeout (aggressive): "fatal: Timeout before authentication for A port P".
	PreauthTimeout
	// PreauthDisconnect (aggressive): a client that left before naming a user:
	// "Received disconnect from A port P:11: Bye Bye [preauth]",
	// "Connection closed by A port P [preauth]".
	PreauthDisconnect
	// Accepted: "Accepted publickey for U from A port P ssh2: KEY". Not a
	// failure: it lets a success forget earlier failures.
	Accepted
	// ClientAuthFail: the client said it failed to authenticate:
	// "Received disconnect from A: 3: com.jcraft.jsch.JSchException: Auth fail".
	ClientAuthFail
	// WrapperRefused: TCP wrappers (hosts.deny) refused the client:
	// "refused connect from CLIENT (A)".
	WrapperRefused

	numKinds
)

var kindNames = [numKinds]string{
	"none",
	"failed-password",
	"failed-publickey",
	"failed-keyboard-interactive",
	"failed-other",
	"invalid-user",
	"not-allowed",
	"root-refused",
	"pam-failure",
	"max-auth-tries",
	"too-many-auth-failures",
	"preauth-closed",
	"banner-error",
	"no-matching-algorithm",
	"preauth-timeout",
	"preauth-disconnect",
	"accepted",
	"client-auth-fail",
	"tcp-wrapper-refused",
}

// String returns the kind's stable name, as used in metrics and explanations.
func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return "unknown"
}

// Aggressive reports whether the kind counts only in aggressive mode: it is
// what scanners and broken clients do, not a password guess.
func (k Kind) Aggressive() bool {
	switch k {
	case BannerError, NoMatchingAlgo, PreauthTimeout, PreauthDisconnect:
		return true
	}
	return false
}

// Event is one login event taken from a log line.
type Event struct {
	Kind Kind
	Addr netip.Addr // the client, unmapped, without zone
	Port uint16     // the client's port; 0 if the message has none
	// User aliases the line: valid until the line's buffer is reused. The
	// client chose it: show it escaped, never trust it.
	User []byte
	// Invalid reports that sshd said the user does not exist
	// ("invalid user", "illegal user").
	Invalid bool
	// Count is how many attempts the line stands for: always 1. A syslog
	// "message repeated N times: [ ... ]" counts once too: the wrapper is
	// written by the syslog daemon, so nothing vouches for its N (the
	// journal never writes it).
	Count int
	// Repeated is the N of a "message repeated N times: [ ... ]" wrapper,
	// 0 for a plain line. Shown, never counted.
	Repeated int
	// Host is the client's host name where sshd wrote one instead of its
	// address (UseDNS yes); Addr is then invalid. ParseSSHD never reports
	// such events, a Joiner does when asked to (JoinerConfig.Names): a
	// name is not an address, and only a [login] use_dns setting may
	// decide to resolve it. Host aliases the line, like User.
	Host []byte
	// PID is the sshd process that wrote the line, 0 if the line does not
	// say (the journal's MESSAGE does not: its _PID field does).
	PID uint32
	// Time is the line's timestamp, zero if it has none. A classic syslog
	// timestamp has no year and no zone: Time then holds its wall clock in
	// year 0, UTC; InferYear places it.
	Time time.Time
}

// InferYear places a classic syslog timestamp (year 0, see Event.Time) in
// now's location and in the latest year that does not put it more than a
// day after now. Other times are returned unchanged.
func InferYear(t, now time.Time) time.Time {
	if t.IsZero() || t.Year() != 0 {
		return t
	}
	loc := now.Location()
	y := now.Year()
	mo, d := t.Month(), t.Day()
	h, mi, s := t.Clock()
	c := time.Date(y, mo, d, h, mi, s, t.Nanosecond(), loc)
	// Feb 29 of a non-leap year normalizes to Mar 1: walk back to a leap year.
	for c.After(now.Add(24*time.Hour)) || (mo == time.February && d == 29 && c.Month() != mo) {
		y--
		c = time.Date(y, mo, d, h, mi, s, t.Nanosecond(), loc)
		if y < now.Year()-8 {
			break
		}
	}
	return c
}

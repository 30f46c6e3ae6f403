package login

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
)

// SSHDLogging is what sshd's effective config says about its logging:
// where its lines go and which lines it writes.
type SSHDLogging struct {
	Facility string // SyslogFacility: AUTH, AUTHPRIV, DAEMON, USER, LOCAL0..LOCAL7
	Level    string // LogLevel: QUIET, FATAL, ERROR, INFO, VERBOSE, DEBUG, DEBUG1..DEBUG3
	Err      error  // why sshd -T could not say; Facility and Level are then empty
}

// SourcePlan is what [login] sources resolve to, and what the admin
// should hear about it.
type SourcePlan struct {
	Sources  []string
	Warnings []string // the guard misses failed logins: logged at Warn
	Notes    []string // worth knowing: logged at Info
}

// The files sshd's syslog lines land in when there is no journal, by
// facility, Debian's first, then RHEL's: rsyslog's defaults send AUTH and
// AUTHPRIV to the auth files and every other facility to the general ones.
var (
	authLogFiles = []string{"/var/log/auth.log", "/var/log/secure"}
	sysLogFiles  = []string{"/var/log/syslog", "/var/log/messages"}
)

// PlanSources resolves [login] sources. "auto" picks the journal when
// it is available (journald stores every facility), else the first file
// that exists of those sshd's SyslogFacility lands in. It also judges
// sshd's LogLevel, which decides whether failed logins are logged at all.
// It is pure: journal says whether the journal is available and exists
// stands in for os.Stat.
func PlanSources(sources []string, lg SSHDLogging, journal bool, exists func(path string) bool) SourcePlan {
	var p SourcePlan
	if len(sources) == 0 {
		return p // the guard does not watch sshd: its logging does not matter
	}
	seen := map[string]bool{}
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			p.Sources = append(p.Sources, s)
		}
	}
	facility := strings.ToUpper(lg.Facility)
	files := authLogFiles
	switch facility {
	case "", "AUTH", "AUTHPRIV": // "": sshd -T could not say; AUTH is sshd's default
	default:
		files = sysLogFiles
	}
	auto := false
	for _, s := range sources {
		if s != "auto" {
			add(s)
			continue
		}
		auto = true
		if journal {
			add("journal")
			continue
		}
		for _, f := range files {
			if exists(f) {
				add(f)
				break
			}
		}
	}
	if auto && len(p.Sources) == 0 {
		where := "sshd's lines"
		if facility != "" {
			where = "sshd's lines (SyslogFacility " + facility + ")"
		}
		p.Warnings = append(p.Warnings, fmt.Sprintf("login guard has no source: there is no journal, and none of %s, where %s would land, exists; set [login] sources",
			strings.Join(files, ", "), where))
	}
	if lg.Err != nil {
		n := "cannot read sshd's logging settings (" + lg.Err.Error() + "): sshd's LogLevel is not checked"
		if errors.Is(lg.Err, fs.ErrNotExist) {
			n = "sshd is not installed (no sshd in PATH or at /usr/sbin/sshd): sshd's LogLevel is not checked"
		}
		if auto && !journal {
			n += `, and [login] sources "auto" assumes SyslogFacility AUTH`
		}
		p.Notes = append(p.Notes, n)
	}
	switch level := strings.ToUpper(lg.Level); level {
	case "QUIET", "FATAL", "ERROR":
		p.Warnings = append(p.Warnings, fmt.Sprintf("sshd's LogLevel is %s: sshd logs no failed logins, so the login guard sees none and bans no one; set LogLevel VERBOSE in sshd_config, or run `moat sshd harden`", level))
	case "INFO":
		p.Notes = append(p.Notes, "sshd's LogLevel is INFO: failed publickey attempts are logged only at VERBOSE (OpenSSH logs a non-password failure at INFO only once the connection reaches MaxAuthTries/2 failures), so the login guard counts key guessing late; set LogLevel VERBOSE in sshd_config to count every attempt")
	}
	return p
}

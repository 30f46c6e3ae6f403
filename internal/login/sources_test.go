package login

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"testing"
)

func TestPlanSources(t *testing.T) {
	existing := func(paths ...string) func(string) bool {
		return func(p string) bool { return slices.Contains(paths, p) }
	}
	debian := existing("/var/log/auth.log", "/var/log/syslog")
	rhel := existing("/var/log/secure", "/var/log/messages")
	verbose := func(facility string) SSHDLogging { return SSHDLogging{Facility: facility, Level: "VERBOSE"} }
	auto := []string{"auto"}
	tests := []struct {
		name     string
		sources  []string
		lg       SSHDLogging
		journal  bool
		exists   func(string) bool
		want     []string
		warnings []string // a part of each warning, in order
		notes    []string // a part of each note, in order
	}{
		// Facilities.
		{"journal wins", auto, verbose("LOCAL3"), true, debian, []string{"journal"}, nil, nil},
		{"auth", auto, verbose("AUTH"), false, debian, []string{"/var/log/auth.log"}, nil, nil},
		{"authpriv", auto, verbose("AUTHPRIV"), false, rhel, []string{"/var/log/secure"}, nil, nil},
		{"auth, lower case", auto, verbose("auth"), false, rhel, []string{"/var/log/secure"}, nil, nil},
		{"daemon on debian", auto, verbose("DAEMON"), false, debian, []string{"/var/log/syslog"}, nil, nil},
		{"user on rhel", auto, verbose("USER"), false, rhel, []string{"/var/log/messages"}, nil, nil},
		{"local0", auto, verbose("LOCAL0"), false, debian, []string{"/var/log/syslog"}, nil, nil},
		{"local7", auto, verbose("LOCAL7"), false, rhel, []string{"/var/log/messages"}, nil, nil},
		{"auth ignores syslog", auto, verbose("AUTH"), false, existing("/var/log/syslog"), nil,
			[]string{"login guard has no source: there is no journal, and none of /var/log/auth.log, /var/log/secure, where sshd's lines (SyslogFacility AUTH) would land, exists; set [login] sources"}, nil},
		{"local0 ignores auth.log", auto, verbose("LOCAL0"), false, existing("/var/log/auth.log"), nil,
			[]string{"none of /var/log/syslog, /var/log/messages, where sshd's lines (SyslogFacility LOCAL0) would land"}, nil},
		{"no files at all", auto, verbose("AUTH"), false, existing(), nil, []string{"login guard has no source"}, nil},
		{"no files, journal", auto, verbose("AUTH"), true, existing(), []string{"journal"}, nil, nil},

		// Explicit sources are taken as they are.
		{"explicit path", []string{"/srv/log/sshd.log"}, verbose("LOCAL0"), false, existing(), []string{"/srv/log/sshd.log"}, nil, nil},
		{"explicit journal", []string{"journal"}, verbose("AUTH"), false, debian, []string{"journal"}, nil, nil},
		{"auto and a path, deduplicated", []string{"auto", "/var/log/auth.log"}, verbose("AUTH"), false, debian, []string{"/var/log/auth.log"}, nil, nil},
		{"not watching sshd", nil, SSHDLogging{Facility: "AUTH", Level: "QUIET"}, false, debian, nil, nil, nil},

		// Log levels.
		{"quiet", auto, SSHDLogging{Facility: "AUTH", Level: "QUIET"}, true, debian, []string{"journal"},
			[]string{"sshd's LogLevel is QUIET: sshd logs no failed logins, so the login guard sees none and bans no one; set LogLevel VERBOSE in sshd_config, or run `moat sshd harden`"}, nil},
		{"fatal", auto, SSHDLogging{Facility: "AUTH", Level: "FATAL"}, false, debian, []string{"/var/log/auth.log"}, []string{"LogLevel is FATAL"}, nil},
		{"error, explicit source", []string{"journal"}, SSHDLogging{Facility: "AUTH", Level: "error"}, false, debian, []string{"journal"}, []string{"LogLevel is ERROR"}, nil},
		{"info", auto, SSHDLogging{Facility: "AUTH", Level: "INFO"}, true, debian, []string{"journal"}, nil,
			[]string{"sshd's LogLevel is INFO: failed publickey attempts are logged only at VERBOSE (OpenSSH logs a non-password failure at INFO only once the connection reaches MaxAuthTries/2 failures)"}},
		{"verbose", auto, SSHDLogging{Facility: "AUTH", Level: "VERBOSE"}, true, debian, []string{"journal"}, nil, nil},
		{"debug", auto, SSHDLogging{Facility: "AUTH", Level: "DEBUG"}, true, debian, []string{"journal"}, nil, nil},
		{"debug3", auto, SSHDLogging{Facility: "AUTH", Level: "DEBUG3"}, true, debian, []string{"journal"}, nil, nil},
		{"quiet and no source", auto, SSHDLogging{Facility: "LOCAL0", Level: "QUIET"}, false, existing(), nil,
			[]string{"login guard has no source", "LogLevel is QUIET"}, nil},

		// sshd -T failed or sshd is missing: today's choice, said at Info.
		{"sshd -T fails", auto, SSHDLogging{Err: errors.New("/usr/sbin/sshd -T: exit status 255: no hostkeys available")}, false, rhel, []string{"/var/log/secure"}, nil,
			[]string{`cannot read sshd's logging settings (/usr/sbin/sshd -T: exit status 255: no hostkeys available): sshd's LogLevel is not checked, and [login] sources "auto" assumes SyslogFacility AUTH`}},
		{"sshd -T fails, journal", auto, SSHDLogging{Err: errors.New("exit status 255")}, true, rhel, []string{"journal"}, nil,
			[]string{"cannot read sshd's logging settings (exit status 255): sshd's LogLevel is not checked"}},
		{"sshd -T fails, no files", auto, SSHDLogging{Err: errors.New("exit status 255")}, false, existing("/var/log/syslog"), nil,
			[]string{"none of /var/log/auth.log, /var/log/secure, where sshd's lines would land, exists"}, []string{"not checked"}},
		{"no sshd", auto, SSHDLogging{Err: fmt.Errorf("sshd not found: %w", fs.ErrNotExist)}, false, debian, []string{"/var/log/auth.log"}, nil,
			[]string{`sshd is not installed (no sshd in PATH or at /usr/sbin/sshd): sshd's LogLevel is not checked, and [login] sources "auto" assumes SyslogFacility AUTH`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := PlanSources(tt.sources, tt.lg, tt.journal, tt.exists)
			if !slices.Equal(p.Sources, tt.want) {
				t.Errorf("sources %q, want %q", p.Sources, tt.want)
			}
			checkParts(t, "warning", p.Warnings, tt.warnings)
			checkParts(t, "note", p.Notes, tt.notes)
		})
	}
}

// checkParts matches got against want: one entry per message, in order,
// each a part of its message.
func checkParts(t *testing.T, kind string, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%ss %q, want %d", kind, got, len(want))
		return
	}
	for i, w := range want {
		if !strings.Contains(got[i], w) {
			t.Errorf("%s %q, want it to contain %q", kind, got[i], w)
		}
	}
}

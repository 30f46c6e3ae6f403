package sshd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"strings"
	"time"
)

// DefaultConfig is the main config file sshd reads when not given -f.
const DefaultConfig = "/etc/ssh/sshd_config"

// configDir is where sshd resolves a relative Include: OpenSSH compiles in
// SSHDIR and uses it whatever -f says, not the including file's directory.
const configDir = "/etc/ssh"

// runTimeout bounds every sshd invocation; sshd -T and -t take milliseconds.
const runTimeout = 10 * time.Second

// Server names an sshd binary and its main config file. The zero value is
// the system's sshd: from PATH (or /usr/sbin/sshd) reading DefaultConfig.
type Server struct {
	Binary string // empty: sshd in PATH, else /usr/sbin/sshd
	Config string // empty: DefaultConfig
}

// BinaryPath is the sshd program this Server runs.
func (s Server) BinaryPath() string {
	if s.Binary != "" {
		return s.Binary
	}
	if p, err := exec.LookPath("sshd"); err == nil {
		return p
	}
	return fallbackPath
}

// ConfigPath is the main config file this Server reads.
func (s Server) ConfigPath() string {
	if s.Config != "" {
		return s.Config
	}
	return DefaultConfig
}

// Effective runs `sshd -T` and returns the configuration sshd would use:
// defaults, Include files and, when conn is set ("user=alice,host=h,
// addr=192.0.2.1", passed as -C), the Match blocks that connection hits.
func (s Server) Effective(ctx context.Context, conn string) (*Effective, error) {
	args := []string{"-T", "-f", s.ConfigPath()}
	if conn != "" {
		args = append(args, "-C", conn)
	}
	out, err := runSSHD(ctx, s.BinaryPath(), args...)
	if err != nil {
		return nil, err
	}
	e := ParseEffective(out)
	if len(e.settings) == 0 {
		return nil, fmt.Errorf("%s -T printed no settings", s.BinaryPath())
	}
	return e, nil
}

// Check runs `sshd -t -f config`, sshd's own test of a config file. The
// error carries every line sshd printed, which name file, line and cause.
func (s Server) Check(ctx context.Context, config string) error {
	_, err := runSSHD(ctx, s.BinaryPath(), "-t", "-f", config)
	return err
}

// Version returns sshd's version ("OpenSSH_9.2"), or "" if it cannot say.
// sshd -V exists from OpenSSH 9.2; older ones reject the flag but print the
// version in their usage text, so both outputs are searched.
func (s Server) Version(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, runTimeout)
	defer cancel()
	out, _ := exec.CommandContext(ctx, s.BinaryPath(), "-V").CombinedOutput()
	for line := range strings.Lines(string(out)) {
		if i := strings.Index(line, "OpenSSH_"); i >= 0 {
			v, _, _ := strings.Cut(line[i:], ",")
			return strings.TrimSpace(strings.Fields(v + " ")[0])
		}
	}
	return ""
}

// runSSHD runs sshd and returns its stdout. A failure's error holds what
// sshd wrote to stderr: its messages are what the admin needs.
func runSSHD(ctx context.Context, bin string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	name := bin + " " + strings.Join(args, " ")
	if err := cmd.Run(); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("sshd not found at %s (install openssh-server, or name it with --sshd): %w", bin, err)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w", name, ctx.Err())
		}
		if msg := oneLine(stderr.Bytes()); msg != "" {
			return nil, fmt.Errorf("%s: %w: %s", name, err, msg)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return stdout.Bytes(), nil
}

// oneLine joins sshd's stderr lines with "; ", dropping the banner lines
// of its unprotected-key warning, which say nothing on their own.
func oneLine(b []byte) string {
	var parts []string
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.Trim(line, "@") == "" {
			continue
		}
		parts = append(parts, line)
	}
	return strings.Join(parts, "; ")
}

// Setting is one line of `sshd -T` output: a lower-case keyword and the
// rest of the line.
type Setting struct {
	Key   string
	Value string
}

// Effective is sshd's effective configuration as `sshd -T` prints it.
// Keywords are lower case; some (hostkey, port, listenaddress, acceptenv,
// subsystem) appear once per value.
type Effective struct {
	settings []Setting
	index    map[string][]string
}

// ParseEffective reads `sshd -T` output. It never fails: lines it cannot
// read are skipped, so a newer sshd's extra keywords do no harm.
func ParseEffective(out []byte) *Effective {
	e := &Effective{index: map[string][]string{}}
	for line := range bytes.Lines(out) {
		s := strings.TrimSpace(string(line))
		if s == "" || s[0] == '#' {
			continue
		}
		key, val := s, ""
		if i := strings.IndexAny(s, " \t"); i >= 0 {
			key, val = s[:i], s[i+1:]
		}
		key = strings.ToLower(key)
		val = strings.TrimSpace(val)
		e.settings = append(e.settings, Setting{key, val})
		e.index[key] = append(e.index[key], val)
	}
	return e
}

// Settings returns every line in order.
func (e *Effective) Settings() []Setting { return e.settings }

// Get returns the first value of a keyword (any case), or "" when sshd -T
// did not print it.
func (e *Effective) Get(key string) string {
	if v := e.index[strings.ToLower(key)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Has reports whether sshd -T printed the keyword.
func (e *Effective) Has(key string) bool { return len(e.index[strings.ToLower(key)]) > 0 }

// Values returns every value of a keyword that appears once per value.
func (e *Effective) Values(key string) []string { return e.index[strings.ToLower(key)] }

// List splits a comma-separated value (Ciphers, MACs, ...).
func (e *Effective) List(key string) []string {
	var out []string
	for a := range strings.SplitSeq(e.Get(key), ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// Bool reports whether a yes/no keyword is "yes".
func (e *Effective) Bool(key string) bool { return strings.EqualFold(e.Get(key), "yes") }

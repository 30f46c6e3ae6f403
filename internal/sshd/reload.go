package sshd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// reloadSettle is how long Reload waits before checking that sshd
// survived: a config it cannot read ends it right after the re-exec.
const reloadSettle = 500 * time.Millisecond

// Reload makes the running sshd read its config again and says how.
//
// The system's sshd under systemd is reloaded with `systemctl reload`
// (Debian's ssh.service runs sshd -t before it signals). Any other sshd (a
// private config, or no systemd) gets SIGHUP at the pid in its PidFile,
// after checking that the pid is an sshd: a stale PidFile must not make
// moat signal an unrelated process. On SIGHUP sshd re-executes itself with
// the new config, keeping its pid, and open sessions carry on.
func (s Server) Reload(ctx context.Context) (string, error) {
	if s.ConfigPath() == DefaultConfig && systemdRunning() {
		return reloadSystemd(ctx)
	}
	e, err := s.Effective(ctx, "")
	if err != nil {
		return "", err
	}
	pidFile := e.Get("pidfile")
	if pidFile == "" || pidFile == "none" {
		return "", errors.New("sshd has no PidFile, so moat cannot find it: reload or restart sshd yourself")
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		return "", fmt.Errorf("reading sshd's PidFile (is sshd running?): %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 1 {
		return "", fmt.Errorf("sshd's PidFile %s holds %q, not a pid: reload sshd yourself", pidFile, strings.TrimSpace(string(data)))
	}
	if !isSSHD(pid) {
		return "", fmt.Errorf("sshd's PidFile %s names pid %d, which is not a running sshd (a stale file?): reload sshd yourself", pidFile, pid)
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return "", fmt.Errorf("signalling sshd (pid %d): %w", pid, err)
	}
	select {
	case <-time.After(reloadSettle):
	case <-ctx.Done():
		return "", ctx.Err()
	}
	if !isSSHD(pid) {
		return "", fmt.Errorf("sshd (pid %d) exited after SIGHUP: it rejects its config; open sessions survive, but start sshd again now (check it with %s -t -f %s)", pid, s.BinaryPath(), s.ConfigPath())
	}
	return fmt.Sprintf("sent SIGHUP to sshd (pid %d, from %s)", pid, pidFile), nil
}

// systemdRunning is sd_booted(3): systemd is PID 1.
func systemdRunning() bool {
	fi, err := os.Stat("/run/systemd/system")
	return err == nil && fi.IsDir()
}

// reloadSystemd reloads the sshd unit that is running: ssh.service on
// Debian and Ubuntu, sshd.service elsewhere.
func reloadSystemd(ctx context.Context) (string, error) {
	for _, unit := range []string{"ssh.service", "sshd.service"} {
		if exec.CommandContext(ctx, "systemctl", "is-active", "--quiet", unit).Run() != nil {
			continue
		}
		out, err := exec.CommandContext(ctx, "systemctl", "reload", unit).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("systemctl reload %s: %w: %s", unit, err, strings.TrimSpace(string(out)))
		}
		return "reloaded with systemctl reload " + unit, nil
	}
	return "no sshd unit is active under systemd, so there was nothing to reload: sshd reads the new config when it starts", nil
}

// isSSHD reports whether pid is a live (not zombie) process running sshd.
func isSSHD(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// "pid (comm) S ...": the state follows the last ')'.
	if i := strings.LastIndexByte(string(stat), ')'); i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' || stat[i+2] == 'X' {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	argv0, _, _ := strings.Cut(string(cmdline), "\x00")
	// "sshd: /usr/sbin/sshd -D [listener] ..." is how sshd retitles itself.
	argv0, _, _ = strings.Cut(argv0, ":")
	return strings.HasPrefix(filepath.Base(strings.Fields(argv0 + " x")[0]), "sshd")
}

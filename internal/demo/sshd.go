package demo

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// startSSHD runs a real OpenSSH server in the server's namespace on the
// public port and the door's, with its own host key, and writes its log
// lines to auth.log with the header rsyslog would add: the file the lab's
// login guard follows.
func (d *demo) startSSHD(ctx context.Context) error {
	dir := filepath.Join(d.lab.dir, "sshd")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	key := filepath.Join(d.lab.dir, "client_key")
	for _, args := range [][]string{
		{"-q", "-t", "ed25519", "-N", "", "-C", "moat-demo-host", "-f", filepath.Join(dir, "host_key")},
		{"-q", "-t", "ed25519", "-N", "", "-C", "moat-demo-client", "-f", key},
	} {
		if out, err := exec.CommandContext(ctx, "ssh-keygen", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ssh-keygen: %w: %s", err, out)
		}
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`# The lab's sshd: written by moat demo.
Port %d
Port %d
ListenAddress %s
HostKey %[4]s/host_key
PidFile %[4]s/sshd.pid
AuthorizedKeysFile %[4]s/authorized_keys
StrictModes no
PermitRootLogin yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
UsePAM no
MaxAuthTries 6
LogLevel INFO
`, doorSSH, publicSSH, server, dir)
	if err := os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(cfg), 0o600); err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(d.lab.dir, "auth.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	sshd, err := exec.LookPath("sshd")
	if err != nil {
		return err
	}
	cmd := d.lab.cmd(context.WithoutCancel(ctx), "srv", sshd, "-D", "-e", "-f", filepath.Join(dir, "sshd_config"))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		logf.Close()
		return err
	}
	if err := d.lab.start(cmd); err != nil {
		logf.Close()
		return err
	}
	pid := cmd.Process.Pid
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		syslogLines(stderr, logf, pid)
		logf.Close()
		_ = cmd.Wait()
	}()
	// Listening once a connection from the server's own namespace is
	// accepted (moat lets loopback and its own address through).
	if !eventually(ctx, 5*time.Second, func() bool { return d.reach(ctx, "srv", netip.Addr{}, publicSSH, time.Second) }) {
		select {
		case <-exited:
			b, _ := os.ReadFile(filepath.Join(d.lab.dir, "auth.log"))
			return fmt.Errorf("sshd exited: %s", b)
		default:
			return fmt.Errorf("sshd does not listen on tcp/%d", publicSSH)
		}
	}
	d.pr.f("  sshd    OpenSSH running on the server (pid %d)\n", pid)
	return nil
}

// syslogLines gives sshd's bare stderr lines the header rsyslog adds.
func syslogLines(r io.Reader, w io.Writer, pid int) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		fmt.Fprintf(w, "%s moat-demo sshd[%s]: %s\n", time.Now().Format(time.Stamp), strconv.Itoa(pid), line)
	}
}

// ssh runs the real OpenSSH client from src in role's namespace to the
// server's port as user, with the key (or, without one, a wrong
// password), running command; it says whether the login worked. Nothing
// of the user's own ssh setup is read: no config file, agent or known
// hosts.
func (d *demo) ssh(ctx context.Context, role string, src netip.Addr, user string, port int, key, command string, out ...*string) bool {
	askpass := filepath.Join(d.lab.dir, "askpass")
	if _, err := os.Stat(askpass); err != nil {
		_ = os.WriteFile(askpass, []byte("#!/bin/sh\necho wrong-password-123\n"), 0o700)
	}
	args := []string{"ssh", "-F", "/dev/null", "-b", src.String(), "-p", strconv.Itoa(port), "-l", user,
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "IdentityAgent=none", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=3", "-o", "LogLevel=ERROR",
		// A ban mid-login drops the connection's packets: notice soon.
		"-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=2"}
	if key != "" {
		args = append(args, "-i", key, "-o", "BatchMode=yes", "-o", "PreferredAuthentications=publickey")
	} else {
		args = append(args, "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password", "-o", "NumberOfPasswordPrompts=1")
	}
	args = append(args, server.String(), command)
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	cmd := d.lab.cmd(ctx, role, args...)
	cmd.Env = append(os.Environ(), "SSH_ASKPASS="+askpass, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=:0", "SSH_AUTH_SOCK=")
	b, err := cmd.Output()
	if len(out) > 0 {
		*out[0] = string(b)
	}
	return err == nil
}

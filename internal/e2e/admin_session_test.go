package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/netnstest"
)

// The review's H2: the admin's logged-in session was protected only until
// the next SIGHUP, `moat firewall apply` or restart; then 15 forged SYNs
// banned the admin and cut the session. Here the admin logs in before moat
// even starts (so no log line moat reads says so), holds `ssh -N` open, and
// forged scans from the admin's address after each of those events ban
// nothing and the session stays up.
func TestAdminSessionSurvivesReloadApplyAndRestart(t *testing.T) {
	h := newHost(t, "open = [\"tcp/22\"]")
	s := startSSHD(t, h)
	h.writeConfig(loginConfig(h, s))
	admin := h.link.B4
	ssh := exec.Command("ssh", "-N", "-b", admin.String(), "-i", s.key, "-l", "root",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
		"-o", "PreferredAuthentications=publickey", "-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=3",
		h.link.A4.String())
	session := h.client.StartCmd(t, ssh)
	netnstest.Eventually(t, 10*time.Second, "the admin's session to log in", func() bool {
		return strings.Contains(readFile(t, s.log), "Accepted publickey for root from "+admin.String())
	})
	h.start()

	port := uint16(3000)
	for _, step := range []string{"start", "SIGHUP", "firewall apply", "restart"} {
		switch step {
		case "SIGHUP":
			if err := h.proc.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
		case "firewall apply":
			h.moat("firewall", "apply")
		case "restart":
			h.restart()
		}
		netnstest.Eventually(t, 10*time.Second, fmt.Sprintf("after %s: the admin's session to be protected", step), func() bool {
			return protectedWhy(h.status(t), admin.String()) == "logged-in SSH session"
		})
		h.client.SpoofSYNs(t, 2000, netnstest.PortScan(admin, h.link.A4, port, 40))
		port += 100
		// A control from an unprotected address shows the scans are seen.
		control := h.link.Host4(100 + int(port)/100)
		h.client.SpoofSYNs(t, 2000, netnstest.PortScan(control, h.link.A4, port, 40))
		netnstest.Eventually(t, 10*time.Second, fmt.Sprintf("after %s: the control scanner to be banned", step), func() bool {
			return hasBan(h.bans(t), control.String(), "scan")
		})
		if hasBan(h.bans(t), admin.String(), "scan") {
			t.Fatalf("after %s: a forged scan banned the admin's address", step)
		}
		if session.Exited() {
			t.Fatalf("after %s: the admin's session was cut:\n%s", step, session.Output())
		}
	}
	// A config that closes sshd's port would cut the session at its next
	// login: apply refuses it (no SSH_CONNECTION here: the session is
	// found in the kernel), and so does a SIGHUP reload.
	h.writeConfig(`open = ["tcp/8022"]`)
	if out, err := h.moatErr("firewall", "apply"); err == nil || !strings.Contains(out, "root's logged-in SSH session (from "+admin.String()) {
		t.Fatalf("apply of a config that closes sshd's port: err=%v\n%s", err, out)
	}
	if err := h.proc.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	netnstest.Eventually(t, 5*time.Second, "the reload to be refused", func() bool {
		return strings.Contains(h.proc.Output(), "reload failed")
	})
	if st := h.status(t); !slices.Contains(st.Open, "tcp/22") {
		t.Fatalf("after a refused reload the open ports are %v", st.Open)
	}
	for i := 0; i < 8; i++ {
		time.Sleep(500 * time.Millisecond)
		if session.Exited() {
			t.Logf("exited after %d ms; bans %+v\n%s", 500*(i+1), h.bans(t), h.moat("status"))
			break
		}
	}
	if session.Exited() {
		t.Fatalf("the admin's session was cut:\n%s", session.Output())
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// Under the shipped unit's capabilities (CAP_NET_ADMIN and CAP_NET_RAW, no
// CAP_SYS_PTRACE) moat cannot see which sshd process holds a connection,
// and an Accepted line from a file cannot be verified. A connection that
// outlives sshd's LoginGraceTime logged in (sshd cuts every one still
// authenticating by then): the admin's becomes protected; a client that
// only holds a TCP connection open never does.
func TestSessionsUnderTheUnitsCapabilities(t *testing.T) {
	netnstest.RequireCommands(t, "setpriv")
	h := newHost(t, "open = [\"tcp/22\"]")
	s := startSSHD(t, h, "LoginGraceTime 3")
	h.writeConfig(loginConfig(h, s))
	// moat asks `sshd -T` for sshd's ports and LoginGraceTime: let it read
	// this sshd's config.
	bin := filepath.Join(h.dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	wrapper := fmt.Sprintf("#!/bin/sh\n# The last -f wins: this sshd's config over the one moat names.\nexec /usr/sbin/sshd \"$@\" -f %s\n", filepath.Join(h.dir, "sshd", "sshd_config"))
	if err := os.WriteFile(filepath.Join(bin, "sshd"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("setpriv", "--bounding-set=-all,+net_admin,+net_raw", moatBin, "--config", h.cfg, "run")
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
	h.startCmd(cmd)

	admin, idle := h.link.B4, h.link.Host4(5)
	h.client.AddAddr(t, h.link.BIf, netip.PrefixFrom(idle, 24))
	session := h.client.StartCmd(t, exec.Command("ssh", "-N", "-b", admin.String(), "-i", s.key, "-l", "root",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
		"-o", "PreferredAuthentications=publickey", "-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=3",
		h.link.A4.String()))
	// The idle client: a TCP connection to sshd that never authenticates.
	var conn net.Conn
	if err := h.client.Do(func() error {
		var err error
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: idle.AsSlice()}, Timeout: 2 * time.Second}
		conn, err = d.Dial("tcp", netip.AddrPortFrom(h.link.A4, 22).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	netnstest.Eventually(t, 20*time.Second, "the admin's session to be protected by its age", func() bool {
		return protectedWhy(h.status(t), admin.String()) == "logged-in SSH session"
	})
	if !strings.Contains(h.proc.Output(), "cannot see which sshd process holds each SSH connection") {
		t.Error("moat did not say it cannot see sshd's processes")
	}
	if why := protectedWhy(h.status(t), idle.String()); why != "" {
		t.Fatalf("a client that never logged in is protected: %q", why)
	}
	h.client.SpoofSYNs(t, 2000, append(netnstest.PortScan(admin, h.link.A4, 3000, 40), netnstest.PortScan(idle, h.link.A4, 4000, 40)...))
	netnstest.Eventually(t, 10*time.Second, "the idle client's forged scan to be banned", func() bool {
		return hasBan(h.bans(t), idle.String(), "scan")
	})
	if hasBan(h.bans(t), admin.String(), "scan") {
		t.Fatal("a forged scan banned the admin")
	}
	time.Sleep(4 * time.Second) // past ssh's ServerAlive timeout
	if session.Exited() {
		t.Fatalf("the admin's session was cut:\n%s", session.Output())
	}
}

package e2e

import (
	"fmt"
	"slices"
	"os"
	"os/exec"
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
			if err := h.proc.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if err := h.proc.Wait(10 * time.Second); err != nil {
				t.Logf("moat stopped: %v", err)
			}
			h.start()
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

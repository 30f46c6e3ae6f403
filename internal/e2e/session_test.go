package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/netnstest"
	"github.com/moat-fw/moat/internal/session"
)

// sshArgs are the ssh client's arguments for a key login from src to the
// server as root.
func (h *host) sshArgs(s *sshServer, src netip.Addr, extra ...string) []string {
	args := []string{"-i", s.key, "-b", src.String(), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5"}
	return append(append(args, extra...), "root@"+h.link.A4.String())
}

// A real sshd: a client logged in with its key and holding ssh -N is a
// logged-in session; clients that only hold a TCP connection, or sit at
// the password prompt with a real user name, are not.
func TestLoggedInSessionsRealSSHD(t *testing.T) {
	h := newHost(t, `open = ["tcp/22"]`)
	s := startSSHD(t, h)
	idle, authenticating := h.link.Host4(3), h.link.Host4(4)
	h.client.AddAddr(t, h.link.BIf, netip.PrefixFrom(idle, 24))
	h.client.AddAddr(t, h.link.BIf, netip.PrefixFrom(authenticating, 24))

	// The admin: logged in, no session channel (sshd's title is "sshd: root").
	h.client.Start(t, "ssh", h.sshArgs(s, h.link.B4, "-N")...)

	// A client that connects and says nothing, not even its version.
	var held net.Conn
	if err := h.client.Do(func() error {
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(idle, 0)), Timeout: 2 * time.Second}
		c, err := d.Dial("tcp", netip.AddrPortFrom(h.link.A4, 22).String())
		held = c
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer held.Close()

	// A client in the middle of password authentication as root: its
	// askpass never answers, so sshd's processes stay at "root [priv]" and
	// "root [net]".
	askpass := filepath.Join(h.dir, "askpass-hang")
	if err := os.WriteFile(askpass, []byte("#!/bin/sh\nexec sleep 60\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ssh", "-b", authenticating.String(), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password", "-o", "LogLevel=ERROR",
		"root@"+h.link.A4.String(), "true")
	cmd.Env = append(os.Environ(), "SSH_ASKPASS="+askpass, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=:0")
	h.client.StartCmd(t, cmd)

	loggedIn := func() ([]session.Session, error) {
		var got []session.Session
		err := h.server.Do(func() error {
			var err error
			got, err = session.Proc{}.LoggedIn([]uint16{22})
			return err
		})
		return got, err
	}
	var got []session.Session
	netnstest.Eventually(t, 10*time.Second, "the key login to show as a session and both others to connect", func() bool {
		var err error
		if got, err = loggedIn(); err != nil {
			t.Fatalf("LoggedIn: %v", err)
		}
		est := h.server.Run(t, "ss", "-Htne", "state", "established", "( sport = :22 )")
		return len(got) > 0 && strings.Contains(est, idle.String()+":") &&
			strings.Contains(holderTitles(est, authenticating), "root [")
	})
	time.Sleep(time.Second) // and stay so: the others had time to be miscounted
	est := h.server.Run(t, "ss", "-Htne", "state", "established", "( sport = :22 )")
	t.Logf("held by: idle client %q; authenticating client %q", holderTitles(est, idle), holderTitles(est, authenticating))
	got, err := loggedIn()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("LoggedIn = %+v, want only the key login from %s\nss:\n%s", got, h.link.B4, h.server.Run(t, "ss", "-Htnp", "state", "established"))
	}
	g := got[0]
	if g.Client.Addr() != h.link.B4 || g.Server != netip.AddrPortFrom(h.link.A4, 22) || !g.LoggedIn || g.Unknown || g.User != "root" {
		t.Fatalf("session = %+v", g)
	}
	title, _ := os.ReadFile("/proc/" + strconv.Itoa(g.PID) + "/cmdline")
	t.Logf("the session's holder: pid %d, title %q", g.PID, strings.TrimRight(string(title), "\x00"))
	if !strings.HasPrefix(string(title), "sshd") {
		t.Fatalf("pid %d is not sshd: %q", g.PID, title)
	}

	// As the shipped systemd unit runs moat: root, but with only
	// CAP_NET_ADMIN and CAP_NET_RAW. sshd's processes are not dumpable,
	// so their fds are hidden: every connection to 22 comes back Unknown,
	// and the error says why, rather than a guess either way.
	netnstest.RequireCommands(t, "setpriv")
	cmd = exec.Command("ip", "netns", "exec", h.server.Name, "setpriv", "--bounding-set=-all,+net_admin,+net_raw",
		os.Args[0], "-test.run=^TestLoggedInHelper$")
	cmd.Env = append(os.Environ(), "MOAT_LOGGED_IN_HELPER=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper without CAP_SYS_PTRACE: %v\n%s", err, out)
	}
	for _, want := range []string{"hidden=true", "unknown " + h.link.B4.String() + ":", "unknown " + idle.String() + ":", "unknown " + authenticating.String() + ":"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("without CAP_SYS_PTRACE, want %q in:\n%s", want, out)
		}
	}
	if strings.Contains("\n"+string(out), "\nlogged-in ") {
		t.Fatalf("without CAP_SYS_PTRACE a session was verified anyway:\n%s", out)
	}
}

// TestLoggedInHelper prints what session.LoggedIn finds; the test above
// runs it with fewer capabilities.
func TestLoggedInHelper(t *testing.T) {
	if os.Getenv("MOAT_LOGGED_IN_HELPER") != "1" {
		t.Skip("run by TestLoggedInSessionsRealSSHD")
	}
	got, err := session.Proc{}.LoggedIn([]uint16{22})
	fmt.Printf("hidden=%v err=%v\n", errors.Is(err, session.ErrOwnersHidden), err)
	for _, s := range got {
		kind := "logged-in"
		if s.Unknown {
			kind = "unknown"
		}
		fmt.Printf("%s %s\n", kind, s.Client)
	}
}

// holderTitles returns the titles of the processes holding the socket that
// ss -e lists for a connection from src, joined by "|".
func holderTitles(ss string, src netip.Addr) string {
	var ino string
	for line := range strings.SplitSeq(ss, "\n") {
		if !strings.Contains(line, " "+src.String()+":") {
			continue
		}
		for f := range strings.FieldsSeq(line) {
			if v, ok := strings.CutPrefix(f, "ino:"); ok {
				ino = v
			}
		}
	}
	if ino == "" {
		return ""
	}
	links, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	var titles []string
	for _, l := range links {
		if target, err := os.Readlink(l); err == nil && target == "socket:["+ino+"]" {
			b, _ := os.ReadFile(filepath.Join(filepath.Dir(filepath.Dir(l)), "cmdline"))
			titles = append(titles, strings.TrimRight(string(b), "\x00"))
		}
	}
	return strings.Join(titles, "|")
}

// The review's H3: inside a real SSH session, a ban of the session's own
// /24 is refused even when SSH_CONNECTION is gone from the environment,
// under sudo (whose env_reset drops it) or removed by hand.
func TestLockoutGuardFindsSessionWithoutEnvironment(t *testing.T) {
	netnstest.RequireCommands(t, "sudo", "ss")
	h := newHost(t, `open = ["tcp/22"]`)
	s := startSSHD(t, h)
	h.writeConfig(`open = ["tcp/22"]`)
	h.start() // in the server namespace, with sshd

	remote := func(command string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		args := append([]string{"netns", "exec", h.client.Name, "ssh"}, h.sshArgs(s, h.link.B4)...)
		out, err := exec.CommandContext(ctx, "ip", append(args, command)...).CombinedOutput()
		return string(out), err
	}
	// The premise: sshd sets SSH_CONNECTION, and sudo's default env_reset
	// removes it.
	if out, err := remote("env"); err != nil || !strings.Contains(out, "SSH_CONNECTION="+h.link.B4.String()+" ") {
		t.Fatalf("no SSH_CONNECTION in the session: %v\n%s", err, out)
	}
	if out, err := remote("sudo -n env"); err != nil || strings.Contains(out, "SSH_CONNECTION") {
		t.Fatalf("sudo kept SSH_CONNECTION, or failed (err=%v): the test proves nothing\n%s", err, out)
	}

	moat := fmt.Sprintf("%s --config %s ban add %s --for 1m", moatBin, h.cfg, h.link.Prefix4)
	for _, tc := range []struct{ name, command string }{
		{"env -u", "env -u SSH_CONNECTION " + moat},              // parent: sshd, found through its socket
		{"sudo", "sudo -n " + moat},                              // sudo's own environ still has it
		{"env -u sudo", "env -u SSH_CONNECTION sudo -n " + moat}, // sudo's lacks it too: sshd's socket
		{"env -i", "env -i /bin/sh -c '" + moat + "; exit $?'"},  // a shell with an empty environment
	} {
		out, err := remote(tc.command)
		if err == nil || !strings.Contains(out, "the source of your SSH session") || !strings.Contains(out, h.link.B4.String()) {
			t.Errorf("%s: ban of the session's own /24 inside the session: err=%v\n%s", tc.name, err, out)
		}
	}
	h.expect(h.link.B4, 22, netnstest.Connected) // sshd, still reachable: nothing was banned
	if hasBan(h.bans(t), h.link.Prefix4.String(), "manual") {
		t.Fatal("the session's /24 was banned")
	}
}

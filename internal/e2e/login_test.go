package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/daemon"
	"github.com/moat-fw/moat/internal/netnstest"
)

// sshServer is a real OpenSSH server in the server namespace whose log lines
// are written to a file in syslog format, as rsyslog would write them.
type sshServer struct {
	log     string // the auth.log moat follows
	key     string // the client's private key, authorized for root
	mu      sync.Mutex
	logFile *os.File
	// onLine, if set, hears each line as it is written (timing tests).
	onLine func(line string, at time.Time)
}

// startSSHD runs sshd with its stderr written to s.log; extra lines
// override the config's (sshd takes the first value of a keyword).
func startSSHD(t *testing.T, h *host, extra ...string) *sshServer {
	t.Helper()
	s, dir := sshdFiles(t, h, extra...)
	var err error
	s.logFile, err = os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.logFile.Close()
		if t.Failed() {
			b, _ := os.ReadFile(s.log)
			t.Logf("sshd's log %s:\n%s", s.log, b)
		}
	})
	cmd := exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", filepath.Join(dir, "sshd_config"))
	w := &syslogWriter{s: s}
	cmd.Stderr = w
	p := h.server.StartCmd(t, cmd)
	w.mu.Lock()
	w.pid = p.Pid()
	w.mu.Unlock()
	waitSSHD(t, h)
	return s
}

func waitSSHD(t *testing.T, h *host) {
	t.Helper()
	netnstest.Eventually(t, 5*time.Second, "sshd to listen", func() bool {
		return h.client.DialTCP(t, netip.Addr{}, netip.AddrPortFrom(h.link.A4, 22), time.Second) == netnstest.Connected
	})
}

// sshdFiles writes sshd's keys and config under h.dir/sshd.
func sshdFiles(t *testing.T, h *host, extra ...string) (*sshServer, string) {
	t.Helper()
	netnstest.RequireCommands(t, "sshd", "ssh", "ssh-keygen")
	dir := filepath.Join(h.dir, "sshd")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	s := &sshServer{log: filepath.Join(h.dir, "auth.log"), key: filepath.Join(dir, "client_key")}
	for _, args := range [][]string{
		{"-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, "host_key")},
		{"-q", "-t", "ed25519", "-N", "", "-f", s.key},
	} {
		if out, err := exec.Command("ssh-keygen", args...).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v\n%s", err, out)
		}
	}
	pub, err := os.ReadFile(s.key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := strings.Join(append(extra, ""), "\n") + fmt.Sprintf(`Port 22
HostKey %[1]s/host_key
PidFile %[1]s/sshd.pid
AuthorizedKeysFile %[1]s/authorized_keys
StrictModes no
PermitRootLogin yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
UsePAM no
MaxAuthTries 6
LogLevel INFO
`, dir)
	if err := os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return s, dir
}

// rotate renames the log away and starts a new one, as logrotate does.
func (s *sshServer) rotate(t *testing.T) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.Rename(s.log, s.log+".1"); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	s.logFile.Close()
	s.logFile = f
}

// sshTry runs the real ssh client from the client namespace, from src, with
// one wrong password (or the key when key is true). It reports whether the
// login succeeded.
func (h *host) sshTry(t *testing.T, s *sshServer, src netip.Addr, user string, key bool) bool {
	t.Helper()
	dst := h.link.A4
	if src.Is6() {
		dst = h.link.A6
	}
	askpass := filepath.Join(h.dir, "askpass")
	if _, err := os.Stat(askpass); err != nil {
		os.WriteFile(askpass, []byte("#!/bin/sh\necho wrong-password\n"), 0o700)
	}
	args := []string{"netns", "exec", h.client.Name, "ssh", "-b", src.String(), "-l", user,
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=2",
		"-o", "LogLevel=ERROR", "-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=2"}
	if key {
		args = append(args, "-i", s.key, "-o", "BatchMode=yes", "-o", "PreferredAuthentications=publickey")
	} else {
		args = append(args, "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password",
			"-o", "NumberOfPasswordPrompts=1")
	}
	args = append(args, dst.String(), "true")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Env = append(os.Environ(), "SSH_ASKPASS="+askpass, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=:0")
	cmd.Stdin = nil
	return cmd.Run() == nil
}

func (h *host) bans(t *testing.T) []daemon.EntryJSON {
	t.Helper()
	var list []daemon.EntryJSON
	if err := json.Unmarshal([]byte(h.moat("ban", "list", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	return list
}

func hasBan(list []daemon.EntryJSON, addr, origin string) bool {
	for _, e := range list {
		if e.Addr == addr && e.Origin == origin {
			return true
		}
	}
	return false
}

func loginConfig(h *host, s *sshServer) string {
	return fmt.Sprintf("open = [\"tcp/22\"]\n\n[login]\nsources = [%q]\nmax_retry = 3\nfind_time = \"1m\"\nban_time = \"1h\"\n", s.log)
}

func TestLoginGuardBansRealSSHD(t *testing.T) {
	h := newHost(t, "open = [\"tcp/22\"]")
	s := startSSHD(t, h)
	h.writeConfig(loginConfig(h, s))
	second4 := h.link.Host4(3)
	h.client.AddAddr(t, h.link.BIf, netip.PrefixFrom(second4, 24))
	h.start()

	for _, src := range []netip.Addr{h.link.B4, h.link.B6} {
		for i := range 3 {
			if h.sshTry(t, s, src, "root", false) {
				t.Fatalf("a wrong password logged in (try %d)", i)
			}
		}
		netnstest.Eventually(t, 5*time.Second, "the login guard to ban "+src.String(), func() bool {
			return hasBan(h.bans(t), src.String(), "login")
		})
		h.expect(src, 22, netnstest.TimedOut)
	}
	// Another address logs in with its key, unaffected.
	if !h.sshTry(t, s, second4, "root", true) {
		t.Fatal("a key login from an address that never failed was refused")
	}
	var st daemon.Status
	if err := json.Unmarshal([]byte(h.moat("status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Login == nil || st.Login.Banned != 2 || len(st.Login.TopUsers) == 0 || st.Login.TopUsers[0].User != "root" {
		t.Fatalf("status login: %+v", st.Login)
	}
	// fail2ban-client status sshd's counterpart, and the users each
	// address tried.
	if st.Report == nil || len(st.Report.Jails) == 0 || st.Report.Jails[0].Name != "sshd" || st.Report.Jails[0].Banned != 2 {
		t.Fatalf("status jails: %+v", st.Report)
	}
	if out := h.moat("status", h.link.B4.String()); !strings.Contains(out, `users:     "root" `) {
		t.Fatalf("status %s:\n%s", h.link.B4, out)
	}
}

// A user name carrying an address never bans that address.
func TestLoginGuardIgnoresInjectedAddresses(t *testing.T) {
	h := newHost(t, "open = [\"tcp/22\"]")
	s := startSSHD(t, h)
	h.writeConfig(loginConfig(h, s))
	victim := h.link.Host4(99) // nobody uses it; it must never be banned
	h.start()
	for _, user := range []string{
		"x from " + victim.String() + " port 22 ssh2",
		"root from " + victim.String() + " port 4242",
		victim.String(),
	} {
		h.sshTry(t, s, h.link.B4, user, false)
	}
	netnstest.Eventually(t, 5*time.Second, "the real source to be banned", func() bool {
		return hasBan(h.bans(t), h.link.B4.String(), "login")
	})
	for _, e := range h.bans(t) {
		if e.Addr == victim.String() {
			t.Fatalf("the injected address %s was banned: %+v", victim, e)
		}
	}
	out, err := h.moatErr("explain", "--json", s.log)
	if err != nil || strings.Contains(out, `"ip":"`+victim.String()+`"`) || !strings.Contains(out, `"ip":"`+h.link.B4.String()+`"`) {
		t.Fatalf("explain on the real log: %v\n%s", err, out)
	}
}

// Rotation in the middle of an attack loses no failure line, and a restart
// of moat neither double-counts nor misses lines.
func TestLoginGuardAcrossRotationAndRestart(t *testing.T) {
	h := newHost(t, "open = [\"tcp/22\"]")
	s := startSSHD(t, h)
	h.writeConfig(loginConfig(h, s))
	h.start()
	h.sshTry(t, s, h.link.B4, "root", false)
	h.sshTry(t, s, h.link.B4, "root", false)
	s.rotate(t)
	h.sshTry(t, s, h.link.B4, "root", false)
	netnstest.Eventually(t, 5*time.Second, "a ban counting lines from both sides of the rotation", func() bool {
		return hasBan(h.bans(t), h.link.B4.String(), "login")
	})
	h.moat("ban", "del", h.link.B4.String())

	// Two failures, a restart, one more: the third must ban, once.
	second := h.link.B6
	h.sshTry(t, s, second, "root", false)
	h.sshTry(t, s, second, "root", false)
	time.Sleep(1500 * time.Millisecond) // let the position be saved
	h.proc.Signal(os.Interrupt)
	if err := h.proc.Wait(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	h.start()
	if hasBan(h.bans(t), second.String(), "login") {
		t.Fatal("the restart re-counted the lines it had read: banned after two failures")
	}
	h.sshTry(t, s, second, "root", false)
	netnstest.Eventually(t, 5*time.Second, "the third failure across the restart to ban", func() bool {
		return hasBan(h.bans(t), second.String(), "login")
	})
}

// syslogWriter gives sshd's bare stderr messages the header rsyslog adds.
type syslogWriter struct {
	s   *sshServer
	mu  sync.Mutex
	pid int
	buf []byte
}

func (w *syslogWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, b...)
	for {
		i := strings.IndexByte(string(w.buf), '\n')
		if i < 0 {
			return len(b), nil
		}
		line := fmt.Sprintf("%s moat-test sshd[%d]: %s\n", time.Now().Format(time.Stamp), w.pid, strings.TrimRight(string(w.buf[:i]), "\r"))
		w.buf = w.buf[i+1:]
		w.s.mu.Lock()
		w.s.logFile.WriteString(line)
		if w.s.onLine != nil {
			w.s.onLine(line, time.Now())
		}
		w.s.mu.Unlock()
	}
}

// A [[login.rule]] bans from another service's log, and ipv6_prefix_after
// widens repeat IPv6 offenders to their /64.
func TestLoginRuleAndIPv6Prefix(t *testing.T) {
	h := newHost(t, fmt.Sprintf("open = [\"tcp/%d\"]", openPort))
	logPath := filepath.Join(h.dir, "myapp.log")
	if err := os.WriteFile(logPath, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	h.writeConfig(fmt.Sprintf(`open = ["tcp/%d"]

[login]
sources = []
ipv6_prefix_after = 2

[[login.rule]]
name = "myapp"
source = %q
pattern = '^\w{3} +\d+ [\d:]+ \S+ myapp\[\d+\]: auth failure for \S+ from <HOST>$'
max_retry = 1
`, openPort, logPath))
	h.start()
	f, err := os.OpenFile(logPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	stamp := time.Now().Format(time.Stamp)
	// The link's own /64 holds the host's address: the review's M9 banned
	// it whole (and an admin's session in it). It is never escalated.
	a, b := h.link.Host6(0xa), h.link.Host6(0xb)
	// The first line is forged inside the user field: it must not count.
	fmt.Fprintf(f, "%s web myapp[7]: auth failure for x from %s from %s\n", stamp, h.link.B6, a)
	fmt.Fprintf(f, "%s web myapp[7]: auth failure for bob from %s\n", stamp, a)
	fmt.Fprintf(f, "%s web myapp[7]: auth failure for bob from %s\n", stamp, b)
	netnstest.Eventually(t, 5*time.Second, "the two addresses' bans", func() bool {
		l := h.bans(t)
		return hasBan(l, a.String(), "login") && hasBan(l, b.String(), "login")
	})
	// A second /64 behind the client, off the host's own.
	o := h.link.Prefix6.Addr().As16()
	o[7] |= 1
	other := netip.PrefixFrom(netip.AddrFrom16(o), 64)
	c := other.Addr().Next()
	h.client.AddAddr(t, h.link.BIf, netip.PrefixFrom(c, 64))
	h.server.IP(t, "-6", "route", "add", other.String(), "via", h.link.B6.String())
	h.expect(c, openPort, netnstest.Connected)
	x, y := netip.AddrFrom16(with(o, 15, 0xa)), netip.AddrFrom16(with(o, 15, 0xb))
	fmt.Fprintf(f, "%s web myapp[7]: auth failure for bob from %s\n", stamp, x)
	fmt.Fprintf(f, "%s web myapp[7]: auth failure for bob from %s\n", stamp, y)
	netnstest.Eventually(t, 5*time.Second, "the /64 ban", func() bool {
		return hasBan(h.bans(t), other.String(), "login")
	})
	if hasBan(h.bans(t), h.link.Prefix6.String(), "login") {
		t.Fatal("the host's own /64 was banned")
	}
	// The client's address in that /64 never failed, but its /64 is banned now.
	h.expect(c, openPort, netnstest.TimedOut)
	h.expect(h.link.B6, openPort, netnstest.Connected)
	h.expect(h.link.B4, openPort, netnstest.Connected)
}

func with(b [16]byte, i int, v byte) [16]byte { b[i] = v; return b }

// An address that holds a logged-in SSH session is never banned: failures
// from a second window (or a colleague behind the same NAT) must not cut
// off the session already in. Once that session ends, it is fair game.
func TestLoginGuardSparesOpenSessions(t *testing.T) {
	h := newHost(t, "open = [\"tcp/22\"]")
	s := startSSHD(t, h)
	h.writeConfig(loginConfig(h, s))
	h.start()
	sess := h.client.Start(t, "ssh", "-i", s.key, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-b", h.link.B4.String(), "root@"+h.link.A4.String(), "sleep 60")
	netnstest.Eventually(t, 5*time.Second, "the session to log in", func() bool {
		b, _ := os.ReadFile(s.log)
		return strings.Contains(string(b), "Accepted publickey for root from "+h.link.B4.String())
	})
	time.Sleep(500 * time.Millisecond)
	for range 3 {
		h.sshTry(t, s, h.link.B4, "root", false)
	}
	time.Sleep(1500 * time.Millisecond)
	if hasBan(h.bans(t), h.link.B4.String(), "login") {
		t.Fatal("banned the address of an open, logged-in session")
	}
	sess.Kill9()
	_ = sess.Wait(5 * time.Second)
	time.Sleep(3 * time.Second) // the session's connection is seen gone
	for range 3 {
		h.sshTry(t, s, h.link.B4, "root", false)
	}
	netnstest.Eventually(t, 5*time.Second, "a ban once the session ended", func() bool {
		return hasBan(h.bans(t), h.link.B4.String(), "login")
	})
}

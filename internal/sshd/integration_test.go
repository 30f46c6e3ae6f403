package sshd_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/netnstest"
	"github.com/moat-fw/moat/internal/sshd"
)

// TestHardenRealSSHD runs a real OpenSSH server with a deliberately weak
// private config in a network namespace, runs `moat sshd audit` and `moat
// sshd harden --write --reload` on it as an admin would (through sudo:
// SUDO_USER), and logs in from a second namespace: a key still gets in, a
// password is no longer even offered, and the audit passes --fail-on high.
//
// The login account is a throwaway system user (useradd, deleted at the
// end) with a key and a password, so password logins are proven to work
// before harden and to be refused after. The password is typed by an
// SSH_ASKPASS script (OpenSSH 8.4+ with SSH_ASKPASS_REQUIRE=force), since
// sshpass is not installed.
func TestHardenRealSSHD(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommands(t, "sshd", "ssh", "ssh-keygen", "useradd", "userdel", "chpasswd")
	sshdBin, err := exec.LookPath("sshd")
	if err != nil {
		sshdBin = "/usr/sbin/sshd"
	}
	ctx := context.Background()
	privsepDir(t)

	server, client := netnstest.New(t), netnstest.New(t)
	link := netnstest.Connect(t, server, client)
	addr := netip.AddrPortFrom(link.A4, 2222)

	// Not t.TempDir: sshd reads authorized_keys as the user, who must be
	// able to walk into its home below this directory.
	dir, err := os.MkdirTemp("", "moat-sshd-it-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	user, password := throwawayUser(t, filepath.Join(dir, "home"))
	clientKey := filepath.Join(dir, "client_key")
	keygen(t, "ed25519", clientKey)
	authorize(t, user, filepath.Join(dir, "home"), clientKey+".pub")
	askpass := filepath.Join(dir, "askpass")
	if err := os.WriteFile(askpass, []byte("#!/bin/sh\necho '"+password+"'\n"), 0o700); err != nil {
		t.Fatal(err)
	}

	hostEd, hostECDSA := filepath.Join(dir, "host_ed25519"), filepath.Join(dir, "host_ecdsa")
	keygen(t, "ed25519", hostEd)
	keygen(t, "ecdsa", hostECDSA)
	if err := os.Chmod(hostECDSA, 0o640); err != nil { // the weakness: group-readable
		t.Fatal(err)
	}
	dropDir := filepath.Join(dir, "sshd_config.d")
	if err := os.Mkdir(dropDir, 0o755); err != nil {
		t.Fatal(err)
	}
	main := filepath.Join(dir, "sshd_config")
	weak := fmt.Sprintf(`Include %s/*.conf
Port %d
ListenAddress %s
HostKey %s
HostKey %s
PidFile %s
Protocol 2
PermitRootLogin yes
PermitEmptyPasswords yes
PasswordAuthentication yes
KbdInteractiveAuthentication yes
UsePAM yes
X11Forwarding yes
PermitTunnel yes
GatewayPorts yes
PermitUserEnvironment yes
MaxStartups 100:30:1000
LogLevel ERROR
KexAlgorithms diffie-hellman-group1-sha1,diffie-hellman-group14-sha1,curve25519-sha256
Ciphers 3des-cbc,aes256-ctr,chacha20-poly1305@openssh.com
MACs hmac-md5,hmac-sha1,hmac-sha2-256-etm@openssh.com
HostKeyAlgorithms ssh-rsa,ssh-dss,ssh-ed25519,ecdsa-sha2-nistp256
`, dropDir, addr.Port(), addr.Addr(), hostEd, hostECDSA, filepath.Join(dir, "sshd.pid"))
	if err := os.WriteFile(main, []byte(weak), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := sshd.Server{Binary: sshdBin, Config: main}
	t.Setenv("SUDO_USER", user) // the admin who runs moat through sudo: the one with the key

	proc := server.Start(t, sshdBin, "-D", "-e", "-f", main)
	netnstest.Eventually(t, 5*time.Second, "sshd to listen on "+addr.String(), func() bool {
		if proc.Exited() {
			t.Fatalf("sshd exited:\n%s", proc.Output())
		}
		return client.DialTCP(t, netip.Addr{}, addr, time.Second) == netnstest.Connected
	})

	// The audit names every weakness with its severity, and fails the gate.
	code, got := audit(t, sshdBin, main)
	if code != 3 {
		t.Errorf("audit of the weak config exits %d, want 3", code)
	}
	for id, want := range map[string]sshd.Severity{
		"permit-empty-passwords":         sshd.Critical,
		"permit-root-login":              sshd.High,
		"host-key-permissions":           sshd.High,
		"kexalgorithms-broken":           sshd.High,
		"ciphers-broken":                 sshd.High,
		"macs-broken":                    sshd.High,
		"hostkeyalgorithms-broken":       sshd.High,
		"password-authentication":        sshd.Medium, // the user has a key
		"kbd-interactive-authentication": sshd.Medium,
		"gateway-ports":                  sshd.Medium,
		"permit-user-environment":        sshd.Medium,
		"log-level":                      sshd.Medium,
		"max-startups":                   sshd.Low,
		"x11-forwarding":                 sshd.Low,
		"permit-tunnel":                  sshd.Low,
		"protocol":                       sshd.Info,
		"port":                           sshd.Info,
	} {
		if f, ok := got[id]; !ok || f.Severity != want {
			t.Errorf("before harden: %s = %v (present %v), want %v", id, f.Severity, ok, want)
		}
	}

	// Both ways in work before.
	ssh := sshClient{ns: client, addr: addr, user: user, askpass: askpass}
	if out, err := ssh.login("-i", clientKey, "-o", "PreferredAuthentications=publickey", "-o", "BatchMode=yes"); err != nil {
		t.Fatalf("key login before harden: %v\n%s", err, out)
	}
	if out, err := ssh.login("-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no", "-o", "NumberOfPasswordPrompts=1"); err != nil {
		t.Fatalf("password login before harden: %v\n%s", err, out)
	}

	// harden --write --reload, as the admin runs it.
	pid := proc.Pid()
	code, out, errs := run(t, "sshd", "harden", "--sshd", sshdBin, "--sshd-config", main, "--write", "--reload")
	target := filepath.Join(dropDir, sshd.DropInName)
	if code != 0 || !strings.Contains(out, "wrote "+target) || !strings.Contains(out, fmt.Sprintf("sent SIGHUP to sshd (pid %d", pid)) ||
		!strings.Contains(out, "host key: ran chmod 600 "+hostECDSA) || errs != "" {
		t.Fatalf("harden --write --reload: %d\n%s\n%s\n%s", code, out, errs, proc.Output())
	}
	if err := srv.Check(ctx, main); err != nil {
		t.Fatalf("sshd -t after harden: %v", err)
	}
	if fi, err := os.Stat(hostECDSA); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("host key mode after harden: %v %v", fi.Mode(), err)
	}

	// sshd re-executes itself on SIGHUP: wait until it offers only keys.
	var methods string
	netnstest.Eventually(t, 5*time.Second, "sshd to stop offering passwords", func() bool {
		out, _ := ssh.login("-v", "-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no", "-o", "BatchMode=yes")
		methods = offeredMethods(out)
		return methods == "publickey"
	})
	if proc.Exited() {
		t.Fatalf("sshd exited after the reload:\n%s", proc.Output())
	}
	if out, err := ssh.login("-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no", "-o", "NumberOfPasswordPrompts=1"); err == nil || !strings.Contains(out, "Permission denied (publickey)") {
		t.Errorf("password login after harden: err %v, want Permission denied (publickey)\n%s", err, out)
	}
	if out, err := ssh.login("-i", clientKey, "-o", "PreferredAuthentications=publickey", "-o", "BatchMode=yes"); err != nil {
		t.Fatalf("key login after harden: %v\n%s", err, out)
	}

	// The audit comes back clean of high findings.
	code, got = audit(t, sshdBin, main)
	for _, f := range got {
		if f.Severity >= sshd.High {
			t.Errorf("after harden: %s %s = %q (%v)", f.ID, f.Key, f.Value, f.Severity)
		}
	}
	if code != 0 {
		t.Errorf("audit after harden exits %d, want 0", code)
	}
}

// audit runs `moat sshd audit --json` and returns its exit code and
// findings by ID.
func audit(t *testing.T, bin, config string) (int, map[string]sshd.Finding) {
	t.Helper()
	code, out, errs := run(t, "sshd", "audit", "--json", "--sshd", bin, "--sshd-config", config)
	var r report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("audit (%d): %v\n%s\n%s", code, err, out, errs)
	}
	m := map[string]sshd.Finding{}
	for _, f := range r.Findings {
		m[f.ID] = f
	}
	return code, m
}

// privsepDir makes sure /run/sshd exists: sshd -D refuses to start
// without its privilege separation directory, which Debian creates only
// when the ssh service starts.
func privsepDir(t *testing.T) {
	t.Helper()
	const dir = "/run/sshd"
	if _, err := os.Stat(dir); err == nil {
		return
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(dir) }) // only if empty, and only ours
}

// throwawayUser creates a system user with a random name, a home and a
// password, and deletes it when the test ends.
func throwawayUser(t *testing.T, home string) (name, password string) {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	name = "moatt" + hex.EncodeToString(b)
	b = make([]byte, 12)
	rand.Read(b)
	password = hex.EncodeToString(b)
	if out, err := exec.Command("useradd", "--no-create-home", "--home-dir", home, "--shell", "/bin/sh", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v\n%s", name, err, out)
		}
	})
	cmd := exec.Command("chpasswd")
	cmd.Stdin = strings.NewReader(name + ":" + password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chpasswd: %v\n%s", err, out)
	}
	return name, password
}

func keygen(t *testing.T, typ, path string) {
	t.Helper()
	if out, err := exec.Command("ssh-keygen", "-q", "-t", typ, "-N", "", "-C", "moat-test", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
}

// authorize installs a public key for the user, with the ownership and
// modes sshd's StrictModes demands.
func authorize(t *testing.T, user, home, pubFile string) {
	t.Helper()
	pub, err := os.ReadFile(pubFile)
	if err != nil {
		t.Fatal(err)
	}
	sshDir := filepath.Join(home, ".ssh")
	for _, d := range []string{home, sshDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	keys := filepath.Join(sshDir, "authorized_keys")
	if err := os.WriteFile(keys, pub, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{home, sshDir, keys} {
		if out, err := exec.Command("chown", user+":", p).CombinedOutput(); err != nil {
			t.Fatalf("chown: %v\n%s", err, out)
		}
	}
}

// sshClient logs in from the client namespace. It never reads the host's
// ssh config or agent; passwords come from the askpass script.
type sshClient struct {
	ns      *netnstest.NS
	addr    netip.AddrPort
	user    string
	askpass string
}

// login runs `ssh OPTS user@addr true` and returns its combined output.
func (c sshClient) login(opts ...string) (string, error) {
	args := []string{"netns", "exec", c.ns.Name, "ssh", "-F", "/dev/null",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "IdentityAgent=none",
		"-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=5", "-p", strconv.Itoa(int(c.addr.Port()))}
	args = append(append(args, opts...), c.user+"@"+c.addr.Addr().String(), "true")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ipTool(), args...)
	cmd.Env = append(os.Environ(), "SSH_ASKPASS="+c.askpass, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// ipTool finds iproute2's ip, which a non-login root shell may lack in PATH.
func ipTool() string {
	if p, err := exec.LookPath("ip"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "ip"
}

// offeredMethods returns the methods in the last "Authentications that can
// continue:" line of ssh -v output.
func offeredMethods(out string) string {
	methods := ""
	for line := range strings.Lines(out) {
		if _, after, ok := strings.Cut(line, "Authentications that can continue: "); ok {
			methods = strings.TrimSpace(after)
		}
	}
	return methods
}

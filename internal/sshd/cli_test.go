package sshd_test

// The CLI's sshd commands, run in-process through cli.Run. They live here
// rather than in internal/cli because the commands are thin wrappers over
// this package and share its testdata.

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat-fw/moat/internal/cli"
	"github.com/moat-fw/moat/internal/sshd"
)

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errw bytes.Buffer
	code := cli.Run(context.Background(), args, &out, &errw)
	return code, out.String(), errw.String()
}

// fakeSSHD writes an sshd that prints a testdata file for -T, records its
// arguments, and accepts everything for -t.
func fakeSSHD(t *testing.T, testdata string) (bin, argsFile string) {
	t.Helper()
	dir := t.TempDir()
	out, err := filepath.Abs(filepath.Join("testdata", testdata))
	if err != nil {
		t.Fatal(err)
	}
	bin, argsFile = filepath.Join(dir, "sshd"), filepath.Join(dir, "args")
	script := "#!/bin/sh\ncase \"$1\" in\n" +
		"-V) echo 'OpenSSH_9.2, OpenSSL 3.0.19 27 Jan 2026' >&2 ;;\n" +
		"-T) echo \"$@\" >> " + argsFile + "; cat " + out + " ;;\n" +
		"-t) exit 0 ;;\n*) echo \"unexpected $*\" >&2; exit 1 ;;\nesac\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, argsFile
}

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

type report struct {
	SSHD struct {
		Version, Binary, Config, Connection string
	}
	Findings []sshd.Finding
	Summary  sshd.Summary
}

func TestCLIAudit(t *testing.T) {
	t.Setenv("SUDO_USER", "moat-test-nobody")
	bin, argsFile := fakeSSHD(t, "weak.txt")
	cfg := writeFile(t, t.TempDir(), "sshd_config", "# weak\nProtocol 2\nPort 22\n")

	code, out, errs := run(t, "sshd", "audit", "--json", "--sshd", bin, "--sshd-config", cfg, "-C", "user=bob,host=h,addr=10.210.0.9")
	if code != 3 {
		t.Fatalf("a critical finding must exit 3 (--fail-on high), got %d\n%s\n%s", code, out, errs)
	}
	var r report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("one JSON document: %v\n%s", err, out)
	}
	if r.SSHD.Version != "OpenSSH_9.2" || r.SSHD.Binary != bin || r.SSHD.Config != cfg || r.SSHD.Connection != "user=bob,host=h,addr=10.210.0.9" {
		t.Errorf("sshd: %+v", r.SSHD)
	}
	if r.Summary.Critical != 1 || !r.Summary.Failed || r.Summary.FailOn != "high" || r.Summary.Total != len(r.Findings) {
		t.Errorf("summary %+v", r.Summary)
	}
	sev := map[string]sshd.Severity{}
	for _, f := range r.Findings {
		sev[f.ID] = f.Severity
	}
	if sev["permit-empty-passwords"] != sshd.Critical || sev["permit-root-login"] != sshd.High || sev["protocol"] != sshd.Info {
		t.Errorf("findings %v", sev)
	}
	if args, _ := os.ReadFile(argsFile); strings.TrimSpace(string(args)) != "-T -f "+cfg+" -C user=bob,host=h,addr=10.210.0.9" {
		t.Errorf("sshd called with %q", args)
	}

	code, out, _ = run(t, "sshd", "audit", "--sshd", bin, "--sshd-config", cfg)
	crit, high := strings.Index(out, "\nCRITICAL\n"), strings.Index(out, "\nHIGH\n")
	if code != 3 || crit < 0 || high < crit || !strings.Contains(out, "  PermitEmptyPasswords yes\n") ||
		!strings.Contains(out, "fix: PermitEmptyPasswords no") || !strings.Contains(out, "FAIL: findings at high or above") {
		t.Errorf("human output (%d):\n%s", code, out)
	}

	strong, _ := fakeSSHD(t, "strong.txt")
	if code, out, errs := run(t, "sshd", "audit", "--sshd", strong, "--sshd-config", cfg, "--fail-on", "low"); code != 0 || !strings.Contains(out, "0 critical, 0 high, 0 medium, 0 low") {
		t.Errorf("strong config, --fail-on low: %d\n%s\n%s", code, out, errs)
	}
	if code, _, errs := run(t, "sshd", "audit", "--sshd", bin, "--sshd-config", cfg, "--fail-on", "severe"); code != 1 || !strings.Contains(errs, "--fail-on: severity \"severe\"") {
		t.Errorf("bad --fail-on: %d %q", code, errs)
	}
	if code, _, errs := run(t, "sshd", "audit", "--sshd", filepath.Join(t.TempDir(), "nosshd")); code != 1 || !strings.Contains(errs, "sshd not found at") {
		t.Errorf("missing sshd: %d %q", code, errs)
	}
}

// harden with the real sshd on a private config: the preview changes
// nothing, password logins stay without a known key, --force writes.
func TestCLIHarden(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: sshd -t reads host keys as root (try: sudo go test)")
	}
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("ssh-keygen not installed: apt-get install openssh-client")
	}
	t.Setenv("SUDO_USER", "moat-test-nobody") // no such account, so no key
	dir := t.TempDir()
	drop := filepath.Join(dir, "sshd_config.d")
	os.Mkdir(drop, 0o755)
	key := filepath.Join(dir, "host_key")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	main := writeFile(t, dir, "sshd_config", "Include "+drop+"/*.conf\nHostKey "+key+"\nPidFile "+filepath.Join(dir, "pid")+
		"\nPasswordAuthentication yes\nX11Forwarding yes\nPermitEmptyPasswords yes\n")
	target := filepath.Join(drop, sshd.DropInName)

	code, out, errs := run(t, "sshd", "harden", "--sshd-config", main)
	if code != 0 || !strings.Contains(out, "+++ "+target) || !strings.Contains(out, "+PermitEmptyPasswords no") ||
		strings.Contains(out, "+PasswordAuthentication") || !strings.Contains(out, "would lock you out") || !strings.Contains(out, "preview only") {
		t.Fatalf("preview (%d):\n%s\n%s", code, out, errs)
	}
	if _, err := os.Stat(target); err == nil {
		t.Fatal("the preview wrote the drop-in")
	}
	if code, _, errs := run(t, "sshd", "harden", "--sshd-config", main, "--reload"); code != 1 || !strings.Contains(errs, "add --write") {
		t.Errorf("--reload alone: %d %q", code, errs)
	}

	code, out, errs = run(t, "sshd", "harden", "--sshd-config", main, "--write", "--force")
	if code != 0 || !strings.Contains(out, "wrote "+target) || !strings.Contains(out, "sshd still runs its old config") {
		t.Fatalf("--write --force (%d):\n%s\n%s", code, out, errs)
	}
	b, _ := os.ReadFile(target)
	if !strings.Contains(string(b), "\nPasswordAuthentication no\n") || !strings.Contains(string(b), "\nPermitEmptyPasswords no\n") {
		t.Errorf("drop-in:\n%s", b)
	}
	if code, out, _ := run(t, "sshd", "harden", "--sshd-config", main, "--force"); code != 0 || !strings.Contains(out, "nothing to change") {
		t.Errorf("second run (%d):\n%s", code, out)
	}
}

func TestCLIConfigCheckWarnsWhenSSHDIsClosed(t *testing.T) {
	dir := t.TempDir()
	// ListenPorts finds sshd through PATH.
	writeFile(t, dir, "sshd", "#!/bin/sh\nprintf 'port 2222\\nlistenaddress 0.0.0.0:2222\\n'\n")
	os.Chmod(filepath.Join(dir, "sshd"), 0o755)
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))

	closed := writeFile(t, dir, "closed.toml", "[firewall]\nopen = [\"tcp/22\"]\n")
	code, out, errs := run(t, "config", "check", closed)
	if code != 0 || !strings.Contains(out, "ok") ||
		!strings.HasPrefix(errs, `warning: sshd listens on tcp/2222, but [firewall] open has neither "ssh" nor "tcp/2222"`) {
		t.Errorf("closed sshd port: %d %q %q", code, out, errs)
	}
	for _, open := range []string{`"ssh"`, `"tcp/2222"`, `"tcp/2000-3000"`} {
		cfg := writeFile(t, dir, "open.toml", "[firewall]\nopen = ["+open+"]\n")
		if code, _, errs := run(t, "config", "check", cfg); code != 0 || errs != "" {
			t.Errorf("open = [%s]: %d %q", open, code, errs)
		}
	}
}

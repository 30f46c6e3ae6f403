package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errw bytes.Buffer
	code := Run(context.Background(), args, &out, &errw)
	return code, out.String(), errw.String()
}

func TestConfigDefaultChecksClean(t *testing.T) {
	dir := t.TempDir()
	code, out, _ := run(t, "config", "default")
	if code != 0 || !strings.Contains(out, "[firewall]") {
		t.Fatalf("config default: %d %q", code, out)
	}
	path := filepath.Join(dir, "moat.toml")
	if err := os.WriteFile(path, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := run(t, "config", "check", path); code != 0 || !strings.Contains(out, "ok") {
		t.Fatalf("config check of the default: %d %q %q", code, out, errs)
	}
}

func TestConfigCheckNamesKeyAndLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(path, []byte("[firewall]\nopen = [\"tcp/22\", \"tcp/70000\"]\n"), 0o600)
	code, _, errs := run(t, "config", "check", path)
	if code == 0 || !strings.Contains(errs, "line 2") || !strings.Contains(errs, "firewall.open[1]") {
		t.Fatalf("want a one-line error naming the key and line, got %d %q", code, errs)
	}
	code, _, errs = run(t, "--config", filepath.Join(t.TempDir(), "missing.toml"), "config", "check")
	if code == 0 || !strings.Contains(errs, "missing.toml") {
		t.Fatalf("an explicit missing config must be an error: %d %q", code, errs)
	}
}

// firewall show works from the config alone: no root, no kernel.
func TestFirewallShowNeedsNoKernel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "moat.toml")
	os.WriteFile(path, []byte("[firewall]\nopen = [\"tcp/443\"]\nclosed_response = \"reject\"\n"), 0o600)
	code, out, errs := run(t, "--config", path, "firewall", "show")
	if code != 0 || !strings.Contains(out, "table inet moat {") || !strings.Contains(out, "tcp dport 443 accept") ||
		!strings.Contains(out, "reject with tcp reset") {
		t.Fatalf("firewall show: %d\n%s\n%s", code, out, errs)
	}
}

func TestBadAddressIsRefusedBeforeTheSocket(t *testing.T) {
	for _, addr := range []string{"10.0.0.300", "10.1.2.3/24", "fe80::1%eth0", "example.com"} {
		code, _, errs := run(t, "--socket", "/nonexistent/moat.sock", "ban", "add", addr)
		if code == 0 || strings.Contains(errs, "not running") || !strings.Contains(errs, addr) {
			t.Errorf("ban add %s: want the address refused with a reason, got %d %q", addr, code, errs)
		}
	}
	code, _, errs := run(t, "--socket", "/nonexistent/moat.sock", "ban", "list")
	if code == 0 || !strings.Contains(errs, "moat is not running") {
		t.Fatalf("no daemon: %d %q", code, errs)
	}
}

func TestExplainJSONAndSummary(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "auth.log")
	lines := "Nov 21 06:29:01 h sshd[1]: Failed password for root from 203.0.113.7 port 5 ssh2\n" +
		"Nov 21 06:29:02 h sshd[1]: Accepted publickey for me from 198.51.100.1 port 6 ssh2: ED25519 SHA256:x\n" +
		"Nov 21 06:29:03 h sshd[1]: Invalid user x from 6.6.6.6 port 22 from 203.0.113.8 port 7\n" +
		"Nov 21 06:29:04 h sshd[1]: Failed password for invalid user admin from 2001:db8::9 port 8 ssh2\n" +
		"Nov 21 06:29:05 h sshd[1]: Did not receive identification string from 203.0.113.9 port 9\n"
	os.WriteFile(log, []byte(lines), 0o600)
	cfg := filepath.Join(dir, "moat.toml")
	os.WriteFile(cfg, []byte("[login]\nmax_retry = 1\n"), 0o600)
	code, out, errs := run(t, "--config", cfg, "explain", "--json", log)
	want := `{"line":1,"rule":"sshd","kind":"failed-password","ip":"203.0.113.7","user":"root","would_ban":true}
{"line":3,"rule":"sshd","kind":"invalid-user","ip":"203.0.113.8","user":"x from 6.6.6.6 port 22","would_ban":true}
{"line":4,"rule":"sshd","kind":"failed-password","ip":"2001:db8::9","user":"admin","would_ban":true}
`
	if code != 0 || out != want {
		t.Fatalf("explain --json: %d %q\n%s\nwant\n%s", code, errs, out, want)
	}
	code, out, _ = run(t, "--config", cfg, "explain", "--mode", "aggressive", log)
	for _, s := range []string{"lines read: 5", "rule sshd (max_retry 1 in 10m0s, mode aggressive)", "lines matched:      4", "banner-error", "would ban: 4"} {
		if code != 0 || !strings.Contains(out, s) {
			t.Fatalf("explain summary lacks %q:\n%s", s, out)
		}
	}
	if strings.Contains(out, "  6.6.6.6") {
		t.Fatalf("an address from the user-controlled part was used:\n%s", out)
	}
}

// explain --kernel-log reads iptables/nftables LOG lines and reports scans,
// as psad -A does.
func TestExplainKernelLog(t *testing.T) {
	var b strings.Builder
	for port := 1; port <= 40; port++ {
		fmt.Fprintf(&b, "Nov 21 06:29:01 h kernel: [1.0] DROP IN=eth0 OUT= MAC=00 SRC=203.0.113.5 DST=192.0.2.1 LEN=40 TOS=0x00 PREC=0x00 TTL=50 ID=1 PROTO=TCP SPT=4000 DPT=%d WINDOW=1024 RES=0x00 URG PSH FIN URGP=0\n", port)
	}
	b.WriteString("Nov 21 06:29:02 h sshd[1]: not a kernel line SRC=6.6.6.6\n")
	path := filepath.Join(t.TempDir(), "kern.log")
	os.WriteFile(path, []byte(b.String()), 0o600)
	code, out, _ := run(t, "--config", filepath.Join(t.TempDir(), "none.toml"), "explain", "--kernel-log", path)
	if code == 0 {
		t.Fatalf("an explicit missing config should fail: %q", out)
	}
	cfg := filepath.Join(t.TempDir(), "moat.toml")
	os.WriteFile(cfg, nil, 0o600)
	code, out, errs := run(t, "--config", cfg, "explain", "--kernel-log", path)
	if code != 0 || !strings.Contains(out, "kernel LOG lines: 40") || !strings.Contains(out, "203.0.113.5") ||
		!strings.Contains(out, "xmas") || strings.Contains(out, "6.6.6.6") {
		t.Fatalf("explain --kernel-log: %d %q\n%s", code, errs, out)
	}
}

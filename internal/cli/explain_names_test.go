package cli

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/config"
)

// fakeNames is explain's name lookup with a table instead of DNS.
type fakeNames map[string][]netip.Addr

func (f fakeNames) lookup(name string) ([]netip.Addr, error) {
	if a, ok := f[name]; ok {
		return a, nil
	}
	return nil, errors.New("does not resolve")
}

// Host names sshd wrote (UseDNS yes): with use_dns "no" explain shows them
// as not counted, never looked up; with a lookup, a name counts for its one
// address and never for a name with several, as login.NameAddr decides for
// the daemon too.
func TestExplainHostNames(t *testing.T) {
	var lines strings.Builder
	for _, h := range []string{"one.example", "two.example"} {
		for i := range 2 {
			lines.WriteString("Nov 21 06:29:0" + string(rune('1'+i)) + " h sshd[4" + string(rune('1'+i)) + "]: User root from " + h + " not allowed because not listed in AllowUsers\n")
		}
	}
	lc := config.Login{Enabled: true, Mode: "normal", MaxRetry: 2, FindTime: 10 * time.Minute, BanTime: time.Hour,
		BanTimeMultiplier: 2, MaxBanTime: 2 * time.Hour, MaxTracked: 1000, UseDNS: "no"}
	now := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)

	var out bytes.Buffer
	if err := explain(strings.NewReader(lines.String()), &out, explainOptions{login: lc}, now); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`not counted (host name: not resolved (use_dns = "no"), not counted): 4`, "would ban: 0"} {
		if !strings.Contains(out.String(), s) {
			t.Fatalf("use_dns no: summary lacks %q:\n%s", s, out.String())
		}
	}

	lc.UseDNS = "yes"
	names := fakeNames{"one.example": {netip.MustParseAddr("10.210.0.9")},
		"two.example": {netip.MustParseAddr("10.210.0.10"), netip.MustParseAddr("10.210.0.11")}}
	out.Reset()
	if err := explain(strings.NewReader(lines.String()), &out, explainOptions{login: lc, json: true, names: names}, now); err != nil {
		t.Fatal(err)
	}
	want := `{"line":1,"rule":"sshd","kind":"not-allowed","ip":"10.210.0.9","user":"root","would_ban":false,"host":"one.example"}
{"line":2,"rule":"sshd","kind":"not-allowed","ip":"10.210.0.9","user":"root","would_ban":true,"host":"one.example"}
{"line":3,"rule":"sshd","kind":"not-allowed","ip":"","user":"root","would_ban":false,"ignored":"host name: the name resolves to 2 addresses; only a name with exactly one is counted","host":"two.example"}
{"line":4,"rule":"sshd","kind":"not-allowed","ip":"","user":"root","would_ban":false,"ignored":"host name: the name resolves to 2 addresses; only a name with exactly one is counted","host":"two.example"}
`
	if out.String() != want {
		t.Fatalf("use_dns yes:\n%s\nwant\n%s", out.String(), want)
	}
}

// explain does no DNS unless asked, and refuses --use-dns when the daemon
// would not resolve names either.
func TestExplainUseDNSFlag(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "auth.log")
	os.WriteFile(log, []byte("Nov 21 06:29:01 h sshd[1]: User root from one.invalid not allowed because not listed in AllowUsers\n"), 0o600)
	cfg := filepath.Join(dir, "moat.toml")
	os.WriteFile(cfg, []byte("[login]\nmax_retry = 1\n"), 0o600)
	if code, _, errs := run(t, "--config", cfg, "explain", "--use-dns", log); code == 0 || !strings.Contains(errs, `use_dns is "no"`) {
		t.Fatalf("--use-dns with use_dns no: %d %q", code, errs)
	}
	os.WriteFile(cfg, []byte("[login]\nmax_retry = 1\nuse_dns = \"yes\"\n"), 0o600)
	code, out, errs := run(t, "--config", cfg, "explain", log)
	if code != 0 || !strings.Contains(out, "pass --use-dns to resolve") {
		t.Fatalf("use_dns yes without --use-dns: %d %q\n%s", code, errs, out)
	}
}

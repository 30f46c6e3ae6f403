package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The fixture is moat's own (internal/fail2ban/testdata), not fail2ban's.
func TestImportFail2ban(t *testing.T) {
	dir := "../fail2ban/testdata/etc"
	code, out, errs := run(t, "import", "fail2ban", dir)
	if code != 0 || !strings.Contains(out, "[[login.rule]]\nname = \"myapp\"") || !strings.Contains(out, `ports = ["tcp/8000-8100"]`) {
		t.Fatalf("import fail2ban: %d\n%s\n%s", code, out, errs)
	}
	if !strings.Contains(errs, "jail other (filter myapp): 3 of 5 failregexes imported") || !strings.Contains(errs, "lookbehind (?<=...)") {
		t.Errorf("the report must say per filter what did not import and why:\n%s", errs)
	}
	// What it prints is a config that config check accepts.
	path := filepath.Join(t.TempDir(), "moat.toml")
	if code, _, errs := run(t, "import", "fail2ban", "-o", path, dir); code != 0 {
		t.Fatalf("-o: %d %s", code, errs)
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != out {
		t.Fatalf("-o wrote %q (%v), want what stdout had", got, err)
	}
	if code, cout, errs := run(t, "config", "check", path); code != 0 {
		t.Fatalf("config check of the import: %d %s %s", code, cout, errs)
	}
	if code, _, errs := run(t, "import", "fail2ban", filepath.Join(t.TempDir(), "none")); code == 0 || !strings.Contains(errs, "no fail2ban jails") {
		t.Errorf("a directory without jails: %d %q", code, errs)
	}
}

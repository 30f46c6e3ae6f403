package sshd

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// configDirT is a private sshd config: a main file and a drop-in directory.
type configDirT struct {
	dir, main, dropDir string
}

func newConfigDir(t *testing.T, main string) *configDirT {
	t.Helper()
	c := &configDirT{dir: t.TempDir()}
	c.main = filepath.Join(c.dir, "sshd_config")
	c.dropDir = filepath.Join(c.dir, "sshd_config.d")
	if err := os.Mkdir(c.dropDir, 0o755); err != nil {
		t.Fatal(err)
	}
	c.write(t, "sshd_config", strings.ReplaceAll(main, "DROPDIR", c.dropDir))
	return c
}

func (c *configDirT) write(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(c.dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func (c *configDirT) files(t *testing.T) *Files {
	t.Helper()
	f, err := ReadConfig(c.main)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func plan(t *testing.T, c *configDirT, out []byte, facts Facts, opts HardenOptions) *Plan {
	t.Helper()
	e := ParseEffective(out)
	p, err := MakePlan(c.files(t), e, facts, Audit(e, facts), opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func changes(p *Plan) map[string]string {
	m := map[string]string{}
	for _, c := range p.Changes {
		m[c.Key] = c.To
	}
	return m
}

func held(p *Plan, key string) string {
	for _, h := range p.Held {
		if h.Finding.Key == key {
			return h.Why
		}
	}
	return ""
}

const debianMain = "Include DROPDIR/*.conf\n\n# comment\nKbdInteractiveAuthentication no\nUsePAM yes\n"

func TestPlanLockoutGuards(t *testing.T) {
	weak := readTestdata(t, "weak.txt")
	debian := readTestdata(t, "debian12-default.txt")
	rootKey := func(inv string, userKey bool) Facts {
		f := Facts{Invoker: inv, Accounts: map[string]Account{"root": {Name: "root", Keys: 1}}}
		if inv != "root" {
			f.Accounts[inv] = Account{Name: inv, Keys: map[bool]int{true: 1}[userKey]}
		}
		return f
	}
	noKeys := keyless()
	noKeys.Accounts["alice"] = Account{Name: "alice", Problem: "/home/alice/.ssh/authorized_keys is writable by group or others (mode 0o664) (sshd's StrictModes ignores it)"}
	tests := []struct {
		name     string
		out      []byte
		facts    Facts
		opts     HardenOptions
		want     map[string]string // key -> value written; "" means not written
		heldWhy  map[string]string // key -> part of the reason
		notWrote []string
	}{
		{"user with key", weak, keyed(), HardenOptions{},
			map[string]string{"PermitRootLogin": "no", "PasswordAuthentication": "no", "KbdInteractiveAuthentication": "no", "PermitEmptyPasswords": "no",
				"X11Forwarding": "no", "PermitTunnel": "no", "GatewayPorts": "no", "PermitUserEnvironment": "no", "LogLevel": "VERBOSE", "StrictModes": "yes",
				"MaxStartups": "10:30:100", "Ciphers": "aes128-cbc,aes256-ctr,chacha20-poly1305@openssh.com"},
			map[string]string{"AllowTcpForwarding": "--all writes it", "AllowUsers": "cannot know every account", "MaxAuthTries": "agent", "LoginGraceTime": "CVE-2024-6387"},
			nil},
		{"nobody has a key", weak, noKeys, HardenOptions{},
			map[string]string{"PermitEmptyPasswords": "no", "PasswordAuthentication": "", "KbdInteractiveAuthentication": "", "PermitRootLogin": ""},
			map[string]string{"PasswordAuthentication": "neither alice nor root has an authorized key sshd would accept (/home/alice/.ssh/authorized_keys is writable by group or others",
				"KbdInteractiveAuthentication": "would lock you out", "PermitRootLogin": "alice has no authorized key"},
			nil},
		{"force", weak, keyless(), HardenOptions{Force: true},
			map[string]string{"PasswordAuthentication": "no", "PermitRootLogin": "no"}, nil, nil},
		{"root without sudo, root has a key", weak, rootKey("root", false), HardenOptions{},
			map[string]string{"PermitRootLogin": "prohibit-password", "PasswordAuthentication": "no"},
			map[string]string{"PermitRootLogin": "you run this as root, not through sudo"}, nil},
		{"root without sudo, no key", weak, Facts{Invoker: "root", Accounts: map[string]Account{"root": {Name: "root"}}}, HardenOptions{},
			map[string]string{"PermitRootLogin": "", "PasswordAuthentication": ""},
			map[string]string{"PermitRootLogin": "root may be how you log in", "PasswordAuthentication": "root has no authorized key"}, nil},
		{"sudo user without key, root key", weak, rootKey("alice", false), HardenOptions{},
			map[string]string{"PermitRootLogin": "prohibit-password", "PasswordAuthentication": "no"}, nil, nil},
		{"root key, root login stays prohibit-password", debian, rootKey("root", false), HardenOptions{},
			map[string]string{"PermitRootLogin": "", "PasswordAuthentication": "no"},
			map[string]string{"PermitRootLogin": "root may be how you log in"}, nil},
		{"root key refused by PermitRootLogin no", []byte("permitrootlogin no\npasswordauthentication yes\n"), rootKey("alice", false), HardenOptions{},
			map[string]string{"PasswordAuthentication": ""},
			map[string]string{"PasswordAuthentication": "root's key is refused with PermitRootLogin no"}, nil},
		{"authentication methods need a password", []byte("passwordauthentication yes\nauthenticationmethods publickey,password\n"), keyed(), HardenOptions{},
			map[string]string{"PasswordAuthentication": ""},
			map[string]string{"PasswordAuthentication": "AuthenticationMethods publickey,password needs password"}, nil},
		{"pubkey turned on makes keys count", []byte("pubkeyauthentication no\npasswordauthentication yes\n"), keyed(), HardenOptions{},
			map[string]string{"PubkeyAuthentication": "yes", "PasswordAuthentication": "no"}, nil, nil},
		{"all", weak, keyed(), HardenOptions{All: true},
			map[string]string{"AllowTcpForwarding": "no", "AllowAgentForwarding": "no", "MaxAuthTries": "4", "LoginGraceTime": "30",
				"Ciphers": "aes256-ctr,chacha20-poly1305@openssh.com", "KexAlgorithms": "curve25519-sha256"},
			map[string]string{"AllowUsers": "cannot know every account"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newConfigDir(t, debianMain)
			p := plan(t, c, tt.out, tt.facts, tt.opts)
			got := changes(p)
			for key, want := range tt.want {
				if got[key] != want {
					t.Errorf("%s: writes %q, want %q", key, got[key], want)
				}
			}
			for key, why := range tt.heldWhy {
				if h := held(p, key); !strings.Contains(h, why) {
					t.Errorf("%s: held because %q, want %q", key, h, why)
				}
			}
			for _, c := range p.Changes {
				if strings.Count(string(p.New), "\n"+c.Key+" ") != 1 {
					t.Errorf("%s not written exactly once:\n%s", c.Key, p.New)
				}
			}
		})
	}
}

func TestPlanTarget(t *testing.T) {
	out := []byte("permitrootlogin yes\npasswordauthentication yes\nx11forwarding yes\n")
	t.Run("drop-in read first", func(t *testing.T) {
		c := newConfigDir(t, debianMain)
		p := plan(t, c, out, keyed(), HardenOptions{})
		if !p.DropIn || p.Target != filepath.Join(c.dropDir, DropInName) || p.Old != nil || !strings.Contains(p.Via, "line 1") {
			t.Fatalf("%+v", p)
		}
		want := dropInHeader + "PermitRootLogin no\nPasswordAuthentication no\nX11Forwarding no\n"
		if string(p.New) != want {
			t.Errorf("new drop-in:\n%s\nwant:\n%s", p.New, want)
		}
		// A second run keeps what the first wrote and updates in place.
		c.write(t, "sshd_config.d/"+DropInName, dropInHeader+"X11Forwarding yes\nLogLevel VERBOSE\n")
		p = plan(t, c, out, keyed(), HardenOptions{})
		want = dropInHeader + "X11Forwarding no\nLogLevel VERBOSE\nPermitRootLogin no\nPasswordAuthentication no\n"
		if string(p.New) != want {
			t.Errorf("merged drop-in:\n%s\nwant:\n%s", p.New, want)
		}
	})
	t.Run("setting before the Include", func(t *testing.T) {
		c := newConfigDir(t, "PasswordAuthentication yes\nInclude DROPDIR/*.conf\n")
		p := plan(t, c, out, keyed(), HardenOptions{})
		if p.DropIn || p.Target != c.main || !strings.Contains(p.Via, "line 1 sets passwordauthentication before any Include") {
			t.Fatalf("%+v", p)
		}
		want := blockBegin + "\n" + blockHeader + "PermitRootLogin no\nPasswordAuthentication no\nX11Forwarding no\n" + blockEnd + "\n\nPasswordAuthentication yes\nInclude " + c.dropDir + "/*.conf\n"
		if string(p.New) != want {
			t.Errorf("new main:\n%s\nwant:\n%s", p.New, want)
		}
		// The next run replaces the block instead of adding another.
		os.WriteFile(c.main, p.New, 0o644)
		p = plan(t, c, []byte("permitrootlogin no\npasswordauthentication no\nx11forwarding no\ngatewayports yes\n"), keyed(), HardenOptions{})
		if strings.Count(string(p.New), blockBegin) != 1 || !strings.Contains(string(p.New), "X11Forwarding no\nGatewayPorts no\n"+blockEnd) {
			t.Errorf("second run:\n%s", p.New)
		}
	})
	for name, main := range map[string]string{
		"no include":           "Port 22\n",
		"include inside match": "Match User bob\nInclude DROPDIR/*.conf\n",
		"include of a file":    "Include DROPDIR/other.conf\n",
		"missing directory":    "Include DROPDIR/nope/*.conf\n",
	} {
		t.Run(name, func(t *testing.T) {
			c := newConfigDir(t, main)
			if p := plan(t, c, out, keyed(), HardenOptions{}); p.DropIn || p.Target != c.main {
				t.Errorf("%+v", p)
			}
		})
	}
	t.Run("notes", func(t *testing.T) {
		c := newConfigDir(t, debianMain+"Match User bob\n  PasswordAuthentication yes\n")
		c.write(t, "sshd_config.d/00-early.conf", "PermitRootLogin yes\n")
		c.write(t, "sshd_config.d/50-cloud-init.conf", "PasswordAuthentication yes\n")
		p := plan(t, c, out, keyed(), HardenOptions{})
		notes := strings.Join(p.Notes, "\n")
		if !strings.Contains(notes, "00-early.conf line 1 sets PermitRootLogin and is read before 10-moat.conf") ||
			!strings.Contains(notes, "sshd_config line 7 sets PasswordAuthentication inside a Match block") || strings.Contains(notes, "50-cloud-init") {
			t.Errorf("notes:\n%s", notes)
		}
	})
	t.Run("last value wins", func(t *testing.T) {
		// sshd 9.2 keeps the last MaxStartups, so only the line itself can change it.
		c := newConfigDir(t, debianMain+"MaxStartups 100:30:1000\n")
		p := plan(t, c, []byte("maxstartups 100:30:1000\n"), keyed(), HardenOptions{})
		if _, ok := changes(p)["MaxStartups"]; ok || !strings.Contains(held(p, "MaxStartups"), "change line 6 of "+c.main+" to MaxStartups 10:30:100") {
			t.Errorf("changes %v, held %q", changes(p), held(p, "MaxStartups"))
		}
	})
	t.Run("nothing to do", func(t *testing.T) {
		c := newConfigDir(t, debianMain)
		p := plan(t, c, readTestdata(t, "strong.txt"), keyed(), HardenOptions{All: true})
		if !p.Empty() || p.Diff() != "" {
			t.Errorf("%+v", p)
		}
	})
}

func TestUnifiedDiff(t *testing.T) {
	var a, b strings.Builder
	for i := 1; i <= 20; i++ {
		fmt.Fprintf(&a, "%d\n", i)
		if i == 10 {
			b.WriteString("ten\n")
		} else if i != 20 {
			fmt.Fprintf(&b, "%d\n", i)
		}
	}
	want := `--- a
+++ b
@@ -7,7 +7,7 @@
 7
 8
 9
-10
+ten
 11
 12
 13
@@ -17,4 +17,3 @@
 17
 18
 19
-20
`
	if got := unifiedDiff("a", "b", a.String(), b.String()); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	if got := unifiedDiff("/dev/null", "x", "", "a\nb\n"); got != "--- /dev/null\n+++ x\n@@ -0,0 +1,2 @@\n+a\n+b\n" {
		t.Errorf("new file:\n%s", got)
	}
	if got := unifiedDiff("a", "b", "x\ny\n", "top\nx\ny\n"); got != "--- a\n+++ b\n@@ -1,2 +1,3 @@\n+top\n x\n y\n" {
		t.Errorf("insert at the top:\n%s", got)
	}
	if unifiedDiff("a", "b", "same\n", "same\n") != "" {
		t.Error("equal texts have no diff")
	}
	// Changes closer than twice the context share a hunk.
	if got := unifiedDiff("a", "b", "1\n2\n3\n4\n5\n6\n7\n8\n", "x\n2\n3\n4\n5\n6\n7\ny\n"); strings.Count(got, "@@ -") != 1 {
		t.Errorf("one hunk expected:\n%s", got)
	}
}

// sshdForTest returns the real sshd, or skips: Apply's tests need sshd -t
// and, for the host keys it loads, root.
func sshdForTest(t *testing.T) Server {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: sshd -t reads host keys as root (try: sudo go test)")
	}
	s := Server{}
	if _, err := os.Stat(s.BinaryPath()); err != nil {
		t.Skipf("sshd not installed (%v): apt-get install openssh-server", err)
	}
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("ssh-keygen not installed: apt-get install openssh-client")
	}
	return s
}

func hostKey(t *testing.T, path string) {
	t.Helper()
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "moat-test", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
}

// snapshot records every file under dir with its mode and content.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := d.Info()
		data, _ := os.ReadFile(p)
		m[p] = fi.Mode().String() + "\n" + string(data)
		return nil
	})
	return m
}

func equalSnapshots(t *testing.T, before, after map[string]string) {
	t.Helper()
	for p, v := range before {
		if after[p] != v {
			t.Errorf("%s changed:\n%s\n->\n%s", p, v, after[p])
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s appeared", p)
		}
	}
}

// applyDir is a private config sshd -t accepts, with one host key.
func applyDir(t *testing.T, main string) (*configDirT, Server) {
	t.Helper()
	s := sshdForTest(t)
	c := newConfigDir(t, "")
	key := filepath.Join(c.dir, "host_ed25519")
	hostKey(t, key)
	c.write(t, "sshd_config", strings.NewReplacer("DROPDIR", c.dropDir, "HOSTKEY", key, "PIDFILE", filepath.Join(c.dir, "pid")).Replace(main))
	s.Config = c.main
	return c, s
}

const applyMain = "Include DROPDIR/*.conf\nHostKey HOSTKEY\nPidFile PIDFILE\nPermitRootLogin yes\nPasswordAuthentication yes\nX11Forwarding yes\nMACs hmac-sha1,hmac-sha2-256-etm@openssh.com\n"

func TestApplyDropIn(t *testing.T) {
	c, s := applyDir(t, applyMain)
	ctx := context.Background()
	before := snapshot(t, c.dir)
	p, err := s.PlanHarden(ctx, "alice", HardenOptions{Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if !p.DropIn || !strings.Contains(p.Diff(), "+++ "+filepath.Join(c.dropDir, DropInName)) {
		t.Fatalf("plan %+v\n%s", p, p.Diff())
	}
	equalSnapshots(t, before, snapshot(t, c.dir)) // planning writes nothing
	res, err := s.Apply(ctx, p, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if res.Written != p.Target || res.Backup != "" || len(res.Ignored) != 0 {
		t.Errorf("result %+v", res)
	}
	if fi, err := os.Stat(p.Target); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("drop-in mode: %v %v", fi, err)
	}
	e, err := s.Effective(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"permitrootlogin": "no", "passwordauthentication": "no", "x11forwarding": "no", "macs": "hmac-sha2-256-etm@openssh.com"} {
		if e.Get(key) != want {
			t.Errorf("after harden %s = %q, want %q", key, e.Get(key), want)
		}
	}
	// Nothing left but what harden leaves alone; a second run writes nothing.
	p2, err := s.PlanHarden(ctx, "alice", HardenOptions{Force: true})
	if err != nil || p2.ConfigChanges() {
		t.Fatalf("second plan: %v\n%s", err, p2.Diff())
	}
	// Replacing the drop-in keeps a backup that no Include reads.
	c.write(t, "sshd_config.d/"+DropInName, string(p.New)+"GatewayPorts yes\n")
	p3, err := s.PlanHarden(ctx, "alice", HardenOptions{Force: true})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	res, err = s.Apply(ctx, p3, now)
	if err != nil {
		t.Fatal(err)
	}
	if want := p.Target + ".moat-bak-20260102T030405Z"; res.Backup != want {
		t.Errorf("backup %q, want %q", res.Backup, want)
	}
	if b, _ := os.ReadFile(res.Backup); !bytes.Equal(b, p3.Old) {
		t.Errorf("backup content:\n%s", b)
	}
	if e, _ := s.Effective(ctx, ""); e.Get("gatewayports") != "no" {
		t.Errorf("gatewayports %q", e.Get("gatewayports"))
	}
}

func TestApplyInsert(t *testing.T) {
	c, s := applyDir(t, strings.Replace(applyMain, "Include DROPDIR/*.conf\n", "", 1))
	ctx := context.Background()
	old, _ := os.ReadFile(c.main)
	os.Chmod(c.main, 0o600)
	p, err := s.PlanHarden(ctx, "alice", HardenOptions{Force: true})
	if err != nil || p.DropIn || p.Target != c.main {
		t.Fatalf("%v %+v", err, p)
	}
	res, err := s.Apply(ctx, p, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(res.Backup); !bytes.Equal(b, old) || !strings.HasPrefix(filepath.Base(res.Backup), "sshd_config.moat-bak-") {
		t.Errorf("backup %s holds:\n%s", res.Backup, b)
	}
	if fi, _ := os.Stat(c.main); fi.Mode().Perm() != 0o600 {
		t.Errorf("the main file keeps its mode: %v", fi.Mode())
	}
	if e, _ := s.Effective(ctx, ""); e.Get("permitrootlogin") != "no" || e.Get("passwordauthentication") != "no" {
		t.Errorf("block at the top not in effect: %q %q", e.Get("permitrootlogin"), e.Get("passwordauthentication"))
	}
	if matches, _ := filepath.Glob(filepath.Join(c.dir, ".*moat-tmp*")); len(matches) > 0 {
		t.Errorf("temporary files left: %v", matches)
	}
}

// A config sshd rejects never reaches the real files: the error names
// the real path and sshd's reason, and every file is byte-identical.
func TestApplyRejectedLeavesFilesAlone(t *testing.T) {
	ctx := context.Background()
	t.Run("broken drop-in", func(t *testing.T) {
		c, s := applyDir(t, applyMain)
		c.write(t, "sshd_config.d/"+DropInName, "X11Forwarding yes\n")
		p, err := s.PlanHarden(ctx, "alice", HardenOptions{Force: true})
		if err != nil {
			t.Fatal(err)
		}
		p.New = append(p.New, "Ciphers rot13-cbc\n"...) // the test hook: content sshd -t rejects
		before := snapshot(t, c.dir)
		res, err := s.Apply(ctx, p, time.Now())
		if err == nil || !strings.Contains(err.Error(), "sshd -t rejects the hardened config, so nothing was changed") ||
			!strings.Contains(err.Error(), filepath.Join(c.dropDir, DropInName)) || !strings.Contains(err.Error(), "rot13-cbc") || strings.Contains(err.Error(), "moat-sshd-") {
			t.Fatalf("error %v", err)
		}
		if res.Written != "" || res.Backup != "" {
			t.Errorf("result %+v", res)
		}
		equalSnapshots(t, before, snapshot(t, c.dir))
	})
	t.Run("broken main config", func(t *testing.T) {
		c, s := applyDir(t, applyMain+"Bogus yes\n")
		e := ParseEffective(readTestdata(t, "weak.txt")) // sshd -T fails on this config, so plan from testdata
		facts := keyed()
		p, err := MakePlan(c.files(t), e, facts, Audit(e, facts), HardenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		before := snapshot(t, c.dir)
		_, err = s.Apply(ctx, p, time.Now())
		if err == nil || !strings.Contains(err.Error(), "Bad configuration option: Bogus") || !strings.Contains(err.Error(), c.main) {
			t.Fatalf("error %v", err)
		}
		equalSnapshots(t, before, snapshot(t, c.dir))
	})
	t.Run("changed since planned", func(t *testing.T) {
		c, s := applyDir(t, applyMain)
		p, err := s.PlanHarden(ctx, "alice", HardenOptions{Force: true})
		if err != nil {
			t.Fatal(err)
		}
		c.write(t, "sshd_config.d/"+DropInName, "# someone else\n")
		before := snapshot(t, c.dir)
		if _, err := s.Apply(ctx, p, time.Now()); err == nil || !strings.Contains(err.Error(), "changed since moat read it") {
			t.Fatalf("error %v", err)
		}
		equalSnapshots(t, before, snapshot(t, c.dir))
	})
	t.Run("backup would be included", func(t *testing.T) {
		c, s := applyDir(t, strings.Replace(applyMain, "DROPDIR/*.conf", "DROPDIR/*", 1))
		c.write(t, "sshd_config.d/"+DropInName, "X11Forwarding yes\n")
		p, err := s.PlanHarden(ctx, "alice", HardenOptions{Force: true})
		if err != nil {
			t.Fatal(err)
		}
		before := snapshot(t, c.dir)
		if _, err := s.Apply(ctx, p, time.Now()); err == nil || !strings.Contains(err.Error(), "would be read by sshd through Include") {
			t.Fatalf("error %v", err)
		}
		equalSnapshots(t, before, snapshot(t, c.dir))
	})
}

// A setting read before the drop-in wins: Apply says so rather than
// pretending it fixed it.
func TestApplyReportsIgnored(t *testing.T) {
	c, s := applyDir(t, applyMain)
	c.write(t, "sshd_config.d/00-early.conf", "X11Forwarding yes\n")
	ctx := context.Background()
	p, err := s.PlanHarden(ctx, "alice", HardenOptions{Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(p.Notes, func(n string) bool { return strings.Contains(n, "00-early.conf line 1 sets X11Forwarding") }) {
		t.Errorf("notes %v", p.Notes)
	}
	res, err := s.Apply(ctx, p, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Ignored) != 1 || !strings.HasPrefix(res.Ignored[0], "X11Forwarding stays yes") {
		t.Errorf("ignored %q", res.Ignored)
	}
}

func TestApplyHostKeyModes(t *testing.T) {
	c, s := applyDir(t, applyMain)
	loose := filepath.Join(c.dir, "host_ecdsa")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", loose).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	os.Chmod(loose, 0o640)
	os.WriteFile(c.main, append(readFile(t, c.main), "HostKey "+loose+"\n"...), 0o644)
	ctx := context.Background()
	p, err := s.PlanHarden(ctx, "alice", HardenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.KeyFixes) != 1 || p.KeyFixes[0] != (KeyFix{Path: loose, Chmod: true}) {
		t.Fatalf("key fixes %+v", p.KeyFixes)
	}
	res, err := s.Apply(ctx, p, time.Now())
	if err != nil || len(res.KeyFixes) != 1 {
		t.Fatalf("%v %+v", err, res)
	}
	if fi, _ := os.Stat(loose); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

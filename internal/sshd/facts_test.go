package sshd

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExpandKeysPath(t *testing.T) {
	for in, want := range map[string]string{
		".ssh/authorized_keys":        "/home/al/.ssh/authorized_keys",
		"%h/.ssh/k":                   "/home/al/.ssh/k",
		"/etc/ssh/keys/%u":            "/etc/ssh/keys/alice",
		"/etc/ssh/keys/%U.pub":        "/etc/ssh/keys/1001.pub",
		"/x/100%%/%z%":                "/x/100%/%z%",
		"../../etc/ssh/authorized/%u": "/etc/ssh/authorized/alice",
	} {
		if got := expandKeysPath(in, "alice", "/home/al", 1001); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
}

// testUID owns the fake account's files; any uid works for root.
const testUID = 4242

func requireRootFiles(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files to another uid, as sshd's StrictModes checks ownership (try: sudo go test)")
	}
}

func TestAuthorizedKeys(t *testing.T) {
	requireRootFiles(t)
	ed, ed2 := edKey(), edKey()
	keys := "# my keys\n" + ed + " alice@laptop\n\n" + `from="10.210.0.0/16" ` + ed2 + "\n" + `command="/usr/bin/backup" ` + edKey() + "\nnot a key\n"
	tests := []struct {
		name    string
		out     string // sshd -T lines
		setup   func(home string)
		keys    int
		problem string
	}{
		{"usable keys", "authorizedkeysfile .ssh/authorized_keys .ssh/authorized_keys2", nil, 2, ""},
		{"default when absent", "port 22", nil, 2, ""},
		{"none", "authorizedkeysfile none", nil, 0, ""},
		{"group-writable file", "authorizedkeysfile .ssh/authorized_keys", func(h string) { os.Chmod(filepath.Join(h, ".ssh/authorized_keys"), 0o664) }, 0, "writable by group or others"},
		{"strictmodes off accepts it", "strictmodes no\nauthorizedkeysfile .ssh/authorized_keys", func(h string) { os.Chmod(filepath.Join(h, ".ssh/authorized_keys"), 0o666) }, 2, ""},
		{"group-writable home", "authorizedkeysfile .ssh/authorized_keys", func(h string) { os.Chmod(h, 0o775) }, 0, "StrictModes"},
		{"foreign owner", "authorizedkeysfile .ssh/authorized_keys", func(h string) { os.Chown(filepath.Join(h, ".ssh/authorized_keys"), testUID+1, 0) }, 0, "owned by uid 4243"},
		{"unreadable by the user", "authorizedkeysfile .ssh/authorized_keys", func(h string) {
			p := filepath.Join(h, ".ssh/authorized_keys")
			os.Chown(p, 0, 0)
			os.Chmod(p, 0o600)
		}, 0, "not readable by its user"},
		{"not allowed to log in", "allowusers bob\nauthorizedkeysfile .ssh/authorized_keys", nil, 0, "alice is not in AllowUsers"},
		{"keys command noted", "authorizedkeysfile none\nauthorizedkeyscommand /usr/bin/ldapkeys", nil, 0, "AuthorizedKeysCommand"},
		{"CA noted", "authorizedkeysfile none\ntrustedusercakeys /etc/ssh/ca.pub", nil, 0, "TrustedUserCAKeys"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			home := filepath.Join(t.TempDir(), "home")
			for _, d := range []string{home, filepath.Join(home, ".ssh")} {
				if err := os.Mkdir(d, 0o700); err != nil {
					t.Fatal(err)
				}
				os.Chown(d, testUID, testUID)
			}
			p := filepath.Join(home, ".ssh/authorized_keys")
			if err := os.WriteFile(p, []byte(keys), 0o600); err != nil {
				t.Fatal(err)
			}
			os.Chown(p, testUID, testUID)
			if tt.setup != nil {
				tt.setup(home)
			}
			lookup := func(name string) (string, int, error) { return home, testUID, nil }
			a := authorizedKeys(ParseEffective([]byte(tt.out+"\n")), "alice", lookup)
			if a.Keys != tt.keys || !strings.Contains(a.Problem, tt.problem) || tt.problem == "" && a.Problem != "" {
				t.Errorf("keys %d problem %q; want %d and %q", a.Keys, a.Problem, tt.keys, tt.problem)
			}
			if a.Keys > 0 && (len(a.Files) != 1 || a.Files[0] != p) {
				t.Errorf("files %v", a.Files)
			}
		})
	}
	a := authorizedKeys(ParseEffective(nil), "ghost", func(string) (string, int, error) { return "", 0, errors.New("unknown user ghost") })
	if a.Keys != 0 || !strings.Contains(a.Problem, "unknown user ghost") {
		t.Errorf("lookup failure: %+v", a)
	}
}

func TestGather(t *testing.T) {
	requireRootFiles(t)
	dir := t.TempDir()
	write := func(name string, mode os.FileMode, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		return p
	}
	ok := write("ok_key", 0o600, "private")
	write("ok_key.pub", 0o644, edKey()+" root@host\n")
	loose := write("loose_key", 0o640, "private")
	e := ParseEffective([]byte("hostkey " + ok + "\nhostkey " + loose + "\nhostkey " + filepath.Join(dir, "missing") + "\nauthorizedkeysfile none\n"))
	lookups := 0
	f := Gather(e, nil, "root", "", func(string) (string, int, error) { lookups++; return dir, 0, nil })
	if lookups != 1 || len(f.Accounts) != 1 {
		t.Errorf("root is looked up once even when it is the invoker: %d %v", lookups, f.Accounts)
	}
	if len(f.HostKeys) != 3 {
		t.Fatalf("host keys %+v", f.HostKeys)
	}
	if k := f.HostKeys[0]; k.Err != nil || k.Mode != 0o600 || k.UID != 0 || k.Key.Type != "ssh-ed25519" {
		t.Errorf("ok key %+v", k)
	}
	if k := f.HostKeys[1]; k.Mode != 0o640 || k.Key.Type != "" {
		t.Errorf("loose key %+v", k)
	}
	if k := f.HostKeys[2]; !errors.Is(k.Err, os.ErrNotExist) {
		t.Errorf("missing key %+v", k)
	}
}

func TestLoginRefused(t *testing.T) {
	groups := func(name string) []string { return map[string][]string{"alice": {"alice", "sudo"}}[name] }
	tests := []struct {
		out, user, want string
	}{
		{"port 22", "alice", ""},
		{"allowusers bob\nallowusers al*", "alice", ""},
		{"allowusers bob\nallowusers carol", "alice", "alice is not in AllowUsers"},
		{"allowusers alice@10.210.0.0/16", "alice", ""},
		{"denyusers ?lice", "alice", "DenyUsers ?lice refuses alice"},
		{"denyusers alice@192.0.2.1", "alice", ""},
		{"allowgroups wheel\nallowgroups sud?", "alice", ""},
		{"allowgroups wheel", "alice", "alice is in none of AllowGroups"},
		{"denygroups sudo", "alice", "DenyGroups sudo refuses alice (group sudo)"},
	}
	for _, tt := range tests {
		if got := loginRefused(ParseEffective([]byte(tt.out+"\n")), tt.user, groups); got != tt.want {
			t.Errorf("%q: %q, want %q", tt.out, got, tt.want)
		}
	}
	for _, c := range []struct {
		p, s string
		ok   bool
	}{{"*", "", true}, {"a*c", "abbbc", true}, {"a?c", "abc", true}, {"a?c", "ac", false}, {"*b*", "aaa", false},
		{"**a", "a", true}, {"a", "A", false}, {"*a*a*a*a*a*a*a*b", strings.Repeat("a", 60), false}} {
		if matchPattern(c.p, c.s) != c.ok {
			t.Errorf("matchPattern(%q, %q) != %v", c.p, c.s, c.ok)
		}
	}
}

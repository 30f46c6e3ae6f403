package sshd

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Account is a login that can still get in once passwords are off, if it
// has an authorized key sshd will accept.
type Account struct {
	Name    string
	Home    string
	Keys    int      // usable authorized keys
	Files   []string // the files holding them
	Problem string   // why none count, when Keys is 0 and there is more to say than "none"
}

// HostKey is one HostKey file: its mode and owner, and its public half.
type HostKey struct {
	Path string
	Err  error // stat failed (sshd skips a key it cannot load)
	Mode fs.FileMode
	UID  int
	Key  PublicKey // from Path+".pub"; Type is "" when there is none
}

// Facts is what Audit needs beyond sshd -T output. Gather collects them;
// tests build them by hand.
type Facts struct {
	Invoker    string             // the admin running moat: SUDO_USER, else the current user
	Accounts   map[string]Account // root and the invoker, by name
	HostKeys   []HostKey
	Config     *Files // the config files as written (Protocol lines, Match blocks); may be nil
	Connection string // the -C spec the audit evaluated, "" for none
}

// HasKey reports whether the named account has a usable authorized key.
func (f Facts) HasKey(name string) bool { return f.Accounts[name].Keys > 0 }

// Lookup finds an account's home directory and uid.
type Lookup func(name string) (home string, uid int, err error)

// LookupUser is Lookup through os/user. In a static (cgo-free) build it
// reads /etc/passwd only: accounts from LDAP or other NSS sources are not
// found, and then count as having no key, which errs on the safe side.
func LookupUser(name string) (string, int, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return "", 0, err
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return "", 0, fmt.Errorf("user %s: uid %q: %w", name, u.Uid, err)
	}
	return u.HomeDir, uid, nil
}

// Gather collects the facts about the host that Audit and Plan use: the
// authorized keys of root and the invoker, and the host key files.
func Gather(e *Effective, files *Files, invoker, conn string, lookup Lookup) Facts {
	if lookup == nil {
		lookup = LookupUser
	}
	f := Facts{Invoker: invoker, Accounts: map[string]Account{}, Config: files, Connection: conn}
	for _, name := range []string{"root", invoker} {
		if name == "" {
			continue
		}
		if _, done := f.Accounts[name]; done {
			continue
		}
		f.Accounts[name] = authorizedKeys(e, name, lookup)
	}
	for _, path := range e.Values("hostkey") {
		f.HostKeys = append(f.HostKeys, statHostKey(path))
	}
	return f
}

func statHostKey(path string) HostKey {
	hk := HostKey{Path: path}
	fi, err := os.Stat(path)
	if err != nil {
		hk.Err = err
		return hk
	}
	hk.Mode = fi.Mode().Perm()
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		hk.UID = int(st.Uid)
	}
	if data, err := os.ReadFile(path + ".pub"); err == nil {
		line, _, _ := strings.Cut(string(data), "\n")
		hk.Key, _ = ParsePublicKey(line)
	}
	return hk
}

// authorizedKeys counts the keys sshd would accept for an account: those
// in its AuthorizedKeysFile files that pass sshd's StrictModes checks and
// carry no forced command (a key that only runs one command is no way in).
func authorizedKeys(e *Effective, name string, lookup Lookup) Account {
	a := Account{Name: name}
	home, uid, err := lookup(name)
	if err != nil {
		a.Problem = fmt.Sprintf("cannot look up %s: %v", name, err)
		return a
	}
	a.Home = home
	if why := loginRefused(e, name, groupsOf); why != "" {
		a.Problem = why
		return a
	}
	var problems []string
	patterns := strings.Fields(e.Get("authorizedkeysfile"))
	if len(patterns) == 0 && !e.Has("authorizedkeysfile") {
		patterns = []string{".ssh/authorized_keys", ".ssh/authorized_keys2"} // OpenSSH's default
	}
	for _, p := range patterns {
		if strings.EqualFold(p, "none") {
			continue
		}
		path := expandKeysPath(p, name, home, uid)
		n, problem := countKeys(path, home, uid, e.Get("strictmodes") != "no")
		if problem != "" {
			problems = append(problems, problem)
		}
		if n > 0 {
			a.Keys += n
			a.Files = append(a.Files, path)
		}
	}
	if a.Keys == 0 {
		if v := e.Get("authorizedkeyscommand"); v != "" && v != "none" {
			problems = append(problems, "keys may also come from AuthorizedKeysCommand, which moat cannot check")
		}
		if v := e.Get("trustedusercakeys"); v != "" && v != "none" {
			problems = append(problems, "certificates signed by TrustedUserCAKeys may also log in, which moat cannot check")
		}
		a.Problem = strings.Join(problems, "; ")
	}
	return a
}

// groupsOf lists an account's groups; a variable so tests can fake it.
var groupsOf = func(name string) []string {
	u, err := user.Lookup(name)
	if err != nil {
		return nil
	}
	ids, _ := u.GroupIds()
	var names []string
	for _, id := range ids {
		if g, err := user.LookupGroupId(id); err == nil {
			names = append(names, g.Name)
		}
	}
	return names
}

// loginRefused says why sshd's DenyUsers, AllowUsers, DenyGroups or
// AllowGroups would refuse the account, or "" when they let it in. A
// USER@HOST pattern is judged by its user part in AllowUsers (the admin may
// come from that host) and skipped in DenyUsers (they may not): moat cannot
// know where the admin connects from.
func loginRefused(e *Effective, name string, groups func(string) []string) string {
	for _, p := range e.Values("denyusers") {
		if u, host, _ := strings.Cut(p, "@"); host == "" && matchPattern(u, name) {
			return fmt.Sprintf("DenyUsers %s refuses %s", p, name)
		}
	}
	if allow := e.Values("allowusers"); len(allow) > 0 {
		ok := false
		for _, p := range allow {
			u, _, _ := strings.Cut(p, "@")
			ok = ok || matchPattern(u, name)
		}
		if !ok {
			return fmt.Sprintf("%s is not in AllowUsers", name)
		}
	}
	deny, allow := e.Values("denygroups"), e.Values("allowgroups")
	if len(deny) == 0 && len(allow) == 0 {
		return ""
	}
	gs := groups(name)
	for _, p := range deny {
		for _, g := range gs {
			if matchPattern(p, g) {
				return fmt.Sprintf("DenyGroups %s refuses %s (group %s)", p, name, g)
			}
		}
	}
	if len(allow) > 0 {
		for _, p := range allow {
			for _, g := range gs {
				if matchPattern(p, g) {
					return ""
				}
			}
		}
		return fmt.Sprintf("%s is in none of AllowGroups", name)
	}
	return ""
}

// matchPattern is OpenSSH's match_pattern: * and ? wildcards, nothing
// else. Backtracking to the last * only keeps it linear.
func matchPattern(pattern, s string) bool {
	p, i, star, mark := 0, 0, -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p, i = p+1, i+1
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case star >= 0:
			mark++
			p, i = star+1, mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// expandKeysPath applies sshd's AuthorizedKeysFile tokens; a relative path
// is relative to the home directory.
func expandKeysPath(p, name, home string, uid int) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] != '%' || i+1 == len(p) {
			b.WriteByte(p[i])
			continue
		}
		i++
		switch p[i] {
		case '%':
			b.WriteByte('%')
		case 'h':
			b.WriteString(home)
		case 'u':
			b.WriteString(name)
		case 'U':
			b.WriteString(strconv.Itoa(uid))
		default:
			b.WriteByte('%')
			b.WriteByte(p[i])
		}
	}
	out := b.String()
	if !filepath.IsAbs(out) {
		out = filepath.Join(home, out)
	}
	return filepath.Clean(out)
}

// countKeys counts usable keys in one authorized_keys file. With strict
// set it applies sshd's StrictModes rules: the file and every directory
// from it up to the home directory must be owned by root or the user and
// not writable by group or others, or sshd ignores the file.
func countKeys(path, home string, uid int, strict bool) (int, string) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, ""
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Sprintf("%s is not a regular file", path)
	}
	if strict {
		if why := unsafeOwner(path, fi, uid); why != "" {
			return 0, why + " (sshd's StrictModes ignores it)"
		}
		for dir := filepath.Dir(path); ; dir = filepath.Dir(dir) {
			di, err := os.Stat(dir)
			if err != nil {
				return 0, fmt.Sprintf("%s: %v", dir, err)
			}
			if why := unsafeOwner(dir, di, uid); why != "" {
				return 0, why + " (sshd's StrictModes ignores " + path + ")"
			}
			if dir == home || dir == "/" || dir == "." {
				break
			}
		}
	}
	// sshd reads the file as the user: an unreadable file counts nothing.
	// Group membership is not looked at, which errs on the safe side.
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && uid != 0 {
		readable := int(st.Uid) == uid && fi.Mode()&0o400 != 0 || fi.Mode()&0o004 != 0
		if !readable {
			return 0, fmt.Sprintf("%s is not readable by its user (mode %#o)", path, fi.Mode().Perm())
		}
	}
	file, err := os.Open(path)
	if err != nil {
		return 0, fmt.Sprintf("%s: %v", path, err)
	}
	defer file.Close()
	n := 0
	sc := bufio.NewScanner(file)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		if UsableKeyLine(sc.Text()) {
			n++
		}
	}
	return n, ""
}

// UsableKeyLine reports whether an authorized_keys line holds a key that
// can open a session: a known key type, and no forced command.
func UsableKeyLine(line string) bool {
	s := strings.TrimSpace(line)
	k, err := ParsePublicKey(s)
	if err != nil {
		return false
	}
	if typ, _ := cutField(s); typ == k.Type {
		return true // no options
	}
	opts := s[:len(s)-len(skipOptions(s))]
	return !strings.Contains(strings.ToLower(opts), "command=")
}

func unsafeOwner(path string, fi fs.FileInfo, uid int) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	if int(st.Uid) != 0 && int(st.Uid) != uid {
		return fmt.Sprintf("%s is owned by uid %d, not root or the user", path, st.Uid)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Sprintf("%s is writable by group or others (mode %#o)", path, fi.Mode().Perm())
	}
	return ""
}

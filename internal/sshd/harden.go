package sshd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// DropInName is the file harden writes into sshd_config.d. sshd reads the
// directory's files in lexical order and keeps the first value it reads
// for most keywords, so the name sorts before the files distributions and
// cloud images drop there (Debian's cloud images ship 50-cloud-init.conf,
// which turns PasswordAuthentication on).
const DropInName = "10-moat.conf"

// Markers around the block harden inserts at the top of sshd_config when
// no Include reads a drop-in directory first.
const (
	blockBegin = "# BEGIN moat sshd harden"
	blockEnd   = "# END moat sshd harden"
)

const dropInHeader = `# Written by "moat sshd harden" with fixes from "moat sshd audit".
# sshd keeps the first value it reads for most keywords, and reads this file
# through the Include at the top of sshd_config, before the settings there.
# Run "moat sshd harden" again to update it; each earlier version is kept
# next to it as ` + DropInName + `.moat-bak-<time>.
`

const blockHeader = `# Written by "moat sshd harden". At the top of the file because sshd keeps
# the first value it reads for most keywords. Earlier versions of this file
# are kept next to it as <name>.moat-bak-<time>.
`

// lastWins are the keywords for which sshd keeps the last value it reads,
// against the first-value rule: checked on OpenSSH 9.2 for every keyword
// harden writes (a drop-in value, then a main-file value, then sshd -T).
var lastWins = map[string]bool{"maxstartups": true}

// HardenOptions choose what harden writes.
type HardenOptions struct {
	All   bool // also write the fixes that depend on how the host is used
	Force bool // turn passwords and root logins off even without a key to log in with
}

// Change is one sshd_config line harden writes.
type Change struct {
	Key, From, To string
	Finding       string // the finding's ID
}

// Held is a finding harden leaves alone, and why.
type Held struct {
	Finding Finding
	Why     string
}

// Plan is what harden would do.
type Plan struct {
	Main     string // the main sshd_config
	Target   string // the file written: a drop-in, or Main itself
	DropIn   bool
	Via      string // why sshd reads the target first
	Old      []byte // the target's content now; nil when it does not exist
	New      []byte // its content after; equal to Old when no setting changes
	Changes  []Change
	Held     []Held
	KeyFixes []KeyFix
	Notes    []string // what may keep a change from taking effect

	includes []string // every Include pattern: backups must match none
}

// ConfigChanges reports whether the plan writes a config file.
func (p *Plan) ConfigChanges() bool { return !bytes.Equal(p.Old, p.New) }

// Empty reports whether the plan does nothing at all.
func (p *Plan) Empty() bool { return !p.ConfigChanges() && len(p.KeyFixes) == 0 }

// Diff is a unified diff of the target, for the preview.
func (p *Plan) Diff() string {
	from := p.Target
	if p.Old == nil {
		from = "/dev/null"
	}
	return unifiedDiff(from, p.Target, string(p.Old), string(p.New))
}

// PlanHarden audits the server's global configuration and plans the fixes
// harden writes. invoker is the admin who runs it (SUDO_USER, else the
// current user): their keys and root's decide what is safe to turn off.
func (s Server) PlanHarden(ctx context.Context, invoker string, opts HardenOptions) (*Plan, error) {
	e, err := s.Effective(ctx, "")
	if err != nil {
		return nil, err
	}
	files, err := ReadConfig(s.ConfigPath())
	if err != nil {
		return nil, err
	}
	facts := Gather(e, files, invoker, "", nil)
	return MakePlan(files, e, facts, Audit(e, facts), opts)
}

// MakePlan turns findings into a plan. It reads the target file, and
// otherwise does no I/O.
func MakePlan(files *Files, e *Effective, facts Facts, findings []Finding, opts HardenOptions) (*Plan, error) {
	p := &Plan{Main: files.Main, includes: files.IncludePatterns()}
	var root, pw []Finding
	for _, f := range findings {
		switch {
		case f.keyFix != nil && f.apply == always:
			p.KeyFixes = append(p.KeyFixes, *f.keyFix)
			continue
		case f.set == "" && f.Severity == Info:
			continue
		case f.set == "" || f.apply == never:
			p.hold(f, orElse(f.hold, "moat does not write this fix: it needs what only you know"))
			continue
		case f.apply == withAll && !opts.All:
			p.hold(f, f.hold+"; --all writes it")
			continue
		}
		if d := files.Find(f.Key); lastWins[strings.ToLower(f.Key)] && len(d) > 0 {
			last := d[len(d)-1]
			p.hold(f, fmt.Sprintf("sshd keeps the last %s it reads, not the first, so a line moat adds would not count: change line %d of %s to %s %s", f.Key, last.Line, last.File, f.Key, f.set))
			continue
		}
		switch f.ID {
		case "permit-root-login":
			root = append(root, f)
		case "password-authentication", "kbd-interactive-authentication":
			pw = append(pw, f)
		default:
			p.change(f, f.set)
		}
	}
	finalRoot := e.Get("permitrootlogin")
	for _, f := range root {
		to, why := rootLoginTo(f, facts, opts.Force)
		if why != "" {
			p.hold(f, why)
		}
		if to != "" {
			p.change(f, to)
			finalRoot = to
		}
	}
	for _, f := range pw {
		if why := passwordsOffUnsafe(f, e, facts, finalRoot, p.Changes); why != "" && !opts.Force {
			p.hold(f, why)
			continue
		}
		p.change(f, f.set)
	}
	// Lines go out in the audit's order, most severe first.
	order := map[string]int{}
	for i, f := range findings {
		order[f.ID] = i
	}
	slices.SortStableFunc(p.Changes, func(a, b Change) int { return order[a.Finding] - order[b.Finding] })
	if err := p.chooseTarget(files); err != nil {
		return nil, err
	}
	p.notes(files)
	return p, nil
}

func orElse(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (p *Plan) hold(f Finding, why string) { p.Held = append(p.Held, Held{f, why}) }

func (p *Plan) change(f Finding, to string) {
	p.Changes = append(p.Changes, Change{Key: f.Key, From: f.Value, To: to, Finding: f.ID})
}

// rootLoginTo decides what PermitRootLogin becomes. "no" needs another way
// in: the invoker, not root, with a key. Otherwise root keeps key logins
// when it has a key, and nothing changes when it has none, since root may
// be how the admin logs in.
func rootLoginTo(f Finding, facts Facts, force bool) (to, why string) {
	inv := facts.Invoker
	if force || inv != "" && inv != "root" && facts.HasKey(inv) {
		return "no", ""
	}
	who := "you run this as root, not through sudo, so root may be how you log in"
	if inv != "" && inv != "root" {
		who = inv + " has no authorized key sshd would accept, so root may be the way in"
		if a := facts.Accounts[inv]; a.Problem != "" {
			who += " (" + a.Problem + ")"
		}
	}
	how := "log in as a user with sudo and a key, then run sudo moat sshd harden; --force writes PermitRootLogin no anyway"
	if f.Value == "yes" && facts.HasKey("root") {
		return "prohibit-password", "PermitRootLogin prohibit-password, not no: " + who + "; for no, " + how
	}
	return "", who + "; " + how
}

// passwordsOffUnsafe says why turning a password method off could lock the
// admin out, or "" if a key still gets them in.
func passwordsOffUnsafe(f Finding, e *Effective, facts Facts, finalRoot string, changes []Change) string {
	method := "password"
	if f.ID == "kbd-interactive-authentication" {
		method = "keyboard-interactive"
	}
	if am := e.Get("authenticationmethods"); am != "" && am != "any" {
		for list := range strings.FieldsSeq(am) {
			for m := range strings.SplitSeq(list, ",") {
				if name, _, _ := strings.Cut(m, ":"); name == method {
					return fmt.Sprintf("AuthenticationMethods %s needs %s: turning it off would leave that list unusable", am, method)
				}
			}
		}
	}
	pubkey := e.Get("pubkeyauthentication") != "no"
	for _, c := range changes {
		if strings.EqualFold(c.Key, "PubkeyAuthentication") {
			pubkey = c.To == "yes"
		}
	}
	if !pubkey {
		return "PubkeyAuthentication is off, so no key can log in"
	}
	inv := facts.Invoker
	if inv != "" && inv != "root" && facts.HasKey(inv) {
		return ""
	}
	rootKeys := finalRoot == "yes" || finalRoot == "prohibit-password" || finalRoot == "without-password"
	if facts.HasKey("root") && rootKeys {
		return ""
	}
	var msg string
	switch {
	case facts.HasKey("root") && !rootKeys && inv != "" && inv != "root":
		msg = inv + " has no authorized key sshd would accept, and root's key is refused with PermitRootLogin " + finalRoot
	case facts.HasKey("root") && !rootKeys:
		msg = "root's key is refused with PermitRootLogin " + finalRoot + " and no other account is known to have a key (run this through sudo as yourself)"
	case inv != "" && inv != "root":
		msg = "neither " + inv + " nor root has an authorized key sshd would accept"
	default:
		msg = "root has no authorized key sshd would accept (if you log in as someone else, run this through sudo as yourself)"
	}
	var why []string
	for _, name := range []string{inv, "root"} {
		if a, ok := facts.Accounts[name]; ok && a.Problem != "" && !slices.Contains(why, a.Problem) {
			why = append(why, a.Problem)
		}
	}
	if len(why) > 0 {
		msg += " (" + strings.Join(why, "; ") + ")"
	}
	return msg + ": turning " + f.Key + " off would lock you out. Add a key (ssh-copy-id), log in with it, and run harden again; --force overrides"
}

// chooseTarget picks the drop-in when an Include in the main file reads a
// directory before anything there sets one of the keys written (sshd
// keeps the first value), as Debian's stock sshd_config does on its first
// line; otherwise the block goes at the top of the main file.
func (p *Plan) chooseTarget(files *Files) error {
	keys := map[string]bool{}
	for _, c := range p.Changes {
		keys[strings.ToLower(c.Key)] = true
	}
	blocked := ""
	if main, err := os.ReadFile(files.Main); err == nil && bytes.Contains(main, []byte(blockBegin+"\n")) {
		blocked = "has moat's block from an earlier run" // keep moat's settings in one place
	}
scan:
	for _, d := range files.Directives {
		if d.Depth != 0 {
			continue
		}
		switch {
		case d.Key == "match":
			break scan
		case keys[d.Key] && blocked == "":
			blocked = fmt.Sprintf("line %d sets %s before any Include", d.Line, d.Key)
		case d.Key == "include" && blocked == "":
			for _, pat := range d.Args {
				abs := resolveInclude(pat)
				dir := filepath.Dir(abs)
				if ok, _ := filepath.Match(filepath.Base(abs), DropInName); !ok {
					continue
				}
				if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
					continue
				}
				p.Target, p.DropIn = filepath.Join(dir, DropInName), true
				p.Via = fmt.Sprintf("read first through the Include on line %d of %s", d.Line, files.Main)
				break scan
			}
		}
	}
	if !p.DropIn {
		p.Target = files.Main
		p.Via = "no Include in " + files.Main + " reads a drop-in directory before its own settings"
		if blocked != "" {
			p.Via = files.Main + " " + blocked
		}
		p.Via += ", so the block goes at its top"
	}
	old, err := os.ReadFile(p.Target)
	switch {
	case errors.Is(err, fs.ErrNotExist) && p.DropIn:
		old = nil
	case err != nil:
		return fmt.Errorf("sshd config: %w", err)
	}
	p.Old = old
	if p.DropIn {
		p.New = []byte(dropInHeader + mergeLines(old, p.Changes))
	} else {
		p.New = insertBlock(old, p.Changes)
	}
	if len(p.Changes) == 0 {
		p.New = p.Old
	}
	return nil
}

// mergeLines keeps the directives already in a harden-written file, with
// the new values replacing old ones in place and new keys appended, so a
// second run does not undo the first.
func mergeLines(old []byte, changes []Change) string {
	type kv struct{ key, line string }
	var lines []kv
	for l := range strings.Lines(string(old)) {
		t := strings.TrimSpace(l)
		if t == blockBegin || t == blockEnd {
			continue
		}
		key, _, err := ParseLine(t)
		if err != nil || key == "" {
			continue
		}
		lines = append(lines, kv{strings.ToLower(key), t})
	}
	for _, c := range changes {
		line := c.Key + " " + c.To
		if i := slices.IndexFunc(lines, func(x kv) bool { return x.key == strings.ToLower(c.Key) }); i >= 0 {
			lines[i].line = line
		} else {
			lines = append(lines, kv{strings.ToLower(c.Key), line})
		}
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l.line + "\n")
	}
	return b.String()
}

// insertBlock puts harden's block at the top of the main file, or
// replaces the block an earlier run put there.
func insertBlock(main []byte, changes []Change) []byte {
	text := string(main)
	var before, old, after string
	if i := strings.Index(text, blockBegin+"\n"); i >= 0 {
		if j := strings.Index(text[i:], blockEnd+"\n"); j >= 0 {
			before, old, after = text[:i], text[i:i+j], text[i+j+len(blockEnd)+1:]
		}
	}
	if old == "" {
		after = text
	}
	block := blockBegin + "\n" + blockHeader + mergeLines([]byte(old), changes) + blockEnd + "\n"
	if old == "" && after != "" {
		block += "\n"
	}
	return []byte(before + block + after)
}

// notes warns about what may keep a change from taking effect.
func (p *Plan) notes(files *Files) {
	keys := map[string]string{}
	for _, c := range p.Changes {
		keys[strings.ToLower(c.Key)] = c.Key
	}
	for _, d := range files.Directives {
		key, ok := keys[d.Key]
		if !ok || d.File == p.Target {
			continue
		}
		switch {
		case d.InMatch:
			p.Notes = append(p.Notes, fmt.Sprintf("%s line %d sets %s inside a Match block: it still wins for the connections that block matches (check with moat sshd audit -C)", d.File, d.Line, key))
		case p.DropIn && filepath.Dir(d.File) == filepath.Dir(p.Target) && filepath.Base(d.File) < DropInName:
			p.Notes = append(p.Notes, fmt.Sprintf("%s line %d sets %s and is read before %s: sshd keeps that first value", d.File, d.Line, key, DropInName))
		}
	}
}

// Result is what Apply did.
type Result struct {
	Written  string   // the config file written; "" when none changed
	Backup   string   // the copy of what it replaced; "" when it was new
	Ignored  []string // changes sshd does not use, because a value read earlier wins
	KeyFixes []string // commands applied to host key files
}

// Apply carries out a plan. The new config is tested with sshd -t on a
// copy (the main file and the drop-in directory in a temporary directory,
// with the Include pointed at the copy) before anything real is touched:
// so a config sshd rejects never exists where sshd, or a reload by someone
// else, or moat dying halfway, could pick it up. Only then is the old file
// backed up and the new one renamed into place; sshd -t runs once more on
// the real files and a failure there puts the old file back.
func (s Server) Apply(ctx context.Context, p *Plan, now time.Time) (*Result, error) {
	res := &Result{}
	if p.ConfigChanges() {
		if err := s.applyConfig(ctx, p, now, res); err != nil {
			return res, err
		}
	}
	var errs []error
	for _, k := range p.KeyFixes {
		if k.Chown {
			if err := os.Chown(k.Path, 0, 0); err != nil {
				errs = append(errs, fmt.Errorf("host key: %w", err))
				continue
			}
		}
		if k.Chmod {
			if err := os.Chmod(k.Path, 0o600); err != nil {
				errs = append(errs, fmt.Errorf("host key: %w", err))
				continue
			}
		}
		res.KeyFixes = append(res.KeyFixes, k.String())
	}
	return res, errors.Join(errs...)
}

func (s Server) applyConfig(ctx context.Context, p *Plan, now time.Time, res *Result) error {
	cur, err := os.ReadFile(p.Target)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("sshd config: %w", err)
	}
	if !bytes.Equal(cur, p.Old) {
		return fmt.Errorf("%s changed since moat read it: run moat sshd harden again", p.Target)
	}
	stage, err := os.MkdirTemp("", "moat-sshd-")
	if err != nil {
		return fmt.Errorf("staging the new sshd config: %w", err)
	}
	defer os.RemoveAll(stage)
	stagedMain, unstage, err := p.stage(stage)
	if err != nil {
		return err
	}
	if err := s.Check(ctx, stagedMain); err != nil {
		return fmt.Errorf("sshd -t rejects the hardened config, so nothing was changed: %s", unstage(err.Error()))
	}
	eff, err := Server{Binary: s.Binary, Config: stagedMain}.Effective(ctx, "")
	if err != nil {
		return fmt.Errorf("sshd -T on the hardened config, so nothing was changed: %s", unstage(err.Error()))
	}
	for _, c := range p.Changes {
		if got := eff.Get(c.Key); !sameSetting(got, c.To) {
			res.Ignored = append(res.Ignored, fmt.Sprintf("%s stays %s: sshd reads another %s line before %s and keeps the first value (find it: grep -rin %s %s)",
				c.Key, got, c.Key, p.Target, c.Key, filepath.Dir(p.Main)))
		}
	}

	mode, uid, gid := fs.FileMode(0o644), 0, 0
	if fi, err := os.Stat(p.Target); err == nil {
		mode = fi.Mode().Perm()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(st.Uid), int(st.Gid)
		}
	}
	if p.Old != nil {
		backup, err := p.backupPath(now)
		if err != nil {
			return err
		}
		if err := writeAtomic(backup, p.Old, mode, uid, gid); err != nil {
			return fmt.Errorf("backing up %s, so nothing was changed: %w", p.Target, err)
		}
		res.Backup = backup
	}
	if err := writeAtomic(p.Target, p.New, mode, uid, gid); err != nil {
		return fmt.Errorf("writing %s: %w", p.Target, err)
	}
	res.Written = p.Target
	if err := s.Check(ctx, p.Main); err != nil {
		// Someone changed another file meanwhile, or staging missed an
		// Include: undo, so sshd's next start still works.
		var undo error
		if p.Old != nil {
			undo = writeAtomic(p.Target, p.Old, mode, uid, gid)
		} else {
			undo = os.Remove(p.Target)
		}
		res.Written = ""
		if undo != nil {
			return fmt.Errorf("sshd -t rejects the installed config (%v) and putting the old %s back failed: %w; restore it from %s now", err, p.Target, undo, orElse(res.Backup, "(it was new: delete it)"))
		}
		return fmt.Errorf("sshd -t rejects the installed config, so the old %s is back: %w", p.Target, err)
	}
	return nil
}

// stage writes the config as it would be into dir and returns the main
// file to test and a function that turns staged paths in sshd's messages
// back into the real ones.
func (p *Plan) stage(dir string) (string, func(string) string, error) {
	stagedMain := filepath.Join(dir, "sshd_config")
	if !p.DropIn {
		if err := os.WriteFile(stagedMain, p.New, 0o600); err != nil {
			return "", nil, fmt.Errorf("staging the new sshd config: %w", err)
		}
		return stagedMain, strings.NewReplacer(stagedMain, p.Main).Replace, nil
	}
	realDir, stagedDir := filepath.Dir(p.Target), filepath.Join(dir, "d")
	if err := os.Mkdir(stagedDir, 0o700); err != nil {
		return "", nil, fmt.Errorf("staging the new sshd config: %w", err)
	}
	entries, err := os.ReadDir(realDir)
	if err != nil {
		return "", nil, fmt.Errorf("sshd config: %w", err)
	}
	for _, ent := range entries {
		if ent.IsDir() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(realDir, ent.Name()))
		if err != nil {
			continue // a dangling link: sshd cannot read it either
		}
		if err := os.WriteFile(filepath.Join(stagedDir, ent.Name()), data, 0o600); err != nil {
			return "", nil, fmt.Errorf("staging the new sshd config: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(stagedDir, DropInName), p.New, 0o600); err != nil {
		return "", nil, fmt.Errorf("staging the new sshd config: %w", err)
	}
	main, err := os.ReadFile(p.Main)
	if err != nil {
		return "", nil, fmt.Errorf("sshd config: %w", err)
	}
	var b strings.Builder
	for line := range strings.Lines(string(main)) {
		key, args, err := ParseLine(line)
		if err != nil || !strings.EqualFold(key, "include") {
			b.WriteString(line)
			continue
		}
		b.WriteString("Include")
		for _, a := range args {
			abs := resolveInclude(a)
			if filepath.Dir(abs) == realDir {
				abs = filepath.Join(stagedDir, filepath.Base(abs))
			}
			b.WriteString(" " + quoteArg(abs))
		}
		b.WriteString("\n")
	}
	if err := os.WriteFile(stagedMain, []byte(b.String()), 0o600); err != nil {
		return "", nil, fmt.Errorf("staging the new sshd config: %w", err)
	}
	return stagedMain, strings.NewReplacer(stagedMain, p.Main, stagedDir, realDir).Replace, nil
}

// backupPath names the copy of the file being replaced. It must not match
// any Include pattern, or sshd would read the old settings too.
func (p *Plan) backupPath(now time.Time) (string, error) {
	base := p.Target + ".moat-bak-" + now.UTC().Format("20060102T150405Z")
	path := base
	for i := 2; ; i++ {
		if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
			break
		}
		path = fmt.Sprintf("%s-%d", base, i)
	}
	for _, pat := range p.includes {
		if ok, _ := filepath.Match(pat, path); ok {
			return "", fmt.Errorf("the backup %s would be read by sshd through Include %s, so nothing was changed: narrow the Include to *.conf", path, pat)
		}
	}
	return path, nil
}

// sameSetting compares a value sshd -T printed with one harden wrote.
func sameSetting(got, want string) bool {
	norm := func(s string) string {
		s = strings.ToLower(strings.TrimSpace(s))
		if s == "without-password" {
			return "prohibit-password"
		}
		return s
	}
	return norm(got) == norm(want)
}

// writeAtomic replaces path with data: a temporary file in the same
// directory, synced, then renamed over it, so a reader sees the old file or
// the new one, never half of one.
func writeAtomic(path string, data []byte, mode fs.FileMode, uid, gid int) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".moat-tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		if err := f.Chown(uid, gid); err != nil {
			return err
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // makes the rename durable; nothing to do if it fails
		d.Close()
	}
	return nil
}

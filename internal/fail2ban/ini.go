package fail2ban

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// iniFile is one file as Python's configparser reads it with fail2ban's
// settings: keys lower-cased, "=" or ":" between key and value, values
// continued on more-indented lines, "#" and ";" comment lines, and ";"
// after white space starting an inline comment.
type iniFile struct {
	path     string
	defaults map[string]string
	sections map[string]map[string]string
	order    []string // section names in file order
}

// parseINI reads one file. Like configparser (strict mode), a repeated
// section or key, or a line that is neither, is an error.
func parseINI(path string, r io.Reader) (*iniFile, error) {
	f := &iniFile{path: path, defaults: map[string]string{}, sections: map[string]map[string]string{}}
	var (
		cur         map[string]string // nil before the first header
		key         string
		val         []string
		indent      int
		lineNo      int
		inDefault   bool
		seenInCur   map[string]bool
		flush       func()
		sectionSeen = map[string]bool{}
	)
	flush = func() {
		if key != "" && cur != nil {
			cur[key] = strings.TrimRight(strings.Join(val, "\n"), " \t\n")
		}
		key, val = "", nil
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		lineNo++
		raw := strings.TrimRight(sc.Text(), "\r")
		trimmed := strings.TrimSpace(raw)
		if strings.HasPrefix(trimmed, "#") || strings.HasPrefix(trimmed, ";") {
			continue // a comment line, even inside a multi-line value
		}
		line := stripInlineComment(raw)
		value := strings.TrimSpace(line)
		if value == "" {
			// configparser keeps empty lines inside a value (and trims
			// them at its end).
			if key != "" {
				val = append(val, "")
			}
			continue
		}
		lead := len(line) - len(strings.TrimLeft(line, " \t"))
		if key != "" && lead > indent {
			val = append(val, value)
			continue
		}
		flush()
		indent = lead
		if m := sectionRe.FindStringSubmatch(value); m != nil {
			name := m[1]
			if sectionSeen[name] {
				return nil, fmt.Errorf("%s:%d: section [%s] appears twice (fail2ban refuses the file too)", path, lineNo, name)
			}
			sectionSeen[name] = true
			seenInCur = map[string]bool{}
			inDefault = name == "DEFAULT"
			if inDefault {
				cur = f.defaults
			} else {
				cur = map[string]string{}
				f.sections[name] = cur
				f.order = append(f.order, name)
			}
			continue
		}
		if cur == nil {
			return nil, fmt.Errorf("%s:%d: %q before any [section] header", path, lineNo, value)
		}
		i := strings.IndexAny(value, "=:")
		if i < 0 {
			return nil, fmt.Errorf("%s:%d: %q is neither a [section], a key = value nor a comment", path, lineNo, value)
		}
		k := strings.ToLower(strings.TrimSpace(value[:i]))
		if seenInCur[k] {
			return nil, fmt.Errorf("%s:%d: key %q appears twice in its section (fail2ban refuses the file too)", path, lineNo, k)
		}
		seenInCur[k] = true
		key = k
		val = []string{strings.TrimSpace(value[i+1:])}
	}
	flush()
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return f, nil
}

var sectionRe = regexp.MustCompile(`^\[(.+)\]`)

// stripInlineComment cuts a ";" comment that follows white space, as
// configparser's inline_comment_prefixes do. "#" is not an inline comment:
// fail2ban's regexes contain it.
func stripInlineComment(s string) string {
	for i := 1; i < len(s); i++ {
		if s[i] == ';' && (s[i-1] == ' ' || s[i-1] == '\t') {
			return s[:i]
		}
	}
	return s
}

// config is several files merged as fail2ban merges them: later files'
// keys replace earlier ones, and the replaced values stay reachable as
// KNOWN/<section> (for %(known/key)s).
type config struct {
	defaults map[string]string
	sections map[string]map[string]string
	order    []string
	files    []string // read, in order
}

func newConfig() *config {
	return &config{defaults: map[string]string{}, sections: map[string]map[string]string{}}
}

// readWithIncludes reads path after its [INCLUDES] before= files and
// before its after= files, each with its own .local, recursively and
// skipping loops, as fail2ban's SafeConfigParserWithIncludes does. A
// missing file is skipped, as fail2ban skips it.
func (c *config) readWithIncludes(path string, seen []string) error {
	for _, p := range expandLocal([]string{path}) {
		if err := c.readOne(p, seen); err != nil {
			return err
		}
	}
	return nil
}

func (c *config) readOne(path string, seen []string) error {
	data, err := os.Open(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return fmt.Errorf("read fail2ban config: %w", err)
	}
	f, err := parseINI(path, data)
	data.Close()
	if err != nil {
		return err
	}
	inc := f.sections["INCLUDES"]
	include := func(opt string) error {
		for _, name := range strings.Split(inc[opt], "\n") {
			name = strings.TrimSpace(name)
			if name == "" {
				continue
			}
			if !filepath.IsAbs(name) {
				name = filepath.Join(filepath.Dir(path), name)
			}
			if contains(seen, name) || name == path {
				continue
			}
			if err := c.readWithIncludes(name, append(append([]string{}, seen...), path)); err != nil {
				return err
			}
		}
		return nil
	}
	if err := include("before"); err != nil {
		return err
	}
	c.merge(f)
	return include("after")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// expandLocal puts each file's .local right after it.
func expandLocal(paths []string) []string {
	var out []string
	for _, p := range paths {
		out = append(out, p)
		local := strings.TrimSuffix(p, filepath.Ext(p)) + ".local"
		if local != p && !contains(paths, local) {
			if _, err := os.Stat(local); err == nil {
				out = append(out, local)
			}
		}
	}
	return out
}

func (c *config) merge(f *iniFile) {
	c.files = append(c.files, f.path)
	for k, v := range f.defaults {
		c.defaults[k] = v
	}
	for _, name := range f.order {
		s := f.sections[name]
		old, ok := c.sections[name]
		if !ok {
			cp := make(map[string]string, len(s))
			for k, v := range s {
				cp[k] = v
			}
			c.sections[name] = cp
			c.order = append(c.order, name)
			continue
		}
		known := c.sections["KNOWN/"+name]
		if known == nil {
			known = map[string]string{}
			c.sections["KNOWN/"+name] = known
		}
		for k, v := range s {
			if ov, had := old[k]; had {
				known[k] = ov
			}
			old[k] = v
		}
	}
}

// readLayered reads dir/name.conf, dir/name.d/*.conf, dir/name.local and
// dir/name.d/*.local in that order, as fail2ban's ConfigReader.read does.
func (c *config) readLayered(dir, name string) error {
	base := filepath.Join(dir, name)
	files := []string{base + ".conf"}
	confs, _ := filepath.Glob(filepath.Join(base+".d", "*.conf"))
	sort.Strings(confs)
	files = append(files, confs...)
	files = append(files, base+".local")
	locals, _ := filepath.Glob(filepath.Join(base+".d", "*.local"))
	sort.Strings(locals)
	files = append(files, locals...)
	for _, f := range files {
		if err := c.readOne(f, nil); err != nil {
			return err
		}
		// Each file's includes are expanded by readOne; its .local is a
		// file of the list already.
	}
	return nil
}

// errMissing is an interpolation that names a key nowhere defined.
type errMissing struct{ section, key, ref string }

func (e *errMissing) Error() string {
	return fmt.Sprintf("[%s] %s: %%(%s)s is not defined", e.section, e.key, e.ref)
}

// raw returns the uninterpolated value of key in section, then [DEFAULT].
func (c *config) raw(section, key string) (string, bool) {
	if s, ok := c.sections[section]; ok {
		if v, ok := s[key]; ok {
			return v, true
		}
	}
	v, ok := c.defaults[key]
	return v, ok
}

// get returns key in section with %(name)s interpolated as configparser's
// BasicInterpolation does, with fail2ban's additions: %(__name__)s is
// the section's name, %(sec/key)s reads another section, and
// %(known/key)s reads the value that a later file replaced. vars come
// first, as configparser's get(vars=) does.
func (c *config) get(section, key string, vars map[string]string) (string, error) {
	if v, ok := vars[key]; ok {
		return c.interpolate(section, key, v, vars, 0)
	}
	v, ok := c.raw(section, key)
	if !ok {
		return "", &errMissing{section: section, key: key, ref: key}
	}
	return c.interpolate(section, key, v, vars, 0)
}

// getEx is fail2ban's get_ex: "sec/key" names another section.
func (c *config) getEx(section, key string, vars map[string]string) (string, error) {
	if sec, opt, ok := strings.Cut(key, "/"); ok && optNameRe.MatchString(key) {
		switch strings.ToLower(sec) {
		case "known":
			if v, ok := c.sections["KNOWN/"+section][opt]; ok {
				return c.interpolate(section, opt, v, vars, 0)
			}
		case "default":
			if v, ok := c.defaults[opt]; ok {
				return c.interpolate(section, opt, v, vars, 0)
			}
		default:
			if _, ok := c.sections[sec]; ok {
				if v, err := c.get(sec, opt, vars); err == nil {
					return v, nil
				}
			}
		}
	}
	return c.get(section, key, vars)
}

var optNameRe = regexp.MustCompile(`^([\w\-]+)/([^\s>]+)$`)

// maxDepth is configparser's MAX_INTERPOLATION_DEPTH.
const maxDepth = 10

func (c *config) interpolate(section, key, v string, vars map[string]string, depth int) (string, error) {
	if depth > maxDepth {
		return "", fmt.Errorf("[%s] %s: interpolation deeper than %d levels (a loop?)", section, key, maxDepth)
	}
	if !strings.Contains(v, "%") {
		return v, nil
	}
	var b strings.Builder
	for {
		i := strings.IndexByte(v, '%')
		if i < 0 {
			b.WriteString(v)
			return b.String(), nil
		}
		b.WriteString(v[:i])
		v = v[i:]
		switch {
		case strings.HasPrefix(v, "%%"):
			b.WriteByte('%')
			v = v[2:]
		case strings.HasPrefix(v, "%("):
			end := strings.Index(v, ")s")
			if end < 0 {
				return "", fmt.Errorf("[%s] %s: bad interpolation %q: want %%(name)s", section, key, v)
			}
			ref := strings.ToLower(v[2:end])
			v = v[end+2:]
			val, err := c.lookup(section, ref, vars)
			if err != nil {
				return "", fmt.Errorf("[%s] %s: %%(%s)s is not defined", section, key, ref)
			}
			val, err = c.interpolate(section, key, val, vars, depth+1)
			if err != nil {
				return "", err
			}
			b.WriteString(val)
		default:
			return "", fmt.Errorf("[%s] %s: a lone %% in %q: write %%%% for a percent sign", section, key, v)
		}
	}
}

// lookup finds the raw value a %(ref)s names.
func (c *config) lookup(section, ref string, vars map[string]string) (string, error) {
	if ref == "__name__" {
		return section, nil
	}
	if v, ok := vars[ref]; ok {
		return v, nil
	}
	if sec, opt, ok := strings.Cut(ref, "/"); ok {
		switch strings.ToLower(sec) {
		case "known":
			if v, ok := c.sections["KNOWN/"+section][opt]; ok {
				return v, nil
			}
			if v, ok := c.defaults[opt]; ok {
				return v, nil
			}
		case "default":
			if v, ok := c.defaults[opt]; ok {
				return v, nil
			}
		default:
			if v, ok := c.sections[sec][opt]; ok {
				return v, nil
			}
			if v, ok := c.defaults[opt]; ok {
				return v, nil
			}
		}
	}
	if v, ok := c.raw(section, ref); ok {
		return v, nil
	}
	return "", &errMissing{section: section, ref: ref}
}

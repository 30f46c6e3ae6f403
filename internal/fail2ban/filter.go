package fail2ban

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Filter is a fail2ban filter (filter.d/NAME.conf with its .local and
// includes), its [Init] and the jail's arguments applied, and its tags
// (<__prefix_line>, <mdre-<mode>>...) substituted. The regexes are still
// Python's, with fail2ban's own tags (<HOST>, <F-USER>...) in place.
type Filter struct {
	Name         string
	Files        []string // read, in order
	PrefRegex    string
	FailRegex    []string
	IgnoreRegex  []string
	DatePattern  string
	MaxLines     int
	JournalMatch []string
}

// filterOpts are the options fail2ban's FilterReader takes from a filter.
var filterOpts = []string{"usedns", "prefregex", "ignoreregex", "failregex", "maxlines", "datepattern", "journalmatch"}

// LoadFilter reads filter name from dir/filter.d with the arguments a jail
// gives it (filter = name[mode=aggressive]). backend is the jail's (its
// logtype, file or journal, selects the line prefix, as in fail2ban).
// jailOpts are filter options set in the jail itself; they win.
func LoadFilter(dir, name string, args map[string]string, backend string, jailOpts map[string]string) (*Filter, error) {
	if strings.ContainsAny(name, `/\`) || name == "" || name == "." || name == ".." {
		return nil, fmt.Errorf("filter name %q: want a file name in filter.d", name)
	}
	fdir := filepath.Join(dir, "filter.d")
	if _, err := os.Stat(filepath.Join(fdir, name+".conf")); err != nil {
		if _, err2 := os.Stat(filepath.Join(fdir, name+".local")); err2 != nil {
			return nil, fmt.Errorf("filter %s: %w", name, err)
		}
	}
	c := newConfig()
	if err := c.readLayered(fdir, name); err != nil {
		return nil, fmt.Errorf("filter %s: %w", name, err)
	}
	// initOpts: the jail's arguments, then the filter's own [Init]
	// (fail2ban's DefinitionInitConfigReader.getOptions).
	init := map[string]string{}
	for k, v := range args {
		init[k] = v
	}
	if _, ok := init["logtype"]; !ok {
		if _, ok := c.sections["Definition"]["logtype"]; !ok {
			init["logtype"] = "file"
			if strings.HasPrefix(backend, "systemd") {
				init["logtype"] = "journal"
			}
		}
	}
	if sec, ok := c.sections["Init"]; ok {
		for _, k := range sortedKeys(sec) {
			v, err := c.get("Init", k, nil)
			if err != nil {
				continue
			}
			if !strings.HasPrefix(k, "known/") {
				init["known/"+k] = v
			}
			if _, ok := init[k]; !ok {
				init[k] = v
			}
		}
	}
	vars := init
	combined := map[string]string{}
	keys := map[string]bool{}
	for k := range c.sections["Definition"] {
		keys[k] = true
	}
	for k := range c.defaults {
		keys[k] = true
	}
	for k := range keys {
		if v, err := c.get("Definition", k, vars); err == nil {
			combined[k] = v
		}
	}
	for k, v := range init {
		combined[k] = v
	}
	for k, v := range jailOpts {
		combined[k] = v
	}
	lookup := func(tag string) (string, bool) {
		if v, ok := combined[tag]; ok {
			return v, true
		}
		v, err := c.getEx("Definition", tag, vars)
		return v, err == nil
	}
	f := &Filter{Name: name, Files: c.files}
	get := func(opt string) (string, error) {
		v, ok := combined[opt]
		if !ok {
			return "", nil
		}
		return substituteTags(opt, v, lookup)
	}
	var err error
	if f.PrefRegex, err = get("prefregex"); err != nil {
		return nil, fmt.Errorf("filter %s: %w", name, err)
	}
	fr, err := get("failregex")
	if err != nil {
		return nil, fmt.Errorf("filter %s: %w", name, err)
	}
	f.FailRegex = splitLines(fr)
	ir, err := get("ignoreregex")
	if err != nil {
		return nil, fmt.Errorf("filter %s: %w", name, err)
	}
	f.IgnoreRegex = splitLines(ir)
	if f.DatePattern, err = get("datepattern"); err != nil {
		return nil, fmt.Errorf("filter %s: %w", name, err)
	}
	ml, err := get("maxlines")
	if err != nil {
		return nil, fmt.Errorf("filter %s: %w", name, err)
	}
	if ml != "" {
		if f.MaxLines, err = strconv.Atoi(strings.TrimSpace(ml)); err != nil {
			return nil, fmt.Errorf("filter %s: maxlines %q: want a whole number", name, ml)
		}
	}
	jm, err := get("journalmatch")
	if err != nil {
		return nil, fmt.Errorf("filter %s: %w", name, err)
	}
	f.JournalMatch = splitLines(jm)
	if len(f.FailRegex) == 0 {
		return nil, fmt.Errorf("filter %s: no failregex", name)
	}
	return f, nil
}

func splitLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// tagRe is fail2ban's TAG_CRE.
var tagRe = regexp.MustCompile(`<([^ <>]+)>`)

// maxTagReplace is fail2ban's MAX_TAG_REPLACE_COUNT: past it, a tag
// refers to itself.
const maxTagReplace = 25

var errTagLoop = errors.New("tags refer to each other in a loop")

// substituteTags replaces <tag> with the option of that name, innermost
// first, until none is left that names an option (fail2ban's
// substituteRecursiveTags). <HOST> and the other regex tags name no option
// and stay.
func substituteTags(opt, v string, lookup func(string) (string, bool)) (string, error) {
	counts := map[string]int{}
	for pos := 0; ; {
		loc := tagRe.FindStringSubmatchIndex(v[pos:])
		if loc == nil {
			return v, nil
		}
		tag := v[pos+loc[2] : pos+loc[3]]
		start := pos + loc[0]
		repl, ok := lookup(tag)
		if !ok || tag == opt && repl == v {
			pos = pos + loc[1]
			if pos >= len(v) {
				// Restart: an outer tag may have been completed by an
				// inner replacement (<lt_<logtype>/...>).
				return v, nil
			}
			continue
		}
		counts[tag]++
		if counts[tag] > maxTagReplace*4 {
			return "", fmt.Errorf("%s: <%s>: %w", opt, tag, errTagLoop)
		}
		v = v[:start] + repl + v[start+loc[1]-loc[0]:]
		// Scan again from the start: the replacement, or an outer tag
		// it completes, may hold more tags.
		pos = 0
	}
}

package sshd

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// maxIncludeDepth is sshd's own limit (SERVCONF_MAX_DEPTH): deeper nesting,
// such as a file that includes itself, is an error there too.
const maxIncludeDepth = 16

// Directive is one keyword line of an sshd_config file.
type Directive struct {
	File    string
	Line    int      // 1-based
	Key     string   // lower case
	Args    []string // unquoted
	InMatch bool     // after a Match line: applies only to matching connections
	Depth   int      // 0 in the main file, 1 in a file it includes, ...
}

// Files is a main sshd_config and the files it includes, as sshd reads them.
type Files struct {
	Main       string
	Directives []Directive // in reading order; Include and Match lines are kept
}

// ParseLine splits one sshd_config line the way sshd 9.x does (servconf.c
// with misc.c's strdelim and argv_split): the keyword ends at whitespace or
// '=' ("Port=22", "Port = 22" and "Port 22" are alike), arguments may be
// quoted with " or ' and escape \", \', \\ and an unquoted "\ ", and an
// argument starting with # ends the line. Blank and comment lines return
// an empty key. The key keeps its case.
func ParseLine(line string) (key string, args []string, err error) {
	s := strings.TrimRight(line, " \t\r\n\f")
	s = strings.TrimLeft(s, " \t\r\n")
	if s == "" || s[0] == '#' {
		return "", nil, nil
	}
	end := strings.IndexAny(s, " \t\r\n\"=")
	if end < 0 {
		return "", nil, fmt.Errorf("no argument after keyword %q", s)
	}
	if s[end] == '"' {
		// sshd would take a quoted keyword, but none exists: say so plainly.
		return "", nil, fmt.Errorf("keyword %q: a keyword cannot be quoted", s[:end])
	}
	key, rest := s[:end], s[end:]
	if key == "" {
		return "", nil, fmt.Errorf("line starts with %q: want a keyword first", rest[:1])
	}
	// One '=' may separate the keyword from its arguments, with blanks
	// on either side.
	rest = strings.TrimLeft(rest, " \t\r\n")
	if strings.HasPrefix(rest, "=") {
		rest = strings.TrimLeft(rest[1:], " \t\r\n")
	}
	if rest == "" {
		return "", nil, fmt.Errorf("no argument after keyword %q", key)
	}
	args, err = splitArgs(rest)
	if err != nil {
		return "", nil, fmt.Errorf("keyword %q: %w", key, err)
	}
	return key, args, nil
}

// splitArgs is OpenSSH's argv_split with terminate_on_comment set.
func splitArgs(s string) ([]string, error) {
	var args []string
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' || s[i] == '\t' {
			continue
		}
		if s[i] == '#' {
			break
		}
		var arg strings.Builder
		var quote byte
		for ; i < len(s); i++ {
			c := s[i]
			switch {
			case c == '\\' && i+1 < len(s) && (s[i+1] == '\'' || s[i+1] == '"' || s[i+1] == '\\' || quote == 0 && s[i+1] == ' '):
				i++
				arg.WriteByte(s[i])
				continue
			case quote == 0 && (c == ' ' || c == '\t'):
				// The argument ends: leave the switch, then the loop.
			case quote == 0 && (c == '"' || c == '\''):
				quote = c
				continue
			case quote != 0 && c == quote:
				quote = 0
				continue
			default:
				arg.WriteByte(c)
				continue
			}
			break
		}
		if quote != 0 {
			return nil, errors.New("invalid quotes: a quote is never closed")
		}
		args = append(args, arg.String())
	}
	return args, nil
}

// quoteArg writes an argument so that splitArgs reads it back unchanged.
func quoteArg(a string) string {
	if a != "" && !strings.ContainsAny(a, " \t\"'\\#=") {
		return a
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(a); i++ {
		if a[i] == '"' || a[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(a[i])
	}
	b.WriteByte('"')
	return b.String()
}

// ReadConfig reads the main config file and, recursively, the files its
// Include lines name, in sshd's order: an Include is read where it stands,
// a relative pattern is relative to /etc/ssh, matches come sorted (as
// glob(3) sorts them), and a pattern that matches nothing is not an error.
func ReadConfig(main string) (*Files, error) {
	f := &Files{Main: main}
	if err := f.read(main, 0, false); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *Files) read(path string, depth int, inMatch bool) error {
	if depth > maxIncludeDepth {
		return fmt.Errorf("sshd config: %s: Include nested deeper than %d files (does a file include itself?)", path, maxIncludeDepth)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("sshd config: %w", err)
	}
	n := 0
	for line := range strings.Lines(string(data)) {
		n++
		key, args, err := ParseLine(line)
		if err != nil {
			return fmt.Errorf("sshd config: %s line %d: %w", path, n, err)
		}
		if key == "" {
			continue
		}
		key = strings.ToLower(key)
		if key == "match" {
			inMatch = true
		}
		f.Directives = append(f.Directives, Directive{File: path, Line: n, Key: key, Args: args, InMatch: inMatch, Depth: depth})
		if key != "include" {
			continue
		}
		for _, pattern := range args {
			matches, err := filepath.Glob(resolveInclude(pattern))
			if err != nil {
				return fmt.Errorf("sshd config: %s line %d: Include %q: %w", path, n, pattern, err)
			}
			for _, m := range matches {
				// The included file's Match state ends with it, as in sshd.
				if err := f.read(m, depth+1, inMatch); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// resolveInclude makes an Include pattern absolute the way sshd does.
func resolveInclude(pattern string) string {
	if strings.HasPrefix(pattern, "~") || filepath.IsAbs(pattern) {
		return pattern
	}
	return filepath.Join(configDir, pattern)
}

// Find returns the directives with a keyword (any case).
func (f *Files) Find(key string) []Directive {
	key = strings.ToLower(key)
	var out []Directive
	for _, d := range f.Directives {
		if d.Key == key {
			out = append(out, d)
		}
	}
	return out
}

// IncludePatterns returns every Include pattern, made absolute.
func (f *Files) IncludePatterns() []string {
	var out []string
	for _, d := range f.Find("include") {
		for _, p := range d.Args {
			out = append(out, resolveInclude(p))
		}
	}
	return out
}

package config

import (
	"strconv"
	"strings"
)

// The TOML decoder knows where each key is but does not say, so positions
// re-reads the (already syntax-checked) source with a small scanner that
// understands just enough TOML to find where each key and each array element
// starts: tables, arrays of tables, dotted and quoted keys, strings of all
// four kinds, comments, arrays and inline tables spanning lines.
//
// Paths are written like "firewall.open[1]" or "door[0].name"; segments that
// are not bare keys are quoted, as toml.Key.String does.

// positions maps key paths to the 1-based line they start on.
type positions map[string]int

// line returns the line of path, or of its closest enclosing key or element
// when path itself was not found (say, an inline table written on one line).
// It returns 0 when nothing is known.
func (ps positions) line(path string) int {
	for path != "" {
		if n, ok := ps[path]; ok {
			return n
		}
		path = parentPath(path)
	}
	return 0
}

// parentPath strips the last ".key" or "[i]" from path.
func parentPath(path string) string {
	if strings.HasSuffix(path, "]") {
		if i := strings.LastIndexByte(path, '['); i >= 0 {
			return path[:i]
		}
		return ""
	}
	// Walk back over the last segment, which may be quoted and contain dots.
	inQuote := false
	for i := len(path) - 1; i >= 0; i-- {
		switch c := path[i]; {
		case c == '"' && (i == 0 || path[i-1] != '\\'):
			inQuote = !inQuote
		case c == '.' && !inQuote:
			return path[:i]
		case c == ']' && !inQuote:
			return path[:i+1]
		}
	}
	return ""
}

// joinKey appends key to path, quoting it when it is not a bare key.
func joinKey(path, key string) string {
	if path == "" {
		return quoteKey(key)
	}
	return path + "." + quoteKey(key)
}

// joinIndex appends an array index to path.
func joinIndex(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

func quoteKey(k string) string {
	if k == "" {
		return `""`
	}
	for i := 0; i < len(k); i++ {
		if !isBare(k[i]) {
			return strconv.Quote(k)
		}
	}
	return k
}

func isBare(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// scanPositions finds the line of every key and array element in src. It
// never fails: on input it does not understand it skips ahead, so at worst
// some paths are missing and line falls back to an enclosing one.
func scanPositions(src string) positions {
	s := &scanner{src: src, line: 1, ps: positions{}, aotCount: map[string]int{}, aotLast: map[string]int{}}
	s.document()
	return s.ps
}

type scanner struct {
	src  string
	i    int
	line int
	ps   positions

	// Arrays of tables: how many elements each indexed path has so far, and
	// the index of the latest one by unindexed path, so that [a.b] after the
	// second [[a]] is known as a[1].b.
	aotCount map[string]int
	aotLast  map[string]int
}

func (s *scanner) peek(off int) byte {
	if s.i+off < len(s.src) {
		return s.src[s.i+off]
	}
	return 0
}

func (s *scanner) eof() bool { return s.i >= len(s.src) }

func (s *scanner) advance() {
	if s.i < len(s.src) {
		if s.src[s.i] == '\n' {
			s.line++
		}
		s.i++
	}
}

// record notes path at the current line unless it was seen before: the
// first mention is where the admin should look.
func (s *scanner) record(path string, line int) {
	if _, ok := s.ps[path]; !ok {
		s.ps[path] = line
	}
}

func (s *scanner) skipSpace() {
	for c := s.peek(0); c == ' ' || c == '\t'; c = s.peek(0) {
		s.advance()
	}
}

func (s *scanner) skipComment() {
	if s.peek(0) != '#' {
		return
	}
	for !s.eof() && s.peek(0) != '\n' {
		s.advance()
	}
}

// skipBlank skips whitespace, newlines and comments (inside arrays and
// TOML 1.1 inline tables).
func (s *scanner) skipBlank() {
	for !s.eof() {
		switch s.peek(0) {
		case ' ', '\t', '\r', '\n':
			s.advance()
		case '#':
			s.skipComment()
		default:
			return
		}
	}
}

func (s *scanner) skipLine() {
	for !s.eof() && s.peek(0) != '\n' {
		s.advance()
	}
	s.advance()
}

func (s *scanner) document() {
	table := ""
	for !s.eof() {
		start := s.i
		s.skipBlank()
		if s.eof() {
			return
		}
		line := s.line
		switch {
		case s.peek(0) == '[':
			array := s.peek(1) == '['
			s.advance()
			if array {
				s.advance()
			}
			table = s.tablePath(s.key(), array)
			s.skipLine()
		default:
			keys := s.key()
			if len(keys) == 0 {
				s.skipLine()
				break
			}
			path := table
			for _, k := range keys {
				path = joinKey(path, k)
				s.record(path, line)
			}
			s.skipSpace()
			if s.peek(0) != '=' {
				s.skipLine()
				break
			}
			s.advance()
			s.skipSpace()
			s.value(path)
		}
		if s.i == start { // never loop without progress
			s.advance()
		}
	}
}

// tablePath turns a header's keys into an indexed path, counting elements
// of arrays of tables, and records it and the tables it implies.
func (s *scanner) tablePath(keys []string, array bool) string {
	indexed, plain := "", ""
	for n, k := range keys {
		indexed, plain = joinKey(indexed, k), joinKey(plain, k)
		s.record(indexed, s.line)
		if n == len(keys)-1 && array {
			i := s.aotCount[indexed]
			s.aotCount[indexed] = i + 1
			s.aotLast[plain] = i
			indexed = joinIndex(indexed, i)
			s.record(indexed, s.line)
			continue
		}
		if i, ok := s.aotLast[plain]; ok {
			indexed = joinIndex(indexed, i)
		}
	}
	return indexed
}

// key reads a dotted key (bare or quoted parts, blanks around dots).
func (s *scanner) key() []string {
	var keys []string
	for {
		s.skipSpace()
		var k string
		switch c := s.peek(0); {
		case c == '"':
			raw := s.basicString()
			if u, err := strconv.Unquote(raw); err == nil {
				k = u
			} else if len(raw) >= 2 {
				k = raw[1 : len(raw)-1]
			}
		case c == '\'':
			raw := s.literalString()
			if len(raw) >= 2 {
				k = raw[1 : len(raw)-1]
			}
		case isBare(c):
			start := s.i
			for isBare(s.peek(0)) {
				s.advance()
			}
			k = s.src[start:s.i]
		default:
			return keys
		}
		keys = append(keys, k)
		s.skipSpace()
		if s.peek(0) != '.' {
			return keys
		}
		s.advance()
	}
}

// value skips one value, recording where array elements and inline-table
// keys start.
func (s *scanner) value(path string) {
	switch c := s.peek(0); {
	case c == '"' && s.peek(1) == '"' && s.peek(2) == '"':
		s.multiline('"')
	case c == '"':
		s.basicString()
	case c == '\'' && s.peek(1) == '\'' && s.peek(2) == '\'':
		s.multiline('\'')
	case c == '\'':
		s.literalString()
	case c == '[':
		s.advance()
		for n := 0; ; n++ {
			s.skipBlank()
			if s.eof() || s.peek(0) == ']' {
				s.advance()
				return
			}
			start := s.i
			elem := joinIndex(path, n)
			s.record(elem, s.line)
			s.value(elem)
			s.skipBlank()
			if s.peek(0) == ',' {
				s.advance()
			}
			if s.i == start {
				s.advance()
			}
		}
	case c == '{':
		s.advance()
		for {
			s.skipBlank()
			if s.eof() || s.peek(0) == '}' {
				s.advance()
				return
			}
			start := s.i
			line := s.line
			sub := path
			for _, k := range s.key() {
				sub = joinKey(sub, k)
				s.record(sub, line)
			}
			s.skipSpace()
			if s.peek(0) == '=' {
				s.advance()
				s.skipSpace()
				s.value(sub)
			}
			s.skipBlank()
			if s.peek(0) == ',' {
				s.advance()
			}
			if s.i == start {
				s.advance()
			}
		}
	default:
		// Numbers, booleans, dates (which may contain a space).
		for !s.eof() {
			switch s.peek(0) {
			case ',', ']', '}', '\n', '\r', '#':
				return
			}
			s.advance()
		}
	}
}

// basicString reads "..." with backslash escapes and returns it with quotes.
func (s *scanner) basicString() string {
	start := s.i
	s.advance()
	for !s.eof() {
		switch s.peek(0) {
		case '\\':
			s.advance()
		case '"':
			s.advance()
			return s.src[start:s.i]
		case '\n':
			return s.src[start:s.i]
		}
		s.advance()
	}
	return s.src[start:s.i]
}

// literalString reads '...' and returns it with quotes.
func (s *scanner) literalString() string {
	start := s.i
	s.advance()
	for !s.eof() {
		switch s.peek(0) {
		case '\'':
			s.advance()
			return s.src[start:s.i]
		case '\n':
			return s.src[start:s.i]
		}
		s.advance()
	}
	return s.src[start:s.i]
}

// multiline skips a multi-line string, basic (q is '"', with escapes) or
// literal (q is '\”); up to two extra quotes before the closing three
// belong to the content.
func (s *scanner) multiline(q byte) {
	s.advance()
	s.advance()
	s.advance()
	for !s.eof() {
		c := s.peek(0)
		if c == '\\' && q == '"' {
			s.advance()
			s.advance()
			continue
		}
		if c == q && s.peek(1) == q && s.peek(2) == q {
			s.advance()
			s.advance()
			s.advance()
			for n := 0; n < 2 && s.peek(0) == q; n++ {
				s.advance()
			}
			return
		}
		s.advance()
	}
}

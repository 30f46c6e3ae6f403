package fail2ban

import (
	"fmt"
	"regexp"
	"strings"
	"sync/atomic"
)

// UnsupportedError names a Python regex construct that Go's RE2 cannot
// express, and where it is.
type UnsupportedError struct {
	Construct string // e.g. "lookbehind (?<=...)"
	Offset    int    // byte offset in the regex
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("%s at offset %d: Go's RE2 has no equivalent", e.Construct, e.Offset)
}

// translatePython rewrites a Python `re` pattern as a Go RE2 pattern with
// the same meaning where there is one: (?P<n>...), \s, \d, classes and
// flags carry over; \Z becomes \z; {,n} becomes {0,n}; (?#...) comments
// and the u/a/L flags are dropped; \uXXXX becomes \x{XXXX}. Lookaround,
// backreferences, conditionals, atomic groups and verbose mode are
// refused with an *UnsupportedError, except lookaheads: (?!...) becomes
// a group named lookaheadName+n for convertRegex to rewrite, (?=...) one
// named positiveName+n that convertRegex refuses in the alternatives
// that go through it (lookahead.go). fail2ban's <TAGS> pass through as
// literal text.
func translatePython(p string) (string, error) {
	var b strings.Builder
	inClass := false
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '\\':
			if i+1 >= len(p) {
				return "", &UnsupportedError{Construct: `a trailing "\"`, Offset: i}
			}
			n := p[i+1]
			switch {
			case n >= '1' && n <= '9' && !inClass:
				return "", &UnsupportedError{Construct: fmt.Sprintf(`backreference \%c`, n), Offset: i}
			case n == 'Z':
				b.WriteString(`\z`)
			case n == 'u' && i+5 < len(p) && isHex(p[i+2:i+6]):
				b.WriteString(`\x{` + p[i+2:i+6] + `}`)
				i += 4
			case n == 'U' && i+9 < len(p) && isHex(p[i+2:i+10]):
				b.WriteString(`\x{` + p[i+2:i+10] + `}`)
				i += 8
			case n == '0':
				// Python: octal \0, \07, \012; Go wants three digits.
				j := i + 2
				for j < len(p) && j < i+4 && p[j] >= '0' && p[j] <= '7' {
					j++
				}
				fmt.Fprintf(&b, `\x{%x}`, octal(p[i+1:j]))
				i = j - 1
				continue
			case isLetterOrDigit(n) && !strings.ContainsRune(`AbBdDsSwWzntrfvxpP`, rune(n)) && !(inClass && n >= '1' && n <= '9'):
				// Python treats unknown ASCII-letter escapes as errors; so
				// does Go, but name it here.
				return "", &UnsupportedError{Construct: fmt.Sprintf(`escape \%c`, n), Offset: i}
			case inClass && n >= '1' && n <= '7':
				fmt.Fprintf(&b, `\x{%x}`, octal(p[i+1:i+2]))
			default:
				b.WriteByte(c)
				b.WriteByte(n)
			}
			i++
		case inClass:
			if c == ']' {
				inClass = false
			} else if c == '[' {
				// A literal "[" in a Python class; Go would read [: as a
				// POSIX class.
				b.WriteString(`\[`)
				continue
			}
			b.WriteByte(c)
		case c == '[':
			inClass = true
			b.WriteByte(c)
			// "]" right after "[" or "[^" is a literal in both.
			if strings.HasPrefix(p[i+1:], "^]") {
				b.WriteString("^]")
				i += 2
			} else if strings.HasPrefix(p[i+1:], "]") {
				b.WriteString("]")
				i++
			}
		case c == '(' && strings.HasPrefix(p[i:], "(?"):
			rest := p[i+2:]
			switch {
			case strings.HasPrefix(rest, "P<") || strings.HasPrefix(rest, ":"):
				b.WriteString("(?")
				i++
			case strings.HasPrefix(rest, "<=") || strings.HasPrefix(rest, "<!"):
				return "", &UnsupportedError{Construct: "lookbehind (?" + rest[:2] + "...)", Offset: i}
			case strings.HasPrefix(rest, "<"):
				b.WriteString("(?P")
				i++
			case strings.HasPrefix(rest, "!"):
				// A group that convertRegex rewrites with what follows
				// it, where an exact RE2 form exists (lookahead.go).
				fmt.Fprintf(&b, "(?P<%s%d>", lookaheadName, lookaheadSeq.Add(1))
				i += 2
			case strings.HasPrefix(rest, "="):
				// Refused where convertRegex meets it, so that the
				// alternatives without it still convert.
				fmt.Fprintf(&b, "(?P<%s%d>", positiveName, lookaheadSeq.Add(1))
				i += 2
			case strings.HasPrefix(rest, "P="):
				// moat's rules have (?P=name) (authlog's backref.go);
				// Go's parser, which the conversion uses, has not: an
				// empty group stands for it until restoreBackrefs.
				end := strings.IndexByte(rest, ')')
				if end < 0 || !isName(rest[2:end]) {
					return "", &UnsupportedError{Construct: "backreference (?P=...)", Offset: i}
				}
				fmt.Fprintf(&b, "(?P<%s%d_%s>)", backrefName, lookaheadSeq.Add(1), rest[2:end])
				i += 2 + end
			case strings.HasPrefix(rest, "("):
				return "", &UnsupportedError{Construct: "conditional (?(...)...)", Offset: i}
			case strings.HasPrefix(rest, ">"):
				return "", &UnsupportedError{Construct: "atomic group (?>...)", Offset: i}
			case strings.HasPrefix(rest, "#"):
				end := strings.IndexByte(rest, ')')
				if end < 0 {
					return "", &UnsupportedError{Construct: "unterminated comment (?#", Offset: i}
				}
				i += 2 + end
			default:
				// Flags: (?i), (?s-i:...), (?iu).
				j := 0
				for j < len(rest) && strings.IndexByte("aiLmsux-", rest[j]) >= 0 {
					j++
				}
				if j == len(rest) || (rest[j] != ')' && rest[j] != ':') {
					return "", &UnsupportedError{Construct: "group (?" + firstN(rest, 3) + "...)", Offset: i}
				}
				flags := rest[:j]
				if strings.ContainsRune(flags, 'x') {
					return "", &UnsupportedError{Construct: "verbose flag (?x)", Offset: i}
				}
				flags = strings.NewReplacer("a", "", "u", "", "L", "").Replace(flags)
				switch {
				case rest[j] == ':':
					b.WriteString("(?" + flags + ":")
				case flags != "" && flags != "-":
					b.WriteString("(?" + flags + ")")
				}
				i += 2 + j
			}
		case c == '{' && strings.HasPrefix(p[i:], "{,"):
			// Python's {,n} is {0,n}; Go reads "{," as literal text.
			if m := openBoundRe.FindString(p[i:]); m != "" {
				b.WriteString("{0" + m[1:])
				i += len(m) - 1
				continue
			}
			b.WriteByte(c)
		case (c == '+' || c == '?') && i > 0 && isQuantifierEnd(p, i-1) && c == '+':
			return "", &UnsupportedError{Construct: "possessive quantifier", Offset: i}
		default:
			b.WriteByte(c)
		}
	}
	if inClass {
		return "", fmt.Errorf("unterminated character class [")
	}
	out := b.String()
	if _, err := regexp.Compile(out); err != nil {
		return "", fmt.Errorf("as Go RE2: %w", err)
	}
	return out, nil
}

var openBoundRe = regexp.MustCompile(`^\{,\d+\}`)

// backrefName starts the groups that stand for backreferences while a
// failregex is converted.
const backrefName = "moatbrf"

// backrefPlaceholder is one of them: the number, the name referred to.
var backrefPlaceholder = regexp.MustCompile(`\(\?P<` + backrefName + `\d+_(\w+)>\)`)

// restoreBackrefs writes the backreferences back as moat's rules have
// them, (?P=name).
func restoreBackrefs(p string) string {
	return backrefPlaceholder.ReplaceAllString(p, "(?P=$1)")
}

func isName(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isLetterOrDigit(s[i]) && s[i] != '_' {
			return false
		}
	}
	return s != ""
}

// lookaheadSeq numbers the groups that stand for (?!...): Go wants
// group names unique, and a prefregex and its failregex are joined.
var lookaheadSeq atomic.Uint64

// isQuantifierEnd reports whether p[i] ends a quantifier (*, +, ?, {m,n}),
// so that a "+" after it is possessive. A "?" after a quantifier is lazy
// in both dialects.
func isQuantifierEnd(p string, i int) bool {
	if i > 0 && p[i-1] == '\\' {
		return false
	}
	switch p[i] {
	case '*', '+', '?':
		return i == 0 || p[i-1] != '('
	case '}':
		return strings.LastIndexByte(p[:i], '{') >= 0
	}
	return false
}

func isHex(s string) bool {
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return false
		}
	}
	return true
}

func octal(s string) int {
	n := 0
	for _, c := range s {
		n = n*8 + int(c-'0')
	}
	return n
}

func isLetterOrDigit(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func firstN(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

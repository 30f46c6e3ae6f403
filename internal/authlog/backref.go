package authlog

import (
	"bytes"
	"fmt"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// Backreferences: (?P=name) in a rule repeats the text the group named
// name matched, as in Python's re (fail2ban's filters use it:
// sendmail-reject's arg1=(?P<email><\S+@\S+>) ... (?P=email)...). Go's
// RE2 has none, so a rule's (?P=name) becomes a new capture group holding
// a copy of the named group's pattern, and a match counts only when each
// copy that took part in it captured the same bytes as the named group.
//
// That check can only refuse, and what it accepts is Python's answer: a
// backtracking matcher (Python's) and RE2 order the ways a pattern can
// match a line alike (leftmost, preferring what the pattern prefers), and
// Python's answer is the first way in that order whose copies equal their
// groups. RE2 returns the first way of all. If that way passes the check,
// no earlier way exists at all, so it is Python's too, with the same
// captures: the same address. (A way Python tried first would differ
// from RE2's at a choice outside the copies, where both read the same
// text: lifted to the copy pattern with the copies read as in RE2's, it
// would come before RE2's first, which cannot be.) If RE2's way fails
// the check, a later way might pass it (an optional (?: (?P=email))?
// that Python skips), and the rule misses a line Python matches: a miss,
// never a wrong address. A reference under (?i) is refused: there Python
// compares ignoring case (the group's own (?i) does not matter: Python
// compares the text it took).

// backrefGroup names the group that stands for the n-th backreference.
const backrefGroup = "moatbackref"

// backref is one (?P=name) of a compiled rule: the group's name, and the
// submatch indexes of the group and of its copy.
type backref struct {
	name        string
	group, copy int
}

// scanBackrefs returns pattern with each (?P=name) outside character
// classes and escapes replaced by what repl returns for (the index of the
// reference, name).
func scanBackrefs(pattern string, repl func(int, string) string) string {
	var b strings.Builder
	n := 0
	inClass := false
	for i := 0; i < len(pattern); i++ {
		c := pattern[i]
		switch {
		case c == '\\' && i+1 < len(pattern):
			b.WriteString(pattern[i : i+2])
			i++
			continue
		case inClass:
			if c == ']' {
				inClass = false
			} else if strings.HasPrefix(pattern[i:], "[:") {
				// [:alpha:] inside a class.
				if end := strings.Index(pattern[i+2:], ":]"); end >= 0 {
					b.WriteString(pattern[i : i+2+end+2])
					i += 2 + end + 1
					continue
				}
			}
		case c == '[':
			inClass = true
			b.WriteByte(c)
			// "]" first in a class (after an optional "^") is a literal.
			if strings.HasPrefix(pattern[i+1:], "^]") {
				b.WriteString("^]")
				i += 2
			} else if strings.HasPrefix(pattern[i+1:], "]") {
				b.WriteString("]")
				i++
			}
			continue
		case strings.HasPrefix(pattern[i:], "(?P="):
			end := strings.IndexByte(pattern[i:], ')')
			if end > 0 {
				name := pattern[i+4 : i+end]
				b.WriteString(repl(n, name))
				n++
				i += end
				continue
			}
		}
		b.WriteByte(c)
	}
	return b.String()
}

// expandBackrefs rewrites an expanded rule pattern's backreferences as
// copies (see above) and returns the pattern to compile and the names
// the references name, the i-th copy's group being backrefGroup+i. It refuses a
// reference to a group that is not there exactly once, inside itself or
// before it, and a case-insensitive pattern.
func expandBackrefs(pattern string) (string, []string, error) {
	var names []string
	var bad error
	marked := scanBackrefs(pattern, func(i int, name string) string {
		if !isGroupName(name) && bad == nil {
			bad = fmt.Errorf("backreference (?P=%s): not a group name", name)
		}
		names = append(names, name)
		return "(?P<" + backrefGroup + strconv.Itoa(i) + ">)"
	})
	if bad != nil {
		return "", nil, bad
	}
	if len(names) == 0 {
		return pattern, nil, nil
	}
	tree, err := syntax.Parse(marked, syntax.Perl)
	if err != nil {
		return "", nil, err
	}
	for i, name := range names {
		var target, ref *syntax.Regexp
		count := 0
		walk(tree, func(re *syntax.Regexp) {
			if re.Op != syntax.OpCapture {
				return
			}
			switch re.Name {
			case name:
				target = re
				count++
			case backrefGroup + strconv.Itoa(i):
				ref = re
			}
		})
		switch {
		case count == 0:
			return "", nil, fmt.Errorf("backreference (?P=%s): no group named %s", name, name)
		case count > 1:
			return "", nil, fmt.Errorf("backreference (?P=%s): %d groups named %s, it must name one", name, count, name)
		case ref.Cap < target.Cap:
			return "", nil, fmt.Errorf("backreference (?P=%s) before the group it names: it repeats text already matched", name)
		case ref.Flags&syntax.FoldCase != 0:
			// The parser gives each part the flags in effect there.
			return "", nil, fmt.Errorf("backreference (?P=%s) under (?i): Python compares it ignoring case, moat compares bytes; end (?i) before it", name)
		case contains(target, ref):
			return "", nil, fmt.Errorf("backreference (?P=%s) inside the group it names", name)
		case repeated(tree, ref) || repeated(tree, target):
			// RE2 reports a group's last round only: a copy
			// repeated would be checked in its last round alone.
			return "", nil, fmt.Errorf("backreference (?P=%s) or its group inside a repetition (*, +, {m,n}): moat checks one copy once", name)
		}
		ref.Sub = []*syntax.Regexp{uncaptured(target.Sub[0])}
	}
	return tree.String(), names, nil
}

// isGroupName reports whether s is a name Go accepts for a group.
func isGroupName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c != '_' && !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// uncaptured returns a copy of re whose groups only group: a copy must
// not add another <HOST>, <USER> or id.
func uncaptured(re *syntax.Regexp) *syntax.Regexp {
	if re.Op == syntax.OpCapture {
		return uncaptured(re.Sub[0])
	}
	c := *re
	c.Sub = make([]*syntax.Regexp, len(re.Sub))
	for i, s := range re.Sub {
		c.Sub[i] = uncaptured(s)
	}
	c.Rune = append([]rune(nil), re.Rune...)
	return &c
}

func walk(re *syntax.Regexp, f func(*syntax.Regexp)) {
	f(re)
	for _, s := range re.Sub {
		walk(s, f)
	}
}

// repeated reports whether part is inside a repetition of re other than
// an optional part (?, {0,1}).
func repeated(re, part *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpStar, syntax.OpPlus:
		return contains(re, part)
	case syntax.OpRepeat:
		if re.Max != 1 {
			return contains(re, part)
		}
	}
	for _, s := range re.Sub {
		if repeated(s, part) {
			return true
		}
	}
	return false
}

func contains(re, part *syntax.Regexp) bool {
	found := false
	walk(re, func(s *syntax.Regexp) { found = found || s == part })
	return found
}

// backrefsHold reports whether every copy that took part in the match m
// (submatch indexes of line) captured what its group did.
func backrefsHold(refs []backref, m []int, line []byte) bool {
	for _, r := range refs {
		cs, ce := m[2*r.copy], m[2*r.copy+1]
		if cs < 0 {
			continue // its optional part was not taken
		}
		gs, ge := m[2*r.group], m[2*r.group+1]
		if gs < 0 || !bytes.Equal(line[cs:ce], line[gs:ge]) {
			return false
		}
	}
	return true
}

// submatch returns the submatch indexes of r's match of line, or nil:
// RE2's first way to match when its copies hold, else the way
// pinnedMatch finds.
func (r *Rule) submatch(line []byte) []int {
	m := r.re.FindSubmatchIndex(line)
	if m == nil || backrefsHold(r.refs, m, line) {
		return m
	}
	return r.pinnedMatch(line, m)
}

// maxPins bounds the pinned patterns a rule compiles: each distinct text
// a failing group took costs a compile, and a hostile log could offer
// many. Past it, such lines are missed.
const maxPins = 16

// pins caches a rule's pinned patterns by the texts pinned.
type pins struct {
	// off is set at compile time when a backreference's group cannot be
	// pinned (pinnable): then no line is retried, and no line of a hostile
	// log costs a key, the lock or a compile.
	off bool
	mu  sync.Mutex
	re  map[string]*regexp.Regexp // nil value: that pinning cannot be built
}

// canPin reports whether every backreference's group of the expanded
// pattern tree may be pinned.
func canPin(tree *syntax.Regexp, refs []backref) bool {
	ok := true
	walk(tree, func(re *syntax.Regexp) {
		if re.Op != syntax.OpCapture {
			return
		}
		for _, b := range refs {
			if re.Name == b.name && !pinnable(re.Sub[0]) {
				ok = false
			}
		}
	})
	return ok
}

// pinnedMatch looks for another way to match line when RE2's first way
// (m) fails a copy: Python's matcher backtracks into the group's
// neighbours until the copy can repeat the group, as selinux-ssh's
// acct=(?P<q>"?)\S+(?P=q) needs on acct="root" (RE2's greedy \S+ takes the
// closing quote and leaves the copy empty). Each named group is pinned to
// the text it took in m, as a literal, and so is its copy: the pattern
// then matches exactly the ways where the group takes that text and the
// copy repeats it. Such a way is a way of the original pattern whose copy
// equals its group, so what it takes is the rule's answer, from a way
// Python could take too (not always the one it takes first: the address
// still comes from where the shape check puts it). A group whose pattern
// holds an assertion (^, $, \b) or a capture is not pinned: a literal
// does not carry the assertion to another place, and a capture dropped
// would shift the submatch indexes.
func (r *Rule) pinnedMatch(line []byte, m []int) []int {
	if r.pins.off {
		return nil
	}
	texts := make([]string, len(r.refs))
	for i, b := range r.refs {
		gs, ge := m[2*b.group], m[2*b.group+1]
		if gs < 0 || !utf8.Valid(line[gs:ge]) {
			return nil
		}
		texts[i] = string(line[gs:ge])
	}
	key := strings.Join(texts, "\x00")
	r.pins.mu.Lock()
	re, ok := r.pins.re[key]
	if !ok && len(r.pins.re) < maxPins {
		re = r.pin(texts)
		if r.pins.re == nil {
			r.pins.re = map[string]*regexp.Regexp{}
		}
		r.pins.re[key] = re
	}
	r.pins.mu.Unlock()
	if re == nil {
		return nil
	}
	m = re.FindSubmatchIndex(line)
	if m == nil || !backrefsHold(r.refs, m, line) {
		return nil
	}
	return m
}

// pin compiles r's pattern with each backreference's group and copy
// pinned to texts[i], or returns nil where that cannot be done exactly.
func (r *Rule) pin(texts []string) *regexp.Regexp {
	tree, err := syntax.Parse(r.re.String(), syntax.Perl)
	if err != nil {
		return nil
	}
	for i, b := range r.refs {
		var group, cp *syntax.Regexp
		walk(tree, func(re *syntax.Regexp) {
			if re.Op == syntax.OpCapture {
				switch re.Name {
				case b.name:
					group = re
				case backrefGroup + strconv.Itoa(i):
					cp = re
				}
			}
		})
		if group == nil || cp == nil { // canPin checked the group itself
			return nil
		}
		group.Sub = []*syntax.Regexp{literal(texts[i])}
		cp.Sub = []*syntax.Regexp{literal(texts[i])}
	}
	re, err := regexp.Compile(tree.String())
	if err != nil || re.NumSubexp() != r.re.NumSubexp() {
		return nil
	}
	return re
}

// pinnable reports whether re may stand as the literal text it matched:
// no assertion, no capture inside.
func pinnable(re *syntax.Regexp) bool {
	ok := true
	walk(re, func(s *syntax.Regexp) {
		switch s.Op {
		case syntax.OpCapture, syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText,
			syntax.OpWordBoundary, syntax.OpNoWordBoundary:
			ok = false
		}
	})
	return ok
}

func literal(s string) *syntax.Regexp {
	if s == "" {
		return &syntax.Regexp{Op: syntax.OpEmptyMatch}
	}
	return &syntax.Regexp{Op: syntax.OpLiteral, Rune: []rune(s)}
}

package fail2ban

import (
	"errors"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"regexp/syntax"
)

// Negative lookahead, (?!w1|w2), has no RE2 form, but where it names
// fixed words and the pattern after it is known, the two together are a
// regular language with an exact RE2 form: the strings the rest of the
// pattern matches that do not start with a word. translatePython writes
// (?!X) as a group named lookaheadName+n; notPrefix then replaces the
// group and what follows it with that form, built from derivatives of
// the following parts (the text after "e" of "evasive" must not start
// with "vasive", and so on). Only the first few characters after the
// lookahead are rewritten; where that reaches the address, or the
// lookahead sits in a repetition, or its words are not fixed text, the
// failregex is refused as before.

// lookaheadName prefixes the group names translatePython gives (?!...),
// positiveName those of (?=...).
const (
	lookaheadName = "moatnla"
	positiveName  = "moatpla"
)

// maxWords bounds the words a lookahead may expand to, and maxSeqs the
// alternatives its rewrite may produce.
const (
	maxWords = 32
	maxSeqs  = 256
)

var errLookahead = errors.New("lookahead (?!...): Go's RE2 has no equivalent, and no exact rewrite was found here")

var errPositive = errors.New("lookahead (?=...): Go's RE2 has no equivalent")

func isLookahead(re *syntax.Regexp) bool {
	return re.Op == syntax.OpCapture && strings.HasPrefix(re.Name, lookaheadName)
}

func isPositive(re *syntax.Regexp) bool {
	return re.Op == syntax.OpCapture && strings.HasPrefix(re.Name, positiveName)
}

// lookaheadWords returns the fixed words a lookahead's body matches.
func lookaheadWords(re *syntax.Regexp) ([]string, bool) {
	switch re.Op {
	case syntax.OpEmptyMatch:
		return []string{""}, true
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase != 0 {
			return nil, false
		}
		return []string{string(re.Rune)}, true
	case syntax.OpCharClass:
		var out []string
		for i := 0; i+1 < len(re.Rune); i += 2 {
			for r := re.Rune[i]; r <= re.Rune[i+1]; r++ {
				if out = append(out, string(r)); len(out) > maxWords {
					return nil, false
				}
			}
		}
		return out, true
	case syntax.OpCapture:
		return lookaheadWords(re.Sub[0])
	case syntax.OpAlternate:
		var out []string
		for _, s := range re.Sub {
			w, ok := lookaheadWords(s)
			if !ok || len(out)+len(w) > maxWords {
				return nil, false
			}
			out = append(out, w...)
		}
		return out, true
	case syntax.OpConcat:
		out := []string{""}
		for _, s := range re.Sub {
			w, ok := lookaheadWords(s)
			if !ok || len(out)*len(w) > maxWords {
				return nil, false
			}
			var next []string
			for _, a := range out {
				for _, b := range w {
					next = append(next, a+b)
				}
			}
			out = next
		}
		return out, true
	}
	return nil, false
}

// resolveLookaheads rewrites every lookahead of seq (a way through the
// pattern, as flatten gives it) with the parts after it. It returns seq
// itself when there is none.
func resolveLookaheads(seq []*syntax.Regexp) ([]*syntax.Regexp, error) {
	// Right to left: the rewrite of a lookahead must not meet another.
	for i := len(seq) - 1; i >= 0; i-- {
		if isPositive(seq[i]) {
			return nil, errPositive
		}
		if !isLookahead(seq[i]) {
			continue
		}
		words, ok := lookaheadWords(seq[i].Sub[0])
		if !ok {
			return nil, errLookahead
		}
		rest := seq[i+1:]
		ways, err := notPrefix(rest, words)
		if err != nil {
			return nil, err
		}
		// Every way ends with a tail of rest that the rewrite did not
		// touch (pointer-equal parts); the longest tail common to all
		// stays as it is, after an alternation of the rewritten heads.
		common := len(rest)
		for _, w := range ways {
			common = min(common, sharedTail(w, rest))
		}
		tail := rest[len(rest)-common:]
		var heads []*syntax.Regexp
		for _, w := range ways {
			heads = append(heads, concat(w[:len(w)-common]))
		}
		var alt *syntax.Regexp
		switch len(heads) {
		case 0:
			alt = &syntax.Regexp{Op: syntax.OpNoMatch}
		case 1:
			alt = heads[0]
		default:
			alt = &syntax.Regexp{Op: syntax.OpAlternate, Sub: heads}
		}
		for _, h := range heads {
			if holdsHost(h) {
				return nil, errors.New("lookahead (?!...) reaches the address: no exact RE2 rewrite keeps the address at one fixed place")
			}
		}
		seq = append(append(slices.Clip(seq[:i]), alt), tail...)
	}
	return seq, nil
}

// sharedTail counts the last parts of w that are rest's last parts.
func sharedTail(w, rest []*syntax.Regexp) int {
	n := 0
	for n < len(w) && n < len(rest) && w[len(w)-1-n] == rest[len(rest)-1-n] {
		n++
	}
	return n
}

func concat(seq []*syntax.Regexp) *syntax.Regexp {
	switch len(seq) {
	case 0:
		return &syntax.Regexp{Op: syntax.OpEmptyMatch}
	case 1:
		return seq[0]
	}
	return &syntax.Regexp{Op: syntax.OpConcat, Sub: slices.Clone(seq)}
}

func literal(r rune) *syntax.Regexp {
	return &syntax.Regexp{Op: syntax.OpLiteral, Rune: []rune{r}}
}

// notPrefix returns the ways through the language of seq less the
// strings that start with one of words: seq runs to the end of the line,
// so this is exactly what (?!words) followed by seq matches.
func notPrefix(seq []*syntax.Regexp, words []string) ([][]*syntax.Regexp, error) {
	var first []rune
	next := map[rune][]string{}
	for _, w := range words {
		if w == "" {
			return nil, nil // every string starts with ""
		}
		r, n := utf8.DecodeRuneInString(w)
		if _, ok := next[r]; !ok {
			first = append(first, r)
		}
		next[r] = append(next[r], w[n:])
	}
	out, err := restrictFirst(seq, first)
	if err != nil {
		return nil, err
	}
	for _, r := range first {
		if slices.Contains(next[r], "") {
			continue // a word is this one rune: nothing starting with it
		}
		ds, err := derive(seq, r)
		if err != nil {
			return nil, err
		}
		for _, d := range ds {
			ways, err := notPrefix(d, next[r])
			if err != nil {
				return nil, err
			}
			for _, w := range ways {
				out = append(out, append([]*syntax.Regexp{literal(r)}, w...))
			}
		}
		if len(out) > maxSeqs {
			return nil, errLookahead
		}
	}
	return out, nil
}

// derive returns the ways through what seq matches after its first rune
// is c (a Brzozowski derivative, as sequences of parts).
func derive(seq []*syntax.Regexp, c rune) ([][]*syntax.Regexp, error) {
	if len(seq) == 0 {
		return nil, nil
	}
	x, rest := seq[0], seq[1:]
	switch x.Op {
	case syntax.OpLiteral:
		r := x.Rune[0]
		if !runeIs(r, c, x.Flags&syntax.FoldCase != 0) {
			return nil, nil
		}
		if len(x.Rune) == 1 {
			return [][]*syntax.Regexp{rest}, nil
		}
		cp := *x
		cp.Rune = slices.Clone(x.Rune[1:])
		return [][]*syntax.Regexp{append([]*syntax.Regexp{&cp}, rest...)}, nil
	case syntax.OpCharClass, syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		if !classHas(x, c) {
			return nil, nil
		}
		return [][]*syntax.Regexp{rest}, nil
	case syntax.OpEmptyMatch:
		return derive(rest, c)
	case syntax.OpEndText, syntax.OpNoMatch:
		return nil, nil
	}
	parts, err := expand(x)
	if err != nil {
		return nil, err
	}
	var out [][]*syntax.Regexp
	for _, p := range parts {
		if p.loop != nil {
			// x* = sub x* | "": derive sub once, then x* again.
			ds, err := derive([]*syntax.Regexp{p.loop.Sub[0]}, c)
			if err != nil {
				return nil, err
			}
			for _, d := range ds {
				out = append(out, append(append(slices.Clip(d), p.loop), rest...))
			}
			continue
		}
		ds, err := derive(append(slices.Clip(p.seq), rest...), c)
		if err != nil {
			return nil, err
		}
		out = append(out, ds...)
		if len(out) > maxSeqs {
			return nil, errLookahead
		}
	}
	return out, nil
}

// restrictFirst returns the ways through what seq matches that are empty
// or start with a rune not in not.
func restrictFirst(seq []*syntax.Regexp, not []rune) ([][]*syntax.Regexp, error) {
	if len(seq) == 0 {
		return [][]*syntax.Regexp{nil}, nil
	}
	x, rest := seq[0], seq[1:]
	switch x.Op {
	case syntax.OpLiteral:
		fold := x.Flags&syntax.FoldCase != 0
		for _, r := range not {
			if runeIs(x.Rune[0], r, fold) {
				if !fold {
					return nil, nil
				}
				// Fold case: keep the first rune's other cases.
				cls := classLess(foldClass(x.Rune[0]), not)
				if cls == nil {
					return nil, nil
				}
				head := []*syntax.Regexp{cls}
				if len(x.Rune) > 1 {
					cp := *x
					cp.Rune = slices.Clone(x.Rune[1:])
					head = append(head, &cp)
				}
				return [][]*syntax.Regexp{append(head, rest...)}, nil
			}
		}
		return [][]*syntax.Regexp{seq}, nil
	case syntax.OpCharClass, syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		cls := classLess(x, not)
		if cls == nil {
			return nil, nil
		}
		return [][]*syntax.Regexp{append([]*syntax.Regexp{cls}, rest...)}, nil
	case syntax.OpEmptyMatch:
		return restrictFirst(rest, not)
	case syntax.OpEndText:
		return [][]*syntax.Regexp{seq}, nil // the empty string
	case syntax.OpNoMatch:
		return nil, nil
	}
	parts, err := expand(x)
	if err != nil {
		return nil, err
	}
	var out [][]*syntax.Regexp
	for _, p := range parts {
		if p.loop != nil {
			// x* = sub x* | "" : the first rune, if any, is sub's.
			rs, err := restrictFirst([]*syntax.Regexp{p.loop.Sub[0]}, not)
			if err != nil {
				return nil, err
			}
			for _, r := range rs {
				if len(r) == 0 || r[0].Op == syntax.OpEndText {
					// sub matched "": the "" way covers it.
					continue
				}
				out = append(out, append(append(slices.Clip(r), p.loop), rest...))
			}
			continue
		}
		rs, err := restrictFirst(append(slices.Clip(p.seq), rest...), not)
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
		if len(out) > maxSeqs {
			return nil, errLookahead
		}
	}
	return out, nil
}

// part is one way to start a structured node: a sequence of its parts,
// or (loop) sub followed by the star again.
type part struct {
	seq  []*syntax.Regexp
	loop *syntax.Regexp // a star node: sub, then the star
}

// expand opens a structured node into its ways, for derive and
// restrictFirst. The address and assertions other than the end of the
// text cannot be looked through: the rewrite is refused there.
func expand(x *syntax.Regexp) ([]part, error) {
	switch x.Op {
	case syntax.OpConcat:
		return []part{{seq: x.Sub}}, nil
	case syntax.OpCapture:
		if isHost(x) {
			return nil, errors.New("lookahead (?!...) reaches the address: no exact RE2 rewrite keeps the address at one fixed place")
		}
		if isLookahead(x) {
			return nil, errLookahead
		}
		if isPositive(x) {
			return nil, errPositive
		}
		return []part{{seq: x.Sub}}, nil
	case syntax.OpAlternate:
		out := make([]part, len(x.Sub))
		for i, s := range x.Sub {
			out[i] = part{seq: []*syntax.Regexp{s}}
		}
		return out, nil
	case syntax.OpQuest:
		return []part{{seq: x.Sub}, {seq: nil}}, nil
	case syntax.OpStar:
		return []part{{loop: x}, {seq: nil}}, nil
	case syntax.OpPlus:
		star := &syntax.Regexp{Op: syntax.OpStar, Flags: x.Flags, Sub: x.Sub}
		return []part{{seq: []*syntax.Regexp{x.Sub[0], star}}}, nil
	case syntax.OpRepeat:
		if x.Min > 16 || x.Max > 16 {
			return nil, errLookahead
		}
		// x{n,m} = x n times, then m-n optional ones (or a star).
		var seq []*syntax.Regexp
		for range x.Min {
			seq = append(seq, x.Sub[0])
		}
		switch {
		case x.Max < 0:
			seq = append(seq, &syntax.Regexp{Op: syntax.OpStar, Flags: x.Flags, Sub: x.Sub})
		case x.Max > x.Min:
			var opt *syntax.Regexp
			for range x.Max - x.Min {
				// (x(x(x)?)?)?: nested, so that "" is one way, not many.
				inner := []*syntax.Regexp{x.Sub[0]}
				if opt != nil {
					inner = append(inner, opt)
				}
				opt = &syntax.Regexp{Op: syntax.OpQuest, Flags: x.Flags, Sub: []*syntax.Regexp{concat(inner)}}
			}
			seq = append(seq, opt)
		}
		return []part{{seq: seq}}, nil
	}
	return nil, errLookahead
}

// runeIs reports whether pattern rune p matches c.
func runeIs(p, c rune, fold bool) bool {
	if p == c {
		return true
	}
	if !fold {
		return false
	}
	for f := unicode.SimpleFold(p); f != p; f = unicode.SimpleFold(f) {
		if f == c {
			return true
		}
	}
	return false
}

func foldClass(r rune) *syntax.Regexp {
	rs := []rune{r, r}
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		rs = append(rs, f, f)
	}
	return &syntax.Regexp{Op: syntax.OpCharClass, Rune: rs}
}

// classRanges returns the ranges a one-rune node matches.
func classRanges(x *syntax.Regexp) []rune {
	switch x.Op {
	case syntax.OpAnyChar:
		return []rune{0, unicode.MaxRune}
	case syntax.OpAnyCharNotNL:
		return []rune{0, '\n' - 1, '\n' + 1, unicode.MaxRune}
	}
	return x.Rune
}

func classHas(x *syntax.Regexp, c rune) bool {
	rs := classRanges(x)
	for i := 0; i+1 < len(rs); i += 2 {
		if rs[i] <= c && c <= rs[i+1] {
			return true
		}
	}
	return false
}

// classLess returns the one-rune node x less the runes not, or nil when
// nothing is left.
func classLess(x *syntax.Regexp, not []rune) *syntax.Regexp {
	rs := slices.Clone(classRanges(x))
	for _, n := range not {
		var out []rune
		for i := 0; i+1 < len(rs); i += 2 {
			lo, hi := rs[i], rs[i+1]
			if n < lo || n > hi {
				out = append(out, lo, hi)
				continue
			}
			if lo < n {
				out = append(out, lo, n-1)
			}
			if n < hi {
				out = append(out, n+1, hi)
			}
		}
		rs = out
	}
	if len(rs) == 0 {
		return nil
	}
	return &syntax.Regexp{Op: syntax.OpCharClass, Rune: rs}
}

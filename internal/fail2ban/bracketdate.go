package fail2ban

import (
	"regexp/syntax"
	"slices"
)

// A datepattern ^[^\[]*\[({DATE}) (access logs) makes fail2ban cut the
// date that follows the line's first '[' and match the failregex against
// the rest: "1.2.3.4 - - [05/Mar/2007:14:39:21 +0100] "GET ..." reaches
// the failregex as `1.2.3.4 - - [] "GET ...`. When the failregex has a
// literal "[]" there, convertBranch puts the date back between those
// brackets. apache-badbots and php-url-fopen have none: their `.*` spans
// the "[]". afterFirstBracket rewrites such a failregex F exactly into
// the regexp of the whole lines fail2ban matches with it:
//
//	{ x "[" d y : x has no '[', d is a date, x "[" y matches F }
//
// by two derivations on F's syntax tree: noBracket(r), the strings of r
// without '[', and firstBracket(r), the strings of r that hold a '[',
// with the date written right after the first one. For a concatenation,
// the first '[' is in the first part that holds one:
//
//	first(r1 r2…rn) = first(r1) r2…rn | noBracket(r1) first(r2…rn)
//
// and for a repetition in the first iteration that holds one:
// first(s*) = noBracket(s)* first(s) s*. Both derivations keep every
// other part as written, so a line's address is where F puts it.
// TestBracketDateRewriteIsExact compares the rewrite with its
// definition on every short string of a small alphabet.

// afterFirstBracket returns F (in Go syntax) with date written after the
// first '[' of the line, or ok false when no line F matches holds a '['
// or F has a part the derivation does not handle (a bounded repetition).
func afterFirstBracket(f, date string) (string, bool) {
	re, err := syntax.Parse(f, syntax.Perl)
	if err != nil {
		return "", false
	}
	d, err := syntax.Parse(date, syntax.Perl)
	if err != nil {
		return "", false
	}
	b := bracketRewrite{date: &syntax.Regexp{Op: syntax.OpConcat, Sub: []*syntax.Regexp{d}}}
	out := b.first(re)
	if out == nil || b.refused {
		return "", false
	}
	return out.String(), true
}

type bracketRewrite struct {
	date    *syntax.Regexp
	refused bool // a part the derivations do not handle
}

func lit(s []rune, flags syntax.Flags) *syntax.Regexp {
	if len(s) == 0 {
		return &syntax.Regexp{Op: syntax.OpEmptyMatch}
	}
	return &syntax.Regexp{Op: syntax.OpLiteral, Rune: slices.Clone(s), Flags: flags}
}

func seqOf(subs ...*syntax.Regexp) *syntax.Regexp {
	for _, s := range subs {
		if s == nil {
			return nil
		}
	}
	return &syntax.Regexp{Op: syntax.OpConcat, Sub: subs}
}

func eitherOf(subs ...*syntax.Regexp) *syntax.Regexp {
	var keep []*syntax.Regexp
	for _, s := range subs {
		if s != nil {
			keep = append(keep, s)
		}
	}
	switch len(keep) {
	case 0:
		return nil
	case 1:
		return keep[0]
	}
	return &syntax.Regexp{Op: syntax.OpAlternate, Sub: keep}
}

func withSub(re *syntax.Regexp, sub *syntax.Regexp) *syntax.Regexp {
	c := *re
	c.Sub = []*syntax.Regexp{sub}
	c.Sub0 = [1]*syntax.Regexp{}
	return &c
}

// noBracket is the strings of re without '[' (nil: none).
func (b *bracketRewrite) noBracket(re *syntax.Regexp) *syntax.Regexp {
	switch re.Op {
	case syntax.OpNoMatch:
		return nil
	case syntax.OpEmptyMatch, syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText,
		syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return re
	case syntax.OpLiteral:
		if slices.Contains(re.Rune, '[') {
			return nil
		}
		return re
	case syntax.OpCharClass, syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return classLess(re, []rune{'['})
	case syntax.OpCapture:
		if s := b.noBracket(re.Sub[0]); s != nil {
			return withSub(re, s)
		}
		return nil
	case syntax.OpStar, syntax.OpQuest:
		if s := b.noBracket(re.Sub[0]); s != nil {
			return withSub(re, s)
		}
		return &syntax.Regexp{Op: syntax.OpEmptyMatch}
	case syntax.OpPlus:
		if s := b.noBracket(re.Sub[0]); s != nil {
			return withSub(re, s)
		}
		return nil
	case syntax.OpRepeat:
		if s := b.noBracket(re.Sub[0]); s != nil {
			return withSub(re, s)
		}
		if re.Min == 0 {
			return &syntax.Regexp{Op: syntax.OpEmptyMatch}
		}
		return nil
	case syntax.OpConcat:
		subs := make([]*syntax.Regexp, len(re.Sub))
		for i, s := range re.Sub {
			if subs[i] = b.noBracket(s); subs[i] == nil {
				return nil
			}
		}
		return seqOf(subs...)
	case syntax.OpAlternate:
		subs := make([]*syntax.Regexp, len(re.Sub))
		for i, s := range re.Sub {
			subs[i] = b.noBracket(s)
		}
		return eitherOf(subs...)
	}
	b.refused = true
	return nil
}

// first is the strings of re that hold a '[', with the date right after
// the first '[' (nil: none).
func (b *bracketRewrite) first(re *syntax.Regexp) *syntax.Regexp {
	open := lit([]rune{'['}, 0)
	switch re.Op {
	case syntax.OpNoMatch, syntax.OpEmptyMatch, syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText,
		syntax.OpEndText, syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return nil
	case syntax.OpLiteral:
		i := slices.Index(re.Rune, '[')
		if i < 0 {
			return nil
		}
		return seqOf(lit(re.Rune[:i+1], re.Flags), b.date, lit(re.Rune[i+1:], re.Flags))
	case syntax.OpCharClass, syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		if !classHas(re, '[') {
			return nil
		}
		return seqOf(open, b.date)
	case syntax.OpCapture:
		if s := b.first(re.Sub[0]); s != nil {
			return withSub(re, s)
		}
		return nil
	case syntax.OpQuest:
		return b.first(re.Sub[0])
	case syntax.OpStar, syntax.OpPlus:
		s := re.Sub[0]
		pre := b.noBracket(s)
		var before *syntax.Regexp
		if pre != nil {
			before = &syntax.Regexp{Op: syntax.OpStar, Flags: re.Flags, Sub: []*syntax.Regexp{pre}}
		} else {
			before = &syntax.Regexp{Op: syntax.OpEmptyMatch}
		}
		after := &syntax.Regexp{Op: syntax.OpStar, Flags: re.Flags, Sub: []*syntax.Regexp{s}}
		return seqOf(before, b.first(s), after)
	case syntax.OpRepeat:
		// Which iteration holds the first '[' couples the counts
		// before and after it: not needed by fail2ban's filters.
		if b.first(re.Sub[0]) != nil {
			b.refused = true
		}
		return nil
	case syntax.OpConcat:
		return b.firstOf(re.Sub)
	case syntax.OpAlternate:
		subs := make([]*syntax.Regexp, len(re.Sub))
		for i, s := range re.Sub {
			subs[i] = b.first(s)
		}
		return eitherOf(subs...)
	}
	b.refused = true
	return nil
}

// firstOf is first of the concatenation of parts.
func (b *bracketRewrite) firstOf(parts []*syntax.Regexp) *syntax.Regexp {
	if len(parts) == 0 {
		return nil
	}
	rest := parts[1:]
	var restRe *syntax.Regexp
	if len(rest) == 0 {
		restRe = &syntax.Regexp{Op: syntax.OpEmptyMatch}
	} else {
		restRe = &syntax.Regexp{Op: syntax.OpConcat, Sub: rest}
	}
	here := seqOf(b.first(parts[0]), restRe)
	var later *syntax.Regexp
	if nb := b.noBracket(parts[0]); nb != nil {
		later = seqOf(nb, b.firstOf(rest))
	}
	return eitherOf(here, later)
}

package authlog

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"regexp/syntax"
	"slices"
)

// The split path: a faster way to the same answer as the rule's regexp.
//
// Go's regexp runs a pattern as big as an imported fail2ban filter (its
// date alone is an alternation of a dozen date shapes, and <HOST> unrolls
// into hundreds of states) on its NFA, tens of microseconds a line, and
// then again to extract the captures. But every rule is, at its top level,
// ^ P <HOST> S $: a prefix, the address, a suffix (the shape check puts
// <HOST> there). The rule matches a line exactly when the line splits as
// p h s with P matching all of p, <HOST> all of h and S all of s; and when
// only one such split exists, <HOST>'s capture is h whatever the regexp's
// preferences among P's and S's ways to match, since there is no other.
//
// So each of P, <HOST> and S is compiled, without captures, into a small
// deterministic automaton over ASCII bytes, and the line is walked: P from
// the start, and wherever P could end, <HOST> from there, and wherever
// <HOST> could end, S to the line's end. No split: the line does not match.
// One split: the address is there. Anything else (two splits, a byte that
// is not ASCII, which the regexp reads as part of a UTF-8 rune, a walk
// longer than a few times the line, a <USER> wanted) goes to the regexp,
// which remains the reference: the split path only answers where its
// answer cannot differ.

// maxDFAStates bounds one automaton: a pattern whose automaton would be
// bigger keeps to the regexp.
const maxDFAStates = 4000

// dfa is a deterministic automaton over ASCII. Bytes fall in classes
// (cls; the last class is every byte from 0x80, which no state consumes
// here); a state is a row of next, one entry per class. An entry is the
// next state as the offset of its row, with acceptBit when that state
// accepts: 0 is the dead state, badEntry says "a byte that is not ASCII".
// The walk is one table load per byte.
type dfa struct {
	cls   [256]uint8
	ncls  uint32
	next  []uint32
	start uint32 // entry of the start state
}

const (
	acceptBit = 1 << 31
	badEntry  = 1 << 30
	offMask   = badEntry - 1
)

// splitMatcher is a rule's split path.
type splitMatcher struct {
	p, h, s *dfa
	// prefilter: refuse lines without the pattern's required literals
	// first (see Rule.match).
	prefilter bool
}

// newSplitMatcher builds the split path of an expanded rule pattern, or
// returns nil when the pattern does not have the shape it needs: <HOST>
// at the top level between ^ and $, and nothing the automata do not model
// (assertions such as \b inside, or an automaton too big).
func newSplitMatcher(expanded string) *splitMatcher {
	tree, err := syntax.Parse(expanded, syntax.Perl)
	if err != nil {
		return nil
	}
	tree = tree.Simplify()
	if tree.Op != syntax.OpConcat || len(tree.Sub) < 3 {
		return nil
	}
	sub := tree.Sub
	if sub[0].Op != syntax.OpBeginText || sub[len(sub)-1].Op != syntax.OpEndText {
		return nil
	}
	sub = sub[1 : len(sub)-1]
	at := slices.IndexFunc(sub, func(s *syntax.Regexp) bool {
		return s.Op == syntax.OpCapture && s.Name == "host"
	})
	if at < 0 {
		return nil
	}
	concat := func(items []*syntax.Regexp) *syntax.Regexp {
		if len(items) == 0 {
			return &syntax.Regexp{Op: syntax.OpEmptyMatch}
		}
		return &syntax.Regexp{Op: syntax.OpConcat, Sub: items}
	}
	m := &splitMatcher{
		p: newDFA(concat(sub[:at])),
		h: newDFA(sub[at].Sub[0]),
		s: newDFA(concat(sub[at+1:])),
	}
	if m.p == nil || m.h == nil || m.s == nil {
		return nil
	}
	m.prefilter = m.p.opensEarly(8)
	return m
}

// newDFA compiles re (whose captures only group) into an automaton that
// accepts exactly the ASCII strings re matches whole, or returns nil.
func newDFA(re *syntax.Regexp) *dfa {
	prog, err := syntax.Compile(re)
	if err != nil {
		return nil
	}
	n := len(prog.Inst)
	for _, in := range prog.Inst {
		if in.Op == syntax.InstEmptyWidth {
			return nil // ^, $, \b, \B inside: not modelled
		}
	}
	// matches[c] lists the rune instructions that consume byte c, as the
	// regexp's own machines test them.
	var matches [128][]uint32
	for pc, in := range prog.Inst {
		for c := range rune(128) {
			ok := false
			switch in.Op {
			case syntax.InstRune:
				ok = in.MatchRune(c)
			case syntax.InstRune1:
				ok = c == in.Rune[0]
			case syntax.InstRuneAny:
				ok = true
			case syntax.InstRuneAnyNotNL:
				ok = c != '\n'
			default:
				continue
			}
			if ok {
				matches[c] = append(matches[c], uint32(pc))
			}
		}
	}
	// reach[pc] is what pc leads to without consuming input: the rune
	// instructions, and n for a match. Computed once per pc.
	reach := make([][]uint32, n)
	done := make([]bool, n)
	mark, seen := make([]uint32, n+1), make([]uint32, n+1)
	gen, setGen := uint32(0), uint32(0)
	reachOf := func(pc uint32) []uint32 {
		if done[pc] {
			return reach[pc]
		}
		gen++
		var out []uint32
		stack := []uint32{pc}
		for len(stack) > 0 {
			q := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if mark[q] == gen {
				continue
			}
			mark[q] = gen
			in := &prog.Inst[q]
			switch in.Op {
			case syntax.InstAlt, syntax.InstAltMatch:
				stack = append(stack, in.Arg, in.Out)
			case syntax.InstCapture, syntax.InstNop:
				stack = append(stack, in.Out)
			case syntax.InstMatch:
				out = append(out, uint32(n))
			case syntax.InstFail:
			default:
				out = append(out, q)
			}
		}
		reach[pc], done[pc] = out, true
		return out
	}
	// closure returns the sorted union of reach over pcs (n, last, for
	// a match).
	var set []uint32
	closure := func(pcs []uint32) []uint32 {
		setGen++
		set = set[:0]
		for _, pc := range pcs {
			for _, q := range reachOf(pc) {
				if seen[q] != setGen {
					seen[q] = setGen
					set = append(set, q)
				}
			}
		}
		slices.Sort(set)
		return set
	}
	ids := map[string]uint16{}
	states := [][]uint32{nil} // 0: dead
	var key []byte
	add := func(pcs []uint32) (uint16, bool) {
		if len(pcs) == 0 {
			return 0, true
		}
		key = key[:0]
		for _, pc := range pcs {
			key = binary.LittleEndian.AppendUint32(key, pc)
		}
		if id, ok := ids[string(key)]; ok {
			return id, true
		}
		if len(states) >= maxDFAStates {
			return 0, false
		}
		id := uint16(len(states))
		ids[string(key)] = id
		states = append(states, slices.Clone(pcs))
		return id, true
	}
	if id, _ := add(closure([]uint32{uint32(prog.Start)})); id == 0 {
		return &dfa{ncls: 1, next: []uint32{0}} // matches nothing
	}
	// Bytes that the same instructions consume are one class: the
	// automaton is built per class, then spread over the class's bytes.
	var classes [][]byte
	classOf := map[string]int{}
	for c := range 128 {
		key = key[:0]
		for _, pc := range matches[c] {
			key = binary.LittleEndian.AppendUint32(key, pc)
		}
		i, ok := classOf[string(key)]
		if !ok {
			i = len(classes)
			classOf[string(key)] = i
			classes = append(classes, nil)
		}
		classes[i] = append(classes[i], byte(c))
	}
	// classes[k] of pc: which classes pc consumes.
	consumes := make([][]int, n)
	for k, class := range classes {
		for _, pc := range matches[class[0]] {
			consumes[pc] = append(consumes[pc], k)
		}
	}
	nexts := make([][]uint32, len(classes))
	var trans [][]uint16 // per state, per class
	for s := 0; s < len(states); s++ {
		row := make([]uint16, len(classes))
		trans = append(trans, row)
		if s == 0 {
			continue // dead stays dead
		}
		for k := range nexts {
			nexts[k] = nexts[k][:0]
		}
		for _, pc := range states[s] {
			if pc == uint32(n) {
				continue
			}
			for _, k := range consumes[pc] {
				nexts[k] = append(nexts[k], prog.Inst[pc].Out)
			}
		}
		for k, next := range nexts {
			if len(next) == 0 {
				continue
			}
			id, ok := add(closure(next))
			if !ok {
				return nil
			}
			row[k] = id
		}
	}
	// Pack: rows of len(classes)+1 entries, the last for bytes >= 0x80.
	d := &dfa{ncls: uint32(len(classes) + 1)}
	for c := range d.cls {
		d.cls[c] = uint8(len(classes))
	}
	for k, class := range classes {
		for _, c := range class {
			d.cls[c] = uint8(k)
		}
	}
	entry := func(s uint16) uint32 {
		e := uint32(s) * d.ncls
		if s != 0 && states[s][len(states[s])-1] == uint32(n) {
			e |= acceptBit
		}
		return e
	}
	d.next = make([]uint32, len(states)*int(d.ncls))
	for s, row := range trans {
		if s == 0 {
			continue
		}
		base := s * int(d.ncls)
		for k, id := range row {
			d.next[base+k] = entry(id)
		}
		d.next[base+len(classes)] = badEntry
	}
	d.start = entry(1)
	return d
}

// splitResult is what the split path found.
type splitResult uint8

const (
	splitNone     splitResult = iota // the rule does not match the line
	splitOne                         // it matches, <HOST> at one place
	splitFallback                    // ask the regexp
)

// find walks line as the package comment above says and returns the
// bounds of <HOST> when the split is unique.
func (m *splitMatcher) find(line []byte) (int, int, splitResult) {
	// The walk is linear for a line as the service writes it; a line
	// built so that P could end in many places, each followed by a long
	// <HOST> or S walk, goes to the regexp (linear in the line) instead.
	budget := 4*len(line) + 512
	hs, he, found := 0, 0, 0
	pn, pc := m.p.next, &m.p.cls
	hn, hc := m.h.next, &m.h.cls
	p := m.p.start
	for i := 0; ; i++ {
		if p&acceptBit != 0 {
			h := m.h.start
			for j := i; ; j++ {
				if h&acceptBit != 0 {
					var res splitResult
					res, budget = m.s.whole(line[j:], budget)
					switch res {
					case splitOne:
						if found++; found > 1 {
							return 0, 0, splitFallback
						}
						hs, he = i, j
					case splitFallback:
						return 0, 0, splitFallback
					}
				}
				if j == len(line) {
					break
				}
				h = hn[h&offMask+uint32(hc[line[j]])]
				if h&offMask == 0 {
					if h == badEntry {
						return 0, 0, splitFallback
					}
					break
				}
				if budget--; budget < 0 {
					return 0, 0, splitFallback
				}
			}
		}
		if i == len(line) {
			break
		}
		p = pn[p&offMask+uint32(pc[line[i]])]
		if p&offMask == 0 {
			if p == badEntry {
				return 0, 0, splitFallback
			}
			break
		}
	}
	if found == 0 {
		return 0, 0, splitNone
	}
	return hs, he, splitOne
}

// whole reports whether d accepts all of b (splitOne) or not (splitNone),
// or splitFallback on a byte that is not ASCII or when the budget runs
// out; it returns what is left of the budget.
func (d *dfa) whole(b []byte, budget int) (splitResult, int) {
	next, cls := d.next, &d.cls
	e := d.start
	if e&offMask == 0 {
		return splitNone, budget
	}
	for _, c := range b {
		e = next[e&offMask+uint32(cls[c])]
		if e&offMask == 0 {
			if e == badEntry {
				return splitFallback, budget
			}
			return splitNone, budget
		}
		if budget--; budget < 0 {
			return splitFallback, budget
		}
	}
	if e&acceptBit != 0 {
		return splitOne, budget
	}
	return splitNone, budget
}

// matchSplit is MatchUser by the split path, the regexp where the split
// path cannot answer. wantUser asks for <USER>'s text, which only the
// regexp extracts.
func (r *Rule) matchSplit(m *splitMatcher, line []byte, wantUser bool) (netip.Addr, []byte, bool) {
	hs, he, res := m.find(line)
	switch {
	case res == splitNone:
		return netip.Addr{}, nil, false
	case res == splitFallback || wantUser && r.user >= 0 || len(r.refs) > 0:
		// The automata match the pattern with each (?P=name) as a
		// copy of its group, which may differ: they refuse, and only
		// the regexp's captures can accept (backref.go).
		return r.matchRegexp(line)
	}
	a, ok := parseAddr(line[hs:he])
	if !ok {
		return netip.Addr{}, nil, false
	}
	return a, nil, true
}

// match is Match and MatchUser: the split path, or the regexp for a
// pattern the split path does not suit. Both are preceded by the required
// literals (a line without one of them is refused by substring searches)
// where those are the cheaper refusal: always before the regexp, and
// before the walk only when the pattern opens with text that can run on
// (.*, \S+): there the walk goes far into every line, while six substring
// searches cost more than a walk that stops within a few bytes, as it does
// on an imported filter's date.
func (r *Rule) match(line []byte, wantUser bool) (netip.Addr, []byte, bool) {
	r.splitOnce.Do(func() { r.split = newSplitMatcher(r.re.String()) })
	if r.split == nil {
		return r.matchRegexp(line)
	}
	if r.split.prefilter {
		for _, n := range r.need {
			if !bytes.Contains(line, n) {
				return netip.Addr{}, nil, false
			}
		}
	}
	return r.matchSplit(r.split, line, wantUser)
}

// opensEarly reports whether d reaches, within depth bytes of its start,
// a state that stays itself on at least most ASCII bytes: open text, over
// which a walk goes on however the line is.
func (d *dfa) opensEarly(depth int) bool {
	seen := map[uint32]bool{}
	level := []uint32{d.start & offMask}
	for range depth {
		var next []uint32
		for _, off := range level {
			if off == 0 || seen[off] {
				continue
			}
			seen[off] = true
			self := 0
			for c := range 128 {
				e := d.next[off+uint32(d.cls[c])]
				if e&offMask == off {
					self++
				}
				if e&offMask != 0 && !seen[e&offMask] {
					next = append(next, e&offMask)
				}
			}
			if self >= 96 {
				return true
			}
		}
		level = next
	}
	return false
}

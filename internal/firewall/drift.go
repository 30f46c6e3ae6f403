package firewall

import (
	"fmt"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// shape is moat's table as the kernel holds it, less what changes at run
// time by design: set elements (bans, grants, knocks in progress) and
// counter values. Two reads of an untouched table give equal shapes, so a
// difference is drift: a rule deleted or added by hand, a policy changed,
// a chain added.
type shape struct {
	chains []chainShape
}

type chainShape struct {
	name  string
	head  string   // hook, priority, type and policy of a base chain
	rules []string // each rule's expressions as netlink bytes
	texts []string // what each rule is, for messages
}

// Drift compares moat's chains and rules in the kernel with those the last
// Apply installed, and says what differs ("" for nothing, or when there is
// nothing to compare with yet). It reads rules only, never set elements,
// so it is cheap: a few dozen rules in one dump per chain.
func (a *Applier) Drift() (string, error) {
	a.mu.Lock()
	want, gen := a.shape, a.gen
	a.mu.Unlock()
	if want == nil {
		return "", nil
	}
	c, err := a.conn()
	if err != nil {
		return "", err
	}
	got, err := readShape(c, nil)
	if err != nil {
		return "", err
	}
	a.mu.Lock()
	same := a.gen == gen
	a.mu.Unlock()
	if !same {
		return "", nil // installed again meanwhile: the next check compares with that
	}
	return want.diff(got), nil
}

// remember records the shape of the table just installed from rs, to
// compare with later. A failed read leaves nothing to compare with: the
// check is skipped rather than reporting drift that is not there.
func (a *Applier) remember(rs *Ruleset) {
	a.gen++
	a.shape = nil
	c, err := a.conn()
	if err != nil {
		return
	}
	if s, err := readShape(c, rs); err == nil {
		a.shape = s
	}
}

// forget drops the recorded shape (the table was removed).
func (a *Applier) forget() {
	a.gen++
	a.shape = nil
}

// readShape reads moat's chains and their rules. With rs, each rule is
// also named by rs's text for it, when the chain holds as many rules as rs
// built (it does, right after an install).
func readShape(c *nftables.Conn, rs *Ruleset) (*shape, error) {
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, explain(fmt.Errorf("nftables: list chains: %w", err))
	}
	built := map[string][]Rule{}
	if rs != nil {
		for _, ch := range rs.Chains {
			built[ch.Name] = ch.Rules
		}
	}
	s := &shape{}
	for _, ch := range chains {
		if ch.Table == nil || ch.Table.Name != TableName {
			continue
		}
		cs := chainShape{name: ch.Name, head: chainHead(ch)}
		rules, err := c.GetRules(table(), ch)
		if err != nil {
			return nil, explain(fmt.Errorf("nftables: read the rules of chain %s: %w", ch.Name, err))
		}
		names := built[ch.Name]
		for i, r := range rules {
			cs.rules = append(cs.rules, ruleKey(r.Exprs))
			if len(names) == len(rules) {
				cs.texts = append(cs.texts, names[i].Text())
			} else {
				cs.texts = append(cs.texts, exprKinds(r.Exprs))
			}
		}
		s.chains = append(s.chains, cs)
	}
	slices.SortFunc(s.chains, func(x, y chainShape) int { return strings.Compare(x.name, y.name) })
	return s, nil
}

func chainHead(ch *nftables.Chain) string {
	if ch.Hooknum == nil {
		return "regular"
	}
	h := fmt.Sprintf("type %s hook %d", ch.Type, *ch.Hooknum)
	if ch.Priority != nil {
		h += fmt.Sprintf(" priority %d", *ch.Priority)
	}
	if ch.Policy != nil {
		h += " policy " + map[nftables.ChainPolicy]string{nftables.ChainPolicyAccept: "accept", nftables.ChainPolicyDrop: "drop"}[*ch.Policy]
	}
	return h
}

// ruleKey encodes a rule's expressions as the kernel holds them, with
// counter values zeroed: they grow with traffic and are not drift.
func ruleKey(es []expr.Any) string {
	var b strings.Builder
	for _, e := range es {
		if _, ok := e.(*expr.Counter); ok {
			e = &expr.Counter{}
		}
		data, err := expr.Marshal(byte(nftables.TableFamilyINet), e)
		if err != nil {
			// Not one the library can encode: its type still tells it apart.
			fmt.Fprintf(&b, "%T;", e)
			continue
		}
		fmt.Fprintf(&b, "%x;", data)
	}
	return b.String()
}

// exprKinds names a rule no one built by its expressions' kinds, e.g.
// "payload cmp immediate".
func exprKinds(es []expr.Any) string {
	var ks []string
	for _, e := range es {
		k := fmt.Sprintf("%T", e)
		k = strings.ToLower(k[strings.LastIndexByte(k, '.')+1:])
		ks = append(ks, k)
	}
	return "[" + strings.Join(ks, " ") + "]"
}

// diff says how got differs from s, "" when it does not.
func (s *shape) diff(got *shape) string {
	var out []string
	have := map[string]chainShape{}
	for _, c := range got.chains {
		have[c.name] = c
	}
	for _, w := range s.chains {
		before := len(out)
		g, ok := have[w.name]
		delete(have, w.name)
		if !ok {
			out = append(out, fmt.Sprintf("chain %s is missing", w.name))
			continue
		}
		if g.head != w.head {
			out = append(out, fmt.Sprintf("chain %s is now %q, was %q", w.name, g.head, w.head))
		}
		// Rules as multisets, so one rule removed or added reads as that
		// and not as every rule after it moving.
		left := map[string]int{}
		for _, r := range g.rules {
			left[r]++
		}
		for i, r := range w.rules {
			if left[r] > 0 {
				left[r]--
				continue
			}
			out = append(out, fmt.Sprintf("chain %s: rule %d `%s` is missing", w.name, i+1, w.texts[i]))
		}
		for i, r := range g.rules {
			if left[r] > 0 {
				left[r]--
				out = append(out, fmt.Sprintf("chain %s: rule %d %s was not installed by moat", w.name, i+1, g.texts[i]))
			}
		}
		if len(out) == before && !slices.Equal(g.rules, w.rules) {
			out = append(out, fmt.Sprintf("chain %s: its rules are in another order", w.name))
		}
	}
	var extra []string
	for name := range have {
		extra = append(extra, fmt.Sprintf("chain %s was not installed by moat", name))
	}
	slices.Sort(extra)
	out = append(out, extra...)
	return strings.Join(out, "; ")
}

package login

import (
	"fmt"
	"slices"

	"github.com/moat-fw/moat/internal/authlog"
	"github.com/moat-fw/moat/internal/config"
)

// RuleSet is the [[login.rule]] patterns of a config, compiled, in the
// config's order. The daemon and `moat explain` both match lines with it,
// so both see the same matches. It is safe for concurrent use.
type RuleSet struct {
	rules []setRule
}

type setRule struct {
	name, source, kind string
	forget             bool
	re                 *authlog.Rule
}

// RuleLine is what one rule took from one line: a failure, or (with a
// connection id) a line of fail2ban's multi-line bookkeeping, which
// Guard.Attribute turns into the failure to count, if any.
type RuleLine struct {
	Rule   string // the rule's name: its jail
	Source string // the rule's source: ids of one jail and one file go together
	Kind   string // config.RuleFailure, RuleNote or RuleSuccess
	Forget bool   // forget the id after this line
	authlog.RuleMatch
}

// CompileRules compiles cfg's [[login.rule]] patterns.
func CompileRules(cfg config.Login) (*RuleSet, error) {
	s := &RuleSet{}
	for _, r := range cfg.Rules {
		re, err := authlog.CompileRule(r.Pattern)
		if err != nil {
			return nil, fmt.Errorf("config: [[login.rule]] %q: %w", r.Name, err)
		}
		s.rules = append(s.rules, setRule{name: r.Name, source: r.Source, kind: r.RuleKind(), forget: r.Forget, re: re})
	}
	return s, nil
}

// Len is the number of rules.
func (s *RuleSet) Len() int { return len(s.rules) }

// Sources lists the files the rules read, each once, in the config's
// order.
func (s *RuleSet) Sources() []string {
	var out []string
	for _, r := range s.rules {
		if !slices.Contains(out, r.source) {
			out = append(out, r.source)
		}
	}
	return out
}

// Match appends to out what the rules reading source ("": every rule, as
// explain reads one file with all of them) take from line: for each rule
// name, the first of its rules that matches, as fail2ban tries a jail's
// failregexes in order and takes the first that matches. A line counts
// once per jail however many of its patterns match it. The user name is
// taken when wantUser (explain shows it) and for rules with an id, whose
// bookkeeping looks at it; the daemon leaves it, which keeps the faster
// path (authlog.Rule.MatchLine).
func (s *RuleSet) Match(source string, line []byte, wantUser bool, out []RuleLine) []RuleLine {
	start := len(out)
	for i := range s.rules {
		r := &s.rules[i]
		if source != "" && r.source != source {
			continue
		}
		if slices.ContainsFunc(out[start:], func(m RuleLine) bool { return m.Rule == r.name }) {
			continue
		}
		m, ok := r.re.MatchLine(line, wantUser)
		if !ok {
			continue
		}
		out = append(out, RuleLine{Rule: r.name, Source: r.source, Kind: r.kind, Forget: r.forget, RuleMatch: m})
	}
	return out
}

package authlog

import (
	"strings"
	"testing"
)

// A connection id is held to <HOST>'s shape check: at one fixed place,
// one side the service's text to an anchor, and no open text inside,
// where a client's text could write another connection's id.
func TestCompileRuleID(t *testing.T) {
	refused := []struct{ pattern, want string }{
		{`^\S+ app: (?P<id>\d+) x (?P<id>\d+) from <HOST>$`, "at most once"},
		{`^\S+ app: (?P<id>.*) failed$`, "holds open text"},
		{`^\S+ app: (?P<id>[^:]+): failed$`, "holds open text"},
		{`^.* app: (?P<id>\d+) .*$`, "both sides of the connection id"},
		{`^\S+ app(?: (?P<id>\d+))?: failed$`, "fixed place"},
		{`^\S+ app: (?:(?P<id>\d+)|x): failed$`, "fixed place"},
		{`^\S+ app: failed$`, "exactly once"},
		// An id does not relax <HOST>'s check.
		{`^\S+ app\[(?P<id>\d+)\]: for .* from <HOST> .*$`, "both sides of <HOST>"},
	}
	for _, tt := range refused {
		_, err := CompileRule(tt.pattern)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want it to mention %q", tt.pattern, err, tt.want)
		}
	}
	for _, p := range []string{
		`^\S+ app\[(?P<id>\d+)\]: too many failures for .*$`,
		`^\S+ app\[(?<id>\d+)\]: too many failures for .*$`,
		`^\S+ app\[(?P<id>\d+)\]: connect from <HOST>$`,
		`^\S+ (?P<id>\S+ sm-mta\[\d+\]: (?:\w{14,20}: )?)<[^@]+@[^>]+>\.\.\. No such user here$`,
	} {
		if _, err := CompileRule(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

func TestRuleMatchLineID(t *testing.T) {
	r, err := CompileRule(`^\S+ app\[(?P<id>\d+)\]: failed for <USER>$`)
	if err != nil {
		t.Fatal(err)
	}
	if r.HasHost() || !r.HasID() {
		t.Fatal("HasHost/HasID")
	}
	// The client's user name holds another connection's id and an
	// address: the rule takes the id where the service writes it.
	m, ok := r.MatchLine([]byte(`h app[42]: failed for x app[7]: 203.0.113.9`), true)
	if !ok || string(m.ID) != "42" || m.Addr.IsValid() || string(m.User) != "x app[7]: 203.0.113.9" {
		t.Fatalf("got %+v %v", m, ok)
	}
	if _, ok := r.Match([]byte(`h app[42]: failed for x`)); ok {
		t.Error("Match of a rule without <HOST> matched: it has no address to give")
	}
	long := `h app[` + strings.Repeat("1", maxIDLen+1) + `]: failed for x`
	if _, ok := r.MatchLine([]byte(long), true); ok {
		t.Error("took an id longer than maxIDLen")
	}
	// An empty id names no connection: one rule's lines with it would
	// all share one entry.
	e, err := CompileRule(`^\S+ app\[(?P<id>\d*)\]: failed for <USER>$`)
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := e.MatchLine([]byte(`h app[]: failed for x`), true); ok {
		t.Errorf("took an empty id: %+v", m)
	}
	if m, ok := e.MatchLine([]byte(`h app[9]: failed for x`), true); !ok || string(m.ID) != "9" {
		t.Errorf("got %+v %v", m, ok)
	}
	h, err := CompileRule(`^\S+ app\[(?P<id>\d+)\]: connect from <HOST> user .*$`)
	if err != nil {
		t.Fatal(err)
	}
	m, ok = h.MatchLine([]byte(`h app[42]: connect from 192.0.2.1 user app[7]: connect from 203.0.113.9`), true)
	if !ok || string(m.ID) != "42" || m.Addr.String() != "192.0.2.1" {
		t.Fatalf("got %+v %v", m, ok)
	}
	// Without an id, MatchLine is MatchUser.
	p, err := CompileRule(`^\S+ app: failed for <USER> from <HOST>$`)
	if err != nil {
		t.Fatal(err)
	}
	m, ok = p.MatchLine([]byte(`h app: failed for bob from 192.0.2.2`), true)
	if !ok || m.ID != nil || m.Addr.String() != "192.0.2.2" || string(m.User) != "bob" {
		t.Fatalf("got %+v %v", m, ok)
	}
}

package authlog

import (
	"strings"
	"testing"
)

// An IPv6 address with an embedded IPv4 tail is taken whole even when
// what follows <HOST> could take the rest: ::ffff:1.2.3.4 was read as
// ::ffff:1 (the tail's first digit as a hex group) when ".*" followed.
func TestRuleEmbeddedIPv4Tail(t *testing.T) {
	r, err := CompileRule(`^\S+ LOGIN REFUSED FROM <HOST>.*$`)
	if err != nil {
		t.Fatal(err)
	}
	for line, want := range map[string]string{
		"ROOT LOGIN REFUSED FROM ::ffff:1.2.3.4":         "1.2.3.4",
		"ROOT LOGIN REFUSED FROM ::ffff:192.0.2.17 port": "192.0.2.17",
		"ROOT LOGIN REFUSED FROM 64:ff9b::192.0.2.17":    "64:ff9b::c000:211",
		"ROOT LOGIN REFUSED FROM 2001:db8::1234.x":       "2001:db8::1234",
	} {
		a, ok := r.Match([]byte(line))
		if !ok || a.String() != want {
			t.Errorf("%s: got %v %v, want %s", line, a, ok, want)
		}
	}
}

// The shape check's refusal names the open parts on each side, so that a
// rule's author (or moat import fail2ban's report) sees what to fix.
func TestShapeErrorNamesOpenParts(t *testing.T) {
	_, err := CompileRule(`^\S+ myapp: user [^)]* failed from <HOST>(?: \S+){0,3}$`)
	if err == nil || !strings.Contains(err.Error(), "open text") ||
		!strings.Contains(err.Error(), "before it: `[^\\)]*`") || !strings.Contains(err.Error(), "after it: `(?: [^\\t\\n\\f\\r ]+){0,3}`") {
		t.Fatalf("got %v", err)
	}
}

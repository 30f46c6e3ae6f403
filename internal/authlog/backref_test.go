package authlog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
)

// sendmailRef is sendmail-reject's failregex 0 as moat import fail2ban
// writes it, less the date: the recipient in arg1 and again in reject=.
const sendmailRef = `^ruleset=check_rcpt, arg1=(?P<email><\S+@\S+>), relay=(?:\S+ )?\[<HOST>\], reject=(?:550 5\.7\.1(?: (?P=email)\.\.\.)? Relaying denied|550 5\.[71]\.1 (?P=email)\.\.\. User unknown)$`

func TestBackrefEquality(t *testing.T) {
	r, err := CompileRule(sendmailRef)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		line string
		want string // the address, "" for no match
	}{
		{"ruleset=check_rcpt, arg1=<a@b.c>, relay=x [10.0.0.1], reject=550 5.1.1 <a@b.c>... User unknown", "10.0.0.1"},
		// The second address differs from arg1: fail2ban's regex does not match.
		{"ruleset=check_rcpt, arg1=<a@b.c>, relay=x [10.0.0.1], reject=550 5.1.1 <z@b.c>... User unknown", ""},
		{"ruleset=check_rcpt, arg1=<a@b.c>, relay=x [10.0.0.1], reject=550 5.1.1 <a@b.cc>... User unknown", ""},
		{"ruleset=check_rcpt, arg1=<a@b.c>, relay=x [10.0.0.1], reject=550 5.1.1 <A@b.c>... User unknown", ""},
		// The optional copy not taken: no check.
		{"ruleset=check_rcpt, arg1=<a@b.c>, relay=[10.0.0.2], reject=550 5.7.1 Relaying denied", "10.0.0.2"},
		{"ruleset=check_rcpt, arg1=<a@b.c>, relay=[10.0.0.2], reject=550 5.7.1 <a@b.c>... Relaying denied", "10.0.0.2"},
		{"ruleset=check_rcpt, arg1=<a@b.c>, relay=[10.0.0.2], reject=550 5.7.1 <b@b.c>... Relaying denied", ""},
	} {
		for _, wantUser := range []bool{false, true} {
			var a netip.Addr
			var ok bool
			if wantUser {
				a, _, ok = r.MatchUser([]byte(c.line))
			} else {
				a, ok = r.Match([]byte(c.line))
			}
			got := ""
			if ok {
				got = a.String()
			}
			if got != c.want {
				t.Errorf("%s: got %q, want %q", c.line, got, c.want)
			}
			if got2, _, ok2 := r.matchRegexp([]byte(c.line)); ok2 != ok || ok && got2 != a {
				t.Errorf("%s: the regexp path says %v %v", c.line, got2, ok2)
			}
		}
	}
}

func TestBackrefRefused(t *testing.T) {
	for _, c := range []struct{ pattern, why string }{
		{`^(?P=a) (?P<a>\w+) <HOST>$`, "before the group"},
		{`^(?P<a>\w+(?P=a)) <HOST>$`, "inside the group"},
		{`^(?P<a>\w+) (?P=b) <HOST>$`, "no group named b"},
		{`^(?P<a>\w+) (?P<a>\w+) (?P=a) <HOST>$`, "2 groups named a"},
		{`^(?i)(?P<a>\w+) (?P=a) <HOST>$`, "(?i)"},
		{`^(?P<a>\w+) (?i:x(?P=a)) <HOST>$`, "(?i)"},
		{`^(?i:mon|tue) (?P<a>\w+) (?P=a) <HOST>$`, ""},
		{`^(?P<a>\w+) (?P=a b) <HOST>$`, "not a group name"},
		// Only the last round of a repetition would be checked:
		// "b a " would pass for a = "a".
		{`^(?P<a>\w+) <HOST> (?:(?P=a) )+$`, "repetition"},
		{`^(?:(?P<a>\w+) )+<HOST> (?P=a)$`, "repetition"},
		{`^(?P<a>\w+) <HOST>(?: (?P=a)){0,3}$`, "repetition"},
		{`^(?P<a>\w+) <HOST>(?: (?P=a)){0,1}$`, ""},
		{`^(?P<moatbackref0>\w+) <HOST>$`, "reserved"},
		// A copy of open text is open text: the shape check sees it.
		{`^(?P<a>\w+) (?P=a) <HOST> <USER>$`, ""},
		{`^(?P<a>.*) (?P=a) <HOST> .*$`, "open text"},
	} {
		_, err := CompileRule(c.pattern)
		switch {
		case c.why == "" && err != nil:
			t.Errorf("%s: %v", c.pattern, err)
		case c.why != "" && (err == nil || !strings.Contains(err.Error(), c.why)):
			t.Errorf("%s: got %v, want an error saying %q", c.pattern, err, c.why)
		}
	}
	// (?P=...) inside a class or escaped is text.
	r, err := CompileRule(`^\(\?P=a\)[(?P=a)]+ <HOST>$`)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Match([]byte("(?P=a)a=P 10.1.1.1")); !ok {
		t.Error("an escaped (?P=a) and one in a class are text")
	}
}

// TestBackrefAgainstPython compares rules with backreferences with
// Python's re, fail2ban's engine, on random short lines: where moat
// matches, Python matches with the same address (the check never takes a
// wrong one); where the first way RE2 finds fails the check while a later
// one passes, moat misses, which the second pattern shows can happen.
func TestBackrefAgainstPython(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed: the reference is Python's re")
	}
	const host = `(?P<host>\d+\.\d+\.\d+\.\d+)`
	patterns := []struct {
		p     string
		exact bool // no line that Python matches is missed
	}{
		{`^(?P<a>[ab]+)-(?:(?P=a)-)?x <HOST>$`, true},
		{`^(?P<a>[ab]*)(?P=a)b <HOST>$`, false},
		// RE2's first way takes "a-a" whole into the optional part's
		// neighbours; pinning the group finds Python's (pinnedMatch).
		{`^(?P<a>[ab]+)(?:-(?P=a))?-?[ab]* <HOST>$`, true},
		// selinux-ssh's acct=(?P<q>"?)\S+(?P=q): on "ab" RE2's greedy
		// class takes the closing quote, and pinned, the copy gets it
		// back; on "ab (no closing quote) Python backtracks into the
		// group itself (q empty), which pinning RE2's text cannot: missed.
		{`^(?P<q>"?)[ab"]+(?P=q) <HOST>$`, false},
		{`^(?P<a><[ab]+@[ab]+>), relay=\[<HOST>\], reject=(?:5(?: (?P=a)\.)? x|1 (?P=a)\. (?:y|z))$`, true},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	alpha := []string{"a", "b", "-", "x", " ", "<", ">", "@", ".", "y", "z"}
	var lines []string
	for range 3000 {
		var b strings.Builder
		for range rng.IntN(9) {
			b.WriteString(alpha[rng.IntN(len(alpha))])
		}
		lines = append(lines, b.String())
	}
	// Lines of the shapes the patterns want, with random parts.
	word := func() string {
		var b strings.Builder
		for range 1 + rng.IntN(3) {
			b.WriteString([]string{"a", "b"}[rng.IntN(2)])
		}
		return b.String()
	}
	for range 1500 {
		a, c := word(), word()
		ip := fmt.Sprintf("10.0.%d.%d", rng.IntN(3), rng.IntN(3))
		lines = append(lines,
			a+"-"+c+"-x "+ip, a+"-x "+ip, a+c+"b "+ip, a+a+"b "+ip,
			a+"-"+c+" "+ip, a+"-"+a+" "+ip,
			"<"+a+"@"+c+">, relay=["+ip+"], reject=5 <"+a+"@"+c+">. x",
			"<"+a+"@"+c+">, relay=["+ip+"], reject=5 <"+c+"@"+a+">. x",
			"<"+a+"@"+c+">, relay=["+ip+"], reject=1 <"+c+"@"+c+">. z",
			"<"+a+"@"+c+">, relay=["+ip+"], reject=1 <"+a+"@"+c+">. y",
			`"`+a+`" `+ip, a+" "+ip, `"`+a+" "+ip, a+`" `+ip, `""`+a+`"" `+ip)
	}
	var pyPats []string
	for _, p := range patterns {
		pyPats = append(pyPats, strings.Replace(p.p, "<HOST>", host, 1))
	}
	in, _ := json.Marshal(map[string]any{"patterns": pyPats, "lines": lines})
	cmd := exec.Command(py, "-c", `
import json, re, sys
d = json.load(sys.stdin)
out = []
for p in d["patterns"]:
    r = re.compile(p)
    row = []
    for l in d["lines"]:
        m = r.match(l)
        row.append(m.group("host") if m and m.end() == len(l) else "")
    out.append(row)
json.dump(out, sys.stdout)
`)
	cmd.Stdin = bytes.NewReader(in)
	outb, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	var want [][]string
	if err := json.Unmarshal(outb, &want); err != nil {
		t.Fatal(err)
	}
	for i, p := range patterns {
		r, err := CompileRule(p.p)
		if err != nil {
			t.Fatal(err)
		}
		agree, misses, matched := 0, 0, 0
		for j, line := range lines {
			a, ok := r.Match([]byte(line))
			got := ""
			if ok {
				got = a.String()
			}
			if want[i][j] != "" {
				matched++
			}
			switch {
			case got == want[i][j]:
				agree++
			case got == "":
				misses++
				if p.exact {
					t.Errorf("%s on %q: missed %s", p.p, line, want[i][j])
				}
			default:
				t.Errorf("%s on %q: took %s, Python %q", p.p, line, got, want[i][j])
			}
		}
		t.Logf("%s: %d of %d lines agree (%d Python matches, %d missed)", p.p, agree, len(lines), matched, misses)
		if matched == 0 {
			t.Errorf("%s: no line matches: the test proves nothing", p.p)
		}
		if !p.exact && misses == 0 {
			t.Errorf("%s: no miss: the test should show RE2's first way failing the check", p.p)
		}
	}
}

// A log whose lines fail a backreference's check with ever new group
// texts costs at most maxPins compiles of the rule: past them, such
// lines are missed, not compiled for.
func TestPinnedPatternsBounded(t *testing.T) {
	r, err := CompileRule(`^(?P<q>"?)[a-z0-9"]+(?P=q) <HOST>$`)
	if err != nil {
		t.Fatal(err)
	}
	// The pinned retry takes these (RE2's greedy class took the quote).
	if a, ok := r.Match([]byte(`"ab" 192.0.2.1`)); !ok || a.String() != "192.0.2.1" {
		t.Fatalf("quoted: %v %v, want the pinned retry to take 192.0.2.1", a, ok)
	}
	r2, err := CompileRule(`^(?P<w>[a-z0-9]+)-[a-z0-9-]*(?P=w) <HOST>$`)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 * maxPins {
		// The group takes wNNN and the copy another text: a failing
		// check with a new group text each time.
		r2.Match(fmt.Appendf(nil, "w%d-x-y%d 192.0.2.2", i, i))
	}
	r2.pins.mu.Lock()
	n := len(r2.pins.re)
	r2.pins.mu.Unlock()
	if n == 0 || n > maxPins {
		t.Fatalf("%d pinned patterns compiled, want 1 to %d", n, maxPins)
	}
}

// A group that holds an assertion (\b here) cannot stand as the literal it
// took: the rule never retries, so a hostile log whose every line fails
// the check costs no compile, no cache slot, no lock. Text that is not
// UTF-8 is not pinned either (a literal of it would hold U+FFFD, not the
// line's bytes).
func TestUnpinnable(t *testing.T) {
	r, err := CompileRule(`^(?P<w>\b[a-z]+)-[a-z-]*(?P=w) <HOST>$`)
	if err != nil {
		t.Fatal(err)
	}
	if !r.pins.off {
		t.Fatal("a group with \\b is taken as pinnable")
	}
	for i := range 4 {
		r.Match(fmt.Appendf(nil, "w%c-x-y 192.0.2.2", 'a'+i))
	}
	q, err := CompileRule(`^(?P<w>[^ -]+)-[a-z-]*(?P=w) <HOST>$`)
	if err != nil {
		t.Fatal(err)
	}
	if q.pins.off {
		t.Fatal("a plain group is taken as unpinnable")
	}
	q.Match([]byte("w\xff-x-y 192.0.2.2"))
	for _, c := range []*Rule{r, q} {
		c.pins.mu.Lock()
		n := len(c.pins.re)
		c.pins.mu.Unlock()
		if n != 0 {
			t.Errorf("%s: %d pinned patterns tried, want none", c, n)
		}
	}
}

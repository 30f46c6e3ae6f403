package fail2ban

import (
	"regexp"
	"regexp/syntax"
	"strings"
	"testing"
	"unicode/utf8"
)

// rewriteLookahead rewrites (?!words)rest with resolveLookaheads, as
// convertRegex does, and returns the whole-line pattern.
func rewriteLookahead(t testing.TB, la, rest string) (string, error) {
	t.Helper()
	tree, err := syntax.Parse("(?P<"+lookaheadName+"0>"+la+")"+rest+"$", syntax.Perl)
	if err != nil {
		t.Fatal(err)
	}
	seq, err := resolveLookaheads(tree.Sub)
	if err != nil {
		return "", err
	}
	return "^" + render(seq), nil
}

// TestLookaheadRewriteIsExact checks the rewrite of (?!words)rest
// against the lookahead's meaning on every string of a small alphabet
// up to six runes long: a line matches the rewrite exactly when rest
// matches it whole and it starts with none of the words.
func TestLookaheadRewriteIsExact(t *testing.T) {
	cases := []struct{ words, rest string }{
		{`ab`, `[a-c]+:[a-c]+`},        // apache-auth's (?!evasive)\S+:\S+
		{`ab|ca`, `(?:[a-c]+: )?x`},    // named-refused's (?!error|info)[\w-]+:
		{`a `, `[^ ]+ x`},              // traefik's (?!- )\S+
		{`c`, `(?:\S*|.*?) b`},         // apache-auth's (?!`)
		{`ab]`, `(?:.*)\] x`},          // recidive's \[(?!recidive\])(?:.*)\]
		{` ab| b`, `.*`},               // postfix's trailing (?! Connection lost...)
		{`aa`, `a{0,3}b?`},             // bounded repetitions
		{`ab`, `(?i:a)b*c?`},           // a case-folded literal
		{`ba`, `(?:ab|b)*a?`},          // a star whose body starts with the word
		{`abc`, `(?:a|ab)(?:c|bc)?.?`}, // alternatives that overlap
	}
	alphabet := []rune("abc :]x")
	var all []string
	var gen func(prefix string, n int)
	gen = func(prefix string, n int) {
		all = append(all, prefix)
		if n == 0 {
			return
		}
		for _, r := range alphabet {
			gen(prefix+string(r), n-1)
		}
	}
	gen("", 5)
	for _, c := range cases {
		got, err := rewriteLookahead(t, c.words, c.rest)
		if err != nil {
			t.Errorf("(?!%s)%s: %v", c.words, c.rest, err)
			continue
		}
		re := regexp.MustCompile(got)
		plain := regexp.MustCompile("^(?:" + c.rest + ")$")
		words := strings.Split(c.words, "|")
		for _, s := range all {
			want := plain.MatchString(s)
			for _, w := range words {
				want = want && !strings.HasPrefix(s, w)
			}
			if re.MatchString(s) != want {
				t.Errorf("(?!%s)%s as %s: %q matches %v, want %v", c.words, c.rest, got, s, !want, want)
				break
			}
		}
	}
}

// FuzzLookaheadRewrite checks the same on fuzzed rests and lines.
func FuzzLookaheadRewrite(f *testing.F) {
	f.Add("ab", `[a-c]+:[a-c]+`, "ab:c")
	f.Add("x y", `(?:\S*|.*?) b`, "x y b")
	f.Fuzz(func(t *testing.T, word, rest, line string) {
		if word == "" || len(word) > 8 || len(rest) > 40 || strings.ContainsAny(word, "\n") || !utf8.ValidString(word) || !utf8.ValidString(line) {
			return
		}
		if _, err := syntax.Parse(rest, syntax.Perl); err != nil || strings.Contains(rest, "(?P<") || strings.Contains(rest, "(?<") || strings.Contains(rest, `\Q`) {
			return
		}
		got, err := rewriteLookahead(t, regexp.QuoteMeta(word), "(?:"+rest+")")
		if err != nil {
			return // refused: nothing to compare
		}
		re, err := regexp.Compile(got)
		if err != nil {
			t.Fatalf("(?!%q)%s became %s, which Go refuses: %v", word, rest, got, err)
		}
		plain := regexp.MustCompile("^(?:" + rest + ")$")
		want := plain.MatchString(line) && !strings.HasPrefix(line, word)
		if re.MatchString(line) != want {
			t.Fatalf("(?!%q)%s as %s: %q matches %v, want %v", word, rest, got, line, !want, want)
		}
	})
}

package config

import (
	"strings"
	"testing"
)

// M6: a door an ordered sweep can open is refused, naming the key and its
// line, unless the door says allow_weak = true.
func TestWeakDoorsRefused(t *testing.T) {
	for _, tc := range []struct{ seq, why string }{
		{`["tcp/7777"]`, "a single knock"},
		{`["tcp/7000", "udp/7000"]`, "TCP and UDP of each port"},
		{`["udp/7000", "tcp/7001", "udp/7001"]`, "TCP and UDP of each port"},
	} {
		text := "[[door]]\nname = \"ssh\"\nsequence = " + tc.seq + "\nopen = [\"tcp/2222\"]\n"
		_, err := Parse([]byte(text), "moat.toml")
		if err == nil || !strings.Contains(err.Error(), "line 3") || !strings.Contains(err.Error(), "door[0].sequence") || !strings.Contains(err.Error(), tc.why) || !strings.Contains(err.Error(), "allow_weak") {
			t.Errorf("%s: got %v, want a refusal of door[0].sequence at line 3 saying %q and naming allow_weak", tc.seq, err, tc.why)
		}
		if _, err := Parse([]byte(text+"allow_weak = true\n"), "moat.toml"); err != nil {
			t.Errorf("%s with allow_weak: %v", tc.seq, err)
		}
	}
	for _, seq := range []string{`["tcp/7000", "udp/7002"]`, `["tcp/7000", "udp/7000", "tcp/9000"]`, `["tcp/7000", "tcp/8000"]`} {
		if _, err := Parse([]byte("[[door]]\nname = \"ssh\"\nsequence = "+seq+"\nopen = [\"tcp/2222\"]\n"), "moat.toml"); err != nil {
			t.Errorf("%s: %v", seq, err)
		}
	}
}

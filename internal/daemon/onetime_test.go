package daemon

import "testing"

// A one-time sequence file is written by the admin, but a hostile or broken
// line must never crash the daemon, and what is accepted is a sequence the
// door engine can use.
func FuzzParseOneTime(f *testing.F) {
	for _, s := range []string{"7000,8000,9000", "7000:udp 8000:tcp", "", ",,", "0", "65536", "7000:icmp", "1-2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		seq, err := parseOneTime(line)
		if err != nil {
			return
		}
		if len(seq) == 0 || len(seq) > 32 {
			t.Fatalf("%q accepted with %d knocks", line, len(seq))
		}
		for _, s := range seq {
			if s.From == 0 || s.From != s.To {
				t.Fatalf("%q accepted knock %+v", line, s)
			}
		}
	})
}

func TestParseOneTime(t *testing.T) {
	for _, c := range []struct {
		line string
		n    int
	}{
		{"7000,8000:udp,9000", 3},
		{"7000 8000\t9000:tcp", 3},
		{"7000-7001", 0},
		{"7000:icmp", 0},
		{"", 0},
	} {
		seq, err := parseOneTime(c.line)
		if (err == nil) != (c.n > 0) || len(seq) != c.n {
			t.Errorf("parseOneTime(%q) = %v, %v; want %d knocks", c.line, seq, err, c.n)
		}
	}
}

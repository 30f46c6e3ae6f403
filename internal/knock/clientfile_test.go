package knock

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseClientFile(t *testing.T) {
	f, err := ParseClientFile([]byte(`
# knock doors of my servers
[door.ssh]
host     = "server.example.org"
sequence = ["tcp/7000", "tcp/8000", "udp/9000"]
delay    = "200ms"

[door."web-admin"]
sequence = ["udp/1111"]
`), "knock.toml")
	if err != nil {
		t.Fatal(err)
	}
	ssh, err := f.Door("ssh")
	if err != nil || ssh.Host != "server.example.org" || ssh.Delay != 200*time.Millisecond ||
		!slices.Equal(ssh.Sequence, []Step{{"tcp", 7000}, {"tcp", 8000}, {"udp", 9000}}) {
		t.Fatalf("door ssh: %+v %v", ssh, err)
	}
	web, err := f.Door("web-admin")
	if err != nil || web.Host != "" || web.Delay != 0 || len(web.Sequence) != 1 {
		t.Fatalf("door web-admin: %+v %v", web, err)
	}
	_, err = f.Door("mail")
	if err == nil || !strings.Contains(err.Error(), `door "mail" is not in knock.toml; it has ssh, web-admin`) {
		t.Fatalf("a missing door: %v", err)
	}
}

func TestParseClientFileErrors(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{"[door.ssh]\nsequence = [\"tcp/7000\"]\nport = 22\n", "unknown key door.ssh.port"},
		{"[door.ssh]\nhost = \"x\"\n", "door.ssh.sequence is missing"},
		{"[door.ssh]\nsequence = [\"tcp/7000\", \"7001\"]\n", `door.ssh.sequence[1]: knock "7001" has no protocol; did you mean "tcp/7001"?`},
		{"[door.ssh]\nsequence = [\"tcp/7000\"]\ndelay = \"fast\"\n", `door.ssh.delay "fast": want a duration like "200ms"`},
		{"[door.ssh]\nsequence = [\"tcp/7000\"]\ndelay = \"-1s\"\n", `door.ssh.delay "-1s"`},
		{"[door.ssh]\nsequence = [\"tcp/7000\"]\nhost = \" \"\n", "door.ssh.host is empty"},
		{"[door.ssh]\nsequence = [" + strings.Repeat(`"tcp/1", `, 33) + "]\n", "33 knocks; a door takes at most 32"},
		{"[door.ssh\n", "knock.toml: toml: line 2"},
		{"[door.\"a b\"]\nsequence = [\"x/1\"]\n", `door."a b".sequence[0]`},
	} {
		_, err := ParseClientFile([]byte(tc.file), "knock.toml")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want an error with %q", tc.file, err, tc.want)
		}
	}
}

func TestDefaultClientFile(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", "/xdg")
	if p, err := DefaultClientFile(); err != nil || p != "/xdg/moat/knock.toml" {
		t.Errorf("with XDG_CONFIG_HOME: %q %v", p, err)
	}
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("HOME", "/home/knocker")
	if p, err := DefaultClientFile(); err != nil || p != "/home/knocker/.config/moat/knock.toml" {
		t.Errorf("with HOME: %q %v", p, err)
	}
}

func TestLoadClientFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "knock.toml")
	_, err := LoadClientFile(path)
	if err == nil || !strings.Contains(err.Error(), "does not exist: create it with a [door.NAME] table") {
		t.Fatalf("a missing file: %v", err)
	}
	if err := os.WriteFile(path, []byte("[door.ssh]\nsequence = [\"udp/9\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := LoadClientFile(path)
	if err != nil || f.Path != path || len(f.Doors) != 1 {
		t.Fatalf("%+v %v", f, err)
	}
}

// Neither the client file nor a command-line knock can crash the client,
// and what they accept is a valid sequence.
func FuzzParseClientFile(f *testing.F) {
	f.Add([]byte("[door.ssh]\nhost = \"10.210.0.1\"\nsequence = [\"tcp/7000\", \"udp/9000\"]\ndelay = \"100ms\"\n"))
	f.Add([]byte("[door.x]\nsequence = []\n"))
	f.Add([]byte("[door]\nx = 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cf, err := ParseClientFile(data, "knock.toml")
		if err != nil {
			return
		}
		for name, d := range cf.Doors {
			if len(d.Sequence) == 0 || len(d.Sequence) > MaxSteps {
				t.Fatalf("door %q accepted with %d steps", name, len(d.Sequence))
			}
			for _, s := range d.Sequence {
				if s.Port == 0 || (s.Proto != "tcp" && s.Proto != "udp") {
					t.Fatalf("door %q accepted step %+v", name, s)
				}
			}
		}
	})
}

func FuzzParseKnockArg(f *testing.F) {
	for _, s := range []string{"7000", "7000:udp", "7000:tcp", ":", "0", "65536", "7000:icmp", "tcp/7000"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, def := range []string{"tcp", "udp"} {
			if st, err := ParseKnockArg(s, def); err == nil && (st.Port == 0 || (st.Proto != "tcp" && st.Proto != "udp")) {
				t.Fatalf("%q accepted as %+v", s, st)
			}
		}
		if st, err := ParseStep(s); err == nil && (st.Port == 0 || (st.Proto != "tcp" && st.Proto != "udp")) {
			t.Fatalf("%q accepted as %+v", s, st)
		}
	})
}

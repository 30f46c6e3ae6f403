package knockd

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/knock"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/knockd")

// importedDoor is the schema ImportKnockd may write, and nothing more:
// decoding reports any other key as undecoded.
type importedDoor struct {
	Name             string   `toml:"name"`
	Sequence         []string `toml:"sequence"`
	SeqTimeout       string   `toml:"seq_timeout"`
	TCPFlags         *string  `toml:"tcpflags"`
	Open             []string `toml:"open"`
	OpenFor          string   `toml:"open_for"`
	CloseSequence    []string `toml:"close_sequence"`
	StartCommand     []string `toml:"start_command"`
	StopCommand      []string `toml:"stop_command"`
	OneTimeSequences string   `toml:"one_time_sequences"`
}

// decodeImported decodes ImportKnockd's output, failing on invalid TOML
// or a key outside the door schema.
func decodeImported(t testing.TB, out string) []importedDoor {
	t.Helper()
	var f struct {
		Door []importedDoor `toml:"door"`
	}
	md, err := toml.Decode(out, &f)
	if err != nil {
		t.Fatalf("output is not valid TOML: %v\n%s", err, out)
	}
	if und := md.Undecoded(); len(und) > 0 {
		t.Fatalf("output has keys outside the door schema: %v\n%s", und, out)
	}
	return f.Door
}

func importFile(t *testing.T, name string) (string, []string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "knockd", name))
	if err != nil {
		t.Fatal(err)
	}
	conf, err := Parse(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return Import(conf)
}

// TestImportKnockdGolden converts every testdata/knockd/*.conf and compares
// with the .toml beside it (go test -run Golden -update rewrites them).
func TestImportKnockdGolden(t *testing.T) {
	confs, _ := filepath.Glob(filepath.Join("testdata", "knockd", "*.conf"))
	if len(confs) < 5 {
		t.Fatalf("testdata/knockd has %d configs", len(confs))
	}
	for _, path := range confs {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			out, warnings := importFile(t, name)
			decodeImported(t, out)
			if n := strings.Count(out, "\n# warning: "); n != len(warnings) {
				t.Errorf("%d warnings returned, %d in the output", len(warnings), n)
			}
			golden := strings.TrimSuffix(path, ".conf") + ".toml"
			if *update {
				if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run Golden -update)", err)
			}
			if out != string(want) {
				t.Errorf("output differs from %s (go test -run Golden -update rewrites it):\n%s", golden, out)
			}
		})
	}
}

// The configs whose doors all map are accepted by moat's own config
// parser as they are (once [firewall] open no longer holds tcp/22).
func TestImportedConfigPassesMoatCheck(t *testing.T) {
	for _, name := range []string{"debian-default.conf", "seed-chapter.conf", "crlf-multiport.conf"} {
		out, _ := importFile(t, name)
		cfg, err := config.Parse([]byte("[firewall]\nopen = []\n"+out), name)
		if err != nil {
			t.Errorf("%s: moat refuses the import: %v\n%s", name, err, out)
			continue
		}
		if len(cfg.Doors) == 0 {
			t.Errorf("%s: no doors", name)
		}
	}
}

func TestImportDebianDefault(t *testing.T) {
	out, warnings := importFile(t, "debian-default.conf")
	doors := decodeImported(t, out)
	if len(doors) != 2 {
		t.Fatalf("want ssh (openSSH+closeSSH) and openhttps, got %+v", doors)
	}
	ssh := doors[0]
	if ssh.Name != "ssh" || !slices.Equal(ssh.Sequence, []string{"tcp/7000", "tcp/8000", "tcp/9000"}) ||
		!slices.Equal(ssh.CloseSequence, []string{"tcp/9000", "tcp/8000", "tcp/7000"}) ||
		!slices.Equal(ssh.Open, []string{"tcp/22"}) || ssh.SeqTimeout != "5s" || *ssh.TCPFlags != "syn" ||
		ssh.OpenFor != "1h" || ssh.StartCommand != nil {
		t.Errorf("openSSH/closeSSH: %+v", ssh)
	}
	https := doors[1]
	if https.Name != "openhttps" || !slices.Equal(https.Open, []string{"tcp/443"}) || https.CloseSequence != nil || https.StartCommand != nil {
		t.Errorf("openHTTPS through knock_add: %+v", https)
	}
	joined := strings.Join(warnings, "\n")
	for _, want := range []string{"UseSyslog", "until [closeSSH]'s knock", "never closed tcp/443"} {
		if !strings.Contains(joined, want) {
			t.Errorf("no warning about %q in:\n%s", want, joined)
		}
	}
}

func TestImportSeedChapter(t *testing.T) {
	out, warnings := importFile(t, "seed-chapter.conf")
	doors := decodeImported(t, out)
	if len(doors) != 1 || doors[0].Name != "ssh" || len(doors[0].Sequence) != 6 || len(doors[0].CloseSequence) != 3 ||
		!slices.Equal(doors[0].Open, []string{"tcp/22"}) {
		t.Fatalf("want one door ssh: %+v", doors)
	}
	joined := strings.Join(warnings, "\n")
	for _, want := range []string{"LogFile \"/var/log/portknocking.log\"", "PidFile", "UseSyslog"} {
		if !strings.Contains(joined, want) {
			t.Errorf("no warning about %q in:\n%s", want, joined)
		}
	}

	// As the book prints it, "-p tcp-dport 22" is no iptables command moat
	// can read: both doors keep their commands, and say what to do.
	out, warnings = importFile(t, "seed-chapter-as-printed.conf")
	doors = decodeImported(t, out)
	if len(doors) != 2 || doors[0].Name != "openssh" || doors[1].Name != "closessh" ||
		!slices.Equal(doors[0].StartCommand, []string{"/sbin/iptables", "-I", "INPUT", "-s", "%IP%", "-p", "tcp-dport", "22", "-j", "ACCEPT"}) {
		t.Fatalf("as printed: %+v", doors)
	}
	joined = strings.Join(warnings, "\n")
	for _, want := range []string{"set open to the ports", "outside moat's table", "without a shell"} {
		if !strings.Contains(joined, want) {
			t.Errorf("no warning about %q in:\n%s", want, joined)
		}
	}
}

func TestImportManPageExamples(t *testing.T) {
	out, warnings := importFile(t, "manpage-examples.conf")
	doors := decodeImported(t, out)
	byName := map[string]importedDoor{}
	for _, d := range doors {
		byName[d.Name] = d
	}
	if d := byName["ssh"]; !slices.Equal(d.Open, []string{"tcp/22"}) || len(d.CloseSequence) != 3 {
		t.Errorf("example 1 (no -p): %+v", d)
	}
	if d := byName["openclosessh"]; d.Open != nil || len(d.StartCommand) == 0 || d.OpenFor != "5s" ||
		!slices.Equal(d.Sequence, []string{"udp/2222", "tcp/3333", "udp/4444"}) || *d.TCPFlags != "syn,ack" {
		t.Errorf("example 2 (every TCP port) must keep its commands: %+v", d)
	}
	if d := byName["openclosesmtp"]; !slices.Equal(d.Open, []string{"tcp/25"}) || d.OpenFor != "5s" ||
		d.OneTimeSequences != "/etc/knockd/smtp_sequences" || d.Sequence != nil || *d.TCPFlags != "fin,!ack" || d.StartCommand != nil {
		t.Errorf("example 3 (one-time sequences): %+v", d)
	}
	if d := byName["openclosesmtp6"]; !slices.Equal(d.Open, []string{"tcp/25"}) || d.StartCommand != nil {
		t.Errorf("example 4 (IPv6 commands alike): %+v", d)
	}
	joined := strings.Join(warnings, "\n")
	if !strings.Contains(joined, "--dport without -p") {
		t.Errorf("example 1's missing -p is not reported:\n%s", joined)
	}
	if strings.Contains(joined, "start_command_6") {
		t.Errorf("example 4's IPv6 commands match the IPv4 ones; no warning wanted:\n%s", joined)
	}
}

func TestImportOddOnes(t *testing.T) {
	out, warnings := importFile(t, "crlf-multiport.conf")
	doors := decodeImported(t, out)
	if len(doors) != 1 || doors[0].Name != "web_door" ||
		!slices.Equal(doors[0].Sequence, []string{"udp/1111", "tcp/2222", "tcp/3333"}) ||
		!slices.Equal(doors[0].Open, []string{"tcp/443", "tcp/8000-8100"}) || doors[0].OpenFor != "20s" ||
		doors[0].SeqTimeout != "5s" || *doors[0].TCPFlags != "syn,!ack" {
		t.Errorf("CRLF, multiport, service name, range: %+v", doors)
	}
	if j := strings.Join(warnings, "\n"); !strings.Contains(j, `ignores "# seconds"`) || !strings.Contains(j, "Interface \"eth1\"") {
		t.Errorf("warnings:\n%s", j)
	}

	out, warnings = importFile(t, "odd.conf")
	doors = decodeImported(t, out)
	byName := map[string]importedDoor{}
	for _, d := range doors {
		byName[d.Name] = d
	}
	if d := byName["dns"]; !slices.Equal(d.Open, []string{"udp/53"}) || !slices.Equal(d.CloseSequence, []string{"udp/6363", "udp/5353"}) || d.SeqTimeout != "3s" || d.TCPFlags != nil {
		t.Errorf("knock_add -i / -x pair: %+v", d)
	}
	if d := byName["notify"]; !slices.Equal(d.StartCommand, []string{"/bin/sh", "-c", `/usr/bin/logger -t knockd "knock from %IP%" && /usr/bin/touch /run/knocked`}) ||
		!slices.Equal(d.StopCommand, []string{"/usr/local/bin/hook", "close door", "%IP%"}) || d.OpenFor != "1s" ||
		!slices.Equal(d.Sequence, []string{"tcp/4000", "tcp/4001", "tcp/4002"}) {
		t.Errorf("shell and quoted commands: %+v", d)
	}
	if d := byName["relay"]; d.SeqTimeout != "1h" || !slices.Equal(d.StartCommand, []string{"etherwake", "-i", "eth0", "00:11:22:33:44:55", "%H"}) {
		t.Errorf("relay: %+v", d)
	}
	if d := byName["repeat"]; d.StartCommand == nil || d.Open != nil {
		t.Errorf("a stop command that undoes another rule keeps the commands: %+v", d)
	}
	if d := byName["repeat_2"]; d.StartCommand == nil || d.Open != nil {
		t.Errorf("a rule for every source is not a grant for the knocker: %+v", d)
	}
	j := strings.Join(warnings, "\n")
	for _, want := range []string{
		"sequence given again",              // [notify]
		"uses the shell ('&')",              // [notify]
		"start_command_6 (line",             // [notify]: dropped
		"cmd_timeout 0s",                    // [notify]
		"the same as door \"notify\"",       // [relay]
		"target \"192.0.2.10\"",             // [relay]
		"not an absolute path",              // [relay]
		"a % that is not %IP%",              // [relay]
		"\"frobnicate\": knockd 0.8 has no", // [relay]
		"seq_timeout 2h is outside",         // [relay]
		"repeats udp/4500",                  // [repeat]
		"has tcp/4001 right after tcp/4000", // [notify]
		"typographic dash",                  // [webcopy]
	} {
		if !strings.Contains(j, want) {
			t.Errorf("no warning with %q in:\n%s", want, j)
		}
	}
}

func TestParseKnockdConfErrors(t *testing.T) {
	for _, tc := range []struct{ conf, want string }{
		{"sequence = 1,2\n", "line 1: \"sequence = 1,2\" comes before any section"},
		{"[a]\nsequence = 1,2\ncommand\n", "line 3: \"command\": want key = value"},
		{"[a]\n = 5\n", "line 2: no key before '='"},
		{"[]\n", "line 1: empty section name"},
		{"# c\n[a]\nsequence = 7000,70000\n", "line 3: [a] sequence: knock \"70000\": port 70000 is out of range"},
		{"[a]\nsequence = 7000:icmp\n", "line 2: [a] sequence: knock \"7000:icmp\": protocol \"icmp\""},
		{"[a]\nsequence = 7000,,8000\n", "line 2: [a] sequence: an empty port"},
		{"[a]\nsequence = 0\n", "port 0 is out of range"},
		{"[a]\nsequence = " + strings.Repeat("1,", 32) + "2\n", "33 ports; knockd takes at most 32"},
		{"[a]\nsequence = 1\ntcpflags = syn,ack,foo\n", "line 3: [a] tcpflags: unknown flag \"foo\""},
		{"[a]\nsequence = 1\nseq_timeout = abc\n", "line 3: [a] seq_timeout: \"abc\": want whole seconds"},
		{"[a]\nsequence = 1\ncmd_timeout = 99999999999\n", "too large"},
		{"[options]\nUseSyslog\n\n[a]\ncommand = /bin/true\n", "line 4: [a] has no sequence"},
	} {
		_, err := Parse(strings.NewReader(tc.conf))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want an error with %q", tc.conf, err, tc.want)
		}
	}
}

func TestShellWords(t *testing.T) {
	for _, tc := range []struct {
		in    string
		words []string
		shell string
		err   bool
	}{
		{in: "/sbin/iptables -A INPUT -s %IP% -j ACCEPT", words: []string{"/sbin/iptables", "-A", "INPUT", "-s", "%IP%", "-j", "ACCEPT"}},
		{in: `/bin/hook 'a b' "c \"d\" \$e" f\ g ''`, words: []string{"/bin/hook", "a b", `c "d" $e`, "f g", ""}},
		{in: "/bin/a | /bin/b", shell: `'|'`},
		{in: "/bin/a; /bin/b", shell: `';'`},
		{in: "/bin/a > /tmp/x", shell: `'>'`},
		{in: `/bin/echo "$HOME"`, shell: `'$' inside double quotes`},
		{in: "/bin/echo $(id)", shell: `'$'`},
		{in: "/bin/ls *.conf", shell: `'*'`},
		{in: "/bin/a # comment", shell: `'#'`},
		{in: "/bin/a b#c", words: []string{"/bin/a", "b#c"}},
		{in: "/bin/ls ~/x", shell: `'~'`},
		{in: "PATH=/x iptables -L", shell: "a variable assignment before the command"},
		{in: "/bin/a 'open", err: true},
		{in: `/bin/a "open`, err: true},
	} {
		words, shell, err := shellWords(tc.in)
		if (err != nil) != tc.err || shell != tc.shell || !slices.Equal(words, tc.words) {
			t.Errorf("%s: got %q %q %v, want %q %q err=%v", tc.in, words, shell, err, tc.words, tc.shell, tc.err)
		}
	}
}

func TestParseFirewallCommand(t *testing.T) {
	for _, tc := range []struct {
		cmd  string
		add  bool
		v6   bool
		open []string // nil: not recognized
	}{
		{"/sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT", true, false, []string{"tcp/22"}},
		{"/sbin/iptables -I INPUT 3 -s %IP%/32 -p udp --dport 53 -j ACCEPT", true, false, []string{"udp/53"}},
		{"iptables --delete INPUT --source=%IP% --protocol tcp --destination-port 2222 --jump ACCEPT", false, false, []string{"tcp/2222"}},
		{"/usr/sbin/ip6tables -w 5 -A INPUT -s %IP% -p tcp -m tcp --syn --dport 22 -m state --state NEW -m comment --comment 'knockd ssh' -j ACCEPT", true, true, []string{"tcp/22"}},
		{"/sbin/iptables -A INPUT -s %IP% -p tcp -m multiport --dports 80,443,22 -j ACCEPT", true, false, []string{"tcp/22", "tcp/443", "tcp/80"}},
		{"/usr/local/sbin/knock_add -i -c INPUT -p tcp -d 443 -f %IP%", true, false, []string{"tcp/443"}},
		{"/usr/local/sbin/knock_helper_ipt.sh -x -f %IP% -d 22", false, false, []string{"tcp/22"}},
		{"/sbin/iptables -A FORWARD -s %IP% -p tcp --dport 22 -j ACCEPT", false, false, nil},
		{"/sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j DROP", false, false, nil},
		{"/sbin/iptables -A INPUT -p tcp --dport 22 -j ACCEPT", false, false, nil},
		{"/sbin/iptables -A INPUT -s %IP% -i eth0 -p tcp --dport 22 -j ACCEPT", false, false, nil},
		{"/sbin/iptables -A INPUT ! -s %IP% -p tcp --dport 22 -j ACCEPT", false, false, nil},
		{"/sbin/iptables -D INPUT 3", false, false, nil},
		{"/sbin/iptables -A INPUT -s %IP% -p tcp --syn -j ACCEPT", false, false, nil},
		{"/sbin/iptables -t nat -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT", false, false, nil},
		{"/sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT && true", false, false, nil},
		{"/usr/local/sbin/knock_add -t -i -f %IP% -d 22", false, false, nil},
	} {
		r, ok := parseFirewallCommand(tc.cmd)
		if tc.open == nil {
			if ok {
				t.Errorf("%s: recognized as %+v, want not", tc.cmd, r)
			}
			continue
		}
		if !ok || r.add != tc.add || r.v6 != tc.v6 || !slices.Equal(r.open, tc.open) {
			t.Errorf("%s: got %+v %v, want add=%v v6=%v %v", tc.cmd, r, ok, tc.add, tc.v6, tc.open)
		}
	}
}

func TestImportNamesAndQuoting(t *testing.T) {
	conf := &Conf{Doors: []Door{
		{Name: "SSH", Line: 1, Sequence: []knock.Step{{Proto: "tcp", Port: 1}}, SeqTimeout: SeqTimeout, Start: Command{Text: "/bin/x \"a\\\\b\" 'tab\there' \x01\u2028", Set: true}},
		{Name: "ssh", Line: 2, Sequence: []knock.Step{{Proto: "tcp", Port: 2}}, SeqTimeout: SeqTimeout},
		{Name: "123 " + strings.Repeat("long", 10), Line: 3, Sequence: []knock.Step{{Proto: "udp", Port: 3}}, SeqTimeout: SeqTimeout, Target: "x\ny = 1\n[evil]"},
	}}
	out, _ := Import(conf)
	doors := decodeImported(t, out)
	var names []string
	for _, d := range doors {
		names = append(names, d.Name)
	}
	if !slices.Equal(names, []string{"ssh", "ssh_2", "door_123_longlonglonglon"}) {
		t.Errorf("names %q", names)
	}
	if !slices.Equal(doors[0].StartCommand, []string{"/bin/x", `a\b`, "tab\there", "\x01\u2028"}) {
		t.Errorf("argv did not survive TOML: %q", doors[0].StartCommand)
	}
	if doors[2].TCPFlags != nil {
		t.Errorf("a UDP-only door needs no tcpflags: %+v", doors[2])
	}
}

func FuzzParseKnockdConf(f *testing.F) {
	confs, _ := filepath.Glob(filepath.Join("testdata", "knockd", "*.conf"))
	for _, p := range confs {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(data))
	}
	f.Add("[a]\nsequence=1\ncommand=/bin/x \"\\\n\"\x00\xff\n")
	f.Fuzz(func(t *testing.T, in string) {
		conf, err := Parse(strings.NewReader(in))
		if err != nil {
			if conf != nil {
				t.Fatal("a conf with an error")
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("a multi-line error: %q", err)
			}
			return
		}
		out, warnings := Import(conf)
		doors := decodeImported(t, out)
		if len(doors) != len(conf.Doors) {
			// Only closing doors merge into the door they close.
			for _, d := range doors {
				if len(d.CloseSequence) > 0 {
					return
				}
			}
			t.Fatalf("%d knockd doors became %d moat doors with no close_sequence", len(conf.Doors), len(doors))
		}
		if n := strings.Count(out, "\n# warning: "); n != len(warnings) {
			t.Fatalf("%d warnings returned, %d in the output", len(warnings), n)
		}
		for _, d := range doors {
			if !doorNameOK(d.Name) {
				t.Fatalf("door name %q", d.Name)
			}
		}
	})
}

func doorNameOK(s string) bool {
	if len(s) == 0 || len(s) > 24 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

package cli

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/netnstest"
)

// The knock client takes knockd's knock arguments; --dry-run shows what
// it would send without sending.
func TestKnockArguments(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"knock", "-n", "10.210.0.1", "7000", "8000:udp", "9000:tcp"},
			"would hit tcp 10.210.0.1:7000\nwould hit udp 10.210.0.1:8000\nwould hit tcp 10.210.0.1:9000\n"},
		// -u: ports without a protocol are UDP; an explicit one still counts.
		{[]string{"knock", "-n", "-u", "10.210.0.1", "7000", "8000:udp", "9000:tcp"},
			"would hit udp 10.210.0.1:7000\nwould hit udp 10.210.0.1:8000\nwould hit tcp 10.210.0.1:9000\n"},
		{[]string{"knock", "-n", "-d", "100", "10.210.0.1", "7000", "8000"},
			"would hit tcp 10.210.0.1:7000\nwould hit tcp 10.210.0.1:8000\nwith 100ms between knocks\n"},
		// Options after the arguments, as getopt_long allows, and long forms.
		{[]string{"knock", "10.210.0.1", "7000", "--dry-run", "--udp", "--delay", "250", "--ipv4", "--verbose"},
			"would hit udp 10.210.0.1:7000\nwith 250ms between knocks\n"},
		{[]string{"knock", "-n", "-6", "fd00:210::1", "7000"}, "would hit tcp [fd00:210::1]:7000\n"},
	} {
		code, out, errs := run(t, tc.args...)
		if code != 0 || out != tc.want {
			t.Errorf("%q: %d\n%s%s\nwant\n%s", tc.args, code, out, errs, tc.want)
		}
	}
}

func TestKnockArgumentErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"knock", "10.210.0.1"}, "want HOST and at least one PORT"},
		{[]string{"knock", "-n", "-4", "-6", "10.210.0.1", "1"}, "-4 and -6 together"},
		{[]string{"knock", "-n", "-6", "10.210.0.1", "1"}, "not an IPv6 address"},
		{[]string{"knock", "-n", "-d", "-5", "10.210.0.1", "1"}, "--delay -5"},
		{[]string{"knock", "-n", "10.210.0.1", "70000"}, `knock "70000": port 70000 is out of range`},
		{[]string{"knock", "-n", "10.210.0.1", "7000:icmp"}, `protocol "icmp"`},
		{[]string{"knock", "-n", "--then-connect", "0", "10.210.0.1", "1"}, "--then-connect 0"},
		{[]string{"knock", "-n", "--file", "x.toml", "10.210.0.1", "1"}, "--file needs --door"},
	} {
		code, out, errs := run(t, tc.args...)
		if code == 0 || out != "" || !strings.Contains(errs, tc.want) || strings.Count(errs, "\n") != 1 {
			t.Errorf("%q: %d %q %q; want one line with %q", tc.args, code, out, errs, tc.want)
		}
	}
}

func TestKnockDoorFromFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "knock.toml")
	os.WriteFile(file, []byte(`
[door.ssh]
host = "10.210.0.1"
sequence = ["tcp/7000", "udp/8000"]
delay = "200ms"

[door.nohost]
sequence = ["udp/9"]
`), 0o600)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"knock", "-n", "--door", "ssh", "--file", file},
			"would hit tcp 10.210.0.1:7000\nwould hit udp 10.210.0.1:8000\nwith 200ms between knocks\n"},
		// HOST on the command line beats the file's; -d its delay.
		{[]string{"knock", "-n", "10.210.0.2", "--door", "ssh", "--file", file, "-d", "0"},
			"would hit tcp 10.210.0.2:7000\nwould hit udp 10.210.0.2:8000\n"},
	} {
		code, out, errs := run(t, tc.args...)
		if code != 0 || out != tc.want {
			t.Errorf("%q: %d\n%s%s\nwant\n%s", tc.args, code, out, errs, tc.want)
		}
	}

	// The default file is under $XDG_CONFIG_HOME.
	t.Setenv("XDG_CONFIG_HOME", filepath.Dir(file))
	os.MkdirAll(filepath.Join(filepath.Dir(file), "moat"), 0o700)
	os.Rename(file, filepath.Join(filepath.Dir(file), "moat", "knock.toml"))
	if code, out, errs := run(t, "knock", "-n", "--door", "ssh"); code != 0 || !strings.HasPrefix(out, "would hit tcp 10.210.0.1:7000\n") {
		t.Errorf("default file: %d %q %q", code, out, errs)
	}

	// With --then-connect, stdout is the connection's: the rest goes to stderr.
	code, out, errs := run(t, "knock", "-n", "--door", "ssh", "--then-connect", "22")
	if code != 0 || out != "" || !strings.Contains(errs, "then connect to 10.210.0.1:22 after 200ms") {
		t.Errorf("--then-connect: %d %q %q", code, out, errs)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"knock", "-n", "--door", "mail"}, `door "mail" is not in`},
		{[]string{"knock", "-n", "--door", "nohost"}, `no host: give HOST, or host = "..." under [door.nohost]`},
		{[]string{"knock", "-n", "10.210.0.1", "7000", "--door", "ssh"}, "ports on the command line and --door ssh"},
		{[]string{"knock", "-n", "-u", "--door", "ssh"}, "-u and --door"},
		{[]string{"knock", "-n", "--door", "ssh", "--file", filepath.Join(t.TempDir(), "none.toml")}, "does not exist: create it"},
	} {
		code, out, errs := run(t, tc.args...)
		if code == 0 || out != "" || !strings.Contains(errs, tc.want) {
			t.Errorf("%q: %d %q %q; want %q", tc.args, code, out, errs, tc.want)
		}
	}
}

func TestImportKnockdCommand(t *testing.T) {
	path := filepath.Join(t.TempDir(), "knockd.conf")
	os.WriteFile(path, []byte("[options]\n\tLogFile = /var/log/knockd.log\n[openSSH]\n\tsequence = 7000,8000\n\tcommand = /sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n\tcmd_timeout = 30\n\tstop_command = /sbin/iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n"), 0o600)
	code, out, errs := run(t, "import", "knockd", path)
	if code != 0 || !strings.Contains(out, "[[door]]\nname = \"openssh\"\nsequence = [\"tcp/7000\", \"tcp/8000\"]") ||
		!strings.Contains(out, "open = [\"tcp/22\"]\nopen_for = \"30s\"\n") {
		t.Fatalf("import: %d\n%s\n%s", code, out, errs)
	}
	if !strings.Contains(errs, "moat: warning: knockd.conf line 2: [options] LogFile") || !strings.Contains(out, "# warning: knockd.conf line 2: [options] LogFile") {
		t.Fatalf("the warning must be on stderr and in the output:\n%s\n%s", out, errs)
	}

	os.WriteFile(path, []byte("[openSSH]\n\tsequence = 7000,80000\n"), 0o600)
	code, out, errs = run(t, "import", "knockd", path)
	if code == 0 || out != "" || !strings.Contains(errs, "line 2") {
		t.Fatalf("a bad knockd.conf: %d %q %q", code, out, errs)
	}
	code, _, errs = run(t, "import", "knockd", filepath.Join(t.TempDir(), "none.conf"))
	if code == 0 || !strings.Contains(errs, "none.conf") {
		t.Fatalf("a missing file: %d %q", code, errs)
	}
}

// TestKnockThenConnect runs `moat knock HOST --door ssh --then-connect PORT`
// as ssh's ProxyCommand would, from a client namespace against a server
// whose firewall drops the service port until the knock's last step has
// put the knocker in a set: the relay must get through, both ways.
func TestKnockThenConnect(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommands(t, "nft")
	for _, fam := range []string{"ipv4", "ipv6"} {
		t.Run(fam, func(t *testing.T) {
			t.Parallel()
			client, server := netnstest.New(t), netnstest.New(t)
			l := netnstest.Connect(t, client, server)
			dst := l.B4
			if fam == "ipv6" {
				dst = l.B6
			}
			server.Nft(t, `
table inet door {
	set granted4 { type ipv4_addr; flags timeout; }
	set granted6 { type ipv6_addr; flags timeout; }
	chain in {
		type filter hook input priority 0; policy accept;
		tcp dport 7000 drop
		meta nfproto ipv4 udp dport 9000 add @granted4 { ip saddr timeout 30s } drop
		meta nfproto ipv6 udp dport 9000 add @granted6 { ip6 saddr timeout 30s } drop
		tcp dport 2222 ip saddr @granted4 accept
		tcp dport 2222 ip6 saddr @granted6 accept
		tcp dport 2222 drop
	}
}
`)
			var ln net.Listener
			if err := server.Do(func() (err error) { ln, err = net.Listen("tcp", ":2222"); return err }); err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func() {
						defer c.Close()
						io.WriteString(c, "SSH-2.0-moattest\r\n")
						io.Copy(c, c)
					}()
				}
			}()

			service := netip.AddrPortFrom(dst, 2222)
			if r := client.DialTCP(t, netip.Addr{}, service, 300*time.Millisecond); r != netnstest.TimedOut {
				t.Fatalf("before the knock the door must be shut: %v", r)
			}

			file := filepath.Join(t.TempDir(), "knock.toml")
			os.WriteFile(file, []byte("[door.ssh]\nsequence = [\"tcp/7000\", \"udp/9000\"]\n"), 0o600)
			var out, errw bytes.Buffer
			a := &app{ctx: context.Background(), out: &out, errw: &errw}
			root := a.root()
			root.SetArgs([]string{"knock", dst.String(), "--door", "ssh", "--file", file, "--then-connect", "2222", "-v", "--connect-wait", "0"})
			root.SetIn(strings.NewReader("hello door\n"))
			root.SetOut(&out)
			root.SetErr(&errw)
			err := client.Do(func() error {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				return root.ExecuteContext(ctx)
			})
			if err != nil {
				t.Fatalf("%v\nstderr: %s", err, errw.String())
			}
			if out.String() != "SSH-2.0-moattest\r\nhello door\n" {
				t.Errorf("relayed %q", out.String())
			}
			if want := "hitting udp " + netip.AddrPortFrom(dst, 9000).String() + "\n"; !strings.HasSuffix(errw.String(), want) {
				t.Errorf("-v with --then-connect must write to stderr: %q", errw.String())
			}
		})
	}
}

func TestImportFwknop(t *testing.T) {
	dir := t.TempDir()
	access, server := filepath.Join(dir, "access.conf"), filepath.Join(dir, "fwknopd.conf")
	os.WriteFile(access, []byte("SOURCE ANY\nOPEN_PORTS tcp/22\nKEY_BASE64 AAAA\nHMAC_KEY_BASE64 AAAA\nENABLE_CMD_EXEC Y\n\nSOURCE ANY\nKEY_BASE64 AAAA\n"), 0o600)
	os.WriteFile(server, []byte("PCAP_FILTER udp port 62301\n"), 0o600)
	code, out, errs := run(t, "import", "fwknop", access, server)
	if code != 0 || !strings.Contains(out, `ports = ["udp/62301"]`) || !strings.Contains(out, `name = "fwknop-1"`) ||
		!strings.Contains(errs, "ENABLE_CMD_EXEC not converted") || !strings.Contains(errs, "fwknop-2 (access.conf line 7) not converted") {
		t.Fatalf("code %d\n%s\n%s", code, out, errs)
	}
	if code, _, errs := run(t, "import", "fwknop", filepath.Join(dir, "none")); code == 0 || !strings.Contains(errs, "read fwknop access.conf") {
		t.Fatalf("missing file: %d %s", code, errs)
	}
}

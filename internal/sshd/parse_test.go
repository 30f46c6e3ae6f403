package sshd

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseEffective(t *testing.T) {
	e := ParseEffective([]byte("port 22\nPort 2222\r\nhostkey /a\nhostkey /b\n\n# comment\nciphers aes128-ctr, aes256-ctr,,\nbanner\tnone\nauthorizedkeysfile .ssh/a  .ssh/b\nlonely\n"))
	if got := e.Values("port"); !slices.Equal(got, []string{"22", "2222"}) {
		t.Errorf("port values %v", got)
	}
	if got := e.Get("HOSTKEY"); got != "/a" {
		t.Errorf("Get is case-insensitive and returns the first value: %q", got)
	}
	if got := e.List("ciphers"); !slices.Equal(got, []string{"aes128-ctr", "aes256-ctr"}) {
		t.Errorf("list %v", got)
	}
	if e.Get("banner") != "none" || e.Get("authorizedkeysfile") != ".ssh/a  .ssh/b" {
		t.Errorf("tab separator or inner blanks: %q %q", e.Get("banner"), e.Get("authorizedkeysfile"))
	}
	if !e.Has("lonely") || e.Get("lonely") != "" || e.Has("missing") || e.Get("missing") != "" {
		t.Error("a keyword without value is present and empty; a missing one is absent")
	}
}

// The testdata files are real `sshd -T` output of OpenSSH 9.2 (Debian 12).
func TestParseEffectiveTestdata(t *testing.T) {
	for _, name := range []string{"weak", "strong", "debian12-default"} {
		e := ParseEffective(readTestdata(t, name+".txt"))
		if len(e.Settings()) < 80 || e.Get("port") == "" || len(e.Values("hostkey")) == 0 {
			t.Errorf("%s: %d settings, port %q", name, len(e.Settings()), e.Get("port"))
		}
	}
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func FuzzParseEffective(f *testing.F) {
	for _, name := range []string{"weak.txt", "strong.txt"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("port\nciphers ,,,\n\t\n\x00 \xff"))
	f.Fuzz(func(t *testing.T, out []byte) {
		e := ParseEffective(out)
		for _, s := range e.Settings() {
			if s.Key == "" || s.Key != strings.ToLower(s.Key) || strings.ContainsAny(s.Key, " \t") {
				t.Fatalf("bad key %q", s.Key)
			}
			if !e.Has(s.Key) {
				t.Fatalf("%q not indexed", s.Key)
			}
		}
		// Audit must take any output without panicking.
		Audit(e, Facts{Invoker: "alice"})
	})
}

func TestParseLine(t *testing.T) {
	tests := []struct {
		line    string
		key     string
		args    []string
		wantErr string
	}{
		{"Port 22", "Port", []string{"22"}, ""},
		{"  PermitRootLogin\tno  \r\n", "PermitRootLogin", []string{"no"}, ""},
		{"Port=22", "Port", []string{"22"}, ""},
		{"Port = 22", "Port", []string{"22"}, ""},
		{"Port =22", "Port", []string{"22"}, ""},
		{"AllowUsers alice bob # admins", "AllowUsers", []string{"alice", "bob"}, ""},
		{"Banner /etc/issue#not-a-comment", "Banner", []string{"/etc/issue#not-a-comment"}, ""},
		{`Include "/etc/ssh/my dir/*.conf" other`, "Include", []string{"/etc/ssh/my dir/*.conf", "other"}, ""},
		{`ForceCommand 'echo hi' "a\"b" c\ d e\\f g\x`, "ForceCommand", []string{"echo hi", `a"b`, "c d", `e\f`, `g\x`}, ""},
		{`Match User "a b",c`, "Match", []string{"User", "a b,c"}, ""},
		{"", "", nil, ""},
		{"   ", "", nil, ""},
		{"# Port 22", "", nil, ""},
		{"   #Port 22", "", nil, ""},
		{"Port", "", nil, "no argument after keyword"},
		{"Port   ", "", nil, "no argument after keyword"},
		{"Port =", "", nil, "no argument after keyword"},
		{`Banner "/etc/issue`, "", nil, "invalid quotes"},
		{"=22", "", nil, "want a keyword first"},
		{`"Port" 22`, "", nil, "cannot be quoted"},
		{"PasswordAuthentication # off", "PasswordAuthentication", nil, ""},
	}
	for _, tt := range tests {
		key, args, err := ParseLine(tt.line)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseLine(%q): error %v, want %q", tt.line, err, tt.wantErr)
			}
			continue
		}
		if err != nil || key != tt.key || !slices.Equal(args, tt.args) {
			t.Errorf("ParseLine(%q) = %q %q %v, want %q %q", tt.line, key, args, err, tt.key, tt.args)
		}
	}
}

func FuzzParseLine(f *testing.F) {
	for _, s := range []string{"Port 22", "Port=22", `Include "/a b/*.conf" # x`, `ForceCommand 'a' "b\"" c\ d`, "#x", `Banner "x`, "=", "\f\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		key, args, err := ParseLine(line)
		if err != nil || key == "" || strings.ContainsAny(line, "\n\r\f") {
			return
		}
		// What harden writes back must read the same.
		out := key
		for _, a := range args {
			out += " " + quoteArg(a)
		}
		if len(args) == 0 {
			return
		}
		k2, a2, err := ParseLine(out)
		if err != nil || k2 != key || !slices.Equal(a2, args) {
			t.Fatalf("%q -> %q %q -> %q -> %q %q %v", line, key, args, out, k2, a2, err)
		}
	})
}

func TestReadConfig(t *testing.T) {
	dir := t.TempDir()
	d := filepath.Join(dir, "d")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, text string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("d/20-b.conf", "Protocol 2\nMatch User bob\n  X11Forwarding yes\n")
	write("d/10-a.conf", "PasswordAuthentication no\n")
	write("d/notme.txt", "Bogus\n")
	main := write("sshd_config", "# top\nInclude "+d+"/*.conf /nonexistent-moat-test/*.conf\nPort 22\nMatch User alice\n  PermitTTY no\nMatch all\nInclude "+d+"/10-a.conf\n")
	f, err := ReadConfig(main)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, dv := range f.Directives {
		got = append(got, filepath.Base(dv.File)+":"+dv.Key+":"+map[bool]string{true: "m", false: "g"}[dv.InMatch])
	}
	want := []string{
		"sshd_config:include:g", "10-a.conf:passwordauthentication:g",
		// A Match inside an included file ends with that file.
		"20-b.conf:protocol:g", "20-b.conf:match:m", "20-b.conf:x11forwarding:m",
		"sshd_config:port:g", "sshd_config:match:m", "sshd_config:permittty:m", "sshd_config:match:m",
		"sshd_config:include:m", "10-a.conf:passwordauthentication:m",
	}
	if !slices.Equal(got, want) {
		t.Errorf("directives\n got %v\nwant %v", got, want)
	}
	if p := f.Find("PROTOCOL"); len(p) != 1 || p[0].Line != 1 || p[0].Depth != 1 {
		t.Errorf("Find: %+v", p)
	}
	if pats := f.IncludePatterns(); len(pats) != 3 || pats[0] != d+"/*.conf" {
		t.Errorf("include patterns %v", pats)
	}
	if got := resolveInclude("sshd_config.d/*.conf"); got != "/etc/ssh/sshd_config.d/*.conf" {
		t.Errorf("relative Include resolves against /etc/ssh, as sshd does: %s", got)
	}

	loop := write("loop", "Include "+filepath.Join(dir, "loop")+"\n")
	if _, err := ReadConfig(loop); err == nil || !strings.Contains(err.Error(), "deeper than 16") {
		t.Errorf("self-include: %v", err)
	}
	bad := write("bad", "Port 22\nBanner \"x\n")
	if _, err := ReadConfig(bad); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("bad quotes: %v", err)
	}
	if _, err := ReadConfig(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing main file must be an error")
	}
}

// sshKey builds the base64 blob of a public key in SSH wire format.
func sshKey(typ string, fields ...[]byte) string {
	var b bytes.Buffer
	put := func(s []byte) {
		binary.Write(&b, binary.BigEndian, uint32(len(s)))
		b.Write(s)
	}
	put([]byte(typ))
	for _, f := range fields {
		put(f)
	}
	return base64.StdEncoding.EncodeToString(b.Bytes())
}

func rsaKey(bits int) string {
	n := new(big.Int).Lsh(big.NewInt(1), uint(bits-1))
	n.Add(n, big.NewInt(1))
	return "ssh-rsa " + sshKey("ssh-rsa", []byte{1, 0, 1}, append([]byte{0}, n.Bytes()...))
}

func edKey() string {
	pub, _, _ := ed25519.GenerateKey(nil)
	return "ssh-ed25519 " + sshKey("ssh-ed25519", pub)
}

func TestParsePublicKey(t *testing.T) {
	ed := edKey()
	tests := []struct {
		line    string
		want    PublicKey
		wantErr string
	}{
		{ed + " alice@laptop", PublicKey{"ssh-ed25519", 256}, ""},
		{rsaKey(3072) + " root@host", PublicKey{"ssh-rsa", 3072}, ""},
		{rsaKey(1024), PublicKey{"ssh-rsa", 1024}, ""},
		{"ssh-dss " + sshKey("ssh-dss", append([]byte{0}, bytes.Repeat([]byte{0xff}, 128)...)), PublicKey{"ssh-dss", 1024}, ""},
		{"ecdsa-sha2-nistp384 " + sshKey("ecdsa-sha2-nistp384", []byte("nistp384"), []byte{4}), PublicKey{"ecdsa-sha2-nistp384", 384}, ""},
		{`restrict,command="echo a b",from="10.210.0.0/16" ` + ed + " c", PublicKey{"ssh-ed25519", 256}, ""},
		{`no-pty ` + ed, PublicKey{"ssh-ed25519", 256}, ""},
		{"", PublicKey{}, "no key"},
		{"# ssh-ed25519 AAAA", PublicKey{}, "no key"},
		{"ssh-ed25519 !!!", PublicKey{}, "base64"},
		{"ssh-rsa " + sshKey("ssh-ed25519", make([]byte, 32)), PublicKey{}, "the encoded key says"},
		{"ssh-rsa " + sshKey("ssh-rsa", []byte{1}), PublicKey{}, "truncated"},
		{"ssh-rsa AAAA", PublicKey{}, "the encoded key says"},
		{"opt opt2 ssh-ed25519 AAAA", PublicKey{}, "no known key type"},
	}
	for _, tt := range tests {
		got, err := ParsePublicKey(tt.line)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParsePublicKey(%.50q): %v, want error %q", tt.line, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParsePublicKey(%.50q) = %+v, %v; want %+v", tt.line, got, err, tt.want)
		}
	}
}

func TestUsableKeyLine(t *testing.T) {
	ed := edKey()
	for line, want := range map[string]bool{
		ed:                                  true,
		"  " + ed + " me  ":                 true,
		`from="10.210.0.0/16",no-pty ` + ed: true,
		`command="/usr/bin/backup" ` + ed:   false,
		`restrict,COMMAND="x y" ` + ed:      false,
		"# " + ed:                           false,
		"not a key":                         false,
	} {
		if got := UsableKeyLine(line); got != want {
			t.Errorf("UsableKeyLine(%.60q) = %v, want %v", line, got, want)
		}
	}
}

func FuzzParsePublicKey(f *testing.F) {
	f.Add(edKey() + " c")
	f.Add(rsaKey(2048))
	f.Add(`command="a \" b" ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAA`)
	f.Add("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA/////w==")
	f.Fuzz(func(t *testing.T, line string) {
		k, err := ParsePublicKey(line)
		if err == nil && (!isKeyType(k.Type) || k.Bits < 0) {
			t.Fatalf("accepted %+v", k)
		}
		UsableKeyLine(line)
	})
}

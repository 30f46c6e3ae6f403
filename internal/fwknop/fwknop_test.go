package fwknop

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var testKeys = Keys{Enc: bytes.Repeat([]byte{7}, 32), HMAC: bytes.Repeat([]byte{9}, 64)}

// encode builds a packet by the steps of ecosystem-notes §1.1, as the
// fwknop client does; the real client's packets are tested below when it
// is installed.
//
// The salt is fixed so the fuzz seeds are the same in every fuzz worker.
func encode(t testing.TB, k Keys, fields string) []byte {
	t.Helper()
	return seal(fields, k, []byte("saltsalt"))
}

func fields(user, msg string, ts int64) string {
	e := func(s string) string { return b64.EncodeToString([]byte(s)) }
	return "1234567890123456:" + e(user) + ":" + strconv.FormatInt(ts, 10) + ":3.0.0:1:" + e(msg)
}

func TestDecode(t *testing.T) {
	p := encode(t, testKeys, fields("moat", "10.210.1.2,tcp/22", 1767225600))
	m, err := Decode(p, testKeys)
	if err != nil {
		t.Fatal(err)
	}
	if m.User != "moat" || m.Message != "10.210.1.2,tcp/22" || m.Timestamp != 1767225600 || m.Type != 1 || m.Version != "3.0.0" {
		t.Errorf("decoded %+v", m)
	}
	for i := range len(p) {
		q := bytes.Clone(p)
		q[i] ^= 1
		if _, err := Decode(q, testKeys); err == nil {
			t.Fatalf("byte %d altered: decoded", i)
		}
	}
	for name, tc := range map[string]struct {
		p    []byte
		k    Keys
		want error
	}{
		"short":        {p[:100], testKeys, ErrSize},
		"prefix":       {append([]byte(saltedB64), p...), testKeys, ErrPrefix},
		"not base64":   {append(bytes.Clone(p[:150]), '!'), testKeys, ErrNotBase64},
		"gpg length":   {bytes.Repeat([]byte("A"), 400), testKeys, ErrGPG},
		"hmac key":     {p, Keys{Enc: testKeys.Enc, HMAC: []byte("x")}, ErrHMAC},
		"rijndael key": {p, Keys{Enc: []byte("wrong"), HMAC: testKeys.HMAC}, ErrDecrypt},
	} {
		if _, err := Decode(tc.p, tc.k); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	if ReplayDigest(p) == ReplayDigest(append([]byte(saltedB64), p...)) {
		t.Error("replay digest ignores the prefix")
	}
}

// TestRealClient decodes packets built by the real fwknop client, with
// the command line from ecosystem-notes §1.4.
func TestRealClient(t *testing.T) {
	bin, err := exec.LookPath("fwknop")
	if err != nil {
		t.Skip("fwknop not installed (apt-get install fwknop-client); the real client's packets are not tested")
	}
	encKey, hmacKey := make([]byte, 32), make([]byte, 64)
	rand.Read(encKey)
	rand.Read(hmacKey)
	k := Keys{Enc: encKey, HMAC: hmacKey}
	std := base64.StdEncoding
	for _, tc := range []struct {
		args []string
		want Message
	}{
		{[]string{"-A", "tcp/22", "-a", "10.210.1.2"}, Message{Type: 1, Message: "10.210.1.2,tcp/22"}},
		{[]string{"-A", "tcp/22,udp/53", "-a", "10.210.1.2", "-f", "60"}, Message{Type: 3, Message: "10.210.1.2,tcp/22,udp/53", ClientTimeout: 60}},
		{[]string{"-A", "tcp/22", "-a", "10.210.1.2", "-N", "10.210.1.5:22"}, Message{Type: 2, Message: "10.210.1.2,tcp/22", NAT: "10.210.1.5,22"}},
		{[]string{"-A", "tcp/22", "-s", "-U", "alice"}, Message{Type: 1, Message: "0.0.0.0,tcp/22", User: "alice"}},
	} {
		home := t.TempDir()
		out := filepath.Join(home, "pkt")
		args := append([]string{"--no-rc-file", "--no-save-args", "-D", "127.0.0.1", "--use-hmac",
			"--key-base64-rijndael", std.EncodeToString(encKey), "--key-base64-hmac", std.EncodeToString(hmacKey),
			"-T", "-B", out}, tc.args...)
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "HOME="+home)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("fwknop %s: %v\n%s", strings.Join(tc.args, " "), err, b)
		}
		p, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		p = bytes.TrimSpace(p)
		m, err := Decode(p, k)
		if err != nil {
			t.Fatalf("fwknop %s: %d bytes: %v", strings.Join(tc.args, " "), len(p), err)
		}
		if m.Type != tc.want.Type || m.Message != tc.want.Message || m.NAT != tc.want.NAT ||
			m.ClientTimeout != tc.want.ClientTimeout || (tc.want.User != "" && m.User != tc.want.User) || m.Version != "3.0.0" {
			t.Errorf("fwknop %s: decoded %+v, want %+v", strings.Join(tc.args, " "), m, tc.want)
		}
		if _, err := Decode(p, Keys{Enc: encKey, HMAC: encKey}); !errors.Is(err, ErrHMAC) {
			t.Errorf("wrong HMAC key: %v", err)
		}
	}
}

// FuzzDecode: never panics; anything that decodes carries a valid HMAC,
// so it is one of the packets we built.
func FuzzDecode(f *testing.F) {
	seeds := [][]byte{
		encode(f, testKeys, fields("moat", "10.210.1.2,tcp/22", 1767225600)),
		encode(f, testKeys, fields("u", "10.210.1.2,tcp/22", 1)+":"+b64.EncodeToString([]byte("10.210.1.5,22"))+":60"),
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		if _, err := Decode(p, testKeys); err == nil && !bytes.Equal(p, seeds[0]) && !bytes.Equal(p, seeds[1]) {
			t.Fatalf("decoded a packet nobody sealed: %q", p)
		}
	})
}

// TestEncodeRoundTrip: what Encode builds, Decode (fwknopd's checks)
// takes back field for field; the real fwknopd taking it is
// internal/e2e's TestSendFwknopOpensFwknopd.
func TestEncodeRoundTrip(t *testing.T) {
	for _, m := range []Message{
		Access("alice", "10.210.1.2", []Port{{6, 22}}, 0, 1767225600),
		Access("", "0.0.0.0", []Port{{6, 22}, {17, 53}}, 60, 1767225600),
	} {
		p, err := Encode(m, testKeys, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(p, testKeys)
		if err != nil {
			t.Fatalf("%+v: %v", m, err)
		}
		m.Rand = got.Rand
		if got != m || len(got.Rand) != 16 {
			t.Errorf("decoded %+v, want %+v", got, m)
		}
	}
	if _, err := Encode(Access("a", "10.210.1.2", []Port{{6, 22}}, 0, 1), Keys{Enc: testKeys.Enc}, rand.Reader); err == nil {
		t.Error("encoded without an HMAC key")
	}
	many := make([]Port, 60)
	for i := range many {
		many[i] = Port{6, uint16(10000 + i)}
	}
	if _, err := Encode(Access("a", "10.210.1.2", many, 0, 1), testKeys, rand.Reader); err == nil {
		t.Error("encoded a packet fwknopd would take for GPG")
	}
}

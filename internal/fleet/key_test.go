package fleet

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestKeyRoundTrip(t *testing.T) {
	for _, c := range []struct{ p, key string }{
		{"192.0.2.7/32", "4_192-0-2-7_32"},
		{"10.210.0.0/16", "4_10-210-0-0_16"},
		{"2001:db8::1/128", "6_2001-db8--1_128"},
		{"fd00:210::/32", "6_fd00-210--_32"},
		{"::/0", "6_--_0"},
		{"::ffff:1.2.3.4/128", "6_0000-0000-0000-0000-0000-ffff-0102-0304_128"},
	} {
		p := netip.MustParsePrefix(c.p)
		if got := Key(p); got != c.key {
			t.Errorf("Key(%s) = %q, want %q", c.p, got, c.key)
		}
		back, err := ParseKey(c.key)
		if err != nil || back != p {
			t.Errorf("ParseKey(%q) = %v, %v", c.key, back, err)
		}
		for _, r := range c.key {
			if !strings.ContainsRune("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=", r) {
				t.Errorf("key %q holds %q, not allowed in a NATS key", c.key, r)
			}
		}
	}
	for _, bad := range []string{"", "4_192-0-2-7", "4_192-0-2-7_33", "4_192-0-2-7_24", "6_192-0-2-7_32", "4_--1_128",
		"6_2001-DB8--1_128", "6_2001-0db8--1_128", "4_192-0-2-7_032", "5_1_1", "6_fe80--1%eth0_128", "4_192.0.2.7_32"} {
		if p, err := ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q) = %v, want an error", bad, p)
		}
	}
}

func FuzzParseKey(f *testing.F) {
	for _, s := range []string{"4_192-0-2-7_32", "6_2001-db8--1_128", "6_0000-0000-0000-0000-0000-ffff-0102-0304_128", "6_--_0", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, k string) {
		p, err := ParseKey(k)
		if err != nil {
			return
		}
		// What decodes is a masked prefix whose key is exactly k.
		if p != p.Masked() || Key(p) != k {
			t.Fatalf("ParseKey(%q) = %v, whose key is %q", k, p, Key(p))
		}
	})
}

func TestValue(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 18, 0, 0, 0, time.UTC)
	v := Value{Origin: "login", Reason: "5 failed logins", Host: "web-1", Count: 2, Created: t0, Until: t0.Add(time.Hour)}
	back, err := DecodeValue(v.Encode())
	if err != nil || back.Origin != v.Origin || back.Host != v.Host || !back.Until.Equal(v.Until) || back.Count != 2 {
		t.Fatalf("round trip: %+v, %v", back, err)
	}
	for _, bad := range []string{
		`{"v":2,"origin":"login","host":"a","created":"2026-12-06T18:00:00Z"}`,
		`{"v":1,"origin":"","host":"a","created":"2026-12-06T18:00:00Z"}`,
		`{"v":1,"origin":"login","host":"","created":"2026-12-06T18:00:00Z"}`,
		`{"v":1,"origin":"login","host":"a\nb","created":"2026-12-06T18:00:00Z"}`,
		`{"v":1,"origin":"login","host":"a"}`,
		`{"v":1,"origin":"login","host":"a","count":-1,"created":"2026-12-06T18:00:00Z"}`,
		`{"v":1,"origin":"login","host":"a","created":"2026-12-06T18:00:00Z","reason":"` + strings.Repeat("x", 600) + `"}`,
		`not json`,
	} {
		if v, err := DecodeValue([]byte(bad)); err == nil {
			t.Errorf("DecodeValue(%s) = %+v, want an error", bad, v)
		}
	}
}

func FuzzDecodeValue(f *testing.F) {
	f.Add(Value{Origin: "scan", Host: "h", Created: time.Unix(1, 0)}.Encode())
	f.Add([]byte(`{"v":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := DecodeValue(b)
		if err != nil {
			return
		}
		// What decodes survives re-encoding.
		again, err := DecodeValue(v.Encode())
		if err != nil || again.Host != v.Host || again.Reason != v.Reason || !again.Until.Equal(v.Until) {
			t.Fatalf("%+v re-decoded as %+v, %v", v, again, err)
		}
	})
}

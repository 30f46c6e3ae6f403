package fleet

import (
	"encoding/json"
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
	f.Add(Value{Origin: "login", Reason: "r", Host: "h", Count: 3, Created: time.Unix(1, 5), Until: time.Unix(9, 0).In(time.FixedZone("x", 3600))}.Encode())
	f.Add([]byte(`{"v":1,"origin":"scan","host":"h","count":01,"created":"2026-12-06T18:00:00Z"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := DecodeValue(b)
		if err != nil {
			return
		}
		// The direct path reads what it accepts as encoding/json does.
		var d decoder
		if direct, ok := d.direct(b); ok {
			var slow Value
			if err := json.Unmarshal(b, &slow); err != nil || !sameValue(direct, slow) {
				t.Fatalf("%q: direct %+v, encoding/json %+v (%v)", b, direct, slow, err)
			}
		}
		// What decodes survives re-encoding.
		again, err := DecodeValue(v.Encode())
		if err != nil || again.Host != v.Host || again.Reason != v.Reason || !again.Until.Equal(v.Until) {
			t.Fatalf("%+v re-decoded as %+v, %v", v, again, err)
		}
	})
}

// sameValue compares values field by field, times by instant and offset.
func sameValue(a, b Value) bool {
	sameTime := func(x, y time.Time) bool {
		_, ox := x.Zone()
		_, oy := y.Zone()
		return x.Equal(y) && ox == oy && x.IsZero() == y.IsZero()
	}
	return a.V == b.V && a.Origin == b.Origin && a.Reason == b.Reason && a.Host == b.Host && a.Count == b.Count &&
		sameTime(a.Created, b.Created) && sameTime(a.Until, b.Until)
}

// TestDecodeValueDirect: what Encode writes takes the direct path, with
// or without the optional fields, and reads back the same.
func TestDecodeValueDirect(t *testing.T) {
	now := time.Date(2026, 12, 6, 18, 0, 0, 123456789, time.UTC)
	for _, v := range []Value{
		{V: 1, Origin: "scan", Host: "web-1", Count: 1, Created: now},
		{V: 1, Origin: "login", Reason: "sshd: 5 failures in 10m0s", Host: "h.example.org", Count: 12, Created: now, Until: now.Add(time.Hour)},
		{V: 1, Origin: "manual", Host: "b", Count: 0, Created: now.In(time.FixedZone("", -5*3600)), Until: now.Add(time.Minute)},
	} {
		var d decoder
		got, ok := d.direct(v.Encode())
		if !ok || !sameValue(got, v) {
			t.Errorf("direct(%s) = %+v, %v; want %+v", v.Encode(), got, ok, v)
		}
	}
	// A reason with a quote or non-ASCII is escaped or left to encoding/json.
	v := Value{Origin: "login", Reason: `user "root" — ünknown <x>`, Host: "a", Count: 1, Created: now}
	if _, ok := new(decoder).direct(v.Encode()); ok {
		t.Errorf("direct path took an escaped reason: %s", v.Encode())
	}
	if got, err := DecodeValue(v.Encode()); err != nil || got.Reason != v.Reason {
		t.Errorf("DecodeValue(%s) = %+v, %v", v.Encode(), got, err)
	}
}

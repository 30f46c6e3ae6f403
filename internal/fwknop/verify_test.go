package fwknop

import (
	"bytes"
	"errors"
	"net/netip"
	"strconv"
	"testing"
	"time"
)

var (
	t0     = time.Unix(1767225600, 0)
	client = netip.MustParseAddr("10.210.1.2")
	other  = netip.MustParseAddr("10.210.1.3")
)

func testStanza() Stanza {
	return Stanza{Name: "laptop", Ports: []Port{{6, 22}, {17, 53}}, Keys: testKeys, MaxDuration: 30 * time.Second}
}

func newTestVerifier(t testing.TB, opt Options, ss ...Stanza) *Verifier {
	t.Helper()
	if len(ss) == 0 {
		ss = []Stanza{testStanza()}
	}
	v, err := NewVerifier(ss, opt)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerify(t *testing.T) {
	v := newTestVerifier(t, Options{})
	p := encode(t, testKeys, fields("moat", "10.210.1.2,tcp/22", t0.Unix()))
	g, err := v.Verify(p, client, t0.Add(100*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if g.Stanza != "laptop" || g.Addr != client || len(g.Ports) != 1 || g.Ports[0] != (Port{6, 22}) || g.Duration != 30*time.Second || g.Embedded {
		t.Fatalf("grant %+v", g)
	}
	if _, err := v.Verify(p, client, t0); err != ReasonReplay {
		t.Errorf("replay from the same source: %v", err)
	}
	if _, err := v.Verify(p, other, t0); err != ReasonReplay {
		t.Errorf("replay from another source: %v", err)
	}
	flipped := bytes.Clone(p)
	flipped[len(p)/2] ^= 1
	if _, err := v.Verify(flipped, client, t0); err != ReasonHMAC && err != ReasonNotBase64 {
		t.Errorf("flipped bit: %v", err)
	}
	// The snapshot carries the cache over a restart, for the window only.
	snap := v.AppendSnapshot(nil, t0)
	w := newTestVerifier(t, Options{})
	if err := w.LoadSnapshot(snap, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Verify(p, client, t0); err != ReasonReplay {
		t.Errorf("replay after a restart: %v", err)
	}
	w = newTestVerifier(t, Options{})
	if err := w.LoadSnapshot(snap, t0.Add(121*time.Second)); err != nil || w.Replayed() != 0 {
		t.Errorf("snapshot past the window: %v, %d digests kept", err, w.Replayed())
	}
	if err := w.LoadSnapshot(snap[:len(snap)-1], t0); err == nil {
		t.Error("a truncated snapshot loaded")
	}
}

func TestVerifyRefusals(t *testing.T) {
	ts := t0.Unix()
	for name, tc := range map[string]struct {
		s    func(*Stanza)
		f    string
		src  netip.Addr
		want Reason
	}{
		"old":            {nil, fields("moat", "10.210.1.2,tcp/22", ts-121), client, ReasonTooOld},
		"future":         {nil, fields("moat", "10.210.1.2,tcp/22", ts+121), client, ReasonFuture},
		"port":           {nil, fields("moat", "10.210.1.2,tcp/23", ts), client, ReasonPort},
		"one bad port":   {nil, fields("moat", "10.210.1.2,tcp/22,tcp/23", ts), client, ReasonPort},
		"command":        {nil, "1234567890123456:bW9hdA:" + strconv.FormatInt(ts, 10) + ":3.0.0:0:" + b64.EncodeToString([]byte("10.210.1.2,uname")), client, ReasonType},
		"source":         {func(s *Stanza) { s.Sources = []netip.Prefix{netip.MustParsePrefix("10.210.9.0/24")} }, fields("moat", "10.210.1.2,tcp/22", ts), client, ReasonSource},
		"require source": {func(s *Stanza) { s.RequireSourceAddress = true }, fields("moat", "10.210.1.2,tcp/22", ts), other, ReasonSourceAddr},
		"require -s":     {func(s *Stanza) { s.RequireSourceAddress = true }, fields("moat", "0.0.0.0,tcp/22", ts), client, ReasonSourceAddr},
		"user":           {func(s *Stanza) { s.RequireUsername = "alice" }, fields("moat", "10.210.1.2,tcp/22", ts), client, ReasonUser},
		"rijndael key":   {func(s *Stanza) { s.Keys.Enc = []byte("wrong") }, fields("moat", "10.210.1.2,tcp/22", ts), client, ReasonDecrypt},
		"hmac key":       {func(s *Stanza) { s.Keys.HMAC = []byte("wrong") }, fields("moat", "10.210.1.2,tcp/22", ts), client, ReasonHMAC},
	} {
		s := testStanza()
		if tc.s != nil {
			tc.s(&s)
		}
		v := newTestVerifier(t, Options{}, s)
		p := encode(t, testKeys, tc.f)
		if _, err := v.Verify(p, tc.src, t0); err != tc.want {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
		if v.Replayed() != 0 {
			t.Errorf("%s: a refused packet was remembered", name)
		}
	}
}

func TestVerifyAddresses(t *testing.T) {
	ts := t0.Unix()
	v := newTestVerifier(t, Options{})
	g, err := v.Verify(encode(t, testKeys, fields("moat", "0.0.0.0,tcp/22", ts)), other, t0)
	if err != nil || g.Addr != other || g.Embedded {
		t.Errorf("-s: %+v %v", g, err)
	}
	// fwknop's default: the allow IP is opened, whoever sent it (NAT).
	g, err = v.Verify(encode(t, testKeys, fields("moat", "10.210.1.2,tcp/22", ts)+":"), other, t0)
	if err == nil || err == ReasonReplay {
		t.Logf("%v", err)
	}
	g, err = v.Verify(encode(t, testKeys, "1234567890123457:bW9hdA:"+strconv.FormatInt(ts, 10)+":3.0.0:3:"+b64.EncodeToString([]byte("10.210.1.2,tcp/22"))+":600"), other, t0)
	if err != nil || g.Addr != client || !g.Embedded || g.Duration != 30*time.Second {
		t.Errorf("embedded, -f 600 capped: %+v %v", g, err)
	}
	g, err = v.Verify(encode(t, testKeys, "1234567890123458:bW9hdA:"+strconv.FormatInt(ts, 10)+":3.0.0:3:"+b64.EncodeToString([]byte("10.210.1.2,tcp/22"))+":5"), client, t0)
	if err != nil || g.Duration != 5*time.Second {
		t.Errorf("-f 5: %+v %v", g, err)
	}
}

// A full cache drops its oldest digest and raises the floor, so the
// dropped packet is refused as stale, never accepted again.
func TestVerifyReplayBound(t *testing.T) {
	v := newTestVerifier(t, Options{ReplayLimit: 2})
	var ps [][]byte
	for i := range 3 {
		ps = append(ps, encode(t, testKeys, fields("moat", "10.210.1.2,tcp/22", t0.Unix()+int64(i))))
		if _, err := v.Verify(ps[i], client, t0); err != nil {
			t.Fatal(i, err)
		}
	}
	if v.Replayed() != 2 {
		t.Errorf("%d digests kept, want 2", v.Replayed())
	}
	if _, err := v.Verify(ps[0], client, t0); err != ReasonStale {
		t.Errorf("dropped digest: %v", err)
	}
}

// A forged packet costs one HMAC per stanza and allocates nothing.
func TestVerifyForgedAllocs(t *testing.T) {
	var ss []Stanza
	for i := range 4 {
		s := testStanza()
		s.Name = strconv.Itoa(i)
		s.Keys.HMAC = []byte{byte(i)}
		ss = append(ss, s)
	}
	v := newTestVerifier(t, Options{}, ss...)
	p := encode(t, testKeys, fields("moat", "10.210.1.2,tcp/22", t0.Unix()))
	if n := testing.AllocsPerRun(100, func() {
		if _, err := v.Verify(p, client, t0); !errors.Is(err, ReasonHMAC) {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("%v allocations per forged packet", n)
	}
}

func BenchmarkVerifyForged(b *testing.B) {
	v := newTestVerifier(b, Options{})
	p := encode(b, testKeys, fields("moat", "10.210.1.2,tcp/22", t0.Unix()))
	p[len(p)-1] ^= 1
	b.ReportAllocs()
	for b.Loop() {
		v.Verify(p, client, t0)
	}
}

// FuzzVerify: never panics, and nothing unsealed is granted.
func FuzzVerify(f *testing.F) {
	f.Add(encode(f, testKeys, fields("moat", "10.210.1.2,tcp/22", t0.Unix())))
	f.Fuzz(func(t *testing.T, p []byte) {
		v := newTestVerifier(t, Options{})
		if _, err := Decode(p, testKeys); err != nil {
			if _, err := v.Verify(p, client, t0); err == nil {
				t.Fatalf("granted a packet Decode refuses: %q", p)
			}
		}
	})
}

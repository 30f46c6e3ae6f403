package spa

import (
	"bytes"
	"crypto/rand"
	mrand "math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

// floods are the invalid datagrams a flood at the SPA port is made of,
// from the cheapest to refuse to the dearest: random bytes, well-formed
// headers with unknown ids, a known id with a bad MAC (the attacker read
// the id off the wire), a PSK client's id with a bad tag, and a captured
// valid packet replayed.
func floods(t testing.TB) map[string]struct {
	d    []byte
	want Reason
} {
	k := keysOnce()
	rng := mrand.New(mrand.NewPCG(1, 2))
	random := make([]byte, 200)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	random[0] = 0x42
	// Everything is sealed to the hybrid server's key (the X25519 suite to
	// its X25519 part), so that one verifier refuses them all.
	classic := &PublicKey{x: k.hybrid.x.PublicKey()}
	sealTo := func(at time.Time) []byte {
		d, err := Seal(Request{Door: "ssh"}, classic, k.alice, at, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	good := sealTo(t0)
	unknown := bytes.Clone(good)
	unknown[5] ^= 0xff
	badMAC := bytes.Clone(good)
	badMAC[len(badMAC)-1] ^= 1
	hybridBad := seal(t, Request{Door: "ssh"}, k.hybrid, k.alice, t0)
	hybridBad[100] ^= 1
	psk, err := SealPSK(Request{Ports: []Port{{UDP, 53}}}, k.psk, t0, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	psk[len(psk)-1] ^= 1
	return map[string]struct {
		d    []byte
		want Reason
	}{
		"random":          {random, ReasonVersion},
		"unknown_client":  {unknown, ReasonUnknownClient},
		"bad_mac":         {badMAC, ReasonSeal},
		"bad_mac_hybrid":  {hybridBad, ReasonSeal},
		"bad_tag_psk":     {psk, ReasonSeal},
		"replay":          {good, ReasonReplay},
		"too_old":         {sealTo(t0.Add(-time.Hour)), ReasonTooOld},
		"wrong_source":    {good, ReasonSource},
		"oversized":       {make([]byte, 1500), ReasonTooLong},
		"short":           {good[:20], ReasonTooShort},
		"version_garbage": {append([]byte{9}, good[1:]...), ReasonVersion},
	}
}

// TestRejectsAllocateNothing is the house rule for hot paths: a refused
// datagram without a valid seal costs no allocation.
func TestRejectsAllocateNothing(t *testing.T) {
	k := keysOnce()
	v := newTestVerifier(t, k.hybrid, Options{})
	fl := floods(t)
	if _, err := v.Verify(fl["replay"].d, src4, t0); err != nil {
		t.Fatal(err)
	}
	for name, tc := range fl {
		src := src4
		if name == "wrong_source" {
			src = netip.MustParseAddr("192.0.2.1") // outside alice's networks
		}
		if _, err := v.Verify(tc.d, src, t0); reasonOf(err) != tc.want {
			t.Fatalf("%s: %v, want %v", name, err, tc.want)
		}
		if n := testing.AllocsPerRun(100, func() { v.Verify(tc.d, src, t0) }); n != 0 {
			t.Errorf("%s: %v allocations per refused datagram", name, n)
		}
	}
}

// BenchmarkReject measures each kind of invalid datagram on its own.
// The bar is 200,000 refusals a second on one core: 5µs each.
func BenchmarkReject(b *testing.B) {
	k := keysOnce()
	fl := floods(b)
	for _, name := range []string{"random", "short", "oversized", "version_garbage", "unknown_client", "wrong_source",
		"bad_mac", "bad_mac_hybrid", "bad_tag_psk", "too_old", "replay"} {
		tc := fl[name]
		b.Run(name, func(b *testing.B) {
			v := newTestVerifier(b, k.hybrid, Options{})
			if _, err := v.Verify(fl["replay"].d, src4, t0); err != nil {
				b.Fatal(err)
			}
			src := src4
			if name == "wrong_source" {
				src = netip.MustParseAddr("192.0.2.1")
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(tc.d, src, t0); err == nil {
					b.Fatal("granted")
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
		})
	}
}

// BenchmarkAccept is the cost of a genuine packet, for the record: one
// HMAC and one HPKE open (X25519, or X25519 plus ML-KEM-768 decapsulation).
func BenchmarkAccept(b *testing.B) {
	k := keysOnce()
	for _, tc := range []struct {
		name   string
		server *PublicKey
	}{{"x25519", &PublicKey{x: k.hybrid.x.PublicKey()}}, {"hybrid", k.hybrid.Public()}} {
		b.Run(tc.name, func(b *testing.B) {
			// A fresh datagram per op would time Seal too; instead reuse a
			// handful and reset the replay cache, which is cheap.
			ds := make([][]byte, 64)
			for i := range ds {
				var err error
				if ds[i], err = Seal(Request{Door: "ssh"}, tc.server, k.alice, t0, rand.Reader); err != nil {
					b.Fatal(err)
				}
			}
			v := newTestVerifier(b, k.hybrid, Options{})
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if i%len(ds) == 0 {
					v.replay = newReplayCache(v.window, 4096)
				}
				if _, err := v.Verify(ds[i%len(ds)], src4, t0); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkSeal is the client's cost per datagram.
func BenchmarkSeal(b *testing.B) {
	k := keysOnce()
	for _, tc := range []struct {
		name   string
		server *PublicKey
	}{{"x25519", k.server.Public()}, {"hybrid", k.hybrid.Public()}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Seal(Request{Door: "ssh"}, tc.server, k.alice, t0, rand.Reader); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

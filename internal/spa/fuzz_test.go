package spa

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// fuzzSeeds are valid datagrams of every suite, all stamped t0.
var fuzzSeeds = sync.OnceValue(func() [][]byte {
	k := keysOnce()
	var out [][]byte
	for _, req := range []Request{
		{Door: "ssh"},
		{Ports: []Port{ssh}, Duration: 30 * time.Second, Addr: netip.MustParseAddr("10.210.3.3")},
		{Door: "ssh", Addr: netip.MustParseAddr("fd00:210::3")},
	} {
		for _, server := range []*PrivateKey{k.hybrid} {
			d, err := Seal(req, server.Public(), k.alice, t0, rand.Reader)
			if err != nil {
				panic(err)
			}
			out = append(out, d)
			d, err = Seal(req, &PublicKey{x: server.x.PublicKey()}, k.alice, t0, rand.Reader)
			if err != nil {
				panic(err)
			}
			out = append(out, d)
		}
	}
	d, err := SealPSK(Request{Ports: []Port{{UDP, 53}}}, k.psk, t0, rand.Reader)
	if err != nil {
		panic(err)
	}
	return append(out, d)
})

// FuzzVerify: Verify never panics, and never grants a datagram that is
// not one the client sealed. The server takes both suites and a PSK.
func FuzzVerify(f *testing.F) {
	seeds := fuzzSeeds()
	for _, s := range seeds {
		f.Add(s)
	}
	f.Add([]byte{})
	f.Add(make([]byte, MinDatagram))
	f.Add(append([]byte{Version, byte(SuiteX25519)}, make([]byte, 200)...))
	// One verifier, with a fresh replay cache per input: building one costs
	// an X25519 operation per client, which would dominate the fuzz loop.
	v := newTestVerifier(f, keysOnce().hybrid, Options{ReplayPerClient: 2})
	f.Fuzz(func(t *testing.T, d []byte) {
		v.replay = newReplayCache(v.window, 2)
		g, err := v.Verify(d, src4, t0)
		if err == nil {
			genuine := false
			for _, s := range seeds {
				genuine = genuine || bytes.Equal(s, d)
			}
			if !genuine {
				t.Fatalf("granted %+v for a datagram nobody sealed: %x", g, d)
			}
			if _, err := v.Verify(d, src4, t0); reasonOf(err) != ReasonReplay {
				t.Fatalf("second time: %v, want a replay", err)
			}
		} else if reasonOf(err) == 0 {
			t.Fatalf("error without a reason: %v", err)
		}
	})
}

// FuzzParsePlaintext: the request parser never panics, and what it
// accepts re-encodes to the same bytes, so there is one encoding per request.
func FuzzParsePlaintext(f *testing.F) {
	f.Add([]byte{0, 0, 0, 60, 0, 3, 's', 's', 'h', 0})
	f.Add([]byte{0, 0, 0, 0, 4, 10, 0, 0, 1, 0, 1, 6, 0, 22, 0, 0})
	f.Add([]byte{0, 0, 0, 0, 6, 0xfd, 0, 2, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 'x', 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, ok := parsePlaintext(b)
		if !ok {
			return
		}
		req := Request{Door: string(r.door), Addr: r.addr, Duration: time.Duration(r.duration) * time.Second}
		for i := 0; i < len(r.ports); i += 3 {
			req.Ports = append(req.Ports, Port{Proto(r.ports[i]), binary.BigEndian.Uint16(r.ports[i+1:])})
		}
		if err := req.check(); err != nil {
			t.Fatalf("parsed %x into a request Seal refuses: %v", b, err)
		}
		enc, err := appendPlaintext(nil, &req, 1<<16)
		if err != nil {
			t.Fatal(err)
		}
		enc = bytes.TrimRight(enc, "\x00")
		if !bytes.Equal(bytes.TrimRight(b, "\x00"), enc) {
			t.Fatalf("parsed %x, re-encoded %x", b, enc)
		}
	})
}

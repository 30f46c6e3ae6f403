package spa

import (
	"bytes"
	"crypto/rand"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	t0   = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	src4 = netip.MustParseAddr("10.210.0.2")
	src6 = netip.MustParseAddr("fd00:210::2")
	ssh  = Port{TCP, 22}
)

// keys are made once: ML-KEM key generation is slow enough to matter in
// the fuzz loop.
type testKeys struct {
	server, hybrid *PrivateKey
	alice, bob     *PrivateKey
	psk            *PSK
}

var keysOnce = sync.OnceValue(func() testKeys {
	must := func(text, _ string, err error) *PrivateKey {
		if err != nil {
			panic(err)
		}
		k, err := ParsePrivateKey(text)
		if err != nil {
			panic(err)
		}
		return k
	}
	line, err := GeneratePSK()
	if err != nil {
		panic(err)
	}
	psk, err := ParsePSK(line)
	if err != nil {
		panic(err)
	}
	return testKeys{
		server: must(GenerateKey()),
		hybrid: must(GenerateHybridKey()),
		alice:  must(GenerateKey()),
		bob:    must(GenerateKey()),
		psk:    psk,
	}
})

// testClients: alice may open door ssh or tcp/22 from 10.210.0.0/16 and
// fd00:210::/32 and embed an address; bob (any source) only door "web",
// no embedding; carol holds the PSK and may open udp/53.
func testClients(k testKeys) []Client {
	return []Client{
		{Name: "alice", Key: k.alice.Public(), Doors: []string{"ssh"}, Ports: []Port{ssh},
			MaxDuration: time.Minute, Embed: true,
			Sources: []netip.Prefix{netip.MustParsePrefix("10.210.0.0/16"), netip.MustParsePrefix("fd00:210::/32")}},
		{Name: "bob", Key: k.bob.Public(), Doors: []string{"web"}, MaxDuration: 10 * time.Minute},
		{Name: "carol", PSK: k.psk, Ports: []Port{{UDP, 53}}, MaxDuration: time.Hour},
	}
}

func newTestVerifier(t testing.TB, server *PrivateKey, opt Options) *Verifier {
	t.Helper()
	v, err := NewVerifier(server, testClients(keysOnce()), opt)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func seal(t testing.TB, req Request, server, client *PrivateKey, at time.Time) []byte {
	t.Helper()
	d, err := Seal(req, server.Public(), client, at, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func reasonOf(err error) Reason {
	var r Reason
	if errors.As(err, &r) {
		return r
	}
	return 0
}

func TestRoundTrip(t *testing.T) {
	k := keysOnce()
	for _, tc := range []struct {
		name   string
		server *PrivateKey
		client *PrivateKey // nil: carol's PSK
		req    Request
		src    netip.Addr
		want   Grant
	}{
		{"x25519 door", k.server, k.alice, Request{Door: "ssh"}, src4,
			Grant{Client: "alice", Addr: src4, Door: "ssh", Duration: time.Minute}},
		{"x25519 port v6 short", k.server, k.alice, Request{Ports: []Port{ssh}, Duration: 30 * time.Second}, src6,
			Grant{Client: "alice", Addr: src6, Ports: []Port{ssh}, Duration: 30 * time.Second}},
		{"embedded v4", k.server, k.alice, Request{Door: "ssh", Addr: netip.MustParseAddr("10.210.9.9")}, src4,
			Grant{Client: "alice", Addr: netip.MustParseAddr("10.210.9.9"), Door: "ssh", Duration: time.Minute, Embedded: true}},
		{"embedded equals source", k.server, k.bob, Request{Door: "web", Addr: src4}, src4,
			Grant{Client: "bob", Addr: src4, Door: "web", Duration: 10 * time.Minute}},
		{"hybrid embedded v6", k.hybrid, k.alice, Request{Door: "ssh", Addr: netip.MustParseAddr("fd00:210::99")}, src6,
			Grant{Client: "alice", Addr: netip.MustParseAddr("fd00:210::99"), Door: "ssh", Duration: time.Minute, Embedded: true}},
		{"x25519 client to a hybrid server", k.hybrid, k.bob, Request{Door: "web"}, netip.MustParseAddr("::ffff:192.0.2.7"),
			Grant{Client: "bob", Addr: netip.MustParseAddr("192.0.2.7"), Door: "web", Duration: 10 * time.Minute}},
		{"psk", k.server, nil, Request{Ports: []Port{{UDP, 53}}}, src4,
			Grant{Client: "carol", Addr: src4, Ports: []Port{{UDP, 53}}, Duration: time.Hour}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newTestVerifier(t, tc.server, Options{})
			var d []byte
			if tc.client == nil {
				var err error
				if d, err = SealPSK(tc.req, k.psk, t0, rand.Reader); err != nil {
					t.Fatal(err)
				}
			} else if tc.name == "x25519 client to a hybrid server" {
				// A client that has only the X25519 line of a hybrid server.
				pub := &PublicKey{x: tc.server.x.PublicKey()}
				var err error
				if d, err = Seal(tc.req, pub, tc.client, t0, rand.Reader); err != nil {
					t.Fatal(err)
				}
			} else {
				d = seal(t, tc.req, tc.server, tc.client, t0)
			}
			if len(d) > MaxDatagram {
				t.Fatalf("datagram is %d bytes", len(d))
			}
			tc.want.Sent = t0
			g, err := v.Verify(d, tc.src, t0.Add(5*time.Second))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if g.Client != tc.want.Client || g.Addr != tc.want.Addr || g.Door != tc.want.Door ||
				g.Duration != tc.want.Duration || g.Embedded != tc.want.Embedded || !g.Sent.Equal(tc.want.Sent) ||
				len(g.Ports) != len(tc.want.Ports) || (len(g.Ports) > 0 && g.Ports[0] != tc.want.Ports[0]) {
				t.Errorf("grant = %+v\nwant    %+v", g, tc.want)
			}
			t.Logf("%s: %d bytes", tc.name, len(d))
		})
	}
}

// TestRejects builds one datagram per reason and checks Verify names it.
func TestRejects(t *testing.T) {
	k := keysOnce()
	v := newTestVerifier(t, k.server, Options{})
	vh := newTestVerifier(t, k.hybrid, Options{})
	stranger, _, _ := GenerateKey()
	strangerKey, _ := ParsePrivateKey(stranger)
	good := func() []byte { return seal(t, Request{Door: "ssh"}, k.server, k.alice, t0) }
	replayed := good()
	if _, err := v.Verify(replayed, src4, t0); err != nil {
		t.Fatal(err)
	}
	flip := func(d []byte, i int) []byte { d = bytes.Clone(d); d[i] ^= 1; return d }
	pskLine, _ := GeneratePSK()
	otherPSK, _ := ParsePSK(pskLine)
	sealPSK := func(psk *PSK, req Request) []byte {
		d, err := SealPSK(req, psk, t0, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	// A correctly sealed request that Seal itself would refuse to build.
	badPlain := func(pt []byte) []byte {
		// PSK suite: seal pt by hand.
		var nonce [NonceLen]byte
		rand.Read(nonce[:])
		out := appendHeader(nil, SuitePSK, k.psk.id, t0, &nonce)
		return k.psk.aead().Seal(out, nonce[:12], pt, out[:HeaderLen])
	}
	for _, tc := range []struct {
		name string
		v    *Verifier
		d    []byte
		src  netip.Addr
		now  time.Time
		want Reason
	}{
		{"empty", v, nil, src4, t0, ReasonTooShort},
		{"truncated", v, good()[:MinDatagram-1], src4, t0, ReasonTooShort},
		{"truncated for its suite", v, good()[:HeaderLen+40], src4, t0, ReasonTooShort},
		{"oversized", v, make([]byte, MaxDatagram+1), src4, t0, ReasonTooLong},
		{"version", v, flip(good(), 0), src4, t0, ReasonVersion},
		{"unknown suite", v, func() []byte { d := good(); d[1] = 9; return d }(), src4, t0, ReasonSuite},
		{"hybrid to an X25519-only server", v, seal(t, Request{Door: "ssh"}, k.hybrid, k.alice, t0), src4, t0, ReasonSuite}, // no ML-KEM key here
		{"unknown client", v, seal(t, Request{Door: "ssh"}, k.server, strangerKey, t0), src4, t0, ReasonUnknownClient},
		{"unknown psk", v, sealPSK(otherPSK, Request{Ports: []Port{{UDP, 53}}}), src4, t0, ReasonUnknownClient},
		{"psk id with an HPKE suite", v, func() []byte { d := good(); copy(d[2:], k.psk.id[:]); return d }(), src4, t0, ReasonWrongSuite},
		{"source", v, good(), netip.MustParseAddr("192.0.2.1"), t0, ReasonSource},
		{"invalid source", v, good(), netip.Addr{}, t0, ReasonSource},
		{"seal: wrong server key", v, seal(t, Request{Door: "ssh"}, k.bob, k.alice, t0), src4, t0, ReasonSeal},
		{"seal: flipped mac", v, flip(good(), len(good())-1), src4, t0, ReasonSeal},
		{"seal: psk flipped", v, flip(sealPSK(k.psk, Request{Ports: []Port{{UDP, 53}}}), 40), src4, t0, ReasonSeal},
		{"too old", v, good(), src4, t0.Add(61 * time.Second), ReasonTooOld},
		{"future", v, good(), src4, t0.Add(-61 * time.Second), ReasonFuture},
		{"replay", v, replayed, src4, t0.Add(time.Second), ReasonReplay},
		{"replay from another source", v, replayed, netip.MustParseAddr("10.210.7.7"), t0.Add(59 * time.Second), ReasonReplay},
		{"malformed: both door and ports", v, badPlain([]byte{0, 0, 0, 0, 0, 1, 'x', 1, 6, 0, 22}), src4, t0, ReasonMalformed},
		{"malformed: trailing", v, badPlain([]byte{0, 0, 0, 0, 0, 0, 1, 17, 0, 53, 7}), src4, t0, ReasonMalformed},
		{"malformed: unspecified address", v, badPlain([]byte{0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 1, 17, 0, 53}), src4, t0, ReasonMalformed},
		{"embedded not allowed", v, seal(t, Request{Door: "web", Addr: netip.MustParseAddr("192.0.2.50")}, k.server, k.bob, t0), src4, t0, ReasonEmbedded},
		{"embedded outside sources", v, seal(t, Request{Door: "ssh", Addr: netip.MustParseAddr("192.0.2.50")}, k.server, k.alice, t0), src4, t0, ReasonEmbedded},
		{"door", v, seal(t, Request{Door: "web"}, k.server, k.alice, t0), src4, t0, ReasonDoor},
		{"port", v, seal(t, Request{Ports: []Port{ssh, {TCP, 23}}}, k.server, k.alice, t0), src4, t0, ReasonPort},
		{"duration", v, seal(t, Request{Door: "ssh", Duration: 61 * time.Second}, k.server, k.alice, t0), src4, t0, ReasonDuration},
		{"hybrid door", vh, seal(t, Request{Door: "web"}, k.hybrid, k.alice, t0), src4, t0, ReasonDoor},
	} {
		want := tc.want
		g, err := tc.v.Verify(tc.d, tc.src, tc.now)
		if got := reasonOf(err); got != want {
			t.Errorf("%s: Verify = %+v, %v (%v); want %v", tc.name, g, err, got, want)
		}
	}
}

func TestRequireHybrid(t *testing.T) {
	k := keysOnce()
	cs := []Client{{Name: "alice", Key: k.alice.Public(), Doors: []string{"ssh"}, MaxDuration: time.Minute, RequireHybrid: true}}
	if _, err := NewVerifier(k.server, cs, Options{}); err == nil || !strings.Contains(err.Error(), "no ML-KEM part") {
		t.Errorf("NewVerifier with RequireHybrid on an X25519 server: %v", err)
	}
	v, err := NewVerifier(k.hybrid, cs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	classic := &PublicKey{x: k.hybrid.x.PublicKey()}
	d, err := Seal(Request{Door: "ssh"}, classic, k.alice, t0, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(d, src4, t0); reasonOf(err) != ReasonWrongSuite {
		t.Errorf("X25519 suite from a RequireHybrid client: %v", err)
	}
	if _, err := v.Verify(seal(t, Request{Door: "ssh"}, k.hybrid, k.alice, t0), src4, t0); err != nil {
		t.Errorf("hybrid suite: %v", err)
	}
}

// TestBitFlips flips every bit of a valid datagram of each suite: none
// may be granted, and each must be refused before the replay cache sees it.
func TestBitFlips(t *testing.T) {
	k := keysOnce()
	for _, tc := range []struct {
		name   string
		server *PrivateKey
		d      []byte
	}{
		{"x25519", k.server, seal(t, Request{Door: "ssh"}, k.server, k.alice, t0)},
		{"hybrid", k.hybrid, seal(t, Request{Door: "ssh"}, k.hybrid, k.alice, t0)},
		{"psk", k.server, func() []byte {
			d, _ := SealPSK(Request{Ports: []Port{{UDP, 53}}}, k.psk, t0, rand.Reader)
			return d
		}()},
	} {
		v := newTestVerifier(t, tc.server, Options{})
		for i := range len(tc.d) * 8 {
			d := bytes.Clone(tc.d)
			d[i/8] ^= 1 << (i % 8)
			if g, err := v.Verify(d, src4, t0); err == nil {
				t.Fatalf("%s: bit %d flipped: granted %+v", tc.name, i, g)
			}
		}
		if v.Generation() != 0 {
			t.Errorf("%s: a flipped datagram reached the replay cache", tc.name)
		}
		if _, err := v.Verify(tc.d, src4, t0); err != nil {
			t.Errorf("%s: the original after all flips: %v", tc.name, err)
		}
	}
}

func TestSealLimits(t *testing.T) {
	k := keysOnce()
	long := strings.Repeat("d", MaxDoorName)
	if _, err := Seal(Request{Door: long, Addr: src6}, k.hybrid.Public(), k.alice, t0, rand.Reader); err == nil ||
		!strings.Contains(err.Error(), "fit in one datagram") {
		t.Errorf("hybrid with a 64-byte door name: %v", err)
	}
	d, err := Seal(Request{Door: long[:23], Addr: src6}, k.hybrid.Public(), k.alice, t0, rand.Reader)
	if err != nil || len(d) != MaxDatagram {
		t.Errorf("hybrid with a 23-byte door name and an IPv6 address: %d bytes, %v; want exactly %d", len(d), err, MaxDatagram)
	}
	if d, err := Seal(Request{Door: long, Addr: src6}, k.server.Public(), k.alice, t0, rand.Reader); err != nil || len(d) > MaxDatagram {
		t.Errorf("x25519 with a 64-byte door name: %d, %v", len(d), err)
	}
	for _, req := range []Request{{}, {Door: "a", Ports: []Port{ssh}}, {Door: long + "x"}, {Ports: make([]Port, MaxPorts+1)},
		{Ports: []Port{{TCP, 0}}}, {Door: "a", Duration: -1}, {Door: "a", Addr: netip.IPv4Unspecified()}} {
		if _, err := Seal(req, k.server.Public(), k.alice, t0, rand.Reader); err == nil {
			t.Errorf("Seal(%+v) succeeded", req)
		}
	}
}

func TestKeyText(t *testing.T) {
	priv, pub, err := GenerateHybridKey()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(pub, "moat-spa-mlkem768x25519 ") || strings.Count(priv, "\n") != 3 {
		t.Fatalf("hybrid key text:\n%s\n%s", priv, pub)
	}
	k, err := ParsePrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParsePublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if p.String() != pub || k.Public().String() != pub || !p.Hybrid() || !k.Hybrid() {
		t.Errorf("round trip: %q / %q; want %q", p, k.Public(), pub)
	}
	// X-Wing puts the X25519 share last: the MAC depends on it.
	if !bytes.Equal(p.x.Bytes(), k.x.PublicKey().Bytes()) {
		t.Error("X25519 part of the hybrid public key is not the server's X25519 key")
	}
	priv, pub, _ = GenerateKey()
	if !strings.HasPrefix(pub, "moat-spa-x25519 ") {
		t.Errorf("public line %q", pub)
	}
	if k, err := ParsePrivateKey(priv); err != nil || k.Public().String() != pub {
		t.Errorf("x25519 round trip: %v", err)
	}
	for _, tc := range []struct{ in, err string }{
		{pub, "not a private key line"},
		{"", "no \"moat-spa-x25519-private\""},
		{"moat-spa-x25519-private AAAA", "3 bytes, want 32"},
		{"moat-spa-x25519-private !!", "not base64"},
		{"ssh-ed25519 AAAA", "unknown key type"},
	} {
		if _, err := ParsePrivateKey(tc.in); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ParsePrivateKey(%q) = %v; want %q", tc.in, err, tc.err)
		}
	}
	for _, tc := range []struct{ in, err string }{
		{priv, "never the private one"},
		{pub + "\n" + pub, "got 2 lines"},
		{"moat-spa-x25519 AAAA", "want 32"},
		{"moat-spa-psk AAAA", "unknown public key type"},
	} {
		if _, err := ParsePublicKey(tc.in); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ParsePublicKey(%q) = %v; want %q", tc.in, err, tc.err)
		}
	}
	if _, err := ParsePSK(pub); err == nil {
		t.Error("ParsePSK took a public key")
	}
}

func TestNewVerifierErrors(t *testing.T) {
	k := keysOnce()
	ok := Client{Name: "a", Key: k.alice.Public(), Doors: []string{"ssh"}, MaxDuration: time.Minute}
	for _, tc := range []struct {
		name    string
		server  *PrivateKey
		clients []Client
		opt     Options
		err     string
	}{
		{"dup name", k.server, []Client{ok, ok}, Options{}, "used twice"},
		{"dup key", k.server, []Client{ok, func() Client { c := ok; c.Name = "b"; return c }()}, Options{}, "same key"},
		{"no key", k.server, []Client{{Name: "a", Doors: []string{"x"}, MaxDuration: time.Minute}}, Options{}, "either a public key"},
		{"no rights", k.server, []Client{{Name: "a", Key: k.alice.Public(), MaxDuration: time.Minute}}, Options{}, "no door"},
		{"no duration", k.server, []Client{{Name: "a", Key: k.alice.Public(), Doors: []string{"x"}}}, Options{}, "max duration"},
		{"no server key", nil, []Client{ok}, Options{}, "server has no key"},
		{"window", k.server, nil, Options{Window: 1500 * time.Millisecond}, "whole seconds"},
	} {
		if _, err := NewVerifier(tc.server, tc.clients, tc.opt); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v; want %q", tc.name, err, tc.err)
		}
	}
}

func TestReasons(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range Reasons() {
		if s := r.String(); s == "unknown" || seen[s] || !strings.HasPrefix(r.Error(), "spa: refused: ") {
			t.Errorf("reason %d: %q %q", r, s, r.Error())
		}
		seen[r.String()] = true
	}
}

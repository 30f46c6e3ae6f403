// Package spa implements moat's single packet authorization protocol: the
// wire format (one UDP datagram, sealed with HPKE to the server's key, or
// with AES-256-GCM under a pre-shared key), the client's Seal, and the
// server's Verifier with its bounded replay cache.
//
// Everything here is pure: no sockets, no files, no clocks. Time comes in
// as an argument so the window and the replay cache can be tested exactly,
// and the daemon decides where datagrams come from (the NFLOG copy of a
// dropped packet) and what a Grant becomes (a door element with a timeout).
//
// docs/spa.md is the specification a third party can write a client from;
// the constants below are its numbers.
package spa

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Version is the only protocol version this package speaks.
const Version = 1

// Suite says how the datagram is sealed. It is in clear in the header so
// the server knows which key and which sizes to use before any crypto.
type Suite uint8

const (
	// SuiteX25519 is HPKE base mode with DHKEM(X25519, HKDF-SHA256),
	// HKDF-SHA256 and ChaCha20-Poly1305 (RFC 9180 IDs 0x0020, 0x0001,
	// 0x0003), plus a client MAC. The default.
	SuiteX25519 Suite = 1
	// SuiteHybrid is HPKE base mode with MLKEM768-X25519 (X-Wing, KEM ID
	// 0x647a), HKDF-SHA256 and ChaCha20-Poly1305, plus a client MAC.
	SuiteHybrid Suite = 2
	// SuitePSK is AES-256-GCM under a key derived from a pre-shared secret.
	SuitePSK Suite = 3
)

func (s Suite) String() string {
	switch s {
	case SuiteX25519:
		return "x25519"
	case SuiteHybrid:
		return "mlkem768x25519"
	case SuitePSK:
		return "psk"
	}
	return "suite(" + strconv.Itoa(int(s)) + ")"
}

// Sizes of the wire format, in bytes. See docs/spa.md.
const (
	// MaxDatagram keeps the whole IPv6 packet (40-byte header, 8-byte UDP
	// header) within the 1280-byte minimum MTU, so the datagram is never
	// fragmented: fragments are dropped by moat's own ruleset and by many
	// middleboxes.
	MaxDatagram = 1280 - 40 - 8

	HeaderLen = 1 + 1 + IDLen + 8 + NonceLen // version, suite, client id, timestamp, nonce
	IDLen     = 8
	NonceLen  = 16
	MACLen    = 16 // HMAC-SHA256 truncated to 128 bits
	TagLen    = 16 // AEAD tag (ChaCha20-Poly1305 and AES-GCM alike)

	encX25519 = 32
	encHybrid = 1120 // ML-KEM-768 ciphertext (1088) + X25519 share (32)

	// minPlaintext is the smallest request: duration, family 0, a
	// one-byte door name, no ports.
	minPlaintext = 4 + 1 + 1 + 1 + 1

	// MinDatagram is the smallest datagram of any suite (PSK).
	MinDatagram = HeaderLen + minPlaintext + TagLen

	// MaxDoorName and MaxPorts bound a request whatever the suite; the
	// hybrid suite's large encapsulation leaves less room (see Seal).
	MaxDoorName = 64
	MaxPorts    = 16
)

// envelope returns the bytes a suite adds around the plaintext (after the
// header): the encapsulated key, the AEAD tag and the client MAC.
func envelope(s Suite) int {
	switch s {
	case SuiteX25519:
		return encX25519 + TagLen + MACLen
	case SuiteHybrid:
		return encHybrid + TagLen + MACLen
	case SuitePSK:
		return TagLen
	}
	return 0
}

// maxPlaintext is how much request fits in one datagram of suite s.
func maxPlaintext(s Suite) int { return MaxDatagram - HeaderLen - envelope(s) }

// hpkeInfo is the HPKE info string of suites 1 and 2. The header goes in
// as the AEAD's additional data, so it is bound to the ciphertext twice
// over (also by the MAC).
const hpkeInfo = "moat-spa/1"

// ID identifies a client on the wire, in clear. It is derived from the
// client's public key (or pre-shared secret), so it reveals nothing an
// observer could not link anyway, and it cannot be misconfigured.
type ID [IDLen]byte

func (id ID) String() string { return fmt.Sprintf("%x", id[:]) }

// Proto is an IP protocol number a port belongs to.
type Proto uint8

const (
	TCP Proto = 6
	UDP Proto = 17
)

// Port is one protocol and port a request asks to have opened.
type Port struct {
	Proto Proto
	Port  uint16
}

// String writes the port as moat's config does: "tcp/22".
func (p Port) String() string {
	switch p.Proto {
	case TCP:
		return "tcp/" + strconv.Itoa(int(p.Port))
	case UDP:
		return "udp/" + strconv.Itoa(int(p.Port))
	}
	return "proto" + strconv.Itoa(int(p.Proto)) + "/" + strconv.Itoa(int(p.Port))
}

// ParsePort parses "tcp/22" or "udp/53".
func ParsePort(s string) (Port, error) {
	proto, num, ok := strings.Cut(s, "/")
	if !ok {
		return Port{}, fmt.Errorf("spa: port %q: want a protocol and port like \"tcp/22\"", s)
	}
	var p Port
	switch strings.ToLower(proto) {
	case "tcp":
		p.Proto = TCP
	case "udp":
		p.Proto = UDP
	default:
		return Port{}, fmt.Errorf("spa: port %q: protocol %q: want tcp or udp", s, proto)
	}
	n, err := strconv.ParseUint(num, 10, 16)
	if err != nil || n == 0 {
		return Port{}, fmt.Errorf("spa: port %q: want a number from 1 to 65535", s)
	}
	p.Port = uint16(n)
	return p, nil
}

// Request is what a client asks for: a door by name, or ports.
type Request struct {
	Door  string // a door configured on the server, or ""
	Ports []Port // ports to open, when Door is ""

	// Addr is the address to grant. The zero Addr means the packet's
	// source, which is what almost every client wants; another address
	// (a NAT's public side) is granted only if the client's entry allows it.
	Addr netip.Addr

	// Duration asks for the grant to last this long, in whole seconds.
	// Zero asks for the client's maximum; more than the maximum is refused.
	Duration time.Duration
}

// check refuses a request that would not parse on the server.
func (r *Request) check() error {
	switch {
	case r.Door == "" && len(r.Ports) == 0:
		return errors.New("spa: request names neither a door nor ports")
	case r.Door != "" && len(r.Ports) > 0:
		return errors.New("spa: request names both a door and ports; ask for one")
	case len(r.Door) > MaxDoorName:
		return fmt.Errorf("spa: door name is %d bytes; at most %d fit", len(r.Door), MaxDoorName)
	case len(r.Ports) > MaxPorts:
		return fmt.Errorf("spa: %d ports; at most %d fit", len(r.Ports), MaxPorts)
	case r.Duration < 0 || r.Duration/time.Second > 1<<32-1:
		return fmt.Errorf("spa: duration %v out of range", r.Duration)
	case r.Addr.IsValid() && !grantable(r.Addr.Unmap()):
		return fmt.Errorf("spa: address %v cannot be granted", r.Addr)
	}
	for _, p := range r.Ports {
		if (p.Proto != TCP && p.Proto != UDP) || p.Port == 0 {
			return fmt.Errorf("spa: port %v: want tcp or udp and a port from 1 to 65535", p)
		}
	}
	return nil
}

// grantable refuses addresses a grant must never name.
func grantable(a netip.Addr) bool {
	return a.IsValid() && !a.IsUnspecified() && !a.IsMulticast()
}

// appendPlaintext encodes the request (docs/spa.md, "The sealed request")
// and pads it with zeros to a multiple of 16 bytes, within max, so the
// length says little about the door name.
func appendPlaintext(b []byte, r *Request, max int) ([]byte, error) {
	start := len(b)
	b = binary.BigEndian.AppendUint32(b, uint32(r.Duration/time.Second))
	switch a := r.Addr.Unmap(); {
	case !a.IsValid():
		b = append(b, 0)
	case a.Is4():
		b = append(b, 4)
		b = append(b, a.AsSlice()...)
	default:
		b = append(b, 6)
		b = append(b, a.AsSlice()...)
	}
	b = append(b, byte(len(r.Door)))
	b = append(b, r.Door...)
	b = append(b, byte(len(r.Ports)))
	for _, p := range r.Ports {
		b = append(b, byte(p.Proto))
		b = binary.BigEndian.AppendUint16(b, p.Port)
	}
	n := len(b) - start
	if n > max {
		return nil, fmt.Errorf("spa: request is %d bytes sealed in this suite; at most %d fit in one datagram (shorten the door name or ask for fewer ports)", n, max)
	}
	pad := min((n+15)/16*16, max) - n
	for range pad {
		b = append(b, 0)
	}
	return b, nil
}

// request is a parsed plaintext, pointing into the decrypted buffer.
type request struct {
	duration uint32
	addr     netip.Addr // invalid: the packet's source
	door     []byte
	ports    []byte // 3 bytes each: proto, port
}

// parsePlaintext decodes a request strictly: any byte after the ports but
// the zero padding makes it malformed.
func parsePlaintext(b []byte) (request, bool) {
	var r request
	if len(b) < minPlaintext {
		return r, false
	}
	r.duration = binary.BigEndian.Uint32(b)
	fam := b[4]
	b = b[5:]
	switch fam {
	case 0:
	case 4:
		if len(b) < 4 {
			return r, false
		}
		r.addr = netip.AddrFrom4([4]byte(b[:4]))
		b = b[4:]
	case 6:
		if len(b) < 16 {
			return r, false
		}
		r.addr = netip.AddrFrom16([16]byte(b[:16]))
		if r.addr.Is4In6() {
			return r, false // one encoding per address: 4 for IPv4
		}
		b = b[16:]
	default:
		return r, false
	}
	if fam != 0 && !grantable(r.addr) {
		return r, false
	}
	if len(b) < 1 || int(b[0]) > MaxDoorName || len(b) < 1+int(b[0]) {
		return r, false
	}
	r.door, b = b[1:1+b[0]], b[1+b[0]:]
	if len(b) < 1 || int(b[0]) > MaxPorts || len(b) < 1+3*int(b[0]) {
		return r, false
	}
	r.ports, b = b[1:1+3*int(b[0])], b[1+3*int(b[0]):]
	if (len(r.door) == 0) == (len(r.ports) == 0) {
		return r, false
	}
	for i := 0; i < len(r.ports); i += 3 {
		p := r.ports[i:]
		if (Proto(p[0]) != TCP && Proto(p[0]) != UDP) || binary.BigEndian.Uint16(p[1:]) == 0 {
			return r, false
		}
	}
	for _, c := range b {
		if c != 0 {
			return r, false
		}
	}
	return r, true
}

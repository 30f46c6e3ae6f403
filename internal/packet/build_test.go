package packet

import (
	"encoding/binary"
	"net/netip"
)

// Hand-built packets for the tests: each builder writes the header bytes
// as the RFCs lay them out, independently of the decoder.

type ip4 struct {
	src, dst string
	proto    uint8
	ttl      uint8
	tos      uint8
	id       uint16
	frag     uint16 // flags and offset, as on the wire
	options  []byte // a multiple of 4 bytes
	total    int    // overrides the total length when non-zero
	ihl      int    // overrides the header length (in bytes) when non-zero
}

func (h ip4) build(l4 []byte) []byte {
	hl := 20 + len(h.options)
	b := make([]byte, hl, hl+len(l4))
	ihl := hl
	if h.ihl != 0 {
		ihl = h.ihl
	}
	b[0] = 0x40 | byte(ihl/4)
	b[1] = h.tos
	total := hl + len(l4)
	if h.total != 0 {
		total = h.total
	}
	binary.BigEndian.PutUint16(b[2:], uint16(total))
	binary.BigEndian.PutUint16(b[4:], h.id)
	binary.BigEndian.PutUint16(b[6:], h.frag)
	b[8] = h.ttl
	b[9] = h.proto
	s, d := netip.MustParseAddr(h.src).As4(), netip.MustParseAddr(h.dst).As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	copy(b[20:], h.options)
	return append(b, l4...)
}

type ext6 struct {
	typ  uint8 // this header's own type: ProtoHopByHop, ProtoFragment, ...
	body []byte
}

type ip6 struct {
	src, dst string
	next     uint8 // the L4 protocol after the extension headers
	hop      uint8
	tclass   uint8
	ext      []ext6
	plen     int // overrides the payload length when non-zero
}

func (h ip6) build(l4 []byte) []byte {
	b := make([]byte, 40)
	b[0] = 0x60 | h.tclass>>4
	b[1] = h.tclass << 4
	b[7] = h.hop
	s, d := netip.MustParseAddr(h.src).As16(), netip.MustParseAddr(h.dst).As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	prev := 6 // offset of the next-header byte to fill
	for _, e := range h.ext {
		b[prev] = e.typ
		prev = len(b)
		b = append(b, e.body...)
	}
	b[prev] = h.next
	b = append(b, l4...)
	plen := len(b) - 40
	if h.plen != 0 {
		plen = h.plen
	}
	binary.BigEndian.PutUint16(b[4:], uint16(plen))
	return b
}

// extGeneric builds a hop-by-hop, routing or destination options header of
// n*8 bytes; its first byte (next header) is filled by ip6.build.
func extGeneric(typ uint8, n int) ext6 {
	body := make([]byte, n*8)
	body[1] = byte(n - 1)
	if typ == ProtoHopByHop || typ == ProtoDstOpts {
		body[2], body[3] = 1, byte(len(body)-4) // one PadN option filling it
	}
	return ext6{typ, body}
}

func extFragment(offset uint16, more bool, id uint32) ext6 {
	body := make([]byte, 8)
	fo := offset << 3
	if more {
		fo |= 1
	}
	binary.BigEndian.PutUint16(body[2:], fo)
	binary.BigEndian.PutUint32(body[4:], id)
	return ext6{ProtoFragment, body}
}

// extAH builds an authentication header with n 32-bit words of ICV.
func extAH(n int) ext6 {
	body := make([]byte, 12+4*n)
	body[1] = byte((len(body) / 4) - 2)
	return ext6{ProtoAH, body}
}

type tcp struct {
	sport, dport uint16
	seq, ack     uint32
	flags        Flags
	win          uint16
	opts         []byte // padded to 4 bytes with EOL by bytes()
	payload      []byte
	doff         int // overrides the data offset (in bytes) when non-zero
}

func (t tcp) bytes() []byte {
	opts := t.opts
	for len(opts)%4 != 0 {
		opts = append(opts[:len(opts):len(opts)], 0)
	}
	hl := 20 + len(opts)
	b := make([]byte, hl, hl+len(t.payload))
	binary.BigEndian.PutUint16(b[0:], t.sport)
	binary.BigEndian.PutUint16(b[2:], t.dport)
	binary.BigEndian.PutUint32(b[4:], t.seq)
	binary.BigEndian.PutUint32(b[8:], t.ack)
	doff := hl
	if t.doff != 0 {
		doff = t.doff
	}
	b[12] = byte(doff/4) << 4
	b[13] = byte(t.flags)
	binary.BigEndian.PutUint16(b[14:], t.win)
	copy(b[20:], opts)
	return append(b, t.payload...)
}

func udp(sport, dport uint16, payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(8+len(payload)))
	return append(b, payload...)
}

func icmp(typ, code uint8, id, seq uint16, payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	b[0], b[1] = typ, code
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	return append(b, payload...)
}

// TCP options as operating systems and scanners send them.
var (
	optMSS1460 = []byte{2, 4, 0x05, 0xb4} // nmap -sS
	// Linux connect(): MSS, SACK permitted, timestamps, NOP, window scale 7.
	optLinux = []byte{2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0x00, 0x01, 0xe2, 0x40, 0, 0, 0, 0, 1, 3, 3, 7}
)

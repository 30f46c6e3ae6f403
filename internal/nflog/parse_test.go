package nflog

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moat-fw/moat/internal/packet"
)

// Hand-built kernel messages, laid out as nfnetlink_log's __build_packet
// writes them: nlmsghdr, nfgenmsg, then attributes with native-endian
// headers and big-endian values.

type attr struct {
	typ uint16
	val []byte
}

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func nlmsg(typ, flags uint16, seq uint32, body []byte) []byte {
	b := make([]byte, unix.NLMSG_HDRLEN, unix.NLMSG_HDRLEN+len(body)+3)
	binary.NativeEndian.PutUint32(b[0:], uint32(unix.NLMSG_HDRLEN+len(body)))
	binary.NativeEndian.PutUint16(b[4:], typ)
	binary.NativeEndian.PutUint16(b[6:], flags)
	binary.NativeEndian.PutUint32(b[8:], seq)
	b = append(b, body...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func packetMsg(family uint8, group uint16, attrs ...attr) []byte {
	body := nfgenmsg(family, group)
	for _, a := range attrs {
		var h [4]byte
		binary.NativeEndian.PutUint16(h[0:], uint16(4+len(a.val)))
		binary.NativeEndian.PutUint16(h[2:], a.typ)
		body = append(append(body, h[:]...), a.val...)
		for len(body)%4 != 0 {
			body = append(body, 0)
		}
	}
	return nlmsg(msgPacket, unix.NLM_F_MULTI, 0, body)
}

// ipv4SYN is a 44-byte nmap-style SYN from 10.210.7.2:40000 to 10.210.7.1:22.
func ipv4SYN(sport uint16) []byte {
	b := []byte{
		0x45, 0, 0, 44, 0, 1, 0, 0, 64, 6, 0, 0,
		10, 210, 7, 2, 10, 210, 7, 1,
		0, 0, 0, 22, 0, 0, 0, 1, 0, 0, 0, 0, 0x60, byte(packet.SYN), 4, 0, 0, 0, 0, 0,
		2, 4, 0x05, 0xb4,
	}
	binary.BigEndian.PutUint16(b[20:], sport)
	return b
}

func loggedSYN(seq uint32, sport uint16) []byte {
	return packetMsg(unix.AF_INET, 7,
		attr{attrPacketHdr, []byte{0x08, 0x00, 1, 0}},
		attr{attrIfIndexIn, be32(3)},
		attr{attrPayload, ipv4SYN(sport)},
		attr{attrPrefix, []byte("moat:closed\x00")},
		attr{attrSeq, be32(seq)},
	)
}

func testConn() *Conn { return &Conn{buf: make([]byte, readSize)} }

func TestParsePacket(t *testing.T) {
	ts := make([]byte, 16)
	binary.BigEndian.PutUint64(ts[0:], 1700000000)
	binary.BigEndian.PutUint64(ts[8:], 250000)
	payload6 := make([]byte, 40)
	payload6[0] = 0x60
	body := packetMsg(unix.AF_BRIDGE, 7,
		attr{attrPacketHdr, []byte{0x86, 0xdd, 1, 0}},
		attr{attrTimestamp, ts},
		attr{attrIfIndexIn | 0x4000, be32(12)}, // NLA_F_NET_BYTEORDER is ignored
		attr{99, []byte{1, 2, 3}},              // unknown: skipped
		attr{attrPrefix, []byte("moat:xmas\x00\x00")},
		attr{attrPayload, payload6},
		attr{attrSeq, be32(41)},
	)[unix.NLMSG_HDRLEN:]
	var m Message
	if hasSeq := parsePacket(body, &m); !hasSeq {
		t.Fatal("parsePacket: NFULA_SEQ not seen")
	}
	if string(m.Prefix) != "moat:xmas" || m.Family != 6 || m.InIfindex != 12 || m.Seq != 41 ||
		!bytes.Equal(m.Payload, payload6) || !m.Timestamp.Equal(time.Unix(1700000000, 250000000)) {
		t.Errorf("parsePacket: %+v", m)
	}
	// No attributes at all: zero message, no panic.
	if parsePacket(nfgenmsg(unix.AF_INET, 7), &m) || m.Family != 4 || m.Payload != nil {
		t.Errorf("empty packet message: %+v", m)
	}
}

func TestDispatchCountsSeqGaps(t *testing.T) {
	c := testConn()
	var got []uint16
	h := func(m *Message) {
		var p packet.Packet
		if err := packet.Decode(m.Family, m.Payload, &p); err != nil {
			t.Fatalf("decode: %v", err)
		}
		if string(m.Prefix) != "moat:closed" || m.InIfindex != 3 {
			t.Errorf("message %+v", m)
		}
		got = append(got, p.SrcPort)
	}
	// One batch as the kernel sends it: packets, then NLMSG_DONE.
	var d []byte
	for i, seq := range []uint32{0, 1, 2, 5, 6} {
		d = append(d, loggedSYN(seq, uint16(1000+i))...)
	}
	d = append(d, nlmsg(unix.NLMSG_DONE, unix.NLM_F_MULTI, 0, make([]byte, 4))...)
	c.dispatch(d, h)
	c.dispatch(loggedSYN(9, 2000), h)
	c.dispatch(nlmsg(unix.NLMSG_OVERRUN, 0, 0, nil), h)
	want := []uint16{1000, 1001, 1002, 1003, 1004, 2000}
	if !slicesEqual(got, want) {
		t.Errorf("source ports %v, want %v", got, want)
	}
	if s := c.Stats(); s != (Stats{Received: 6, Lost: 2 + 2, Overruns: 1}) {
		t.Errorf("Stats() = %+v, want 6 received, 4 lost, 1 overrun", s)
	}
	// Wrapping at 2^32 is not a loss; a jump backwards is not counted.
	c = testConn()
	c.nextSeq = 0xffffffff
	c.dispatch(append(loggedSYN(0xffffffff, 1), loggedSYN(0, 2)...), func(*Message) {})
	c.dispatch(loggedSYN(0, 3), func(*Message) {})
	if s := c.Stats(); s.Lost != 0 {
		t.Errorf("wrap: Lost = %d, want 0", s.Lost)
	}
}

func slicesEqual(a, b []uint16) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDispatchMalformed(t *testing.T) {
	c := testConn()
	n := 0
	h := func(*Message) { n++ }
	good := loggedSYN(0, 1)
	for _, d := range [][]byte{
		nil,
		good[:10],                        // short header
		good[:len(good)-4],               // length past the end
		append(good[:0:0], good[:16]...), // header only, body missing
	} {
		c.dispatch(d, h)
	}
	if n != 0 {
		t.Errorf("%d messages from malformed datagrams", n)
	}
	// A length below the header size stops the walk instead of looping.
	bad := append([]byte(nil), good...)
	binary.NativeEndian.PutUint32(bad[0:], 4)
	c.dispatch(append(bad, good...), h)
	if n != 0 {
		t.Errorf("%d messages after a bad length", n)
	}
}

func TestDispatchAllocs(t *testing.T) {
	c := testConn()
	d := batch(32)
	var p packet.Packet
	h := func(m *Message) { _ = packet.Decode(m.Family, m.Payload, &p) }
	if allocs := testing.AllocsPerRun(100, func() { c.dispatch(d, h) }); allocs != 0 {
		t.Errorf("%v allocations per datagram of 32 packets, want 0", allocs)
	}
}

// batch is a datagram of n logged SYNs with consecutive sequence numbers.
func batch(n int) []byte {
	var d []byte
	for i := range n {
		d = append(d, loggedSYN(uint32(i), uint16(1000+i))...)
	}
	return append(d, nlmsg(unix.NLMSG_DONE, unix.NLM_F_MULTI, 0, make([]byte, 4))...)
}

// BenchmarkDispatch measures the user-space cost per packet: netlink
// parsing, sequence accounting and packet.Decode, on a kernel-sized batch.
func BenchmarkDispatch(b *testing.B) {
	const n = 32
	c := testConn()
	d := batch(n)
	var p packet.Packet
	var syns int
	h := func(m *Message) {
		if packet.Decode(m.Family, m.Payload, &p) == nil && p.TCPFlags == packet.SYN {
			syns++
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		c.nextSeq = 0
		c.dispatch(d, h)
	}
	if syns != b.N*n {
		b.Fatalf("%d SYNs decoded, want %d", syns, b.N*n)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/pkt")
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "pkts/s")
}

func FuzzDispatch(f *testing.F) {
	f.Add(batch(3))
	f.Add(loggedSYN(5, 1))
	f.Add(nlmsg(unix.NLMSG_ERROR, 0, 1, make([]byte, 20)))
	f.Fuzz(func(t *testing.T, d []byte) {
		c := testConn()
		var p packet.Packet
		c.dispatch(d, func(m *Message) {
			if len(m.Payload) > len(d) || len(m.Prefix) > len(d) {
				t.Fatalf("slices longer than the datagram")
			}
			if bytes.IndexByte(m.Prefix, 0) >= 0 {
				t.Fatalf("prefix %q holds a NUL", m.Prefix)
			}
			_ = packet.Decode(m.Family, m.Payload, &p)
		})
		if s := c.Stats(); s.Received > uint64(len(d)/unix.NLMSG_HDRLEN) {
			t.Fatalf("%d messages from %d bytes", s.Received, len(d))
		}
	})
}

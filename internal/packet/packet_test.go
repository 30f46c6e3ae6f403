package packet

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/moat-fw/moat/internal/packet/packettest"
)

var (
	c4, s4 = netip.MustParseAddr("10.210.7.2"), netip.MustParseAddr("10.210.7.1")
	c6, s6 = netip.MustParseAddr("fd00:210:7::2"), netip.MustParseAddr("fd00:210:7::1")
)

func v4(proto uint8) ip4 { return ip4{src: "10.210.7.2", dst: "10.210.7.1", proto: proto, ttl: 64} }
func v6(next uint8, ext ...ext6) ip6 {
	return ip6{src: "fd00:210:7::2", dst: "fd00:210:7::1", next: next, hop: 64, ext: ext}
}

func TestDecode(t *testing.T) {
	syn := tcp{sport: 40000, dport: 22, seq: 0x01020304, flags: SYN, win: 1024, opts: optMSS1460}
	masscan := tcp{sport: 61000, dport: 80, seq: 0xdeadbeef, flags: SYN, win: 1024}
	linux := tcp{sport: 50000, dport: 443, seq: 7, flags: SYN, win: 64240, opts: optLinux}
	tests := []struct {
		name   string
		family uint8
		b      []byte
		want   Packet
		err    error
	}{
		{
			name: "v4 nmap SYN", family: 4,
			b: ip4{src: "10.210.7.2", dst: "10.210.7.1", proto: ProtoTCP, ttl: 42, id: 0x1234, tos: 0x10}.build(syn.bytes()),
			want: Packet{Family: 4, Src: c4, Dst: s4, Proto: ProtoTCP, TTL: 42, TOS: 0x10, IPID: 0x1234, Length: 44,
				SrcPort: 40000, DstPort: 22, TCPFlags: SYN, TCPWindow: 1024, TCPSeq: 0x01020304,
				TCPOptLen: 4, TCPOpts: OptMSS, MSS: 1460, TCPOptOrder: 3},
		},
		{
			name: "v4 masscan SYN without options", family: 0,
			b: v4(ProtoTCP).build(masscan.bytes()),
			want: Packet{Family: 4, Src: c4, Dst: s4, Proto: ProtoTCP, TTL: 64, Length: 40,
				SrcPort: 61000, DstPort: 80, TCPFlags: SYN, TCPWindow: 1024, TCPSeq: 0xdeadbeef},
		},
		{
			name: "v4 Linux connect SYN, DF", family: 4,
			b: ip4{src: "10.210.7.2", dst: "10.210.7.1", proto: ProtoTCP, ttl: 64, frag: 0x4000}.build(linux.bytes()),
			want: Packet{Family: 4, Src: c4, Dst: s4, Proto: ProtoTCP, TTL: 64, Length: 60, DF: true,
				SrcPort: 50000, DstPort: 443, TCPFlags: SYN, TCPWindow: 64240, TCPSeq: 7,
				TCPOptLen: 20, TCPOpts: OptMSS | OptSACKPerm | OptTimestamp | OptNOP | OptWScale,
				MSS: 1460, WScale: 7, TSVal: 123456, TCPOptOrder: 0x42953 /* MSS, SACK permitted, timestamps, NOP, window scale */},
		},
		{
			name: "v4 with IP options, XMAS with payload", family: 4,
			b: ip4{src: "10.210.7.2", dst: "10.210.7.1", proto: ProtoTCP, ttl: 64, options: []byte{1, 1, 1, 0}}.
				build(tcp{sport: 1, dport: 2, flags: FIN | PSH | URG, ack: 9, payload: []byte("abc")}.bytes()),
			want: Packet{Family: 4, Src: c4, Dst: s4, Proto: ProtoTCP, TTL: 64, Length: 47,
				SrcPort: 1, DstPort: 2, TCPFlags: FIN | PSH | URG, TCPAck: 9, PayloadLen: 3},
		},
		{
			name: "v4 UDP", family: 4,
			b: v4(ProtoUDP).build(udp(5353, 53, make([]byte, 12))),
			want: Packet{Family: 4, Src: c4, Dst: s4, Proto: ProtoUDP, TTL: 64, Length: 40,
				SrcPort: 5353, DstPort: 53, PayloadLen: 12},
		},
		{
			name: "v4 ICMP echo", family: 4,
			b: v4(ProtoICMP).build(icmp(8, 0, 0x4242, 3, make([]byte, 56))),
			want: Packet{Family: 4, Src: c4, Dst: s4, Proto: ProtoICMP, TTL: 64, Length: 84,
				ICMPType: 8, ICMPID: 0x4242, ICMPSeq: 3, PayloadLen: 56},
		},
		{
			name: "v4 ICMP port unreachable has no id", family: 4,
			b: v4(ProtoICMP).build(icmp(3, 3, 0x4242, 3, nil)),
			want: Packet{Family: 4, Src: c4, Dst: s4, Proto: ProtoICMP, TTL: 64, Length: 28,
				ICMPType: 3, ICMPCode: 3},
		},
		{
			name: "v4 protocol scan (GRE), no L4 decode", family: 4,
			b:    v4(47).build(nil),
			want: Packet{Family: 4, Src: c4, Dst: s4, Proto: 47, TTL: 64, Length: 20},
		},
		{
			name: "v4 SCTP ports", family: 4,
			b: v4(ProtoSCTP).build([]byte{0x13, 0x88, 0x0b, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 1}),
			want: Packet{Family: 4, Src: c4, Dst: s4, Proto: ProtoSCTP, TTL: 64, Length: 33,
				SrcPort: 5000, DstPort: 3000},
		},
		{
			name: "v4 non-first fragment", family: 4,
			b:    ip4{src: "10.210.7.2", dst: "10.210.7.1", proto: ProtoTCP, ttl: 64, id: 77, frag: 3}.build(make([]byte, 8)),
			want: Packet{Family: 4, Src: c4, Dst: s4, Proto: ProtoTCP, TTL: 64, IPID: 77, Length: 28, Fragment: true},
		},
		{
			name: "v4 first fragment holding 8 bytes of TCP (nmap -f)", family: 4,
			b:   ip4{src: "10.210.7.2", dst: "10.210.7.1", proto: ProtoTCP, ttl: 64, frag: 0x2000}.build(syn.bytes()[:8]),
			err: ErrTruncated,
			want: Packet{Family: 4, Src: c4, Dst: s4, Proto: ProtoTCP, TTL: 64, Length: 28, MoreFragments: true,
				SrcPort: 40000, DstPort: 22},
		},
		{
			name: "v4 first fragment splitting the TCP options", family: 4,
			b: ip4{src: "10.210.7.2", dst: "10.210.7.1", proto: ProtoTCP, ttl: 64, frag: 0x2000}.build(linux.bytes()[:24]),
			want: Packet{Family: 4, Src: c4, Dst: s4, Proto: ProtoTCP, TTL: 64, Length: 44, MoreFragments: true,
				SrcPort: 50000, DstPort: 443, TCPFlags: SYN, TCPWindow: 64240, TCPSeq: 7,
				TCPOptLen: 4, TCPOpts: OptCut | OptMSS, MSS: 1460, TCPOptOrder: 3},
		},
		{
			name: "v4 snaplen cuts the TCP options", family: 4,
			b: v4(ProtoTCP).build(linux.bytes())[:20+20+6],
			want: Packet{Family: 4, Src: c4, Dst: s4, Proto: ProtoTCP, TTL: 64, Length: 60,
				SrcPort: 50000, DstPort: 443, TCPFlags: SYN, TCPWindow: 64240, TCPSeq: 7,
				TCPOptLen: 20, TCPOpts: OptCut | OptMSS | OptSACKPerm, MSS: 1460, TCPOptOrder: 0x53},
		},
		{
			name: "v4 snaplen cuts the TCP header", family: 4,
			b:    v4(ProtoTCP).build(syn.bytes())[:20+13],
			err:  ErrTruncated,
			want: Packet{Family: 4, Src: c4, Dst: s4, Proto: ProtoTCP, TTL: 64, Length: 44, SrcPort: 40000, DstPort: 22},
		},
		{
			name: "v4 padding after total length ignored", family: 4,
			b: append(v4(ProtoUDP).build(udp(1, 2, nil)), 0xff, 0xff, 0xff, 0xff),
			want: Packet{Family: 4, Src: c4, Dst: s4, Proto: ProtoUDP, TTL: 64, Length: 28,
				SrcPort: 1, DstPort: 2},
		},
		{
			name: "v4 malformed TCP options", family: 4,
			b: v4(ProtoTCP).build(tcp{sport: 1, dport: 2, flags: SYN, opts: []byte{2, 4, 5, 0xb4, 3, 0, 0, 0}}.bytes()),
			want: Packet{Family: 4, Src: c4, Dst: s4, Proto: ProtoTCP, TTL: 64, Length: 48,
				SrcPort: 1, DstPort: 2, TCPFlags: SYN, TCPOptLen: 8, TCPOpts: OptMSS | OptMalformed, MSS: 1460, TCPOptOrder: 3},
		},
		{
			name: "v4 option length past the data offset", family: 4,
			b: v4(ProtoTCP).build(tcp{sport: 1, dport: 2, flags: SYN, opts: []byte{1, 1, 8, 10}}.bytes()),
			want: Packet{Family: 4, Src: c4, Dst: s4, Proto: ProtoTCP, TTL: 64, Length: 44,
				SrcPort: 1, DstPort: 2, TCPFlags: SYN, TCPOptLen: 4, TCPOpts: OptNOP | OptMalformed, TCPOptOrder: 0x22},
		},
		{
			name: "v4 unknown option kind", family: 4,
			b: v4(ProtoTCP).build(tcp{sport: 1, dport: 2, flags: SYN, opts: []byte{30, 4, 0, 0}}.bytes()),
			want: Packet{Family: 4, Src: c4, Dst: s4, Proto: ProtoTCP, TTL: 64, Length: 44,
				SrcPort: 1, DstPort: 2, TCPFlags: SYN, TCPOptLen: 4, TCPOpts: OptOther, TCPOptOrder: 15},
		},
		{
			name: "v6 SYN", family: 6,
			b: ip6{src: "fd00:210:7::2", dst: "fd00:210:7::1", next: ProtoTCP, hop: 61, tclass: 0xb8}.build(syn.bytes()),
			want: Packet{Family: 6, Src: c6, Dst: s6, Proto: ProtoTCP, TTL: 61, TOS: 0xb8, Length: 24,
				SrcPort: 40000, DstPort: 22, TCPFlags: SYN, TCPWindow: 1024, TCPSeq: 0x01020304,
				TCPOptLen: 4, TCPOpts: OptMSS, MSS: 1460, TCPOptOrder: 3},
		},
		{
			name: "v6 UDP after hop-by-hop, routing, destination options", family: 0,
			b: v6(ProtoUDP, extGeneric(ProtoHopByHop, 1), extGeneric(ProtoRouting, 3), extGeneric(ProtoDstOpts, 2)).build(udp(1000, 161, []byte("x"))),
			want: Packet{Family: 6, Src: c6, Dst: s6, Proto: ProtoUDP, TTL: 64, Length: 8 + 24 + 16 + 9,
				SrcPort: 1000, DstPort: 161, PayloadLen: 1},
		},
		{
			name: "v6 ICMPv6 echo after first fragment and AH", family: 6,
			b: v6(ProtoICMPv6, extFragment(0, true, 5), extAH(3)).build(icmp(128, 0, 9, 10, make([]byte, 8))),
			want: Packet{Family: 6, Src: c6, Dst: s6, Proto: ProtoICMPv6, TTL: 64, Length: 8 + 24 + 16, MoreFragments: true,
				ICMPType: 128, ICMPID: 9, ICMPSeq: 10, PayloadLen: 8},
		},
		{
			name: "v6 non-first fragment", family: 6,
			b:    v6(ProtoTCP, extFragment(185, false, 5)).build(make([]byte, 16)),
			want: Packet{Family: 6, Src: c6, Dst: s6, Proto: ProtoTCP, TTL: 64, Length: 24, Fragment: true},
		},
		{
			name: "v6 ESP ends the chain", family: 6,
			b:    v6(ProtoESP, extGeneric(ProtoDstOpts, 1)).build(make([]byte, 16)),
			want: Packet{Family: 6, Src: c6, Dst: s6, Proto: ProtoESP, TTL: 64, Length: 24},
		},
		{
			name: "v6 no next header", family: 6,
			b:    v6(ProtoNoNext).build(nil),
			want: Packet{Family: 6, Src: c6, Dst: s6, Proto: ProtoNoNext, TTL: 64},
		},
		{
			name: "v6 snaplen cuts inside a routing header", family: 6,
			b:    v6(ProtoTCP, extGeneric(ProtoRouting, 16)).build(syn.bytes())[:128],
			err:  ErrTruncated,
			want: Packet{Family: 6, Src: c6, Dst: s6, Proto: ProtoRouting, TTL: 64, Length: 128 + 24},
		},
		{
			name: "v6 extension header longer than the payload length", family: 6,
			b:    ip6{src: "fd00:210:7::2", dst: "fd00:210:7::1", next: ProtoTCP, hop: 64, ext: []ext6{extGeneric(ProtoDstOpts, 4)}, plen: 16}.build(nil),
			err:  ErrBadHeader,
			want: Packet{Family: 6, Src: c6, Dst: s6, Proto: ProtoDstOpts, TTL: 64, Length: 16},
		},
		{
			name: "v6 too many extension headers", family: 6,
			b: v6(ProtoTCP, func() []ext6 {
				var e []ext6
				for range maxExtHeaders + 1 {
					e = append(e, extGeneric(ProtoDstOpts, 1))
				}
				return e
			}()...).build(syn.bytes()),
			err:  ErrBadHeader,
			want: Packet{Family: 6, Src: c6, Dst: s6, Proto: ProtoDstOpts, TTL: 64, Length: 8*(maxExtHeaders+1) + 24},
		},
		{
			name: "empty", family: 4, b: nil, err: ErrTruncated,
		},
		{
			name: "v4 header cut", family: 4, b: v4(ProtoTCP).build(nil)[:19], err: ErrTruncated,
		},
		{
			name: "v6 header cut", family: 6, b: v6(ProtoTCP).build(nil)[:39], err: ErrTruncated,
		},
		{
			name: "v6 bytes given as v4", family: 4, b: v6(ProtoTCP).build(syn.bytes()), err: ErrBadVersion,
		},
		{
			name: "version 5", family: 0, b: append([]byte{0x50}, make([]byte, 40)...), err: ErrBadVersion,
		},
		{
			name: "family 2 (AF_INET) is not a family here", family: 2, b: v4(ProtoTCP).build(nil), err: ErrBadVersion,
		},
		{
			name: "v4 IHL under 5", family: 4, b: ip4{src: "10.210.7.2", dst: "10.210.7.1", proto: ProtoTCP, ihl: 16}.build(nil),
			err:  ErrBadHeader,
			want: Packet{Family: 4, Src: c4, Dst: s4, Proto: ProtoTCP, Length: 20},
		},
		{
			name: "v4 total length under IHL", family: 4, b: ip4{src: "10.210.7.2", dst: "10.210.7.1", proto: ProtoUDP, total: 19}.build(udp(1, 2, nil)),
			err:  ErrBadHeader,
			want: Packet{Family: 4, Src: c4, Dst: s4, Proto: ProtoUDP, Length: 19},
		},
		{
			name: "v4 UDP shorter than its header by the IP length", family: 4, b: ip4{src: "10.210.7.2", dst: "10.210.7.1", proto: ProtoUDP, total: 26}.build(udp(1, 2, nil)),
			err:  ErrBadHeader,
			want: Packet{Family: 4, Src: c4, Dst: s4, Proto: ProtoUDP, Length: 26, SrcPort: 1, DstPort: 2},
		},
		{
			name: "v4 TCP data offset under 20", family: 4, b: v4(ProtoTCP).build(tcp{sport: 1, dport: 2, flags: SYN, doff: 16}.bytes()),
			err:  ErrBadHeader,
			want: Packet{Family: 4, Src: c4, Dst: s4, Proto: ProtoTCP, TTL: 64, Length: 40, SrcPort: 1, DstPort: 2, TCPFlags: SYN},
		},
		{
			name: "v4 TCP data offset past the IP length", family: 4, b: v4(ProtoTCP).build(tcp{sport: 1, dport: 2, flags: SYN, doff: 60}.bytes()),
			err:  ErrBadHeader,
			want: Packet{Family: 4, Src: c4, Dst: s4, Proto: ProtoTCP, TTL: 64, Length: 40, SrcPort: 1, DstPort: 2, TCPFlags: SYN},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Garbage in p first: Decode must overwrite every field.
			p := Packet{Src: s6, SrcPort: 9, TCPFlags: 0xff, MSS: 1, Fragment: true, ICMPID: 3}
			err := Decode(tt.family, tt.b, &p)
			if !errors.Is(err, tt.err) {
				t.Fatalf("Decode: error %v, want %v", err, tt.err)
			}
			if p != tt.want {
				t.Errorf("Decode:\n got %+v\nwant %+v", p, tt.want)
			}
		})
	}
}

func TestString(t *testing.T) {
	var p Packet
	b := v4(ProtoTCP).build(tcp{sport: 40000, dport: 22, flags: SYN, win: 1024, opts: optMSS1460}.bytes())
	if err := Decode(4, b, &p); err != nil {
		t.Fatal(err)
	}
	if got, want := p.String(), "IPv4 10.210.7.2:40000 > 10.210.7.1:22 tcp S win 1024 mss 1460 ttl 64"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	b = v6(ProtoICMPv6).build(icmp(128, 0, 1, 1, nil))
	if err := Decode(6, b, &p); err != nil {
		t.Fatal(err)
	}
	if got, want := p.String(), "IPv6 fd00:210:7::2 > fd00:210:7::1 icmp6 type 128 code 0 ttl 64"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got := (FIN | SYN | RST | PSH | ACK | URG | ECE | CWR).String(); got != "FSRPAUEW" {
		t.Errorf("all flags = %q", got)
	}
	if got := Flags(0).String(); got != "." {
		t.Errorf("no flags = %q", got)
	}
}

// samples are one packet per protocol, for the allocation test and the
// benchmarks.
func samples() []struct {
	name   string
	family uint8
	b      []byte
} {
	linux := tcp{sport: 50000, dport: 443, seq: 7, flags: SYN, win: 64240, opts: optLinux}.bytes()
	return []struct {
		name   string
		family uint8
		b      []byte
	}{
		{"tcp4", 4, v4(ProtoTCP).build(linux)},
		{"tcp4-noopts", 4, v4(ProtoTCP).build(tcp{sport: 1, dport: 80, flags: SYN, win: 1024}.bytes())},
		{"udp4", 4, v4(ProtoUDP).build(udp(5353, 53, make([]byte, 40)))},
		{"icmp4", 4, v4(ProtoICMP).build(icmp(8, 0, 1, 2, make([]byte, 200)))[:128]},
		{"tcp6", 6, v6(ProtoTCP).build(linux)},
		{"tcp6-ext", 6, v6(ProtoTCP, extGeneric(ProtoHopByHop, 1), extFragment(0, false, 1)).build(linux)},
		{"udp6", 6, v6(ProtoUDP).build(udp(5353, 53, make([]byte, 40)))},
		{"icmp6", 6, v6(ProtoICMPv6).build(icmp(128, 0, 1, 2, make([]byte, 56)))},
		{"frag4", 4, ip4{src: "10.210.7.2", dst: "10.210.7.1", proto: ProtoUDP, frag: 10}.build(make([]byte, 60))},
	}
}

func TestDecodeAllocs(t *testing.T) {
	for _, s := range samples() {
		var p Packet
		if err := Decode(s.family, s.b, &p); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		allocs := testing.AllocsPerRun(1000, func() { _ = Decode(s.family, s.b, &p) })
		if allocs != 0 {
			t.Errorf("%s: %v allocations per Decode, want 0", s.name, allocs)
		}
	}
	// Errors are preallocated too.
	var p Packet
	bad := v4(ProtoTCP).build(nil)[:10]
	if allocs := testing.AllocsPerRun(1000, func() { _ = Decode(4, bad, &p) }); allocs != 0 {
		t.Errorf("truncated: %v allocations per Decode, want 0", allocs)
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, s := range samples() {
		b.Run(s.name, func(b *testing.B) {
			var p Packet
			b.ReportAllocs()
			b.SetBytes(int64(len(s.b)))
			for b.Loop() {
				if err := Decode(s.family, s.b, &p); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
		})
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range samples() {
		f.Add(s.family, s.b)
		f.Add(uint8(0), s.b[:len(s.b)/2])
	}
	for _, rp := range packettest.ReadGolden(f, "testdata/nmap.txt") {
		f.Add(uint8(0), rp.Bytes)
	}
	f.Add(uint8(6), v6(ProtoTCP, extAH(2), extGeneric(ProtoRouting, 2), extFragment(0, true, 1)).build(tcp{flags: SYN, opts: optLinux}.bytes()))
	f.Fuzz(func(t *testing.T, family uint8, b []byte) {
		var p, q Packet
		err := Decode(family, b, &p)
		if err != nil && err != ErrTruncated && err != ErrBadVersion && err != ErrBadHeader {
			t.Fatalf("unexpected error %v", err)
		}
		// Deterministic, and independent of what p held before.
		q = Packet{Src: netip.IPv6Loopback(), SrcPort: 1, TCPFlags: 0xff, Fragment: true, TCPOpts: 0xffff}
		err2 := Decode(family, b, &q)
		if err2 != err || p != q {
			t.Fatalf("second decode differs: %v %+v vs %v %+v", err, p, err2, q)
		}
		if err == ErrBadVersion {
			if p != (Packet{}) {
				t.Fatalf("bad version left fields set: %+v", p)
			}
			return
		}
		if p.Src.IsValid() != p.Dst.IsValid() {
			t.Fatalf("one address valid, one not: %+v", p)
		}
		if err == nil && !p.Src.IsValid() {
			t.Fatalf("no error but no addresses: %+v", p)
		}
		if p.Src.IsValid() {
			if (p.Family == 4) != p.Src.Is4() || (p.Family == 6) != p.Src.Is6() {
				t.Fatalf("family %d with address %v", p.Family, p.Src)
			}
			if family != 0 && family != p.Family {
				t.Fatalf("asked for family %d, got %d", family, p.Family)
			}
		}
		if p.Fragment && (p.SrcPort != 0 || p.DstPort != 0 || p.TCPFlags != 0 || p.TCPOptLen != 0 || p.ICMPType != 0) {
			t.Fatalf("non-first fragment with L4 fields: %+v", p)
		}
		if p.TCPOptLen > 40 {
			t.Fatalf("TCPOptLen %d > 40", p.TCPOptLen)
		}
		if p.Proto != ProtoTCP && (p.TCPFlags != 0 || p.TCPOpts != 0 || p.TCPWindow != 0) {
			t.Fatalf("TCP fields on proto %d", p.Proto)
		}
		if p.MSS != 0 && p.TCPOpts&OptMSS == 0 {
			t.Fatalf("MSS %d without OptMSS", p.MSS)
		}
		if p.Length != 0 && p.PayloadLen > p.Length {
			t.Fatalf("payload %d longer than the IP length %d", p.PayloadLen, p.Length)
		}
		if s := p.String(); p.Src.IsValid() && !strings.HasPrefix(s, "IPv") {
			t.Fatalf("String() = %q", s)
		}
	})
}

package osfp

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"

	"github.com/moat-fw/moat/internal/packet"
	"github.com/moat-fw/moat/internal/packet/packettest"
)

// syn builds the IPv4 SYN a stack would send, and decodes it as moat does.
func syn(t testing.TB, ttl uint8, df bool, ipid, win uint16, opts []byte) packet.Packet {
	for len(opts)%4 != 0 {
		opts = append(opts, 0)
	}
	b := make([]byte, 40+len(opts))
	b[0], b[8], b[9] = 0x45, ttl, packet.ProtoTCP
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[4:], ipid)
	if df {
		b[6] = 0x40
	}
	copy(b[12:], []byte{10, 210, 0, 2, 10, 210, 0, 1})
	binary.BigEndian.PutUint16(b[20:], 40000)
	binary.BigEndian.PutUint16(b[22:], 22)
	b[32] = byte((20+len(opts))/4) << 4
	b[33] = byte(packet.SYN)
	binary.BigEndian.PutUint16(b[34:], win)
	copy(b[40:], opts)
	var p packet.Packet
	if err := packet.Decode(4, b, &p); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return p
}

// Option bytes as each stack writes them.
var (
	mss1460   = []byte{2, 4, 0x05, 0xb4}
	optsLinux = []byte{2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 1, 2, 3, 0, 0, 0, 0, 1, 3, 3, 7}
	optsWin   = []byte{2, 4, 0x05, 0xb4, 1, 3, 3, 8, 1, 1, 4, 2}
	optsMac   = []byte{2, 4, 0x05, 0xb4, 1, 3, 3, 6, 1, 1, 8, 10, 0, 1, 2, 3, 0, 0, 0, 0, 4, 2, 0, 0}
	optsFree  = []byte{2, 4, 0x05, 0xb4, 1, 3, 3, 6, 4, 2, 8, 10, 0, 1, 2, 3, 0, 0, 0, 0}
	optsOpen  = []byte{2, 4, 0x05, 0xb4, 1, 1, 4, 2, 1, 3, 3, 6, 1, 1, 8, 10, 0, 1, 2, 3, 0, 0, 0, 0}
	// nmap -O's first probe: window scale 10, NOP, MSS 1460, timestamps, SACK permitted.
	optsNmapOS = []byte{3, 3, 10, 1, 2, 4, 0x05, 0xb4, 8, 10, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 4, 2}
)

func TestMatchStacksAndScanners(t *testing.T) {
	tests := []struct {
		name  string
		p     packet.Packet
		want  string
		class string
		hops  int
		exact bool
	}{
		{"linux", syn(t, 61, true, 0, 64240, optsLinux), "Linux 3.x-6.x", "os", 3, true},
		{"linux, odd window", syn(t, 64, true, 0, 12345, optsLinux), "Linux 3.x-6.x", "os", 0, false},
		{"windows", syn(t, 116, true, 999, 64240, optsWin), "Windows 7-11", "os", 12, true},
		{"macos", syn(t, 50, true, 0, 65535, optsMac), "macOS/iOS", "os", 14, true},
		{"freebsd", syn(t, 64, true, 0, 65535, optsFree), "FreeBSD", "os", 0, true},
		{"openbsd", syn(t, 60, true, 0, 16384, optsOpen), "OpenBSD", "os", 4, true},
		{"nmap -sS", syn(t, 44, false, 4242, 1024, mss1460), "nmap SYN scan", "scanner", 20, true},
		{"nmap -O", syn(t, 50, false, 1, 1, optsNmapOS), "nmap OS probe", "scanner", 14, true},
		{"masscan", syn(t, 250, false, 7, 1024, nil), "masscan", "scanner", 5, true},
		{"zmap", syn(t, 240, false, 54321, 65535, nil), "zmap", "scanner", 15, true},
		{"zmap with MSS", syn(t, 240, false, 54321, 65535, mss1460), "zmap", "scanner", 15, true},
		{"hping3", syn(t, 64, false, 3, 512, nil), "hping3", "scanner", 0, true},
	}
	for _, tt := range tests {
		s, ok := FromPacket(&tt.p)
		if !ok {
			t.Fatalf("%s: no fingerprint from %v", tt.name, &tt.p)
		}
		g, ok := Match(s)
		if !ok || g.Name != tt.want || g.Class != tt.class || g.Hops != tt.hops || g.Exact != tt.exact {
			t.Errorf("%s (%s): got %+v (matched %v), want %q %s hops %d exact %v", tt.name, s.Summary(), g, ok, tt.want, tt.class, tt.hops, tt.exact)
		}
	}
}

func TestNoGuessWithoutTheCoreFields(t *testing.T) {
	for name, p := range map[string]packet.Packet{
		// Linux's options with Windows' TTL: neither.
		"linux options, ttl 128": syn(t, 120, true, 0, 64240, optsLinux),
		// An order no signature has.
		"odd order": syn(t, 64, true, 0, 65535, []byte{4, 2, 2, 4, 5, 0xb4}),
		// nmap's options but a window and DF no nmap SYN has: two fields off.
		"mss only, df, big window": syn(t, 64, true, 0, 29200, mss1460),
	} {
		s, _ := FromPacket(&p)
		if g, ok := Match(s); ok {
			t.Errorf("%s (%s): guessed %+v", name, s.Summary(), g)
		}
	}
	if _, ok := Match(SYN{}); ok {
		t.Error("an empty fingerprint matched")
	}
}

func TestFromPacketOnlyTakesSYNs(t *testing.T) {
	p := syn(t, 64, true, 0, 64240, optsLinux)
	for name, mod := range map[string]func(*packet.Packet){
		"syn+ack":   func(p *packet.Packet) { p.TCPFlags |= packet.ACK },
		"udp":       func(p *packet.Packet) { p.Proto = packet.ProtoUDP },
		"cut opts":  func(p *packet.Packet) { p.TCPOpts |= packet.OptCut },
		"bad opts":  func(p *packet.Packet) { p.TCPOpts |= packet.OptMalformed },
		"fragment":  func(p *packet.Packet) { p.Fragment = true },
		"syn+rst":   func(p *packet.Packet) { p.TCPFlags |= packet.RST },
		"fin alone": func(p *packet.Packet) { p.TCPFlags = packet.FIN },
	} {
		q := p
		mod(&q)
		if _, ok := FromPacket(&q); ok {
			t.Errorf("%s: took a fingerprint", name)
		}
	}
}

// Real nmap 7.93 SYN scan packets, IPv4 and IPv6, as NFLOG logged them.
func TestRealNmapSYNs(t *testing.T) {
	n := 0
	for _, g := range packettest.ReadGolden(t, "../packet/testdata/nmap.txt") {
		if !strings.Contains(g.Tool, "-sS") {
			continue
		}
		var p packet.Packet
		if err := packet.Decode(0, g.Bytes, &p); err != nil {
			t.Fatal(err)
		}
		s, ok := FromPacket(&p)
		gs, matched := Match(s)
		if !ok || !matched || gs.Name != "nmap SYN scan" {
			t.Errorf("line %d (%s, %s): %+v", g.Line, g.Tool, s.Summary(), gs)
		}
		n++
	}
	if n < 4 {
		t.Fatalf("only %d nmap -sS packets", n)
	}
}

func TestLayoutRoundTrip(t *testing.T) {
	for _, s := range []string{"-", "mss", "mss,sok,ts,nop,ws", "mss,nop,ws,nop,nop,ts,sok,eol", "other,sack"} {
		l, err := ParseLayout(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := LayoutString(l); got != s {
			t.Errorf("%q -> %#x -> %q", s, l, got)
		}
	}
	p := syn(t, 64, true, 0, 64240, optsLinux)
	if got := LayoutString(p.TCPOptOrder); got != "mss,sok,ts,nop,ws" {
		t.Errorf("decoded Linux SYN order %q", got)
	}
}

func TestParseErrorsNameTheLine(t *testing.T) {
	for _, bad := range []string{
		"x | os | 64 | df | * | * | * | mss",         // 8 fields
		"x | pc | 64 | df | * | * | * | mss | *",     // class
		"x | os | 63 | df | * | * | * | mss | *",     // ttl
		"x | os | 64 | yes | * | * | * | mss | *",    // df
		"x | os | 64 | df | mss*0 | * | * | mss | *", // window
		"x | os | 64 | df | 70000 | * | * | mss | *", // window
		"x | os | 64 | df | * | -1 | * | mss | *",    // mss
		"x | os | 64 | df | * | * | 15 | mss | *",    // wscale
		"x | os | 64 | df | * | * | * | mss,foo | *", // layout
		"x | os | 64 | df | * | * | * | mss | none",  // ipid
		"| os | 64 | df | * | * | * | mss | *",       // name
	} {
		_, err := Parse("# comment\n\n" + bad)
		if err == nil || !strings.HasPrefix(err.Error(), "line 3: ") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if table.Len() < 12 {
		t.Fatalf("embedded table has %d signatures", table.Len())
	}
}

func TestFromPacketIPv6(t *testing.T) {
	p := packet.Packet{Family: 6, Proto: packet.ProtoTCP, TTL: 255, TCPFlags: packet.SYN, TCPWindow: 1024, TCPOpts: packet.OptMSS,
		MSS: 1460, TCPOptLen: 4, TCPOptOrder: 3, Src: netip.MustParseAddr("fd00:210::2")}
	s, ok := FromPacket(&p)
	if !ok || s.Bits&Bit6 == 0 {
		t.Fatalf("%+v", s)
	}
	if g, ok := Match(s); !ok || g.Name != "nmap SYN scan" {
		t.Fatalf("%+v", g)
	}
}

func BenchmarkFromPacketAndMatch(b *testing.B) {
	p := syn(b, 61, true, 0, 64240, optsLinux)
	b.ReportAllocs()
	for b.Loop() {
		s, _ := FromPacket(&p)
		_, _ = Match(s)
	}
}

func TestFromPacketDoesNotAllocate(t *testing.T) {
	p := syn(t, 61, true, 0, 64240, optsLinux)
	if n := testing.AllocsPerRun(100, func() { _, _ = FromPacket(&p) }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}

package portscan

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/packet"
	"github.com/moat-fw/moat/internal/packet/packettest"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// readGolden reads a golden file of real packets and decodes each.
func readGolden(t testing.TB, path string) []realPacket {
	t.Helper()
	var out []realPacket
	for _, g := range packettest.ReadGolden(t, path) {
		rp := realPacket{line: g.Line, tool: g.Tool}
		if err := packet.Decode(0, g.Bytes, &rp.p); err != nil {
			t.Fatalf("%s:%d: %v", path, g.Line, err)
		}
		out = append(out, rp)
	}
	return out
}

// realPacket is one packet a real tool sent, decoded.
type realPacket struct {
	line int
	tool string // the comment line above it: "nmap -sS -Pn -p 9001,9002"
	p    packet.Packet
}

// byTool groups the golden packets by the nmap options that sent them.
func byTool(pkts []realPacket) map[string][]packet.Packet {
	m := map[string][]packet.Packet{}
	for _, rp := range pkts {
		m[rp.tool] = append(m[rp.tool], rp.p)
	}
	return m
}

// prefixFor is the log prefix moat's ruleset (stealth on) gives p.
func prefixFor(p *packet.Packet) string {
	if p.Proto != packet.ProtoTCP {
		return "moat:closed"
	}
	f := p.TCPFlags & flags6
	switch {
	case f == flags6:
		return "moat:allflags"
	case f == 0:
		return "moat:null"
	case f == packet.FIN|packet.PSH|packet.URG:
		return "moat:xmas"
	case f&(packet.SYN|packet.FIN) == packet.SYN|packet.FIN:
		return "moat:synfin"
	case f&(packet.SYN|packet.RST) == packet.SYN|packet.RST:
		return "moat:synrst"
	case f&(packet.FIN|packet.ACK) == packet.FIN:
		return "moat:finnoack"
	case f&(packet.FIN|packet.SYN|packet.RST|packet.ACK) != packet.SYN:
		return "moat:nosyn"
	}
	return "moat:closed"
}

// feed observes pkts in order, one millisecond apart from start, and
// returns the decisions.
func feed(d *Detector, start time.Time, pkts ...packet.Packet) []Decision {
	var out []Decision
	for i := range pkts {
		p := &pkts[i]
		if dec, ok := d.Observe(p, []byte(prefixFor(p)), start.Add(time.Duration(i)*time.Millisecond)); ok {
			out = append(out, dec)
		}
	}
	return out
}

// linuxSYN is a SYN as Linux 6.x connect() sends it (nmap -sT): MSS,
// SACK permitted, timestamps, NOP, window scale 7; window 64240.
const linuxSYN = "4500003c1c46400040060000" + "0ad2f202" + "0ad2f201" +
	"b4a4" + "2329" + "12345678" + "00000000" + "a002" + "faf0" + "0000" + "0000" +
	"020405b4" + "0402080a" + "9f3a1b2c" + "00000000" + "01030307"

func decodeHex(t testing.TB, s string) packet.Packet {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	var p packet.Packet
	if err := packet.Decode(0, b, &p); err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return p
}

// withDst returns copies of pkts sent to dst instead.
func withDst(dst netip.Addr, pkts ...packet.Packet) []packet.Packet {
	out := slices.Clone(pkts)
	for i := range out {
		out[i].Dst = dst
	}
	return out
}

func TestNmapScanTypes(t *testing.T) {
	golden := byTool(readGolden(t, "../packet/testdata/nmap.txt"))
	// Real packets of the scans that file lacks, from TestLiveNmap.
	extra := byTool(readGolden(t, goldenExtra))
	// The ping of the first file, sent to a second address.
	ping := golden["nmap -sn -PE --disable-arp-ping"]
	sweep := append(slices.Clone(ping), withDst(netip.MustParseAddr("10.210.242.3"), ping...)...)

	tests := []struct {
		scan  string
		pkts  []packet.Packet
		want  string // the source's types
		level int
	}{
		{"-sS", golden["nmap -sS -Pn -p 9001,9002"], "syn", 0},
		{"-6 -sS", golden["nmap -6 -sS -Pn -p 9001,9002"], "syn", 0},
		{"-sT", extra["nmap -sT -Pn -p 9001,9002"], "connect", 0},
		{"-sF", golden["nmap -sF -Pn -p 9001,9002"], "fin", 2},
		{"-sX", golden["nmap -sX -Pn -p 9001,9002"], "xmas", 2},
		{"-sN", golden["nmap -sN -Pn -p 9001,9002"], "null", 2},
		{"-sA", golden["nmap -sA -Pn -p 9001,9002"], "ack/window", 0},
		{"-sM", golden["nmap -sM -Pn -p 9001,9002"], "maimon", 2},
		{"-sW", golden["nmap -sW -Pn -p 9001,9002"], "ack/window", 0},
		{"-sU", golden["nmap -sU -Pn -p 9001,9002"], "udp", 0},
		{"-sO", golden["nmap -sO -Pn -p 47,103"], "proto", 0},
		{"-sY", golden["nmap -sY -Pn -p 9001,9002"], "sctp", 0},
		{"-PE", ping, "ping", 0},
		{"-PE two addresses", sweep, "ping,sweep", 1},
		{"-PE two addresses, live", extra["nmap -sn -PE --disable-arp-ping"], "ping,sweep", 1},
		// As root, nmap's host discovery sends an echo request, a SYN to
		// 443, an ACK to 80 and a timestamp request.
		{"-sn", extra["nmap -sn --disable-arp-ping"], "syn,ack/window,ping,icmp-probe", 2},
	}
	for _, tt := range tests {
		t.Run(tt.scan, func(t *testing.T) {
			if len(tt.pkts) == 0 {
				t.Fatal("no packets: testdata changed?")
			}
			d := New(Config{})
			decs := feed(d, t0, tt.pkts...)
			r := d.Report(t0.Add(time.Second), 10)
			if len(r.Sources) != 1 {
				t.Fatalf("%d sources, want 1: %+v", len(r.Sources), r.Sources)
			}
			s := r.Sources[0]
			if got := strings.Join(s.Types, ","); got != tt.want {
				t.Errorf("types %s, want %s", got, tt.want)
			}
			if s.Level != tt.level || s.Packets != len(tt.pkts) {
				t.Errorf("level %d after %d probes, want %d after %d", s.Level, s.Packets, tt.level, len(tt.pkts))
			}
			if tt.level > 0 {
				if len(decs) == 0 || decs[len(decs)-1].Level != tt.level || decs[len(decs)-1].Types.String() != tt.want {
					t.Errorf("decisions %+v, want the last at level %d", decs, tt.level)
				}
			} else if len(decs) != 0 {
				t.Errorf("decisions %+v at level 0", decs)
			}
			if r.Totals.Probes != uint64(len(tt.pkts)) || r.Totals.Unscored != 0 {
				t.Errorf("totals %+v", r.Totals)
			}
		})
	}
}

func TestSYNFingerprint(t *testing.T) {
	nmap := byTool(readGolden(t, "../packet/testdata/nmap.txt"))["nmap -sS -Pn -p 9001,9002"][0]
	masscan := nmap
	masscan.TCPOptLen, masscan.TCPOpts, masscan.MSS = 0, 0, 0
	windows := nmap // MSS, NOP, window scale, NOP, NOP, SACK permitted
	windows.TCPOptLen, windows.TCPOpts, windows.TCPWindow = 12, packet.OptMSS|packet.OptNOP|packet.OptWScale|packet.OptSACKPerm, 64240
	logged := nmap // a kernel log line without OPT: 20 option bytes, not seen
	logged.TCPOptLen, logged.TCPOpts = 20, packet.OptCut
	loggedNmap := logged
	loggedNmap.TCPOptLen = 4
	ecn := decodeHex(t, linuxSYN)
	ecn.TCPFlags |= packet.ECE | packet.CWR
	for _, tt := range []struct {
		name string
		p    packet.Packet
		want ScanTypes
	}{
		{"nmap -sS", nmap, TypeSYN},
		{"masscan", masscan, TypeSYN | TypeNoOpts},
		{"linux connect", decodeHex(t, linuxSYN), TypeConnect},
		{"linux connect with ECN", ecn, TypeConnect},
		{"windows connect", windows, TypeConnect},
		{"logged without OPT, 20 bytes", logged, TypeConnect},
		{"logged without OPT, 4 bytes", loggedNmap, TypeSYN},
	} {
		if got := classify(&tt.p, []byte("moat:closed")); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestClassify(t *testing.T) {
	const (
		F, S, R, P, A, U = packet.FIN, packet.SYN, packet.RST, packet.PSH, packet.ACK, packet.URG
	)
	tcp := func(f packet.Flags, payload uint16) packet.Packet {
		return packet.Packet{Family: 4, Proto: packet.ProtoTCP, TCPFlags: f, PayloadLen: payload, DstPort: 80}
	}
	icmp := func(typ, code uint8) packet.Packet {
		return packet.Packet{Family: 4, Proto: packet.ProtoICMP, ICMPType: typ, ICMPCode: code}
	}
	icmp6 := func(typ uint8) packet.Packet {
		return packet.Packet{Family: 6, Proto: packet.ProtoICMPv6, ICMPType: typ}
	}
	frag := tcp(0, 0)
	frag.Fragment = true
	first := tcp(0, 0)
	first.MoreFragments = true
	for _, tt := range []struct {
		name string
		p    packet.Packet
		want ScanTypes
	}{
		{"null", tcp(0, 0), TypeNULL},
		{"fin", tcp(F, 0), TypeFIN},
		{"xmas", tcp(F|P|U, 0), TypeXMAS},
		{"all flags", tcp(F|S|R|P|A|U, 0), TypeInvalid},
		{"syn+fin", tcp(S|F, 0), TypeSYNFIN},
		{"syn+fin+psh", tcp(S|F|P, 0), TypeSYNFIN},
		{"syn+rst", tcp(S|R, 0), TypeInvalid},
		{"psh alone", tcp(P, 0), TypeInvalid},
		{"urg alone", tcp(U, 0), TypeInvalid},
		{"fin+psh", tcp(F|P, 0), TypeInvalid},
		{"ack", tcp(A, 0), TypeACK},
		{"fin+ack", tcp(F|A, 0), TypeMaimon},
		{"ack with timestamps", func() packet.Packet { p := tcp(A, 0); p.TCPOptLen = 12; return p }(), 0},
		{"fin+ack with timestamps", func() packet.Packet { p := tcp(F|A, 0); p.TCPOptLen = 12; return p }(), 0},
		// Connections the firewall forgot, and backscatter: not probes.
		{"ack with data", tcp(A, 100), 0},
		{"psh+ack", tcp(P|A, 100), 0},
		{"fin+ack with data", tcp(F|A, 10), 0},
		{"fin+psh+ack", tcp(F|P|A, 0), 0},
		{"rst", tcp(R, 0), 0},
		{"rst+ack", tcp(R|A, 0), 0},
		{"syn+ack", tcp(S|A, 0), 0},
		{"fragment", frag, TypeFragment},
		{"first fragment, header cut", first, TypeFragment},
		{"udp", packet.Packet{Family: 4, Proto: packet.ProtoUDP}, TypeUDP},
		{"udplite", packet.Packet{Family: 4, Proto: packet.ProtoUDPLite}, TypeUDP},
		{"sctp", packet.Packet{Family: 4, Proto: packet.ProtoSCTP}, TypeSCTP},
		{"gre", packet.Packet{Family: 4, Proto: 47}, TypeProto},
		{"esp", packet.Packet{Family: 6, Proto: packet.ProtoESP}, TypeProto},
		{"no next header", packet.Packet{Family: 6, Proto: packet.ProtoNoNext}, TypeProto},
		{"icmp in ipv6", packet.Packet{Family: 6, Proto: packet.ProtoICMP}, TypeProto},
		{"echo", icmp(8, 0), TypePing},
		{"echo code 9 (nmap -O)", icmp(8, 9), TypePing | TypeICMPProbe},
		{"timestamp", icmp(13, 0), TypeICMPProbe},
		{"information", icmp(15, 0), TypeICMPProbe},
		{"address mask", icmp(17, 0), TypeICMPProbe},
		{"extended echo", icmp(42, 0), TypeICMPProbe},
		{"undefined 99", icmp(99, 0), TypeICMPProbe},
		{"echo reply", icmp(0, 0), 0},
		{"unreachable", icmp(3, 3), 0},
		{"time exceeded", icmp(11, 0), 0},
		{"echo6", icmp6(128), TypePing},
		{"node information", icmp6(139), TypeICMPProbe},
		{"echo reply6", icmp6(129), 0},
		{"neighbor solicitation", icmp6(135), 0},
		{"unreachable6", icmp6(1), 0},
	} {
		if got := classify(&tt.p, []byte("moat:closed")); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
	// The fragment prefix alone: the flags of what it logged mean nothing.
	p := tcp(0, 0)
	if got := classify(&p, []byte("moat:fragment")); got != TypeFragment {
		t.Errorf("moat:fragment: %v", got)
	}
}

// Packet builders for the scoring tests.

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func nmapSYN(src, dst string, port uint16) packet.Packet {
	a := addr(src)
	fam := uint8(4)
	if a.Is6() {
		fam = 6
	}
	return packet.Packet{Src: a, Dst: addr(dst), Family: fam, Proto: packet.ProtoTCP, TTL: 45,
		SrcPort: 58038, DstPort: port, TCPFlags: packet.SYN, TCPWindow: 1024,
		TCPOptLen: 4, TCPOpts: packet.OptMSS, MSS: 1460}
}

func clientSYN(src, dst string, sport, port uint16) packet.Packet {
	p := nmapSYN(src, dst, port)
	p.SrcPort, p.TCPWindow = sport, 64240
	p.TCPOptLen, p.TCPOpts = 20, packet.OptMSS|packet.OptSACKPerm|packet.OptTimestamp|packet.OptNOP|packet.OptWScale
	return p
}

func withFlags(p packet.Packet, f packet.Flags) packet.Packet {
	p.TCPFlags, p.TCPOptLen, p.TCPOpts, p.MSS = f, 0, 0, 0
	return p
}

func echo(src, dst string) packet.Packet {
	return packet.Packet{Src: addr(src), Dst: addr(dst), Family: 4, Proto: packet.ProtoICMP, TTL: 50, ICMPType: 8}
}

func udp(src, dst string, sport, port uint16) packet.Packet {
	return packet.Packet{Src: addr(src), Dst: addr(dst), Family: 4, Proto: packet.ProtoUDP, TTL: 50, SrcPort: sport, DstPort: port}
}

func maxLevel(d *Detector, now time.Time) int {
	r := d.Report(now, 1)
	if len(r.Sources) == 0 {
		return -1
	}
	return r.Sources[0].Level
}

// A normal client's strays stay at level 1 at most.
func TestStrayClient(t *testing.T) {
	const host, client = "203.0.113.1", "198.51.100.7"
	var browser []packet.Packet
	// Three parallel connections to 443, each SYN retried six times
	// (tcp_syn_retries), and QUIC to udp/443, retried.
	for conn := range 3 {
		for range 7 {
			browser = append(browser, clientSYN(client, host, uint16(50000+conn), 443))
		}
	}
	for range 10 {
		browser = append(browser, udp(client, host, 51000, 443))
	}
	// After the host rebooted: a Linux laptop's ssh and https sessions
	// close (FIN+ACK with timestamps, retransmitted) and keep alive (ACK
	// with timestamps); a Windows client's FIN+ACK, without options.
	var stale, windows []packet.Packet
	for range 15 {
		for _, port := range []uint16{22, 443} {
			for _, f := range []packet.Flags{packet.FIN | packet.ACK, packet.ACK} {
				p := withFlags(clientSYN(client, host, 40000, port), f)
				p.TCPOptLen, p.TCPOpts = 12, packet.OptNOP|packet.OptTimestamp
				stale = append(stale, p)
			}
		}
		windows = append(windows, withFlags(clientSYN(client, host, 40000, 22), packet.FIN|packet.ACK))
	}
	// A monitor pinging every 20 seconds.
	var monitor []packet.Packet
	for range 15 {
		monitor = append(monitor, echo(client, host))
	}
	for _, tt := range []struct {
		name string
		pkts []packet.Packet
	}{
		{"browser", browser},
		{"stale sessions", stale},
		{"stale windows session", windows},
		{"monitor", monitor},
		{"all three", slices.Concat(browser, monitor)},
	} {
		d := New(Config{})
		decs := feed(d, t0, tt.pkts...)
		if lv := maxLevel(d, t0); lv > 1 {
			t.Errorf("%s: level %d, want at most 1 (decisions %+v)", tt.name, lv, decs)
		}
	}
}

// Traffic innocent hosts send is counted but not scored.
func TestUnscored(t *testing.T) {
	const host, peer = "203.0.113.1", "198.51.100.7"
	data := withFlags(clientSYN(peer, host, 40000, 22), packet.PSH|packet.ACK)
	data.PayloadLen = 100
	pkts := []packet.Packet{
		data,
		withFlags(clientSYN(peer, host, 40000, 22), packet.RST),
		withFlags(clientSYN(peer, host, 40000, 22), packet.SYN|packet.ACK), // backscatter
		udp(peer, "224.0.0.251", 5353, 5353),                               // mDNS
		udp(peer, "255.255.255.255", 68, 67),                               // DHCP
		udp("0.0.0.0", host, 68, 67),
		udp("127.0.0.1", host, 1, 2),
		udp(peer, "ff02::fb", 5353, 5353),
		{Src: addr(peer), Dst: addr(host), Family: 4, Proto: packet.ProtoICMP, ICMPType: 3, ICMPCode: 3},
		{}, // nothing decoded
	}
	d := New(Config{})
	feed(d, t0, pkts...)
	r := d.Report(t0, 10)
	if d.Len() != 0 || r.Totals.Unscored != uint64(len(pkts)) || r.Totals.Probes != 0 || r.Totals.Packets != uint64(len(pkts)) {
		t.Errorf("%d sources, totals %+v", d.Len(), r.Totals)
	}
}

func TestPacketTiers(t *testing.T) {
	d := New(Config{})
	want := map[int]int{5: 1, 15: 2, 150: 3, 1500: 4, 10000: 5}
	for n := 1; n <= 12000; n++ {
		p := nmapSYN("192.0.2.9", "203.0.113.1", uint16(n))
		dec, ok := d.Observe(&p, []byte("moat:closed"), t0.Add(time.Duration(n)*time.Millisecond))
		if lv, tier := want[n]; ok != tier || ok && dec.Level != lv {
			t.Fatalf("probe %d: decision %v %+v, want level %d", n, ok, dec, lv)
		}
		if ok && (dec.Src != addr("192.0.2.9") || dec.Packets != n || dec.Types != TypeSYN ||
			!dec.First.Equal(t0.Add(time.Millisecond)) || !dec.Last.Equal(t0.Add(time.Duration(n)*time.Millisecond))) {
			t.Errorf("probe %d: %+v", n, dec)
		}
		if ok && n <= 1500 && (dec.Ports < n*85/100 || dec.Ports > n*115/100) {
			t.Errorf("probe %d: %d ports estimated, want within 15%%", n, dec.Ports)
		}
		if ok && n == 10000 && dec.Ports < 7000 {
			t.Errorf("probe %d: %d ports estimated, want the set saturated (7000 or more)", n, dec.Ports)
		}
	}
	// Custom tiers.
	d = New(Config{PacketTiers: [5]int{1, 2, 3, 4, 5}})
	var levels []int
	for n := range 6 {
		p := nmapSYN("192.0.2.9", "203.0.113.1", uint16(n))
		if dec, ok := d.Observe(&p, nil, t0); ok {
			levels = append(levels, dec.Level)
		}
	}
	if !slices.Equal(levels, []int{1, 2, 3, 4, 5}) {
		t.Errorf("custom tiers: %v", levels)
	}
}

func TestSweepTiers(t *testing.T) {
	d := New(Config{})
	want := map[int]int{2: 1, 4: 2, 8: 3, 16: 4, 32: 5}
	for n := 1; n <= 40; n++ {
		// One ping per address: the probe count stays under the
		// packet tiers' past level 2.
		p := echo("192.0.2.9", fmt.Sprintf("203.0.113.%d", n))
		dec, ok := d.Observe(&p, []byte("moat:closed"), t0)
		lv, tier := want[n]
		if n >= 5 && n < 8 || n >= 15 && n < 16 {
			// The packet tiers rise first (5 and 15 probes).
			continue
		}
		if ok != tier || ok && dec.Level != lv {
			t.Fatalf("address %d: decision %v %+v, want level %d", n, ok, dec, lv)
		}
		if ok && dec.Types != TypePing|TypeSweep {
			t.Errorf("types %v", dec.Types)
		}
	}
	// A horizontal scan: one port across addresses.
	d = New(Config{})
	var decs []Decision
	for n := 1; n <= 8; n++ {
		p := nmapSYN("192.0.2.9", fmt.Sprintf("203.0.113.%d", n), 22)
		if dec, ok := d.Observe(&p, nil, t0); ok {
			decs = append(decs, dec)
		}
	}
	if len(decs) == 0 || decs[len(decs)-1].Level != 3 || decs[len(decs)-1].Types != TypeSYN|TypeSweep || decs[len(decs)-1].Ports != 1 {
		t.Errorf("horizontal scan: %+v", decs)
	}
}

func TestSignatures(t *testing.T) {
	const host, src = "203.0.113.1", "192.0.2.9"
	xmas := func(port uint16) packet.Packet {
		return withFlags(nmapSYN(src, host, port), packet.FIN|packet.PSH|packet.URG)
	}
	for _, tt := range []struct {
		name string
		cfg  Config
		pkts []packet.Packet
		want int
	}{
		{"one forged xmas", Config{}, []packet.Packet{xmas(80)}, 1},
		{"xmas to one port, many", Config{}, slices.Repeat([]packet.Packet{xmas(80)}, 200), 1},
		{"xmas to two ports", Config{}, []packet.Packet{xmas(80), xmas(81)}, 2},
		{"15 fin", Config{}, func() (out []packet.Packet) {
			for i := range 15 {
				out = append(out, withFlags(nmapSYN(src, host, uint16(i)), packet.FIN))
			}
			return out
		}(), 3},
		{"syn scan plus one null", Config{}, func() (out []packet.Packet) {
			for i := range 150 {
				out = append(out, nmapSYN(src, host, uint16(i)))
			}
			return append(out, withFlags(nmapSYN(src, host, 1), 0))
		}(), 4},
		{"level 3 floor", Config{SignatureLevel: 3}, []packet.Packet{xmas(80), xmas(81)}, 3},
		{"no floor, no boost", Config{SignatureLevel: -1, SignatureBoost: -1}, []packet.Packet{xmas(80), xmas(81)}, 0},
		{"boost 2, no floor", Config{SignatureLevel: -1, SignatureBoost: 2}, []packet.Packet{xmas(80), xmas(81)}, 2},
		{"no breadth rule", Config{MinPorts: -1}, []packet.Packet{xmas(80)}, 2},
		{"breadth 3", Config{MinPorts: 3}, []packet.Packet{xmas(80), xmas(81)}, 1},
		{"icmp timestamp and echo, two addresses", Config{}, []packet.Packet{
			{Src: addr(src), Dst: addr(host), Family: 4, Proto: packet.ProtoICMP, ICMPType: 13},
			echo(src, "203.0.113.2"),
		}, 2},
		{"gre and pim", Config{}, []packet.Packet{
			{Src: addr(src), Dst: addr(host), Family: 4, Proto: 47},
			{Src: addr(src), Dst: addr(host), Family: 4, Proto: 103},
		}, 0},
	} {
		d := New(tt.cfg)
		feed(d, t0, tt.pkts...)
		if lv := maxLevel(d, t0); lv != tt.want {
			t.Errorf("%s: level %d, want %d", tt.name, lv, tt.want)
		}
	}
}

func TestWindow(t *testing.T) {
	d := New(Config{Window: time.Minute})
	scan := func(start time.Time) []Decision {
		var pkts []packet.Packet
		for i := range 20 {
			pkts = append(pkts, nmapSYN("192.0.2.9", "203.0.113.1", uint16(i)))
		}
		return feed(d, start, pkts...)
	}
	if decs := scan(t0); len(decs) != 2 || decs[1].Level != 2 {
		t.Fatalf("first window: %+v", decs)
	}
	if lv := d.Level(addr("192.0.2.9"), t0.Add(30*time.Second)); lv != 2 {
		t.Errorf("Level in the window: %d", lv)
	}
	if lv := d.Level(addr("::ffff:192.0.2.9"), t0.Add(2*time.Minute)); lv != 0 {
		t.Errorf("Level after the window: %d", lv)
	}
	if lv := d.Level(addr("192.0.2.10"), t0); lv != 0 {
		t.Errorf("Level of an unknown source: %d", lv)
	}
	// Within the window: no new decision for the same levels.
	if decs := scan(t0.Add(30 * time.Second)); len(decs) != 0 {
		t.Errorf("same window: %+v", decs)
	}
	r := d.Report(t0.Add(30*time.Second), 1)
	if r.Sources[0].Packets != 40 || !r.Sources[0].Active {
		t.Errorf("same window: %+v", r.Sources[0])
	}
	// A probe after the window starts a new tally, reported afresh.
	r = d.Report(t0.Add(2*time.Minute), 1)
	if r.Sources[0].Active {
		t.Errorf("window over, still active: %+v", r.Sources[0])
	}
	decs := scan(t0.Add(2 * time.Minute))
	if len(decs) != 2 || decs[0].Packets != 5 || !decs[0].First.Equal(t0.Add(2*time.Minute)) {
		t.Errorf("new window: %+v", decs)
	}
	// Time going backwards does not reset or corrupt the tally.
	p := nmapSYN("192.0.2.9", "203.0.113.1", 1)
	d.Observe(&p, nil, t0)
	if r := d.Report(t0.Add(2*time.Minute), 1); r.Sources[0].Packets != 21 || !r.Sources[0].Last.Equal(t0.Add(2*time.Minute+19*time.Millisecond)) {
		t.Errorf("clock stepped back: %+v", r.Sources[0])
	}
}

func TestIgnoreAndKnock(t *testing.T) {
	admin := addr("192.0.2.1")
	knockPorts := map[uint16]bool{7000: true, 8000: true, 9000: true}
	var knockCalls int
	d := New(Config{
		Ignore: func(a netip.Addr) bool { return a == admin },
		Knock: func(p *packet.Packet) bool {
			knockCalls++
			return p.Proto == packet.ProtoTCP && knockPorts[p.DstPort]
		},
	})
	var pkts []packet.Packet
	for i := range 100 {
		pkts = append(pkts, nmapSYN("192.0.2.1", "203.0.113.1", uint16(i)))
	}
	for range 10 {
		for port := range knockPorts {
			pkts = append(pkts, nmapSYN("192.0.2.2", "203.0.113.1", port))
		}
	}
	pkts = append(pkts, withFlags(nmapSYN("192.0.2.2", "203.0.113.1", 7000), packet.PSH|packet.ACK)) // unscored: no hook call
	if decs := feed(d, t0, pkts...); len(decs) != 0 || d.Len() != 0 {
		t.Errorf("decisions %+v, %d sources", decs, d.Len())
	}
	r := d.Report(t0, 10)
	if r.Totals.Ignored != 100 || r.Totals.Knock != 30 || r.Totals.Probes != 0 || knockCalls != 30 {
		t.Errorf("totals %+v, knock called %d times", r.Totals, knockCalls)
	}
	// An IPv4-mapped source is the IPv4 address.
	p := nmapSYN("::ffff:192.0.2.1", "::ffff:203.0.113.1", 1)
	d.Observe(&p, nil, t0)
	if d.Len() != 0 {
		t.Error("mapped address not ignored")
	}
}

func TestEviction(t *testing.T) {
	d := New(Config{MaxSources: 100})
	// A real scanner reaches level 3...
	scanner := "192.0.2.9"
	var scan []packet.Packet
	for i := range 150 {
		scan = append(scan, nmapSYN(scanner, "203.0.113.1", uint16(i)))
	}
	if decs := feed(d, t0, scan...); decs[len(decs)-1].Level != 3 {
		t.Fatalf("scanner: %+v", decs)
	}
	// ...then a flood of forged one-probe sources.
	now := t0.Add(time.Second)
	flood := func(n int) {
		for i := range n {
			p := nmapSYN(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String(), "203.0.113.1", 80)
			d.Observe(&p, nil, now)
			checkTable(t, &d.table)
		}
	}
	flood(250)
	if d.Len() != 100 {
		t.Fatalf("%d sources, want 100", d.Len())
	}
	// Spared three times (its level), so still known after 250.
	r := d.Report(now, 1)
	if r.Sources[0].Addr != addr(scanner) || r.Sources[0].Level != 3 {
		t.Errorf("scanner forgotten after 250 forged sources: %+v", r.Sources[0])
	}
	flood(1000)
	r = d.Report(now, 0)
	if len(r.Sources) != 100 || r.Sources[0].Level != 0 || r.Totals.Evicted < 1000 {
		t.Errorf("after 1250: %d sources, top %+v, evicted %d", len(r.Sources), r.Sources[0], r.Totals.Evicted)
	}
	if r.Levels[0] != 100 {
		t.Errorf("levels %v", r.Levels)
	}
	// A scanner whose window closed is not spared.
	d = New(Config{MaxSources: 2, Window: time.Minute})
	feed(d, t0, scan[:20]...)
	p := nmapSYN("192.0.2.10", "203.0.113.1", 80)
	d.Observe(&p, nil, t0.Add(2*time.Minute))
	p.Src = addr("192.0.2.11")
	d.Observe(&p, nil, t0.Add(2*time.Minute))
	if r := d.Report(t0.Add(2*time.Minute), 0); len(r.Sources) != 2 || r.Sources[0].Level != 0 {
		t.Errorf("expired scanner spared: %+v", r.Sources)
	}
}

func TestForget(t *testing.T) {
	d := New(Config{MaxSources: 10})
	var all []netip.Addr
	for i := range 10 {
		a := netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})
		all = append(all, a)
		p := nmapSYN(a.String(), "203.0.113.1", 80)
		d.Observe(&p, nil, t0)
	}
	for _, i := range []int{0, 9, 5, 5, 3} {
		d.Forget(all[i])
		checkTable(t, &d.table)
	}
	d.Forget(addr("2001:db8::1"))
	if d.Len() != 6 {
		t.Errorf("%d sources, want 6", d.Len())
	}
	r := d.Report(t0, 0)
	var got []netip.Addr
	for _, s := range r.Sources {
		got = append(got, s.Addr)
	}
	slices.SortFunc(got, netip.Addr.Compare)
	if want := []netip.Addr{all[1], all[2], all[4], all[6], all[7], all[8]}; !slices.Equal(got, want) {
		t.Errorf("left %v, want %v", got, want)
	}
	// Forgotten sources start afresh.
	p := nmapSYN("192.0.2.0", "203.0.113.1", 81)
	d.Observe(&p, nil, t0)
	if r := d.Report(t0, 0); r.Totals.Sources != 7 {
		t.Errorf("%+v", r.Totals)
	}
}

// checkTable verifies the index, the slab and the list agree.
func checkTable(t testing.TB, tb *table) {
	t.Helper()
	seen := map[uint32]bool{}
	prev := none
	for i := tb.head; i != none; i = tb.at(i).next {
		if seen[i] || int(i) >= tb.n {
			t.Fatalf("list: slot %d again or out of range (n %d)", i, tb.n)
		}
		seen[i] = true
		if tb.at(i).prev != prev {
			t.Fatalf("list: slot %d prev %d, want %d", i, tb.at(i).prev, prev)
		}
		prev = i
	}
	if prev != tb.tail || len(seen) != tb.n {
		t.Fatalf("list: tail %d (want %d), %d linked of %d", tb.tail, prev, len(seen), tb.n)
	}
	cells := 0
	for _, v := range tb.cells {
		if v != 0 {
			cells++
		}
	}
	if cells != tb.n {
		t.Fatalf("index: %d cells used, %d sources", cells, tb.n)
	}
	for i := range uint32(tb.n) {
		s := tb.at(i)
		if uint32(tb.hashKey(&s.key)) != s.hash {
			t.Fatalf("slot %d: stale hash", i)
		}
		if got := tb.find(&s.key); got != i {
			t.Fatalf("slot %d: index finds %d", i, got)
		}
	}
}

// TestTableChurn checks the index under random inserts, evictions and
// removals against a plain map.
func TestTableChurn(t *testing.T) {
	var tb table
	tb.init(300)
	model := map[[16]byte]bool{}
	rng := uint64(1)
	next := func() uint64 { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng }
	for step := range 20000 {
		var k [16]byte
		k[15] = byte(next() % 255)
		k[14] = byte(next() % 3)
		if next()%4 == 0 {
			tb.remove(&k)
			delete(model, k)
		} else {
			i := tb.lookup(&k, int64(step), 1)
			if tb.at(i).key != k || tb.head != i {
				t.Fatalf("step %d: lookup gave slot %d", step, i)
			}
			model[k] = true
		}
		if step%97 == 0 {
			checkTable(t, &tb)
		}
		for k := range model {
			if tb.find(&k) == none {
				delete(model, k) // evicted
			}
		}
		if len(model) != tb.n {
			t.Fatalf("step %d: %d sources, model %d", step, tb.n, len(model))
		}
	}
	checkTable(t, &tb)
}

func TestReport(t *testing.T) {
	d := New(Config{})
	// 192.0.2.1: a full SYN scan; 192.0.2.2: an XMAS scan of 20 ports;
	// 192.0.2.3: one stray connect.
	var pkts []packet.Packet
	for i := range 200 {
		pkts = append(pkts, nmapSYN("192.0.2.1", "203.0.113.1", uint16(1000+i)))
	}
	for i := range 20 {
		pkts = append(pkts, withFlags(nmapSYN("192.0.2.2", "203.0.113.1", uint16(1000+i)), packet.FIN|packet.PSH|packet.URG))
	}
	pkts = append(pkts, clientSYN("2001:db8::3", "2001:db8::1", 50000, 443))
	pkts = append(pkts, udp("192.0.2.1", "203.0.113.1", 5000, 1000))
	feed(d, t0, pkts...)
	p := nmapSYN("192.0.2.4", "203.0.113.1", 1)
	d.Observe(&p, []byte("Drop Syn"), t0)
	r := d.Report(t0.Add(time.Second), 2)

	if len(r.Sources) != 2 {
		t.Fatalf("%d sources, want the top 2", len(r.Sources))
	}
	s := r.Sources[0]
	if s.Addr != addr("192.0.2.1") || s.Level != 4-1 || s.Packets != 201 || s.PortLow != 1000 || s.PortHigh != 1199 ||
		s.LocalAddrs != 1 || !slices.Equal(s.Protocols, []string{"tcp", "udp"}) || !slices.Equal(s.TCPFlags, []string{"S"}) ||
		!slices.Equal(s.Types, []string{"syn", "udp"}) || !s.Active {
		t.Errorf("top source %+v", s)
	}
	// Beyond 8, distinct ports are estimated from a 1024-bit set hashed
	// with a random seed: for 200 ports the estimate's standard error is
	// about 4.6, so ±10 failed about one run in 80; ±20 is over 4 of them.
	if s.Ports < 180 || s.Ports > 220 {
		t.Errorf("ports %d, want about 200", s.Ports)
	}
	if s := r.Sources[1]; s.Addr != addr("192.0.2.2") || s.Level != 3 || !slices.Equal(s.TCPFlags, []string{"FPU"}) {
		t.Errorf("second source %+v", s)
	}
	if r.Levels != [6]int{2, 0, 0, 2, 0, 0} {
		t.Errorf("levels %v", r.Levels)
	}
	if len(r.Ports) != 2 || r.Ports[0] != (PortReport{"tcp", 1000, 2}) || r.Ports[1] != (PortReport{"tcp", 1001, 2}) {
		t.Errorf("ports %+v", r.Ports)
	}
	wantPrefixes := []PrefixReport{{"moat:closed", 202}, {"moat:xmas", 20}, {"Drop Syn", 1}}
	if !slices.Equal(r.Prefixes, wantPrefixes) {
		t.Errorf("prefixes %+v, want %+v", r.Prefixes, wantPrefixes)
	}
	want := Totals{Packets: 223, Probes: 223, TCP: 222, UDP: 1, Sources: 4, Destinations: 2, MaxSources: DefaultMaxSources}
	if r.Totals != want {
		t.Errorf("totals %+v\nwant %+v", r.Totals, want)
	}
	if r.WindowSeconds != 300 {
		t.Errorf("window %d", r.WindowSeconds)
	}
	// All ports when topN <= 0: tcp 1000-1199, udp 1000, tcp 443 and 1.
	if r := d.Report(t0, 0); len(r.Ports) != 203 || len(r.Sources) != 4 || r.Ports[0].Packets != 2 {
		t.Errorf("all: %d ports, %d sources", len(r.Ports), len(r.Sources))
	}

	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"sources":`, `"addr":"192.0.2.1"`, `"types":["syn","udp"]`, `"port_low":1000`, `"local_addrs":1`,
		`"tcp_flags":["S"]`, `"window_seconds":300`, `"max_sources":200000`, `"prefixes":[{"prefix":"moat:closed","packets":202}`} {
		if !strings.Contains(string(b), k) {
			t.Errorf("JSON lacks %s:\n%s", k, b)
		}
	}
}

func TestPrefixes(t *testing.T) {
	// The fixed slots name every prefix the firewall logs with.
	want := []string{firewall.LogPrefix(firewall.CounterClosed), firewall.LogPrefix(firewall.CounterInvalid)}
	for _, r := range firewall.StealthReasons() {
		want = append(want, firewall.LogPrefix(r))
	}
	slices.Sort(want)
	got := slices.Clone(knownPrefixes[:])
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("known prefixes %v, firewall logs %v", got, want)
	}
	// countPrefix's switch agrees with the names.
	d := New(Config{})
	for i, name := range knownPrefixes {
		d.countPrefix([]byte(name))
		if d.prefixes[i] != 1 {
			t.Errorf("%s counted in slot %v", name, d.prefixes)
		}
	}
	// Unknown prefixes: the first 16 get a slot, the rest share one.
	for i := range 40 {
		d.countPrefix(fmt.Appendf(nil, "iptables-%d", i%20))
	}
	r := d.Report(t0, 0)
	if n := len(r.Prefixes); n != len(knownPrefixes)+maxOtherPrefixes+1 {
		t.Fatalf("%d prefixes: %+v", n, r.Prefixes)
	}
	if last := r.Prefixes[len(r.Prefixes)-1]; last != (PrefixReport{otherPrefix, 8}) {
		t.Errorf("shared slot %+v", last)
	}
	if p := r.Prefixes[len(knownPrefixes)]; p != (PrefixReport{"iptables-0", 2}) {
		t.Errorf("first other %+v", p)
	}
}

func TestScanTypesString(t *testing.T) {
	if got := (TypeSYN | TypeNoOpts | TypeSweep).String(); got != "syn,noopts,sweep" {
		t.Error(got)
	}
	if got := ScanTypes(0).String(); got != "none" {
		t.Error(got)
	}
	if got := TypeACK.String(); got != "ack/window" {
		t.Error(got)
	}
	all := ScanTypes(1<<numTypes - 1)
	if n := len(all.Names()); n != numTypes {
		t.Errorf("%d names for %d types", n, numTypes)
	}
	if !TypeXMAS.Signature() || TypeSYN.Signature() || TypeACK.Signature() || !TypeMaimon.Signature() {
		t.Error("signatures")
	}
}

func TestValidate(t *testing.T) {
	if err := (&Config{}).Validate(); err != nil {
		t.Errorf("zero config: %v", err)
	}
	def := Config{Window: DefaultWindow, MaxSources: DefaultMaxSources, PacketTiers: DefaultPacketTiers, SweepTiers: DefaultSweepTiers,
		SignatureBoost: DefaultSignatureBoost, SignatureLevel: DefaultSignatureLevel, MinPorts: DefaultMinPorts}
	if err := def.Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	off := Config{SignatureBoost: -1, SignatureLevel: -1, MinPorts: -1}
	if err := off.Validate(); err != nil {
		t.Errorf("rules off: %v", err)
	}
	for _, tt := range []struct {
		cfg   Config
		field string
	}{
		{Config{Window: -time.Second}, "window"},
		{Config{Window: time.Millisecond}, "window"},
		{Config{MaxSources: -1}, "max_sources"},
		{Config{MaxSources: 1 << 30}, "max_sources"},
		{Config{PacketTiers: [5]int{5, 15, 15, 1500, 10000}}, "packet_tiers"},
		{Config{PacketTiers: [5]int{5, 15, 150}}, "packet_tiers"},
		{Config{PacketTiers: [5]int{-1, 15, 150, 1500, 10000}}, "packet_tiers"},
		{Config{SweepTiers: [5]int{2, 4, 8, 16, 300}}, "sweep_tiers"},
		{Config{SweepTiers: [5]int{4, 2, 8, 16, 32}}, "sweep_tiers"},
		{Config{SignatureBoost: 5}, "signature_boost"},
		{Config{SignatureLevel: 6}, "signature_level"},
		{Config{MinPorts: 2000}, "min_ports"},
	} {
		err := tt.cfg.Validate()
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tt.field {
			t.Errorf("%+v: %v, want a problem with %s", tt.cfg, err, tt.field)
			continue
		}
		if msg := err.Error(); !strings.HasPrefix(msg, tt.field+" ") || strings.Contains(msg, "\n") || msg != strings.ToLower(msg[:1])+msg[1:] {
			t.Errorf("message %q", msg)
		}
	}
	// Several problems come back joined, each naming its field.
	err := (&Config{Window: -1, MinPorts: 5000}).Validate()
	if errs := unjoin(err); len(errs) != 2 || !strings.Contains(err.Error(), "window") || !strings.Contains(err.Error(), "min_ports") {
		t.Errorf("joined: %v", err)
	}
	// New falls back to the default for invalid fields.
	d := New(Config{Window: -1, MaxSources: -5, PacketTiers: [5]int{3, 2, 1}, SignatureLevel: 9, MinPorts: 1})
	if d.window != int64(DefaultWindow) || d.table.max != DefaultMaxSources || d.packetTiers != [5]uint32{5, 15, 150, 1500, 10000} ||
		d.sigLevel != DefaultSignatureLevel || d.minPorts != 1 {
		t.Errorf("fallbacks: window %d max %d tiers %v sig %d minports %d", d.window, d.table.max, d.packetTiers, d.sigLevel, d.minPorts)
	}
}

func TestZeroAllocs(t *testing.T) {
	d := New(Config{MaxSources: 1000})
	pkts := make([]packet.Packet, 5000)
	for i := range pkts {
		pkts[i] = nmapSYN(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}).String(), "203.0.113.1", uint16(i))
	}
	stale := withFlags(pkts[0], packet.PSH|packet.ACK)
	stale.PayloadLen = 10
	prefixes := [][]byte{[]byte("moat:closed"), []byte("moat:nosyn"), []byte("Drop Syn")}
	// Warm up: the slab, index and prefix slots reach their size.
	for i := range pkts {
		d.Observe(&pkts[i], prefixes[i%3], t0)
	}
	i := 0
	for _, tt := range []struct {
		name string
		fn   func()
	}{
		{"known source", func() { d.Observe(&pkts[len(pkts)-1], prefixes[0], t0) }},
		{"new source, evicting", func() { i++; d.Observe(&pkts[i%len(pkts)], prefixes[i%3], t0.Add(time.Duration(i))) }},
		{"unscored", func() { d.Observe(&stale, prefixes[1], t0) }},
		{"rising levels", func() {
			// The packet is reused, as the NFLOG receiver does: Observe
			// hands it to Config.Knock, so a fresh one per call would be
			// moved to the heap by the caller.
			i++
			p := &pkts[0]
			p.DstPort = uint16(i)
			d.Observe(p, prefixes[0], t0)
		}},
	} {
		if n := testing.AllocsPerRun(2000, tt.fn); n != 0 {
			t.Errorf("%s: %v allocations per packet", tt.name, n)
		}
	}
}

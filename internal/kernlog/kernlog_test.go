package kernlog

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/packet"
)

// format writes p as the kernel's nf_log_syslog does (dump_ipv4_packet,
// dump_ipv6_packet, nf_log_dump_tcp_header, nf_log_dump_udp_header), with
// the options of --log-tcp-sequence and --log-tcp-options (nftables: flags
// tcp sequence,options) when seq or tcpOpts are set. It is written from
// the kernel's source, independently of Parse.
func format(p *packet.Packet, prefix string, seq bool, tcpOpts []byte, udpLen int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%sIN=eth0 OUT= MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 ", prefix)
	if p.Family == 4 {
		fmt.Fprintf(&b, "SRC=%s DST=%s ", p.Src, p.Dst)
		fmt.Fprintf(&b, "LEN=%d TOS=0x%02X PREC=0x%02X TTL=%d ID=%d ", p.Length, p.TOS&0x1e, p.TOS&0xe0, p.TTL, p.IPID)
		if p.DF {
			b.WriteString("DF ")
		}
		if p.MoreFragments {
			b.WriteString("MF ")
		}
		if p.Fragment {
			b.WriteString("FRAG:185 ")
		}
	} else {
		fmt.Fprintf(&b, "SRC=%s DST=%s ", pI6(p.Src), pI6(p.Dst))
		fmt.Fprintf(&b, "LEN=%d TC=%d HOPLIMIT=%d FLOWLBL=%d ", int(p.Length)+40, p.TOS, p.TTL, 12345)
		if p.Fragment || p.MoreFragments {
			off := 0
			if p.Fragment {
				off = 1232
			}
			fmt.Fprintf(&b, "FRAG:%d ", off)
			if p.MoreFragments {
				b.WriteString("INCOMPLETE ")
			}
			b.WriteString("ID:0000abcd ")
		}
	}
	switch p.Proto {
	case packet.ProtoTCP:
		b.WriteString("PROTO=TCP ")
		if p.Fragment {
			break
		}
		fmt.Fprintf(&b, "SPT=%d DPT=%d ", p.SrcPort, p.DstPort)
		if seq {
			fmt.Fprintf(&b, "SEQ=%d ACK=%d ", p.TCPSeq, p.TCPAck)
		}
		fmt.Fprintf(&b, "WINDOW=%d RES=0x%02x ", p.TCPWindow, 0)
		for _, f := range []struct {
			f    packet.Flags
			name string
		}{{packet.CWR, "CWR"}, {packet.ECE, "ECE"}, {packet.URG, "URG"}, {packet.ACK, "ACK"}, {packet.PSH, "PSH"}, {packet.RST, "RST"}, {packet.SYN, "SYN"}, {packet.FIN, "FIN"}} {
			if p.TCPFlags&f.f != 0 {
				b.WriteString(f.name + " ")
			}
		}
		b.WriteString("URGP=0 ")
		if len(tcpOpts) > 0 {
			fmt.Fprintf(&b, "OPT (%X) ", tcpOpts)
		}
	case packet.ProtoUDP:
		b.WriteString("PROTO=UDP ")
		if p.Fragment {
			break
		}
		fmt.Fprintf(&b, "SPT=%d DPT=%d LEN=%d ", p.SrcPort, p.DstPort, udpLen)
	case packet.ProtoICMP, packet.ProtoICMPv6:
		if p.Proto == packet.ProtoICMP {
			b.WriteString("PROTO=ICMP ")
		} else {
			b.WriteString("PROTO=ICMPv6 ")
		}
		if p.Fragment {
			break
		}
		fmt.Fprintf(&b, "TYPE=%d CODE=%d ", p.ICMPType, p.ICMPCode)
		if p.ICMPType == 8 || p.ICMPType == 0 || p.ICMPType == 128 || p.ICMPType == 129 {
			fmt.Fprintf(&b, "ID=%d SEQ=%d ", p.ICMPID, p.ICMPSeq)
		}
	default:
		fmt.Fprintf(&b, "PROTO=%d ", p.Proto)
	}
	return b.String()
}

// pI6 is the kernel's %pI6: eight groups of four hex digits.
func pI6(a netip.Addr) string {
	b := a.As16()
	var s []string
	for i := 0; i < 16; i += 2 {
		s = append(s, fmt.Sprintf("%04x", binary.BigEndian.Uint16(b[i:])))
	}
	return strings.Join(s, ":")
}

// TestRealNmapLines formats every packet real nmap sent (internal/packet's
// golden file) as the kernel logs it, and parses it back: the result is
// what packet.Decode made of the packet itself, less what a log line lacks.
func TestRealNmapLines(t *testing.T) {
	f, err := os.Open("../packet/testdata/nmap.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		h, _, _ := strings.Cut(sc.Text(), "\t")
		raw, err := hex.DecodeString(h)
		if err != nil || strings.HasPrefix(h, "#") {
			continue
		}
		var want packet.Packet
		if err := packet.Decode(0, raw, &want); err != nil {
			t.Fatal(err)
		}
		l4 := raw[20:]
		if want.Family == 6 {
			l4 = raw[40:]
		}
		var opts []byte
		udpLen := 0
		switch want.Proto {
		case packet.ProtoTCP:
			opts = l4[20 : (l4[12]>>4)*4]
		case packet.ProtoUDP:
			udpLen = int(binary.BigEndian.Uint16(l4[4:]))
		case packet.ProtoICMP, packet.ProtoICMPv6:
		default:
			want.SrcPort, want.DstPort, want.PayloadLen = 0, 0, 0 // the kernel prints only the number
		}
		want.TOS &^= 1 // the kernel prints TOS without its lowest bit

		for _, seq := range []bool{true, false} {
			line := "Mar  1 12:00:00 web1 kernel: [ 1234.567890] Drop Syn " + format(&want, "", seq, opts, udpLen)
			w := want
			if !seq {
				w.TCPSeq, w.TCPAck = 0, 0
			}
			var got packet.Packet
			prefix, ok := Parse([]byte(line), &got)
			if !ok || string(prefix) != "Drop Syn" {
				t.Errorf("%s: refused (prefix %q)", line, prefix)
				continue
			}
			if got != w {
				t.Errorf("%s\n got %+v\nwant %+v", line, got, w)
			}
		}
		n++
	}
	if n < 20 {
		t.Fatalf("only %d packets", n)
	}
}

func TestParse(t *testing.T) {
	const mac = "MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 "
	a := netip.MustParseAddr
	tests := []struct {
		name   string
		line   string
		prefix string
		want   packet.Packet
	}{
		{
			"iptables LOG, psad's prefix, syslog with kernel timestamp",
			"Mar  1 12:00:00 web1 kernel: [ 1234.567890] Drop Syn IN=eth0 OUT= " + mac + "SRC=198.51.100.7 DST=203.0.113.1 LEN=44 TOS=0x00 PREC=0x00 TTL=48 ID=31557 PROTO=TCP SPT=58038 DPT=9001 WINDOW=1024 RES=0x00 SYN URGP=0 OPT (020405B4) ",
			"Drop Syn",
			packet.Packet{Src: a("198.51.100.7"), Dst: a("203.0.113.1"), Family: 4, Proto: 6, TTL: 48, IPID: 31557, Length: 44,
				SrcPort: 58038, DstPort: 9001, TCPFlags: packet.SYN, TCPWindow: 1024, TCPOptLen: 4, TCPOpts: packet.OptMSS, MSS: 1460, TCPOptOrder: 3},
		},
		{
			"journalctl -k, no options logged: a masscan SYN",
			"Mar 01 12:00:00 web1 kernel: DROP IN=eth0 OUT= " + mac + "SRC=198.51.100.7 DST=203.0.113.1 LEN=40 TOS=0x00 PREC=0x00 TTL=250 ID=54321 PROTO=TCP SPT=61000 DPT=22 WINDOW=1024 RES=0x00 SYN URGP=0 ",
			"DROP",
			packet.Packet{Src: a("198.51.100.7"), Dst: a("203.0.113.1"), Family: 4, Proto: 6, TTL: 250, IPID: 54321, Length: 40,
				SrcPort: 61000, DstPort: 22, TCPFlags: packet.SYN, TCPWindow: 1024},
		},
		{
			"dmesg, no prefix, a connect() SYN without options logged",
			"[ 1234.567890] IN=eth0 OUT= " + mac + "SRC=198.51.100.7 DST=203.0.113.1 LEN=60 TOS=0x08 PREC=0x20 TTL=64 ID=7 DF PROTO=TCP SPT=46244 DPT=443 WINDOW=64240 RES=0x00 CWR ECE SYN URGP=0 ",
			"",
			packet.Packet{Src: a("198.51.100.7"), Dst: a("203.0.113.1"), Family: 4, Proto: 6, TTL: 64, TOS: 0x28, IPID: 7, Length: 60, DF: true,
				SrcPort: 46244, DstPort: 443, TCPFlags: packet.SYN | packet.ECE | packet.CWR, TCPWindow: 64240, TCPOptLen: 20, TCPOpts: packet.OptCut},
		},
		{
			"dmesg -T, nftables prefix with flags all",
			"[Sun Mar  1 12:00:00 2026] nft drop: IN=eth0 OUT= " + mac + "SRC=198.51.100.7 DST=203.0.113.1 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=0 DF PROTO=TCP SPT=46244 DPT=9001 SEQ=305419896 ACK=0 WINDOW=64240 RES=0x00 SYN URGP=0 OPT (020405B40402080A9F3A1B2C0000000001030307) MARK=0x1 ",
			"nft drop:",
			packet.Packet{Src: a("198.51.100.7"), Dst: a("203.0.113.1"), Family: 4, Proto: 6, TTL: 64, Length: 60, DF: true,
				SrcPort: 46244, DstPort: 9001, TCPFlags: packet.SYN, TCPWindow: 64240, TCPSeq: 305419896, TCPOptLen: 20,
				TCPOpts: packet.OptMSS | packet.OptSACKPerm | packet.OptTimestamp | packet.OptNOP | packet.OptWScale, MSS: 1460, WScale: 7, TSVal: 0x9f3a1b2c, TCPOptOrder: 0x42953},
		},
		{
			"nftables prefix without a space, glued to IN=",
			"Mar  1 12:00:00 web1 kernel: moat:closedIN=eth0 OUT= " + mac + "SRC=198.51.100.7 DST=203.0.113.1 LEN=28 TOS=0x00 PREC=0x00 TTL=41 ID=8083 PROTO=UDP SPT=60332 DPT=9002 LEN=8 ",
			"moat:closed",
			packet.Packet{Src: a("198.51.100.7"), Dst: a("203.0.113.1"), Family: 4, Proto: 17, TTL: 41, IPID: 8083, Length: 28, SrcPort: 60332, DstPort: 9002},
		},
		{
			"XMAS, flags in the kernel's order",
			"kernel: XMAS IN=eth0 OUT= SRC=198.51.100.7 DST=203.0.113.1 LEN=40 TOS=0x00 PREC=0x00 TTL=50 ID=41162 PROTO=TCP SPT=39926 DPT=9002 WINDOW=1024 RES=0x00 URG PSH FIN URGP=0 ",
			"XMAS",
			packet.Packet{Src: a("198.51.100.7"), Dst: a("203.0.113.1"), Family: 4, Proto: 6, TTL: 50, IPID: 41162, Length: 40,
				SrcPort: 39926, DstPort: 9002, TCPFlags: packet.FIN | packet.PSH | packet.URG, TCPWindow: 1024},
		},
		{
			"an ACK with timestamps, options not logged: counted as payload",
			"IN=eth0 OUT= SRC=198.51.100.7 DST=203.0.113.1 LEN=52 TOS=0x00 PREC=0x00 TTL=50 ID=1 DF PROTO=TCP SPT=39926 DPT=22 WINDOW=501 RES=0x00 ACK URGP=0 ",
			"",
			packet.Packet{Src: a("198.51.100.7"), Dst: a("203.0.113.1"), Family: 4, Proto: 6, TTL: 50, IPID: 1, Length: 52, DF: true,
				SrcPort: 39926, DstPort: 22, TCPFlags: packet.ACK, TCPWindow: 501, TCPOpts: packet.OptCut, PayloadLen: 12},
		},
		{
			"ICMP echo",
			"Mar  1 12:00:00 web1 kernel: [ 1.000000] ping IN=eth0 OUT= " + mac + "SRC=198.51.100.7 DST=203.0.113.1 LEN=28 TOS=0x00 PREC=0x00 TTL=39 ID=15025 PROTO=ICMP TYPE=8 CODE=0 ID=2502 SEQ=0 ",
			"ping",
			packet.Packet{Src: a("198.51.100.7"), Dst: a("203.0.113.1"), Family: 4, Proto: 1, TTL: 39, IPID: 15025, Length: 28, ICMPType: 8, ICMPID: 2502},
		},
		{
			"ICMP error: the quoted packet is not the packet",
			"IN=eth0 OUT= SRC=198.51.100.7 DST=203.0.113.1 LEN=56 TOS=0x00 PREC=0xC0 TTL=64 ID=100 PROTO=ICMP TYPE=3 CODE=3 [SRC=203.0.113.1 DST=198.51.100.7 LEN=28 TOS=0x00 PREC=0x00 TTL=64 ID=0 DF PROTO=UDP SPT=53 DPT=33434 LEN=8 ] ",
			"",
			packet.Packet{Src: a("198.51.100.7"), Dst: a("203.0.113.1"), Family: 4, Proto: 1, TTL: 64, TOS: 0xc0, IPID: 100, Length: 56, ICMPType: 3, ICMPCode: 3, PayloadLen: 28},
		},
		{
			"ICMP timestamp request",
			"IN=eth0 OUT= SRC=198.51.100.7 DST=203.0.113.1 LEN=40 TOS=0x00 PREC=0x00 TTL=50 ID=9 PROTO=ICMP TYPE=13 CODE=0 ",
			"",
			packet.Packet{Src: a("198.51.100.7"), Dst: a("203.0.113.1"), Family: 4, Proto: 1, TTL: 50, IPID: 9, Length: 40, ICMPType: 13, PayloadLen: 12},
		},
		{
			"IPv4 fragment",
			"IN=eth0 OUT= SRC=198.51.100.7 DST=203.0.113.1 LEN=556 TOS=0x00 PREC=0x00 TTL=64 ID=12345 MF FRAG:185 PROTO=UDP ",
			"",
			packet.Packet{Src: a("198.51.100.7"), Dst: a("203.0.113.1"), Family: 4, Proto: 17, TTL: 64, IPID: 12345, Length: 556, MoreFragments: true, Fragment: true},
		},
		{
			"IPv4 options before PROTO",
			"IN=eth0 OUT= SRC=198.51.100.7 DST=203.0.113.1 LEN=48 TOS=0x00 PREC=0x00 TTL=64 ID=1 OPT (94040000) PROTO=TCP SPT=1 DPT=2 WINDOW=1024 RES=0x00 SYN URGP=0 OPT (020405B4) ",
			"",
			packet.Packet{Src: a("198.51.100.7"), Dst: a("203.0.113.1"), Family: 4, Proto: 6, TTL: 64, IPID: 1, Length: 48,
				SrcPort: 1, DstPort: 2, TCPFlags: packet.SYN, TCPWindow: 1024, TCPOptLen: 4, TCPOpts: packet.OptMSS, MSS: 1460, TCPOptOrder: 3},
		},
		{
			"protocol by number (nmap -sO, SCTP)",
			"IN=eth0 OUT= SRC=198.51.100.7 DST=203.0.113.1 LEN=20 TOS=0x00 PREC=0x00 TTL=57 ID=57218 PROTO=103 ",
			"",
			packet.Packet{Src: a("198.51.100.7"), Dst: a("203.0.113.1"), Family: 4, Proto: 103, TTL: 57, IPID: 57218, Length: 20},
		},
		{
			"bridge",
			"IN=br0 OUT=br0 PHYSIN=eth1 PHYSOUT=eth2 SRC=198.51.100.7 DST=203.0.113.1 LEN=28 TOS=0x00 PREC=0x00 TTL=64 ID=1 PROTO=UDP SPT=5 DPT=6 LEN=8 ",
			"",
			packet.Packet{Src: a("198.51.100.7"), Dst: a("203.0.113.1"), Family: 4, Proto: 17, TTL: 64, IPID: 1, Length: 28, SrcPort: 5, DstPort: 6},
		},
		{
			"ip6tables LOG, TCP SYN",
			"Mar  1 12:00:00 web1 kernel: [ 1234.567890] ip6 drop IN=eth0 OUT= MAC=52:54:00:12:34:56:52:54:00:65:43:21:86:dd SRC=fd00:0210:00f2:0000:0000:0000:0000:0002 DST=fd00:0210:00f2:0000:0000:0000:0000:0001 LEN=64 TC=0 HOPLIMIT=255 FLOWLBL=0 PROTO=TCP SPT=38626 DPT=9002 WINDOW=1024 RES=0x00 SYN URGP=0 OPT (020405B4) ",
			"ip6 drop",
			packet.Packet{Src: a("fd00:210:f2::2"), Dst: a("fd00:210:f2::1"), Family: 6, Proto: 6, TTL: 255, Length: 24,
				SrcPort: 38626, DstPort: 9002, TCPFlags: packet.SYN, TCPWindow: 1024, TCPOptLen: 4, TCPOpts: packet.OptMSS, MSS: 1460, TCPOptOrder: 3},
		},
		{
			"nftables IPv6 echo, compressed addresses",
			"kernel: nft6: IN=eth0 OUT= SRC=2001:db8::7 DST=2001:db8::1 LEN=104 TC=0 HOPLIMIT=64 FLOWLBL=654321 PROTO=ICMPv6 TYPE=128 CODE=0 ID=4711 SEQ=3 ",
			"nft6:",
			packet.Packet{Src: a("2001:db8::7"), Dst: a("2001:db8::1"), Family: 6, Proto: 58, TTL: 64, Length: 64, ICMPType: 128, ICMPID: 4711, ICMPSeq: 3, PayloadLen: 56},
		},
		{
			"IPv6 first fragment",
			"IN=eth0 OUT= SRC=2001:db8::7 DST=2001:db8::1 LEN=1280 TC=0 HOPLIMIT=64 FLOWLBL=0 FRAG:0 INCOMPLETE ID:0000abcd PROTO=UDP SPT=5353 DPT=9000 LEN=3000 ",
			"",
			packet.Packet{Src: a("2001:db8::7"), Dst: a("2001:db8::1"), Family: 6, Proto: 17, TTL: 64, Length: 1240, MoreFragments: true, SrcPort: 5353, DstPort: 9000, PayloadLen: 2992},
		},
		{
			"IPv6 later fragment",
			"IN=eth0 OUT= SRC=2001:db8::7 DST=2001:db8::1 LEN=1000 TC=0 HOPLIMIT=64 FLOWLBL=0 FRAG:1232 ID:0000abcd PROTO=UDP ",
			"",
			packet.Packet{Src: a("2001:db8::7"), Dst: a("2001:db8::1"), Family: 6, Proto: 17, TTL: 64, Length: 960, Fragment: true},
		},
		{
			"trailing newline",
			"IN=eth0 OUT= SRC=198.51.100.7 DST=203.0.113.1 LEN=20 TOS=0x00 PREC=0x00 TTL=57 ID=1 PROTO=47\n",
			"",
			packet.Packet{Src: a("198.51.100.7"), Dst: a("203.0.113.1"), Family: 4, Proto: 47, TTL: 57, IPID: 1, Length: 20},
		},
	}
	for _, tt := range tests {
		var got packet.Packet
		prefix, ok := Parse([]byte(strings.TrimSuffix(tt.line, "\n")), &got)
		if !ok {
			t.Errorf("%s: refused", tt.name)
			continue
		}
		if string(prefix) != tt.prefix {
			t.Errorf("%s: prefix %q, want %q", tt.name, prefix, tt.prefix)
		}
		if got != tt.want {
			t.Errorf("%s:\n got %+v\nwant %+v", tt.name, got, tt.want)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	const v4 = "SRC=198.51.100.7 DST=203.0.113.1 LEN=44 TOS=0x00 PREC=0x00 TTL=48 ID=1 "
	const syn = "PROTO=TCP SPT=1 DPT=2 WINDOW=1024 RES=0x00 SYN URGP=0 "
	for _, line := range []string{
		"",
		"hello world",
		"IN=",
		"Mar  1 12:00:00 web1 sshd[1]: Failed password for root from 198.51.100.7 port 22 ssh2",
		"SRC=198.51.100.7 DST=203.0.113.1 LEN=44 TTL=48 PROTO=TCP SPT=1 DPT=2", // no IN=
		"IN=eth0 " + v4 + syn,                            // no OUT=
		"IN=a-very-long-interface-name OUT= " + v4 + syn, // past IFNAMSIZ
		"IN=eth0 OUT= DST=203.0.113.1 LEN=44 TOS=0x00 PREC=0x00 TTL=48 ID=1 " + syn,
		"IN=eth0 OUT= SRC=198.51.100.7 LEN=44 TOS=0x00 PREC=0x00 TTL=48 ID=1 " + syn,
		"IN=eth0 OUT= SRC=198.51.100.7 DST=203.0.113.1 TOS=0x00 PREC=0x00 TTL=48 ID=1 " + syn, // no LEN
		"IN=eth0 OUT= " + v4, // no PROTO
		"IN=eth0 OUT= SRC=198.51.100.7 DST=2001:db8::1 LEN=44 TTL=48 " + syn,    // two families
		"IN=eth0 OUT= SRC=2001:db8::7 DST=2001:db8::1 LEN=64 TTL=48 " + syn,     // IPv6 with TTL
		"IN=eth0 OUT= SRC=2001:db8::7 DST=2001:db8::1 LEN=20 HOPLIMIT=1 " + syn, // IPv6 LEN under 40
		"IN=eth0 OUT= SRC=198.51.100.7 DST=203.0.113.1 LEN=44 HOPLIMIT=48 " + syn,
		"IN=eth0 OUT= " + v4 + "SRC=192.0.2.1 " + syn,   // SRC twice
		"IN=eth0 OUT= " + v4 + syn + "SPT=7 ",           // SPT twice
		"IN=eth0 OUT= " + v4 + syn + "SYN ",             // a flag twice
		"IN=eth0 OUT= " + v4 + syn + "TYPE=8 ",          // an ICMP key in TCP
		"IN=eth0 OUT= " + v4 + "PROTO=TCP SPT=1 DPT=2 ", // no WINDOW
		"IN=eth0 OUT= " + v4 + "PROTO=TCP WINDOW=1 SYN ",
		"IN=eth0 OUT= " + v4 + "PROTO=TCP INCOMPLETE [8 bytes] ",
		"IN=eth0 OUT= " + v4 + "PROTO=UDP SPT=1 ",
		"IN=eth0 OUT= " + v4 + "PROTO=ICMP TYPE=8 ",
		"IN=eth0 OUT= " + v4 + "PROTO=ICMP TYPE=8 CODE=0 SPT=1 ",
		"IN=eth0 OUT= " + v4 + "PROTO=47 SPT=1 DPT=2 ",
		"IN=eth0 OUT= " + v4 + "PROTO=TCP SPT=1 DPT=99999 WINDOW=1 SYN ",
		"IN=eth0 OUT= " + v4 + "PROTO=TCP SPT=1 DPT=0080 WINDOW=1 SYN ",
		"IN=eth0 OUT= " + v4 + "PROTO=TCP SPT=-1 DPT=80 WINDOW=1 SYN ",
		"IN=eth0 OUT= " + v4 + "PROTO=GRE ",
		"IN=eth0 OUT= " + v4 + "PROTO=256 ",
		"IN=eth0 OUT= " + v4 + syn + "OPT (020405B) ",
		"IN=eth0 OUT= " + v4 + syn + "OPT (" + strings.Repeat("01", 41) + ") ",
		"IN=eth0 OUT= " + v4 + syn + "OPT (0204ZZB4) ",
		"IN=eth0 OUT= " + v4 + syn + "OPT (01) OPT (01) ",
		"IN=eth0 OUT= SRC=198.51.100.7 DST=203.0.113.1 LEN=44 TOS=0x00 PREC=0x00 TTL=256 ID=1 " + syn,
		"IN=eth0 OUT= SRC=198.51.100.7 DST=203.0.113.1 LEN=44 TOS=0x0 PREC=0x00 TTL=1 ID=1 " + syn,
		"IN=eth0 OUT= SRC=198.51.100.07 DST=203.0.113.1 LEN=44 TTL=1 " + syn,
		"IN=eth0 OUT= SRC=198.51.100 DST=203.0.113.1 LEN=44 TTL=1 " + syn,
		"IN=eth0 OUT= SRC=2001:db8:::7 DST=2001:db8::1 LEN=64 HOPLIMIT=1 " + syn,
		"IN=eth0 OUT= SRC=2001:db8::7:: DST=2001:db8::1 LEN=64 HOPLIMIT=1 " + syn,
		"IN=eth0 OUT= SRC=1:2:3:4:5:6:7:8:9 DST=2001:db8::1 LEN=64 HOPLIMIT=1 " + syn,
		"IN=eth0 OUT= SRC=1:2:3:4:5:6:7 DST=2001:db8::1 LEN=64 HOPLIMIT=1 " + syn,
		"IN=eth0 OUT= SRC=12345::1 DST=2001:db8::1 LEN=64 HOPLIMIT=1 " + syn,
		"IN=eth0 OUT= " + v4 + "FRAG:1 FRAG:2 PROTO=UDP ",
	} {
		var p packet.Packet
		if prefix, ok := Parse([]byte(line), &p); ok {
			t.Errorf("accepted %q: prefix %q, %+v", line, prefix, p)
		}
		if p != (packet.Packet{}) {
			t.Errorf("refused line left fields set: %+v", p)
		}
	}
}

func TestParseAddr(t *testing.T) {
	for _, s := range []string{
		"0.0.0.0", "255.255.255.255", "10.210.242.2",
		"::", "::1", "1::", "2001:db8::1", "fd00:0210:00f2:0000:0000:0000:0000:0002", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8",
		"1:2:3:4:5:6::8", "FE80::ABCD",
	} {
		got, fam, ok := parseAddr([]byte(s))
		want := netip.MustParseAddr(s)
		if !ok || got != want || fam != map[bool]uint8{true: 4, false: 6}[want.Is4()] {
			t.Errorf("%s: %v %d %v", s, got, fam, ok)
		}
	}
	for _, s := range []string{"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.1.1.1", "1.2.3.4 ", ":", ":::", "1:2", "::1::", "1:2:3:4:5:6:7:8::", "g::1", "1::2:"} {
		if got, _, ok := parseAddr([]byte(s)); ok {
			t.Errorf("%q: accepted as %v", s, got)
		}
	}
}

func TestParseZeroAllocs(t *testing.T) {
	lines := [][]byte{
		[]byte("Mar  1 12:00:00 web1 kernel: [ 1234.567890] Drop Syn IN=eth0 OUT= MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 SRC=198.51.100.7 DST=203.0.113.1 LEN=44 TOS=0x00 PREC=0x00 TTL=48 ID=31557 PROTO=TCP SPT=58038 DPT=9001 WINDOW=1024 RES=0x00 SYN URGP=0 OPT (020405B4) "),
		[]byte("kernel: nft6: IN=eth0 OUT= SRC=fd00:0210:00f2:0000:0000:0000:0000:0002 DST=2001:db8::1 LEN=104 TC=0 HOPLIMIT=64 FLOWLBL=654321 PROTO=ICMPv6 TYPE=128 CODE=0 ID=4711 SEQ=3 "),
		[]byte("not a kernel line at all IN=x"),
	}
	var p packet.Packet
	for _, l := range lines {
		if n := testing.AllocsPerRun(1000, func() { Parse(l, &p) }); n != 0 {
			t.Errorf("%d allocations: %s", int(n), l)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	line := []byte("Mar  1 12:00:00 web1 kernel: [ 1234.567890] Drop Syn IN=eth0 OUT= MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 SRC=198.51.100.7 DST=203.0.113.1 LEN=44 TOS=0x00 PREC=0x00 TTL=48 ID=31557 PROTO=TCP SPT=58038 DPT=9001 WINDOW=1024 RES=0x00 SYN URGP=0 OPT (020405B4) ")
	var p packet.Packet
	b.ReportAllocs()
	b.SetBytes(int64(len(line)))
	for range b.N {
		Parse(line, &p)
	}
}

// FuzzParse checks Parse never panics, and that what it accepts is sound:
// the prefix is the line's, the addresses are of the family, and the
// kernel's own rendering of the result parses back to the same packet.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"Mar  1 12:00:00 web1 kernel: [ 1234.567890] Drop Syn IN=eth0 OUT= MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 SRC=198.51.100.7 DST=203.0.113.1 LEN=44 TOS=0x00 PREC=0x00 TTL=48 ID=31557 PROTO=TCP SPT=58038 DPT=9001 WINDOW=1024 RES=0x00 SYN URGP=0 OPT (020405B4) ",
		"IN=eth0 OUT= SRC=198.51.100.7 DST=203.0.113.1 LEN=56 TOS=0x00 PREC=0xC0 TTL=64 ID=100 PROTO=ICMP TYPE=3 CODE=3 [SRC=203.0.113.1 DST=198.51.100.7 LEN=28 TOS=0x00 PREC=0x00 TTL=64 ID=0 DF PROTO=UDP SPT=53 DPT=33434 LEN=8 ] ",
		"IN=eth0 OUT= SRC=2001:db8::7 DST=2001:db8::1 LEN=1280 TC=0 HOPLIMIT=64 FLOWLBL=0 FRAG:0 INCOMPLETE ID:0000abcd PROTO=UDP SPT=5353 DPT=9000 LEN=3000 ",
		"kernel: moat:closedIN=eth0 OUT= SRC=198.51.100.7 DST=203.0.113.1 LEN=28 TOS=0x00 PREC=0x00 TTL=41 ID=8083 PROTO=UDP SPT=60332 DPT=9002 LEN=8 ",
		"IN=eth0 OUT= SRC=198.51.100.7 DST=203.0.113.1 LEN=48 TOS=0x00 PREC=0x00 TTL=64 ID=1 MF FRAG:185 OPT (94040000) PROTO=TCP ",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		var p packet.Packet
		prefix, ok := Parse(line, &p)
		if !ok {
			return
		}
		if !bytes.Contains(line, prefix) || bytes.ContainsAny(prefix[:min(len(prefix), 1)], " ") {
			t.Fatalf("prefix %q of %q", prefix, line)
		}
		if p.Family != 4 && p.Family != 6 || p.Src.Is4() != (p.Family == 4) || p.Dst.Is4() != (p.Family == 4) || p.Src.Zone() != "" {
			t.Fatalf("addresses %+v", p)
		}
		// Render what was parsed as the kernel would, and parse again:
		// the same packet, but for what a line does not carry (options,
		// which the rendering leaves out, and lengths derived from them).
		line2 := format(&p, "x ", true, nil, int(p.PayloadLen)+8)
		var r packet.Packet
		if _, ok := Parse([]byte(line2), &r); !ok {
			t.Fatalf("%q parsed to %+v, rendered as %q, refused", line, p, line2)
		}
		strip := func(x packet.Packet) packet.Packet {
			x.TCPOptLen, x.TCPOpts, x.MSS, x.WScale, x.TSVal, x.PayloadLen, x.TOS, x.TCPOptOrder = 0, 0, 0, 0, 0, 0, 0, 0
			if x.Fragment {
				x.SrcPort, x.DstPort, x.TCPFlags, x.TCPWindow, x.TCPSeq, x.TCPAck, x.ICMPType, x.ICMPCode, x.ICMPID, x.ICMPSeq = 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
			}
			return x
		}
		if strip(r) != strip(p) {
			t.Fatalf("%q\n parsed %+v\nrendered %q\n parsed %+v", line, p, line2, r)
		}
	})
}

func TestTime(t *testing.T) {
	cet := time.FixedZone("CET", 3600)
	now := time.Date(2026, 3, 1, 13, 0, 0, 0, cet)
	for _, tt := range []struct {
		line string
		want time.Time
	}{
		{"Mar  1 12:00:00 web1 kernel: x", time.Date(2026, 3, 1, 12, 0, 0, 0, cet)},
		{"Mar 01 12:00:00.123456 web1 kernel: x", time.Date(2026, 3, 1, 12, 0, 0, 123456000, cet)},
		{"Dec 31 23:59:59 web1 kernel: x", time.Date(2025, 12, 31, 23, 59, 59, 0, cet)}, // last year's
		{"Mar  2 08:00:00 web1 kernel: x", time.Date(2026, 3, 2, 8, 0, 0, 0, cet)},      // skew: still this year
		{"2026-03-01T11:00:00.5+00:00 web1 kernel: x", time.Date(2026, 3, 1, 12, 0, 0, 500000000, cet)},
		{"2026-03-01T11:00:00+0000 web1 kernel: x", time.Date(2026, 3, 1, 12, 0, 0, 0, cet)},
		{"2026-03-01T05:00:00-0600 web1 kernel: x", time.Date(2026, 3, 1, 12, 0, 0, 0, cet)},
		{"2026-03-01T11:00:00Z web1 kernel: x", time.Date(2026, 3, 1, 12, 0, 0, 0, cet)},
		{"2026-03-01T12:00:00 web1 kernel: x", time.Date(2026, 3, 1, 12, 0, 0, 0, cet)},
		{"[Sun Mar  1 12:00:00 2026] Drop IN=", time.Date(2026, 3, 1, 12, 0, 0, 0, cet)},
	} {
		got, ok := Time([]byte(tt.line), now)
		if !ok || !got.Equal(tt.want) {
			t.Errorf("%q: %v %v, want %v", tt.line, got, ok, tt.want)
		}
	}
	for _, line := range []string{"", "[ 1234.567890] IN=", "Foo  1 12:00:00 x", "Mar 32 12:00:00 x", "Mar  1 24:00:00 x",
		"2026-13-01T12:00:00Z", "2026-03-01T12:00:00+2500", "[Sun Mar  1 12:00:00 20x6]", "IN=eth0 OUT= SRC=1.2.3.4"} {
		if got, ok := Time([]byte(line), now); ok {
			t.Errorf("%q: read as %v", line, got)
		}
	}
	line := []byte("Mar  1 12:00:00 web1 kernel: x")
	if n := testing.AllocsPerRun(100, func() { Time(line, now) }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}

func FuzzTime(f *testing.F) {
	f.Add([]byte("Mar  1 12:00:00 web1 kernel: x"))
	f.Add([]byte("2026-03-01T11:00:00.5+00:00 x"))
	f.Add([]byte("[Sun Mar  1 12:00:00 2026] x"))
	now := time.Date(2026, 3, 1, 13, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, line []byte) {
		if got, ok := Time(line, now); ok && (got.Year() < 1969 || got.Year() > 9999) {
			t.Fatalf("%q: %v", line, got)
		}
	})
}

package nflog

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/netnstest"
	"github.com/moat-fw/moat/internal/packet"
)

// goldenNmap is where MOAT_UPDATE_GOLDEN=1 writes the packets nmap sent,
// as logged: the packet package decodes them in its own tests, which need
// neither root nor nmap.
const goldenNmap = "../packet/testdata/nmap.txt"

// TestNmapScans runs real nmap scans from the client namespace and checks
// what the receiver decodes: the flags of each scan type and the SYN
// fingerprint (MSS 1460 as the only option) the scan guard will rely on.
func TestNmapScans(t *testing.T) {
	netnstest.RequireCommands(t, "nmap")
	l := newLab(t, nil)
	fast := []string{"-n", "--max-retries", "0", "--initial-rtt-timeout", "20ms", "--max-rtt-timeout", "20ms"}
	scans := []struct {
		name  string
		args  []string
		check func(p *packet.Packet) bool
	}{
		{"-sS", []string{"-sS", "-Pn", "-p", "9001,9002"}, func(p *packet.Packet) bool {
			return p.TCPFlags == packet.SYN && p.TCPOpts == packet.OptMSS && p.MSS == 1460 && p.TCPOptLen == 4 && p.TCPWindow <= 4096
		}},
		{"-6 -sS", []string{"-6", "-sS", "-Pn", "-p", "9001,9002"}, func(p *packet.Packet) bool {
			return p.Family == 6 && p.TCPFlags == packet.SYN && p.TCPOpts == packet.OptMSS && p.MSS == 1460 && p.TCPOptLen == 4
		}},
		{"-sF", []string{"-sF", "-Pn", "-p", "9001,9002"}, tcpFlags(packet.FIN)},
		{"-sX", []string{"-sX", "-Pn", "-p", "9001,9002"}, tcpFlags(packet.FIN | packet.PSH | packet.URG)},
		{"-sN", []string{"-sN", "-Pn", "-p", "9001,9002"}, tcpFlags(0)},
		{"-sA", []string{"-sA", "-Pn", "-p", "9001,9002"}, tcpFlags(packet.ACK)},
		{"-sM", []string{"-sM", "-Pn", "-p", "9001,9002"}, tcpFlags(packet.FIN | packet.ACK)},
		{"-sW", []string{"-sW", "-Pn", "-p", "9001,9002"}, tcpFlags(packet.ACK)},
		{"-sU", []string{"-sU", "-Pn", "-p", "9001,9002"}, func(p *packet.Packet) bool {
			return p.Proto == packet.ProtoUDP && (p.DstPort == 9001 || p.DstPort == 9002)
		}},
		{"-sO", []string{"-sO", "-Pn", "-p", "47,103"}, func(p *packet.Packet) bool { return p.Proto == 47 || p.Proto == 103 }},
		{"-sY", []string{"-sY", "-Pn", "-p", "9001,9002"}, func(p *packet.Packet) bool {
			return p.Proto == packet.ProtoSCTP && (p.DstPort == 9001 || p.DstPort == 9002)
		}},
		{"-PE", []string{"-sn", "-PE", "--disable-arp-ping"}, func(p *packet.Packet) bool {
			return p.Proto == packet.ProtoICMP && p.ICMPType == 8
		}},
	}
	var golden strings.Builder
	golden.WriteString("# Packets real nmap 7.93 scans sent, as NFLOG logged them (snaplen 128),\n" +
		"# written by MOAT_UPDATE_GOLDEN=1 go test ./internal/nflog -run NmapScans.\n" +
		"# Each line: the IP packet in hex, a tab, its expected decoding (%+v).\n")
	for _, sc := range scans {
		before := len(l.rec.snapshot())
		dst, src := l.link.A4.String(), l.link.B4
		if sc.args[0] == "-6" {
			dst, src = l.link.A6.String(), l.link.B6
		}
		out, err := l.cli.RunErr(append(append([]string{"nmap"}, sc.args...), append(fast, dst)...)...)
		if err != nil {
			t.Fatalf("nmap %v: %v\n%s", sc.args, err, out)
		}
		// Eventually's t.Fatal would hide what did arrive: poll by hand.
		var got []recorded
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			got = l.rec.snapshot()[before:]
			// One probe per port or protocol, or one ping: all must
			// arrive before the next scan starts.
			want := 2
			if sc.name == "-PE" {
				want = 1
			}
			if len(got) >= want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("nmap %s: %d packets in 2s, want %d; nmap said:\n%s", sc.name, len(got), want, out)
			}
		}
		fmt.Fprintf(&golden, "# nmap %s\n", strings.Join(sc.args, " "))
		for _, m := range got {
			if m.err != nil || m.p.Src != src || !sc.check(&m.p) {
				t.Errorf("nmap %s: unexpected packet %v (%v)", sc.name, &m.p, m.err)
			}
			fmt.Fprintf(&golden, "%s\t%+v\n", hex.EncodeToString(m.raw), m.p)
		}
		t.Logf("nmap %s: %d packets, first %v", sc.name, len(got), &got[0].p)
	}
	if os.Getenv("MOAT_UPDATE_GOLDEN") != "" {
		if err := os.MkdirAll(filepath.Dir(goldenNmap), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenNmap, []byte(golden.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", goldenNmap)
	}
}

func tcpFlags(f packet.Flags) func(p *packet.Packet) bool {
	return func(p *packet.Packet) bool {
		return p.Proto == packet.ProtoTCP && p.TCPFlags == f && (p.DstPort == 9001 || p.DstPort == 9002)
	}
}

package portscan

import (
	"net/netip"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/packet"
)

// The report names what sent a source's SYNs, from real nmap packets: the
// crafted -sS probes and the Linux stack's own SYN behind -sT.
func TestReportGuessesTheSender(t *testing.T) {
	d := New(Config{})
	syns := byTool(readGolden(t, "../packet/testdata/nmap.txt"))["nmap -sS -Pn -p 9001,9002"]
	connects := byTool(readGolden(t, "testdata/nmap_extra.txt"))["nmap -sT -Pn -p 9001,9002"]
	if len(syns) == 0 || len(connects) == 0 {
		t.Fatal("golden packets missing")
	}
	connects = withSrc(addr("10.210.242.9"), connects...)
	feed(d, t0, append(syns, connects...)...)
	want := map[netip.Addr]string{syns[0].Src: "nmap SYN scan", addr("10.210.242.9"): "Linux 3.x-6.x"}
	r := d.Report(t0.Add(time.Second), 0)
	for _, s := range r.Sources {
		w, ok := want[s.Addr]
		if !ok {
			continue
		}
		delete(want, s.Addr)
		if s.OS == nil || s.OS.Name != w || s.Fingerprint == "" {
			t.Errorf("%s: os %+v fingerprint %q, want %s", s.Addr, s.OS, s.Fingerprint, w)
		}
	}
	if len(want) > 0 {
		t.Errorf("sources missing from the report: %v", want)
	}
	// A source that sent no SYN has no guess.
	d.Observe(ptr(udp("10.210.0.77", "10.210.242.1", 5000, 53)), []byte("moat:closed"), t0)
	if s, ok := d.Source(addr("10.210.0.77"), t0); !ok || s.OS != nil || s.Fingerprint != "" {
		t.Errorf("UDP-only source: %+v", s)
	}
}

func ptr(p packet.Packet) *packet.Packet { return &p }

func withSrc(src netip.Addr, pkts ...packet.Packet) []packet.Packet {
	out := append([]packet.Packet(nil), pkts...)
	for i := range out {
		out[i].Src = src
	}
	return out
}

// psad's auto_dl: a fixed level for an address, 0 keeping it quiet, 5
// raising it at its first probe.
func TestOverrideFixesTheLevel(t *testing.T) {
	loud, quiet := addr("10.210.0.5"), addr("10.210.0.6")
	d := New(Config{Override: func(a netip.Addr) (int, bool) {
		switch a {
		case loud:
			return 5, true
		case quiet:
			return 0, true
		}
		return 0, false
	}})
	decs := feed(d, t0, nmapSYN(loud.String(), "10.210.0.1", 22))
	if len(decs) != 1 || decs[0].Level != 5 {
		t.Fatalf("loud: %+v, want level 5 at once", decs)
	}
	var many []packet.Packet
	for port := range uint16(200) {
		many = append(many, withFlags(nmapSYN(quiet.String(), "10.210.0.1", 1000+port), 0))
	}
	if decs := feed(d, t0, many...); len(decs) != 0 {
		t.Fatalf("quiet: %+v, want none", decs)
	}
	if s, ok := d.Source(quiet, t0); !ok || s.Level != 0 || s.Packets != 200 {
		t.Fatalf("quiet source %+v: want tracked at level 0", s)
	}
}

// psad's IGNORE_PORTS: probes to them are not scored, and counted as
// ignored.
func TestIgnorePacket(t *testing.T) {
	d := New(Config{IgnorePacket: func(p *packet.Packet) bool { return p.Proto == packet.ProtoTCP && p.DstPort == 443 }})
	var pkts []packet.Packet
	for range 50 {
		pkts = append(pkts, withFlags(nmapSYN("10.210.0.8", "10.210.0.1", 443), 0))
	}
	if decs := feed(d, t0, pkts...); len(decs) != 0 {
		t.Fatalf("decisions %+v for ignored ports", decs)
	}
	if r := d.Report(t0, 0); r.Totals.Ignored != 50 || r.Totals.Probes != 0 || len(r.Sources) != 0 {
		t.Fatalf("totals %+v, %d sources", r.Totals, len(r.Sources))
	}
	if decs := feed(d, t0, withFlags(nmapSYN("10.210.0.8", "10.210.0.1", 444), 0), withFlags(nmapSYN("10.210.0.8", "10.210.0.1", 445), 0)); len(decs) == 0 {
		t.Fatal("NULL probes to other ports not scored")
	}
}

package portscan

import (
	"net/netip"
	"testing"
)

// With RawSYNPorts 3 (the daemon's setting), nmap -sS is at level 3 at
// its third probe to a third port; a client's own SYNs (connect()) to as
// many closed ports, or one port retried with crafted SYNs, are not.
func TestRawSYNPorts(t *testing.T) {
	const host = "203.0.113.1"
	cfg := Config{RawSYNBoost: 1, RawSYNPorts: 3, RawSYNLevel: 3}
	d := New(cfg)
	decs := feed(d, t0, nmapSYN("192.0.2.9", host, 139), nmapSYN("192.0.2.9", host, 111), nmapSYN("192.0.2.9", host, 256))
	if len(decs) != 1 || decs[0].Level != 3 || decs[0].Packets != 3 {
		t.Fatalf("nmap -sS, three probes: decisions %+v, want one at level 3 on the third", decs)
	}
	masscan := nmapSYN("192.0.2.10", host, 80)
	masscan.TCPOptLen, masscan.TCPOpts, masscan.MSS = 0, 0, 0
	m2, m3 := masscan, masscan
	m2.DstPort, m3.DstPort = 443, 8080
	if decs := feed(d, t0, masscan, m2, m3); len(decs) != 1 || decs[0].Level != 3 {
		t.Fatalf("masscan, three probes: %+v", decs)
	}

	for _, c := range []struct {
		name string
		src  string
		pkts func(src string) []Decision
	}{
		{"a client's SYNs to three closed ports, each retried", "198.51.100.7", func(src string) []Decision {
			var out []Decision
			for _, port := range []uint16{25, 110, 143} {
				for range 3 {
					p := clientSYN(src, host, 40000+port, port)
					out = append(out, feed(d, t0, p)...)
				}
			}
			return out
		}},
		{"crafted SYNs to one port, retried", "198.51.100.8", func(src string) []Decision {
			var out []Decision
			for range 12 {
				out = append(out, feed(d, t0, nmapSYN(src, host, 9000))...)
			}
			return out
		}},
		{"crafted SYNs to two ports", "198.51.100.9", func(src string) []Decision {
			return feed(d, t0, nmapSYN(src, host, 9000), nmapSYN(src, host, 9001), nmapSYN(src, host, 9000))
		}},
	} {
		c.pkts(c.src)
		if lv := d.Level(addr(c.src), t0); lv >= 3 {
			t.Errorf("%s: level %d, want under 3 (the daemon's block level)", c.name, lv)
		}
	}

	// Off, the default: psad's scoring, level 3 takes 150 probes (or 15 with
	// the boost).
	off := New(Config{})
	if decs := feed(off, t0, nmapSYN("192.0.2.9", host, 1), nmapSYN("192.0.2.9", host, 2), nmapSYN("192.0.2.9", host, 3)); len(decs) != 0 {
		t.Fatalf("RawSYNPorts off: %+v", decs)
	}
	// Ignored sources are never counted, crafted SYNs or not.
	ign := New(Config{RawSYNPorts: 3, RawSYNLevel: 3, Ignore: func(a netip.Addr) bool { return a == addr("192.0.2.1") }})
	if decs := feed(ign, t0, nmapSYN("192.0.2.1", host, 1), nmapSYN("192.0.2.1", host, 2), nmapSYN("192.0.2.1", host, 3)); len(decs) != 0 {
		t.Fatalf("an ignored source was scored: %+v", decs)
	}
}

func TestRawSYNConfigValidate(t *testing.T) {
	for _, c := range []Config{{RawSYNPorts: -1}, {RawSYNPorts: portBits + 1}, {RawSYNLevel: 6}} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}

package config

import (
	"net/netip"
	"strconv"
)

// Report configures what `moat status` shows and how (the [report]
// table): psad's report settings, and the optional look-ups that put a
// name, a country and a network on an address.
type Report struct {
	// Top is top: how many attackers and ports `moat status` lists.
	Top int
	// MinLevel is min_level: scan sources below this danger level are
	// left out of the report and of alerts (psad's MIN_DANGER_LEVEL).
	MinLevel int
	// ReverseDNS is reverse_dns: look up the names of the listed
	// attackers, off the packet path, bounded and cached.
	ReverseDNS bool
	// GeoIP is geoip: a local MaxMind-format country (or city) database;
	// empty: none. moat never downloads one.
	GeoIP string
	// ASN is asn: a local MaxMind-format ASN database; empty: none.
	ASN string
}

func defaultReport() Report { return Report{Top: 10, MinLevel: 1} }

var reportKeys = []key{
	{"top", func(d *decoder, p string, v any) {
		if n, ok := d.uint(p, v, 1, 1000); ok {
			d.cfg.Report.Top = int(n)
		}
	}},
	{"min_level", func(d *decoder, p string, v any) {
		if n, ok := d.uint(p, v, 0, 5); ok {
			d.cfg.Report.MinLevel = int(n)
		}
	}},
	{"reverse_dns", func(d *decoder, p string, v any) { d.bool(p, v, &d.cfg.Report.ReverseDNS) }},
	{"geoip", func(d *decoder, p string, v any) { d.absPath(p, v, &d.cfg.Report.GeoIP) }},
	{"asn", func(d *decoder, p string, v any) { d.absPath(p, v, &d.cfg.Report.ASN) }},
}

func (r *Report) problems() []problem {
	var out []problem
	for _, f := range []struct{ key, path string }{{"report.geoip", r.GeoIP}, {"report.asn", r.ASN}} {
		if f.path != "" && !absPathOK(f.path) {
			out = append(out, problem{f.key, strconv.Quote(f.path), `want an absolute path like "/var/lib/GeoIP/GeoLite2-Country.mmdb"`})
		}
	}
	if r.Top < 1 {
		out = append(out, problem{"report.top", strconv.Itoa(r.Top), "want 1 to 1000"})
	}
	if r.MinLevel < 0 || r.MinLevel > 5 {
		out = append(out, problem{"report.min_level", strconv.Itoa(r.MinLevel), "want a danger level from 0 to 5"})
	}
	return out
}

// ScanDanger is one [[scan.danger]]: a fixed danger level for the sources
// in a network, whatever their probes (psad's auto_dl). Level 0 keeps them
// at 0: tracked and reported, never banned.
type ScanDanger struct {
	Addr  netip.Prefix // addr: an address or a network
	Level int          // level: 0 to 5
}

var scanDangerKeys = []key{
	{"addr", func(d *decoder, p string, v any) {
		s, ok := v.(string)
		if !ok {
			d.badType(p, v, `an address like "203.0.113.7" or a network like "2001:db8::/32"`)
			return
		}
		pfx, err := ParseAddrOrPrefix(s)
		if err != nil {
			d.bad(p, v, "%v", err)
			return
		}
		d.lastDanger().Addr = pfx
	}},
	{"level", func(d *decoder, p string, v any) {
		if n, ok := d.uint(p, v, 0, 5); ok {
			d.lastDanger().Level = int(n)
		}
	}},
}

func (d *decoder) lastDanger() *ScanDanger { return &d.cfg.Scan.Danger[len(d.cfg.Scan.Danger)-1] }

// scanReportKeys are [scan]'s keys for psad's report settings.
var scanReportKeys = []key{
	{"danger", func(d *decoder, p string, v any) {
		d.cfg.Scan.Danger = nil
		d.tables(p, v, scanDangerKeys, func() { d.cfg.Scan.Danger = append(d.cfg.Scan.Danger, ScanDanger{Level: -1}) })
	}},
	{"ignore_ports", func(d *decoder, p string, v any) {
		d.portList(p, v, `a list like ["tcp/443", "udp/53"]`, portForms, false, &d.cfg.Scan.IgnorePorts)
	}},
}

func (s *Scan) dangerProblems() []problem {
	var out []problem
	for i, dg := range s.Danger {
		path := joinIndex("scan.danger", i)
		if !dg.Addr.IsValid() {
			out = append(out, problem{path + ".addr", "", `missing; want an address or network like "203.0.113.0/24"`})
		}
		if dg.Level < 0 || dg.Level > 5 {
			out = append(out, problem{path + ".level", "", "missing; want a danger level from 0 (never banned) to 5"})
		}
		for j := range i {
			if s.Danger[j].Addr == dg.Addr && dg.Addr.IsValid() {
				out = append(out, problem{path + ".addr", strconv.Quote(dg.Addr.String()), "given twice; keep one [[scan.danger]] per network"})
			}
		}
	}
	return out
}

// DangerFor is the fixed level of a under [[scan.danger]]: the most
// specific network containing it wins.
func (s *Scan) DangerFor(a netip.Addr) (int, bool) {
	best := -1
	level := 0
	for _, dg := range s.Danger {
		if dg.Addr.Contains(a) && dg.Addr.Bits() > best {
			best, level = dg.Addr.Bits(), dg.Level
		}
	}
	return level, best >= 0
}

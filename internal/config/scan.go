package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"time"
)

// Scan configures the scan guard: port-scan detection from the packets the
// firewall drops, and blocking of scanners.
type Scan struct {
	Enabled     bool             // enabled: the guard runs
	Window      time.Duration    // window: how long a source's probes are tallied
	BlockLevel  int              // block_level: ban at or above this danger level; 0 alerts only
	BlockFor    [5]time.Duration // block_for: ban length per danger level 1..5
	Ignore      []netip.Prefix   // ignore: sources never counted
	MaxSources  int              // max_sources: sources tracked at once; memory stays fixed
	PacketTiers [5]int           // packet_tiers: probes that reach levels 1..5
	SweepTiers  [5]int           // sweep_tiers: local addresses probed that reach levels 1..5
	Retention   int              // retention: scan events kept in the store for the report
	// Bans from packets alone: a scan needs no handshake, so its source
	// can be forged. The first ban is short and grows only on repeats.
	FirstBan          time.Duration // first_ban: length of a source's first scan ban
	BanTimeMultiplier float64       // ban_time_multiplier: each repeat lasts this many times longer, up to block_for
	MaxBansPerMinute  int           // max_bans_per_minute: scan bans made at most; the rest are counted, not made
	// Hold is how long the kernel drops the crafted SYNs of a source that
	// sprays them at closed ports, until the guard's ban lands (0: off).
	Hold time.Duration // hold
	// psad's report settings (report.go).
	Danger      []ScanDanger // [[scan.danger]]: fixed danger levels by address (psad's auto_dl)
	IgnorePorts []PortSpec   // ignore_ports: probes to these ports are not scored (psad's IGNORE_PORTS)
}

func defaultScan() Scan {
	return Scan{
		Enabled:     true,
		Window:      5 * time.Minute,
		BlockLevel:  3,
		BlockFor:    [5]time.Duration{time.Hour, 6 * time.Hour, 24 * time.Hour, 7 * 24 * time.Hour, 30 * 24 * time.Hour},
		MaxSources:  200_000,
		PacketTiers: [5]int{5, 15, 150, 1500, 10000},
		SweepTiers:  [5]int{2, 4, 8, 16, 32},
		Retention:   1000,

		FirstBan:          10 * time.Minute,
		BanTimeMultiplier: 6,
		MaxBansPerMinute:  100,
		Hold:              time.Minute,
	}
}

var scanKeys = append([]key{
	{"enabled", func(d *decoder, p string, v any) { d.bool(p, v, &d.cfg.Scan.Enabled) }},
	{"window", func(d *decoder, p string, v any) { d.duration(p, v, &d.cfg.Scan.Window) }},
	{"block_level", func(d *decoder, p string, v any) {
		if n, ok := d.uint(p, v, 0, 5); ok {
			d.cfg.Scan.BlockLevel = int(n)
		}
	}},
	{"block_for", func(d *decoder, p string, v any) {
		var out []time.Duration
		if !d.list(p, v, `five durations, for levels 1 to 5, like ["1h", "6h", "24h", "7d", "30d"]`, func(p string, e any) {
			var dur time.Duration
			d.duration(p, e, &dur)
			out = append(out, dur)
		}) {
			return
		}
		if len(out) != 5 {
			d.bad(p, nil, `want five durations, one per danger level 1 to 5, like ["1h", "6h", "24h", "7d", "30d"]`)
			return
		}
		copy(d.cfg.Scan.BlockFor[:], out)
	}},
	{"ignore", func(d *decoder, p string, v any) { d.prefixes(p, v, &d.cfg.Scan.Ignore) }},
	{"max_sources", func(d *decoder, p string, v any) {
		if n, ok := d.uint(p, v, 1000, 1<<26); ok {
			d.cfg.Scan.MaxSources = int(n)
		}
	}},
	{"packet_tiers", func(d *decoder, p string, v any) { d.tiers(p, v, 1<<31-1, &d.cfg.Scan.PacketTiers) }},
	{"sweep_tiers", func(d *decoder, p string, v any) { d.tiers(p, v, 64, &d.cfg.Scan.SweepTiers) }},
	{"first_ban", func(d *decoder, p string, v any) { d.duration(p, v, &d.cfg.Scan.FirstBan) }},
	{"ban_time_multiplier", func(d *decoder, p string, v any) { d.number(p, v, &d.cfg.Scan.BanTimeMultiplier) }},
	{"max_bans_per_minute", func(d *decoder, p string, v any) {
		if n, ok := d.uint(p, v, 1, 100_000); ok {
			d.cfg.Scan.MaxBansPerMinute = int(n)
		}
	}},
	{"hold", func(d *decoder, p string, v any) { d.duration(p, v, &d.cfg.Scan.Hold) }},
	{"retention", func(d *decoder, p string, v any) {
		if n, ok := d.uint(p, v, 0, 1_000_000); ok {
			d.cfg.Scan.Retention = int(n)
		}
	}},
}, scanReportKeys...)

// tiers decodes five increasing counts, for danger levels 1 to 5.
func (d *decoder) tiers(path string, v any, limit int64, dst *[5]int) {
	var out []int
	if !d.list(path, v, "five increasing counts, for levels 1 to 5", func(p string, e any) {
		if n, ok := d.uint(p, e, 1, limit); ok {
			out = append(out, int(n))
		}
	}) {
		return
	}
	for i := range out {
		if len(out) != 5 || i > 0 && out[i] <= out[i-1] {
			d.bad(path, nil, "want five increasing counts, one per danger level 1 to 5")
			return
		}
	}
	copy(dst[:], out)
}

func (s *Scan) problems() []problem {
	var out []problem
	if s.Window < time.Second {
		out = append(out, problem{"scan.window", strconv.Quote(s.Window.String()), `too short; want at least "1s"`})
	}
	if s.FirstBan < time.Second {
		out = append(out, problem{"scan.first_ban", strconv.Quote(s.FirstBan.String()), `too short; want at least "1s"`})
	}
	if s.Hold != 0 && (s.Hold < time.Second || s.Hold > time.Hour) {
		out = append(out, problem{"scan.hold", strconv.Quote(s.Hold.String()), `want "0s" (no hold) or "1s" to "1h"`})
	}
	if s.BanTimeMultiplier < 1 {
		out = append(out, problem{"scan.ban_time_multiplier", strconv.FormatFloat(s.BanTimeMultiplier, 'g', -1, 64), "want a number of at least 1 (1: every scan ban is first_ban long)"})
	}
	for i, d := range s.BlockFor {
		if d < time.Second {
			out = append(out, problem{joinIndex("scan.block_for", i), strconv.Quote(d.String()), fmt.Sprintf(`level %d: want at least "1s"`, i+1)})
		}
	}
	return out
}

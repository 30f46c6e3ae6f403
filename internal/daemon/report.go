package daemon

import (
	"context"
	"net"
	"net/netip"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/lookup"
	"github.com/moat-fw/moat/internal/packet"
	"github.com/moat-fw/moat/internal/portscan"
	"github.com/moat-fw/moat/internal/store"
)

// reportService holds what `moat status` adds to the guards' own counts
// ([report]): the GeoIP and ASN databases, reverse DNS, and the user
// names each address tried. apply opens, swaps or closes the databases
// to match the config in force.
type reportService struct {
	mu     sync.Mutex
	ctx    context.Context // the daemon's; nil outside Run
	cfg    config.Report
	db     *lookup.DB
	names  *lookup.Names
	stop   context.CancelFunc
	err    string // why a database is not in use
	tried  userTally
	loaded bool
}

// applyReport makes the look-ups match cfg. A database that does not open
// is logged and left out: a report is not worth refusing a config for.
func (d *Daemon) applyReport(cfg config.Report) {
	r := &d.report
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.loaded && cfg == r.cfg {
		return
	}
	r.cfg, r.loaded, r.err = cfg, true, ""
	if r.db != nil {
		r.db.Close()
		r.db = nil
	}
	if cfg.GeoIP != "" || cfg.ASN != "" {
		db, err := lookup.Open(cfg.GeoIP, cfg.ASN)
		if err != nil {
			d.log.Error("report: no country or network look-ups", "err", err)
			r.err = err.Error()
		} else {
			r.db = db
		}
	}
	if r.stop != nil {
		r.stop()
		r.names.Wait()
		r.stop, r.names = nil, nil
	}
	if cfg.ReverseDNS && r.ctx != nil {
		ctx, cancel := context.WithCancel(r.ctx)
		r.stop, r.names = cancel, lookup.NewNames(ctx, net.DefaultResolver, time.Now)
	}
}

// runReport sets up the look-ups for the daemon's life; the returned
// function ends them.
func (d *Daemon) runReport(ctx context.Context, cfg config.Report) (wait func()) {
	d.report.mu.Lock()
	d.report.ctx = ctx
	d.report.mu.Unlock()
	d.applyReport(cfg)
	return func() {
		r := &d.report
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.stop != nil {
			r.stop()
			r.names.Wait()
			r.stop, r.names = nil, nil
		}
		if r.db != nil {
			r.db.Close()
			r.db = nil
		}
	}
}

// addrInfo is what the look-ups know of a now; wait > 0 waits that long
// for reverse DNS (alerts), 0 never waits (status).
func (d *Daemon) addrInfo(ctx context.Context, a netip.Addr, wait time.Duration) lookup.Info {
	r := &d.report
	r.mu.Lock()
	db, names := r.db, r.names
	r.mu.Unlock()
	info := db.Lookup(a)
	switch {
	case names == nil:
	case wait > 0:
		ctx, cancel := context.WithTimeout(ctx, wait)
		info.Name = names.Resolve(ctx, a)
		cancel()
	default:
		info.Name, _ = names.Name(a)
	}
	return info
}

// userTally counts the user names each address tried, for `moat status
// ADDR`: at most maxTallied addresses and maxUsersEach names each, so a
// flood of forged lines costs a bounded amount.
type userTally struct {
	mu sync.Mutex
	m  map[netip.Addr]map[string]int
}

const (
	maxTallied   = 4096
	maxUsersEach = 16
)

func (t *userTally) note(a netip.Addr, user []byte) {
	if !a.IsValid() {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[netip.Addr]map[string]int{}
	}
	us := t.m[a]
	if us == nil {
		if len(t.m) >= maxTallied {
			clear(t.m) // start again rather than grow
		}
		us = map[string]int{}
		t.m[a] = us
	}
	if n, ok := us[string(user)]; ok {
		us[string(user)] = n + 1
		return
	}
	if len(us) < maxUsersEach {
		us[string(user)] = 1
	}
}

func (t *userTally) of(a netip.Addr) map[string]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[string]int{}
	for u, n := range t.m[a] {
		out[u] = n
	}
	return out
}

// ReportStatus is psad -S's and fail2ban-client status's counterparts in
// `moat status` (docs/status.md maps each section).
type ReportStatus struct {
	MinLevel  int        `json:"min_level"` // [report] min_level: sources below it are left out
	Attackers []Attacker `json:"attackers"` // the top sources at or above MinLevel
	// Types counts the tracked sources that sent each kind of probe: psad's
	// signature matches.
	Types    []TypeCount           `json:"types"`
	Ports    []portscan.PortReport `json:"ports"`    // the most scanned ports
	Prefixes []PrefixCount         `json:"prefixes"` // packets per log prefix, with what the prefix means
	Packets  PacketCounts          `json:"packets"`
	// Sources and Destinations count the scan sources tracked and the
	// local addresses they probed (psad's "Total scan sources/destinations").
	Sources      int `json:"sources"`
	Destinations int `json:"destinations"`
	// Blocked lists the active scan bans (psad's auto-blocked IPs), the
	// latest to expire first, at most [report] top.
	Blocked      []BlockedJSON `json:"blocked"`
	BlockedTotal int           `json:"blocked_total"`
	Guards       []GuardCount  `json:"guards"` // per guard: bans in force, bans made, events
	Jails        []JailCount   `json:"jails"`  // per login rule (sshd and each [[login.rule]])
	Lookups      LookupStatus  `json:"lookups"`
}

// Attacker is one scan source with what else moat knows of it.
type Attacker struct {
	portscan.SourceReport
	Banned      bool       `json:"banned"`
	BannedUntil *time.Time `json:"banned_until,omitempty"` // nil while banned: until removed
	BanOrigin   string     `json:"ban_origin,omitempty"`
	lookup.Info
}

// laterFirst orders bans by expiry, the latest (and the permanent) first.
func laterFirst(a, b BlockedJSON) int {
	switch {
	case a.Until == nil && b.Until == nil:
		return strings.Compare(a.Addr, b.Addr)
	case a.Until == nil:
		return -1
	case b.Until == nil:
		return 1
	}
	return b.Until.Compare(*a.Until)
}

// keepLatest adds b to at most n bans, keeping the latest to expire,
// without holding every ban (there may be a million).
func keepLatest(kept []BlockedJSON, b BlockedJSON, n int) []BlockedJSON {
	if len(kept) < n {
		return append(kept, b)
	}
	worst := 0
	for i := range kept {
		if laterFirst(kept[i], kept[worst]) > 0 {
			worst = i
		}
	}
	if laterFirst(b, kept[worst]) < 0 {
		kept[worst] = b
	}
	return kept
}

func (a *Attacker) setBan(e store.Entry) {
	a.Banned, a.BanOrigin, a.BannedUntil = true, e.Origin, nil
	if !e.Expires.IsZero() {
		t := e.Expires
		a.BannedUntil = &t
	}
}

// TypeCount is how many tracked sources sent a kind of probe.
type TypeCount struct {
	Type    string `json:"type"`
	Sources int    `json:"sources"`
}

// PrefixCount is the packets logged with one NFLOG prefix.
type PrefixCount struct {
	Prefix  string `json:"prefix"`
	Kind    string `json:"kind"` // "closed", "stealth", "invalid" or "other"
	Packets uint64 `json:"packets"`
}

// PacketCounts are the packets the scan guard saw, by protocol.
type PacketCounts struct {
	TCP, UDP, ICMP, Other uint64
	Probes, Unscored      uint64
	Ignored, Knocks       uint64
}

// BlockedJSON is one active scan ban.
type BlockedJSON struct {
	Addr   string     `json:"addr"`
	Until  *time.Time `json:"until,omitempty"`
	Reason string     `json:"reason"`
}

// GuardCount is one guard's counts.
type GuardCount struct {
	Guard  string `json:"guard"`  // "scan", "login", "doors", "spa", "manual", or another ban origin
	Active int    `json:"active"` // bans in force it made
	Made   int    `json:"made"`   // bans made since start (scan and login; -1 unknown)
	Events uint64 `json:"events"` // probes scored, failures counted, knocks, datagrams
}

// JailCount is one login rule's counts, fail2ban-client status JAIL's.
type JailCount struct {
	Name     string `json:"name"`
	Counting int    `json:"counting"` // addresses with failures being counted
	Banned   int    `json:"banned"`   // its bans in force
}

// LookupStatus says which look-ups are on.
type LookupStatus struct {
	GeoIP      bool   `json:"geoip"`
	ASN        bool   `json:"asn"`
	ReverseDNS bool   `json:"reverse_dns"`
	Error      string `json:"error,omitempty"`
}

// prefixKind tells what a log prefix means: a closed port, a stealth
// drop (an impossible flag combination or a fragment), or invalid state.
func prefixKind(prefix string) string {
	reason, ok := strings.CutPrefix(prefix, firewall.LogPrefix(""))
	switch {
	case !ok:
		return "other"
	case reason == firewall.CounterClosed:
		return "closed"
	case reason == firewall.CounterInvalid:
		return "invalid"
	case slices.Contains(firewall.StealthReasons(), reason):
		return "stealth"
	}
	return "other"
}

// reportStatus builds the report from the pieces of the status already
// gathered, the bans in force and the look-ups.
func (d *Daemon) reportStatus(st *Status, eachBan func(func(store.Entry)), now time.Time) *ReportStatus {
	d.report.mu.Lock()
	cfg, rerr := d.report.cfg, d.report.err
	db, names := d.report.db, d.report.names
	if !d.report.loaded {
		cfg = config.Report{Top: 10, MinLevel: 1}
	}
	d.report.mu.Unlock()
	rs := &ReportStatus{MinLevel: cfg.MinLevel, Attackers: []Attacker{}, Types: []TypeCount{}, Ports: []portscan.PortReport{},
		Prefixes: []PrefixCount{}, Blocked: []BlockedJSON{}, Guards: []GuardCount{}, Jails: []JailCount{},
		Lookups: LookupStatus{GeoIP: cfg.GeoIP != "" && db != nil, ASN: cfg.ASN != "" && db != nil, ReverseDNS: names != nil, Error: rerr}}
	if sc := st.Scan; sc != nil {
		r := sc.Report
		for _, s := range r.Sources {
			if s.Level < cfg.MinLevel {
				continue
			}
			rs.Attackers = append(rs.Attackers, Attacker{SourceReport: s, Info: d.addrInfo(context.Background(), s.Addr, 0)})
		}
		for i, n := range r.TypeSources {
			if n > 0 {
				rs.Types = append(rs.Types, TypeCount{portscan.ScanTypes(1 << i).String(), n})
			}
		}
		slices.SortStableFunc(rs.Types, func(a, b TypeCount) int { return b.Sources - a.Sources })
		rs.Ports = append(rs.Ports, r.Ports...)
		for _, p := range r.Prefixes {
			rs.Prefixes = append(rs.Prefixes, PrefixCount{p.Prefix, prefixKind(p.Prefix), p.Packets})
		}
		t := r.Totals
		rs.Packets = PacketCounts{TCP: t.TCP, UDP: t.UDP, ICMP: t.ICMP, Other: t.Other, Probes: t.Probes, Unscored: t.Unscored, Ignored: t.Ignored, Knocks: t.Knock}
		rs.Sources, rs.Destinations = t.Sources, t.Destinations
	}
	// One pass over the bans (there may be a million): the listed
	// attackers' bans, the counts per guard and jail, the scan bans.
	listed := make(map[netip.Addr]int, len(rs.Attackers))
	for i, a := range rs.Attackers {
		listed[a.Addr] = i
	}
	active := map[string]int{}
	jailBans := map[string]int{}
	eachBan(func(e store.Entry) {
		if e.Prefix.IsSingleIP() {
			if i, ok := listed[e.Prefix.Addr()]; ok {
				rs.Attackers[i].setBan(e)
			}
		} else {
			for i := range rs.Attackers {
				if !rs.Attackers[i].Banned && e.Prefix.Contains(rs.Attackers[i].Addr) {
					rs.Attackers[i].setBan(e)
				}
			}
		}
		active[e.Origin]++
		if e.Origin == OriginScan {
			rs.BlockedTotal++
			b := BlockedJSON{Addr: e.Prefix.String(), Reason: e.Reason}
			if e.Prefix.IsSingleIP() {
				b.Addr = e.Prefix.Addr().String()
			}
			if !e.Expires.IsZero() {
				t := e.Expires
				b.Until = &t
			}
			rs.Blocked = keepLatest(rs.Blocked, b, cfg.Top)
		}
		if e.Origin == OriginLogin {
			rule, _, _ := strings.Cut(e.Reason, ":")
			jailBans[rule]++
		}
	})
	slices.SortFunc(rs.Blocked, laterFirst)
	guard := func(name string, made int, events uint64) {
		rs.Guards = append(rs.Guards, GuardCount{Guard: name, Active: active[name], Made: made, Events: events})
		delete(active, name)
	}
	if sc := st.Scan; sc != nil {
		guard(OriginScan, sc.Blocked, sc.Report.Totals.Probes)
	}
	if l := st.Login; l != nil {
		guard(OriginLogin, l.Banned, l.Events)
		counting := d.loginCounting()
		for _, name := range counting.rules {
			rs.Jails = append(rs.Jails, JailCount{Name: name, Counting: counting.n[name], Banned: jailBans[name]})
		}
	}
	if c, ok := st.Counters[firewall.CounterKnock]; ok {
		rs.Guards = append(rs.Guards, GuardCount{Guard: "doors", Made: -1, Events: c.Packets})
	}
	for _, o := range slices.Sorted(func(yield func(string) bool) {
		for o := range active {
			if !yield(o) {
				return
			}
		}
	}) {
		guard(o, -1, 0)
	}
	return rs
}

// loginCounts are the addresses being counted per login rule.
type loginCounts struct {
	rules []string
	n     map[string]int
}

func (d *Daemon) loginCounting() loginCounts {
	d.mu.Lock()
	lg := d.login
	d.mu.Unlock()
	out := loginCounts{n: map[string]int{}}
	if lg == nil {
		return out
	}
	lg.mu.Lock()
	defer lg.mu.Unlock()
	out.rules = lg.det.Rules()
	for _, r := range out.rules {
		out.n[r] = lg.det.CountingRule(r)
	}
	return out
}

// buildVersion is the running binary's version as Go recorded it: the
// module version, and the VCS revision when built from a checkout.
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
	}
	return strings.TrimSpace(v)
}

// reportTop is [report] top: how many sources and ports the report lists.
func (d *Daemon) reportTop() int {
	d.report.mu.Lock()
	defer d.report.mu.Unlock()
	if !d.report.loaded || d.report.cfg.Top < 1 {
		return 10
	}
	return d.report.cfg.Top
}

// ignorePorts is [scan] ignore_ports as the detector asks it; nil when
// there are none, so the detector skips the call.
func ignorePorts(ports []config.PortSpec) func(*packet.Packet) bool {
	if len(ports) == 0 {
		return nil
	}
	return func(p *packet.Packet) bool {
		for _, ps := range ports {
			if ps.Contains(config.Proto(p.Proto), p.DstPort) {
				return true
			}
		}
		return false
	}
}

// dangerOverride is [[scan.danger]] as the detector asks it; nil when
// there are none.
func dangerOverride(cfg config.Scan) func(netip.Addr) (int, bool) {
	if len(cfg.Danger) == 0 {
		return nil
	}
	return cfg.DangerFor
}

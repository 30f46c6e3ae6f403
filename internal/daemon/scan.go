package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/moat-fw/moat/internal/ban"
	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/events"
	"github.com/moat-fw/moat/internal/packet"
	"github.com/moat-fw/moat/internal/portscan"
)

// OriginScan marks bans made by the scan guard.
const OriginScan = "scan"

// metaScanEvents is the store key of the recent scan events, kept so the
// report survives a restart.
const metaScanEvents = "scan.events"

// ScanEvent is one rise of a source's danger level.
type ScanEvent struct {
	At    time.Time  `json:"at"`
	Addr  netip.Addr `json:"addr"`
	Level int        `json:"level"`
	// The set, spelled only when written out ("syn,noopts"): a flood of
	// forged scanners makes an event per source and level, and building
	// two strings for each was most of what the flood allocated.
	Types   portscan.ScanTypes `json:"types"`
	Packets int                `json:"packets"`
	Ports   int                `json:"ports"`
	Blocked bool               `json:"blocked"`
	Capped  bool               `json:"capped,omitempty"` // not banned: max_bans_per_minute was reached
}

// scanGuard feeds dropped packets to the scan detector and bans scanners.
type scanGuard struct {
	cfg  config.Scan
	log  *slog.Logger
	bans *ban.Manager
	bus  *events.Bus

	mu      sync.Mutex
	det     *portscan.Detector
	events  []ScanEvent // most recent last, at most cfg.Retention
	dirty   bool
	blocked int
	logs    logLimiter
	budget  banBudget
	capped  uint64    // scanners not banned because the budget was spent
	lastCap time.Time // when the last one was
}

// banBudget allows at most max bans in any rolling minute: it keeps the
// times of the last max bans, and a ban is allowed when the oldest of them
// is a minute old. A flood of forged sources then costs at most max bans a
// minute, each first_ban long, however many sources it invents.
type banBudget struct {
	times []int64 // unix nanoseconds, a ring
	next  int
}

func newBanBudget(max int) banBudget { return banBudget{times: make([]int64, max)} }

func (b *banBudget) take(now time.Time) bool {
	if len(b.times) == 0 {
		return true
	}
	t := now.UnixNano()
	if old := b.times[b.next]; old != 0 && t-old < int64(time.Minute) {
		return false
	}
	b.times[b.next] = t
	b.next = (b.next + 1) % len(b.times)
	return true
}

// refund gives back the last take, for a ban that was refused.
func (b *banBudget) refund() {
	if len(b.times) == 0 {
		return
	}
	b.next = (b.next - 1 + len(b.times)) % len(b.times)
	b.times[b.next] = 0
}

// scanIgnore says whether a source is never counted: the allow list
// and the protected addresses (the host, its routers and
// resolvers, link-local sources, outgoing peers, door grants, sessions).
type scanIgnore struct {
	bans      *ban.Manager
	protected func(netip.Addr) bool
	now       func() time.Time
}

// ignore covers what only the running daemon knows; [scan] ignore is
// ScanDetectorConfig's, which moat explain shares.
func (s *scanIgnore) ignore(a netip.Addr) bool {
	if s.bans.IsAllowed(a, s.now()) {
		return true
	}
	return s.protected != nil && s.protected(a)
}

func newScanGuard(cfg config.Scan, doors []config.Door, log *slog.Logger, bans *ban.Manager, ign *scanIgnore, saved []byte) *scanGuard {
	g := &scanGuard{cfg: cfg, log: log, bans: bans, logs: logLimiter{every: time.Second / 20}, budget: newBanBudget(cfg.MaxBansPerMinute)}
	g.det = portscan.New(ScanDetectorConfig(cfg, doors, ign.ignore))
	if saved != nil {
		if err := json.Unmarshal(saved, &g.events); err != nil {
			log.Warn("saved scan events unreadable; starting a new history", "err", err)
			g.events = nil
		}
	}
	return g
}

// packet handles one dropped packet and its log prefix.
func (g *scanGuard) packet(p *packet.Packet, prefix []byte, now time.Time) {
	g.mu.Lock()
	dec, rose := g.det.Observe(p, prefix, now)
	g.mu.Unlock()
	if !rose {
		return
	}
	ev := ScanEvent{At: now, Addr: dec.Src, Level: dec.Level, Types: dec.Types, Packets: dec.Packets, Ports: dec.Ports}
	g.bus.Publish(events.Event{Time: now, Kind: events.Scan, Prefix: netip.PrefixFrom(dec.Src, dec.Src.BitLen()), Level: dec.Level,
		Types: dec.Types.String(), Probes: dec.Packets, NPorts: dec.Ports})
	if g.cfg.BlockLevel > 0 && dec.Level >= g.cfg.BlockLevel {
		g.mu.Lock()
		ok := g.budget.take(now)
		if !ok {
			g.capped++
			g.lastCap = now
		}
		g.mu.Unlock()
		if ok {
			ev.Blocked = g.ban(dec, ev.Types.String(), now)
			if !ev.Blocked {
				g.mu.Lock()
				g.budget.refund()
				g.mu.Unlock()
			}
		} else {
			ev.Capped = true
			if g.logs.allow(now) {
				g.log.Warn("scanner not banned: max_bans_per_minute reached (a flood of forged sources?)", "addr", dec.Src, "level", dec.Level,
					"max_bans_per_minute", g.cfg.MaxBansPerMinute)
			}
		}
	} else if g.logs.allow(now) {
		g.log.Info("scan detected", "addr", dec.Src, "level", dec.Level, "types", ev.Types, "probes", dec.Packets)
	}
	g.mu.Lock()
	if ev.Blocked {
		g.blocked++
	}
	g.events = append(g.events, ev)
	if over := len(g.events) - g.cfg.Retention; over > 0 {
		g.events = append(g.events[:0], g.events[over:]...)
	}
	g.dirty = true
	g.mu.Unlock()
}

// ban bans a scanner. Its evidence is packets alone, which anyone can
// forge: the first ban is first_ban long, and repeats grow it up to the
// level's block_for.
func (g *scanGuard) ban(dec portscan.Decision, types string, now time.Time) bool {
	reason := fmt.Sprintf("port scan: danger level %d (%s), %d probes to %d ports", dec.Level, types, dec.Packets, dec.Ports)
	e, err := g.bans.Add(ban.Request{Prefix: netip.PrefixFrom(dec.Src, dec.Src.BitLen()), Origin: OriginScan, Reason: reason, NoWait: true,
		Backoff: &ban.Backoff{Base: g.cfg.FirstBan, Multiplier: g.cfg.BanTimeMultiplier, Max: g.cfg.BlockFor[dec.Level-1]}}, now)
	if err != nil {
		g.log.Warn("scanner not banned", "addr", dec.Src, "level", dec.Level, "err", err)
		return !errors.Is(err, ban.ErrRefused) && e.Prefix.IsValid() // in force, though not everywhere yet
	}
	g.log.Info("banned", "addr", dec.Src, "origin", OriginScan, "reason", reason, "until", e.Expires, "count", e.Count)
	g.bus.Publish(banEvent(e, now))
	return true
}

// snapshot returns the events to persist when they changed.
func (g *scanGuard) snapshot() ([]byte, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.dirty {
		return nil, false
	}
	g.dirty = false
	b, err := json.Marshal(g.events)
	return b, err == nil
}

// ScanStatus is the scan guard's part of `moat status`, what `psad -S`
// shows.
type ScanStatus struct {
	Report  portscan.Report `json:"report"`
	Blocked int             `json:"blocked"` // bans made since start
	// Capped counts scanners not banned because max_bans_per_minute was
	// reached, LastCapped when the last one was.
	Capped           uint64      `json:"capped"`
	LastCapped       time.Time   `json:"last_capped,omitzero"`
	MaxBansPerMinute int         `json:"max_bans_per_minute"`
	Events           []ScanEvent `json:"events"` // the most recent, newest last
	Lost             uint64      `json:"lost"`   // logged packets the kernel could not deliver
}

func (g *scanGuard) status(now time.Time) ScanStatus { return g.statusTop(now, 10) }

// statusTop is status with the top sources and ports [report] top asks.
func (g *scanGuard) statusTop(now time.Time, top int) ScanStatus {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := ScanStatus{Report: g.det.Report(now, top), Blocked: g.blocked, Capped: g.capped, LastCapped: g.lastCap, MaxBansPerMinute: g.cfg.MaxBansPerMinute}
	n := min(len(g.events), 20)
	st.Events = append([]ScanEvent(nil), g.events[len(g.events)-n:]...)
	return st
}

// ScanDetectorConfig builds the scan detector's settings from [scan] and
// the doors, for the daemon and for moat explain --kernel-log alike, so
// both judge packets the same way. ignore adds sources only a running
// daemon knows to leave alone (the allow list, protected addresses); nil
// adds none.
func ScanDetectorConfig(cfg config.Scan, doors []config.Door, ignore func(netip.Addr) bool) portscan.Config {
	knocks := map[[3]byte]bool{}
	for _, dr := range doors {
		for _, p := range append(append([]config.PortSpec{}, dr.Sequence...), dr.CloseSequence...) {
			knocks[[3]byte{byte(p.Proto), byte(p.From >> 8), byte(p.From)}] = true
		}
	}
	return portscan.Config{
		Window: cfg.Window, MaxSources: cfg.MaxSources, PacketTiers: cfg.PacketTiers, SweepTiers: cfg.SweepTiers,
		RawSYNBoost: 1, // ban nmap -sS within its first few dozen probes (see rawSYNTypes)
		// Crafted SYNs to three distinct ports: level 3, the default
		// block level. nmap -sS sends its first ten probes within a
		// millisecond; the firewall logs crafted SYNs at once (see
		// firewall.craftedSYNRule), so the ban lands inside that burst.
		RawSYNPorts: 3, RawSYNLevel: 3,
		Ignore: func(a netip.Addr) bool {
			for _, p := range cfg.Ignore {
				if p.Contains(a) {
					return true
				}
			}
			return ignore != nil && ignore(a)
		},
		// A door's knocks are probes of closed ports; they are not scans.
		Knock: func(p *packet.Packet) bool {
			return knocks[[3]byte{p.Proto, byte(p.DstPort >> 8), byte(p.DstPort)}]
		},
		IgnorePacket: ignorePorts(cfg.IgnorePorts),
		Override:     dangerOverride(cfg),
	}
}

// startScan starts (or, on reload, restarts) the scan guard for cfg,
// keeping the saved events.
func (d *Daemon) startScan(cfg *config.Config) {
	if !cfg.Scan.Enabled {
		d.scan.Store(nil)
		return
	}
	// The first ban would otherwise open the firewall's netlink socket:
	// half a millisecond, half of nmap's first burst.
	if err := d.fw.Warm(); err != nil {
		d.log.Warn("cannot open the netlink socket bans go through; the first ban opens it", "err", err)
	}
	ign := &scanIgnore{bans: d.bans, protected: d.prot.covers, now: d.now}
	saved, _ := d.st.Meta(metaScanEvents)
	g := newScanGuard(cfg.Scan, cfg.Doors, d.log, d.bans, ign, saved)
	g.bus = d.events
	d.scan.Store(g)
}

// saveScan persists the scan events if they changed.
func (d *Daemon) saveScan() {
	if g := d.scan.Load(); g != nil {
		if b, ok := g.snapshot(); ok {
			if err := d.st.SetMeta(metaScanEvents, b); err != nil {
				d.log.Warn("cannot save scan events", "err", err)
			}
		}
	}
}

// grantHolders lists the sources holding a door grant, kernel or daemon mode.
func (d *Daemon) grantHolders() []netip.Addr {
	if d.grants == nil {
		return nil
	}
	return d.grants.holders()
}

// holdsGrant reports whether a holds a door grant, kernel or daemon mode.
func (d *Daemon) holdsGrant(a netip.Addr) bool {
	return d.grants != nil && d.grants.holds(a)
}

// housekeep runs every few hundred milliseconds: it refreshes who holds
// kernel-mode grants and saves scan events now and then.
func (d *Daemon) housekeep(now time.Time) {
	d.mu.Lock()
	due := now.Sub(d.lastHouse) >= 2*time.Second
	if due {
		d.lastHouse = now
	}
	doors := len(d.cur.Cfg.Doors) > 0
	d.mu.Unlock()
	if !due {
		return
	}
	d.check(false)
	d.mu.Lock()
	ports, grace := d.sshPorts, d.sshGrace
	d.mu.Unlock()
	d.sessions.refresh(ports, grace, now)
	d.saveSessions()
	d.refreshProtection(now)
	if doors {
		if gs, err := d.fw.Grants(); err == nil {
			d.syncKernelGrants(gs, now, false)
		}
	}
	d.grants.save()
	d.saveScan()
}

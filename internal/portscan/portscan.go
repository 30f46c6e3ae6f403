// Package portscan classifies port scans from dropped packets and scores each source's danger level, in fixed memory.
//
// The firewall logs every packet it drops (to NFLOG, with a prefix naming
// the reason: "moat:closed", "moat:null", ...). A Detector is fed those
// packets one by one, as they happen; psad, the reference, reads the same
// information from iptables LOG lines in syslog every 5 seconds.
//
// For each source it keeps, within a window: the probes' kinds (ScanTypes),
// the number of probes, the distinct destination ports (exact for the
// first 8, then estimated from a 1024-bit set), the distinct local
// addresses (exact for a host's first 256), the IP protocols, the TCP flag
// combinations, the first and last time seen. At most MaxSources sources
// are tracked, about 300 bytes each: a flood of forged addresses costs no
// more than MaxSources slots. The least recently seen source makes room
// for a new one, but a source with a level above 0 is spared as many times
// as its level while its window is open, so a flood cannot wipe out the
// record of a real scan at once.
//
// # Danger levels
//
// Levels run from 0 (noticed) to 5, as psad's do:
//
//   - Probe count: level n once the source has sent PacketTiers[n-1] probes
//     in the window (default 5, 15, 150, 1500, 10000: psad's).
//   - Sweep: level n once the probes reached SweepTiers[n-1] distinct local
//     addresses (default 2, 4, 8, 16, 32).
//   - Signatures: a probe only scanners send (NULL, XMAS, FIN, SYN+FIN,
//     Maimon, other impossible flag combinations, ICMP timestamp, address
//     mask and information requests) adds SignatureBoost levels (default 1)
//     and lifts the source to at least SignatureLevel (default 2).
//   - Crafted SYNs: a source whose SYNs without an operating system's
//     options (nmap -sS, masscan) reached RawSYNPorts distinct ports is at
//     least at RawSYNLevel (off by default; moat's daemon sets 3 ports,
//     level 3).
//   - Breadth: a source that has touched fewer than MinPorts (default 2)
//     distinct ports, on one local address, with at most one protocol other
//     than TCP and UDP, stays at level 1 however many packets it sends. A
//     client retrying a service the host does not run, a stale connection's
//     retransmitted FIN+ACK, a monitor's pings: none of them is a scan.
//
// The level is the highest of the count and sweep levels, then signatures,
// then the breadth cap. Observe returns a Decision each time a source's
// level rises, so the caller logs once per level and blocks at its
// block_level.
//
// # What is not a probe
//
// Packets innocent hosts send are counted in the report but never scored:
// traffic of connections the firewall forgot (PSH+ACK, RST, ACK or FIN+ACK
// carrying data or TCP options, which scanners' crafted headers lack), backscatter (SYN+ACK, echo replies, ICMP errors), packets
// from unspecified, multicast or loopback sources, and packets to multicast
// or broadcast addresses (mDNS, SSDP, DHCP).
//
// # Spoofed sources
//
// A probe's source address is whatever its sender wrote. Anyone can send a
// few NULL or XMAS packets "from" an innocent address (a DNS resolver, a
// partner's gateway) to get it blocked; psad's manual warns of the same.
// What limits it:
//
//   - a single forged packet, or any number to one port, stays at level 1
//     (the breadth rule); two scanner-only probes to two ports reach 2;
//   - block at level 3 or more: that takes 150 probes, or 15 probes that
//     include scanner-only kinds, or a sweep of 8 local addresses;
//   - Ignore (allow list, door grants, the host's own addresses, the
//     administrator's session) is never counted;
//   - keep block durations short at the lower levels, longer at 4 and 5;
//   - a scan from a forged address learns nothing (the answers go to the
//     forged address, and no handshake can complete): forging serves only
//     to get someone else blocked, so a block protects little that the
//     default-deny ruleset does not already protect.
//
// See docs/scan-guard.md.
//
// A Detector is a pure state machine: no I/O, no goroutines, time passed
// in. It is not safe for concurrent use.
package portscan

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"math/bits"
	"net/netip"
	"strconv"
	"time"

	"github.com/moat-fw/moat/internal/osfp"
	"github.com/moat-fw/moat/internal/packet"
)

// Defaults.
const (
	DefaultWindow         = 5 * time.Minute
	DefaultMaxSources     = 200_000
	DefaultSignatureBoost = 1
	DefaultSignatureLevel = 2
	DefaultMinPorts       = 2
)

// DefaultPacketTiers are psad's DANGER_LEVEL1..5 packet counts.
var DefaultPacketTiers = [5]int{5, 15, 150, 1500, 10000}

// DefaultSweepTiers are the distinct local addresses for levels 1..5.
var DefaultSweepTiers = [5]int{2, 4, 8, 16, 32}

// Config tunes a Detector. A zero field takes its default, so Config{} is
// the default configuration. As with net.Dialer's KeepAlive, a negative
// SignatureBoost, SignatureLevel or MinPorts switches that rule off.
type Config struct {
	// Window is how long a source's tally lasts: it starts with the
	// source's first probe and starts afresh with the first probe after
	// Window has passed. Scans slower than the tiers per window go
	// unnoticed; a longer window catches them and keeps clients' strays
	// longer.
	Window time.Duration
	// MaxSources bounds the sources tracked (about 300 bytes each).
	MaxSources int
	// PacketTiers are the probe counts of levels 1 to 5, increasing.
	PacketTiers [5]int
	// SweepTiers are the distinct local addresses of levels 1 to 5,
	// increasing, at most 256.
	SweepTiers [5]int
	// SignatureBoost is how many levels a scanner-only probe adds (0 to 4).
	SignatureBoost int
	// SignatureLevel is the least level a scanner-only probe gives (1 to 5).
	SignatureLevel int
	// MinPorts is the distinct ports (or local addresses, or protocols
	// other than TCP and UDP) a source needs to go past level 1 (1 to 1024).
	MinPorts int
	// RawSYNBoost is how many levels crafted SYNs (nmap -sS, masscan; see
	// rawSYNTypes) add to a level the probe count gave (0 to 4; default 0,
	// psad's scoring). moat's daemon sets 1.
	RawSYNBoost int
	// RawSYNPorts and RawSYNLevel: a source whose crafted SYNs (see
	// rawSYNTypes) reached RawSYNPorts distinct ports is at least at
	// RawSYNLevel, whatever its probe count (0: off, psad's scoring; moat's
	// daemon sets 3 ports and level 3). nmap -sS at its default timing
	// sends ten probes to ten ports within a millisecond; no client's
	// connect() sends a SYN without SACK-permitted, and a client retrying
	// one closed port touches one port.
	RawSYNPorts int
	RawSYNLevel int

	// Ignore reports addresses that are never counted: the allow list,
	// addresses holding a door grant, the host's own addresses, the
	// administrator's session. It is called for probes only, not for every
	// dropped packet. Nil ignores nothing.
	Ignore func(netip.Addr) bool
	// Knock reports packets that are part of a knock sequence, which are
	// never counted: a door's knocks are probes of closed ports. Nil
	// matches nothing.
	Knock func(p *packet.Packet) bool
	// IgnorePacket reports probes never counted for what they are rather
	// than who sent them: psad's IGNORE_PORTS. They count as Ignored. Nil
	// ignores nothing.
	IgnorePacket func(p *packet.Packet) bool
	// Override fixes a source's danger level whatever its probes (psad's
	// auto_dl): ok false leaves the rules to score it. Level 0 keeps it at
	// 0, reported but never rising. Nil overrides nothing.
	Override func(netip.Addr) (level int, ok bool)
}

// FieldError is one invalid Config field. Field is its key as the
// configuration file spells it ("max_sources"), so the caller can point at
// the line.
type FieldError struct {
	Field string
	Value string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + " " + e.Value + ": " + e.Msg }

// maxSourcesLimit keeps slot numbers in 32 bits with room to spare.
const maxSourcesLimit = 1 << 26

// Validate checks the fields against their ranges. It returns nil, one
// *FieldError, or several joined with errors.Join.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, value, format string, args ...any) {
		errs = append(errs, &FieldError{field, value, fmt.Sprintf(format, args...)})
	}
	if c.Window < 0 || c.Window > 0 && c.Window < time.Second {
		bad("window", strconv.Quote(c.Window.String()), `want at least "1s" (default "5m")`)
	}
	if c.MaxSources < 0 || c.MaxSources > maxSourcesLimit {
		bad("max_sources", strconv.Itoa(c.MaxSources), "want 1 to %d (default %d)", maxSourcesLimit, DefaultMaxSources)
	}
	tiers := func(field string, t [5]int, limit int, def [5]int) {
		if t == [5]int{} {
			return
		}
		for i, n := range t {
			if n < 1 || n > limit || i > 0 && n <= t[i-1] {
				bad(field, fmt.Sprint(t), "want five increasing counts from 1 to %d, for levels 1 to 5 (default %v)", limit, def)
				return
			}
		}
	}
	tiers("packet_tiers", c.PacketTiers, math.MaxInt32, DefaultPacketTiers)
	tiers("sweep_tiers", c.SweepTiers, addrBits, DefaultSweepTiers)
	if c.SignatureBoost > 4 {
		bad("signature_boost", strconv.Itoa(c.SignatureBoost), "want 0 to 4 levels (default %d)", DefaultSignatureBoost)
	}
	if c.SignatureLevel > 5 {
		bad("signature_level", strconv.Itoa(c.SignatureLevel), "want a level from 1 to 5 (default %d)", DefaultSignatureLevel)
	}
	if c.RawSYNPorts < 0 || c.RawSYNPorts > portBits {
		bad("raw_syn_ports", strconv.Itoa(c.RawSYNPorts), "want 0 (off) to %d", portBits)
	}
	if c.RawSYNLevel < 0 || c.RawSYNLevel > 5 {
		bad("raw_syn_level", strconv.Itoa(c.RawSYNLevel), "want a level from 0 (off) to 5")
	}
	if c.MinPorts > portBits {
		bad("min_ports", strconv.Itoa(c.MinPorts), "want 1 to %d (default %d)", portBits, DefaultMinPorts)
	}
	return errors.Join(errs...)
}

// Decision reports that a source's danger level rose.
type Decision struct {
	Src         netip.Addr
	Level       int
	Types       ScanTypes
	Packets     int // probes in the window
	Ports       int // distinct destination ports (an estimate past 8)
	First, Last time.Time
}

// Detector scores sources from the packets the firewall dropped.
type Detector struct {
	window      int64 // ns
	packetTiers [5]uint32
	sweepTiers  [5]uint32
	sigBoost    int
	sigLevel    int
	minPorts    int
	rawSYNBoost int
	rawSYNPorts int
	rawSYNLevel int
	ignore      func(netip.Addr) bool
	knock       func(*packet.Packet) bool
	ignorePkt   func(*packet.Packet) bool
	override    func(netip.Addr) (int, bool)
	seed        uint64 // keys the port and address sets, so nobody can pick colliding ports

	table

	// Counters for the report, since New.
	totals   Totals
	prefixes [len(knownPrefixes) + maxOtherPrefixes + 1]uint64
	others   []string // unknown prefixes, in order of arrival
	ports    portCounts
	dsts     map[[16]byte]uint8 // local addresses, numbered (see dstBit)
}

// New returns a Detector for cfg. Fields that Validate rejects, and zero
// fields, take their defaults.
func New(cfg Config) *Detector {
	d := &Detector{
		window:      int64(cfg.Window),
		sigBoost:    cfg.SignatureBoost,
		sigLevel:    cfg.SignatureLevel,
		minPorts:    cfg.MinPorts,
		rawSYNBoost: min(max(cfg.RawSYNBoost, 0), 4),
		rawSYNPorts: min(max(cfg.RawSYNPorts, 0), portBits),
		rawSYNLevel: min(max(cfg.RawSYNLevel, 0), 5),
		ignore:      cfg.Ignore,
		knock:       cfg.Knock,
		ignorePkt:   cfg.IgnorePacket,
		override:    cfg.Override,
		dsts:        make(map[[16]byte]uint8),
	}
	invalid := map[string]bool{}
	for _, e := range unjoin(cfg.Validate()) {
		var fe *FieldError
		if errors.As(e, &fe) {
			invalid[fe.Field] = true
		}
	}
	ok := func(field string) bool { return !invalid[field] }
	if cfg.Window == 0 || !ok("window") {
		d.window = int64(DefaultWindow)
	}
	maxSources := cfg.MaxSources
	if maxSources == 0 || !ok("max_sources") {
		maxSources = DefaultMaxSources
	}
	pt, st := cfg.PacketTiers, cfg.SweepTiers
	if pt == [5]int{} || !ok("packet_tiers") {
		pt = DefaultPacketTiers
	}
	if st == [5]int{} || !ok("sweep_tiers") {
		st = DefaultSweepTiers
	}
	for i := range 5 {
		d.packetTiers[i], d.sweepTiers[i] = uint32(pt[i]), uint32(st[i])
	}
	switch {
	case d.sigBoost == 0 || !ok("signature_boost"):
		d.sigBoost = DefaultSignatureBoost
	case d.sigBoost < 0:
		d.sigBoost = 0
	}
	switch {
	case d.sigLevel == 0 || !ok("signature_level"):
		d.sigLevel = DefaultSignatureLevel
	case d.sigLevel < 0:
		d.sigLevel = 0
	}
	switch {
	case d.minPorts == 0 || !ok("min_ports"):
		d.minPorts = DefaultMinPorts
	case d.minPorts < 0:
		d.minPorts = 0
	}
	var h maphash.Hash
	d.seed = h.Sum64() | 1
	d.table.init(maxSources)
	return d
}

// unjoin splits what errors.Join made.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

// Observe scores one dropped packet. prefix is the log prefix the firewall
// gave it ("moat:closed"); p must have decoded without error (a truncated
// packet's flags mean nothing). It returns a Decision when the source's
// danger level rose. It does not allocate; p is handed to Config.Knock,
// which must not keep it, so reuse one Packet for every call (a fresh one
// per call would move to the heap).
func (d *Detector) Observe(p *packet.Packet, prefix []byte, now time.Time) (Decision, bool) {
	d.totals.Packets++
	d.countPrefix(prefix)
	switch p.Proto {
	case packet.ProtoTCP:
		d.totals.TCP++
	case packet.ProtoUDP:
		d.totals.UDP++
	case packet.ProtoICMP, packet.ProtoICMPv6:
		d.totals.ICMP++
	default:
		d.totals.Other++
	}

	// An IPv6 packet from ::ffff:a.b.c.d is not from a.b.c.d: unmapping it
	// would let a forger get the IPv4 address banned. Such sources are not
	// scored (moat's ruleset drops them before they are logged).
	src := p.Src
	t := classify(p, prefix)
	if t == 0 || src.Is4In6() || !unicast(src) || !unicast(p.Dst.Unmap()) || p.Dst.Unmap() == broadcast4 {
		d.totals.Unscored++
		return Decision{}, false
	}
	if d.ignore != nil && d.ignore(src) {
		d.totals.Ignored++
		return Decision{}, false
	}
	if d.knock != nil && d.knock(p) {
		d.totals.Knock++
		return Decision{}, false
	}
	if d.ignorePkt != nil && d.ignorePkt(p) {
		d.totals.Ignored++
		return Decision{}, false
	}
	d.totals.Probes++

	ts := now.UnixNano()
	key := src.As16()
	s := d.at(d.lookup(&key, ts, d.window))
	if s.packets == 0 || ts-s.first > d.window {
		s.reset(ts)
	}
	s.last = max(s.last, ts)
	if s.packets < math.MaxUint32 {
		s.packets++
	}
	s.types |= t
	s.protos[p.Proto>>6] |= 1 << (p.Proto & 63)
	if p.Proto == packet.ProtoTCP && t&TypeFragment == 0 {
		s.flags |= 1 << (p.TCPFlags & flags6)
	}
	if hasPorts(p) {
		port := p.DstPort
		if s.portBits == 0 {
			s.lowPort, s.highPort = port, port
		}
		s.lowPort, s.highPort = min(s.lowPort, port), max(s.highPort, port)
		s.addPort(port, d.mix(uint64(port)))
		var pi int
		switch p.Proto {
		case packet.ProtoTCP:
			pi = 0
		case packet.ProtoUDP, packet.ProtoUDPLite:
			pi = 1
		default:
			pi = 2
		}
		d.ports.add(pi, port)
	}
	s.setAddr(d.dstBit(p.Dst.Unmap()))
	if uint32(s.addrBits) >= d.sweepTiers[0] {
		s.types |= TypeSweep
	}
	if t&(TypeSYN|TypeConnect) != 0 && !s.syn.Seen() {
		s.syn, _ = osfp.FromPacket(p)
	}

	lv := d.level(s)
	if d.override != nil {
		if o, ok := d.override(src); ok {
			lv = min(max(o, 0), 5)
		}
	}
	if lv <= int(s.level) {
		return Decision{}, false
	}
	s.level = uint8(lv)
	return s.decision(), true
}

// portCounts counts probes per TCP, UDP and SCTP port since New: 256 KiB
// per protocol, allocated at its first probe, with a bitmap of the ports
// counted so a report visits only those.
type portCounts struct {
	n    [3]*[1 << 16]uint32
	used [3]*[1 << 16 / 64]uint64
}

func (pc *portCounts) add(proto int, port uint16) {
	if pc.n[proto] == nil {
		pc.n[proto], pc.used[proto] = new([1 << 16]uint32), new([1 << 16 / 64]uint64)
	}
	c := &pc.n[proto][port]
	if *c == 0 {
		pc.used[proto][port>>6] |= 1 << (port & 63)
	}
	if *c < math.MaxUint32 {
		*c++
	}
}

func (pc *portCounts) get(proto int, port uint16) uint32 {
	if pc.n[proto] == nil {
		return 0
	}
	return pc.n[proto][port]
}

// each calls fn for every port counted.
func (pc *portCounts) each(fn func(proto int, port uint16)) {
	for proto, used := range pc.used {
		if used == nil {
			continue
		}
		for w, bitsSet := range used {
			for bitsSet != 0 {
				b := bits.TrailingZeros64(bitsSet)
				bitsSet &= bitsSet - 1
				fn(proto, uint16(w*64+b))
			}
		}
	}
}

var broadcast4 = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// unicast rejects what no scanner can be answered at, or scan from.
func unicast(a netip.Addr) bool {
	return a.IsValid() && !a.IsUnspecified() && !a.IsMulticast() && !a.IsLoopback()
}

// dstBit numbers local addresses for the per-source address sets. The
// firewall logs packets to this host's own addresses, which are few: the
// first addrBits get a bit each, so sweep counts are exact; any further
// (a kernel log from a router, a host answering for a whole prefix) share
// bits by hash.
func (d *Detector) dstBit(a netip.Addr) uint {
	k := a.As16()
	if b, ok := d.dsts[k]; ok {
		return uint(b)
	}
	if len(d.dsts) < addrBits {
		b := uint8(len(d.dsts))
		d.dsts[k] = b
		return uint(b)
	}
	return uint(d.mix(binary.LittleEndian.Uint64(k[:8])^binary.LittleEndian.Uint64(k[8:])*0x9e3779b97f4a7c15) % addrBits)
}

// mix is a keyed 64-bit finaliser (splitmix64's), for the port and address
// sets.
func (d *Detector) mix(x uint64) uint64 {
	x ^= d.seed
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// level scores s by the rules in the package doc.
func (d *Detector) level(s *source) int {
	lv := tier(s.packets, &d.packetTiers)
	lv = max(lv, tier(uint32(s.addrBits), &d.sweepTiers))
	if s.types&signatureTypes != 0 {
		lv = max(lv+d.sigBoost, d.sigLevel)
	} else if s.types&rawSYNTypes != 0 && lv > 0 {
		lv += d.rawSYNBoost
	}
	if d.rawSYNPorts > 0 && s.types&TypeSYN != 0 && s.portCount() >= d.rawSYNPorts {
		lv = max(lv, d.rawSYNLevel)
	}
	lv = min(lv, 5)
	if lv > 1 && s.breadth() < d.minPorts {
		lv = 1
	}
	return lv
}

func tier(n uint32, tiers *[5]uint32) int {
	lv := 0
	for _, t := range tiers {
		if n < t {
			break
		}
		lv++
	}
	return lv
}

// Len is the number of sources tracked.
func (d *Detector) Len() int { return d.table.n }

// Level returns a's danger level in its current window at now: 0 if a is
// not tracked or its window has ended. It does not count as seeing a.
func (d *Detector) Level(a netip.Addr, now time.Time) int {
	k := a.Unmap().As16()
	i := d.table.find(&k)
	if i == none {
		return 0
	}
	s := d.at(i)
	if now.UnixNano()-s.first > d.window {
		return 0
	}
	return int(s.level)
}

// Forget drops what is known of a: after a block, so that the source is
// judged afresh when the block ends. (Without it the source keeps its level
// until the window ends, and is not reported again below a higher level.)
func (d *Detector) Forget(a netip.Addr) {
	k := a.Unmap().As16()
	d.table.remove(&k)
}

// Known NFLOG prefixes, as internal/firewall names them: counted in fixed
// slots. Others (kernel log lines) take one of maxOtherPrefixes slots as
// they arrive; the rest share the last.
var knownPrefixes = [...]string{
	"moat:closed", "moat:invalid", "moat:allflags", "moat:null", "moat:xmas",
	"moat:synfin", "moat:synrst", "moat:finnoack", "moat:nosyn", "moat:fragment",
}

const maxOtherPrefixes = 16

func (d *Detector) countPrefix(prefix []byte) {
	i := -1
	switch string(prefix) {
	case "moat:closed":
		i = 0
	case "moat:invalid":
		i = 1
	case "moat:allflags":
		i = 2
	case "moat:null":
		i = 3
	case "moat:xmas":
		i = 4
	case "moat:synfin":
		i = 5
	case "moat:synrst":
		i = 6
	case "moat:finnoack":
		i = 7
	case "moat:nosyn":
		i = 8
	case "moat:fragment":
		i = 9
	default:
		for k, o := range d.others {
			if o == string(prefix) {
				i = len(knownPrefixes) + k
				break
			}
		}
		if i < 0 {
			if len(d.others) < maxOtherPrefixes {
				d.others = append(d.others, string(prefix))
				i = len(knownPrefixes) + len(d.others) - 1
			} else {
				i = len(d.prefixes) - 1
			}
		}
	}
	d.prefixes[i]++
}

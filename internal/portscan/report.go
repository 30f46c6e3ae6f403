package portscan

import (
	"cmp"
	"math/bits"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/moat-fw/moat/internal/osfp"
	"github.com/moat-fw/moat/internal/packet"
)

// Report is what `psad -S` shows: the top sources, the most scanned ports,
// the packets per log prefix, and totals.
type Report struct {
	At            time.Time      `json:"at"`
	WindowSeconds int64          `json:"window_seconds"`
	Sources       []SourceReport `json:"sources"` // by level, then probes, then last seen
	Ports         []PortReport   `json:"ports"`   // by probes
	Prefixes      []PrefixReport `json:"prefixes"`
	// Levels counts the tracked sources at each level, 0 to 5.
	Levels [6]int `json:"levels"`
	// TypeSources counts the tracked sources that sent each kind of
	// probe, by ScanTypes bit: psad's signature matches.
	TypeSources [numTypes]int `json:"type_sources"`
	Totals      Totals        `json:"totals"`
}

// SourceReport is one source's current window, or its last one if no
// probe came since the window ended (Active false).
type SourceReport struct {
	Addr       netip.Addr `json:"addr"`
	Level      int        `json:"level"`
	Types      []string   `json:"types"`
	Packets    int        `json:"packets"`     // probes
	Ports      int        `json:"ports"`       // distinct destination ports (estimated past 8)
	PortLow    uint16     `json:"port_low"`    // lowest and highest port probed
	PortHigh   uint16     `json:"port_high"`   //
	LocalAddrs int        `json:"local_addrs"` // distinct local addresses probed
	Protocols  []string   `json:"protocols"`
	TCPFlags   []string   `json:"tcp_flags"` // combinations seen, tcpdump's letters ("S", "FPU", ".")
	First      time.Time  `json:"first"`
	Last       time.Time  `json:"last"`
	Active     bool       `json:"active"`
	// Fingerprint is the window's first SYN, p0f-like
	// ("64:1460:64240:mss,sok,ts,nop,ws:ws7:df"), and OS what it looks
	// like (package osfp): a guess, every field the sender's to choose.
	Fingerprint string      `json:"fingerprint,omitempty"`
	OS          *osfp.Guess `json:"os,omitempty"`
}

// PortReport is one port's probes since the detector started.
type PortReport struct {
	Proto   string `json:"proto"` // "tcp", "udp", "sctp"
	Port    uint16 `json:"port"`
	Packets uint64 `json:"packets"`
}

// PrefixReport counts the packets observed with one log prefix.
type PrefixReport struct {
	Prefix  string `json:"prefix"`
	Packets uint64 `json:"packets"`
}

// Totals count every packet observed since the detector started.
type Totals struct {
	Packets  uint64 `json:"packets"`  // observed
	Probes   uint64 `json:"probes"`   // scored
	Unscored uint64 `json:"unscored"` // not probes: forgotten connections, backscatter, multicast...
	Ignored  uint64 `json:"ignored"`  // from addresses Config.Ignore matched
	Knock    uint64 `json:"knock"`    // door knocks
	TCP      uint64 `json:"tcp"`
	UDP      uint64 `json:"udp"`
	ICMP     uint64 `json:"icmp"` // ICMP and ICMPv6
	Other    uint64 `json:"other"`

	Sources      int    `json:"sources"`      // tracked now
	Destinations int    `json:"destinations"` // local addresses probed (psad's scan destinations)
	MaxSources   int    `json:"max_sources"`
	Evicted      uint64 `json:"evicted"` // sources forgotten to make room
}

// otherPrefix names the counter the prefixes past maxOtherPrefixes share.
const otherPrefix = "(other)"

// Report summarises the detector at now, with the topN sources and ports
// (all of them if topN <= 0).
func (d *Detector) Report(now time.Time, topN int) Report {
	r := Report{At: now, WindowSeconds: d.window / int64(time.Second), Totals: d.totals}
	r.Totals.Sources, r.Totals.MaxSources, r.Totals.Evicted = d.table.n, d.table.max, d.table.evicted
	r.Totals.Destinations = len(d.dsts)
	ts := now.UnixNano()

	better := func(a, b uint32) bool {
		sa, sb := d.at(a), d.at(b)
		if c := cmp.Compare(sa.level, sb.level); c != 0 {
			return c > 0
		}
		if c := cmp.Compare(sa.packets, sb.packets); c != 0 {
			return c > 0
		}
		return sa.last > sb.last
	}
	top := newTopK(topN, better)
	for i := d.table.head; i != none; i = d.at(i).next {
		r.Levels[d.at(i).level]++
		for t := d.at(i).types; t != 0; t &= t - 1 {
			r.TypeSources[bits.TrailingZeros32(uint32(t))]++
		}
		top.add(i)
	}
	for _, i := range top.sorted() {
		r.Sources = append(r.Sources, d.sourceReport(d.at(i), ts))
	}

	type portKey struct {
		proto int
		port  uint16
	}
	ptop := newTopK(topN, func(a, b portKey) bool {
		ca, cb := d.ports.get(a.proto, a.port), d.ports.get(b.proto, b.port)
		if ca != cb {
			return ca > cb
		}
		return a.proto < b.proto || a.proto == b.proto && a.port < b.port
	})
	d.ports.each(func(proto int, port uint16) { ptop.add(portKey{proto, port}) })
	for _, k := range ptop.sorted() {
		r.Ports = append(r.Ports, PortReport{[...]string{"tcp", "udp", "sctp"}[k.proto], k.port, uint64(d.ports.get(k.proto, k.port))})
	}

	for i, n := range d.prefixes {
		if n == 0 {
			continue
		}
		name := otherPrefix
		switch {
		case i < len(knownPrefixes):
			name = knownPrefixes[i]
		case i-len(knownPrefixes) < len(d.others):
			name = d.others[i-len(knownPrefixes)]
		}
		r.Prefixes = append(r.Prefixes, PrefixReport{name, n})
	}
	return r
}

func (d *Detector) sourceReport(s *source, ts int64) SourceReport {
	sr := SourceReport{
		Addr:       netip.AddrFrom16(s.key).Unmap(),
		Level:      int(s.level),
		Types:      s.types.Names(),
		Packets:    int(s.packets),
		Ports:      s.portCount(),
		PortLow:    s.lowPort,
		PortHigh:   s.highPort,
		LocalAddrs: int(s.addrBits),
		First:      time.Unix(0, s.first),
		Last:       time.Unix(0, s.last),
		Active:     ts-s.first <= d.window,
	}
	if s.syn.Seen() {
		sr.Fingerprint = s.syn.Summary()
		if g, ok := osfp.Match(s.syn); ok {
			sr.OS = &g
		}
	}
	for proto := range 256 {
		if s.protos[proto>>6]&(1<<(proto&63)) != 0 {
			sr.Protocols = append(sr.Protocols, protoName(uint8(proto)))
		}
	}
	for f := range 64 {
		if s.flags&(1<<f) != 0 {
			sr.TCPFlags = append(sr.TCPFlags, packet.Flags(f).String())
		}
	}
	return sr
}

func protoName(p uint8) string {
	switch p {
	case packet.ProtoTCP:
		return "tcp"
	case packet.ProtoUDP:
		return "udp"
	case packet.ProtoICMP:
		return "icmp"
	case packet.ProtoICMPv6:
		return "icmpv6"
	case packet.ProtoSCTP:
		return "sctp"
	case packet.ProtoUDPLite:
		return "udplite"
	case packet.ProtoDCCP:
		return "dccp"
	}
	return strconv.Itoa(int(p))
}

// topK keeps the n best values seen (all if n <= 0) in a heap whose root
// is the worst kept, so picking the top of N values costs N·log n.
type topK[T any] struct {
	n      int
	better func(a, b T) bool
	h      []T
}

func newTopK[T any](n int, better func(a, b T) bool) *topK[T] {
	return &topK[T]{n: n, better: better}
}

func (t *topK[T]) add(v T) {
	if t.n <= 0 || len(t.h) < t.n {
		t.h = append(t.h, v)
		if t.n > 0 {
			t.up(len(t.h) - 1)
		}
		return
	}
	if !t.better(v, t.h[0]) {
		return
	}
	t.h[0] = v
	t.down(0)
}

// worse orders the heap: the root is the worst.
func (t *topK[T]) worse(i, j int) bool { return t.better(t.h[j], t.h[i]) }

func (t *topK[T]) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !t.worse(i, p) {
			return
		}
		t.h[i], t.h[p] = t.h[p], t.h[i]
		i = p
	}
}

func (t *topK[T]) down(i int) {
	for {
		l, m := 2*i+1, i
		if l < len(t.h) && t.worse(l, m) {
			m = l
		}
		if r := l + 1; r < len(t.h) && t.worse(r, m) {
			m = r
		}
		if m == i {
			return
		}
		t.h[i], t.h[m] = t.h[m], t.h[i]
		i = m
	}
}

// sorted returns the values kept, best first.
func (t *topK[T]) sorted() []T {
	slices.SortFunc(t.h, func(a, b T) int {
		switch {
		case t.better(a, b):
			return -1
		case t.better(b, a):
			return 1
		}
		return 0
	})
	return t.h
}

// Source reports what is known of one source, as Report reports the top
// ones; false when it is not tracked.
func (d *Detector) Source(a netip.Addr, now time.Time) (SourceReport, bool) {
	k := a.Unmap().As16()
	i := d.table.find(&k)
	if i == none {
		return SourceReport{}, false
	}
	return d.sourceReport(d.at(i), now.UnixNano()), true
}

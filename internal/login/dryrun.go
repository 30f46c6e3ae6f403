package login

import (
	"net/netip"
	"slices"
	"time"
)

// DryRun is a Policy that keeps its bans in memory, for `moat explain`:
// the guard's decisions applied with no kernel and no store, so what it
// holds is what the daemon would have banned.
type DryRun struct {
	spared func(p netip.Prefix) (why string, ok bool)
	banFor func(n int) time.Duration // the length of a prefix's n-th ban
	bans   map[netip.Prefix]dryBan
	// lens are the prefix lengths among bans, so that Banned looks an
	// address up once per length instead of walking every ban (explain
	// asks on every line of an address at its threshold); unmasked: a ban
	// whose prefix has host bits set, which only the walk finds.
	lens     []int
	unmasked bool
}

type dryBan struct {
	until time.Time
	n     int // bans of the prefix so far
}

var _ Policy = (*DryRun)(nil)

// NewDryRun returns an empty dry run. spared says why a prefix must not be
// banned, as the ban policy does (the allow list, the protected set; nil:
// nothing is spared): failures of a spared address are not counted, and a
// ban that covers one is refused. banFor gives the length of a prefix's
// n-th ban (n >= 1), as the daemon's backoff does.
func NewDryRun(spared func(netip.Prefix) (string, bool), banFor func(n int) time.Duration) *DryRun {
	return &DryRun{spared: spared, banFor: banFor, bans: map[netip.Prefix]dryBan{}}
}

// Exempt implements Policy.
func (d *DryRun) Exempt(a netip.Addr, _ time.Time) (string, bool) {
	if d.spared == nil {
		return "", false
	}
	return d.spared(netip.PrefixFrom(a, a.BitLen()))
}

// Banned implements Policy.
func (d *DryRun) Banned(a netip.Addr, now time.Time) bool {
	if !d.unmasked {
		if !a.IsValid() || a.Zone() != "" {
			return false // as Prefix.Contains
		}
		for _, n := range d.lens {
			p, err := a.Prefix(n)
			if err != nil {
				continue // longer than the address: another family
			}
			if b, ok := d.bans[p]; ok && now.Before(b.until) {
				return true
			}
		}
		return false
	}
	for p, b := range d.bans {
		if now.Before(b.until) && p.Contains(a) {
			return true
		}
	}
	return false
}

// BannedWithin implements Policy.
func (d *DryRun) BannedWithin(p netip.Prefix, now time.Time) int {
	n := 0
	for q, b := range d.bans {
		if now.Before(b.until) && q.Bits() >= p.Bits() && p.Contains(q.Addr()) {
			n++
		}
	}
	return n
}

// Apply applies decs at now as the daemon does (an escalation only after
// its address's ban) and returns the bans it made, in order.
func (d *DryRun) Apply(decs []Decision, now time.Time) []Decision {
	var out []Decision
	took := false
	for _, dec := range decs {
		if dec.Action != Ban || dec.Escalation && !took {
			continue
		}
		if d.spared != nil {
			if _, ok := d.spared(dec.Prefix); ok {
				took = false // refused, as the ban policy refuses it
				continue
			}
		}
		b, ok := d.bans[dec.Prefix]
		if !ok {
			if n := dec.Prefix.Bits(); !slices.Contains(d.lens, n) {
				d.lens = append(d.lens, n)
			}
			d.unmasked = d.unmasked || dec.Prefix != dec.Prefix.Masked()
		}
		b.n++
		b.until = now.Add(d.banFor(b.n))
		d.bans[dec.Prefix] = b
		took = true
		out = append(out, dec)
	}
	return out
}

// Prefixes lists every prefix the dry run ever banned.
func (d *DryRun) Prefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(d.bans))
	for p := range d.bans {
		out = append(out, p)
	}
	return out
}

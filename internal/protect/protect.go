// Package protect knows the addresses no guard may ever ban: the host's
// routers and resolvers, the host itself, link-local sources, the peers of
// the host's own outgoing connections, logged-in SSH sessions and door-grant
// holders. A ban of any of them, made from a forged packet or a forged log
// line, would cut the host off from its own network or its administrator:
// that is how an attacker aims a guard at the host it protects.
//
// A Set is an immutable snapshot; the daemon rebuilds it as the system
// changes (Discover) and the ban policy consults it on every ban.
package protect

import (
	"cmp"
	"net/netip"
	"slices"
)

// Reasons an address is protected, as `moat status` prints them.
const (
	WhyLinkLocal = "link-local source (routers, neighbour discovery, DHCP)"
	WhyRouter    = "default router"
	WhyResolver  = "DNS resolver"
	WhyHost      = "one of this host's own addresses"
	WhyOutgoing  = "peer of a connection this host opened"
	WhySession   = "logged-in SSH session"
	WhyCaller    = "SSH session of whoever started moat"
	WhyGrant     = "holds a door grant"
)

// LinkLocal are the link-local prefixes: routers advertise from fe80::/10,
// neighbour discovery and DHCP come from there, and a ban would break the
// link itself. Nobody off the link can reach the host from them.
var LinkLocal = []Entry{
	{Prefix: netip.MustParsePrefix("fe80::/10"), Why: WhyLinkLocal},
	{Prefix: netip.MustParsePrefix("169.254.0.0/16"), Why: WhyLinkLocal},
}

// Entry is one protected address (a host prefix) or prefix and why.
type Entry struct {
	Prefix netip.Prefix
	Why    string
}

// Set is a snapshot of the protected addresses. The zero value protects
// nothing; a nil *Set is valid and protects nothing.
type Set struct {
	hosts    map[netip.Addr]string // host entries, unmapped
	prefixes []Entry               // wider entries, few
}

// maxHosts bounds a snapshot: the sources (sessions, outgoing connections)
// are the host's own, but a busy host must not grow it without limit.
const maxHosts = 1 << 16

// New builds a set from entries. The first reason given for an address is
// kept (callers list the strongest reasons first); host entries beyond
// maxHosts are dropped.
func New(entries ...[]Entry) *Set {
	s := &Set{hosts: map[netip.Addr]string{}}
	for _, es := range entries {
		for _, e := range es {
			p := normalize(e.Prefix)
			if !p.IsValid() {
				continue
			}
			if p.IsSingleIP() {
				if _, ok := s.hosts[p.Addr()]; !ok && len(s.hosts) < maxHosts {
					s.hosts[p.Addr()] = e.Why
				}
				continue
			}
			if !slices.ContainsFunc(s.prefixes, func(q Entry) bool { return q.Prefix == p }) {
				s.prefixes = append(s.prefixes, Entry{Prefix: p, Why: e.Why})
			}
		}
	}
	return s
}

// normalize unmaps IPv4-mapped host addresses (sshd and /proc report IPv4
// clients of dual-stack sockets that way) and masks host bits.
func normalize(p netip.Prefix) netip.Prefix {
	if !p.IsValid() {
		return p
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96).Masked()
	}
	return netip.PrefixFrom(p.Addr().WithZone(""), p.Bits()).Masked()
}

// Host makes a host entry.
func Host(a netip.Addr, why string) Entry {
	a = a.Unmap().WithZone("")
	return Entry{Prefix: netip.PrefixFrom(a, a.BitLen()), Why: why}
}

// Covers says why a is protected, if it is. An IPv4-mapped address is
// looked up as itself: a wire address is never unmapped into the other
// family (a ban of ::ffff:a.b.c.d must not protect or cover a.b.c.d).
func (s *Set) Covers(a netip.Addr) (string, bool) {
	if s == nil || !a.IsValid() {
		return "", false
	}
	if why, ok := s.hosts[a.WithZone("")]; ok {
		return why, true
	}
	for _, e := range s.prefixes {
		if e.Prefix.Contains(a.WithZone("")) {
			return e.Why, true
		}
	}
	return "", false
}

// Overlaps returns a protected entry that a ban of p would cover, or that
// covers p: banning p would ban it.
func (s *Set) Overlaps(p netip.Prefix) (Entry, bool) {
	if s == nil || !p.IsValid() {
		return Entry{}, false
	}
	p = p.Masked()
	if p.IsSingleIP() {
		if why, ok := s.Covers(p.Addr()); ok {
			return Entry{Prefix: p, Why: why}, true
		}
		return Entry{}, false
	}
	for _, e := range s.prefixes {
		if e.Prefix.Overlaps(p) {
			return e, true
		}
	}
	// A wide ban is rare (manual CIDRs, the IPv6 /64 escalation): a walk
	// over the hosts is fine.
	var best Entry
	found := false
	for a, why := range s.hosts {
		if p.Contains(a) && (!found || a.Less(best.Prefix.Addr())) {
			best, found = Entry{Prefix: netip.PrefixFrom(a, a.BitLen()), Why: why}, true
		}
	}
	return best, found
}

// Entries lists the set, prefixes first, then hosts by address.
func (s *Set) Entries() []Entry {
	if s == nil {
		return nil
	}
	out := append([]Entry(nil), s.prefixes...)
	hosts := make([]Entry, 0, len(s.hosts))
	for a, why := range s.hosts {
		hosts = append(hosts, Entry{Prefix: netip.PrefixFrom(a, a.BitLen()), Why: why})
	}
	slices.SortFunc(hosts, func(x, y Entry) int { return x.Prefix.Addr().Compare(y.Prefix.Addr()) })
	slices.SortFunc(out, func(x, y Entry) int {
		return cmp.Or(x.Prefix.Addr().Compare(y.Prefix.Addr()), cmp.Compare(x.Prefix.Bits(), y.Prefix.Bits()))
	})
	return append(out, hosts...)
}

// Len is the number of entries.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.hosts) + len(s.prefixes)
}

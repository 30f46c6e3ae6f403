package daemon

import (
	"net/netip"
	"time"

	"github.com/moat-fw/moat/internal/events"
	"github.com/moat-fw/moat/internal/store"
)

// banEvent is the event of a ban that took. Ports is set for a ban
// limited to some ports (a jail's), so that nobody who watches mistakes
// it for a whole-host ban.
func banEvent(e store.Entry, now time.Time) events.Event {
	return events.Event{Time: now, Kind: events.Ban, Prefix: e.Prefix, Origin: e.Origin, Reason: e.Reason,
		Until: e.Expires, Count: e.Count, Ports: banPortStrings(e.Ports), Host: e.Host}
}

// hostPrefix is the single-address prefix of a, written as the grant book
// keeps it; invalid if it does not parse.
func hostPrefix(a string) netip.Prefix {
	addr, err := netip.ParseAddr(a)
	if err != nil {
		return netip.Prefix{}
	}
	return netip.PrefixFrom(addr, addr.BitLen())
}

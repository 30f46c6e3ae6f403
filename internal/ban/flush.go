package ban

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/store"
)

// DelAll lifts every ban, whoever made it (the guards or an admin), in
// one kernel transaction: the reference guide's flush script's "unblock
// all blocked IPs", psad -F. The allow list stays. It returns the bans it
// lifted.
func (m *Manager) DelAll(now time.Time) ([]store.Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	defer m.inTurn()()
	lifted := m.bans.sorted(now)
	prefixes := make([]netip.Prefix, 0, m.bans.len())
	m.bans.each(func(r *rec) { prefixes = append(prefixes, r.k.prefix()) })
	// Innermost first: a host inside a banned prefix is not in the kernel
	// (the prefix covers it), and once every inner ban is gone, lifting the
	// prefix promotes nothing. So the kernel change is deletions only.
	slices.SortFunc(prefixes, func(a, b netip.Prefix) int { return cmp.Compare(b.Bits(), a.Bits()) })
	var del, add []firewall.Element
	var serrs []error
	for _, p := range prefixes {
		d, a, _ := m.bans.remove(p, now)
		del, add = append(del, d...), append(add, a...)
		if _, err := m.store.DelBan(p); err != nil {
			serrs = append(serrs, err)
		}
	}
	plifted, perr, pserr := m.delAllPorts(now)
	lifted = append(lifted, plifted...)
	serrs = append(serrs, pserr)
	if err := errors.Join(m.enf.Update(firewall.Bans, del, add), perr); err != nil {
		return lifted, fmt.Errorf("unban all: %w", err)
	}
	if err := errors.Join(serrs...); err != nil {
		return lifted, fmt.Errorf("unban all: removed from the kernel, but the store could not be updated (they come back at restart): %w", err)
	}
	return lifted, nil
}

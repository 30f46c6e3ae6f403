package ban

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/protect"
	"github.com/moat-fw/moat/internal/store"
)

// Port-limited bans (a fail2ban jail's `port = http,https`): the address
// is dropped on those ports only. They live beside the whole-host bans:
// their own kernel sets (firewall.SetPortBan4/6, one element per address,
// protocol and port, each with its timeout) and their own records here,
// under the same policy (unbannable, protected, allowed addresses are
// refused alike) and in the same store records, with the ports in
// store.Entry.Ports. They are for single addresses: a wider prefix is
// banned whole or not at all.

// PortEnforcer changes port-limited ban elements in the kernel. The
// manager's Enforcer must implement it for Request.Ports to be taken.
type PortEnforcer interface {
	UpdatePortBans(del, add []firewall.PortBan) error
}

var _ PortEnforcer = (*firewall.Applier)(nil)

// maxBanPorts caps the ports of one port-limited ban, ranges expanded: a
// jail naming more is better banned whole.
const maxBanPorts = 256

// portBanned is the live port-limited bans, by address.
type portBanned map[netip.Addr]store.Entry

// load takes a stored port-limited ban at start.
func (pb portBanned) load(e store.Entry, now time.Time) {
	if e.Active(now) && e.Prefix.IsSingleIP() {
		pb[e.Prefix.Addr()] = e
	}
}

// addPorts is Add for a request with Ports, past the policy checks. It is
// called with m.mu held and releases it.
func (m *Manager) addPorts(r Request, p netip.Prefix, now time.Time) (store.Entry, error) {
	pe, ok := m.enf.(PortEnforcer)
	switch {
	case !ok:
		m.mu.Unlock()
		return store.Entry{}, Refuse("cannot ban %s on %s: this firewall has no port-limited bans", PrefixString(p), portList(r.Ports))
	case !p.IsSingleIP():
		m.mu.Unlock()
		return store.Entry{}, Refuse("cannot ban %s on %s: a ban limited to ports is for one address; ban the prefix on every port instead", p, portList(r.Ports))
	case len(r.Ports) > maxBanPorts:
		m.mu.Unlock()
		return store.Entry{}, Refuse("cannot ban %s on %d ports: at most %d; ban it on every port instead", PrefixString(p), len(r.Ports), maxBanPorts)
	case m.bans.covers(p.Addr(), now):
		m.mu.Unlock()
		return store.Entry{}, Refuse("%s is banned on every port already", PrefixString(p))
	}
	a := p.Addr()
	prev, _, err := m.store.History(p)
	if err != nil {
		prev = 0
	}
	old, had := m.ports[a]
	had = had && old.Active(now)
	prev = max(prev, old.Count)
	if r.Backoff != nil {
		r.For = r.Backoff.For(prev + 1)
	}
	e := store.Entry{Prefix: p, Origin: r.Origin, Reason: r.Reason, Created: now, Count: prev + 1, Ports: slices.Clone(r.Ports)}
	if e.Origin == "" {
		e.Origin = OriginManual
	}
	if r.For > 0 {
		e.Expires = now.Add(r.For)
	}
	// Another jail's ban of the same address on other ports: one record
	// with both sets of ports, lasting as long as the longer.
	if had {
		e.Ports = mergePorts(old.Ports, e.Ports)
		if old.Expires.IsZero() || (!e.Expires.IsZero() && old.Expires.After(e.Expires)) {
			e.Expires = old.Expires
		}
	}
	m.ports[a] = e
	var del []firewall.PortBan
	if had {
		del = portElements(old, now)
	}
	add := portElements(e, now)
	// Deleting first refreshes the timeouts of ports banned already (an
	// add alone leaves an element's timeout as it was); if an old element
	// timed out meanwhile the delete fails, and the add alone does.
	kerr := pe.UpdatePortBans(del, add)
	if kerr != nil && len(del) > 0 {
		kerr = pe.UpdatePortBans(nil, add)
	}
	wait, done := m.storeTurn()
	report := m.storeErr
	m.mu.Unlock()
	what := fmt.Sprintf("ban %s on %s", PrefixString(p), portList(e.Ports))
	if r.NoWait {
		go func() {
			wait()
			if _, err := m.store.PutBan(e); err != nil && report != nil {
				report(fmt.Errorf("%s is in the kernel but %w (it is lost if moat restarts before it expires): %w", what, ErrNotPersisted, err))
			}
			done()
		}()
		if kerr != nil {
			return e, fmt.Errorf("%s is not in the kernel: %w", what, kerr)
		}
		return e, nil
	}
	wait()
	_, serr := m.store.PutBan(e)
	done()
	switch {
	case kerr != nil:
		return e, fmt.Errorf("%s is not in the kernel: %w", what, kerr)
	case serr != nil:
		return e, fmt.Errorf("%s is in the kernel but %w (it is lost if moat restarts before it expires): %w", what, ErrNotPersisted, serr)
	}
	return e, nil
}

// portElements are the kernel elements of a port-limited ban, each with
// the time the ban has left (none: no timeout).
func portElements(e store.Entry, now time.Time) []firewall.PortBan {
	var left time.Duration
	if !e.Expires.IsZero() {
		left = max(e.Expires.Sub(now), time.Second)
	}
	out := make([]firewall.PortBan, len(e.Ports))
	for i, pt := range e.Ports {
		out[i] = firewall.PortBan{Addr: e.Prefix.Addr(), Proto: pt.Proto, Port: pt.Port, Timeout: left}
	}
	return out
}

func mergePorts(a, b []store.Port) []store.Port {
	out := slices.Clone(a)
	for _, p := range b {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

func portList(ps []store.Port) string {
	s := ""
	for i, p := range ps {
		if i > 0 {
			s += ","
		}
		s += p.String()
	}
	return s
}

// PortBanElements returns the live port-limited bans' kernel elements, for
// a full table install (which empties their sets).
func (m *Manager) PortBanElements(now time.Time) []firewall.PortBan {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []firewall.PortBan
	for _, a := range slices.SortedFunc(maps.Keys(m.ports), netip.Addr.Compare) {
		if e := m.ports[a]; e.Active(now) {
			out = append(out, portElements(e, now)...)
		}
	}
	return out
}

// expirePorts forgets the port-limited bans that ended (the kernel's
// elements end by themselves) and returns their prefixes, for the store.
// Called with m.mu held.
func (m *Manager) expirePorts(now time.Time) []netip.Prefix {
	var gone []netip.Prefix
	for a, e := range m.ports {
		if !e.Active(now) {
			delete(m.ports, a)
			gone = append(gone, e.Prefix)
		}
	}
	return gone
}

// delPorts lifts the port-limited bans inside p. Called with m.mu held.
func (m *Manager) delPorts(p netip.Prefix, now time.Time) (found bool, err error) {
	pe, _ := m.enf.(PortEnforcer)
	for a, e := range m.ports {
		if !p.Contains(a) {
			continue
		}
		delete(m.ports, a)
		if !e.Active(now) || pe == nil {
			continue
		}
		found = true
		if uerr := pe.UpdatePortBans(portElements(e, now), nil); uerr != nil && err == nil {
			err = uerr
		}
	}
	return found, err
}

// nextPortExpiry is when the next port-limited ban ends. Called with m.mu
// held.
func (m *Manager) nextPortExpiry() time.Time {
	var next time.Time
	for _, e := range m.ports {
		if !e.Expires.IsZero() && (next.IsZero() || e.Expires.Before(next)) {
			next = e.Expires
		}
	}
	return next
}

// delAllPorts lifts every port-limited ban, for DelAll: it returns the
// live ones, the kernel's error and the store's. Called with m.mu held,
// in the store's turn.
func (m *Manager) delAllPorts(now time.Time) (lifted []store.Entry, kerr, serr error) {
	var serrs []error
	for _, e := range m.ports {
		if e.Active(now) {
			lifted = append(lifted, e)
		}
		if _, err := m.store.DelBan(e.Prefix); err != nil {
			serrs = append(serrs, err)
		}
	}
	var kerrs []error
	for _, all := range []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")} {
		_, err := m.delPorts(all, now)
		kerrs = append(kerrs, err)
	}
	slices.SortFunc(lifted, func(a, b store.Entry) int { return a.Prefix.Addr().Compare(b.Prefix.Addr()) })
	return lifted, errors.Join(kerrs...), errors.Join(serrs...)
}

// liftProtectedPorts lifts the guards' port-limited bans of addresses in a
// protected prefix (LiftProtected): a door's grant, for one, comes after
// the port bans in the ruleset.
func (m *Manager) liftProtectedPorts(pe protect.Entry, now time.Time) ([]store.Entry, error) {
	m.mu.Lock()
	var hit []store.Entry
	for a, e := range m.ports {
		if pe.Prefix.Contains(a) && e.Active(now) && Guarded(e.Origin) {
			hit = append(hit, e)
		}
	}
	m.mu.Unlock()
	var errs []error
	for i, e := range hit {
		if _, err := m.Del(e.Prefix, now); err != nil {
			errs = append(errs, err)
		}
		hit[i].Reason = fmt.Sprintf("%s; lifted: it covers %s, %s", e.Reason, PrefixString(pe.Prefix), pe.Why)
	}
	return hit, errors.Join(errs...)
}

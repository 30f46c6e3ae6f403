// Package ban is the one place bans and allows are decided: it applies policy
// (the allow list, the admin's own session, addresses that cannot be banned),
// records them in the store, and keeps the kernel's sets in step with it.
package ban

import (
	"errors"
	"fmt"
	"iter"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/protect"
	"github.com/moat-fw/moat/internal/store"
)

// Store is what the manager needs of the persistent store.
type Store interface {
	PutBan(e store.Entry) (store.Entry, error)
	PutBans(es []store.Entry) ([]store.Entry, error)
	DelBan(p netip.Prefix) (bool, error)
	Bans() ([]store.Entry, error)
	EachBan(size func(int), fn func(store.Entry)) error
	PruneBans(now time.Time) ([]store.Entry, error)
	DelEndedBans(ps []netip.Prefix, now time.Time) error
	PutAllow(e store.Entry) error
	DelAllow(p netip.Prefix) (bool, error)
	Allows() ([]store.Entry, error)
	PruneAllows(now time.Time) ([]store.Entry, error)
	History(p netip.Prefix) (count int, last time.Time, err error)
}

// Enforcer changes set elements in the kernel.
type Enforcer interface {
	Update(kind firewall.SetKind, del, add []firewall.Element) error
}

// Protector says whether a ban of p would cover an address that must never
// be banned (the host's routers, resolvers and own addresses, sessions,
// grants: see package protect), and which.
type Protector interface {
	Protected(p netip.Prefix) (protect.Entry, bool)
}

var (
	_ Store    = (*store.Store)(nil)
	_ Enforcer = (*firewall.Applier)(nil)
)

// Origins of bans and allows.
const (
	OriginManual    = "manual"
	OriginConfig    = "config"
	OriginRecovered = "recovered" // found in the kernel at start, missing from the store
)

// ErrRefused marks every refusal on policy grounds (as opposed to a failure):
// errors.Is(err, ErrRefused) holds for them.
var ErrRefused = errors.New("refused")

// refused is a policy refusal whose message is meant for the admin as is.
type refused struct{ msg string }

func (r refused) Error() string        { return r.msg }
func (r refused) Is(target error) bool { return target == ErrRefused }

// Refuse returns a policy refusal; errors.Is(err, ErrRefused) holds for it.
func Refuse(format string, args ...any) error { return refused{fmt.Sprintf(format, args...)} }

// ErrNotPersisted marks a ban that is in the kernel but could not be written
// to the store: it holds until it expires or moat restarts.
var ErrNotPersisted = errors.New("not saved to the store")

// Request asks for a ban.
type Request struct {
	Prefix  netip.Prefix
	For     time.Duration // zero: until removed
	Origin  string
	Reason  string
	Session netip.Addr   // the source of the caller's SSH session, if any
	Force   bool         // ban even the caller's own session source
	Backoff *Backoff     // when set, For is computed from how often p was banned before
	Ports   []store.Port // ban only these ports (a fail2ban jail's); empty: the whole host. For single addresses (ports.go)
	// NoWait returns once the kernel has the ban; the store write follows in
	// its turn and a failure goes to the handler set with OnStoreError. For
	// the guards, whose next line or packet must not wait for an fsync.
	NoWait bool
}

// Backoff makes repeat bans longer: the n-th ban of an address lasts
// Base * Multiplier^(n-1), up to Max.
type Backoff struct {
	Base       time.Duration
	Multiplier float64
	Max        time.Duration
}

// For returns the length of the n-th ban (n >= 1).
func (b Backoff) For(n int) time.Duration {
	d := float64(b.Base)
	for i := 1; i < n && d < float64(b.Max); i++ {
		d *= b.Multiplier
	}
	return min(time.Duration(min(d, float64(b.Max))), b.Max)
}

// Manager owns the live bans and allows. It is safe for concurrent use.
//
// A ban goes into the kernel first and into the store right after: an
// fsync on a busy disk takes tens of milliseconds, and an attacker must not
// get them. The kernel element carries its own timeout, so if moat dies
// between the two the ban still holds, and Adopt takes it back into the
// store at the next start. Store writes happen in the order of the changes
// in memory: each takes its turn while holding mu (storeTurn), and waits for
// it without holding mu, so bans go on reaching the kernel during an fsync.
type Manager struct {
	mu       sync.Mutex
	turn     chan struct{} // closed when the last store write to be queued is done
	storeErr func(error)   // NoWait store failures
	store    Store
	enf      Enforcer
	prot     Protector     // nil: nothing beyond unbannable and the allow list
	bans     *cover        // ban records, and what of them is in the kernel
	allows   *cover        // allow records (config and runtime)
	failed   writeFailures // store writes that failed (see Unsaved)
	ports    portBanned    // port-limited bans (ports.go)
	// pending records each ban before the kernel gets it, until its store
	// write is done (see SetPending); unsaved counts those not yet done.
	// Both are guarded by pmu, never held while waiting for anything: a
	// store write's turn ends with saved, while Del may hold mu waiting for
	// that turn.
	pmu     sync.Mutex
	pending Pending
	unsaved int
	// remote gathers AddRemote's store writes (see remoteWrite).
	remote remoteWrites
}

// Pending is the log of bans in the kernel whose store write may not have
// happened yet (store.Pending).
type Pending interface {
	Append(e store.Entry) error
	Clear() error
	Entries() ([]store.Entry, error)
}

var _ Pending = (*store.Pending)(nil)

// SetPending sets the log each ban is written to before the kernel gets
// it, and adopts into the store the bans a killed moat left in it: those
// whose store write had not happened. It returns them.
func (m *Manager) SetPending(p Pending, now time.Time) ([]store.Entry, error) {
	es, err := p.Entries()
	m.pmu.Lock()
	m.pending = p
	m.pmu.Unlock()
	if err != nil {
		return nil, err
	}
	var lost []firewall.Element
	for _, e := range es {
		if !e.Active(now) {
			continue
		}
		el := firewall.Element{Prefix: e.Prefix}
		if !e.Expires.IsZero() {
			el.Timeout = e.Expires.Sub(now)
		}
		lost = append(lost, el)
	}
	got, err := m.Adopt(lost, now)
	if err != nil {
		return got, err
	}
	return got, p.Clear()
}

// New loads live bans and allows from st. configAllow is the config's allow
// list: permanent, never stored. Nothing touches the kernel until Elements
// is used for a full install. Corrupt records are skipped and reported
// through warn: one bad record must not leave the host without its bans.
func New(st Store, enf Enforcer, configAllow []netip.Prefix, now time.Time, warn func(error)) (*Manager, error) {
	strs := newStrtab()
	m := &Manager{enf: enf, bans: newCover(strs), allows: newCover(strs), ports: portBanned{}}
	m.store = countingStore{Store: st, n: &m.failed.n}
	if _, err := st.PruneAllows(now); err != nil {
		return nil, err
	}
	// Streamed into the compact records: a million store.Entry values at
	// once would take 120 MB. The ended ones are deleted from the store
	// after, rather than in a scan of their own before.
	var ended []netip.Prefix
	err := st.EachBan(m.bans.reserve, func(e store.Entry) {
		if len(e.Ports) > 0 {
			m.ports.load(e, now) // a port-limited ban (ports.go)
			return
		}
		if e.Active(now) {
			m.bans.load(e)
		} else {
			ended = append(ended, e.Prefix)
		}
	})
	m.bans.loaded()
	if errors.Is(err, store.ErrCorrupt) {
		warn(err)
	} else if err != nil {
		return nil, err
	}
	if err := st.DelEndedBans(ended, now); err != nil {
		return nil, err
	}
	allows, err := st.Allows()
	if errors.Is(err, store.ErrCorrupt) {
		warn(err)
	} else if err != nil {
		return nil, err
	}
	for _, e := range allows {
		if e.Active(now) {
			m.allows.load(e)
		}
	}
	m.setConfigAllows(configAllow)
	return m, nil
}

func (m *Manager) setConfigAllows(ps []netip.Prefix) {
	var drop []netip.Prefix
	m.allows.each(func(r *rec) {
		if m.allows.strs.originName(r.origin) == OriginConfig {
			drop = append(drop, r.k.prefix())
		}
	})
	for _, p := range drop {
		m.allows.adel(p)
	}
	for _, p := range ps {
		p = p.Masked()
		m.allows.load(store.Entry{Prefix: p, Origin: OriginConfig, Reason: "[firewall] allow"})
	}
}

// Reconfigure replaces the config's allow list (on reload). The caller
// installs the table again with Elements afterwards.
func (m *Manager) Reconfigure(configAllow []netip.Prefix) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.setConfigAllows(configAllow)
}

// Elements returns the ban and allow elements for a full table install,
// and resets the view of what the kernel holds to them.
func (m *Manager) Elements(now time.Time) (bans, allows []firewall.Element) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bans.rebuild(now), m.allows.rebuild(now)
}

// Install puts every live ban and allow in the kernel through apply (a
// full table install: firewall.Applier.ApplyEach), and resets the view of
// what the kernel holds to them. The elements are not gathered: a million
// bans go from the records to the netlink buffer. It holds the manager's
// lock throughout, so a ban made meanwhile waits for the new table rather
// than going into the one being replaced.
func (m *Manager) Install(now time.Time, apply func(bans, allows iter.Seq[firewall.Element]) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return apply(m.bans.rebuildEach(now), m.allows.rebuildEach(now))
}

// Unbannable says why p may never be banned, or "".
func unbannable(p netip.Prefix) string {
	a := p.Addr()
	switch {
	case p.Bits() == 0:
		return "it covers every address"
	case a.IsLoopback():
		return "it is a loopback address, and loopback traffic is always accepted"
	case p.IsSingleIP() && a.IsUnspecified():
		// Only a host prefix is the unspecified address: a wider one
		// that starts there (0.0.0.0/1, ::/1) is a block of real
		// addresses, judged like any other wide ban.
		return "it is the unspecified address"
	case a.IsMulticast():
		return "it is a multicast address, never a packet's source"
	}
	return ""
}

// Add bans r.Prefix after checking policy. The kernel is changed before the
// store is written (see Manager); Add returns once both are done. If the
// store fails the ban is still enforced and the error says it was not saved.
func (m *Manager) Add(r Request, now time.Time) (store.Entry, error) {
	p := r.Prefix.Masked()
	if !p.IsValid() {
		return store.Entry{}, Refuse("%s is not an address or prefix", r.Prefix)
	}
	if why := unbannable(p); why != "" {
		return store.Entry{}, Refuse("cannot ban %s: %s", PrefixString(p), why)
	}
	if r.For < 0 {
		return store.Entry{}, Refuse("ban duration %s is negative", r.For)
	}
	if r.Session.IsValid() && !r.Force && p.Contains(r.Session.Unmap()) {
		return store.Entry{}, Refuse("banning %s would cut off %s, the source of your SSH session; add --force if you mean it", p, r.Session.Unmap())
	}
	// Asked before taking mu: the protector looks at the daemon's grants
	// and sessions, under locks of their own.
	manual := r.Origin == OriginManual || r.Origin == ""
	if e, ok := m.protected(p); ok && !(r.Force && manual) {
		if manual {
			return store.Entry{}, Refuse("cannot ban %s: it covers %s, %s; add --force if you mean it", PrefixString(p), PrefixString(e.Prefix), e.Why)
		}
		return store.Entry{}, Refuse("cannot ban %s: it covers %s, %s", PrefixString(p), PrefixString(e.Prefix), e.Why)
	}
	m.mu.Lock()
	if q, ok := m.allows.overlapping(p, now); ok {
		e, _ := m.allows.entry(q)
		m.mu.Unlock()
		return store.Entry{}, Refuse("cannot ban %s: it overlaps %s in the allow list (%s); remove that first", p, q, allowSource(e))
	}
	if len(r.Ports) > 0 {
		return m.addPorts(r, p, now) // releases mu
	}
	// The store counts bans per prefix as it writes; the count is needed
	// now, before the write. A write still in flight is not in History yet,
	// but a live ban's count is in meta.
	prev, _, err := m.store.History(p)
	if err != nil {
		prev = 0 // a corrupt history must not stop the ban
	}
	if cur, ok := m.bans.entry(p); ok {
		prev = max(prev, cur.Count)
	}
	if r.Backoff != nil {
		r.For = r.Backoff.For(prev + 1)
	}
	e := store.Entry{Prefix: p, Origin: r.Origin, Reason: r.Reason, Created: now, Count: prev + 1}
	if e.Origin == "" {
		e.Origin = OriginManual
	}
	if r.For > 0 {
		e.Expires = now.Add(r.For)
	}
	m.logPending(e)
	del, add := m.bans.put(p, e.Expires, now)
	m.bans.setEntry(e)
	kerr := m.enf.Update(firewall.Bans, del, add)
	wait, done := m.storeTurn()
	report := m.storeErr
	m.mu.Unlock()
	if r.NoWait {
		// Owned by the turn chain: Flush waits for it.
		go func() {
			wait()
			if _, err := m.store.PutBan(e); err != nil && report != nil {
				report(fmt.Errorf("ban %s is in the kernel but %w (it is lost if moat restarts before it expires): %w", p, ErrNotPersisted, err))
			}
			m.saved()
			done()
		}()
		if kerr != nil {
			return e, fmt.Errorf("ban %s is not yet in the kernel (moat retries at the next reconcile): %w", p, kerr)
		}
		return e, nil
	}
	wait()
	_, serr := m.store.PutBan(e)
	m.saved()
	done()
	switch {
	case kerr != nil && serr != nil:
		return e, fmt.Errorf("ban %s is neither in the kernel (moat retries at the next reconcile: %w) nor %w (it is lost if moat restarts): %w", p, kerr, ErrNotPersisted, serr)
	case kerr != nil:
		return e, fmt.Errorf("ban %s is saved but not yet in the kernel (moat retries at the next reconcile): %w", p, kerr)
	case serr != nil:
		return e, fmt.Errorf("ban %s is in the kernel but %w (it is lost if moat restarts before it expires): %w", p, ErrNotPersisted, serr)
	}
	return e, nil
}

// Adopt takes into the store the bans the kernel holds that the store does
// not: those moat put in the kernel and died before saving (see Manager).
// kernel is what the ban sets held at start, each with its time left. It
// runs before the table is installed again; what it adopts is in Elements.
// Allowed and unbannable prefixes are not adopted: the install drops them.
func (m *Manager) Adopt(kernel []firewall.Element, now time.Time) ([]store.Entry, error) {
	m.mu.Lock()
	prot := m.prot
	defer m.mu.Unlock()
	var es []store.Entry
	for _, el := range kernel {
		p := el.Prefix.Masked()
		if m.bans.within(p, now) || unbannable(p) != "" {
			continue
		}
		if el.Timeout > 0 && el.Timeout < time.Second {
			continue // the store's own ban just ended; the kernel's copy is timing out
		}
		if _, ok := m.allows.overlapping(p, now); ok {
			continue
		}
		if prot != nil {
			if _, ok := prot.Protected(p); ok {
				continue
			}
		}
		e := store.Entry{Prefix: p, Origin: OriginRecovered, Created: now,
			Reason: "in the kernel at start but not in the store: moat stopped before saving it"}
		if el.Timeout > 0 {
			e.Expires = now.Add(el.Timeout)
		}
		es = append(es, e)
	}
	if len(es) == 0 {
		return nil, nil
	}
	defer m.inTurn()()
	stored, serr := m.store.PutBans(es)
	if serr == nil {
		es = stored
	}
	for _, e := range es {
		m.bans.load(e)
	}
	if serr != nil {
		return es, fmt.Errorf("%d bans found only in the kernel are enforced but %w: %w", len(es), ErrNotPersisted, serr)
	}
	return es, nil
}

// logPending writes e to the pending log before the kernel gets it: a
// kill between the two must leave a trace.
func (m *Manager) logPending(e store.Entry) {
	m.pmu.Lock()
	defer m.pmu.Unlock()
	if m.pending == nil {
		return
	}
	if err := m.pending.Append(e); err != nil {
		m.failed.n.Add(1)
	}
	m.unsaved++
}

// saved notes that a ban's store write is done (or failed: then it is
// counted in Unsaved, and the store stays marked unclean). When none is
// left outstanding, the pending log is emptied.
func (m *Manager) saved() {
	m.pmu.Lock()
	defer m.pmu.Unlock()
	if m.pending == nil {
		return
	}
	if m.unsaved == 0 {
		return // logged before the log was set
	}
	if m.unsaved--; m.unsaved == 0 && m.failed.n.Load() == 0 {
		if err := m.pending.Clear(); err != nil {
			m.failed.n.Add(1)
		}
	}
}

// SetProtector sets the addresses no ban may cover (see Protector). Guards'
// bans that cover one are refused; a manual ban needs Force.
func (m *Manager) SetProtector(p Protector) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.prot = p
}

func (m *Manager) protected(p netip.Prefix) (protect.Entry, bool) {
	m.mu.Lock()
	prot := m.prot
	m.mu.Unlock()
	if prot == nil {
		return protect.Entry{}, false
	}
	return prot.Protected(p)
}

// Guarded reports whether origin is one of the guards' (or a ban recovered
// from the kernel, which a guard may have made): bans that policy may lift
// on its own when they turn out to cover a protected address. Manual and
// config bans are the administrator's word and stay.
func Guarded(origin string) bool {
	return origin != OriginManual && origin != OriginConfig && origin != ""
}

// LiftProtected lifts the guards' bans that cover an entry of set: an
// address that became protected after it was banned (a new default route,
// a resolver changed by DHCP, a forged ban from before protection was
// known). It returns what it lifted.
func (m *Manager) LiftProtected(set *protect.Set, now time.Time) ([]store.Entry, error) {
	var lifted []store.Entry
	var errs []error
	for _, pe := range set.Entries() {
		for range 64 { // a protected prefix may overlap several bans
			m.mu.Lock()
			q, ok := m.bans.overlapping(pe.Prefix, now)
			e, _ := m.bans.entry(q)
			m.mu.Unlock()
			if !ok || !Guarded(e.Origin) {
				break
			}
			if _, err := m.Del(q, now); err != nil {
				errs = append(errs, err)
				break
			}
			e.Reason = fmt.Sprintf("%s; lifted: it covers %s, %s", e.Reason, PrefixString(pe.Prefix), pe.Why)
			lifted = append(lifted, e)
		}
		pl, perr := m.liftProtectedPorts(pe, now)
		lifted, errs = append(lifted, pl...), append(errs, perr)
	}
	return lifted, errors.Join(errs...)
}

// OnStoreError sets where the store failures of NoWait bans are reported.
func (m *Manager) OnStoreError(fn func(error)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.storeErr = fn
}

// Flush waits until every store write queued so far is done, held fleet
// bans included (see HoldRemoteWrites), so that the store can be closed
// (or marked complete) without losing a NoWait ban.
func (m *Manager) Flush() {
	m.ReleaseRemoteWrites(nil)
	m.mu.Lock()
	writers := slices.Clone(m.remote.releasing)
	m.mu.Unlock()
	for _, c := range writers {
		<-c
	}
	m.waitStore()
}

// waitStore waits for the store writes queued so far.
func (m *Manager) waitStore() {
	m.mu.Lock()
	wait, done := m.storeTurn()
	m.mu.Unlock()
	wait()
	done()
}

// storeTurn queues a store write behind those queued before it; call it
// holding mu, so the writes land in the order of the changes in memory.
// wait blocks until the earlier writes are done; done lets the next go.
func (m *Manager) storeTurn() (wait, done func()) {
	prev, next := m.turn, make(chan struct{})
	m.turn = next
	return func() {
		if prev != nil {
			<-prev
		}
	}, func() { close(next) }
}

// inTurn is storeTurn for a caller that keeps holding mu through its store
// writes: it waits for its turn and returns done.
func (m *Manager) inTurn() (done func()) {
	wait, done := m.storeTurn()
	wait()
	return done
}

// PrefixString prints a host prefix as its address and others as CIDR, as
// moat shows bans and allows.
func PrefixString(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

func allowSource(e store.Entry) string {
	if e.Origin == OriginConfig {
		return "from the config's [firewall] allow"
	}
	return "added with moat allow add"
}

// Del lifts a ban. It reports whether there was one.
func (m *Manager) Del(p netip.Prefix, now time.Time) (bool, error) {
	p = p.Masked()
	m.mu.Lock()
	defer m.mu.Unlock()
	defer m.inTurn()()
	del, add, found := m.bans.remove(p, now)
	pfound, perr := m.delPorts(p, now)
	found = found || pfound
	stored, serr := m.store.DelBan(p)
	if err := errors.Join(m.enf.Update(firewall.Bans, del, add), perr); err != nil {
		return found || stored, fmt.Errorf("unban %s: %w", p, err)
	}
	if serr != nil {
		return found || stored, fmt.Errorf("unban %s: removed from the kernel, but the store could not be updated (it comes back at restart): %w", p, serr)
	}
	return found || stored, nil
}

// List returns the live bans sorted by prefix.
func (m *Manager) List(now time.Time) []store.Entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	all := m.bans.sorted(now)
	n := len(all)
	for _, e := range m.ports {
		if e.Active(now) && m.bans.lookup(e.Prefix) == nil {
			all = append(all, e) // an address banned on some ports only
		}
	}
	if len(all) > n {
		slices.SortFunc(all, func(a, b store.Entry) int {
			if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
				return c
			}
			return a.Prefix.Bits() - b.Prefix.Bits()
		})
	}
	return all
}

// Covering returns the live bans that contain a, shortest prefix first:
// one lookup per prefix length in use, not a listing of every ban.
func (m *Manager) Covering(a netip.Addr, now time.Time) []store.Entry {
	a = a.Unmap()
	m.mu.Lock()
	defer m.mu.Unlock()
	at := nanos(now)
	var out []store.Entry
	lens := m.bans.alens(netip.PrefixFrom(a, a.BitLen()))
	for b := 0; b <= a.BitLen(); b++ {
		if lens[b] == 0 {
			continue
		}
		if r := m.bans.lookup(netip.PrefixFrom(a, b).Masked()); r != nil && alive(r.expires, at) {
			out = append(out, m.bans.entryOf(r))
		}
	}
	return out
}

// Each calls fn with every live ban, in no order, holding the manager's
// lock: a report's one pass over a million bans without a list of them.
// fn must not call the manager.
func (m *Manager) Each(now time.Time, fn func(store.Entry)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	at := nanos(now)
	m.bans.each(func(r *rec) {
		if alive(r.expires, at) {
			fn(m.bans.entryOf(r))
		}
	})
}

// CountByOrigin returns how many live bans each origin has.
func (m *Manager) CountByOrigin(now time.Time) map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	at := nanos(now)
	out := map[string]int{}
	m.bans.each(func(r *rec) {
		if alive(r.expires, at) {
			out[m.bans.strs.originName(r.origin)]++
		}
	})
	return out
}

// Counts returns the number of live bans and allows.
func (m *Manager) Counts() (bans, allows int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bans.len(), m.allows.len()
}

// AllowRequest asks to allow a source.
type AllowRequest struct {
	Prefix netip.Prefix
	For    time.Duration
	Reason string
}

// Allow adds a runtime allow entry. Bans that overlap it are lifted, since
// bans are enforced before allows; the lifted prefixes are returned.
func (m *Manager) Allow(r AllowRequest, now time.Time) (store.Entry, []netip.Prefix, error) {
	p := r.Prefix.Masked()
	if !p.IsValid() {
		return store.Entry{}, nil, Refuse("%s is not an address or prefix", r.Prefix)
	}
	if r.For < 0 {
		return store.Entry{}, nil, Refuse("allow duration %s is negative", r.For)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	defer m.inTurn()()
	if e, ok := m.allows.entry(p); ok && e.Origin == OriginConfig {
		return e, nil, nil // already allowed for good by the config
	}
	e := store.Entry{Prefix: p, Origin: OriginManual, Reason: r.Reason, Created: now}
	if r.For > 0 {
		e.Expires = now.Add(r.For)
	}
	if err := m.store.PutAllow(e); err != nil {
		return store.Entry{}, nil, err
	}
	var lifted []netip.Prefix
	for {
		q, ok := m.bans.overlapping(p, now)
		if !ok {
			break
		}
		del, add, _ := m.bans.remove(q, now)
		if _, err := m.store.DelBan(q); err != nil {
			return e, lifted, err
		}
		if err := m.enf.Update(firewall.Bans, del, add); err != nil {
			return e, lifted, err
		}
		lifted = append(lifted, q)
	}
	del, add := m.allows.put(p, e.Expires, now)
	m.allows.setEntry(e)
	if err := m.enf.Update(firewall.Allows, del, add); err != nil {
		return e, lifted, fmt.Errorf("allow %s is saved but not yet in the kernel: %w", p, err)
	}
	return e, lifted, nil
}

// Disallow removes a runtime allow entry. Config entries are refused: they
// change with the config.
func (m *Manager) Disallow(p netip.Prefix, now time.Time) (bool, error) {
	p = p.Masked()
	m.mu.Lock()
	defer m.mu.Unlock()
	defer m.inTurn()()
	if e, ok := m.allows.entry(p); ok && e.Origin == OriginConfig {
		return false, Refuse("%s comes from the config's [firewall] allow: remove it there and reload", p)
	}
	del, add, found := m.allows.remove(p, now)
	stored, serr := m.store.DelAllow(p)
	if err := m.enf.Update(firewall.Allows, del, add); err != nil {
		return found || stored, err
	}
	return found || stored, serr
}

// Allows returns the live allow entries, config ones included.
func (m *Manager) Allows(now time.Time) []store.Entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.allows.sorted(now)
}

// IsAllowed reports whether a is in the allow list.
func (m *Manager) IsAllowed(a netip.Addr, now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.allows.covers(a.Unmap(), now)
}

// Expire forgets what ended by now, in memory and in the store, and puts
// into the kernel what the ended prefixes covered. The store write waits its
// turn without the lock: bans go on meanwhile.
func (m *Manager) Expire(now time.Time) error {
	m.mu.Lock()
	gone, add := m.bans.expire(now)
	gone = append(gone, m.expirePorts(now)...)
	agone, aadd := m.allows.expire(now)
	errs := []error{m.enf.Update(firewall.Bans, nil, add), m.enf.Update(firewall.Allows, nil, aadd)}
	if len(gone) == 0 && len(agone) == 0 {
		m.mu.Unlock()
		return errors.Join(errs...)
	}
	wait, done := m.storeTurn()
	m.mu.Unlock()
	wait()
	defer done()
	errs = append(errs, m.store.DelEndedBans(gone, now))
	if len(agone) > 0 {
		_, err := m.store.PruneAllows(now)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// NextExpiry is when Expire next has work (zero: nothing expires).
func (m *Manager) NextExpiry() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	next := time.Time{}
	for _, t := range []time.Time{m.bans.next(), m.allows.next(), m.nextPortExpiry()} {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	return next
}

// Reconcile re-asserts elements the kernel lost. each reads what the
// kernel holds for a kind, element by element (see
// firewall.Applier.EachElement). It returns how many elements were re-added.
func (m *Manager) Reconcile(each func(firewall.SetKind, func(firewall.Element)) error, now time.Time) (int, error) {
	total := 0
	for _, k := range []firewall.SetKind{firewall.Bans, firewall.Allows} {
		m.mu.Lock()
		c := m.bans
		if k == firewall.Allows {
			c = m.allows
		}
		c.beginRead()
		m.mu.Unlock()
		// Read outside the lock: it takes seconds for a million, and bans
		// go on meanwhile; what they put is new, not missing. What was
		// read is marked in batches, each under the lock briefly.
		batch := make([]netip.Prefix, 0, 4096)
		flush := func() {
			m.mu.Lock()
			c.saw(batch)
			m.mu.Unlock()
			batch = batch[:0]
		}
		err := each(k, func(e firewall.Element) {
			if batch = append(batch, e.Prefix); len(batch) == cap(batch) {
				flush()
			}
		})
		flush()
		m.mu.Lock()
		miss := c.missing(now)
		var err2 error
		if err == nil && len(miss) > 0 {
			err2 = m.enf.Update(k, nil, miss)
		}
		m.mu.Unlock()
		if err != nil {
			return total, err
		}
		if err2 != nil {
			return total, err2
		}
		total += len(miss)
	}
	return total, nil
}

// Covered reports whether a live ban covers all of p.
func (m *Manager) Covered(p netip.Prefix, now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bans.within(p.Masked(), now)
}

// Active reports whether a live ban covers a.
func (m *Manager) Active(a netip.Addr, now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bans.covers(a.Unmap(), now)
}

// CountWithin returns how many live bans of origin lie inside p (p
// itself included).
func (m *Manager) CountWithin(p netip.Prefix, origin string, now time.Time) int {
	p = p.Masked()
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	at := nanos(now)
	count := func(r *rec) bool {
		if alive(r.expires, at) && m.bans.strs.originName(r.origin) == origin {
			n++
		}
		return true
	}
	if r := m.bans.lookup(p); r != nil {
		count(r)
	}
	m.bans.inside(p, count)
	return n
}

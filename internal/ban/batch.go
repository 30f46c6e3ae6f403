package ban

import (
	"bytes"
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/store"
)

// OriginFleet is the origin of bans another host shared through the fleet.
const OriginFleet = "fleet"

// Remote is a ban made by another host, to apply here.
type Remote struct {
	Prefix netip.Prefix
	Until  time.Time // when the ban ends at its source; zero: until removed
	Reason string
	Host   string // the host that made it
}

// Why a remote ban was not applied (Outcome.Skipped).
const (
	SkipInvalid     = "invalid"     // not a prefix, or one no ban may cover (loopback, everything...)
	SkipExpired     = "expired"     // it ended before it arrived
	SkipProtected   = "protected"   // it covers a protected address (see Protector)
	SkipAllowed     = "allowed"     // it overlaps the allow list
	SkipLongerLocal = "longer_here" // a ban here on the same prefix lasts as long or longer
)

// Outcome is what became of one remote ban.
type Outcome struct {
	Entry   store.Entry // the ban as recorded, when applied
	Skipped string      // why it was not applied; "" if it was
	Detail  string      // for a reader: what it covers, what it overlaps
}

// AddRemote applies bans made by other hosts, with origin OriginFleet and
// their host recorded. Policy is the guards': a remote ban never covers a
// protected address or the allow list, whatever its source said, and it
// never shortens a ban already here. Everything applied goes into the
// kernel in one transaction (up to chunk bans each) and joins the store
// write waiting for its turn (see remoteWrites): a host joining a fleet
// with many live bans installs them at once, not one by one.
// AddRemote returns once the kernel has them; the store write follows in
// its turn, as for the guards' NoWait bans, and a failure goes to the
// handler set with OnStoreError: the next remote ban must not wait for an
// fsync. Outcomes are in the order of rs; err is a kernel failure (the bans
// are then in memory and retried by the next reconcile, as for Add).
func (m *Manager) AddRemote(rs []Remote, now time.Time) ([]Outcome, error) {
	out := make([]Outcome, len(rs))
	// The protector is asked without mu (see Add).
	for i, r := range rs {
		p := r.Prefix.Masked()
		switch {
		case !p.IsValid() || unbannable(p) != "":
			out[i] = Outcome{Skipped: SkipInvalid, Detail: unbannable(p)}
		case !r.Until.IsZero() && !r.Until.After(now):
			out[i] = Outcome{Skipped: SkipExpired}
		default:
			if e, ok := m.protected(p); ok {
				out[i] = Outcome{Skipped: SkipProtected, Detail: fmt.Sprintf("it covers %s, %s", PrefixString(e.Prefix), e.Why)}
			}
		}
	}
	m.mu.Lock()
	es := make([]store.Entry, 0, len(rs))
	idx := make([]int, 0, len(rs))
	delta := kernelDelta{plain: make([]firewall.Element, 0, len(rs))}
	for i, r := range rs {
		if out[i].Skipped != "" {
			continue
		}
		p := r.Prefix.Masked()
		if q, ok := m.allows.overlapping(p, now); ok {
			out[i] = Outcome{Skipped: SkipAllowed, Detail: fmt.Sprintf("it overlaps %s in the allow list", PrefixString(q))}
			continue
		}
		old, had := m.bans.entry(p)
		if had && old.Active(now) && (old.Expires.IsZero() || !r.Until.IsZero() && !old.Expires.Before(r.Until)) {
			out[i] = Outcome{Skipped: SkipLongerLocal, Entry: old}
			continue
		}
		e := store.Entry{Prefix: p, Origin: OriginFleet, Reason: r.Reason, Host: r.Host, Created: now,
			Expires: r.Until, Count: old.Count + 1}
		// put hands back buffers it reuses: merge copies them.
		delta.merge(m.bans.put(p, e.Expires, now))
		m.bans.setEntry(e)
		es = append(es, e)
		idx = append(idx, i)
	}
	if len(es) == 0 {
		m.mu.Unlock()
		return out, nil
	}
	del, add := delta.lists()
	kerr := m.enf.Update(firewall.Bans, del, add[:min(len(add), chunk)])
	for i := chunk; i < len(add) && kerr == nil; i += chunk {
		kerr = m.enf.Update(firewall.Bans, nil, add[i:min(len(add), i+chunk)])
	}
	if m.remote.hold {
		for _, e := range es {
			m.remote.held = append(m.remote.held, keyOf(e.Prefix))
		}
	} else {
		m.queueRemote(es)
	}
	m.mu.Unlock()
	for j, i := range idx {
		out[i].Entry = es[j]
	}
	if kerr != nil {
		return out, fmt.Errorf("%d fleet bans are not yet in the kernel (moat retries at the next reconcile): %w", len(es), kerr)
	}
	return out, nil
}

// remoteWrites gathers the store writes of AddRemote: the bans of every
// AddRemote made while a write waits for its turn join that write, so a
// stream of small batches (a fleet publishing thousands of bans a second)
// costs one store transaction, and one fsync, per write rather than per
// batch. A write is joined only while its turn is still the last one
// queued: a Del queued after it must land after everything in it.
// mu guards the fields and is never held while waiting for anything (a
// write in its turn takes it, while Del may hold the manager's lock
// waiting for that turn).
type remoteWrites struct {
	mu      sync.Mutex
	cur     *remoteWrite
	backlog atomic.Int64 // bans queued and not yet written

	// While hold is set (a fleet's replay: HoldRemoteWrites), AddRemote
	// notes the keys of what it applied in held instead of queueing their
	// store writes. releasing has a channel per writer of a released hold,
	// closed when it is done, for Flush to wait on. The manager's mu
	// guards the three.
	hold      bool
	held      []key
	releasing []chan struct{}
}

// remoteWrite is one store write of fleet bans.
type remoteWrite struct {
	es     []store.Entry
	turn   chan struct{} // the manager's turn when it was queued
	closed bool          // its writer took es: no more joins
}

// queueRemote queues the store write of es; call it holding mu.
func (m *Manager) queueRemote(es []store.Entry) {
	q := &m.remote
	q.backlog.Add(int64(len(es)))
	q.mu.Lock()
	if w := q.cur; w != nil && !w.closed && w.turn == m.turn {
		w.es = append(w.es, es...)
		q.mu.Unlock()
		return
	}
	wait, done := m.storeTurn()
	w := &remoteWrite{es: es, turn: m.turn}
	q.cur = w
	q.mu.Unlock()
	report := m.storeErr
	// Owned by the turn chain: Flush waits for it.
	go func() {
		wait()
		q.mu.Lock()
		w.closed = true
		es := w.es
		w.es = nil
		q.mu.Unlock()
		var stored []store.Entry
		var serr error
		for i := 0; i < len(es) && serr == nil; i += chunk {
			var part []store.Entry
			part, serr = m.store.PutBans(es[i:min(len(es), i+chunk)])
			stored = append(stored, part...)
		}
		q.backlog.Add(-int64(len(es)))
		// The turn ends before mu is taken: Del and Allow hold mu while
		// they wait for their turn.
		done()
		if serr != nil {
			if report != nil {
				report(fmt.Errorf("%d fleet bans are in the kernel but %w (they are lost if moat restarts before they expire, until the fleet's replay brings them back): %w", len(es), ErrNotPersisted, serr))
			}
			return
		}
		m.mu.Lock()
		for _, e := range stored {
			if cur, ok := m.bans.entry(e.Prefix); ok && cur.Created.Equal(e.Created) && cur.Origin == OriginFleet {
				m.bans.setEntry(e) // the store's count
			}
		}
		m.mu.Unlock()
	}()
}

// HoldRemoteWrites defers the store writes of the fleet bans AddRemote
// applies until ReleaseRemoteWrites (or Flush). A host joining a fleet
// applies a whole bucket of them, a million perhaps, and the disk copy
// is for a restart while the fleet is unreachable, not for enforcement:
// written as they come, in the bucket's order, every store transaction
// touched leaves all over a growing tree (about 4 µs of CPU a ban),
// competing with the kernel's inserts for the CPU and holding back the
// replay whenever the backlog grew. Held, they are written once the
// replay is in the kernel, in key order, in transactions that each touch
// one stretch of the tree. Until then the bucket is their durable copy:
// a restart replays it. Memory while held: one 18-byte key a ban.
func (m *Manager) HoldRemoteWrites() {
	m.mu.Lock()
	m.remote.hold = true
	m.mu.Unlock()
}

// ReleaseRemoteWrites ends a hold: the held bans are written to the
// store in the background, in key order, by chunks, each with the ban's
// state in memory when its chunk is queued (a held ban since lifted or
// replaced by one of this host's own is skipped: its own store write or
// delete already came in its turn). Flush waits for them. saved, if not
// nil, is called once they are written (or at once if none are held),
// from the writer's goroutine.
func (m *Manager) ReleaseRemoteWrites(saved func()) {
	m.mu.Lock()
	held := m.remote.held
	m.remote.hold, m.remote.held = false, nil
	done := make(chan struct{})
	if len(held) > 0 {
		m.remote.releasing = append(m.remote.releasing, done)
	}
	m.mu.Unlock()
	if len(held) == 0 {
		if saved != nil {
			saved()
		}
		return
	}
	go func() {
		m.writeHeld(held)
		m.mu.Lock()
		m.remote.releasing = slices.DeleteFunc(m.remote.releasing, func(c chan struct{}) bool { return c == done })
		m.mu.Unlock()
		close(done)
		if saved != nil {
			saved()
		}
	}()
}

// writeHeld writes the fleet bans held under keys, as ReleaseRemoteWrites
// says. One chunk is built, queued and written before the next, so the
// entries in memory at once are one chunk's.
func (m *Manager) writeHeld(keys []key) {
	slices.SortFunc(keys, compareStoreKeys)
	keys = slices.Compact(keys)
	for i := 0; i < len(keys); i += chunk {
		part := keys[i:min(len(keys), i+chunk)]
		m.mu.Lock()
		es := make([]store.Entry, 0, len(part))
		for _, k := range part {
			if e, ok := m.bans.entry(k.prefix()); ok && e.Origin == OriginFleet {
				es = append(es, e)
			}
		}
		if len(es) > 0 {
			m.queueRemote(es)
		}
		m.mu.Unlock()
		m.waitStore()
	}
}

// compareStoreKeys orders keys as the store's keys sort (IPv4 first, then
// the address's bytes, then the length), so that consecutive bans are
// neighbours in the store's tree.
func compareStoreKeys(a, b key) int {
	if a.v6 != b.v6 {
		if a.v6 {
			return 1
		}
		return -1
	}
	if c := bytes.Compare(a.a[:], b.a[:]); c != 0 {
		return c
	}
	return cmp.Compare(a.bits, b.bits)
}

// RemoteBacklog says how many fleet bans applied by AddRemote wait for
// their store write: a caller applying a million (a fleet's replay) waits
// (Flush) when it grows, so that the bans waiting for the disk stay few.
func (m *Manager) RemoteBacklog() int { return int(m.remote.backlog.Load()) }

// DelRemote lifts the fleet ban on p, if the ban here is one: a remote
// unban never lifts what this host's own guards or its administrator
// decided. It reports whether it lifted one.
func (m *Manager) DelRemote(p netip.Prefix, now time.Time) (bool, error) {
	p = p.Masked()
	m.mu.Lock()
	e, ok := m.bans.entry(p)
	m.mu.Unlock()
	if !ok || e.Origin != OriginFleet {
		return false, nil
	}
	return m.Del(p, now)
}

// chunk bounds one kernel or store transaction of AddRemote: encoding a
// netlink transaction costs about 3 KB per element at its peak, so a
// million remote bans at once would need gigabytes. A host joining a
// fleet of a million bans installs them in ten transactions.
var chunk = 100_000 // a variable for tests

// kernelDelta folds the kernel changes of several puts into one
// transaction: an element added and then deleted within the batch never
// reaches the kernel (deleting it there would fail: it is not in the set).
// Until a put deletes something the additions are all different (a
// prefix put twice in a batch deletes its first element), so they are
// only listed; the maps that fold them are built at the first deletion.
type kernelDelta struct {
	plain    []firewall.Element // the additions, while nothing was deleted
	del, add map[netip.Prefix]firewall.Element
	order    []netip.Prefix // adds in the order made, for a stable transaction
}

func (k *kernelDelta) merge(del, add []firewall.Element) {
	if k.add == nil {
		if len(del) == 0 {
			k.plain = append(k.plain, add...)
			return
		}
		k.del, k.add = map[netip.Prefix]firewall.Element{}, make(map[netip.Prefix]firewall.Element, len(k.plain))
		for _, e := range k.plain {
			k.add[e.Prefix] = e
			k.order = append(k.order, e.Prefix)
		}
		k.plain = nil
	}
	for _, e := range del {
		if _, ok := k.add[e.Prefix]; ok {
			delete(k.add, e.Prefix)
			continue
		}
		k.del[e.Prefix] = e
	}
	for _, e := range add {
		if _, ok := k.add[e.Prefix]; !ok {
			k.order = append(k.order, e.Prefix)
		}
		k.add[e.Prefix] = e
	}
}

// lists returns the deletions, and the additions with those that replace
// a deleted element first: when the additions are split over several
// transactions, the first (with the deletions) must put them back.
func (k *kernelDelta) lists() (del, add []firewall.Element) {
	if k.add == nil {
		return nil, k.plain
	}
	for _, e := range k.del {
		del = append(del, e)
	}
	for _, replacing := range []bool{true, false} {
		for _, p := range k.order {
			if _, ok := k.del[p]; ok != replacing {
				continue
			}
			if e, ok := k.add[p]; ok {
				add = append(add, e)
				delete(k.add, p) // an order entry may repeat after a cancel
			}
		}
	}
	return del, add
}

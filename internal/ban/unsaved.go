package ban

import (
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/moat-fw/moat/internal/store"
)

// Unsaved returns how many store writes have failed since the manager was
// created. While it is above zero the store may lack bans the kernel holds
// (or hold bans the kernel no longer has), so the daemon must not mark the
// store as complete: the next start has to read the kernel's bans back.
// The count never goes down: a later write that works does not bring back
// what an earlier one lost.
func (m *Manager) Unsaved() int64 { return m.failed.n.Load() }

// countingStore counts the failures of every write to the store, whichever
// path makes it (a guard's NoWait ban, Adopt, an unban, Expire...), so no
// caller can forget to. Reads are passed through uncounted: they lose
// nothing.
type countingStore struct {
	Store
	n *atomic.Int64
}

// writeFailures is held by the Manager; countingStore points at it.
type writeFailures struct{ n atomic.Int64 }

func (c countingStore) count(err error) error {
	if err != nil {
		c.n.Add(1)
	}
	return err
}

func (c countingStore) PutBan(e store.Entry) (store.Entry, error) {
	out, err := c.Store.PutBan(e)
	return out, c.count(err)
}

func (c countingStore) PutBans(es []store.Entry) ([]store.Entry, error) {
	out, err := c.Store.PutBans(es)
	return out, c.count(err)
}

func (c countingStore) DelBan(p netip.Prefix) (bool, error) {
	ok, err := c.Store.DelBan(p)
	return ok, c.count(err)
}

func (c countingStore) PruneBans(now time.Time) ([]store.Entry, error) {
	out, err := c.Store.PruneBans(now)
	return out, c.count(err)
}

func (c countingStore) DelEndedBans(ps []netip.Prefix, now time.Time) error {
	return c.count(c.Store.DelEndedBans(ps, now))
}

func (c countingStore) PutAllow(e store.Entry) error {
	return c.count(c.Store.PutAllow(e))
}

func (c countingStore) DelAllow(p netip.Prefix) (bool, error) {
	ok, err := c.Store.DelAllow(p)
	return ok, c.count(err)
}

func (c countingStore) PruneAllows(now time.Time) ([]store.Entry, error) {
	out, err := c.Store.PruneAllows(now)
	return out, c.count(err)
}

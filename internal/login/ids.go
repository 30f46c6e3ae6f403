package login

import (
	"hash/maphash"
	"net/netip"
	"time"

	"github.com/moat-fw/moat/internal/authlog"
	"github.com/moat-fw/moat/internal/config"
)

// Multi-line bookkeeping: fail2ban's <F-MLFID>. Some services write a
// connection's address on one line and its failure on another line of the
// same connection id (a PID, a mail queue id); [[login.rule]] patterns
// mark that id with (?P<id>...), and the guard keeps, per jail and log
// file, a table of id -> address in which a failure line without an
// address finds the address to count. The semantics are fail2ban's
// (filter.py, _mergeFailure and findFailure), checked line by line on its
// sample logs by internal/fail2ban's TestFail2banSamples:
//
//   - a line with an address records it for its id (the latest wins);
//   - a failure without an address counts for the address its id
//     recorded; with none yet, it waits ("pending"), and the next line of
//     that id that brings an address counts one failure for it, even a
//     note;
//   - a note (fail2ban's <F-NOFAIL>) only records; a success
//     (<F-MLFGAINED>) cancels the failures waiting;
//   - once a connection id has seen two different user names, its notes
//     and successes count as failures (one client trying several
//     accounts);
//   - forget (<F-MLFFORGET>) drops the id after its line.
//
// The table is bounded (maxIDs per jail and file, the oldest evicted
// first) and its entries live the rule's find_time from the line that
// recorded their address: a hostile log can make the guard forget ids,
// which loses failures, and never makes it attribute one to an address no
// line of that id wrote. Where the address comes from is held to the shape
// check (authlog.CompileRule): the id and the address each sit at a fixed
// place next to the service's own text, so a client's text can write
// neither another connection's id nor a fake address.

// maxIDs bounds one jail's table for one file. fail2ban keeps 100 ids
// for five minutes; a mail server takes more connections than that.
const maxIDs = 10_000

// idKey names one table: ids of one jail in one file.
type idKey struct{ rule, source string }

// idTable is one jail's ids in one file, oldest first.
type idTable struct {
	maxAge     time.Duration
	m          map[string]*idEntry
	head, tail *idEntry
}

type idEntry struct {
	id         string
	addr       netip.Addr // invalid: no line of the id gave one yet
	at         time.Time  // when the entry was made or its address recorded
	pending    bool       // a failure waits for an address
	user       uint64     // the first user name's hash
	users      uint8      // user names seen: 0, 1, or 2 for several
	prev, next *idEntry
}

// userSeed hashes user names within one process (entries are not saved).
var userSeed = maphash.MakeSeed()

// addUser notes a user name tried on the connection and reports whether
// it has seen several.
func (e *idEntry) addUser(u []byte) bool {
	if len(u) > 0 {
		h := maphash.Bytes(userSeed, u)
		switch {
		case e.users == 0:
			e.user, e.users = h, 1
		case e.users == 1 && h != e.user:
			e.users = 2
		}
	}
	return e.users > 1
}

func (t *idTable) get(id []byte, now time.Time) *idEntry {
	e := t.m[string(id)]
	if e != nil && now.Sub(e.at) > t.maxAge {
		t.remove(e)
		return nil
	}
	return e
}

// add makes an entry for id, evicting what has expired and, when the
// table is full, the oldest.
func (t *idTable) add(id []byte, now time.Time) *idEntry {
	for t.head != nil && (now.Sub(t.head.at) > t.maxAge || len(t.m) >= maxIDs) {
		t.remove(t.head)
	}
	e := &idEntry{id: string(id), at: now}
	t.m[e.id] = e
	t.append(e)
	return e
}

// touch records that e's address was written at now: it lives from then.
func (t *idTable) touch(e *idEntry, now time.Time) {
	e.at = now
	t.unlink(e)
	t.append(e)
}

func (t *idTable) remove(e *idEntry) {
	delete(t.m, e.id)
	t.unlink(e)
}

func (t *idTable) append(e *idEntry) {
	e.prev, e.next = t.tail, nil
	if t.tail != nil {
		t.tail.next = e
	} else {
		t.head = e
	}
	t.tail = e
}

func (t *idTable) unlink(e *idEntry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else if t.head == e {
		t.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else if t.tail == e {
		t.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

// Attribute takes one rule's line at now and returns the failure it
// stands for, to give to Observe: the line's own address for a line with
// one, the address its connection id recorded for a failure without one
// (see the comment at the top of this file), or nothing (false) for a
// line that only keeps the bookkeeping. Lines of one file must come in
// the file's order.
func (g *Guard) Attribute(m *RuleLine, now time.Time) (authlog.Event, bool) {
	if m.ID == nil {
		if m.Kind != config.RuleFailure || !m.Addr.IsValid() {
			return authlog.Event{}, false
		}
		return authlog.Event{Addr: m.Addr, User: m.User, Count: 1}, true
	}
	k := idKey{m.Rule, m.Source}
	t := g.ids[k]
	if t == nil {
		t = &idTable{maxAge: RuleFindTime(g.cfg, m.Rule), m: map[string]*idEntry{}}
		g.ids[k] = t
	}
	nofail := m.Kind != config.RuleFailure
	addr := m.Addr
	var pending, several bool
	e := t.get(m.ID, now)
	switch {
	case e != nil:
		several = e.addUser(m.User)
		if m.Kind == config.RuleSuccess {
			e.pending = false // a login: what waited was its own attempts
		}
		if addr.IsValid() {
			e.addr = addr
			t.touch(e, now)
		} else {
			addr = e.addr
		}
		pending = e.pending
		if m.Forget {
			t.remove(e)
		}
	case !m.Forget:
		e = t.add(m.ID, now)
		e.addr = addr
		e.addUser(m.User)
	}
	if pending || several {
		// A failure waited for this address, or the connection tried
		// several users: the line counts, whatever its kind.
		e.pending, nofail = false, false
	}
	if nofail {
		return authlog.Event{}, false
	}
	if !addr.IsValid() {
		if e != nil && !m.Forget {
			e.pending = true
		}
		return authlog.Event{}, false
	}
	return authlog.Event{Addr: addr, User: m.User, Count: 1}, true
}

// IDs is how many connection ids the guard holds, over all rules.
func (g *Guard) IDs() int {
	n := 0
	for _, t := range g.ids {
		n += len(t.m)
	}
	return n
}

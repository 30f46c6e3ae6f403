package store

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Entry is a stored ban or allow.
type Entry struct {
	Prefix  netip.Prefix // host bans are /32 or /128; always Masked()
	Origin  string       // "manual", "login", "scan", "fleet", "config"...
	Reason  string
	Created time.Time
	Expires time.Time // zero: never expires
	Count   int       // how many times this prefix has been banned (1 on the first ban), kept across expiry; 0 for allows
	Ports   []Port    // a ban limited to these ports (a fail2ban jail's); empty: the whole host
	Host    string    // the fleet host a remote ban came from; "" for this host's own
}

// Port is one protocol and port a port-limited ban covers.
type Port struct {
	Proto uint8 // IP protocol number: 6 tcp, 17 udp
	Port  uint16
}

func (p Port) String() string {
	switch p.Proto {
	case 6:
		return fmt.Sprintf("tcp/%d", p.Port)
	case 17:
		return fmt.Sprintf("udp/%d", p.Port)
	}
	return fmt.Sprintf("%d/%d", p.Proto, p.Port)
}

// Active reports whether e is in force at now: it never expires or expires
// after now.
func (e Entry) Active(now time.Time) bool {
	return e.Expires.IsZero() || e.Expires.After(now)
}

// PutBan inserts or replaces the ban record for e.Prefix (masked) and
// increments the prefix's ban count, which lives in a history record that
// outlives the ban. Every call counts, including one that replaces an active
// ban: callers decide what a new offence is. e.Count is ignored; the
// returned Entry carries the new count.
func (s *Store) PutBan(e Entry) (Entry, error) {
	out, err := s.PutBans([]Entry{e})
	if err != nil {
		return Entry{}, err
	}
	return out[0], nil
}

// PutBans is PutBan for many entries in one transaction (one fsync), for
// bursts. The result is in the order of es. If a prefix occurs twice, the
// later entry wins and the count goes up twice. On error nothing is stored.
func (s *Store) PutBans(es []Entry) ([]Entry, error) {
	out, keys, order, err := prepare(es)
	if err != nil {
		return nil, err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		bans, hist := tx.Bucket(bucketBans), tx.Bucket(bucketHistory)
		var ar arena
		for _, i := range order {
			e, k := &out[i], keys[i]
			count := 0
			if v := hist.Get(k); v != nil {
				// A corrupt counter restarts at 1 rather than blocking the ban.
				count, _, _ = decodeHistory(v)
			}
			e.Count = count + 1
			if err := hist.Put(k, ar.done(appendHistory(ar.start(historySize), e.Count, e.Created))); err != nil {
				return fmt.Errorf("history of %s: %w", e.Prefix, err)
			}
			if err := bans.Put(k, ar.done(appendEntry(ar.start(entrySize(*e)), *e))); err != nil {
				return fmt.Errorf("ban of %s: %w", e.Prefix, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, s.wrap("state store: saving bans", err)
	}
	return out, nil
}

// prepare masks and validates the entries' prefixes, builds their keys, and
// returns the indexes of es in key order. bbolt splits nodes only at commit,
// so inserting 100k keys in random order into an empty bucket would be
// quadratic; in key order each insert is an append.
func prepare(es []Entry) (out []Entry, keys [][]byte, order []int, err error) {
	out = make([]Entry, len(es))
	keys = make([][]byte, len(es))
	order = make([]int, len(es))
	kbuf := make([]byte, 0, len(es)*keyLen6)
	for i, e := range es {
		p, err := normalize(e.Prefix)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("entry %d: %w", i, err)
		}
		e.Prefix = p
		out[i] = e
		n := len(kbuf)
		kbuf = appendKey(kbuf, p)
		keys[i] = kbuf[n:len(kbuf):len(kbuf)]
		order[i] = i
	}
	// Ties break on the index, keeping duplicates in input order (last
	// wins); cheaper than a stable sort.
	slices.SortFunc(order, func(a, b int) int {
		if c := bytes.Compare(keys[a], keys[b]); c != 0 {
			return c
		}
		return a - b
	})
	return out, keys, order, nil
}

// DelBan removes the ban record for p (masked). The history (count) stays.
func (s *Store) DelBan(p netip.Prefix) (found bool, err error) {
	return s.del(bucketBans, p)
}

// Ban returns the ban record for p (masked), active or not.
func (s *Store) Ban(p netip.Prefix) (Entry, bool, error) {
	return s.get(bucketBans, p)
}

// Bans returns every ban record, active or not, sorted by prefix (IPv4
// before IPv6, then by address, then by length, as netip.Prefix.Compare).
// Records that cannot be decoded are skipped: Bans then returns the others
// along with an error wrapping ErrCorrupt that names the first bad key.
func (s *Store) Bans() ([]Entry, error) {
	return s.list(bucketBans)
}

// PruneBans deletes the ban records that expired at or before now and
// returns them. Corrupt records are left alone (Bans reports them).
func (s *Store) PruneBans(now time.Time) (removed []Entry, err error) {
	return s.prune(bucketBans, now)
}

// DelEndedBans deletes the ban records of ps that ended at or before now:
// what the ban manager found expired, without PruneBans' scan of every
// record. A record since replaced by a later ban is kept.
func (s *Store) DelEndedBans(ps []netip.Prefix, now time.Time) error {
	if len(ps) == 0 {
		return nil
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketBans)
		for _, p := range ps {
			p, err := normalize(p)
			if err != nil {
				return err
			}
			k := prefixKey(p)
			if exp, ok := entryExpires(b.Get(k)); !ok || (Entry{Expires: exp}).Active(now) {
				continue // gone already, corrupt (Bans reports it), or banned again
			}
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return s.wrap("state store: deleting ended bans", err)
	}
	return nil
}

// History returns how many times p (masked) has been banned and when it was
// last banned (the Created of its last ban). count is 0 if never.
func (s *Store) History(p netip.Prefix) (count int, last time.Time, err error) {
	p, err = normalize(p)
	if err != nil {
		return 0, time.Time{}, err
	}
	k := prefixKey(p)
	err = s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketHistory).Get(k)
		if v == nil {
			return nil
		}
		var derr error
		if count, last, derr = decodeHistory(v); derr != nil {
			return corrupt(bucketHistory, k, derr)
		}
		return nil
	})
	return count, last, err
}

// PruneHistory forgets the ban counts of prefixes last banned before
// before and not banned now (no ban record), so that history does not grow
// forever with every scanner ever seen. It returns how many it forgot.
// Corrupt history records are forgotten too.
func (s *Store) PruneHistory(before time.Time) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		bans, hist := tx.Bucket(bucketBans), tx.Bucket(bucketHistory)
		var doomed [][]byte
		c := hist.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			_, last, err := decodeHistory(v)
			if err == nil && !last.Before(before) {
				continue
			}
			if bans.Get(k) != nil {
				continue
			}
			doomed = append(doomed, bytes.Clone(k))
		}
		for _, k := range doomed {
			if err := hist.Delete(k); err != nil {
				return err
			}
		}
		n = len(doomed)
		return nil
	})
	if err != nil {
		return 0, s.wrap("state store: pruning history", err)
	}
	return n, nil
}

// PutAllow inserts or replaces the runtime allow record for e.Prefix
// (masked). e.Count is not stored.
func (s *Store) PutAllow(e Entry) error {
	p, err := normalize(e.Prefix)
	if err != nil {
		return err
	}
	e.Prefix, e.Count = p, 0
	k := prefixKey(p)
	v := appendEntry(nil, e)
	err = s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAllows).Put(k, v)
	})
	if err != nil {
		return s.wrap("state store: saving allow "+p.String(), err)
	}
	return nil
}

// DelAllow removes the allow record for p (masked).
func (s *Store) DelAllow(p netip.Prefix) (bool, error) {
	return s.del(bucketAllows, p)
}

// Allows returns every allow record, active or not, sorted as Bans sorts,
// with the same handling of corrupt records.
func (s *Store) Allows() ([]Entry, error) {
	return s.list(bucketAllows)
}

// PruneAllows deletes the allow records that expired at or before now and
// returns them.
func (s *Store) PruneAllows(now time.Time) (removed []Entry, err error) {
	return s.prune(bucketAllows, now)
}

func (s *Store) del(bucket []byte, p netip.Prefix) (bool, error) {
	p, err := normalize(p)
	if err != nil {
		return false, err
	}
	k := prefixKey(p)
	found := false
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		if b.Get(k) == nil {
			return nil
		}
		found = true
		return b.Delete(k)
	})
	if err != nil {
		return false, s.wrap(fmt.Sprintf("state store: deleting %s %s", bucket, p), err)
	}
	return found, nil
}

func (s *Store) get(bucket []byte, p netip.Prefix) (Entry, bool, error) {
	p, err := normalize(p)
	if err != nil {
		return Entry{}, false, err
	}
	k := prefixKey(p)
	var e Entry
	found := false
	err = s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucket).Get(k)
		if v == nil {
			return nil
		}
		var derr error
		if e, derr = decodeEntry(p, v, nil); derr != nil {
			return corrupt(bucket, k, derr)
		}
		found = true
		return nil
	})
	if err != nil {
		return Entry{}, false, err
	}
	return e, found, nil
}

func (s *Store) list(bucket []byte) ([]Entry, error) {
	var out []Entry
	err := s.each(bucket, func(n int) { out = make([]Entry, 0, n) }, func(e Entry) { out = append(out, e) })
	return out, err
}

// EachBan calls fn with every ban record, active or not, in the order of
// Bans, without gathering them: a daemon loading a million bans keeps
// them in its own compact form. size is told first how many records there
// are (nil: not asked). Strings that repeat (origins, reasons) are shared.
// Corrupt records are skipped and reported as Bans reports them.
func (s *Store) EachBan(size func(int), fn func(Entry)) error {
	return s.each(bucketBans, size, fn)
}

// each decodes every record of bucket in key order and hands it to fn,
// after telling size how many there are (nil: not asked).
func (s *Store) each(bucket []byte, size func(int), fn func(Entry)) error {
	var (
		bad      int
		firstBad error
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		if size != nil {
			// Counting reads page headers only, and saves growing a slice
			// through five times its final size for 100k records.
			size(b.Stats().KeyN)
		}
		strs := interned{}
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			e, err := decodeRecord(k, v, strs)
			if err != nil {
				if bad++; firstBad == nil {
					firstBad = corrupt(bucket, k, err)
				}
				continue
			}
			fn(e)
		}
		return nil
	})
	if err != nil {
		return s.wrap("state store: reading "+string(bucket), err)
	}
	if bad > 0 {
		return fmt.Errorf("%d unreadable %s records skipped, first: %w", bad, bucket, firstBad)
	}
	return nil
}

func decodeRecord(k, v []byte, strs interned) (Entry, error) {
	p, err := parseKey(k)
	if err != nil {
		return Entry{}, err
	}
	return decodeEntry(p, v, strs)
}

func (s *Store) prune(bucket []byte, now time.Time) ([]Entry, error) {
	var removed []Entry
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		var doomed [][]byte
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if exp, ok := entryExpires(v); ok && (Entry{Expires: exp}).Active(now) {
				continue
			}
			e, err := decodeRecord(k, v, nil)
			if err != nil || e.Active(now) {
				continue
			}
			removed = append(removed, e)
			// Collect, then delete: deleting under a bbolt cursor can
			// skip the next key.
			doomed = append(doomed, bytes.Clone(k))
		}
		for _, k := range doomed {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, s.wrap("state store: pruning "+string(bucket), err)
	}
	return removed, nil
}

// SetMeta stores val under key for the daemon's own state (cursors,
// versions). An empty key is an error.
func (s *Store) SetMeta(key string, val []byte) error {
	if key == "" {
		return errors.New("state store: empty meta key")
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put([]byte(key), bytes.Clone(val))
	})
	if err != nil {
		return s.wrap("state store: saving "+key, err)
	}
	return nil
}

// Meta returns a copy of the value under key, or nil, nil if there is none.
// A stored empty value comes back as a non-nil empty slice.
func (s *Store) Meta(key string) ([]byte, error) {
	if key == "" {
		return nil, errors.New("state store: empty meta key")
	}
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		k, v := tx.Bucket(bucketMeta).Cursor().Seek([]byte(key))
		if string(k) == key {
			out = append([]byte{}, v...)
		}
		return nil
	})
	return out, err
}

package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Grant is an open door grant: what a knock opened, for whom, and until
// when. The kernel's grant sets lose their elements whenever the table is
// rebuilt (a reload, an apply, a restart); the store keeps the grant so the
// daemon can put it back with the table.
type Grant struct {
	Door    string      `json:"door"`
	Addr    netip.Addr  `json:"addr"`
	Ports   []GrantPort `json:"ports"`
	Kernel  bool        `json:"kernel"` // verified by the kernel's rules, not the daemon
	Opened  time.Time   `json:"opened"`
	Expires time.Time   `json:"expires"`
	// StopCommand is the daemon-mode door's stop_command as it was when the
	// door opened: it must run once when the grant ends, even if a reload
	// removed the door in between.
	StopCommand []string `json:"stop_command,omitempty"`
	// SPA is the [[spa.client]] whose datagram opened the grant, empty for
	// a door's knock: a reload keeps the grant while the client exists.
	SPA string `json:"spa,omitempty"`
}

// GrantPort is one port range a grant opens.
type GrantPort struct {
	Proto uint8  `json:"proto"` // IP protocol number
	From  uint16 `json:"from"`
	To    uint16 `json:"to"`
}

// Active reports whether g is still open at now.
func (g Grant) Active(now time.Time) bool { return g.Expires.After(now) }

// grantVersion leads every grant value, as entryVersion does for bans.
const grantVersion = 1

// grantKey is the door's name, a NUL (names never hold one) and the
// address's bytes: one record per door and source, as a grant is.
func grantKey(door string, a netip.Addr) []byte {
	return append(append([]byte(door), 0), a.Unmap().AsSlice()...)
}

func parseGrantKey(k []byte) (string, netip.Addr, error) {
	i := bytes.IndexByte(k, 0)
	if i <= 0 {
		return "", netip.Addr{}, errors.New("malformed grant key")
	}
	a, ok := netip.AddrFromSlice(k[i+1:])
	if !ok {
		return "", netip.Addr{}, errors.New("malformed grant key address")
	}
	return string(k[:i]), a, nil
}

// PutGrant inserts or replaces the grant of g.Door for g.Addr.
func (s *Store) PutGrant(g Grant) error {
	if g.Door == "" || !g.Addr.IsValid() {
		return errors.New("state store: a grant needs a door and an address")
	}
	g.Addr = g.Addr.Unmap()
	v, err := json.Marshal(g)
	if err != nil {
		return fmt.Errorf("state store: encoding grant: %w", err)
	}
	v = append([]byte{grantVersion}, v...)
	err = s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketGrants).Put(grantKey(g.Door, g.Addr), v)
	})
	if err != nil {
		return s.wrap(fmt.Sprintf("state store: saving grant of door %q for %s", g.Door, g.Addr), err)
	}
	return nil
}

// DelGrant removes the grant of door for a.
func (s *Store) DelGrant(door string, a netip.Addr) (found bool, err error) {
	k := grantKey(door, a)
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketGrants)
		if b.Get(k) == nil {
			return nil
		}
		found = true
		return b.Delete(k)
	})
	if err != nil {
		return false, s.wrap(fmt.Sprintf("state store: deleting grant of door %q for %s", door, a), err)
	}
	return found, nil
}

// Grants returns every stored grant, ended or not, ordered by door then
// address. Records that cannot be decoded are skipped and reported, as Bans
// does, with an error wrapping ErrCorrupt.
func (s *Store) Grants() ([]Grant, error) {
	var (
		out      []Grant
		bad      int
		firstBad error
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketGrants).ForEach(func(k, v []byte) error {
			g, err := decodeGrant(k, v)
			if err != nil {
				if bad++; firstBad == nil {
					firstBad = corrupt(bucketGrants, k, err)
				}
				return nil
			}
			out = append(out, g)
			return nil
		})
	})
	if err != nil {
		return nil, s.wrap("state store: reading grants", err)
	}
	if bad > 0 {
		return out, fmt.Errorf("%d unreadable grant records skipped, first: %w", bad, firstBad)
	}
	return out, nil
}

func decodeGrant(k, v []byte) (Grant, error) {
	door, a, err := parseGrantKey(k)
	if err != nil {
		return Grant{}, err
	}
	if len(v) == 0 || v[0] != grantVersion {
		return Grant{}, errors.New("unknown grant version")
	}
	var g Grant
	if err := json.Unmarshal(v[1:], &g); err != nil {
		return Grant{}, err
	}
	// The key is what the record is filed under: it wins.
	g.Door, g.Addr = door, a
	return g, nil
}

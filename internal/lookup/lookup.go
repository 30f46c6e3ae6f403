// Package lookup tells what is known of an address beyond what it sent:
// its country and network from local MaxMind-format databases
// (GeoLite2-Country or -City, GeoLite2-ASN, or any file in that format),
// and its name from reverse DNS.
//
// Both are for people reading a report or an alert, never for a decision,
// and never on the packet path: the databases are read in memory (mmap)
// by a reader that does not allocate per look-up beyond the result, and
// reverse DNS runs in the background, bounded in concurrency and cached,
// so asking never waits unless the caller chooses to (Resolve, for an
// alert). moat never downloads a database.
package lookup

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/oschwald/maxminddb-golang/v2"
)

// Info is what the look-ups tell of an address.
type Info struct {
	Name    string `json:"name,omitempty"`    // reverse DNS, without the trailing dot
	Country string `json:"country,omitempty"` // ISO 3166 code, "NL"
	ASN     uint   `json:"asn,omitempty"`
	ASOrg   string `json:"as_org,omitempty"`
}

// DB reads the configured databases; a nil *DB knows nothing.
type DB struct {
	country, asn *maxminddb.Reader
}

// Open opens the databases whose paths are not empty. The error names the
// file and says what is wrong with it.
func Open(countryPath, asnPath string) (*DB, error) {
	db := &DB{}
	var err error
	if countryPath != "" {
		if db.country, err = open(countryPath, "country"); err != nil {
			return nil, err
		}
	}
	if asnPath != "" {
		if db.asn, err = open(asnPath, "autonomous_system_number"); err != nil {
			db.Close()
			return nil, err
		}
	}
	return db, nil
}

// open opens a database and checks it holds the field moat reads, so a
// wrong file (a City database given as asn) is told at start, not by
// empty reports.
func open(path, field string) (*maxminddb.Reader, error) {
	r, err := maxminddb.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: not a readable MaxMind-format database: %w", path, err)
	}
	t := r.Metadata.DatabaseType
	isASN := strings.Contains(t, "ASN") || strings.Contains(t, "ISP")
	switch {
	case field == "country" && isASN:
		r.Close()
		return nil, fmt.Errorf("%s: database type %q does not hold country data; want a Country or City database", path, t)
	case field != "country" && !isASN:
		r.Close()
		return nil, fmt.Errorf("%s: database type %q does not hold ASN data; want an ASN database", path, t)
	}
	return r, nil
}

// Close releases the databases.
func (db *DB) Close() error {
	if db == nil {
		return nil
	}
	var errs []error
	for _, r := range []*maxminddb.Reader{db.country, db.asn} {
		if r != nil {
			errs = append(errs, r.Close())
		}
	}
	return errors.Join(errs...)
}

// Lookup fills Country, ASN and ASOrg from the databases. An address not
// in them, or a database that cannot be read there, leaves the fields
// empty.
func (db *DB) Lookup(a netip.Addr) Info {
	var info Info
	if db == nil {
		return info
	}
	a = a.Unmap()
	if db.country != nil {
		var rec struct {
			Country struct {
				ISOCode string `maxminddb:"iso_code"`
			} `maxminddb:"country"`
			Registered struct {
				ISOCode string `maxminddb:"iso_code"`
			} `maxminddb:"registered_country"`
		}
		if err := db.country.Lookup(a).Decode(&rec); err == nil {
			info.Country = rec.Country.ISOCode
			if info.Country == "" {
				info.Country = rec.Registered.ISOCode
			}
		}
	}
	if db.asn != nil {
		var rec struct {
			ASN uint   `maxminddb:"autonomous_system_number"`
			Org string `maxminddb:"autonomous_system_organization"`
		}
		if err := db.asn.Lookup(a).Decode(&rec); err == nil {
			info.ASN, info.ASOrg = rec.ASN, rec.Org
		}
	}
	return info
}

// Resolver is the part of net.Resolver reverse DNS needs.
type Resolver interface {
	LookupAddr(ctx context.Context, addr string) ([]string, error)
}

var _ Resolver = (*net.Resolver)(nil)

// Names does reverse DNS in the background: at most Workers look-ups at
// once, each at most Timeout, results (names and failures) cached for TTL,
// at most MaxCached of them.
type Names struct {
	r         Resolver
	now       func() time.Time
	timeout   time.Duration
	ttl       time.Duration
	maxCached int

	ctx  context.Context
	sem  chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	seen map[netip.Addr]nameEntry
	busy map[netip.Addr]chan struct{} // look-ups running, closed when done
}

type nameEntry struct {
	name    string
	expires time.Time
}

// NewNames returns reverse DNS over r whose look-ups end with ctx; Wait
// waits for them.
func NewNames(ctx context.Context, r Resolver, now func() time.Time) *Names {
	return &Names{r: r, now: now, timeout: 3 * time.Second, ttl: time.Hour, maxCached: 4096, ctx: ctx,
		sem: make(chan struct{}, 4), seen: map[netip.Addr]nameEntry{}, busy: map[netip.Addr]chan struct{}{}}
}

// Name returns a's cached name, starting a look-up when none is cached;
// it never waits. ok is false until a look-up has answered.
func (n *Names) Name(a netip.Addr) (name string, ok bool) {
	name, ok, _ = n.start(a)
	return name, ok
}

// Resolve waits for a's name until ctx ends.
func (n *Names) Resolve(ctx context.Context, a netip.Addr) string {
	name, ok, done := n.start(a)
	if ok || done == nil {
		return name
	}
	select {
	case <-done:
		name, _, _ = n.start(a)
		return name
	case <-ctx.Done():
		return ""
	}
}

// start returns the cached entry, or the channel of a look-up running.
func (n *Names) start(a netip.Addr) (string, bool, chan struct{}) {
	if n == nil || !a.IsValid() {
		return "", true, nil
	}
	now := n.now()
	n.mu.Lock()
	defer n.mu.Unlock()
	if e, ok := n.seen[a]; ok && now.Before(e.expires) {
		return e.name, true, nil
	}
	if done, ok := n.busy[a]; ok {
		return "", false, done
	}
	if n.ctx.Err() != nil {
		return "", true, nil
	}
	select {
	case n.sem <- struct{}{}:
	default:
		return "", false, nil // every worker busy: asked again later
	}
	done := make(chan struct{})
	n.busy[a] = done
	n.wg.Go(func() {
		defer func() { <-n.sem }()
		ctx, cancel := context.WithTimeout(n.ctx, n.timeout)
		names, err := n.r.LookupAddr(ctx, a.String())
		cancel()
		name := ""
		if err == nil && len(names) > 0 {
			name = strings.TrimSuffix(names[0], ".")
		}
		n.mu.Lock()
		if len(n.seen) >= n.maxCached {
			clear(n.seen) // a flood of addresses: start again rather than grow
		}
		n.seen[a] = nameEntry{name: name, expires: n.now().Add(n.ttl)}
		delete(n.busy, a)
		close(done)
		n.mu.Unlock()
	})
	return "", false, done
}

// Wait waits for the look-ups running; call it once ctx has ended.
func (n *Names) Wait() {
	if n != nil {
		n.wg.Wait()
	}
}

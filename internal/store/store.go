// Package store persists bans, allows, door grants and daemon state in a bbolt file under state_dir.
//
// The store is the source of truth for bans: the kernel holds copies with
// timeouts, and the daemon re-asserts the store in the kernel. A Store is safe
// for concurrent use; every write method is one transaction (and one fsync).
package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// FileName is the database file inside state_dir.
const FileName = "moat.db"

// schemaVersion is written to the info bucket. Opening a store written by a
// newer schema fails rather than misreading it.
const schemaVersion = 1

// initialMmapSize is the address space the file is mapped into at first,
// room for about four million bans (a million take 240 MB with their
// history). Address space only: the file and the memory in use grow with
// the data. When the file outgrows its mapping, bbolt maps it again, and
// every read waits meanwhile: with 256 MB, the first bans after restoring
// a million waited 20 to 50 ms in the repeat-count read.
const initialMmapSize = 1 << 30

// allocSize is the step the file grows by (see Open).
const allocSize = 1 << 20

var (
	bucketInfo    = []byte("info")
	bucketBans    = []byte("bans")
	bucketHistory = []byte("history")
	bucketAllows  = []byte("allows")
	bucketMeta    = []byte("meta")
	bucketGrants  = []byte("grants")

	keySchema = []byte("schema")
)

// ErrLocked reports that another process holds the store open.
// Its text completes "state store <path> is ...".
var ErrLocked = errors.New("locked by another moat process")

// ErrCorrupt marks a record that cannot be decoded. The error that wraps it
// names the bucket and key.
var ErrCorrupt = errors.New("corrupt record")

// Store is an open state store.
type Store struct {
	db   *bolt.DB
	dir  string
	path string
}

// Open opens (creating if needed) the store in dir/moat.db. dir is created
// with mode 0700 if missing; the file with mode 0600. If another process has
// the store open, Open fails after one second with an error wrapping ErrLocked.
func Open(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("state store: state_dir is empty: set it in the [daemon] section")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fsError(dir, "creating the state directory "+dir, err)
	}
	path := filepath.Join(dir, FileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		// A second opener (a second daemon, or the CLI reading while the
		// daemon runs) must fail fast with a clear message, not hang.
		Timeout: time.Second,
		// The hashmap freelist keeps large prunes (tens of thousands of
		// freed pages' worth of records) from going quadratic.
		FreelistType: bolt.FreelistMapType,
		// Each time bbolt grows its mapping it copies every key and value
		// held by the open write transaction to the heap; with 100k bans in
		// one transaction that was most of PutBans' time. The mapping is
		// address space only: the file still grows as data does.
		InitialMmapSize: initialMmapSize,
	})
	if err != nil {
		switch {
		case errors.Is(err, bolterrors.ErrTimeout):
			return nil, fmt.Errorf("state store %s is %w", path, ErrLocked)
		case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrVersionMismatch),
			errors.Is(err, bolterrors.ErrChecksum), errors.Is(err, bolterrors.ErrInvalidMapping):
			return nil, fmt.Errorf("state store %s is not a valid moat database (%w): move it aside to start with an empty store", path, err)
		}
		return nil, fsError(dir, "opening "+path, err)
	}
	// Once the mapping is larger than AllocSize, which InitialMmapSize
	// makes it from the first write, bbolt grows the file by AllocSize
	// (16 MiB by default) at a time: an empty store took 16 MiB on disk.
	// With 1 MiB the slack is 1 MiB: bbolt grows once per committing
	// transaction that needs room, so a bulk write of 100k bans still
	// grows the file once.
	db.AllocSize = allocSize
	s := &Store{db: db, dir: dir, path: path}
	if err := s.init(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// init creates the buckets and checks the schema version.
func (s *Store) init() error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketInfo, bucketBans, bucketHistory, bucketAllows, bucketMeta, bucketGrants} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("creating bucket %s: %w", name, err)
			}
		}
		info := tx.Bucket(bucketInfo)
		v := info.Get(keySchema)
		switch {
		case v == nil:
			return info.Put(keySchema, []byte{schemaVersion})
		case len(v) != 1:
			return fmt.Errorf("schema version %x: %w", v, ErrCorrupt)
		case v[0] > schemaVersion:
			return fmt.Errorf("written by a newer moat (schema %d, this moat knows up to %d): upgrade moat", v[0], schemaVersion)
		}
		return nil
	})
	if err != nil {
		return s.wrap("state store "+s.path, err)
	}
	return nil
}

// Close closes the database file and releases the lock.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return s.wrap("closing state store "+s.path, err)
	}
	return nil
}

// Path returns the database file's path.
func (s *Store) Path() string { return s.path }

// wrap turns an error from a transaction into one that says what to do.
func (s *Store) wrap(what string, err error) error {
	return fsError(s.dir, what, err)
}

// fsError words file system failures so the admin knows the fix. dir is
// the state directory, named in the disk-full message.
func fsError(dir, what string, err error) error {
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("%s: disk full under %s: free some space there: %w", what, dir, err)
	case errors.Is(err, syscall.EROFS):
		return fmt.Errorf("%s: read-only file system: set state_dir to a writable directory: %w", what, err)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%s: permission denied: run moat as root, or set state_dir to a directory it can write: %w", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

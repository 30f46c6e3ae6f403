package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// PendingFile is the file, beside the database, of bans in the kernel whose
// store write may not have happened yet.
const PendingFile = "pending.log"

// Pending records each ban as it goes into the kernel, before its store
// write (an fsync, which the ban must not wait for). A plain write without
// fsync: what it guards against is moat being killed between the two, and
// the kernel keeps a killed process's writes; a power cut, which could
// lose them, empties the kernel's sets too. The next start adopts what the
// store lacks from it, without reading a million elements back from the
// kernel (minutes: the kernel's set dumps restart their walk each chunk).
// It is emptied whenever every ban in it is in the store.
type Pending struct {
	mu  sync.Mutex
	f   *os.File
	buf []byte
}

// OpenPending opens (creating) the pending log in dir.
func OpenPending(dir string) (*Pending, error) {
	f, err := os.OpenFile(filepath.Join(dir, PendingFile), os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fsError(dir, "opening the pending-ban log", err)
	}
	return &Pending{f: f}, nil
}

// Append records e: one write of its length, key and value.
func (p *Pending) Append(e Entry) error {
	pr, err := normalize(e.Prefix)
	if err != nil {
		return err
	}
	e.Prefix = pr
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.buf[:0]
	b = append(b, 0, 0) // length, set below
	b = appendKey(b, pr)
	b = appendEntry(b, e)
	binary.BigEndian.PutUint16(b, uint16(len(b)-2))
	p.buf = b
	if len(b)-2 > 0xffff {
		return errors.New("pending-ban log: record too long")
	}
	if _, err := p.f.Write(b); err != nil {
		return fmt.Errorf("pending-ban log: %w", err)
	}
	return nil
}

// Clear empties the log: every ban in it is in the store.
func (p *Pending) Clear() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.f.Truncate(0); err != nil {
		return fmt.Errorf("pending-ban log: %w", err)
	}
	return nil
}

// Entries reads the log. A record cut short (moat killed in the middle of
// a write) ends it; what was whole before it is returned.
func (p *Pending) Entries() ([]Entry, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := p.f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(p.f)
	if err != nil {
		return nil, fmt.Errorf("pending-ban log: %w", err)
	}
	var out []Entry
	for len(data) >= 2 {
		n := int(binary.BigEndian.Uint16(data))
		if len(data) < 2+n {
			break
		}
		rec := data[2 : 2+n]
		data = data[2+n:]
		kl := keyLen4
		if len(rec) > 0 && rec[0] == famV6 {
			kl = keyLen6
		}
		if len(rec) < kl {
			continue
		}
		e, err := decodeRecord(rec[:kl], rec[kl:], nil)
		if err != nil {
			continue
		}
		out = append(out, e)
	}
	return out, nil
}

// Close closes the log's file.
func (p *Pending) Close() error { return p.f.Close() }

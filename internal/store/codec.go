package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"
)

// Keys are a family byte (4 or 6), the address bytes (4 or 16) and the prefix
// length. The family byte makes bbolt's byte order group IPv4 before IPv6
// (raw addresses alone would sort ::1 before 10.0.0.0); within a family keys
// sort by address, then length: the order of netip.Prefix.Compare.
const (
	famV4   = 4
	famV6   = 6
	keyLen4 = 1 + 4 + 1
	keyLen6 = 1 + 16 + 1
)

// Values start with a version byte so the encoding can change without a
// migration: decoders refuse versions they do not know.
const (
	entryVersion   = 1
	historyVersion = 1
)

// Flags in an entry value: which times are present (zero times are omitted).
const (
	flagCreated = 1 << 0
	flagExpires = 1 << 1

	flagLast = 1 << 0 // in a history value
)

// Optional fields after an entry's reason: a tag byte, then the field.
// Records without them (every record before port-limited bans) decode as
// before; a decoder refuses a tag it does not know.
const (
	tagPorts = 'p' // uvarint n, then n times proto (1 byte) and port (2 bytes, big endian)
	tagHost  = 'h' // uvarint n, then the n bytes of the fleet host a remote ban came from
)

// normalize validates p and clears its host bits.
func normalize(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() {
		return netip.Prefix{}, errors.New("state store: invalid prefix (zero value or bad length)")
	}
	return p.Masked(), nil
}

// appendKey appends the key for the masked prefix p.
func appendKey(b []byte, p netip.Prefix) []byte {
	a := p.Addr()
	if a.Is4() {
		a4 := a.As4()
		b = append(b, famV4)
		b = append(b, a4[:]...)
	} else {
		a16 := a.As16()
		b = append(b, famV6)
		b = append(b, a16[:]...)
	}
	return append(b, byte(p.Bits()))
}

func prefixKey(p netip.Prefix) []byte {
	return appendKey(make([]byte, 0, keyLen6), p)
}

// parseKey decodes a key written by appendKey.
func parseKey(k []byte) (netip.Prefix, error) {
	var a netip.Addr
	switch {
	case len(k) == keyLen4 && k[0] == famV4:
		a = netip.AddrFrom4([4]byte(k[1:5]))
	case len(k) == keyLen6 && k[0] == famV6:
		a = netip.AddrFrom16([16]byte(k[1:17]))
	default:
		return netip.Prefix{}, errors.New("malformed key")
	}
	bits := int(k[len(k)-1])
	if bits > a.BitLen() {
		return netip.Prefix{}, fmt.Errorf("prefix length %d out of range", bits)
	}
	p := netip.PrefixFrom(a, bits)
	if p != p.Masked() {
		return netip.Prefix{}, errors.New("host bits set in key")
	}
	return p, nil
}

// appendTime appends t as seconds and nanoseconds (not UnixNano, whose range
// ends in 2262: a caller may use far-future expiries).
func appendTime(b []byte, t time.Time) []byte {
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

// appendEntry appends the value encoding of e:
//
//	version flags [created] [expires] count len(origin) origin len(reason) reason [tag field]...
//
// times as appendTime writes them, integers as varints. The optional fields
// (a port-limited ban's ports, the fleet host a remote ban came from) are
// written only when set: records from before they existed end after the
// reason and decode as before.
func appendEntry(b []byte, e Entry) []byte {
	var flags byte
	if !e.Created.IsZero() {
		flags |= flagCreated
	}
	if !e.Expires.IsZero() {
		flags |= flagExpires
	}
	b = append(b, entryVersion, flags)
	if flags&flagCreated != 0 {
		b = appendTime(b, e.Created)
	}
	if flags&flagExpires != 0 {
		b = appendTime(b, e.Expires)
	}
	b = binary.AppendUvarint(b, uint64(max(e.Count, 0)))
	b = binary.AppendUvarint(b, uint64(len(e.Origin)))
	b = append(b, e.Origin...)
	b = binary.AppendUvarint(b, uint64(len(e.Reason)))
	b = append(b, e.Reason...)
	if len(e.Ports) > 0 {
		b = append(b, tagPorts)
		b = binary.AppendUvarint(b, uint64(len(e.Ports)))
		for _, p := range e.Ports {
			b = append(b, p.Proto, byte(p.Port>>8), byte(p.Port))
		}
	}
	if e.Host != "" {
		b = append(b, tagHost)
		b = binary.AppendUvarint(b, uint64(len(e.Host)))
		b = append(b, e.Host...)
	}
	return b
}

// entrySize bounds the length of e's encoding; historySize that of a
// history value.
func entrySize(e Entry) int {
	return 2 + 2*(binary.MaxVarintLen64+5) + 3*binary.MaxVarintLen64 + len(e.Origin) + len(e.Reason) +
		1 + binary.MaxVarintLen64 + 3*len(e.Ports) + 1 + binary.MaxVarintLen64 + len(e.Host)
}

const historySize = 2 + binary.MaxVarintLen64 + binary.MaxVarintLen64 + 5

// decoder reads varints and strings from a value, remembering the first
// error so callers check once. It never panics on short or bad input.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("bad %s", what)
	}
	d.b = nil
}

func (d *decoder) byte(what string) byte {
	if len(d.b) < 1 {
		d.fail(what)
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint(what string) uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) int(what string) int {
	v := d.uvarint(what)
	if v > math.MaxInt {
		d.fail(what)
		return 0
	}
	return int(v)
}

func (d *decoder) time(what string) time.Time {
	sec, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(what)
		return time.Time{}
	}
	d.b = d.b[n:]
	nsec := d.uvarint(what)
	if nsec >= 1e9 {
		d.fail(what)
		return time.Time{}
	}
	t := time.Unix(sec, int64(nsec))
	if t.IsZero() {
		d.fail(what) // zero times are written as absent, never as a time
	}
	return t
}

// string copies: bbolt's memory is only valid inside the transaction.
func (d *decoder) string(what string) string {
	n := d.uvarint(what)
	if n > uint64(len(d.b)) {
		d.fail(what)
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// interned shares the strings that repeat across records (a handful of
// origins, and reasons that guards word alike) while decoding many: one
// copy each rather than one per record.
type interned map[string]string

// internMax bounds an interned table: past it, strings are copied as usual
// (reasons that name an address or a user are all different).
const internMax = 4096

// intern is string, returning the copy held in m if there is one.
func (d *decoder) intern(what string, m interned) string {
	n := d.uvarint(what)
	if n > uint64(len(d.b)) {
		d.fail(what)
		return ""
	}
	b := d.b[:n]
	d.b = d.b[n:]
	if s, ok := m[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(m) < internMax {
		m[s] = s
	}
	return s
}

func (d *decoder) finish() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d trailing bytes", len(d.b))
	}
	return d.err
}

// decodeEntry decodes a value written by appendEntry for prefix p. If
// strs is not nil, origin and reason strings are shared through it.
func decodeEntry(p netip.Prefix, v []byte, strs interned) (Entry, error) {
	d := decoder{b: v}
	if ver := d.byte("version"); d.err == nil && ver != entryVersion {
		return Entry{}, fmt.Errorf("unknown version %d", ver)
	}
	flags := d.byte("flags")
	if flags&^(flagCreated|flagExpires) != 0 {
		d.fail("flags")
	}
	e := Entry{Prefix: p}
	if flags&flagCreated != 0 {
		e.Created = d.time("created")
	}
	if flags&flagExpires != 0 {
		e.Expires = d.time("expires")
	}
	e.Count = d.int("count")
	if strs != nil {
		e.Origin = d.intern("origin", strs)
		e.Reason = d.intern("reason", strs)
	} else {
		e.Origin = d.string("origin")
		e.Reason = d.string("reason")
	}
	for d.err == nil && len(d.b) > 0 {
		switch d.byte("field tag") {
		case tagPorts:
			n := d.uvarint("ports")
			if n == 0 || n > uint64(len(d.b)/3) {
				d.fail("ports")
				break
			}
			e.Ports = make([]Port, n)
			for i := range e.Ports {
				e.Ports[i] = Port{Proto: d.b[0], Port: uint16(d.b[1])<<8 | uint16(d.b[2])}
				d.b = d.b[3:]
			}
		case tagHost:
			if strs != nil {
				e.Host = d.intern("host", strs) // a fleet has a handful of hosts
			} else {
				e.Host = d.string("host")
			}
			if e.Host == "" {
				d.fail("host")
			}
		default:
			d.fail("field tag")
		}
	}
	if err := d.finish(); err != nil {
		return Entry{}, err
	}
	return e, nil
}

// entryExpires reads only the expiry of an encoded entry, for pruning
// without copying every record's strings. ok is false if v is not a valid
// header; the full decode then reports why.
func entryExpires(v []byte) (expires time.Time, ok bool) {
	d := decoder{b: v}
	if d.byte("version") != entryVersion {
		return time.Time{}, false
	}
	flags := d.byte("flags")
	if flags&flagCreated != 0 {
		d.time("created")
	}
	if flags&flagExpires != 0 {
		expires = d.time("expires")
	}
	return expires, d.err == nil
}

// appendHistory appends the history value:
//
//	version flags count [last]
func appendHistory(b []byte, count int, last time.Time) []byte {
	var flags byte
	if !last.IsZero() {
		flags |= flagLast
	}
	b = append(b, historyVersion, flags)
	b = binary.AppendUvarint(b, uint64(max(count, 0)))
	if flags&flagLast != 0 {
		b = appendTime(b, last)
	}
	return b
}

func decodeHistory(v []byte) (count int, last time.Time, err error) {
	d := decoder{b: v}
	if ver := d.byte("version"); d.err == nil && ver != historyVersion {
		return 0, time.Time{}, fmt.Errorf("unknown version %d", ver)
	}
	flags := d.byte("flags")
	if flags&^flagLast != 0 {
		d.fail("flags")
	}
	count = d.int("count")
	if flags&flagLast != 0 {
		last = d.time("last")
	}
	if err := d.finish(); err != nil {
		return 0, time.Time{}, err
	}
	return count, last, nil
}

// corrupt wraps a decoding failure with its bucket and key.
func corrupt(bucket, key []byte, err error) error {
	return fmt.Errorf("state store: %s record %x: %w: %v", bucket, key, ErrCorrupt, err)
}

// arena hands out byte slices that stay valid until the transaction commits
// (bbolt requires it of keys and values) with few allocations: one chunk
// per many records rather than one slice per record. Chunks start small
// (a single PutBan) and double up to arenaMaxChunk (bursts).
type arena struct{ buf []byte }

const (
	arenaMinChunk = 256
	arenaMaxChunk = 256 << 10
)

// start returns the arena's free space, room for at least n bytes: append
// to it, then hand the result to done.
func (a *arena) start(n int) []byte {
	if cap(a.buf)-len(a.buf) < n {
		size := min(max(2*cap(a.buf), arenaMinChunk), arenaMaxChunk)
		a.buf = make([]byte, 0, max(size, n))
	}
	return a.buf[len(a.buf):]
}

// done marks b, appended to start's result, as handed out.
func (a *arena) done(b []byte) []byte {
	if len(b) > cap(a.buf)-len(a.buf) {
		return b // outgrew the estimate: append moved it to its own array
	}
	a.buf = a.buf[:len(a.buf)+len(b)]
	return b[:len(b):len(b)]
}

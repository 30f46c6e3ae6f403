package ban

import (
	"iter"
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/store"
)

// cover keeps one kind of prefix set (bans or allows), each entry's record,
// and what of it is in the kernel. The kernel's interval sets refuse
// overlapping elements, so only the outermost prefixes go in: a host banned
// inside a banned /24 stays in the store and enters the kernel when the /24
// ends, if it outlives it.
//
// It is sized for millions of entries: a record is 48 bytes without a
// pointer (so the garbage collector never looks inside), strings are
// interned, and an entry costs one index map slot, one record and one heap
// item: about 90 bytes, against some 600 for maps of netip.Prefix to
// time.Time and store.Entry.
type cover struct {
	idx   index // key -> its record's slot in recs
	recs  []rec
	free  []uint32  // unused records, for reuse
	n     int       // live records
	strs  *strtab   // origins and reasons
	gen   uint64    // counts kernel puts
	lens4 [33]int   // how many kernel prefixes have each length,
	lens6 [129]int  // so containment checks skip absent lengths
	alen4 [33]int   // the same for live entries
	alen6 [129]int  //
	due   expiries  // live entries' expiries, earliest first
	read  *readMark // a reconcile's read in progress, if any
	bulk  bool      // loading: due is heaped once at the end (see reserve)
	// dbuf and abuf back what put returns, reused from call to call: the
	// caller hands them to the kernel under the manager's lock and lets
	// go. A ban allocates nothing for its kernel change.
	dbuf, abuf [1]firewall.Element
}

// key is a prefix in 18 bytes without a pointer (a netip.Prefix is 32 with
// one): a map keyed by it is smaller and never scanned by the collector.
type key struct {
	a    [16]byte
	bits uint8
	v6   bool
}

func keyOf(p netip.Prefix) key {
	if p.Addr().Is4() {
		a4 := p.Addr().As4()
		var k key
		copy(k.a[:], a4[:])
		k.bits = uint8(p.Bits())
		return k
	}
	return key{a: p.Addr().As16(), bits: uint8(p.Bits()), v6: true}
}

func (k key) prefix() netip.Prefix {
	if k.v6 {
		return netip.PrefixFrom(netip.AddrFrom16(k.a), int(k.bits))
	}
	return netip.PrefixFrom(netip.AddrFrom4([4]byte(k.a[:4])), int(k.bits))
}

// rec is one entry: its prefix, its record's fields, and where it stands.
// Times are Unix nanoseconds, 0 for none.
type rec struct {
	k       key
	origin  uint16 // in strs
	count   uint32
	reason  uint32 // in strs
	flags   uint8
	host    uint16 // the fleet host a remote ban came from: 1 + its index among strs' origins; 0 none
	created int64
	expires int64
}

const (
	live     = 1 << iota // in use (a freed record is not)
	inKernel             // one of the outermost entries, put in the kernel
	putMark              // put in the kernel since the read in c.read began
)

// nanos turns t into a rec time: zero stays 0, and times past 2262 (the
// end of int64 nanoseconds) are held as that end.
func nanos(t time.Time) int64 {
	switch {
	case t.IsZero():
		return 0
	case t.Unix() >= math.MaxInt64/1_000_000_000:
		return math.MaxInt64
	case t.UnixNano() == 0:
		return 1 // the epoch itself is a time, not none
	}
	return t.UnixNano()
}

func timeOf(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// alive reports whether an entry expiring at exp (0: never) is live at now.
func alive(exp, now int64) bool { return exp == 0 || exp > now }

// expiries is a min-heap of expiry times, so that finding what ends next
// and what has ended costs a heap operation, not a scan of every live entry
// (1 ms and 7 ms at 100,000 bans, under the manager's lock). A replaced or
// removed entry leaves its old item behind; items are checked against the
// record when they surface, and the heap is rebuilt when stale ones pile
// up.
type expiries []expiry

type expiry struct {
	at   int64
	slot uint32
}

// The heap's own operations, not container/heap's: those take and return
// interface values, one allocation per ban.

func (h *expiries) push(e expiry) {
	*h = append(*h, e)
	q := *h
	for i := len(q) - 1; i > 0; {
		up := (i - 1) / 2
		if q[up].at <= q[i].at {
			break
		}
		q[up], q[i] = q[i], q[up]
		i = up
	}
}

func (h *expiries) pop() expiry {
	q := *h
	top := q[0]
	last := len(q) - 1
	q[0] = q[last]
	*h = q[:last]
	h.down(0)
	return top
}

func (h expiries) down(i int) {
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && h[r].at < h[l].at {
			m = r
		}
		if h[i].at <= h[m].at {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

func (h expiries) init() {
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

// current reports whether e is still the expiry of a live entry. A slot
// reused since by an entry with the same expiry passes too: that entry
// does end then.
func (c *cover) current(e expiry) bool {
	r := &c.recs[e.slot]
	return r.flags&live != 0 && r.expires == e.at
}

func newCover(strs *strtab) *cover {
	if strs == nil {
		strs = newStrtab()
	}
	return &cover{strs: strs}
}

func (c *cover) len() int { return c.n }

// lookup returns p's record, or nil.
func (c *cover) lookup(p netip.Prefix) *rec {
	if s, ok := c.idx.get(c.recs, keyOf(p)); ok {
		return &c.recs[s]
	}
	return nil
}

func element(p netip.Prefix, exp, now int64) (firewall.Element, bool) {
	if exp == 0 {
		return firewall.Element{Prefix: p}, true
	}
	d := time.Duration(exp - now)
	if exp == math.MaxInt64 {
		d = time.Duration(math.MaxInt64)
	}
	if d < time.Millisecond {
		return firewall.Element{}, false
	}
	return firewall.Element{Prefix: p, Timeout: d}, true
}

func (c *cover) lens(p netip.Prefix) []int {
	if p.Addr().Is4() {
		return c.lens4[:]
	}
	return c.lens6[:]
}

func (c *cover) alens(p netip.Prefix) []int {
	if p.Addr().Is4() {
		return c.alen4[:]
	}
	return c.alen6[:]
}

func (c *cover) kput(r *rec) {
	if r.flags&inKernel == 0 {
		c.lens(r.k.prefix())[r.k.bits]++
	}
	r.flags |= inKernel
	c.gen++
	if c.read != nil {
		r.flags |= putMark
	}
}

func (c *cover) kdel(r *rec) {
	if r.flags&inKernel != 0 {
		c.lens(r.k.prefix())[r.k.bits]--
		r.flags &^= inKernel
	}
}

// aput adds or replaces an entry's expiry (not its place in the kernel),
// and returns its record.
func (c *cover) aput(p netip.Prefix, exp time.Time) *rec {
	k := keyOf(p)
	var slot uint32
	ok := false
	if !c.bulk { // a bulk load's keys come from the store's, which are unique
		slot, ok = c.idx.get(c.recs, k)
	}
	if !ok {
		if n := len(c.free); n > 0 {
			slot = c.free[n-1]
			c.free = c.free[:n-1]
		} else {
			slot = uint32(len(c.recs))
			c.recs = append(c.recs, rec{})
		}
		c.recs[slot] = rec{k: k, flags: live}
		c.idx.put(c.recs, slot)
		c.alens(p)[p.Bits()]++
		c.n++
	}
	r := &c.recs[slot]
	r.expires = nanos(exp)
	if r.expires != 0 && c.bulk {
		c.due = append(c.due, expiry{r.expires, slot})
	} else if r.expires != 0 {
		c.due.push(expiry{r.expires, slot})
		if len(c.due) > 2*c.n+64 {
			c.due = c.due[:0]
			for i := range c.recs {
				if q := &c.recs[i]; q.flags&live != 0 && q.expires != 0 {
					c.due = append(c.due, expiry{q.expires, uint32(i)})
				}
			}
			c.due.init()
		}
	}
	return r
}

// reserve makes room for n more entries, about to be loaded from the
// store (whose keys are unique: none is looked up first); their expiries
// are heaped once, by loaded.
func (c *cover) reserve(n int) {
	if n <= 0 {
		return
	}
	c.bulk = true
	// Room for a quarter more than loaded: growing the records' slice
	// copies all of them (48 MB at a million, ~15 ms under the lock), and
	// the first bans after a restore would otherwise pay it.
	n += n / 4
	c.recs = slices.Grow(c.recs, n)
	c.idx.reserve(c.recs, c.n+n)
	c.due = slices.Grow(c.due, n)
}

// loaded ends what reserve began.
func (c *cover) loaded() {
	if c.bulk {
		c.bulk = false
		c.due.init()
	}
}

// adel forgets an entry (not its place in the kernel: see kdel).
func (c *cover) adel(p netip.Prefix) {
	k := keyOf(p)
	var slot uint32
	ok := false
	if !c.bulk { // a bulk load's keys come from the store's, which are unique
		slot, ok = c.idx.get(c.recs, k)
	}
	if !ok {
		return
	}
	c.alens(p)[p.Bits()]--
	c.idx.del(c.recs, k)
	r := &c.recs[slot]
	c.strs.unref(r.reason)
	*r = rec{}
	c.free = append(c.free, slot)
	c.n--
}

// setEntry records e's fields (origin, reason, times, count) for its
// prefix, which must be live.
func (c *cover) setEntry(e store.Entry) {
	if r := c.lookup(e.Prefix); r != nil {
		c.fill(r, e)
	}
}

func (c *cover) fill(r *rec, e store.Entry) {
	reason := c.strs.ref(e.Reason)
	c.strs.unref(r.reason)
	r.origin, r.reason = c.strs.origin(e.Origin), reason
	r.host = 0
	if e.Host != "" {
		// A fleet has a handful of hosts: kept for good, as origins are.
		r.host = c.strs.origin(e.Host) + 1
	}
	r.created, r.count = nanos(e.Created), uint32(min(max(e.Count, 0), math.MaxUint32))
}

// load adds an entry from the store (or adopted from the kernel) without
// touching the kernel view: Elements puts it there.
func (c *cover) load(e store.Entry) {
	c.fill(c.aput(e.Prefix, e.Expires), e)
}

// entry returns p's live or not-yet-expired record as a store.Entry.
func (c *cover) entry(p netip.Prefix) (store.Entry, bool) {
	r := c.lookup(p)
	if r == nil {
		return store.Entry{}, false
	}
	return c.entryOf(r), true
}

func (c *cover) entryOf(r *rec) store.Entry {
	e := store.Entry{Prefix: r.k.prefix(), Origin: c.strs.originName(r.origin), Reason: c.strs.s[r.reason],
		Created: timeOf(r.created), Expires: timeOf(r.expires), Count: int(r.count)}
	if r.host != 0 {
		e.Host = c.strs.originName(r.host - 1)
	}
	return e
}

// sorted returns the live entries at now, sorted by prefix.
func (c *cover) sorted(now time.Time) []store.Entry {
	n := nanos(now)
	out := make([]store.Entry, 0, c.n)
	for i := range c.recs {
		if r := &c.recs[i]; r.flags&live != 0 && alive(r.expires, n) {
			out = append(out, c.entryOf(r))
		}
	}
	slices.SortFunc(out, func(a, b store.Entry) int {
		if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
			return c
		}
		return a.Prefix.Bits() - b.Prefix.Bits()
	})
	return out
}

// each calls fn with every live record (expired or not).
func (c *cover) each(fn func(r *rec)) {
	for i := range c.recs {
		if r := &c.recs[i]; r.flags&live != 0 {
			fn(r)
		}
	}
}

// covers reports whether a live entry contains address a, in at most one
// map lookup per prefix length in use (not a scan of every entry).
func (c *cover) covers(a netip.Addr, now time.Time) bool {
	return c.within(netip.PrefixFrom(a, a.BitLen()), now)
}

// within reports whether a live entry contains all of p.
func (c *cover) within(p netip.Prefix, now time.Time) bool {
	_, ok := c.outer(p, nanos(now))
	return ok
}

// outer returns a live entry containing all of p (p itself included).
func (c *cover) outer(p netip.Prefix, now int64) (*rec, bool) {
	lens := c.alens(p)
	for b := 0; b <= p.Bits(); b++ {
		if lens[b] == 0 {
			continue
		}
		if r := c.lookup(netip.PrefixFrom(p.Addr(), b).Masked()); r != nil && alive(r.expires, now) {
			return r, true
		}
	}
	return nil, false
}

// kernelParent returns the kernel entry strictly containing p, if any.
func (c *cover) kernelParent(p netip.Prefix) (*rec, bool) {
	lens := c.lens(p)
	for b := 0; b < p.Bits(); b++ {
		if lens[b] == 0 {
			continue
		}
		if r := c.lookup(netip.PrefixFrom(p.Addr(), b).Masked()); r != nil && r.flags&inKernel != 0 {
			return r, true
		}
	}
	return nil, false
}

// maxEnumerate bounds how many candidate prefixes inside finds by lookups
// before it scans every record instead.
const maxEnumerate = 1 << 13

// inside calls fn with every live record strictly inside p (longer, and
// contained), until fn returns false. For a narrow p (a /24: 511 lookups
// at most) it looks up each prefix that could be there, in the lengths in
// use; for a wide one it scans every record.
func (c *cover) inside(p netip.Prefix, fn func(r *rec) bool) {
	p = p.Masked()
	lens := c.alens(p)
	max := p.Addr().BitLen()
	total := 0
	for b := p.Bits() + 1; b <= max; b++ {
		if lens[b] > 0 {
			if b-p.Bits() > 20 {
				total = maxEnumerate + 1
				break
			}
			total += 1 << (b - p.Bits())
		}
	}
	if total > maxEnumerate || total > c.n {
		for i := range c.recs {
			r := &c.recs[i]
			if r.flags&live == 0 || int(r.k.bits) <= p.Bits() || r.k.v6 != p.Addr().Is6() {
				continue
			}
			if p.Contains(r.k.prefix().Addr()) && !fn(r) {
				return
			}
		}
		return
	}
	for b := p.Bits() + 1; b <= max; b++ {
		if lens[b] == 0 {
			continue
		}
		// Every prefix of length b inside p: p's address with the bits
		// between p.Bits() and b counted up.
		for i := 0; i < 1<<(b-p.Bits()); i++ {
			q := netip.PrefixFrom(addBits(p.Addr(), b, uint64(i)), b)
			if r := c.lookup(q); r != nil && !fn(r) {
				return
			}
		}
	}
}

// addBits returns a with i written into the bits that end at bit b (the
// prefix length b's last bits), i being less than 2^20.
func addBits(a netip.Addr, b int, i uint64) netip.Addr {
	s := a.As16()
	off := 0
	if a.Is4() {
		off = 96
	}
	end := off + b // bit index after the last bit to write
	for j := 0; i != 0; j++ {
		bit := end - 1 - j
		if i&1 != 0 {
			s[bit/8] |= 0x80 >> (bit % 8)
		}
		i >>= 1
	}
	if a.Is4() {
		return netip.AddrFrom4([4]byte(s[12:]))
	}
	return netip.AddrFrom16(s)
}

// put adds or replaces an entry and returns the kernel change it needs.
func (c *cover) put(p netip.Prefix, exp, now time.Time) (del, add []firewall.Element) {
	n := nanos(now)
	del, add = c.dbuf[:0], c.abuf[:0]
	var old int64
	if r := c.lookup(p); r != nil {
		old = r.expires
	}
	r := c.aput(p, exp)
	if _, ok := c.kernelParent(p); ok {
		return nil, nil // enforced by its parent for now; expire() brings it in later
	}
	if r.flags&inKernel != 0 {
		// Replace, so the new timeout holds whether or not the kernel
		// updates timeouts on re-add.
		if e, ok := element(p, old, n); ok {
			del = append(del, e)
		}
	} else if p.Bits() < p.Addr().BitLen() {
		c.inside(p, func(q *rec) bool {
			if q.flags&inKernel != 0 {
				if e, ok := element(q.k.prefix(), q.expires, n); ok {
					del = append(del, e)
				}
				c.kdel(q)
			}
			return true
		})
	}
	if e, ok := element(p, r.expires, n); ok {
		c.kput(r)
		add = append(add, e)
	}
	return del, add
}

// remove deletes an entry; the entries it covered take its place.
func (c *cover) remove(p netip.Prefix, now time.Time) (del, add []firewall.Element, found bool) {
	r := c.lookup(p)
	if r == nil {
		return nil, nil, false
	}
	inK, exp := r.flags&inKernel != 0, r.expires
	c.kdel(r)
	c.adel(p)
	if !inK {
		return nil, nil, true
	}
	if e, ok := element(p, exp, nanos(now)); ok {
		del = append(del, e)
	}
	return del, c.promote(p, now), true
}

// promote puts into the kernel the outermost live entries inside p, which
// has just left the kernel.
func (c *cover) promote(p netip.Prefix, now time.Time) []firewall.Element {
	if p.Bits() == p.Addr().BitLen() {
		return nil
	}
	n := nanos(now)
	var in []uint32
	c.inside(p, func(r *rec) bool {
		if alive(r.expires, n) {
			s, _ := c.idx.get(c.recs, r.k)
			in = append(in, s)
		}
		return true
	})
	slices.SortFunc(in, func(a, b uint32) int { return int(c.recs[a].k.bits) - int(c.recs[b].k.bits) })
	var add []firewall.Element
	for _, s := range in {
		r := &c.recs[s]
		q := r.k.prefix()
		if _, ok := c.kernelParent(q); ok {
			continue
		}
		if e, ok := element(q, r.expires, n); ok {
			c.kput(r)
			add = append(add, e)
		}
	}
	return add
}

// expire forgets entries that ended by now and returns what they covered
// that must now enter the kernel. Their own kernel elements have timed out
// by themselves.
func (c *cover) expire(now time.Time) (gone []netip.Prefix, add []firewall.Element) {
	n := nanos(now)
	var wasIn []bool
	for len(c.due) > 0 && c.due[0].at <= n {
		e := c.due.pop()
		if c.current(e) {
			r := &c.recs[e.slot]
			p := r.k.prefix()
			wasIn = append(wasIn, r.flags&inKernel != 0)
			c.kdel(r)
			c.adel(p) // before any promote: an ending entry must not be promoted
			gone = append(gone, p)
		}
	}
	for i, p := range gone {
		if wasIn[i] {
			add = append(add, c.promote(p, now)...)
		}
	}
	return gone, add
}

// next returns the earliest expiry among live entries (zero if none).
func (c *cover) next() time.Time {
	for len(c.due) > 0 {
		if c.current(c.due[0]) {
			return timeOf(c.due[0].at)
		}
		c.due.pop()
	}
	return time.Time{}
}

// rebuild recomputes the kernel view from the live entries, for a full
// table install, and returns its elements.
func (c *cover) rebuild(now time.Time) []firewall.Element {
	return slices.Collect(c.rebuildEach(now))
}

// rebuildEach is rebuild giving the elements as a sequence, which may be
// gone through more than once while the cover is not changed.
func (c *cover) rebuildEach(now time.Time) iter.Seq[firewall.Element] {
	n := nanos(now)
	c.lens4, c.lens6 = [33]int{}, [129]int{}
	var wide []uint32 // entries that may contain others: not hosts
	for i := range c.recs {
		r := &c.recs[i]
		r.flags &^= inKernel
		if r.flags&live != 0 && alive(r.expires, n) && !r.k.host() {
			wide = append(wide, uint32(i))
		}
	}
	slices.SortFunc(wide, func(a, b uint32) int { return int(c.recs[a].k.bits) - int(c.recs[b].k.bits) })
	put := func(r *rec) {
		if _, ok := c.kernelParent(r.k.prefix()); ok {
			return
		}
		if _, ok := element(r.k.prefix(), r.expires, n); ok {
			c.kput(r)
		}
	}
	for _, s := range wide {
		put(&c.recs[s])
	}
	for i := range c.recs {
		if r := &c.recs[i]; r.flags&live != 0 && alive(r.expires, n) && r.k.host() {
			put(r)
		}
	}
	return func(yield func(firewall.Element) bool) {
		for i := range c.recs {
			r := &c.recs[i]
			if r.flags&inKernel == 0 {
				continue
			}
			if e, ok := element(r.k.prefix(), r.expires, n); ok && !yield(e) {
				return
			}
		}
	}
}

// host reports whether k is a single address.
func (k key) host() bool { return (k.v6 && k.bits == 128) || (!k.v6 && k.bits == 32) }

// readMark is a reconcile's read of the kernel in progress: which kernel
// entries it saw, by record.
type readMark struct{ seen []uint64 }

// beginRead starts a reconcile's read: entries put in the kernel from now
// on are new, not missing.
func (c *cover) beginRead() {
	c.read = &readMark{seen: make([]uint64, (len(c.recs)+63)/64)}
	for i := range c.recs {
		c.recs[i].flags &^= putMark
	}
}

// saw marks the entries the read found in the kernel.
func (c *cover) saw(ps []netip.Prefix) {
	for _, p := range ps {
		if s, ok := c.idx.get(c.recs, keyOf(p)); ok && int(s)/64 < len(c.read.seen) {
			c.read.seen[s/64] |= 1 << (s % 64)
		}
	}
}

// missing ends the read and returns the kernel-view elements it did not
// find, to re-assert them. Elements put after the read began are not
// missing, only new.
func (c *cover) missing(now time.Time) []firewall.Element {
	n := nanos(now)
	var out []firewall.Element
	for i := range c.recs {
		r := &c.recs[i]
		seen := i/64 < len(c.read.seen) && c.read.seen[i/64]&(1<<(i%64)) != 0
		if r.flags&inKernel == 0 || seen || r.flags&putMark != 0 {
			continue
		}
		if e, ok := element(r.k.prefix(), r.expires, n); ok {
			out = append(out, e)
		}
	}
	c.read = nil
	return out
}

// overlapping returns a live entry that overlaps p (contains it or lies
// inside it), if any.
func (c *cover) overlapping(p netip.Prefix, now time.Time) (netip.Prefix, bool) {
	n := nanos(now)
	if r, ok := c.outer(p, n); ok {
		return r.k.prefix(), true
	}
	var found netip.Prefix
	c.inside(p, func(r *rec) bool {
		if alive(r.expires, n) {
			found = r.k.prefix()
			return false
		}
		return true
	})
	return found, found.IsValid()
}

// strtab interns the origins and reasons of records: a handful of origins,
// and reasons that the guards mostly word alike. Reasons are counted, so
// one that no live record uses any more is forgotten.
type strtab struct {
	s       []string
	refs    []uint32
	idx     map[string]uint32
	free    []uint32
	origins []string
	oidx    map[string]uint16
}

func newStrtab() *strtab {
	return &strtab{s: []string{""}, refs: []uint32{0}, idx: map[string]uint32{}, oidx: map[string]uint16{}}
}

// ref returns s's index, counting one more user of it. "" is 0, never
// counted.
func (t *strtab) ref(s string) uint32 {
	if s == "" {
		return 0
	}
	if i, ok := t.idx[s]; ok {
		t.refs[i]++
		return i
	}
	var i uint32
	if n := len(t.free); n > 0 {
		i = t.free[n-1]
		t.free = t.free[:n-1]
		t.s[i], t.refs[i] = s, 1
	} else {
		i = uint32(len(t.s))
		t.s, t.refs = append(t.s, s), append(t.refs, 1)
	}
	t.idx[s] = i
	return i
}

func (t *strtab) unref(i uint32) {
	if i == 0 {
		return
	}
	if t.refs[i]--; t.refs[i] == 0 {
		delete(t.idx, t.s[i])
		t.s[i] = ""
		t.free = append(t.free, i)
	}
}

// origin returns the index of an origin; there are few, kept for good.
// Past 65,535 distinct origins (never, in practice) the last one is
// reused rather than failing a ban.
func (t *strtab) origin(s string) uint16 {
	if i, ok := t.oidx[s]; ok {
		return i
	}
	if len(t.origins) == math.MaxUint16 {
		return math.MaxUint16 - 1
	}
	t.origins = append(t.origins, s)
	i := uint16(len(t.origins) - 1)
	t.oidx[s] = i
	return i
}

func (t *strtab) originName(i uint16) string {
	if int(i) < len(t.origins) {
		return t.origins[i]
	}
	return ""
}

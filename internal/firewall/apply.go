package firewall

import (
	"bytes"
	"errors"
	"fmt"
	"iter"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Element is one entry of a ban or allow set: a prefix (hosts are /32 or
// /128) with a kernel timeout, zero meaning none.
type Element struct {
	Prefix  netip.Prefix
	Timeout time.Duration
}

// SetKind says which pair of sets (v4 and v6) an element belongs to.
type SetKind int

// The set kinds.
const (
	Bans SetKind = iota
	Allows
)

// setFor names the set that holds p: for bans, a host goes to the hash
// set and a wider prefix to the interval set of its family.
func (k SetKind) setFor(p netip.Prefix) string {
	v6 := p.Addr().Is6()
	switch {
	case k == Bans && p.IsSingleIP() && !v6:
		return SetBan4
	case k == Bans && p.IsSingleIP():
		return SetBan6
	case k == Bans && !v6:
		return SetBanNet4
	case k == Bans:
		return SetBanNet6
	case !v6:
		return SetAllow4
	}
	return SetAllow6
}

// sets lists the sets of a kind, with their family.
func (k SetKind) sets() []setRef {
	if k == Bans {
		return banSets[:]
	}
	return allowSets[:]
}

var (
	banSets   = [...]setRef{{SetBan4, false}, {SetBan6, true}, {SetBanNet4, false}, {SetBanNet6, true}}
	allowSets = [...]setRef{{SetAllow4, false}, {SetAllow6, true}}
)

type setRef struct {
	name string
	v6   bool
}

// Applier installs moat's table in the kernel over netlink. It is safe for
// concurrent use; each call is its own transaction on its own socket.
// Changes are serialized; reads are not, so reading back a big set (seconds
// at 100k elements) never holds up a ban.
type Applier struct {
	mu   sync.Mutex
	opts []nftables.ConnOption
	// What the last Apply installed, for Drift (see drift.go); gen counts
	// installs and removals, so a read that raced one is not called drift.
	shape *shape
	gen   uint64
	// w is the google/nftables socket for small changes made through
	// its types (blocklist sets), kept open (guarded by mu): dialing one
	// per change cost a door 200-700 µs of knock-to-grant in the daemon
	// (a fresh socket, its buffers, its poller registration) when grants
	// went through it; they now go through raw, below.
	w *nftables.Conn
	// raw is the socket ban and allow changes and installs go through,
	// encoded by txn (see nlraw.go), and tx the buffer they are built in,
	// both kept (guarded by mu). pids are the port ids of the sockets moat
	// changed its sets from, so a monitor tells its own changes from
	// others' (see Watch).
	raw  *rawSock
	tx   txn
	pids pidSet
	mon  *rawSock // Watch's socket, closed by Apply (see pauseMonitor)
	// hostCap is the size the host sets (v4, v6) were installed with, and
	// hostLen how many elements moat has put in them since, deletions
	// taken off but timeouts not: an upper bound (see Crowded).
	hostCap, hostLen [2]int
	// reserve is how many more host bans are on their way (a fleet's
	// replay, see Expect), by family unknown: the next install makes room
	// for them in both host sets.
	reserve int
	// delOp is the message element deletes go in (see deleteOp); 0 until
	// the kernel was asked.
	delOp uint16
}

// deleteOp returns the message set element deletes are sent in: a destroy
// (Linux 6.3 and later), which does not fail on an element already gone
// (a timeout took it, or someone's nft), or, on an older kernel such as
// Debian 12's stock 6.1, a plain delete, with commitDeletes' retry. The
// kernel is asked once, with a destroy of an element of a set that does
// not exist: a kernel that knows the message answers that the set is not
// there (ENOENT), one that does not refuses the message (EINVAL). a.mu
// must be held.
func (a *Applier) deleteOp() uint16 {
	if a.delOp != 0 {
		return a.delOp
	}
	s, err := a.rawWriter()
	if err != nil {
		return msgDestroySetElem // not asked: the change's own commit reports the socket
	}
	var t txn
	t.reset()
	t.elem(msgDestroySetElem, "moat-probe-destroy", make([]byte, 4), false, false, 0)
	err = s.commit(t.finish())
	op, known := deleteOpFor(err)
	if !known {
		if !errors.As(err, new(replyError)) {
			a.dropWriter()
		}
		return op // asked again next time
	}
	a.delOp = op
	return op
}

// deleteOpFor reads the kernel's answer to deleteOp's probe: the message
// to send deletes in, and whether the answer settles it.
func deleteOpFor(err error) (op uint16, known bool) {
	switch {
	case errors.Is(err, unix.EINVAL):
		return msgDelSetElem, true
	case err == nil || errors.Is(err, unix.ENOENT):
		return msgDestroySetElem, true
	}
	return msgDestroySetElem, false
}

// commitDeletes commits a.tx, built with deletes in op and then fill's
// additions. A plain delete (op msgDelSetElem) of an element already gone
// fails the whole transaction with ENOENT: then the deletes go one
// transaction each, those already gone skipped, and the additions after
// them. a.mu must be held.
func (a *Applier) commitDeletes(op uint16, ndel int, deleteOne func(i int), fill func()) error {
	err := a.commitRaw()
	if err == nil || op != msgDelSetElem || ndel == 0 || !errors.Is(err, unix.ENOENT) {
		return err
	}
	for i := range ndel {
		a.tx.reset()
		deleteOne(i)
		if err := a.commitRaw(); err != nil && !errors.Is(err, unix.ENOENT) {
			return err
		}
	}
	a.tx.reset()
	fill()
	return a.commitRaw()
}

// minHostSet is the least size of a host set. The kernel sizes a hash set
// from its declared size (a set that has to grow its hash while a million
// elements go in takes three times as long to fill) and refuses elements
// past it, so the host sets are declared with twice the hosts they get,
// and installed again, bigger, once they are three quarters full.
const minHostSet = 1 << 16

func hostSetSize(n int) int {
	size := minHostSet
	for size < 2*n {
		size *= 2
	}
	return size
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Crowded reports whether a host set may be three quarters full: the
// table should be installed again (Apply sizes the sets anew) before
// the kernel refuses bans.
func (a *Applier) Crowded() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.crowded()
}

func (a *Applier) crowded() bool {
	for i := range a.hostCap {
		if a.hostCap[i] > 0 && a.hostLen[i]+a.reserve > a.hostCap[i]*3/4 {
			return true
		}
	}
	return false
}

// Expect says that n more host bans are about to come (a fleet's replay
// of a bucket with a million), and reports whether the host sets are then
// Crowded: the caller installs the table again, once, with room for them,
// rather than the sets overflowing and being installed again and again
// (five times, each with every ban, on the way to a million).
func (a *Applier) Expect(n int) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.reserve = n
	if !a.crowded() {
		a.reserve = 0
		return false
	}
	return true
}

// NewApplier returns an applier; opts select the namespace (tests).
func NewApplier(opts ...nftables.ConnOption) *Applier {
	return &Applier{opts: opts}
}

func table() *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
}

// writer returns the long-lived socket for small changes; a.mu must be
// held. After a failed change the caller drops it (dropWriter), so a socket
// left in an unknown state (an unread reply, a broken namespace) is never
// reused.
func (a *Applier) writer() (*nftables.Conn, error) {
	if a.w != nil {
		return a.w, nil
	}
	c, err := nftables.New(append(a.opts[:len(a.opts):len(a.opts)], nftables.AsLasting())...)
	if err != nil {
		return nil, explain(fmt.Errorf("open netlink: %w", err))
	}
	a.w = c
	return c, nil
}

// dropWriter closes the long-lived sockets; a.mu must be held.
func (a *Applier) dropWriter() {
	if a.w != nil {
		_ = a.w.CloseLasting()
		a.w = nil
	}
	if a.raw != nil {
		_ = a.raw.Close()
		a.raw = nil
	}
}

// rawWriter returns the long-lived socket for set changes; a.mu must be
// held. Like writer's, it is dropped after a failure.
func (a *Applier) rawWriter() (*rawSock, error) {
	if a.raw != nil {
		return a.raw, nil
	}
	s, err := dialRaw(a.opts)
	if err != nil {
		return nil, err
	}
	a.raw = s
	a.pids.add(s.PID())
	return s, nil
}

// commitRaw commits the transaction in a.tx on the long-lived socket; a.mu
// must be held. A big buffer (a full install's) is not kept past it. The
// sockets are dropped after a send or receive error, not after the
// kernel's answer (an element already gone, on commitDeletes' path), whose
// replies commit has all read.
func (a *Applier) commitRaw() error {
	s, err := a.rawWriter()
	if err == nil {
		err = s.commit(a.tx.finish())
	}
	if err != nil && !errors.As(err, new(replyError)) {
		a.dropWriter()
	}
	a.tx.release()
	return err
}

// Close releases the socket the applier keeps for small changes. The
// applier stays usable: the next change opens a new one.
func (a *Applier) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.dropWriter()
	return nil
}

func (a *Applier) conn() (*nftables.Conn, error) {
	c, err := nftables.New(a.opts...)
	if err != nil {
		return nil, explain(fmt.Errorf("open netlink: %w", err))
	}
	return c, nil
}

// explain turns the kernel's errno into what the admin needs to know.
func explain(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("%w (moat needs root or CAP_NET_ADMIN to change the firewall)", err)
	case errors.Is(err, unix.EPROTONOSUPPORT), errors.Is(err, unix.EAFNOSUPPORT):
		return fmt.Errorf("%w (this kernel has no nftables support: load the nf_tables module or use a kernel built with CONFIG_NF_TABLES)", err)
	}
	return err
}

// Apply replaces moat's table with rs and the given set contents in one
// atomic transaction: until it commits, the old table stays in force, and
// no other table is touched. Grants (each with the time it has left as its
// Timeout) go into the new grant sets in the same transaction, so a door
// open before a reload is never shut, not even for a moment.
func (a *Applier) Apply(rs *Ruleset, bans, allows []Element, grants ...Grant) error {
	return a.ApplyEach(rs, slices.Values(bans), slices.Values(allows), grants...)
}

// Seq is a sequence of elements.
type Seq = iter.Seq[Element]

// ApplyEach is Apply with the elements given as sequences, each gone
// through twice (once to count, once to encode): a million bans need not
// be gathered into a slice first.
func (a *Applier) ApplyEach(rs *Ruleset, bans, allows Seq, grants ...Grant) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	// The table, its chains, rules and small sets are encoded by
	// google/nftables, captured rather than sent, and go out in one batch
	// with the ban and allow elements, which txn encodes into one buffer.
	var captured []netlink.Message
	c, err := nftables.New(nftables.WithTestDial(func(req []netlink.Message) ([]netlink.Message, error) {
		captured = append(captured, req...)
		return nil, nil
	}))
	if err != nil {
		return err
	}
	t := table()
	// Adding first makes the delete valid whether or not the table exists.
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	for _, name := range rs.Counters {
		c.AddObj(&nftables.NamedObj{Table: t, Name: name, Type: nftables.ObjTypeCounter, Obj: &expr.Counter{}})
	}
	c.AddObj(&nftables.NamedObj{Table: t, Name: LimitLog, Type: nftables.ObjTypeLimit, Obj: &expr.Limit{
		Type: expr.LimitTypePkts, Rate: uint64(rs.LogRate), Unit: expr.LimitTimeSecond, Burst: rs.LogBurst,
	}})
	var hosts [2]int // host bans by family, to size their sets
	nets := 0
	for e := range bans {
		if e.Prefix.IsSingleIP() {
			hosts[b2i(e.Prefix.Addr().Is6())]++
		} else {
			nets++
		}
	}
	for range allows {
		nets++
	}
	a.hostCap, a.hostLen = [2]int{hostSetSize(hosts[0] + a.reserve), hostSetSize(hosts[1] + a.reserve)}, hosts
	a.reserve = 0
	contents := map[string][]nftables.SetElement{}
	for _, g := range grants {
		name := grantSet(g.Addr.Unmap().Is6()).Name
		contents[name] = append(contents[name], nftables.SetElement{Key: grantKey(g), Timeout: g.Timeout})
	}
	for _, sd := range rs.Sets {
		s := namedSet(t, sd.Name, sd.V6)
		switch sd.Type {
		case SetHosts:
			s.Interval, s.Size = false, uint32(a.hostCap[b2i(sd.V6)])
		case SetSources:
			s.Interval, s.Dynamic, s.Size, s.Timeout = false, true, sd.Size, sd.Timeout
		case SetGrants:
			addr := nftables.TypeIPAddr
			if sd.V6 {
				addr = nftables.TypeIP6Addr
			}
			s.Interval, s.Dynamic, s.Size, s.Concatenation = false, true, sd.Size, true
			s.KeyType = nftables.MustConcatSetType(addr, nftables.TypeInetProto, nftables.TypeInetService)
		case SetBlocklist:
			s.HasTimeout = false
		}
		if err := c.AddSet(s, contents[sd.Name]); err != nil {
			return fmt.Errorf("nftables: set %s: %w", sd.Name, err)
		}
		if _, err := addRanges(c, s, sd.Ranges, false); err != nil {
			return fmt.Errorf("nftables: %w", err)
		}
	}
	chains := map[string]*nftables.Chain{}
	for _, ch := range rs.Chains {
		nc := &nftables.Chain{Name: ch.Name, Table: t}
		if hook := ch.hooknum(); hook != nil {
			nc.Hooknum = hook
			nc.Priority = nftables.ChainPriorityRef(nftables.ChainPriority(ch.Priority))
			nc.Type = nftables.ChainTypeFilter
			nc.Policy = ch.policy()
		}
		chains[ch.Name] = c.AddChain(nc)
	}
	for _, ch := range rs.Chains {
		for _, r := range ch.Rules {
			for _, as := range r.anonSets() {
				s := &nftables.Set{Table: t, Anonymous: true, Constant: true, Interval: as.interval, KeyType: as.keyType, Concatenation: as.concat}
				if err := c.AddSet(s, as.elems); err != nil {
					return fmt.Errorf("nftables: rule %q: %w", r.Text(), err)
				}
				as.lookup.SetName, as.lookup.SetID = s.Name, s.ID
			}
			c.AddRule(&nftables.Rule{Table: t, Chain: chains[ch.Name], Exprs: r.exprs()})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: encode table inet %s: %w", TableName, err)
	}
	size := (hosts[0]+hosts[1])*maxHostElem + nets*maxNetElem
	for _, m := range captured {
		size += nlmsgHdrLen + len(m.Data)
	}
	a.tx.grow(size)
	a.tx.reset()
	for _, m := range captured {
		if m.Header.Type == unix.NFNL_MSG_BATCH_BEGIN || m.Header.Type == unix.NFNL_MSG_BATCH_END {
			continue
		}
		a.tx.raw(m.Header.Type, m.Header.Flags, m.Data)
	}
	captured = nil
	a.tx.each(msgNewSetElem, Bans, bans)
	a.tx.each(msgNewSetElem, Allows, allows)
	a.pauseMonitor()
	if err := a.commitRaw(); err != nil {
		return explain(fmt.Errorf("nftables: install table inet %s: %w", TableName, err))
	}
	a.remember(rs)
	// Asked now, on the socket the install used, so that the first unban
	// or grant of a daemon without a scan guard (which calls Warm) does
	// not pay the round trip.
	a.deleteOp()
	return nil
}

func namedSet(t *nftables.Table, name string, v6 bool) *nftables.Set {
	kt := nftables.TypeIPAddr
	if v6 {
		kt = nftables.TypeIP6Addr
	}
	return &nftables.Set{Table: t, Name: name, KeyType: kt, Interval: true, HasTimeout: true}
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// Update deletes then adds elements of one kind in one transaction, so a
// prefix that replaces the hosts it covers never leaves a gap.
func (a *Applier) Update(kind SetKind, del, add []Element) error {
	if len(del) == 0 && len(add) == 0 {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	op := a.deleteOp()
	adds := func() { a.tx.elements(msgNewSetElem, kind, add) }
	a.tx.reset()
	a.tx.elements(op, kind, del)
	adds()
	if kind == Bans {
		for _, e := range del {
			if e.Prefix.IsSingleIP() {
				a.hostLen[b2i(e.Prefix.Addr().Is6())]--
			}
		}
		for _, e := range add {
			if e.Prefix.IsSingleIP() {
				a.hostLen[b2i(e.Prefix.Addr().Is6())]++
			}
		}
	}
	err := a.commitDeletes(op, len(del), func(i int) { a.tx.element(op, kind, del[i]) }, adds)
	if err != nil {
		return explain(fmt.Errorf("nftables: update %s sets: %w", kindName(kind), err))
	}
	return nil
}

// change queues a transaction's messages with fill on the long-lived
// socket and commits them. On any error the socket is dropped: queued
// messages of a failed fill would otherwise ride along with the next
// change, and a failed commit may leave replies unread.
func (a *Applier) change(fill func(c *nftables.Conn) error) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, err := a.writer()
	if err != nil {
		return err
	}
	if err = fill(c); err == nil {
		err = c.Flush()
	}
	if err != nil {
		a.dropWriter()
	}
	return err
}

func kindName(k SetKind) string {
	if k == Bans {
		return "ban"
	}
	return "allow"
}

// Remove deletes moat's table and nothing else. It reports whether there
// was one.
func (a *Applier) Remove() (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ok, err := a.exists()
	if err != nil || !ok {
		return false, err
	}
	c, err := a.conn()
	if err != nil {
		return false, err
	}
	c.DelTable(table())
	if err := c.Flush(); err != nil {
		return false, explain(fmt.Errorf("nftables: delete table inet %s: %w", TableName, err))
	}
	a.forget()
	return true, nil
}

// Exists reports whether moat's table is in the kernel.
func (a *Applier) Exists() (bool, error) {
	return a.exists()
}

func (a *Applier) exists() (bool, error) {
	c, err := a.conn()
	if err != nil {
		return false, err
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, explain(fmt.Errorf("nftables: list tables: %w", err))
	}
	for _, t := range tables {
		if t.Name == TableName {
			return true, nil
		}
	}
	return false, nil
}

// Elements reads back the prefixes in the sets of one kind. It is slow for
// big sets (about 1.5 s per 100,000): the store, not the kernel, is the
// source of truth, and this is only for reconciling.
func (a *Applier) Elements(kind SetKind) ([]netip.Prefix, error) {
	els, err := a.ElementsLeft(kind)
	if err != nil {
		return nil, err
	}
	out := make([]netip.Prefix, len(els))
	for i, e := range els {
		out[i] = e.Prefix
	}
	return out, nil
}

// ElementsLeft is Elements with each element's time left in the kernel as
// its Timeout (zero: no timeout), for adopting bans the store missed.
func (a *Applier) ElementsLeft(kind SetKind) ([]Element, error) {
	var out []Element
	err := a.EachElement(kind, func(e Element) { out = append(out, e) })
	return out, err
}

// EachElement calls fn with every element of the sets of kind, each with
// its time left as Timeout, as the kernel's dump is read: nothing is
// gathered but the few interval bounds, which need pairing.
func (a *Applier) EachElement(kind SetKind, fn func(Element)) error {
	s, err := dialRaw(a.opts)
	if err != nil {
		return err
	}
	defer s.Close()
	c, err := a.conn()
	if err != nil {
		return err
	}
	for _, ref := range kind.sets() {
		// The kernel's flags, not the name, say how to read a set: a
		// table installed by an older moat has intervals in ban4.
		ks, err := c.GetSetByName(table(), ref.name)
		if errors.Is(err, unix.ENOENT) {
			continue // a table from before the set was added (an upgrade)
		}
		if err != nil {
			return explain(fmt.Errorf("nftables: read set %s: %w", ref.name, err))
		}
		interval := ks.Interval
		var bounds []nftables.SetElement
		err = s.dumpSet(ref.name, func(key []byte, flags uint32, left time.Duration) {
			if interval {
				bounds = append(bounds, nftables.SetElement{Key: bytes.Clone(key), IntervalEnd: flags&elemFlagIntervalEnd != 0, Expires: left, Timeout: left})
				return
			}
			if a, ok := keyAddr(key); ok {
				fn(Element{Prefix: netip.PrefixFrom(a, a.BitLen()), Timeout: left})
			}
		})
		if err != nil {
			return explain(fmt.Errorf("nftables: read set %s: %w", ref.name, err))
		}
		es, err := intervalsToElements(bounds)
		if err != nil {
			return fmt.Errorf("nftables: set %s: %w", ref.name, err)
		}
		for _, e := range es {
			fn(e)
		}
	}
	return nil
}

// Missing returns which of ps the ban or allow sets of kind lack, asking
// the kernel for them by key, a thousand at a time: a million in seconds,
// where reading the sets back takes minutes (the kernel's dumps restart
// their walk at every chunk). A prefix is found by its first address.
func (a *Applier) Missing(kind SetKind, ps []netip.Prefix) ([]netip.Prefix, error) {
	s, err := dialRaw(a.opts)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	key := func(p netip.Prefix) []byte { return p.Masked().Addr().AsSlice() }
	var out []netip.Prefix
	for _, ref := range kind.sets() {
		var batch []netip.Prefix
		check := func() error {
			keys := make([][]byte, len(batch))
			for i, p := range batch {
				keys[i] = key(p)
			}
			all, err := s.getBatch(ref.name, keys)
			if err != nil || all {
				return err
			}
			for _, p := range batch { // which ones: one by one
				if ok, err := s.getBatch(ref.name, [][]byte{key(p)}); err != nil {
					return err
				} else if !ok {
					out = append(out, p)
				}
			}
			return nil
		}
		for _, p := range ps {
			if kind.setFor(p) != ref.name {
				continue
			}
			if batch = append(batch, p); len(batch) == 1000 {
				if err := check(); err != nil {
					return out, explain(fmt.Errorf("nftables: look up in set %s: %w", ref.name, err))
				}
				batch = batch[:0]
			}
		}
		if len(batch) > 0 {
			if err := check(); err != nil {
				return out, explain(fmt.Errorf("nftables: look up in set %s: %w", ref.name, err))
			}
		}
	}
	return out, nil
}

// intervalsToElements pairs interval starts with their ends. The kernel
// dumps elements in no promised order, so pair by sorting. The time left is
// the start element's: moat sets its timeout on the start only.
func intervalsToElements(els []nftables.SetElement) ([]Element, error) {
	type bound struct {
		addr netip.Addr
		end  bool
		left time.Duration
	}
	var bs []bound
	for _, e := range els {
		a, ok := netip.AddrFromSlice(e.Key)
		if !ok {
			return nil, fmt.Errorf("element with a %d-byte key", len(e.Key))
		}
		left := e.Expires
		if e.Timeout > 0 && left <= 0 {
			left = time.Millisecond // about to expire; never "forever"
		}
		bs = append(bs, bound{a, e.IntervalEnd, left})
	}
	sortBounds := func(i, j int) bool {
		if c := bs[i].addr.Compare(bs[j].addr); c != 0 {
			return c < 0
		}
		return bs[i].end && !bs[j].end // an end sorts before a start at the same address
	}
	sort.Slice(bs, sortBounds)
	var out []Element
	for i := 0; i < len(bs); i++ {
		if bs[i].end {
			continue // the kernel's leading zero end marker, or a dangling end
		}
		start, left := bs[i].addr, bs[i].left
		var last netip.Addr
		if i+1 < len(bs) && bs[i+1].end {
			last = bs[i+1].addr.Prev()
			i++
		} else {
			last = maxAddr(start.Is6())
		}
		for _, p := range rangeToPrefixes(start, last) {
			out = append(out, Element{Prefix: p, Timeout: left})
		}
	}
	return out, nil
}

func maxAddr(v6 bool) netip.Addr {
	if v6 {
		return netip.AddrFrom16([16]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	}
	return netip.AddrFrom4([4]byte{0xff, 0xff, 0xff, 0xff})
}

// rangeToPrefixes splits [start, last] into the fewest covering prefixes.
func rangeToPrefixes(start, last netip.Addr) []netip.Prefix {
	var out []netip.Prefix
	for start.IsValid() && start.Compare(last) <= 0 {
		bits := start.BitLen()
		// Grow the prefix while it stays aligned and inside the range.
		for bits > 0 {
			p := netip.PrefixFrom(start, bits-1)
			if p.Masked().Addr() != start || lastAddr(p).Compare(last) > 0 {
				break
			}
			bits--
		}
		p := netip.PrefixFrom(start, bits)
		out = append(out, p)
		start = lastAddr(p).Next()
	}
	return out
}

// Counters reads moat's named counters: packets and bytes dropped per reason.
func (a *Applier) Counters() (map[string]Counter, error) {
	c, err := a.conn()
	if err != nil {
		return nil, err
	}
	objs, err := c.GetNamedObjects(table())
	if err != nil {
		return nil, explain(fmt.Errorf("nftables: read counters: %w", err))
	}
	out := map[string]Counter{}
	for _, o := range objs {
		no, ok := o.(*nftables.NamedObj)
		if !ok || no.Type != nftables.ObjTypeCounter {
			continue
		}
		if ce, ok := no.Obj.(*expr.Counter); ok {
			out[no.Name] = Counter{Packets: ce.Packets, Bytes: ce.Bytes}
		}
	}
	return out, nil
}

// Counter is one named counter's value.
type Counter struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Grant is a door's opening of one port for one source.
type Grant struct {
	Addr    netip.Addr
	Proto   uint8 // IP protocol number
	Port    uint16
	Timeout time.Duration // the grant's length, when adding
	Left    time.Duration // time left, when read back
}

func grantSet(v6 bool) *nftables.Set {
	if v6 {
		return tripleSet(SetGrant6, true)
	}
	return tripleSet(SetGrant4, false)
}

// tripleSet is a set of addr . proto . port with timeouts: grants, and
// port-limited bans.
func tripleSet(name string, v6 bool) *nftables.Set {
	addr := nftables.TypeIPAddr
	if v6 {
		addr = nftables.TypeIP6Addr
	}
	return &nftables.Set{Table: table(), Name: name, Dynamic: true, HasTimeout: true, Concatenation: true,
		KeyType: nftables.MustConcatSetType(addr, nftables.TypeInetProto, nftables.TypeInetService)}
}

// grantKey is the concatenation addr . proto . port, each field padded to
// four bytes as the kernel's registers hold them.
func grantKey(g Grant) []byte {
	var k [24]byte
	return appendGrantKey(k[:0], g)
}

// appendGrantKey appends g's key to k: with a buffer on the caller's
// stack, a grant on the knock-to-door path allocates nothing for it.
func appendGrantKey(k []byte, g Grant) []byte {
	return append(appendAddr(k, g.Addr.Unmap()), g.Proto, 0, 0, 0, byte(g.Port>>8), byte(g.Port), 0, 0)
}

// UpdateGrants deletes then adds grants in one transaction (daemon-mode
// doors; kernel-mode doors add their own from the packet path).
func (a *Applier) UpdateGrants(del, add []Grant) error {
	return a.updateTriples("grants", [2]string{SetGrant4, SetGrant6}, del, add)
}

// updateTriples deletes then adds addr . proto . port elements of the
// v4/v6 pair of sets names, in one transaction, on the raw socket
// bans use (nlraw.go): a door's grant is on the path from the knock to
// the door opening, and google/nftables' Flush costs about twice the raw
// commit there (the attribute trees it builds, a read per reply). A delete
// is a destroy, which does not fail on an element its timeout already
// took.
func (a *Applier) updateTriples(what string, names [2]string, del, add []Grant) error {
	if len(del) == 0 && len(add) == 0 {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	op := a.deleteOp()
	var kb [24]byte
	one := func(op uint16, g Grant, timeout time.Duration) {
		name := names[0]
		if g.Addr.Unmap().Is6() {
			name = names[1]
		}
		a.tx.elem(op, name, appendGrantKey(kb[:0], g), false, false, timeout)
	}
	adds := func() {
		for _, g := range add {
			one(msgNewSetElem, g, g.Timeout)
		}
	}
	a.tx.reset()
	for _, g := range del {
		one(op, g, 0)
	}
	adds()
	err := a.commitDeletes(op, len(del), func(i int) { one(op, del[i], 0) }, adds)
	if err != nil {
		return explain(fmt.Errorf("nftables: update %s: %w", what, err))
	}
	return nil
}

// Grants reads the open grants of every door, with the time each has left.
func (a *Applier) Grants() ([]Grant, error) {
	return a.readTriples("grants", grantSet)
}

// readTriples reads the addr . proto . port elements of the v4/v6 pair of
// sets setFor names, with the time each has left in Left. Sets that do not
// exist (no doors) read as empty.
func (a *Applier) readTriples(what string, setFor func(v6 bool) *nftables.Set) ([]Grant, error) {
	c, err := a.conn()
	if err != nil {
		return nil, err
	}
	var out []Grant
	for _, v6 := range []bool{false, true} {
		els, err := c.GetSetElements(setFor(v6))
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return nil, explain(fmt.Errorf("nftables: read %s: %w", what, err))
		}
		n := 4
		if v6 {
			n = 16
		}
		for _, e := range els {
			if len(e.Key) < n+8 {
				continue
			}
			addr, _ := netip.AddrFromSlice(e.Key[:n])
			out = append(out, Grant{Addr: addr, Proto: e.Key[n], Port: uint16(e.Key[n+4])<<8 | uint16(e.Key[n+5]),
				Timeout: e.Timeout, Left: e.Expires})
		}
	}
	return out, nil
}

package firewall

import (
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"net/netip"
	"slices"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// This file encodes set elements and whole transactions as netlink bytes
// itself, and sends them on a socket of its own. google/nftables builds a
// tree of attribute values per element (about 1.5 KB of garbage for each:
// 1.5 GB for a million bans); here an element is appended to one buffer
// that is reused, and a dump is parsed as it is read, without building
// the elements it does not keep.

// maxElemList bounds the elements attribute of one message: an attribute's
// length is 16 bits.
const maxElemList = 60 << 10

// Message types and flags, as the kernel's nfnetlink and nf_tables headers
// define them.
const (
	nftSubsys            = unix.NFNL_SUBSYS_NFTABLES << 8
	msgNewSetElem        = nftSubsys | unix.NFT_MSG_NEWSETELEM
	msgGetSetElem        = nftSubsys | unix.NFT_MSG_GETSETELEM
	msgDestroySetElem    = nftSubsys | 30 // NFT_MSG_DESTROYSETELEM (Linux 6.3): no error if absent
	msgDelSetElem        = nftSubsys | unix.NFT_MSG_DELSETELEM
	nlmsgHdrLen          = unix.SizeofNlMsghdr
	nfgenLen             = 4
	familyINet           = unix.NFPROTO_INET
	nlaNested            = unix.NLA_F_NESTED
	attrListElem         = 1 // NFTA_LIST_ELEM
	netlinkCapAck        = 10
	netlinkExtAck        = 11
	elemFlagIntervalEnd  = unix.NFT_SET_ELEM_INTERVAL_END
	defaultRecvBufferLen = 1 << 20
	nlaTypeMask          = 0x3fff // clears NLA_F_NESTED and NLA_F_NET_BYTEORDER
)

// intervalOpen is the user data nft reads to print a prefix that runs to
// the top of the address space (it has no end element).
var intervalOpen = userdata.AppendUint32(nil, userdata.NFTNL_UDATA_SET_ELEM_FLAGS, userdata.NFTNL_UDATA_SET_ELEM_F_INTERVAL_OPEN)

// txn builds one nftables transaction (a netlink batch) in one buffer.
type txn struct {
	buf    []byte
	mapped []byte // buf's memory when mapped (see grow)
	seq    uint32
	// The element message being filled, if any: where it starts, where
	// its elements attribute starts, and what it is for.
	msg, list int
	op        uint16
	set       string
}

// Bounds of one element's encoding, with its share of message headers: a
// host (an IPv6 key and a timeout: 40 bytes), and a prefix (a start and an
// end, and the user data of an open one).
const (
	maxHostElem = 48
	maxNetElem  = 112
)

// mapThreshold is the size past which a transaction's buffer is mapped
// from the kernel rather than taken from Go's heap, and handed back as
// soon as it is sent: a million bans take 40 MB of it for a second, which
// the heap would otherwise keep (and count towards its next goal).
const mapThreshold = 1 << 20

// grow makes room for about n bytes, so that a big install's buffer is
// allocated once rather than doubled twenty times.
func (t *txn) grow(n int) {
	n += 64 << 10
	if cap(t.buf) >= n {
		return
	}
	t.release()
	if n > mapThreshold {
		if b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS); err == nil {
			t.mapped, t.buf = b, b[:0]
			return
		}
	}
	t.buf = make([]byte, 0, n)
}

// release drops a big buffer once its transaction is sent. If the
// estimate was short, append moved the buffer to the heap and the mapping
// is unused by then; either way nothing refers to it after this.
func (t *txn) release() {
	if t.mapped != nil {
		_ = unix.Munmap(t.mapped)
		t.mapped, t.buf = nil, nil
	} else if cap(t.buf) > mapThreshold {
		t.buf = nil
	}
}

func (t *txn) reset() {
	t.buf, t.msg, t.set = t.buf[:0], -1, ""
	t.header(unix.NFNL_MSG_BATCH_BEGIN, unix.NLM_F_REQUEST)
	t.buf = append(t.buf, unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, unix.NFNL_SUBSYS_NFTABLES)
	t.close()
}

// header starts a message; close sets its length.
func (t *txn) header(typ, flags uint16) {
	t.msg = len(t.buf)
	t.seq++
	t.buf = binary.NativeEndian.AppendUint32(t.buf, 0)
	t.buf = binary.NativeEndian.AppendUint16(t.buf, typ)
	t.buf = binary.NativeEndian.AppendUint16(t.buf, flags)
	t.buf = binary.NativeEndian.AppendUint32(t.buf, t.seq)
	t.buf = binary.NativeEndian.AppendUint32(t.buf, 0)
}

func (t *txn) close() {
	if t.msg < 0 {
		return
	}
	if t.set != "" {
		t.endAttr(t.list)
	}
	binary.NativeEndian.PutUint32(t.buf[t.msg:], uint32(len(t.buf)-t.msg))
	t.msg, t.set = -1, ""
}

// raw appends a message built elsewhere (google/nftables' encoding of the
// table, chains and rules).
func (t *txn) raw(typ netlink.HeaderType, flags netlink.HeaderFlags, data []byte) {
	t.close()
	t.header(uint16(typ), uint16(flags))
	t.buf = append(t.buf, data...)
	t.close()
}

func (t *txn) attr(typ uint16, data []byte) {
	t.buf = binary.NativeEndian.AppendUint16(t.buf, uint16(unix.NLA_HDRLEN+len(data)))
	t.buf = binary.NativeEndian.AppendUint16(t.buf, typ)
	t.buf = append(t.buf, data...)
	t.pad()
}

func (t *txn) attrString(typ uint16, s string) {
	t.buf = binary.NativeEndian.AppendUint16(t.buf, uint16(unix.NLA_HDRLEN+len(s)+1))
	t.buf = binary.NativeEndian.AppendUint16(t.buf, typ)
	t.buf = append(t.buf, s...)
	t.buf = append(t.buf, 0)
	t.pad()
}

func (t *txn) attrBE32(typ uint16, v uint32) {
	t.buf = binary.NativeEndian.AppendUint16(t.buf, unix.NLA_HDRLEN+4)
	t.buf = binary.NativeEndian.AppendUint16(t.buf, typ)
	t.buf = binary.BigEndian.AppendUint32(t.buf, v)
}

func (t *txn) attrBE64(typ uint16, v uint64) {
	t.buf = binary.NativeEndian.AppendUint16(t.buf, unix.NLA_HDRLEN+8)
	t.buf = binary.NativeEndian.AppendUint16(t.buf, typ)
	t.buf = binary.BigEndian.AppendUint64(t.buf, v)
}

// startAttr opens a nested attribute; endAttr sets its length.
func (t *txn) startAttr(typ uint16) int {
	at := len(t.buf)
	t.buf = binary.NativeEndian.AppendUint16(t.buf, 0)
	t.buf = binary.NativeEndian.AppendUint16(t.buf, typ|nlaNested)
	return at
}

func (t *txn) endAttr(at int) {
	binary.NativeEndian.PutUint16(t.buf[at:], uint16(len(t.buf)-at))
}

func (t *txn) pad() {
	for len(t.buf)%unix.NLA_ALIGNTO != 0 {
		t.buf = append(t.buf, 0)
	}
}

// elem appends one element to set with op (msgNewSetElem or
// msgDestroySetElem), opening a new message when the set, the operation
// or the room left changes.
func (t *txn) elem(op uint16, set string, key []byte, end, open bool, timeout time.Duration) {
	if t.set != set || t.op != op || len(t.buf)-t.list > maxElemList {
		t.close()
		flags := uint16(unix.NLM_F_REQUEST)
		if op == msgNewSetElem {
			flags |= unix.NLM_F_CREATE
		}
		t.header(op, flags)
		t.buf = append(t.buf, familyINet, unix.NFNETLINK_V0, 0, 0)
		t.attrString(unix.NFTA_SET_ELEM_LIST_TABLE, TableName)
		t.attrString(unix.NFTA_SET_ELEM_LIST_SET, set)
		t.list = t.startAttr(unix.NFTA_SET_ELEM_LIST_ELEMENTS)
		t.op, t.set = op, set
	}
	el := t.startAttr(attrListElem)
	if end {
		t.attrBE32(unix.NFTA_SET_ELEM_FLAGS, elemFlagIntervalEnd)
	}
	k := t.startAttr(unix.NFTA_SET_ELEM_KEY)
	t.attr(unix.NFTA_DATA_VALUE, key)
	t.endAttr(k)
	if timeout > 0 && op == msgNewSetElem {
		t.attrBE64(unix.NFTA_SET_ELEM_TIMEOUT, uint64(max(timeout.Milliseconds(), 1)))
	}
	if open {
		t.attr(unix.NFTA_SET_ELEM_USERDATA, intervalOpen)
	}
	t.endAttr(el)
}

// elements appends els set by set, so that each message carries as many
// as fit.
func (t *txn) elements(op uint16, kind SetKind, els []Element) {
	if len(els) == 0 {
		return
	}
	if len(els) == 1 {
		t.element(op, kind, els[0])
		return
	}
	t.each(op, kind, slices.Values(els))
}

// each is elements for a sequence, gone through once per set.
func (t *txn) each(op uint16, kind SetKind, els iter.Seq[Element]) {
	for _, ref := range kind.sets() {
		for e := range els {
			if kind.setFor(e.Prefix) == ref.name {
				t.element(op, kind, e)
			}
		}
	}
}

// element appends e, of kind, to its set: a host to the hash set, a prefix
// as an interval (its first address, and the one after its last flagged
// as the end) to the interval set.
func (t *txn) element(op uint16, kind SetKind, e Element) {
	p := e.Prefix.Masked()
	var kb [16]byte
	key := appendAddr(kb[:0], p.Addr())
	set := kind.setFor(p)
	if kind == Bans && p.IsSingleIP() {
		t.elem(op, set, key, false, false, e.Timeout)
		return
	}
	next := lastAddr(p).Next()
	t.elem(op, set, key, false, !next.IsValid(), e.Timeout)
	if next.IsValid() {
		t.elem(op, set, appendAddr(key[:0], next), true, false, 0)
	}
}

// appendAddr appends a's 4 or 16 bytes to k.
func appendAddr(k []byte, a netip.Addr) []byte {
	if a.Is4() {
		a4 := a.As4()
		return append(k, a4[:]...)
	}
	a16 := a.As16()
	return append(k, a16[:]...)
}

func (t *txn) finish() []byte {
	t.close()
	t.header(unix.NFNL_MSG_BATCH_END, unix.NLM_F_REQUEST)
	t.buf = append(t.buf, unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, unix.NFNL_SUBSYS_NFTABLES)
	t.close()
	return t.buf
}

// rawSock is a netfilter netlink socket used through its file descriptor.
// Its reads and writes go through functions bound once, with their
// arguments and results in fields: a closure per call would be an
// allocation per ban.
type rawSock struct {
	c    *netlink.Conn
	rc   syscall.RawConn
	rbuf []byte
	sndb int // the send buffer size set so far

	wbuf          []byte // what write sends
	n             int    // what the last read got
	err           error  // and its error
	wait          bool   // whether read waits for data
	write, readFn func(fd uintptr) bool
}

func (s *rawSock) doWrite(fd uintptr) bool {
	// A netlink socket's writes go to the kernel: no address needed.
	_, s.err = unix.Write(int(fd), s.wbuf)
	return s.err != unix.EAGAIN
}

func (s *rawSock) doRead(fd uintptr) bool {
	s.n, s.err = unix.Read(int(fd), s.rbuf)
	return !s.wait || (s.err != unix.EAGAIN && s.err != unix.EWOULDBLOCK)
}

// send writes b.
func (s *rawSock) send(b []byte) error {
	s.wbuf = b
	err := s.rc.Write(s.write)
	s.wbuf = nil
	if err == nil {
		err = s.err
	}
	if err != nil {
		return fmt.Errorf("netlink send: %w", err)
	}
	return nil
}

// read reads what is queued into rbuf; with wait, it waits for it.
func (s *rawSock) read(wait bool) (int, error) {
	s.wait = wait
	if err := s.rc.Read(s.readFn); err != nil {
		return 0, err
	}
	return s.n, s.err
}

// dialRaw opens a socket in the namespace opts select.
func dialRaw(opts []nftables.ConnOption) (*rawSock, error) {
	var probe nftables.Conn
	for _, o := range opts {
		o(&probe)
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: probe.NetNS})
	if err != nil {
		return nil, explain(fmt.Errorf("open netlink: %w", err))
	}
	rc, err := c.SyscallConn()
	if err != nil {
		c.Close()
		return nil, err
	}
	s := &rawSock{c: c, rc: rc, rbuf: make([]byte, 64<<10)}
	s.write, s.readFn = s.doWrite, s.doRead
	// Errors without the request echoed back: one failed message of a
	// big batch would otherwise come back whole.
	_ = s.setsockopt(unix.SOL_NETLINK, netlinkCapAck, 1)
	_ = s.setsockopt(unix.SOL_NETLINK, netlinkExtAck, 1)
	_ = s.setsockopt(unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, defaultRecvBufferLen)
	return s, nil
}

func (s *rawSock) setsockopt(level, opt, v int) error {
	var serr error
	if err := s.rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), level, opt, v) }); err != nil {
		return err
	}
	return serr
}

func (s *rawSock) Close() error { return s.c.Close() }

// PID is the socket's netlink port id: the kernel names it as the sender
// of the changes made on it.
func (s *rawSock) PID() uint32 { return s.c.PID() }

// replyError is an error the kernel answered a batch with. commit has read
// every reply by then, so the socket stays usable, unlike after an error
// of the send or the receive (see commitRaw).
type replyError struct{ errno unix.Errno }

func (e replyError) Error() string { return e.errno.Error() }
func (e replyError) Unwrap() error { return e.errno }

// commit sends a batch built by txn and returns the kernel's first error
// (a replyError). The kernel handles a batch to the end (commit or abort)
// while the send is in progress, so every reply is queued when it
// returns, and read before commit does.
func (s *rawSock) commit(b []byte) error {
	if need := len(b) + 4096; need > s.sndb {
		if err := s.setsockopt(unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, need); err != nil {
			return fmt.Errorf("netlink send buffer of %d bytes: %w", need, err)
		}
		s.sndb = need
	}
	if err := s.send(b); err != nil {
		return err
	}
	var first error
	for {
		n, rerr := s.read(false)
		if rerr == unix.EAGAIN || rerr == unix.EWOULDBLOCK {
			return first
		}
		if rerr != nil {
			return fmt.Errorf("netlink receive: %w", rerr)
		}
		for m := s.rbuf[:n]; len(m) >= nlmsgHdrLen; {
			l := int(binary.NativeEndian.Uint32(m))
			if l < nlmsgHdrLen || l > len(m) {
				break
			}
			if typ := binary.NativeEndian.Uint16(m[4:]); typ == unix.NLMSG_ERROR && l >= nlmsgHdrLen+4 {
				if code := int32(binary.NativeEndian.Uint32(m[nlmsgHdrLen:])); code != 0 && first == nil {
					first = replyError{unix.Errno(-code)}
				}
			}
			m = m[nlmsgAlign(l):]
		}
	}
}

func nlmsgAlign(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }

// dumpSet reads every element of set, calling fn with each one's key, its
// flags, and its time left (zero: no timeout). The dump is parsed as it
// arrives: nothing is kept but what fn keeps.
func (s *rawSock) dumpSet(set string, fn func(key []byte, flags uint32, left time.Duration)) error {
	var t txn
	t.header(msgGetSetElem, unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	t.buf = append(t.buf, familyINet, unix.NFNETLINK_V0, 0, 0)
	t.attrString(unix.NFTA_SET_ELEM_LIST_TABLE, TableName)
	t.attrString(unix.NFTA_SET_ELEM_LIST_SET, set)
	t.close()
	seq := t.seq
	if err := s.send(t.buf); err != nil {
		return err
	}
	for {
		n, rerr := s.read(true)
		if rerr != nil {
			return fmt.Errorf("netlink receive: %w", rerr)
		}
		for m := s.rbuf[:n]; len(m) >= nlmsgHdrLen; {
			l := int(binary.NativeEndian.Uint32(m))
			if l < nlmsgHdrLen || l > len(m) {
				return errors.New("netlink: truncated message in a set dump")
			}
			typ := binary.NativeEndian.Uint16(m[4:])
			mseq := binary.NativeEndian.Uint32(m[8:])
			body := m[nlmsgHdrLen:l]
			m = m[nlmsgAlign(l):]
			if mseq != seq {
				continue // a late reply to something else
			}
			switch typ {
			case unix.NLMSG_DONE:
				return nil
			case unix.NLMSG_ERROR:
				if len(body) >= 4 {
					if code := int32(binary.NativeEndian.Uint32(body)); code != 0 {
						return unix.Errno(-code)
					}
				}
				return nil
			case msgNewSetElem:
				if len(body) < nfgenLen {
					continue
				}
				eachAttr(body[nfgenLen:], func(typ uint16, v []byte) {
					if typ != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
						return
					}
					eachAttr(v, func(_ uint16, el []byte) { parseElem(el, fn) })
				})
			}
		}
	}
}

func parseElem(el []byte, fn func(key []byte, flags uint32, left time.Duration)) {
	var key []byte
	var flags uint32
	var timeout, expires time.Duration
	eachAttr(el, func(typ uint16, v []byte) {
		switch typ {
		case unix.NFTA_SET_ELEM_KEY:
			eachAttr(v, func(typ uint16, d []byte) {
				if typ == unix.NFTA_DATA_VALUE {
					key = d
				}
			})
		case unix.NFTA_SET_ELEM_FLAGS:
			if len(v) == 4 {
				flags = binary.BigEndian.Uint32(v)
			}
		case unix.NFTA_SET_ELEM_TIMEOUT:
			if len(v) == 8 {
				timeout = time.Duration(binary.BigEndian.Uint64(v)) * time.Millisecond
			}
		case unix.NFTA_SET_ELEM_EXPIRATION:
			if len(v) == 8 {
				expires = time.Duration(binary.BigEndian.Uint64(v)) * time.Millisecond
			}
		}
	})
	if key == nil {
		return
	}
	left := expires
	if timeout > 0 && left <= 0 {
		left = time.Millisecond // about to expire; never "forever"
	}
	fn(key, flags, left)
}

// eachAttr calls fn with each attribute's type (flags cleared) and value.
func eachAttr(b []byte, fn func(typ uint16, v []byte)) {
	for len(b) >= unix.NLA_HDRLEN {
		l := int(binary.NativeEndian.Uint16(b))
		if l < unix.NLA_HDRLEN || l > len(b) {
			return
		}
		fn(binary.NativeEndian.Uint16(b[2:])&nlaTypeMask, b[unix.NLA_HDRLEN:l])
		al := (l + unix.NLA_ALIGNTO - 1) &^ (unix.NLA_ALIGNTO - 1)
		if al > len(b) {
			return
		}
		b = b[al:]
	}
}

// keyAddr turns a set key into an address.
func keyAddr(k []byte) (netip.Addr, bool) {
	return netip.AddrFromSlice(k)
}

// getBatch asks the kernel for the elements with the given keys in set, in
// one request, and reports whether it has them all: the kernel answers
// element by element and stops at the first it lacks.
func (s *rawSock) getBatch(set string, keys [][]byte) (bool, error) {
	var t txn
	t.header(msgGetSetElem, unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	t.buf = append(t.buf, familyINet, unix.NFNETLINK_V0, 0, 0)
	t.attrString(unix.NFTA_SET_ELEM_LIST_TABLE, TableName)
	t.attrString(unix.NFTA_SET_ELEM_LIST_SET, set)
	list := t.startAttr(unix.NFTA_SET_ELEM_LIST_ELEMENTS)
	for _, k := range keys {
		el := t.startAttr(attrListElem)
		kk := t.startAttr(unix.NFTA_SET_ELEM_KEY)
		t.attr(unix.NFTA_DATA_VALUE, k)
		t.endAttr(kk)
		t.endAttr(el)
	}
	t.endAttr(list)
	t.close()
	seq := t.seq
	if err := s.send(t.buf); err != nil {
		return false, err
	}
	for {
		n, rerr := s.read(true)
		if rerr != nil {
			return false, fmt.Errorf("netlink receive: %w", rerr)
		}
		for m := s.rbuf[:n]; len(m) >= nlmsgHdrLen; {
			l := int(binary.NativeEndian.Uint32(m))
			if l < nlmsgHdrLen || l > len(m) {
				return false, errors.New("netlink: truncated reply")
			}
			typ := binary.NativeEndian.Uint16(m[4:])
			mseq := binary.NativeEndian.Uint32(m[8:])
			body := m[nlmsgHdrLen:l]
			m = m[nlmsgAlign(l):]
			if mseq != seq || typ != unix.NLMSG_ERROR || len(body) < 4 {
				continue // an element's answer
			}
			switch code := int32(binary.NativeEndian.Uint32(body)); {
			case code == 0:
				return true, nil
			case unix.Errno(-code) == unix.ENOENT:
				return false, nil
			default:
				return false, unix.Errno(-code)
			}
		}
	}
}

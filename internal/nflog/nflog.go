// Package nflog receives packets logged by nftables "log group N" over netlink, without go-nflog.
//
// # Netlink messages used
//
// All go over one NETLINK_NETFILTER socket, subsystem NFNL_SUBSYS_ULOG
// (linux/netfilter/nfnetlink_log.h):
//
//   - NFULNL_MSG_CONFIG, sent once by Open as a single message with
//     NLM_F_ACK, so the kernel applies it in one go: NFULA_CFG_CMD
//     NFULNL_CFG_CMD_BIND creates the group's log instance and makes this
//     socket its only reader (a second binder gets EPERM);
//     NFULA_CFG_MODE NFULNL_COPY_PACKET with the copy range (128 bytes by
//     default: IP and TCP headers with options, IPv6 extension headers);
//     NFULA_CFG_FLAGS NFULNL_CFG_F_SEQ, so each packet carries NFULA_SEQ, a
//     per-group sequence number whose gaps are the packets the kernel could
//     not deliver; NFULA_CFG_QTHRESH, NFULA_CFG_TIMEOUT and
//     NFULA_CFG_NLBUFSIZ, which batch packets into fewer, larger datagrams
//     (the kernel's default holds a lone packet for up to a second, too
//     late for a port knock; 32 packets or 10 ms cut the receiving
//     thread's CPU per packet from ~1.4 µs, one datagram each, to
//     ~0.3-0.5 µs in a 250,000 packets/s flood).
//   - NFULNL_MSG_PACKET, from the kernel: one per logged packet, several
//     per datagram (NLM_F_MULTI, ended by NLMSG_DONE). Receive reads
//     NFULA_PACKET_HDR (hardware protocol), NFULA_PREFIX, NFULA_PAYLOAD,
//     NFULA_IFINDEX_INDEV, NFULA_SEQ and NFULA_TIMESTAMP.
//
// Not used: NFULNL_CFG_CMD_PF_BIND/PF_UNBIND, which old tools send before
// binding. nft's log statement with a group names the nfnetlink_log
// backend itself (checked on 6.18: packets arrive without them); PF_BIND
// would make it the namespace's default logger for everyone else
// (net.netfilter.nf_log.*), a setting moat has no business changing.
//
// # Socket
//
// The socket comes from github.com/mdlayher/netlink, which opens it inside
// a network namespace when asked (on a locked, throwaway OS thread),
// registers it with the Go poller (so Close and context cancellation
// unblock a waiting Receive) and sends the config message. Packets are
// then read with read(2) through its syscall.RawConn into one reused
// buffer and parsed by hand: netlink.Conn.Receive allocates a slice of
// messages and copies each datagram, which the hot path cannot afford.
//
// The receive buffer is forced to 16 MiB (SO_RCVBUFFORCE, which needs
// CAP_NET_ADMIN; SO_RCVBUF, capped by net.core.rmem_max, otherwise) and
// NETLINK_NO_ENOBUFS stays off, so an overrun is reported (Stats.Overruns)
// besides showing as a sequence gap (Stats.Lost).
package nflog

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Constants from linux/netfilter/nfnetlink.h and nfnetlink_log.h.
const (
	nfnlSubsysULOG = 4
	nfnetlinkV0    = 0

	msgPacket = nfnlSubsysULOG << 8   // | NFULNL_MSG_PACKET (0)
	msgConfig = nfnlSubsysULOG<<8 | 1 // NFULNL_MSG_CONFIG

	cfgCmdBind = 1 // NFULNL_CFG_CMD_BIND

	attrCfgCmd      = 1 // NFULA_CFG_CMD
	attrCfgMode     = 2 // NFULA_CFG_MODE
	attrCfgNLBufSiz = 3 // NFULA_CFG_NLBUFSIZ
	attrCfgTimeout  = 4 // NFULA_CFG_TIMEOUT, in 1/100 s
	attrCfgQThresh  = 5 // NFULA_CFG_QTHRESH
	attrCfgFlags    = 6 // NFULA_CFG_FLAGS

	copyPacket = 2      // NFULNL_COPY_PACKET
	cfgFlagSeq = 0x0001 // NFULNL_CFG_F_SEQ

	attrPacketHdr = 1  // NFULA_PACKET_HDR
	attrTimestamp = 3  // NFULA_TIMESTAMP
	attrIfIndexIn = 4  // NFULA_IFINDEX_INDEV
	attrPayload   = 9  // NFULA_PAYLOAD
	attrPrefix    = 10 // NFULA_PREFIX
	attrSeq       = 12 // NFULA_SEQ

	nlaTypeMask = 0x3fff // strips NLA_F_NESTED and NLA_F_NET_BYTEORDER

	// The kernel's batch buffer (NFULA_CFG_NLBUFSIZ) may be set between
	// its default, about a page (smaller values are ignored), and 128 KiB.
	minNLBufSiz = 4096
	maxNLBufSiz = 128 << 10
	// msgOverhead is what a logged packet costs in a batch besides its
	// payload: netlink and nfgenmsg headers, hardware header and address,
	// prefix, interface, sequence, timestamp (136 bytes on 6.18).
	msgOverhead = 160
	// readSize holds the largest datagram the kernel sends: a full batch
	// buffer, or one packet copied whole (copy range up to 65535).
	readSize = maxNLBufSiz + 64<<10
)

// Defaults for the options.
const (
	DefaultCopyRange  = 128
	DefaultBufferSize = 16 << 20
	// DefaultBatch and DefaultBatchDelay: the kernel sends a datagram once
	// this many packets are queued or the oldest waited this long.
	DefaultBatch      = 32
	DefaultBatchDelay = 10 * time.Millisecond
)

// Message is one logged packet. Its slices alias the receive buffer and
// are valid only while the handler runs: copy what must outlive it.
type Message struct {
	Prefix    []byte // the rule's log prefix, without the trailing NUL, e.g. "moat:closed"
	Payload   []byte // the packet from its IP header on, cut to the copy range and the rule's snaplen
	Family    uint8  // 4 or 6 (0 if neither: pass it to packet.Decode, which then reads the version)
	InIfindex uint32 // input interface index, 0 if none
	Seq       uint32 // per-group sequence number
	// Timestamp is when the kernel received the packet, to the
	// microsecond (zero if it sent none; 6.18 always does on input).
	Timestamp time.Time
}

// Stats counts what the receiver saw. Lost counts packets the kernel
// logged but could not deliver (gaps in NFULA_SEQ, e.g. a full socket
// buffer), known once a later packet arrives; Overruns counts ENOBUFS
// reports, each one or more lost datagrams, known at once. Packets cut by
// the ruleset's log rate limit are never logged, so nftables counts them,
// not this. Datagrams counts the netlink datagrams the packets came in:
// Received/Datagrams is the kernel's batching at work.
type Stats struct {
	Received, Lost, Overruns, Datagrams uint64
}

type config struct {
	netns      int
	copyRange  uint16
	bufSize    int
	batch      uint32
	batchDelay time.Duration
}

// An Option changes how Open sets up the receiver.
type Option func(*config)

// WithNetNS opens the socket inside the network namespace of the file
// descriptor fd (a /run/netns/NAME or /proc/PID/ns/net handle), for tests.
// The group then receives the packets that namespace's ruleset logs.
func WithNetNS(fd int) Option { return func(c *config) { c.netns = fd } }

// WithCopyRange sets how many bytes of each packet the kernel copies
// (default 128; 0 copies whole packets). A rule's snaplen, when smaller,
// cuts further.
func WithCopyRange(n uint16) Option { return func(c *config) { c.copyRange = n } }

// WithBufferSize sets the socket receive buffer (default 16 MiB, which
// holds about 125,000 logged packets in batches of 32), the backlog that
// absorbs bursts while the handler is busy.
func WithBufferSize(bytes int) Option { return func(c *config) { c.bufSize = bytes } }

// WithBatching sets how many packets the kernel queues before sending a
// datagram, and how long it holds a packet at most (rounded up to 10 ms;
// 0 sends at once). Default: 32 packets or 10 ms. WithBatching(1, 0) sends
// every packet in its own datagram: the lowest latency, the most syscalls.
func WithBatching(packets int, maxDelay time.Duration) Option {
	return func(c *config) {
		c.batch = uint32(max(packets, 1))
		c.batchDelay = max(maxDelay, 0)
	}
}

// Conn is a receiver bound to one NFLOG group. Receive must be called from
// one goroutine at a time; Stats and Close from any.
type Conn struct {
	nl    *netlink.Conn
	rc    syscall.RawConn
	group uint16
	rbuf  int // the socket receive buffer the kernel granted

	buf    []byte
	readFn func(fd uintptr) bool // c.read, bound once so Receive does not allocate
	n      int                   // set by read
	rerr   error                 // set by read
	msg    Message
	// nextSeq is the NFULA_SEQ expected next. Open created the group's
	// instance, so the first packet must carry 0: losses before the first
	// Receive count too.
	nextSeq uint32
	// pending holds datagrams of packets that arrived during Open, before
	// the kernel's acknowledgement; Receive hands them over first.
	pending [][]byte

	receiving atomic.Bool
	closed    atomic.Bool
	received  atomic.Uint64
	lost      atomic.Uint64
	overruns  atomic.Uint64
	reads     atomic.Uint64 // datagrams: packets per read shows the batching
}

// Open binds a receiver to NFLOG group, which must be free in the network
// namespace: only one socket may receive a group.
func Open(group uint16, opts ...Option) (*Conn, error) {
	cfg := config{
		copyRange:  DefaultCopyRange,
		bufSize:    DefaultBufferSize,
		batch:      DefaultBatch,
		batchDelay: DefaultBatchDelay,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.copyRange == 0 {
		cfg.copyRange = 0xffff // the kernel's meaning of 0: the whole packet
	}
	if cfg.bufSize <= 0 {
		cfg.bufSize = DefaultBufferSize
	}
	nl, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: cfg.netns})
	if err != nil {
		return nil, fmt.Errorf("nflog: open netfilter netlink socket: %w (moat needs root or CAP_NET_ADMIN)", err)
	}
	c := &Conn{nl: nl, group: group, buf: make([]byte, readSize)}
	c.readFn = c.read
	if err := c.setup(cfg); err != nil {
		_ = nl.Close()
		return nil, err
	}
	return c, nil
}

func (c *Conn) setup(cfg config) error {
	rc, err := c.nl.SyscallConn()
	if err != nil {
		return fmt.Errorf("nflog: %w", err)
	}
	c.rc = rc
	if c.rbuf, err = setRecvBuffer(rc, cfg.bufSize); err != nil {
		return fmt.Errorf("nflog: set socket receive buffer to %d bytes: %w", cfg.bufSize, err)
	}
	// Off is the default; say so, so overruns are reported, not hidden.
	if err := c.nl.SetOption(netlink.NoENOBUFS, false); err != nil {
		return fmt.Errorf("nflog: NETLINK_NO_ENOBUFS: %w", err)
	}

	timeout := uint32((cfg.batchDelay + 10*time.Millisecond - 1) / (10 * time.Millisecond))
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian // nfnetlink_log values are big-endian
	ae.Uint8(attrCfgCmd, cfgCmdBind)
	var mode [6]byte // struct nfulnl_msg_config_mode, packed
	binary.BigEndian.PutUint32(mode[0:4], uint32(cfg.copyRange))
	mode[4] = copyPacket
	ae.Bytes(attrCfgMode, mode[:])
	// Room for a full batch, no more: the kernel allocates this much for
	// each datagram and then trims it, which costs for a short batch.
	if size := int(cfg.batch) * (int(cfg.copyRange) + msgOverhead); size > minNLBufSiz {
		ae.Uint32(attrCfgNLBufSiz, uint32(min(size, maxNLBufSiz)))
	}
	ae.Uint32(attrCfgTimeout, timeout)
	ae.Uint32(attrCfgQThresh, cfg.batch)
	ae.Uint16(attrCfgFlags, cfgFlagSeq)
	attrs, err := ae.Encode()
	if err != nil {
		return fmt.Errorf("nflog: encode config: %w", err)
	}
	req := netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(msgConfig),
			Flags: netlink.Request | netlink.Acknowledge,
		},
		Data: append(nfgenmsg(unix.AF_UNSPEC, c.group), attrs...),
	}
	sent, err := c.nl.Send(req)
	if err != nil {
		return fmt.Errorf("nflog: bind group %d: %w", c.group, err)
	}
	if err := c.awaitAck(sent.Header.Sequence); err != nil {
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("nflog: bind group %d: %w: another process already receives this group in this network namespace "+
				"(another moat? ulogd? see /proc/net/netfilter/nfnetlink_log and `ss -f netlink -p`), or moat lacks CAP_NET_ADMIN; "+
				"stop it or choose a free group with [firewall] log_group", c.group, err)
		}
		return fmt.Errorf("nflog: bind group %d: %w (is the nfnetlink_log kernel module available? try: modprobe nfnetlink_log)", c.group, err)
	}
	return nil
}

// nfgenmsg is struct nfgenmsg: family, version, resource id (the group).
func nfgenmsg(family uint8, group uint16) []byte {
	b := []byte{family, nfnetlinkV0, 0, 0}
	binary.BigEndian.PutUint16(b[2:], group)
	return b
}

func setRecvBuffer(rc syscall.RawConn, size int) (granted int, err error) {
	cerr := rc.Control(func(fd uintptr) {
		err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size)
		if err != nil {
			// Without CAP_NET_ADMIN: as much as net.core.rmem_max allows.
			err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, size)
		}
		if err == nil {
			granted, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
		}
	})
	return granted, errors.Join(cerr, err)
}

// awaitAck reads until the kernel acknowledges the config message with
// sequence seq. Packets may come first: the group logs from the moment it
// is bound, within the same message.
func (c *Conn) awaitAck(seq uint32) error {
	if err := c.nl.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return err
	}
	defer c.nl.SetReadDeadline(time.Time{})
	for {
		if err := c.rc.Read(c.readFn); err != nil {
			return fmt.Errorf("waiting for the kernel's answer: %w", err)
		}
		if errors.Is(c.rerr, unix.ENOBUFS) {
			c.overruns.Add(1)
			continue
		}
		if c.rerr != nil {
			return c.rerr
		}
		d := c.buf[:c.n]
		acked, errno, hasPackets := false, 0, false
		for b := d; ; {
			h, body, rest, ok := nextMsg(b)
			if !ok {
				break
			}
			b = rest
			switch {
			case h.typ == unix.NLMSG_ERROR && h.seq == seq && len(body) >= 4:
				acked, errno = true, -int(int32(binary.NativeEndian.Uint32(body)))
			case h.typ == msgPacket:
				hasPackets = true
			}
		}
		if hasPackets {
			c.pending = append(c.pending, append([]byte(nil), d...))
		}
		if acked {
			if errno != 0 {
				return unix.Errno(errno)
			}
			return nil
		}
	}
}

// read is the syscall.RawConn read callback: one datagram into c.buf.
func (c *Conn) read(fd uintptr) bool {
	for {
		n, err := unix.Read(int(fd), c.buf)
		switch err {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false // wait for the poller
		}
		c.n, c.rerr = n, err
		return true
	}
}

// Receive reads logged packets and calls h for each, on the caller's
// goroutine, until ctx ends (it returns ctx.Err()), Close is called (an
// error wrapping net.ErrClosed) or the socket fails. m and its slices are
// reused for the next packet: h must not keep them. A slow h makes the
// socket buffer fill and the kernel drop packets, which Stats counts.
// It allocates nothing per packet.
func (c *Conn) Receive(ctx context.Context, h func(m *Message)) error {
	if !c.receiving.CompareAndSwap(false, true) {
		return errors.New("nflog: Receive is already running on this Conn: call it from one goroutine")
	}
	defer c.receiving.Store(false)
	if err := ctx.Err(); err != nil {
		return err
	}
	// Clear what an earlier Receive's ctx left, then let this ctx wake
	// the blocked read with a deadline in the past. In this order, or a
	// ctx ended in between would be missed.
	if err := c.nl.SetReadDeadline(time.Time{}); err != nil {
		if c.closed.Load() {
			return fmt.Errorf("nflog: group %d: %w", c.group, net.ErrClosed)
		}
		return fmt.Errorf("nflog: group %d: %w", c.group, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.nl.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	for _, d := range c.pending {
		c.reads.Add(1)
		c.dispatch(d, h)
	}
	c.pending = nil
	for {
		err := c.rc.Read(c.readFn)
		if err == nil {
			err = c.rerr
		}
		if err != nil {
			switch {
			case c.closed.Load():
				return fmt.Errorf("nflog: group %d: %w", c.group, net.ErrClosed)
			case ctx.Err() != nil:
				return ctx.Err()
			case err == unix.ENOBUFS:
				c.overruns.Add(1)
				continue
			case errors.Is(err, os.ErrDeadlineExceeded):
				// The ctx of an earlier Receive set it; this one is live.
				if err := c.nl.SetReadDeadline(time.Time{}); err != nil {
					return fmt.Errorf("nflog: group %d: %w", c.group, err)
				}
				continue
			}
			return fmt.Errorf("nflog: receive from group %d: %w", c.group, err)
		}
		c.reads.Add(1)
		c.dispatch(c.buf[:c.n], h)
	}
}

// dispatch hands every packet message of one datagram to h.
func (c *Conn) dispatch(d []byte, h func(m *Message)) {
	for {
		hdr, body, rest, ok := nextMsg(d)
		if !ok {
			return
		}
		d = rest
		switch hdr.typ {
		case msgPacket:
			hasSeq := parsePacket(body, &c.msg)
			if hasSeq {
				// Unsigned difference: wraps correctly at 2^32. A jump
				// backwards (never seen) is not counted as a loss.
				if gap := c.msg.Seq - c.nextSeq; gap != 0 && gap < 1<<31 {
					c.lost.Add(uint64(gap))
				}
				c.nextSeq = c.msg.Seq + 1
			}
			c.received.Add(1)
			h(&c.msg)
		case unix.NLMSG_OVERRUN:
			c.overruns.Add(1)
		}
	}
}

// Stats returns the counters so far.
func (c *Conn) Stats() Stats {
	return Stats{Received: c.received.Load(), Lost: c.lost.Load(), Overruns: c.overruns.Load(), Datagrams: c.reads.Load()}
}

// BufferSize is the socket receive buffer the kernel granted, in bytes as
// the kernel counts them (twice the size asked for: half is bookkeeping).
func (c *Conn) BufferSize() int { return c.rbuf }

// Close unbinds the group (the kernel drops the instance with the socket)
// and unblocks a running Receive. It is safe to call more than once.
func (c *Conn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	return c.nl.Close()
}

type nlHeader struct {
	typ uint16
	seq uint32
}

// nextMsg splits the first netlink message off b. ok is false at the end
// of b or at a malformed length, which ends the datagram.
func nextMsg(b []byte) (h nlHeader, body, rest []byte, ok bool) {
	if len(b) < unix.NLMSG_HDRLEN {
		return h, nil, nil, false
	}
	l := int(binary.NativeEndian.Uint32(b[0:4]))
	if l < unix.NLMSG_HDRLEN || l > len(b) {
		return h, nil, nil, false
	}
	h.typ = binary.NativeEndian.Uint16(b[4:6])
	h.seq = binary.NativeEndian.Uint32(b[8:12])
	body = b[unix.NLMSG_HDRLEN:l]
	rest = b[min(align4(l), len(b)):]
	return h, body, rest, true
}

func align4(n int) int { return (n + 3) &^ 3 }

// parsePacket fills m from the body of an NFULNL_MSG_PACKET (struct
// nfgenmsg, then attributes) and reports whether it carried NFULA_SEQ.
// Unknown and short attributes are skipped; it never reads past b.
func parsePacket(b []byte, m *Message) (hasSeq bool) {
	*m = Message{}
	if len(b) < 4 {
		return false
	}
	switch b[0] {
	case unix.AF_INET:
		m.Family = 4
	case unix.AF_INET6:
		m.Family = 6
	}
	var hwProto uint16
	for a := b[4:]; len(a) >= 4; {
		l := int(binary.NativeEndian.Uint16(a[0:2]))
		if l < 4 || l > len(a) {
			break
		}
		v := a[4:l]
		switch binary.NativeEndian.Uint16(a[2:4]) & nlaTypeMask {
		case attrPacketHdr:
			if len(v) >= 2 {
				hwProto = binary.BigEndian.Uint16(v)
			}
		case attrPrefix:
			if i := bytes.IndexByte(v, 0); i >= 0 {
				v = v[:i]
			}
			m.Prefix = v
		case attrPayload:
			m.Payload = v
		case attrIfIndexIn:
			if len(v) >= 4 {
				m.InIfindex = binary.BigEndian.Uint32(v)
			}
		case attrSeq:
			if len(v) >= 4 {
				m.Seq = binary.BigEndian.Uint32(v)
				hasSeq = true
			}
		case attrTimestamp:
			if len(v) >= 16 {
				sec := binary.BigEndian.Uint64(v[0:8])
				usec := binary.BigEndian.Uint64(v[8:16])
				m.Timestamp = time.Unix(int64(sec), int64(usec%1e6)*1e3)
			}
		}
		a = a[min(align4(l), len(a)):]
	}
	if m.Family == 0 {
		// Bridge and netdev tables log with their own family: the
		// ethertype still tells.
		switch hwProto {
		case unix.ETH_P_IP:
			m.Family = 4
		case unix.ETH_P_IPV6:
			m.Family = 6
		}
	}
	return hasSeq
}

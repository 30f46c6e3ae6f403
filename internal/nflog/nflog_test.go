package nflog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moat-fw/moat/internal/netnstest"
	"github.com/moat-fw/moat/internal/packet"
)

const testGroup = 7

// lab is a server namespace whose ruleset logs and drops probes of ports
// 9000-9999, pings and GRE, PIM and SCTP, a client namespace linked to it, and a receiver in
// the server namespace.
type lab struct {
	srv, cli *netnstest.NS
	link     *netnstest.Link
	conn     *Conn
	ifindex  uint32 // the server end of the link
	rec      recorder
}

// recorded is one received packet, copied out of the receive buffer.
type recorded struct {
	prefix string
	ifidx  uint32
	family uint8
	ts     time.Time
	p      packet.Packet
	err    error
	raw    []byte
}

type recorder struct {
	mu   sync.Mutex
	msgs []recorded
}

func (r *recorder) handle(m *Message) {
	rec := recorded{prefix: string(m.Prefix), ifidx: m.InIfindex, family: m.Family, ts: m.Timestamp, raw: append([]byte(nil), m.Payload...)}
	rec.err = packet.Decode(m.Family, m.Payload, &rec.p)
	r.mu.Lock()
	r.msgs = append(r.msgs, rec)
	r.mu.Unlock()
}

// snapshot returns the packets recorded so far.
func (r *recorder) snapshot() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recorded(nil), r.msgs...)
}

// await waits for the first recorded packet that match accepts.
func (r *recorder) await(t *testing.T, what string, match func(*recorded) bool) recorded {
	t.Helper()
	var found recorded
	netnstest.Eventually(t, 3*time.Second, what, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, m := range r.msgs {
			if match(&m) {
				found = m
				return true
			}
		}
		return false
	})
	return found
}

const labRules = `
table inet nflogtest {
	chain input {
		type filter hook input priority filter; policy accept;
		tcp dport 9000-9999 counter log prefix "moat:closed" group %[1]d snaplen 128 drop
		udp dport 9000-9999 counter log prefix "moat:closed" group %[1]d snaplen 128 drop
		icmp type echo-request counter log prefix "moat:closed" group %[1]d snaplen 128 drop
		icmpv6 type echo-request counter log prefix "moat:closed" group %[1]d snaplen 128 drop
		meta l4proto { 47, 103, 132 } counter log prefix "moat:closed" group %[1]d snaplen 128 drop
	}
}
`

// newLab builds the lab; h handles the received packets (nil: record them
// in l.rec).
func newLab(t *testing.T, h func(*Message), opts ...Option) *lab {
	t.Helper()
	netnstest.RequireRoot(t)
	netnstest.RequireCommands(t, "nft")
	l := &lab{srv: netnstest.New(t), cli: netnstest.New(t)}
	l.link = netnstest.Connect(t, l.srv, l.cli)
	l.srv.Nft(t, fmt.Sprintf(labRules, testGroup))
	err := l.srv.Do(func() error {
		ifi, err := net.InterfaceByName(l.link.AIf)
		if err == nil {
			l.ifindex = uint32(ifi.Index)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := Open(testGroup, append([]Option{WithNetNS(l.srv.Fd())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	l.conn = c
	if h == nil {
		h = l.rec.handle
	}
	l.receive(t, h)
	return l
}

// receive runs c.Receive on a goroutine the test owns: cleanup cancels it,
// waits for it and checks it ended because of the cancel.
func (l *lab) receive(t *testing.T, h func(*Message)) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		// Locked, so the flood test can read this goroutine's CPU time
		// as its thread's.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		done <- l.conn.Receive(ctx, h)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Receive returned %v, want context.Canceled", err)
		}
		_ = l.conn.Close()
	})
}

func TestReceiveRealPackets(t *testing.T) {
	l := newLab(t, nil)
	if got := l.conn.BufferSize(); got < DefaultBufferSize {
		t.Errorf("socket receive buffer %d bytes, want at least %d", got, DefaultBufferSize)
	}
	from := func(src netip.Addr, proto uint8, dport uint16) func(*recorded) bool {
		return func(m *recorded) bool {
			return m.p.Src == src && m.p.Proto == proto && m.p.DstPort == dport
		}
	}
	check := func(m recorded, family uint8, src, dst netip.Addr) {
		t.Helper()
		if m.err != nil || m.prefix != "moat:closed" || m.family != family || m.ifidx != l.ifindex ||
			m.p.Family != family || m.p.Src != src || m.p.Dst != dst || m.p.TTL != 64 {
			t.Errorf("%v: prefix %q family %d ifindex %d (want %d), decode error %v", &m.p, m.prefix, m.family, m.ifidx, l.ifindex, m.err)
		}
		if age := time.Since(m.ts); age < 0 || age > 5*time.Second {
			t.Errorf("%v: timestamp %v, %v from now", &m.p, m.ts, age)
		}
	}

	// Real SYNs from the client's kernel: connect() on Linux sends MSS,
	// SACK permitted, timestamps and window scale.
	for _, c := range []struct {
		family   uint8
		src, dst netip.Addr
		mss      uint16
	}{
		{4, l.link.B4, l.link.A4, 1460},
		{6, l.link.B6, l.link.A6, 1440},
	} {
		if r := l.cli.DialTCP(t, netip.Addr{}, netip.AddrPortFrom(c.dst, 9001), 50*time.Millisecond); r != netnstest.TimedOut {
			t.Fatalf("dial %v port 9001: %v, want TimedOut (dropped)", c.dst, r)
		}
		m := l.rec.await(t, fmt.Sprintf("IPv%d SYN to 9001", c.family), from(c.src, packet.ProtoTCP, 9001))
		check(m, c.family, c.src, c.dst)
		want := packet.OptMSS | packet.OptSACKPerm | packet.OptTimestamp | packet.OptWScale | packet.OptNOP
		if m.p.TCPFlags != packet.SYN || m.p.SrcPort < 1024 || m.p.MSS != c.mss || m.p.TCPOpts != want || m.p.TCPOptLen != 20 || m.p.TCPWindow == 0 {
			t.Errorf("connect() SYN decoded as %v opts %#x optlen %d", &m.p, m.p.TCPOpts, m.p.TCPOptLen)
		}
	}

	// Real UDP datagrams.
	for _, c := range []struct {
		family   uint8
		src, dst netip.Addr
	}{{4, l.link.B4, l.link.A4}, {6, l.link.B6, l.link.A6}} {
		if answered, _ := l.cli.UDPEcho(t, netip.Addr{}, netip.AddrPortFrom(c.dst, 9053), 20*time.Millisecond); answered {
			t.Fatalf("UDP to %v port 9053 answered, want dropped", c.dst)
		}
		m := l.rec.await(t, fmt.Sprintf("IPv%d UDP to 9053", c.family), from(c.src, packet.ProtoUDP, 9053))
		check(m, c.family, c.src, c.dst)
		if m.p.SrcPort == 0 || m.p.PayloadLen != 31 {
			t.Errorf("UDP decoded as %v, payload %d bytes (want 31: the netnstest probe)", &m.p, m.p.PayloadLen)
		}
	}

	// Hand-built probes through raw sockets, compared field by field:
	// masscan-style SYN, stealth flag combinations, pings.
	raw := openRaw(t, l.cli)
	probes := []struct {
		name string
		b    []byte
		want packet.Packet
	}{
		{"masscan SYN", raw.tcp4(l.link.B4, l.link.A4, 61000, 9080, packet.SYN, 1024, nil),
			packet.Packet{SrcPort: 61000, DstPort: 9080, TCPSeq: 0x5eed0000 | 61000, TCPFlags: packet.SYN, TCPWindow: 1024}},
		{"XMAS", raw.tcp4(l.link.B4, l.link.A4, 61001, 9081, packet.FIN|packet.PSH|packet.URG, 1024, nil),
			packet.Packet{SrcPort: 61001, DstPort: 9081, TCPSeq: 0x5eed0000 | 61001, TCPFlags: packet.FIN | packet.PSH | packet.URG, TCPWindow: 1024}},
		{"NULL v6", raw.tcp6(l.link.B6, l.link.A6, 61002, 9082, 0, 4096, []byte{2, 4, 5, 0xa0}),
			packet.Packet{SrcPort: 61002, DstPort: 9082, TCPSeq: 0x5eed0000 | 61002, TCPWindow: 4096, TCPOptLen: 4, TCPOpts: packet.OptMSS, MSS: 1440, TCPOptOrder: 3}},
		{"ping", raw.icmp4(l.link.B4, l.link.A4, 0x1234, 7),
			packet.Packet{ICMPType: 8, ICMPID: 0x1234, ICMPSeq: 7, PayloadLen: 8}},
		{"ping6", raw.icmp6(l.link.B6, l.link.A6, 0x4321, 9),
			packet.Packet{ICMPType: 128, ICMPID: 0x4321, ICMPSeq: 9, PayloadLen: 8}},
	}
	for _, pr := range probes {
		raw.send(t, pr.b)
		var want packet.Packet
		if err := packet.Decode(0, pr.b, &want); err != nil {
			t.Fatalf("%s: decoding what we send: %v", pr.name, err)
		}
		m := l.rec.await(t, pr.name, func(m *recorded) bool {
			return m.p.Src == want.Src && m.p.Proto == want.Proto && m.p.DstPort == want.DstPort && m.p.ICMPID == want.ICMPID
		})
		// The kernel fills the IPv4 ID and header checksum: compare the
		// decoded fields, not the bytes.
		if pr.want.SrcPort != 0 || pr.want.ICMPType != 0 {
			got := m.p
			got.Src, got.Dst, got.Family, got.Proto, got.TTL, got.Length, got.IPID = netip.Addr{}, netip.Addr{}, 0, 0, 0, 0, 0
			if got != pr.want {
				t.Errorf("%s:\n got %+v\nwant %+v", pr.name, got, pr.want)
			}
		}
		if m.p.Src != want.Src || m.p.Dst != want.Dst || m.p.Length != want.Length || m.err != nil {
			t.Errorf("%s: got %v length %d (%v), want %v length %d", pr.name, &m.p, m.p.Length, m.err, &want, want.Length)
		}
	}

	if s := l.conn.Stats(); s.Lost != 0 || s.Overruns != 0 || s.Received < uint64(4+len(probes)) {
		t.Errorf("Stats() = %+v", s)
	}
}

func TestOpenGroupTaken(t *testing.T) {
	l := newLab(t, nil)
	c, err := Open(testGroup, WithNetNS(l.srv.Fd()))
	if err == nil {
		c.Close()
		t.Fatal("second Open of the same group succeeded")
	}
	if !errors.Is(err, unix.EPERM) || !regexp.MustCompile(`group 7: .*another process.*log_group`).MatchString(err.Error()) {
		t.Errorf("second Open: %v", err)
	}
	t.Log(err)
	// Another group is free, and the first receiver is unaffected.
	c, err = Open(testGroup+1, WithNetNS(l.srv.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestCloseUnblocksReceive(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t)
	c, err := Open(testGroup, WithNetNS(ns.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Receive(context.Background(), func(*Message) {}) }()
	time.Sleep(20 * time.Millisecond)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Receive after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Receive still blocked 2s after Close")
	}
	// The group is free again once the socket is gone.
	c, err = Open(testGroup, WithNetNS(ns.Fd()))
	if err != nil {
		t.Fatalf("reopen after Close: %v", err)
	}
	// A cancelled ctx ends Receive too, and a second Receive works after.
	for range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		err = c.Receive(ctx, func(*Message) {})
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Receive: %v, want context.DeadlineExceeded", err)
		}
	}
	c.Close()
}

// TestFlood sends SYNs from 256 source ports as fast as one sender
// goroutine can and checks the kernel lost none on the way to the
// receiver. MOAT_FLOOD_N (packets), MOAT_FLOOD_PPS (a paced rate) and
// MOAT_FLOOD_BATCH ("packets,milliseconds": WithBatching) vary it.
func TestFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("flood: skipped with -short")
	}
	n, pps := 200_000, 0
	var opts []Option
	if s := os.Getenv("MOAT_FLOOD_N"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	if s := os.Getenv("MOAT_FLOOD_PPS"); s != "" {
		pps, _ = strconv.Atoi(s)
	}
	if s := os.Getenv("MOAT_FLOOD_BATCH"); s != "" {
		var b, ms int
		if _, err := fmt.Sscanf(s, "%d,%d", &b, &ms); err != nil {
			t.Fatalf("MOAT_FLOOD_BATCH=%q: want packets,milliseconds", s)
		}
		opts = append(opts, WithBatching(b, time.Duration(ms)*time.Millisecond))
	}
	// The handler does what the daemon's will: decode, classify, count.
	// It also notes the receiving thread's CPU time at the first and the
	// n-th SYN.
	var (
		p          packet.Packet
		syns       int
		cpu0, cpu1 atomic.Int64
		allSeen    = make(chan struct{})
	)
	h := func(m *Message) {
		if packet.Decode(m.Family, m.Payload, &p) == nil && p.TCPFlags == packet.SYN && p.DstPort >= 9000 {
			syns++
		}
		switch syns {
		case 1:
			cpu0.Store(threadCPU())
		case n:
			cpu1.Store(threadCPU())
			close(allSeen)
		}
	}
	l := newLab(t, h, opts...)
	raw := openRaw(t, l.cli)
	pkts := make([][]byte, 256)
	for i := range pkts {
		pkts[i] = raw.tcp4(l.link.B4, l.link.A4, uint16(20000+i), uint16(9000+i), packet.SYN, 1024, nil)
	}

	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	start := time.Now()
	sent := raw.flood(t, pkts, n, pps)
	sendTime := time.Since(start)
	// Wait for the backlog to drain, or for progress to stop (a loss at
	// the very end shows as an overrun, not as a gap).
	var s Stats
	for last, idle := uint64(0), 0; idle < 25 && time.Since(start) < sendTime+5*time.Second; time.Sleep(20 * time.Millisecond) {
		s = l.conn.Stats()
		if s.Received+s.Lost >= uint64(sent) {
			break
		}
		if s.Received == last {
			idle++
		} else {
			last, idle = s.Received, 0
		}
	}
	recvTime := time.Since(start)
	runtime.ReadMemStats(&ms1)
	// The whole process: sender, receiver, test. A per-packet allocation
	// anywhere in the receive path would show as 1 or more.
	if allocs := float64(ms1.Mallocs-ms0.Mallocs) / float64(max(s.Received, 1)); allocs > 0.01 {
		t.Errorf("flood: %.3f allocations per packet received, want 0", allocs)
	} else {
		t.Logf("flood: %d allocations in the process while receiving %d packets", ms1.Mallocs-ms0.Mallocs, s.Received)
	}
	t.Logf("flood: sent %d SYNs in %v (%.0f pps); received %d in %v (%.0f pps, %.1f per read); lost %d, overruns %d",
		sent, sendTime.Round(time.Millisecond), float64(sent)/sendTime.Seconds(),
		s.Received, recvTime.Round(time.Millisecond), float64(s.Received)/recvTime.Seconds(),
		float64(s.Received)/float64(max(l.conn.reads.Load(), 1)), s.Lost, s.Overruns)
	if s.Received == uint64(n) {
		<-allSeen
		cpu := time.Duration(cpu1.Load() - cpu0.Load())
		t.Logf("flood: the receiving thread used %v of CPU for %d packets: %.0f ns per packet, %.0f packets/s of one core",
			cpu.Round(time.Millisecond), n, float64(cpu.Nanoseconds())/float64(n), float64(n)/cpu.Seconds())
	}
	if s.Lost != 0 || s.Overruns != 0 {
		t.Errorf("lost %d packets (%d overruns) at %.0f pps", s.Lost, s.Overruns, float64(sent)/sendTime.Seconds())
	}
	if s.Received < uint64(sent) {
		t.Errorf("received %d of %d (the rest never reached the log rule?):\n%s", s.Received, sent, l.srv.Run(t, "nft", "list", "chain", "inet", "nflogtest", "input"))
	}
}

// threadCPU is the CPU time of the calling thread, in nanoseconds.
func threadCPU() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return ts.Nano()
}

// rawSender sends hand-built IPv4 and IPv6 packets from the client
// namespace (IPPROTO_RAW: we write the IP header; the kernel fills the
// IPv4 checksum and, when zero, the ID).
type rawSender struct {
	fd4, fd6 int
}

func openRaw(t *testing.T, ns *netnstest.NS) *rawSender {
	t.Helper()
	r := &rawSender{fd4: -1, fd6: -1}
	err := ns.Do(func() (err error) {
		if r.fd4, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW); err != nil {
			return err
		}
		r.fd6, err = unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		return err
	})
	t.Cleanup(func() {
		for _, fd := range []int{r.fd4, r.fd6} {
			if fd >= 0 {
				unix.Close(fd)
			}
		}
	})
	if err != nil {
		t.Fatalf("raw socket in %s: %v", ns, err)
	}
	return r
}

func (r *rawSender) send(t *testing.T, b []byte) {
	t.Helper()
	if err := r.sendErr(b); err != nil {
		t.Fatal(err)
	}
}

func (r *rawSender) sendErr(b []byte) error {
	if b[0]>>4 == 4 {
		return unix.Sendto(r.fd4, b, 0, &unix.SockaddrInet4{Addr: [4]byte(b[16:20])})
	}
	return unix.Sendto(r.fd6, b, 0, &unix.SockaddrInet6{Addr: [16]byte(b[24:40])})
}

// flood sends n packets, cycling through pkts, at pps packets per second
// (0: as fast as possible), and returns how many it sent: fewer if that
// takes over 4s (a busy machine), to keep the suite fast. The socket's
// send buffer filling up (ENOBUFS) is waited out, not counted.
func (r *rawSender) flood(t *testing.T, pkts [][]byte, n, pps int) int {
	t.Helper()
	// Connected, so each send is a plain write(2): no address to convert,
	// which matters under the race detector.
	if err := unix.Connect(r.fd4, &unix.SockaddrInet4{Addr: [4]byte(pkts[0][16:20])}); err != nil {
		t.Fatalf("flood: connect raw socket: %v", err)
	}
	start := time.Now()
	for i := 0; i < n; {
		if i%1024 == 0 && time.Since(start) > 4*time.Second {
			t.Logf("flood: stopped after 4s and %d packets", i)
			return i
		}
		if pps > 0 {
			due := int(time.Since(start).Seconds() * float64(pps))
			if i >= due {
				time.Sleep(100 * time.Microsecond)
				continue
			}
		}
		_, err := unix.Write(r.fd4, pkts[i%len(pkts)])
		switch {
		case err == nil:
			i++
		case errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EAGAIN):
			time.Sleep(10 * time.Microsecond)
		default:
			t.Fatalf("flood: send packet %d: %v", i, err)
		}
	}
	return n
}

func (r *rawSender) tcp4(src, dst netip.Addr, sport, dport uint16, flags packet.Flags, win uint16, opts []byte) []byte {
	return ip4(src, dst, unix.IPPROTO_TCP, tcpSeg(src, dst, sport, dport, flags, win, opts))
}

func (r *rawSender) tcp6(src, dst netip.Addr, sport, dport uint16, flags packet.Flags, win uint16, opts []byte) []byte {
	return ip6(src, dst, unix.IPPROTO_TCP, tcpSeg(src, dst, sport, dport, flags, win, opts))
}

func (r *rawSender) icmp4(src, dst netip.Addr, id, seq uint16) []byte {
	b := make([]byte, 16)
	b[0] = 8
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	binary.BigEndian.PutUint16(b[2:], checksum(0, b))
	return ip4(src, dst, unix.IPPROTO_ICMP, b)
}

func (r *rawSender) icmp6(src, dst netip.Addr, id, seq uint16) []byte {
	b := make([]byte, 16)
	b[0] = 128
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	binary.BigEndian.PutUint16(b[2:], checksum(pseudo(src, dst, unix.IPPROTO_ICMPV6, len(b)), b))
	return ip6(src, dst, unix.IPPROTO_ICMPV6, b)
}

func tcpSeg(src, dst netip.Addr, sport, dport uint16, flags packet.Flags, win uint16, opts []byte) []byte {
	b := make([]byte, 20+len(opts))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], 0x5eed0000|uint32(sport))
	b[12] = byte(len(b)/4) << 4
	b[13] = byte(flags)
	binary.BigEndian.PutUint16(b[14:], win)
	copy(b[20:], opts)
	binary.BigEndian.PutUint16(b[16:], checksum(pseudo(src, dst, unix.IPPROTO_TCP, len(b)), b))
	return b
}

func ip4(src, dst netip.Addr, proto uint8, l4 []byte) []byte {
	b := make([]byte, 20, 20+len(l4))
	b[0], b[8], b[9] = 0x45, 64, proto
	binary.BigEndian.PutUint16(b[2:], uint16(20+len(l4)))
	s, d := src.As4(), dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	return append(b, l4...)
}

func ip6(src, dst netip.Addr, next uint8, l4 []byte) []byte {
	b := make([]byte, 40, 40+len(l4))
	b[0], b[6], b[7] = 0x60, next, 64
	binary.BigEndian.PutUint16(b[4:], uint16(len(l4)))
	s, d := src.As16(), dst.As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	return append(b, l4...)
}

// pseudo sums the TCP/UDP/ICMPv6 pseudo-header.
func pseudo(src, dst netip.Addr, proto uint8, l4len int) uint32 {
	var sum uint32
	for _, b := range [][]byte{src.AsSlice(), dst.AsSlice()} {
		for i := 0; i < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
	}
	return sum + uint32(proto) + uint32(l4len)
}

func checksum(sum uint32, b []byte) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

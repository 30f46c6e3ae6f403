package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/moat-fw/moat/internal/packet"
	mrand "math/rand/v2"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// FloodResult is what flood prints when it stops, one JSON line.
type FloodResult struct {
	Sent    uint64  `json:"sent"`
	Seconds float64 `json:"seconds"`
	PPS     float64 `json:"pps"`
	Errors  uint64  `json:"errors"`
}

// testNets are the only networks a spoofed source may come from: the
// project's test ranges, so nothing invented could ever stand for a real host.
var testNets = []netip.Prefix{netip.MustParsePrefix("10.210.0.0/16"), netip.MustParsePrefix("fd00:210::/32")}

func inTestNets(p netip.Prefix) bool {
	for _, t := range testNets {
		if t.Bits() <= p.Bits() && t.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

func floodMain(args []string) error {
	fs := flag.NewFlagSet("flood", flag.ExitOnError)
	dst := fs.String("dst", "", "target address (the server)")
	port := fs.Uint("port", 7000, "target TCP port")
	pps := fs.Float64("pps", 60000, "packets per second to aim for; 0: as fast as it can")
	src := fs.String("src", "10.210.0.0/16", "draw source addresses from this prefix")
	exclude := fs.String("exclude", "", "never use a source in this prefix (the link's own subnet)")
	batch := fs.Int("batch", 64, "packets per sendmmsg call")
	udpSize := fs.Int("udp", 0, "send UDP datagrams with this many random payload bytes instead of TCP SYNs (an SPA flood)")
	dur := fs.Duration("duration", 0, "stop after this long (0: at SIGINT or SIGTERM)")
	b64 := fs.Bool("b64", false, "with -udp: payloads of base64 characters, which pass fwknopd's cheap checks and reach its digest and HMAC")
	_ = fs.Parse(args)

	d, err := netip.ParseAddr(*dst)
	if err != nil {
		return fmt.Errorf("-dst: %w", err)
	}
	sp, err := netip.ParsePrefix(*src)
	if err != nil || sp.Addr().Is4() != d.Is4() {
		return fmt.Errorf("-src %q: want a prefix of the target's family", *src)
	}
	sp = sp.Masked()
	if !inTestNets(sp) || !inTestNets(netip.PrefixFrom(d, d.BitLen())) {
		return fmt.Errorf("-src %s and -dst %s must lie inside %v", sp, d, testNets)
	}
	var ex netip.Prefix
	if *exclude != "" {
		if ex, err = netip.ParsePrefix(*exclude); err != nil {
			return fmt.Errorf("-exclude: %w", err)
		}
		ex = ex.Masked()
	}
	if *port == 0 || *port > 65535 || *pps < 0 || *batch < 1 {
		return errors.New("want 0 < -port < 65536, -pps >= 0, -batch > 0")
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *dur > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *dur)
		defer cancel()
	}
	if *udpSize < 0 || *udpSize > 1400 {
		return errors.New("want 0 <= -udp <= 1400")
	}
	s, err := newSender(d, uint16(*port), sp, ex, *batch, *udpSize)
	if err != nil {
		return err
	}
	defer unix.Close(s.fd)
	s.b64 = *b64
	res := s.run(ctx, *pps)
	return json.NewEncoder(os.Stdout).Encode(res)
}

// mmsghdr is struct mmsghdr (amd64 and arm64 layout).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

// sender writes batches of SYNs through one raw socket with sendmmsg(2):
// one system call per batch keeps the sender's cost per packet small next
// to the server's, which is what is being measured.
type sender struct {
	fd      int
	v6      bool
	dst     netip.Addr
	port    uint16
	src     netip.Prefix
	exclude netip.Prefix
	rng     *mrand.Rand
	udp     int      // UDP payload bytes; 0 sends TCP SYNs
	b64     bool     // UDP payloads of base64 characters
	base    [16]byte // s.src's address, and the mask of its prefix bits
	mask    [16]byte
	pkts    [][]byte
	iov     []unix.Iovec
	msgs    []mmsghdr
	sa4     unix.RawSockaddrInet4
	sa6     unix.RawSockaddrInet6
}

func newSender(dst netip.Addr, port uint16, src, exclude netip.Prefix, batch, udpSize int) (*sender, error) {
	s := &sender{v6: dst.Is6(), dst: dst, port: port, src: src, exclude: exclude, udp: udpSize,
		rng: mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), uint64(os.Getpid())))}
	// IPPROTO_RAW: the packet carries its own IP header (IP_HDRINCL, and
	// for IPv6 the same by definition), so any source can be written.
	fam, hlen := unix.AF_INET, 20
	if s.v6 {
		fam, hlen = unix.AF_INET6, 40
	}
	copy(s.base[:], src.Addr().AsSlice())
	for i := range s.mask {
		keep := min(max(src.Bits()-8*i, 0), 8)
		s.mask[i] = byte(0xff << (8 - keep))
	}
	fd, err := unix.Socket(fam, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return nil, fmt.Errorf("raw socket (needs CAP_NET_RAW): %w", err)
	}
	s.fd = fd
	var name *byte
	var namelen uint32
	if s.v6 {
		s.sa6 = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: dst.As16()}
		name, namelen = (*byte)(unsafe.Pointer(&s.sa6)), unix.SizeofSockaddrInet6
	} else {
		s.sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: dst.As4()}
		name, namelen = (*byte)(unsafe.Pointer(&s.sa4)), unix.SizeofSockaddrInet4
	}
	s.pkts = make([][]byte, batch)
	s.iov = make([]unix.Iovec, batch)
	s.msgs = make([]mmsghdr, batch)
	for i := range batch {
		if udpSize > 0 {
			s.pkts[i] = make([]byte, hlen+8+udpSize)
		} else {
			s.pkts[i] = make([]byte, hlen+20)
		}
		s.iov[i].Base = &s.pkts[i][0]
		s.iov[i].SetLen(len(s.pkts[i]))
		s.msgs[i].hdr.Name, s.msgs[i].hdr.Namelen = name, namelen
		s.msgs[i].hdr.Iov = &s.iov[i]
		s.msgs[i].hdr.SetIovlen(1)
	}
	return s, nil
}

// source draws a random address of s.src outside s.exclude.
func (s *sender) source() netip.Addr {
	for {
		var r, b [16]byte
		binary.LittleEndian.PutUint64(r[:8], s.rng.Uint64())
		binary.LittleEndian.PutUint64(r[8:], s.rng.Uint64())
		for i := range b {
			b[i] = s.base[i]&s.mask[i] | r[i]&^s.mask[i]
		}
		x := netip.AddrFrom16(b)
		if !s.v6 {
			x = netip.AddrFrom4([4]byte(b[:4]))
		}
		if s.exclude.IsValid() && s.exclude.Contains(x) {
			continue
		}
		return x
	}
}

// fill writes a TCP SYN (or a UDP datagram of random bytes) from a fresh
// random source into p.
func (s *sender) fill(p []byte) {
	src := s.source()
	proto, l4len := byte(unix.IPPROTO_TCP), 20
	if s.udp > 0 {
		proto, l4len = unix.IPPROTO_UDP, 8+s.udp
	}
	var tcp []byte
	if s.v6 {
		binary.BigEndian.PutUint32(p[0:], 6<<28|uint32(s.rng.Uint32N(1<<20)))
		binary.BigEndian.PutUint16(p[4:], uint16(l4len))
		p[6], p[7] = proto, 64
		a, b := src.As16(), s.dst.As16()
		copy(p[8:], a[:])
		copy(p[24:], b[:])
		tcp = p[40:]
	} else {
		p[0], p[1] = 0x45, 0
		binary.BigEndian.PutUint16(p[2:], uint16(20+l4len))
		binary.BigEndian.PutUint16(p[4:], uint16(s.rng.Uint32()))
		binary.BigEndian.PutUint16(p[6:], 0x4000) // DF
		p[8], p[9] = 64, proto
		p[10], p[11] = 0, 0 // the kernel computes the header checksum
		a, b := src.As4(), s.dst.As4()
		copy(p[12:], a[:])
		copy(p[16:], b[:])
		tcp = p[20:]
	}
	if s.udp > 0 {
		udp := tcp
		binary.BigEndian.PutUint16(udp[0:], uint16(1024+s.rng.Uint32N(64512)))
		binary.BigEndian.PutUint16(udp[2:], s.port)
		binary.BigEndian.PutUint16(udp[4:], uint16(l4len))
		binary.BigEndian.PutUint16(udp[6:], 0)
		for i := 8; i < len(udp); i += 8 {
			var r [8]byte
			binary.LittleEndian.PutUint64(r[:], s.rng.Uint64())
			copy(udp[i:], r[:])
		}
		if s.b64 {
			const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
			for i := 8; i < len(udp); i++ {
				udp[i] = alphabet[udp[i]&63]
			}
		}
		binary.BigEndian.PutUint16(udp[6:], packet.Checksum(src, s.dst, packet.ProtoUDP, udp))
		return
	}
	binary.BigEndian.PutUint16(tcp[0:], uint16(1024+s.rng.Uint32N(64512)))
	binary.BigEndian.PutUint16(tcp[2:], s.port)
	binary.BigEndian.PutUint32(tcp[4:], s.rng.Uint32())
	binary.BigEndian.PutUint32(tcp[8:], 0)
	tcp[12], tcp[13] = 5<<4, 0x02 // 20-byte header, SYN
	binary.BigEndian.PutUint16(tcp[14:], 64240)
	binary.BigEndian.PutUint32(tcp[16:], 0) // checksum, urgent pointer
	// A wrong checksum would make conntrack call the packet invalid and
	// drop it before any knock rule saw it.
	binary.BigEndian.PutUint16(tcp[16:], packet.Checksum(src, s.dst, packet.ProtoTCP, tcp))
}

// run sends at pps (or as fast as it can, if that is less) until ctx ends.
func (s *sender) run(ctx context.Context, pps float64) FloodResult {
	var sent, errs uint64
	start := time.Now()
	batch := len(s.msgs)
	// Packets are due at a steady rate from base on; a sender that fell
	// behind (no CPU for a while) moves base up rather than catch up in a
	// burst, so the rate never exceeds pps and the server's count says
	// what was really achieved.
	base, owed := start, uint64(0)
	slack := int64(pps / 100) // 10 ms of packets
	for ctx.Err() == nil {
		// pps 0 is unpaced: the generator's maximum.
		if due := int64(pps*time.Since(base).Seconds()) - int64(sent-owed); pps > 0 {
			if due > slack+int64(batch) {
				base = time.Now()
				owed = sent
				due = int64(batch)
			}
			if due < int64(batch) {
				time.Sleep(time.Duration(float64(int64(batch)-due) / pps * float64(time.Second)))
				continue
			}
		}
		for i := range batch {
			s.fill(s.pkts[i])
		}
		n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&s.msgs[0])), uintptr(batch), 0, 0, 0)
		runtime.KeepAlive(s)
		if e != 0 {
			errs++ // ENOBUFS and the like: the packets were not sent
			continue
		}
		sent += uint64(n)
	}
	secs := time.Since(start).Seconds()
	return FloodResult{Sent: sent, Seconds: secs, PPS: float64(sent) / secs, Errors: errs}
}

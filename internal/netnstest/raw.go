package netnstest

import (
	"encoding/binary"
	"fmt"
	"github.com/moat-fw/moat/internal/packet"
	"net"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

var (
	multicast6 = mustPrefix("ff02::/16")
	mapped6    = mustPrefix("::ffff:0.0.0.0/96")
)

// SendRaw sends whole IP packets, headers included, from inside the
// namespace out of ifname, as the test wrote them: IPv4 or IPv6 fragments,
// hop limits no socket option gives, any extension header. Sources must be
// test addresses or link-local; destinations test addresses or link-scope
// multicast, so nothing leaves the test's links.
func (n *NS) SendRaw(t testing.TB, ifname string, pkts ...[]byte) {
	t.Helper()
	type addressed struct {
		pkt []byte
		dst netip.Addr
	}
	var out []addressed
	for i, p := range pkts {
		src, dst, err := rawAddrs(p)
		if err == nil {
			err = checkRawAddrs(src, dst)
		}
		if err != nil {
			t.Fatalf("netnstest: SendRaw: packet %d: %v", i, err)
		}
		out = append(out, addressed{p, dst})
	}
	err := n.Do(func() error {
		rs, err := newRawSender(ifname)
		if err != nil {
			return err
		}
		defer rs.close()
		for _, p := range out {
			if err := rs.send(p.pkt, p.dst); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("netnstest: SendRaw in %s: %v", n.Name, err)
	}
}

// rawSender sends whole IP packets through IPPROTO_RAW sockets, one per
// family, opened on first use: the packet carries its own IP header, so
// any source can be written. Made and used inside NS.Do.
type rawSender struct {
	ifname  string // "": where the routes say
	ifindex int
	fds     map[bool]int // by "is IPv6"
}

func newRawSender(ifname string) (*rawSender, error) {
	rs := &rawSender{ifname: ifname, fds: map[bool]int{}}
	if ifname != "" {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return nil, err
		}
		rs.ifindex = ifi.Index
	}
	return rs, nil
}

func (rs *rawSender) send(pkt []byte, dst netip.Addr) error {
	v6 := dst.Is6()
	fd, ok := rs.fds[v6]
	if !ok {
		fam := unix.AF_INET
		if v6 {
			fam = unix.AF_INET6
		}
		var err error
		if fd, err = unix.Socket(fam, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW); err != nil {
			return fmt.Errorf("raw socket: %w", err)
		}
		rs.fds[v6] = fd
		if rs.ifname != "" {
			// Out of ifname whatever the routes say.
			if err := unix.BindToDevice(fd, rs.ifname); err != nil {
				return fmt.Errorf("bind to %s: %w", rs.ifname, err)
			}
		}
	}
	var sa unix.Sockaddr
	if v6 {
		sa = &unix.SockaddrInet6{Addr: dst.As16(), ZoneId: uint32(rs.ifindex)}
	} else {
		sa = &unix.SockaddrInet4{Addr: dst.As4()}
	}
	if err := unix.Sendto(fd, pkt, 0, sa); err != nil {
		return fmt.Errorf("send to %s: %w", dst, err)
	}
	return nil
}

func (rs *rawSender) close() {
	for _, fd := range rs.fds {
		unix.Close(fd)
	}
}

// checkRawAddrs refuses a forged packet that could leave the test's links:
// sources must be test addresses or link-local, destinations test
// addresses or link-scope (link-local or link-scope multicast).
func checkRawAddrs(src, dst netip.Addr) error {
	if !linkLocal6.Contains(src) {
		if err := checkTestAddr(src); err != nil {
			return err
		}
	}
	if !multicast6.Contains(dst) && !linkLocal6.Contains(dst) {
		return checkTestAddr(dst)
	}
	return nil
}

func rawAddrs(p []byte) (src, dst netip.Addr, err error) {
	switch {
	case len(p) >= 20 && p[0]>>4 == 4:
		return netip.AddrFrom4([4]byte(p[12:16])), netip.AddrFrom4([4]byte(p[16:20])), nil
	case len(p) >= 40 && p[0]>>4 == 6:
		src, dst = netip.AddrFrom16([16]byte(p[8:24])), netip.AddrFrom16([16]byte(p[24:40]))
		if mapped6.Contains(src) || mapped6.Contains(dst) {
			return src, dst, fmt.Errorf("IPv4-mapped address in an IPv6 header")
		}
		return src, dst, nil
	}
	return src, dst, fmt.Errorf("not an IPv4 or IPv6 packet")
}

// UDP builds a UDP datagram (header and payload) with its checksum.
func UDP(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	b := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)))
	copy(b[8:], payload)
	binary.BigEndian.PutUint16(b[6:], packet.Checksum(src, dst, unix.IPPROTO_UDP, b))
	return b
}

// TCP builds a TCP segment without options or data, with its checksum: a
// SYN, an ACK (ack 1, so the field is not zero), whatever flags says.
func TCP(src, dst netip.Addr, sport, dport uint16, flags byte, seq uint32) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], seq)
	if flags&0x10 != 0 {
		binary.BigEndian.PutUint32(b[8:], 1)
	}
	b[12], b[13] = 5<<4, flags // 20-byte header
	binary.BigEndian.PutUint16(b[14:], 1024)
	binary.BigEndian.PutUint16(b[16:], packet.Checksum(src, dst, unix.IPPROTO_TCP, b))
	return b
}

// IP wraps an upper-layer message (proto is its protocol) in an IPv4 or an
// IPv6 header, by the family of the addresses; id is the IPv4 ID.
func IP(src, dst netip.Addr, proto byte, id uint16, msg []byte) []byte {
	if dst.Is6() {
		return IPv6(src, dst, 64, proto, msg)
	}
	b := make([]byte, 20+len(msg))
	b[0], b[8], b[9] = 0x45, 64, proto
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], 0x4000) // DF
	s, d := src.As4(), dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	copy(b[20:], msg) // the kernel fills in the header checksum
	return b
}

// IPv6 wraps an upper-layer message (next is its protocol) in an IPv6
// header.
func IPv6(src, dst netip.Addr, hopLimit, next byte, msg []byte) []byte {
	b := make([]byte, 40+len(msg))
	binary.BigEndian.PutUint32(b[0:], 6<<28)
	binary.BigEndian.PutUint16(b[4:], uint16(len(msg)))
	b[6], b[7] = next, hopLimit
	s, d := src.As16(), dst.As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	copy(b[40:], msg)
	return b
}

// ICMPv6 builds an IPv6 packet carrying one ICMPv6 message with its
// checksum: typ, code, then body.
func ICMPv6(src, dst netip.Addr, hopLimit, typ, code byte, body []byte) []byte {
	m := append([]byte{typ, code, 0, 0}, body...)
	binary.BigEndian.PutUint16(m[2:], packet.Checksum(src, dst, unix.IPPROTO_ICMPV6, m))
	return IPv6(src, dst, hopLimit, unix.IPPROTO_ICMPV6, m)
}

// Fragments4 splits an upper-layer message (proto, checksum already set)
// into IPv4 fragments of at most size bytes of it each (size a multiple
// of 8), all with the same id.
func Fragments4(src, dst netip.Addr, proto byte, id uint16, msg []byte, size int) [][]byte {
	var out [][]byte
	for off := 0; off < len(msg); off += size {
		end := min(off+size, len(msg))
		b := make([]byte, 20+end-off)
		b[0], b[8], b[9] = 0x45, 64, proto
		binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
		binary.BigEndian.PutUint16(b[4:], id)
		fo := uint16(off / 8)
		if end < len(msg) {
			fo |= 0x2000 // more fragments
		}
		binary.BigEndian.PutUint16(b[6:], fo)
		s, d := src.As4(), dst.As4()
		copy(b[12:], s[:])
		copy(b[16:], d[:])
		copy(b[20:], msg[off:end])
		out = append(out, b) // the kernel fills in the header checksum
	}
	return out
}

// Fragments6 splits an upper-layer message (proto, checksum already set)
// into IPv6 packets with a fragment header, at most size bytes of it each
// (size a multiple of 8).
func Fragments6(src, dst netip.Addr, proto byte, id uint32, msg []byte, size int) [][]byte {
	var out [][]byte
	for off := 0; off < len(msg); off += size {
		end := min(off+size, len(msg))
		fh := make([]byte, 8+end-off)
		fh[0] = proto
		fo := uint16(off)
		if end < len(msg) {
			fo |= 1 // more fragments
		}
		binary.BigEndian.PutUint16(fh[2:], fo)
		binary.BigEndian.PutUint32(fh[4:], id)
		copy(fh[8:], msg[off:end])
		out = append(out, IPv6(src, dst, 64, unix.IPPROTO_FRAGMENT, fh))
	}
	return out
}

package netnstest

import (
	"encoding/binary"
	"fmt"
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
		if err == nil && !linkLocal6.Contains(src) {
			err = checkTestAddr(src)
		}
		if err == nil && !multicast6.Contains(dst) && !linkLocal6.Contains(dst) {
			err = checkTestAddr(dst)
		}
		if err != nil {
			t.Fatalf("netnstest: SendRaw: packet %d: %v", i, err)
		}
		out = append(out, addressed{p, dst})
	}
	err := n.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		fds := map[bool]int{}
		defer func() {
			for _, fd := range fds {
				unix.Close(fd)
			}
		}()
		for _, p := range out {
			v6 := p.dst.Is6()
			fd, ok := fds[v6]
			if !ok {
				fam := unix.AF_INET
				if v6 {
					fam = unix.AF_INET6
				}
				if fd, err = unix.Socket(fam, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW); err != nil {
					return fmt.Errorf("raw socket: %w", err)
				}
				fds[v6] = fd
				// Out of ifname whatever the routes say.
				if err := unix.BindToDevice(fd, ifname); err != nil {
					return fmt.Errorf("bind to %s: %w", ifname, err)
				}
			}
			var sa unix.Sockaddr
			if v6 {
				sa = &unix.SockaddrInet6{Addr: p.dst.As16(), ZoneId: uint32(ifi.Index)}
			} else {
				sa = &unix.SockaddrInet4{Addr: p.dst.As4()}
			}
			if err := unix.Sendto(fd, p.pkt, 0, sa); err != nil {
				return fmt.Errorf("send to %s: %w", p.dst, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("netnstest: SendRaw in %s: %v", n.Name, err)
	}
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

// Checksum is the Internet checksum of a TCP, UDP or ICMPv6 message (its
// checksum field zero) from src to dst, pseudo-header included.
func Checksum(src, dst netip.Addr, proto byte, msg []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i < len(b); i += 2 {
			hi := uint32(b[i]) << 8
			if i+1 < len(b) {
				hi |= uint32(b[i+1])
			}
			sum += hi
		}
	}
	add(src.AsSlice())
	add(dst.AsSlice())
	sum += uint32(proto) + uint32(len(msg))
	add(msg)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// UDP builds a UDP datagram (header and payload) with its checksum.
func UDP(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	b := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)))
	copy(b[8:], payload)
	binary.BigEndian.PutUint16(b[6:], Checksum(src, dst, unix.IPPROTO_UDP, b))
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
	binary.BigEndian.PutUint16(m[2:], Checksum(src, dst, unix.IPPROTO_ICMPV6, m))
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

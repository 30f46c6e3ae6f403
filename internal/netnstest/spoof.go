package netnstest

import (
	"encoding/binary"
	"fmt"
	"github.com/moat-fw/moat/internal/packet"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// linkLocal6 may be forged too: routers speak from there, and what a
// forged packet from a router's address does is what tests need to see.
// Such a packet never leaves the link it is sent on.
var linkLocal6 = mustPrefix("fe80::/10")

// Probe is one forged TCP SYN: from Src to Dst's port Port.
type Probe struct {
	Src, Dst netip.Addr
	Port     uint16
}

// SpoofSYNs sends, from inside the namespace, TCP SYNs with forged sources
// and no TCP options (as masscan and hping3 send them) through a raw
// socket, at most rate per second (0: as fast as it can). Every address
// must be a test address (or, as a source, link-local); the flood is
// bounded by len(probes). It returns once all are sent.
func (n *NS) SpoofSYNs(t testing.TB, rate int, probes []Probe) {
	t.Helper()
	n.SpoofSYNsFunc(t, rate, len(probes), func(i int) Probe { return probes[i] })
}

// SpoofSYNsFunc is SpoofSYNs for count probes made by probe(i), for floods
// too big to hold in a slice.
func (n *NS) SpoofSYNsFunc(t testing.TB, rate, count int, probe func(i int) Probe) {
	t.Helper()
	check := func(p Probe) error {
		if err := checkTestAddr(p.Dst); err != nil {
			return err
		}
		if !linkLocal6.Contains(p.Src) {
			if err := checkTestAddr(p.Src); err != nil {
				return err
			}
		}
		if p.Src.Is4() != p.Dst.Is4() {
			return fmt.Errorf("netnstest: SpoofSYNs: %s and %s are of different families", p.Src, p.Dst)
		}
		return nil
	}
	for i := range count {
		if err := check(probe(i)); err != nil {
			t.Fatal(err)
		}
	}
	err := n.Do(func() error {
		fds := map[bool]int{}
		defer func() {
			for _, fd := range fds {
				unix.Close(fd)
			}
		}()
		var buf [60]byte
		start := time.Now()
		for i := range count {
			p := probe(i)
			v6 := p.Dst.Is6()
			fd, ok := fds[v6]
			if !ok {
				fam := unix.AF_INET
				if v6 {
					fam = unix.AF_INET6
				}
				// IPPROTO_RAW: the packet carries its own IP header, so
				// any source can be written.
				var err error
				if fd, err = unix.Socket(fam, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW); err != nil {
					return fmt.Errorf("raw socket: %w", err)
				}
				fds[v6] = fd
			}
			pkt := buildSYN(buf[:], p, uint32(i))
			var sa unix.Sockaddr
			if v6 {
				sa = &unix.SockaddrInet6{Addr: p.Dst.As16()}
			} else {
				sa = &unix.SockaddrInet4{Addr: p.Dst.As4()}
			}
			if err := unix.Sendto(fd, pkt, 0, sa); err != nil {
				return fmt.Errorf("send %s -> %s:%d: %w", p.Src, p.Dst, p.Port, err)
			}
			if rate > 0 {
				if ahead := time.Duration(i+1)*time.Second/time.Duration(rate) - time.Since(start); ahead > 0 {
					time.Sleep(ahead)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("netnstest: SpoofSYNs in %s: %v", n.Name, err)
	}
}

// PortScan is n probes from src to dst's ports first, first+1, ...
func PortScan(src, dst netip.Addr, first uint16, n int) []Probe {
	out := make([]Probe, n)
	for i := range out {
		out[i] = Probe{Src: src, Dst: dst, Port: first + uint16(i)}
	}
	return out
}

func buildSYN(buf []byte, p Probe, seq uint32) []byte {
	var tcp []byte
	var pkt []byte
	if p.Dst.Is6() {
		pkt = buf[:60]
		binary.BigEndian.PutUint32(pkt[0:], 6<<28)
		binary.BigEndian.PutUint16(pkt[4:], 20)
		pkt[6], pkt[7] = unix.IPPROTO_TCP, 64
		a, b := p.Src.As16(), p.Dst.As16()
		copy(pkt[8:], a[:])
		copy(pkt[24:], b[:])
		tcp = pkt[40:]
	} else {
		pkt = buf[:40]
		pkt[0], pkt[1] = 0x45, 0
		binary.BigEndian.PutUint16(pkt[2:], 40)
		binary.BigEndian.PutUint16(pkt[4:], uint16(seq))
		binary.BigEndian.PutUint16(pkt[6:], 0x4000) // DF
		pkt[8], pkt[9] = 64, unix.IPPROTO_TCP
		pkt[10], pkt[11] = 0, 0 // the kernel computes the header checksum
		a, b := p.Src.As4(), p.Dst.As4()
		copy(pkt[12:], a[:])
		copy(pkt[16:], b[:])
		tcp = pkt[20:]
	}
	binary.BigEndian.PutUint16(tcp[0:], 40000+uint16(seq%20000))
	binary.BigEndian.PutUint16(tcp[2:], p.Port)
	binary.BigEndian.PutUint32(tcp[4:], seq*2654435761)
	binary.BigEndian.PutUint32(tcp[8:], 0)
	tcp[12], tcp[13] = 5<<4, 0x02 // 20-byte header, SYN
	binary.BigEndian.PutUint16(tcp[14:], 1024)
	binary.BigEndian.PutUint32(tcp[16:], 0)
	// A wrong checksum makes conntrack call the packet invalid.
	binary.BigEndian.PutUint16(tcp[16:], packet.TCPChecksum(p.Src, p.Dst, tcp))
	return pkt
}

// WriteResolvConf gives the namespace its own /etc/resolv.conf, as `ip
// netns exec` mounts it over the host's for the processes it starts
// (/etc/netns/NAME/resolv.conf). It is removed at cleanup.
func (n *NS) WriteResolvConf(t testing.TB, servers ...netip.Addr) {
	t.Helper()
	dir := "/etc/netns/" + n.Name
	var text string
	for _, s := range servers {
		if err := checkTestAddr(s); err != nil {
			t.Fatal(err)
		}
		text += "nameserver " + s.String() + "\n"
	}
	if err := writeFileMkdir(dir, "resolv.conf", text); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
}

func writeFileMkdir(dir, name, text string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644)
}

package netnstest

import (
	"encoding/binary"
	"fmt"
	mrand "math/rand/v2"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Link is a veth pair between two namespaces, with one IPv4 /24 and one
// IPv6 /64: A holds .1 and ::1, B holds .2 and ::2.
type Link struct {
	A, B             *NS
	AIf, BIf         string
	A4, B4, A6, B6   netip.Addr
	Prefix4, Prefix6 netip.Prefix
}

// subnetSeq numbers links in this process. It starts at a random point so
// parallel test binaries usually differ too, though they need not: each
// link lives only inside its own namespaces. Uniqueness matters within one
// namespace (a router connected to two clients), and holds for 256 links.
var subnetSeq atomic.Uint32

func init() { subnetSeq.Store(mrand.Uint32N(256)) }

// Connect joins a and b with a veth pair on a fresh 10.210.X.0/24 and
// fd00:210:X::/64, brings both ends up, and returns once both are up and
// their IPv6 addresses usable. The pair goes away with the namespaces.
func Connect(t testing.TB, a, b *NS) *Link {
	t.Helper()
	if a == b || a.Name == b.Name {
		t.Fatal("netnstest: Connect: a veth pair needs two different namespaces")
	}
	x := byte(subnetSeq.Add(1))
	// Created directly inside the namespaces, so the names never appear in
	// the host's namespace; they must stay within IFNAMSIZ (15 bytes).
	suffix := randHex(3)
	l := &Link{
		A: a, B: b,
		AIf: "mt" + suffix + "a", BIf: "mt" + suffix + "b",
		Prefix4: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 210, x, 0}), 24),
		Prefix6: netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0x00, 0x02, 0x10, 0, x}), 64),
	}
	l.A4, l.B4, l.A6, l.B6 = l.Host4(1), l.Host4(2), l.Host6(1), l.Host6(2)

	ip := a.ip
	args := []string{"link", "add", l.AIf, "netns", a.Name, "type", "veth", "peer", "name", l.BIf, "netns", b.Name}
	if out, err := runIP(ip, args...); err != nil {
		t.Fatalf("netnstest: ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	for _, end := range []struct {
		ns     *NS
		ifname string
		v4, v6 netip.Addr
	}{{a, l.AIf, l.A4, l.A6}, {b, l.BIf, l.B4, l.B6}} {
		end.ns.IP(t, "addr", "add", netip.PrefixFrom(end.v4, 24).String(), "dev", end.ifname)
		end.ns.IP(t, "addr", "add", netip.PrefixFrom(end.v6, 64).String(), "dev", end.ifname, "nodad")
		end.ns.IP(t, "link", "set", end.ifname, "up")
	}
	a.waitUsable(t, l.AIf)
	b.waitUsable(t, l.BIf)
	return l
}

// Host4 is the n-th address of the link's IPv4 /24 (1 is A, 2 is B).
func (l *Link) Host4(n int) netip.Addr {
	b := l.Prefix4.Addr().As4()
	b[3] = byte(n)
	return netip.AddrFrom4(b)
}

// Host6 is the n-th address of the link's IPv6 /64 (1 is A, 2 is B).
func (l *Link) Host6(n int) netip.Addr {
	b := l.Prefix6.Addr().As16()
	binary.BigEndian.PutUint64(b[8:], uint64(n))
	return netip.AddrFrom16(b)
}

// AddAddr adds an address with its prefix length (e.g. 10.210.7.3/24) to
// an interface, such as a second client in the same /24 for prefix bans.
// IPv6 addresses skip duplicate address detection and are usable at once.
func (n *NS) AddAddr(t testing.TB, ifname string, p netip.Prefix) {
	t.Helper()
	if err := checkTestAddr(p.Addr()); err != nil {
		t.Fatal(err)
	}
	args := []string{"addr", "add", p.String(), "dev", ifname}
	if p.Addr().Is6() {
		args = append(args, "nodad")
	}
	n.IP(t, args...)
	n.waitUsable(t, ifname)
}

// waitUsable waits until the interface has carrier and no tentative IPv6
// address. With nodad and accept_dad=0 that is immediate, but the carrier
// of a veth follows its peer and is worth the check.
func (n *NS) waitUsable(t testing.TB, ifname string) {
	t.Helper()
	Eventually(t, 5*time.Second, fmt.Sprintf("%s in %s to come up", ifname, n.Name), func() bool {
		link, err1 := runIP(n.ip, "-n", n.Name, "-o", "link", "show", "dev", ifname)
		tent, err2 := runIP(n.ip, "-n", n.Name, "-6", "-o", "addr", "show", "dev", ifname, "tentative")
		return err1 == nil && err2 == nil && strings.Contains(link, "LOWER_UP") && strings.TrimSpace(tent) == ""
	})
}

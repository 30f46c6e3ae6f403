package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/netnstest"
	"github.com/moat-fw/moat/internal/store"
)

// A million bans for TestMillionBans: half IPv4, half IPv6, 501 prefixes of
// each family (/24s, /112s, and a /30 and a /126 on the link), and among the hosts and prefixes a few addresses of the
// test link, from which real packets are sent. The bulk lies in 10.0.0.0/13,
// 10.8.0.0/13 and fd00:210:ff00::/40: set elements only, no traffic comes
// from them.
const (
	millionHosts = 499_496 // bulk hosts of each family
	millionNets  = 500     // bulk prefixes of each family
)

var (
	bulk4    = netip.MustParseAddr("10.0.0.0")
	bulkNet4 = netip.MustParseAddr("10.8.0.0")
	bulk6    = netip.MustParseAddr("fd00:210:ff00::")
	bulkNet6 = netip.MustParseAddr("fd00:210:fe00::")
)

func nth(base netip.Addr, n, shift int) netip.Addr {
	b := base.AsSlice()
	v := uint64(n) << shift
	for i := len(b) - 1; v != 0; i-- {
		s := uint64(b[i]) + v&0xff
		b[i] = byte(s)
		v = v>>8 + s>>8
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// millionBans returns the million entries, and the link addresses they ban
// (hosts, and one inside a banned prefix of each family).
func millionBans(l *netnstest.Link, now time.Time) (es []store.Entry, banned []netip.Addr) {
	es = make([]store.Entry, 0, 1_000_000)
	add := func(p netip.Prefix, i int) {
		e := store.Entry{Prefix: p, Origin: "scale", Reason: "seeded", Created: now}
		if i%7 != 0 {
			e.Expires = now.Add(time.Duration(2+i%22) * time.Hour) // and one in seven for good
		}
		es = append(es, e)
	}
	for i := range millionHosts {
		add(netip.PrefixFrom(nth(bulk4, i, 0), 32), i)
		add(netip.PrefixFrom(nth(bulk6, i, 0), 128), i)
	}
	for i := range millionNets {
		add(netip.PrefixFrom(nth(bulkNet4, i, 8), 24), i)
		add(netip.PrefixFrom(nth(bulkNet6, i, 16), 112), i)
	}
	for i, n := range []int{50, 51, 52} {
		add(netip.PrefixFrom(l.Host4(n), 32), i)
		add(netip.PrefixFrom(l.Host6(n), 128), i)
		banned = append(banned, l.Host4(n), l.Host6(n))
	}
	add(netip.PrefixFrom(l.Host4(60), 30), 1)
	add(netip.PrefixFrom(l.Host6(0x60), 126), 1)
	banned = append(banned, l.Host4(61), l.Host6(0x61))
	return es, banned
}

// kernelHolds checks that moat's ban sets hold every one of the million,
// asking the kernel for each by key (reading the sets back would take
// minutes).
func kernelHolds(t *testing.T, h *host, want []store.Entry) {
	t.Helper()
	ps := make([]netip.Prefix, len(want))
	for i, e := range want {
		ps[i] = e.Prefix
	}
	a := firewall.NewApplier(nftables.WithNetNSFd(h.server.Fd()))
	defer a.Close()
	missing, err := a.Missing(firewall.Bans, ps)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 {
		t.Fatalf("the kernel lacks %d of the %d bans, first %v", len(missing), len(want), missing[:min(len(missing), 5)])
	}
}

// TestMillionBans: a million bans (half IPv4, half IPv6, some prefixes)
// restored from the store are all in the kernel and enforced (packets from
// banned link addresses dropped, an unbanned one passes), and stay so
// across a restart and a kill -9 followed by a start.
func TestMillionBans(t *testing.T) {
	if testing.Short() {
		t.Skip("a million bans: a minute of work; skipped with -short")
	}
	if os.Getenv("CI") == "" && os.Getenv("MOAT_SCALE_TEST") == "" {
		t.Skip("a million bans: a minute or more of a busy machine; runs in CI, or with MOAT_SCALE_TEST=1")
	}
	h := newHost(t, fmt.Sprintf("open = [\"tcp/%d\"]", openPort))
	h.startWait = time.Minute
	es, banned := millionBans(h.link, time.Now())
	for _, a := range banned {
		bits := 24
		if a.Is6() {
			bits = 64
		}
		h.client.AddAddr(t, h.link.BIf, netip.PrefixFrom(a, bits))
	}
	free := h.link.Host4(70) // unbanned, in the same /24 as the banned
	h.client.AddAddr(t, h.link.BIf, netip.PrefixFrom(free, 24))
	// Neighbours fixed for IPv6: a neighbour solicitation from a banned
	// source is dropped like any packet, and the client's kernel may pick
	// one as the source of those it sends for the unbanned address too.
	serverMAC, clientMAC := linkMAC(t, h.server, h.link.AIf), linkMAC(t, h.client, h.link.BIf)
	h.client.IP(t, "-6", "neigh", "replace", h.link.A6.String(), "lladdr", serverMAC, "dev", h.link.BIf, "nud", "permanent")
	for _, a := range append([]netip.Addr{h.link.B6}, banned...) {
		if a.Is6() {
			h.server.IP(t, "-6", "neigh", "replace", a.String(), "lladdr", clientMAC, "dev", h.link.AIf, "nud", "permanent")
		}
	}
	st, err := store.Open(h.dir + "/state")
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if _, err := st.PutBans(es); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("seeded %d bans in %s", len(es), time.Since(t0).Round(time.Millisecond))

	enforced := func(step string) {
		t.Helper()
		t0 := time.Now()
		kernelHolds(t, h, es)
		for _, a := range banned {
			h.expect(a, openPort, netnstest.TimedOut)
		}
		h.expect(free, openPort, netnstest.Connected)
		h.expect(h.link.B6, openPort, netnstest.Connected)
		t.Logf("%s: all %d bans in the kernel and enforced (checked in %s)", step, len(es), time.Since(t0).Round(time.Millisecond))
	}
	started := func(step string) {
		t.Helper()
		t0 := time.Now()
		h.start()
		t.Logf("%s: socket answering after %s", step, time.Since(t0).Round(time.Millisecond))
		if n := h.status(t).Bans; n != len(es) {
			t.Fatalf("%s: moat reports %d bans, want %d", step, n, len(es))
		}
	}

	started("first start")
	enforced("first start")

	h.restart()
	if n := h.status(t).Bans; n != len(es) {
		t.Fatalf("after restart: moat reports %d bans, want %d", n, len(es))
	}
	enforced("after a restart")

	h.proc.Kill9()
	_ = h.proc.Wait(5 * time.Second)
	enforced("moat killed") // the kernel holds them with moat dead
	started("start after kill -9")
	enforced("start after kill -9")
}

// linkMAC returns the hardware address of an interface in ns.
func linkMAC(t *testing.T, ns *netnstest.NS, ifname string) string {
	t.Helper()
	var links []struct {
		Address string `json:"address"`
	}
	if err := json.Unmarshal([]byte(ns.IP(t, "-j", "link", "show", "dev", ifname)), &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -j link show dev %s: %v", ifname, err)
	}
	return links[0].Address
}

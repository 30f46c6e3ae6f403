package firewall_test

import (
	"bufio"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/netnstest"
)

// setLen counts a named set's elements in the namespace's moat table.
func setLen(t *testing.T, c *nftables.Conn, name string, v6 bool) int {
	t.Helper()
	kt := nftables.TypeIPAddr
	if v6 {
		kt = nftables.TypeIP6Addr
	}
	els, err := c.GetSetElements(&nftables.Set{Table: &nftables.Table{Name: firewall.TableName, Family: nftables.TableFamilyINet}, Name: name, KeyType: kt})
	if err != nil {
		t.Fatalf("read set %s: %v", name, err)
	}
	return len(els)
}

// sUnreclaim is the kernel's unreclaimable slab memory, in bytes: where
// nftables set elements live.
func sUnreclaim(t *testing.T) int64 {
	t.Helper()
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "SUnreclaim:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb * 1024
		}
	}
	t.Fatal("no SUnreclaim in /proc/meminfo")
	return 0
}

// L4: a flood of forged first knocks, from more sources than the door's
// max_pending, fills the door's clock and first-stage sets up to
// max_pending and no further, so the kernel memory a door can take is
// bounded by it. Below the cap, the knocker's real sequence still opens
// the door in the middle of the flood. MOAT_MEASURE_KNOCK_MEMORY=1 logs the
// kernel memory per pending source (SUnreclaim before and after; noisy on
// a busy machine, so the flood is large).
func TestKnockSetsStayWithinMaxPending(t *testing.T) {
	netnstest.RequireRoot(t)
	server, client := netnstest.New(t), netnstest.New(t)
	link := netnstest.Connect(t, server, client)
	// Answers to forged sources go back to the client's namespace, as
	// through a host's uplink; and reverse-path checks pass for any source.
	server.IP(t, "route", "add", "default", "via", link.B4.String())
	const maxPending = 4096
	door := config.Door{Name: "flood", SeqTimeout: time.Minute, TCPFlags: config.TCPFlags{Set: 0x02},
		Sequence: []config.PortSpec{{Proto: config.TCP, From: 7000, To: 7000}, {Proto: config.TCP, From: 7100, To: 7100}},
		Open:     []config.PortSpec{{Proto: config.TCP, From: 2222, To: 2222}}, OpenFor: time.Minute, MaxPending: maxPending}
	fw := config.Firewall{ClosedResponse: "drop", LogGroup: 7, LogRate: 1, LogBurst: 1, Forward: "untouched"}
	measure := os.Getenv("MOAT_MEASURE_KNOCK_MEMORY") != ""
	if measure {
		door.MaxPending = 1 << 20
	}
	a := firewall.NewApplier(nftables.WithNetNSFd(server.Fd()))
	if err := a.Apply(firewall.Build(fw, nil, door), nil, nil); err != nil {
		t.Fatal(err)
	}
	c, err := nftables.New(nftables.WithNetNSFd(server.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	clock, stage1 := firewall.KnockSetName("flood", "", 0, false), firewall.KnockSetName("flood", "", 1, false)
	forged := func(i int) netnstest.Probe {
		// Sources from the test range's other /24s (never the link's own).
		x := byte(i >> 8)
		if x == link.B4.As4()[2] {
			x++
		}
		return netnstest.Probe{Src: netip.AddrFrom4([4]byte{10, 210, x, byte(i)}), Dst: link.A4, Port: 7000}
	}

	if measure {
		// 60,000 sources (the /16 holds about 65,000 of them).
		const n = 60000
		before := sUnreclaim(t)
		client.SpoofSYNsFunc(t, 0, n, forged)
		time.Sleep(time.Second)
		after := sUnreclaim(t)
		els := setLen(t, c, clock, false) + setLen(t, c, stage1, false)
		t.Logf("%d forged first knocks: %d elements in the clock and stage 1; SUnreclaim %+d bytes, %.0f bytes per element, %.0f per pending source",
			n, els, after-before, float64(after-before)/float64(els), 2*float64(after-before)/float64(els))
		return
	}

	// Half the cap: the real knock, sent in the middle of the flood, opens.
	half := maxPending / 2
	client.SpoofSYNsFunc(t, 0, half, forged)
	client.SpoofSYNs(t, 0, []netnstest.Probe{{Src: link.B4, Dst: link.A4, Port: 7000}, {Src: link.B4, Dst: link.A4, Port: 7100}})
	gs, err := a.Grants()
	if err != nil {
		t.Fatal(err)
	}
	if len(gs) != 1 || gs[0].Addr != link.B4 {
		t.Fatalf("a real knock under a flood of %d forged first knocks (max_pending %d) opened %v, want a grant for %s", half, maxPending, gs, link.B4)
	}
	// Three times the cap: the sets fill to max_pending and stop.
	client.SpoofSYNsFunc(t, 0, 3*maxPending, func(i int) netnstest.Probe { return forged(half + i) })
	for _, s := range []string{clock, stage1} {
		if n := setLen(t, c, s, false); n > maxPending || n < maxPending*9/10 {
			t.Fatalf("set %s holds %d elements after %d forged first knocks, want max_pending (%d) at most, and near it", s, n, 3*maxPending, maxPending)
		}
	}
}

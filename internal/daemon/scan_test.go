package daemon

import (
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/ban"
	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/events"
	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/packet"
	"github.com/moat-fw/moat/internal/protect"
	"github.com/moat-fw/moat/internal/store"
)

func testScanGuard(t *testing.T, cfg config.Scan, prot ban.Protector) (*scanGuard, *ban.Manager) {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	m, err := ban.New(st, nullKernel{}, nil, t0, func(error) {})
	if err != nil {
		t.Fatal(err)
	}
	if prot != nil {
		m.SetProtector(prot)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ign := &scanIgnore{bans: m, now: func() time.Time { return t0 }}
	if prot != nil {
		ign.protected = func(a netip.Addr) bool { _, ok := prot.Protected(netip.PrefixFrom(a, a.BitLen())); return ok }
	}
	return newScanGuard(cfg, nil, log, m, ign, nil), m
}

// scan sends n bare SYNs (no options, as masscan) from src to n ports.
func scan(g *scanGuard, src netip.Addr, n int, now time.Time) {
	dst := netip.MustParseAddr("10.210.0.1")
	if src.Is6() {
		dst = netip.MustParseAddr("fd00:210::1")
	}
	var p packet.Packet
	for i := range n {
		p = packet.Packet{Src: src, Dst: dst, Family: 4, Proto: packet.ProtoTCP, TTL: 64, TCPFlags: packet.SYN, DstPort: uint16(1000 + i)}
		if src.Is6() {
			p.Family = 6
		}
		g.packet(&p, []byte(firewall.LogPrefix("closed")), now.Add(time.Duration(i)*time.Millisecond))
	}
}

func TestScanBansAreShortFirstAndGrowOnRepeat(t *testing.T) {
	cfg := defaultScan(t)
	g, m := testScanGuard(t, cfg, nil)
	src := netip.MustParseAddr("10.210.7.7")
	want := []time.Duration{10 * time.Minute, time.Hour, 6 * time.Hour, 24 * time.Hour, 24 * time.Hour} // level 3: block_for 24h
	now := t0
	for i, d := range want {
		scan(g, src, 40, now)
		es := m.List(now.Add(time.Minute))
		if len(es) != 1 {
			t.Fatalf("round %d: %d bans, want 1", i, len(es))
		}
		if got := es[0].Expires.Sub(es[0].Created); got != d {
			t.Fatalf("round %d: ban of %s, want %s", i, got, d)
		}
		now = es[0].Expires.Add(cfg.Window + time.Second) // the ban ended, the window forgot the source
		if err := m.Expire(now); err != nil {
			t.Fatal(err)
		}
		g.det.Forget(src)
	}
}

func TestScanBansAreCapped(t *testing.T) {
	cfg := defaultScan(t)
	cfg.MaxBansPerMinute = 20
	g, m := testScanGuard(t, cfg, nil)
	for i := range 100 { // a flood of invented sources, each a scanner
		scan(g, netip.AddrFrom4([4]byte{10, 210, 8, byte(i)}), 20, t0.Add(time.Duration(i)*100*time.Millisecond))
	}
	n, _ := m.Counts()
	st := g.status(t0.Add(11 * time.Second))
	if n != 20 || st.Capped != 80 || st.Blocked != 20 {
		t.Fatalf("bans %d, capped %d, blocked %d; want 20, 80, 20", n, st.Capped, st.Blocked)
	}
	// A minute after the first ban, the budget has room again.
	scan(g, netip.MustParseAddr("10.210.9.1"), 20, t0.Add(61*time.Second))
	if n, _ := m.Counts(); n != 21 {
		t.Fatalf("%d bans after a minute, want 21", n)
	}
}

type setProt struct{ s *protect.Set }

func (p setProt) Protected(q netip.Prefix) (protect.Entry, bool) { return p.s.Overlaps(q) }

func TestScanNeverBansProtected(t *testing.T) {
	prot := setProt{protect.New(protect.LinkLocal, []protect.Entry{protect.Host(netip.MustParseAddr("10.210.0.254"), protect.WhyRouter)})}
	g, m := testScanGuard(t, defaultScan(t), prot)
	scan(g, netip.MustParseAddr("10.210.0.254"), 60, t0)
	scan(g, netip.MustParseAddr("fe80::1"), 60, t0)
	scan(g, netip.MustParseAddr("::ffff:10.210.3.3"), 60, t0) // an IPv6 packet forged from a mapped address
	if es := m.List(t0); len(es) != 0 {
		t.Fatalf("bans: %v", es)
	}
	if st := g.status(t0); st.Capped != 0 || len(st.Events) != 0 {
		t.Fatalf("protected sources were scored: %+v", st)
	}
}

func TestBanBudgetRefund(t *testing.T) {
	b := newBanBudget(2)
	first, second, third := b.take(t0), b.take(t0), b.take(t0)
	if !first || !second || third {
		t.Fatal("two per minute")
	}
	b.refund()
	if !b.take(t0) || b.take(t0.Add(59*time.Second)) || !b.take(t0.Add(time.Minute)) {
		t.Fatal("refund or roll-over")
	}
}

func defaultScan(t *testing.T) config.Scan {
	cfg, err := config.Parse(nil, "test")
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Scan
}

// The live page, alerts and the fleet learn of a scanner from the scan
// event and then its ban, in that order.
func TestScanGuardPublishesTheScanThenTheBan(t *testing.T) {
	g, _ := testScanGuard(t, defaultScan(t), nil)
	g.bus = events.New(16)
	src := netip.MustParseAddr("10.210.7.8")
	scan(g, src, 40, t0)
	var kinds []events.Kind
	for _, e := range g.bus.Recent(16, 0) {
		if e.Prefix != netip.PrefixFrom(src, 32) {
			t.Fatalf("event about %s, want %s: %+v", e.Prefix, src, e)
		}
		kinds = append(kinds, e.Kind)
	}
	if len(kinds) < 2 || kinds[0] != events.Scan || !slices.Contains(kinds, events.Ban) {
		t.Fatalf("events %v, want a scan first and a ban", kinds)
	}
	for _, e := range g.bus.Recent(16, 0) {
		if e.Kind == events.Ban && (e.Origin != OriginScan || e.Until.IsZero() || e.Count != 1) {
			t.Fatalf("ban event %+v: want origin scan, an end and count 1", e)
		}
	}
}

// The kernel's scan hold follows [scan]: on with the guard and its
// blocking, with the guard's ignore list; off when the guard only alerts,
// is off, or hold is "0s".
func TestFirewallForScanHold(t *testing.T) {
	ignore := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	for _, c := range []struct {
		name    string
		enabled bool
		level   int
		hold    time.Duration
		want    time.Duration
	}{
		{"blocking", true, 3, time.Minute, time.Minute},
		{"alerts only", true, 0, time.Minute, 0},
		{"guard off", false, 3, time.Minute, 0},
		{"hold off", true, 3, 0, 0},
	} {
		cfg := &config.Config{Scan: config.Scan{Enabled: c.enabled, BlockLevel: c.level, Hold: c.hold, Ignore: ignore}}
		fw, err := FirewallFor(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if fw.ScanHold != c.want || c.want > 0 && !slices.Equal(fw.ScanHoldIgnore, ignore) {
			t.Errorf("%s: hold %v ignore %v, want %v and the guard's ignore list", c.name, fw.ScanHold, fw.ScanHoldIgnore, c.want)
		}
	}
}

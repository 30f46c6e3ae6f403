package daemon

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/packet"
	"github.com/moat-fw/moat/internal/portscan"
	"github.com/moat-fw/moat/internal/store"
)

func TestReportStatusFromTheGuardsAndBans(t *testing.T) {
	var d Daemon
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	a1, a2, low := netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("2001:db8::9"), netip.MustParseAddr("198.51.100.1")
	st := Status{
		Scan: &ScanStatus{Blocked: 2, Report: portscan.Report{
			Sources: []portscan.SourceReport{{Addr: a1, Level: 4}, {Addr: a2, Level: 2}, {Addr: low, Level: 0}},
			Prefixes: []portscan.PrefixReport{{Prefix: "moat:closed", Packets: 10}, {Prefix: "moat:xmas", Packets: 3},
				{Prefix: "moat:fragment", Packets: 1}, {Prefix: "moat:invalid", Packets: 2}, {Prefix: "Drop Syn", Packets: 1}},
			Totals: portscan.Totals{TCP: 12, UDP: 3, Probes: 15, Sources: 3, Destinations: 2},
		}},
		Login:    &LoginStatus{Banned: 1, Events: 9},
		Counters: map[string]firewall.Counter{firewall.CounterKnock: {Packets: 4}},
	}
	var bans []store.Entry
	for i := range 50 {
		bans = append(bans, store.Entry{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 210, 0, byte(i)}), 32), Origin: OriginScan,
			Expires: now.Add(time.Duration(i) * time.Minute)})
	}
	bans = append(bans,
		store.Entry{Prefix: netip.PrefixFrom(a1, 32), Origin: OriginScan, Expires: now.Add(time.Hour)},
		store.Entry{Prefix: netip.MustParsePrefix("2001:db8::/64"), Origin: OriginLogin, Reason: "sshd: 5 failures in 10m (invalid user)"},
		store.Entry{Prefix: netip.PrefixFrom(low, 32), Origin: "manual"})
	rs := d.reportStatus(&st, func(fn func(store.Entry)) {
		for _, e := range bans {
			fn(e)
		}
	}, now)

	if len(rs.Attackers) != 2 {
		t.Fatalf("attackers %+v: want the two at min_level 1 and up", rs.Attackers)
	}
	if at := rs.Attackers[0]; !at.Banned || at.BanOrigin != OriginScan || at.BannedUntil == nil || !at.BannedUntil.Equal(now.Add(time.Hour)) {
		t.Errorf("host-banned attacker %+v", at)
	}
	if at := rs.Attackers[1]; !at.Banned || at.BanOrigin != OriginLogin || at.BannedUntil != nil {
		t.Errorf("prefix-banned attacker %+v", at)
	}
	kinds := map[string]string{}
	for _, p := range rs.Prefixes {
		kinds[p.Prefix] = p.Kind
	}
	if fmt.Sprint(kinds) != "map[Drop Syn:other moat:closed:closed moat:fragment:stealth moat:invalid:invalid moat:xmas:stealth]" {
		t.Errorf("prefix kinds %v", kinds)
	}
	if rs.BlockedTotal != 51 || len(rs.Blocked) != 10 || rs.Blocked[0].Addr != "203.0.113.7" || rs.Blocked[1].Addr != "10.210.0.49" || rs.Blocked[9].Addr != "10.210.0.41" {
		t.Errorf("blocked %d: %+v", rs.BlockedTotal, rs.Blocked)
	}
	want := []GuardCount{{OriginScan, 51, 2, 15}, {OriginLogin, 1, 1, 9}, {"doors", 0, -1, 4}, {"manual", 1, -1, 0}}
	if fmt.Sprint(rs.Guards) != fmt.Sprint(want) {
		t.Errorf("guards %+v\nwant %+v", rs.Guards, want)
	}
	if rs.Packets.TCP != 12 || rs.Sources != 3 || rs.Destinations != 2 || rs.MinLevel != 1 {
		t.Errorf("report %+v", rs)
	}
}

func TestUserTallyBounded(t *testing.T) {
	var u userTally
	a := netip.MustParseAddr("203.0.113.7")
	for i := range 40 {
		u.note(a, fmt.Appendf(nil, "user%d", i))
	}
	u.note(a, []byte("user0"))
	got := u.of(a)
	if len(got) != maxUsersEach || got["user0"] != 2 {
		t.Fatalf("%d users, user0 %d", len(got), got["user0"])
	}
	for i := range 2 * maxTallied {
		u.note(netip.AddrFrom4([4]byte{10, 210, byte(i >> 8), byte(i)}), []byte("root"))
	}
	if len(u.m) > maxTallied {
		t.Fatalf("%d addresses tallied", len(u.m))
	}
}

// [scan] ignore_ports and [[scan.danger]] reach the detector.
func TestScanDetectorConfigHasPsadSettings(t *testing.T) {
	cfg, err := config.Parse([]byte(`
[scan]
ignore_ports = ["tcp/443"]
[[scan.danger]]
addr = "10.210.9.0/24"
level = 5
[[scan.danger]]
addr = "10.210.9.9"
level = 0
`), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	det := portscan.New(ScanDetectorConfig(cfg.Scan, nil, nil))
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	syn := func(src string, port uint16) *packet.Packet {
		return &packet.Packet{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr("10.210.0.1"), Family: 4, Proto: packet.ProtoTCP,
			TTL: 50, DstPort: port, TCPFlags: packet.SYN, TCPWindow: 1024, TCPOptLen: 4, TCPOpts: packet.OptMSS, MSS: 1460, TCPOptOrder: 3}
	}
	if dec, ok := det.Observe(syn("10.210.9.1", 22), []byte("moat:closed"), now); !ok || dec.Level != 5 {
		t.Fatalf("auto_dl 5: %+v %v", dec, ok)
	}
	for port := range uint16(300) {
		if dec, ok := det.Observe(syn("10.210.9.9", 1000+port), []byte("moat:closed"), now); ok {
			t.Fatalf("auto_dl 0 rose: %+v", dec)
		}
	}
	for range 100 {
		det.Observe(syn("10.210.5.5", 443), []byte("moat:closed"), now)
	}
	if r := det.Report(now, 0); r.Totals.Ignored != 100 {
		t.Fatalf("ignore_ports: %+v", r.Totals)
	}
}

// A database that does not open is told in status, and the report goes on
// without it.
func TestReportWithoutItsDatabase(t *testing.T) {
	d := Daemon{log: slog.New(slog.DiscardHandler)}
	d.applyReport(config.Report{Top: 5, MinLevel: 2, GeoIP: "/nonexistent/GeoLite2-Country.mmdb"})
	rs := d.reportStatus(&Status{}, func(func(store.Entry)) {}, time.Now())
	if rs.Lookups.GeoIP || !strings.Contains(rs.Lookups.Error, "/nonexistent/GeoLite2-Country.mmdb: not a readable MaxMind-format database") || rs.MinLevel != 2 {
		t.Fatalf("lookups %+v", rs)
	}
	if d.reportTop() != 5 {
		t.Fatalf("top %d", d.reportTop())
	}
}

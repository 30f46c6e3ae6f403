package firewall_test

import (
	"context"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/netnstest"
)

var (
	counterValues = regexp.MustCompile(` packets \d+ bytes \d+`)
	emptyLines    = regexp.MustCompile(`(?m)^\t\tpackets \d+ bytes \d+\n`)
	anonSets      = regexp.MustCompile(`\{ [^{}@]* \}`)
)

// sortSets orders the elements of anonymous sets: the kernel lists hash
// sets in its own order.
func sortSets(s string) string {
	return anonSets.ReplaceAllStringFunc(s, func(m string) string {
		items := strings.Split(strings.TrimSuffix(strings.TrimPrefix(m, "{ "), " }"), ", ")
		slices.Sort(items)
		return "{ " + strings.Join(items, ", ") + " }"
	})
}

// listed is `nft list table inet moat` without counter values and set
// elements, which `moat firewall show` leaves out.
func listed(t *testing.T, ns *netnstest.NS) string {
	out := ns.Run(t, "nft", "-t", "list", "table", "inet", "moat")
	out = emptyLines.ReplaceAllString(out, "")
	return sortSets(counterValues.ReplaceAllString(out, ""))
}

// TestShowIsWhatTheKernelHolds installs rulesets built from several configs
// and checks that nft reads back exactly the text `moat firewall show`
// prints: the expressions and the text are built side by side, and this is
// what keeps them in step.
func TestShowIsWhatTheKernelHolds(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommands(t, "nft")
	cases := map[string]config.Firewall{
		"defaults": {Open: []config.PortSpec{{Proto: config.TCP, SSH: true}}, ClosedResponse: "drop",
			Stealth: true, LogGroup: 7, LogRate: 20, LogBurst: 50, Forward: "untouched", ScanHold: time.Minute},
		"everything": {
			Interfaces: []string{"eth0", "wg*"},
			Open: []config.PortSpec{{Proto: config.TCP, SSH: true}, {Proto: config.TCP, From: 443, To: 443},
				{Proto: config.TCP, From: 8000, To: 8100}, {Proto: config.UDP, From: 53, To: 53},
				{Proto: config.UDP, From: 60000, To: 65535}},
			Allow:          []netip.Prefix{netip.MustParsePrefix("10.210.0.0/24")},
			ClosedResponse: "reject", Ping: true, Stealth: true, LogGroup: 9, LogRate: 100, LogBurst: 200, Forward: "drop",
			TrustedInterfaces: []string{"lxcbr0", "veth*"}, Output: "deny", Blocklists: []string{"firehol_level1", "drop"},
			OutputAllow: []config.OutputRule{{Port: config.PortSpec{Proto: config.UDP, From: 53, To: 53}, To: netip.MustParsePrefix("10.210.0.53/32")},
				{Port: config.PortSpec{Proto: config.TCP, From: 443, To: 443}},
				{Port: config.PortSpec{Proto: config.TCP, From: 22, To: 22}, To: netip.MustParsePrefix("fd00:210::/48")},
				{Port: config.PortSpec{Proto: config.TCP, From: 8000, To: 8100}, To: netip.MustParsePrefix("10.210.0.0/23")}},
			Reject:   []config.PortSpec{{Proto: config.TCP, From: 137, To: 139}, {Proto: config.UDP, From: 137, To: 139}, {Proto: config.UDP, From: 445, To: 445}},
			ScanHold: 90 * time.Second, ScanHoldIgnore: []netip.Prefix{netip.MustParsePrefix("10.210.3.0/24"), netip.MustParsePrefix("10.210.4.7/32"), netip.MustParsePrefix("fd00:210:3::/48")}},
		"bare": {ClosedResponse: "reject", LogGroup: 7, LogRate: 1, LogBurst: 1, Forward: "ban",
			Open: []config.PortSpec{{Proto: config.UDP, From: 5000, To: 5010}}},
	}
	doors := []config.Door{
		{Name: "ssh", Sequence: []config.PortSpec{{Proto: config.TCP, From: 7000, To: 7000}, {Proto: config.TCP, From: 8000, To: 8000}, {Proto: config.UDP, From: 9000, To: 9000}},
			SeqTimeout: 5 * time.Second, TCPFlags: config.TCPFlags{Set: 0x02, Clear: 0x10}, Open: []config.PortSpec{{Proto: config.TCP, From: 2222, To: 2223}},
			OpenFor: 90 * time.Second, CloseSequence: []config.PortSpec{{Proto: config.UDP, From: 9100, To: 9100}, {Proto: config.UDP, From: 9200, To: 9200}}, MaxPending: 1024},
		{Name: "one", Sequence: []config.PortSpec{{Proto: config.UDP, From: 4000, To: 4000}}, SeqTimeout: time.Second,
			Open: []config.PortSpec{{Proto: config.UDP, From: 5000, To: 5000}}, OpenFor: time.Hour, MaxPending: 16},
		{Name: "hook", Sequence: []config.PortSpec{{Proto: config.TCP, From: 6000, To: 6000}, {Proto: config.UDP, From: 6001, To: 6001}},
			SeqTimeout: 3 * time.Second, Open: []config.PortSpec{{Proto: config.TCP, From: 6022, To: 6022}}, OpenFor: time.Minute,
			StartCommand: []string{"/bin/true"}, MaxPending: 100},
	}
	for name, fw := range cases {
		t.Run(name, func(t *testing.T) {
			ns := netnstest.New(t)
			a := firewall.NewApplier(nftables.WithNetNSFd(ns.Fd()))
			var ds []config.Door
			if name == "everything" {
				ds = doors
			}
			rs := firewall.Build(fw, []uint16{22, 2222}, ds...)
			if err := a.Apply(rs, nil, nil); err != nil {
				t.Fatal(err)
			}
			if got, want := listed(t, ns), sortSets(rs.String()); got != want {
				t.Fatalf("the kernel holds a different ruleset than `firewall show` prints\n--- kernel\n%s\n--- show\n%s", got, want)
			}
		})
	}
}

// TestOtherTablesUntouched installs, updates and removes moat's table next
// to a stand-in for docker's, which must come through byte for byte.
func TestOtherTablesUntouched(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommands(t, "nft")
	ns := netnstest.New(t)
	ns.Nft(t, `
table ip dockerish {
	set blocked { type ipv4_addr; elements = { 10.210.200.1 } }
	chain forward { type filter hook forward priority filter; policy accept; ip saddr @blocked drop; }
	chain postrouting { type nat hook postrouting priority srcnat; policy accept; oifname "docker0" masquerade; }
}
table inet moatish {
	chain input { type filter hook input priority 10; policy accept; counter; }
}
`)
	before := ns.Run(t, "nft", "list", "ruleset")
	other := func() string {
		// Everything but moat's own table.
		out := ns.Run(t, "nft", "list", "ruleset")
		if i := strings.Index(out, "table inet moat {"); i >= 0 {
			j := strings.Index(out[i:], "\n}\n")
			out = out[:i] + out[i+j+3:]
		}
		return out
	}
	a := firewall.NewApplier(nftables.WithNetNSFd(ns.Fd()))
	fw := config.Firewall{ClosedResponse: "drop", Stealth: true, LogGroup: 7, LogRate: 20, LogBurst: 50, Forward: "ban"}
	for i := range 2 { // install, then replace
		if err := a.Apply(firewall.Build(fw, nil), []firewall.Element{{Prefix: netip.MustParsePrefix("10.210.9.0/24")}}, nil); err != nil {
			t.Fatal(err)
		}
		if got := other(); got != before {
			t.Fatalf("apply %d changed other tables:\n--- before\n%s\n--- after\n%s", i, before, got)
		}
	}
	if err := a.Update(firewall.Bans, nil, []firewall.Element{{Prefix: netip.MustParsePrefix("10.210.8.1/32"), Timeout: time.Minute}}); err != nil {
		t.Fatal(err)
	}
	if got := other(); got != before {
		t.Fatalf("a ban changed other tables:\n%s", got)
	}
	if ok, err := a.Remove(); err != nil || !ok {
		t.Fatalf("remove: %v %v", ok, err)
	}
	if got := ns.Run(t, "nft", "list", "ruleset"); got != before {
		t.Fatalf("remove changed other tables:\n--- before\n%s\n--- after\n%s", before, got)
	}
	if ok, err := a.Remove(); err != nil || ok {
		t.Fatalf("second remove: want (false, nil), got (%v, %v)", ok, err)
	}
}

// TestElementsRoundTrip reads back what was put in the sets, including a
// prefix that runs to the end of the address space.
func TestElementsRoundTrip(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t)
	a := firewall.NewApplier(nftables.WithNetNSFd(ns.Fd()))
	want := []string{"10.210.1.0/24", "10.210.2.7/32", "255.255.255.0/24", "fd00:210::/64", "fd00:210:1::9/128"}
	var els []firewall.Element
	for _, s := range want {
		els = append(els, firewall.Element{Prefix: netip.MustParsePrefix(s), Timeout: time.Hour})
	}
	if err := a.Apply(firewall.Build(config.Firewall{ClosedResponse: "drop", LogRate: 1, LogBurst: 1}, nil), els, nil); err != nil {
		t.Fatal(err)
	}
	got, err := a.Elements(firewall.Bans)
	if err != nil {
		t.Fatal(err)
	}
	var gs []string
	for _, p := range got {
		gs = append(gs, p.String())
	}
	slices.Sort(gs)
	slices.Sort(want)
	if strings.Join(gs, " ") != strings.Join(want, " ") {
		t.Fatalf("read back %v, want %v", gs, want)
	}
	left, err := a.ElementsLeft(firewall.Bans)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range left {
		if e.Timeout <= 59*time.Minute || e.Timeout > time.Hour {
			t.Fatalf("%s has %v left in the kernel, want just under the 1h it was given", e.Prefix, e.Timeout)
		}
	}
	if len(left) != len(want) {
		t.Fatalf("ElementsLeft read %d elements, want %d", len(left), len(want))
	}
	// Overlapping intervals are refused by the kernel: the ban manager must
	// never send one.
	err = a.Update(firewall.Bans, nil, []firewall.Element{{Prefix: netip.MustParsePrefix("10.210.1.128/25")}})
	if err == nil {
		t.Fatal("the kernel accepted an interval inside an existing one; the cover logic rests on it refusing")
	}
	// Hosts are in hash sets, prefixes in interval sets.
	for set, want := range map[string]string{"ban4": "10.210.2.7", "bannet4": "10.210.1.0/24", "ban6": "fd00:210:1::9", "bannet6": "fd00:210::/64"} {
		if out := ns.Run(t, "nft", "list", "set", "inet", "moat", set); !strings.Contains(out, want) {
			t.Errorf("set %s lacks %s:\n%s", set, want, out)
		}
	}
	// A delete of an element the kernel no longer has (it just timed out)
	// must not abort the rest of the change.
	if err := a.Update(firewall.Bans, []firewall.Element{{Prefix: netip.MustParsePrefix("10.210.9.9/32")}},
		[]firewall.Element{{Prefix: netip.MustParsePrefix("10.210.9.10/32")}}); err != nil {
		t.Fatalf("deleting an absent element: %v", err)
	}
}

// TestWatchSeesOthersDeletions: the monitor behind the cheap reconcile
// calls changed when another process deletes a ban element, and not for
// moat's own changes.
func TestWatchSeesOthersDeletions(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommands(t, "nft")
	ns := netnstest.New(t)
	a := firewall.NewApplier(nftables.WithNetNSFd(ns.Fd()))
	els := []firewall.Element{{Prefix: netip.MustParsePrefix("10.210.3.1/32")}, {Prefix: netip.MustParsePrefix("10.210.4.0/24")}}
	if err := a.Apply(firewall.Build(config.Firewall{ClosedResponse: "drop", LogRate: 1, LogBurst: 1}, nil), els, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	changed := make(chan struct{}, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.Watch(ctx, func() { changed <- struct{}{} })
	}()
	defer func() { cancel(); <-done }()
	time.Sleep(200 * time.Millisecond) // joined
	// moat's own changes, and an install, are not news.
	if err := a.Update(firewall.Bans, []firewall.Element{els[0]}, []firewall.Element{{Prefix: netip.MustParsePrefix("10.210.3.2/32")}}); err != nil {
		t.Fatal(err)
	}
	if err := a.Apply(firewall.Build(config.Firewall{ClosedResponse: "drop", LogRate: 1, LogBurst: 1}, nil), els, nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	select {
	case <-changed:
		t.Fatal("moat's own change was taken for another process's")
	default:
	}
	ns.Run(t, "nft", "delete", "element", "inet", "moat", "ban4", "{ 10.210.3.1 }")
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("a deletion by nft was not seen")
	}
}

// BenchmarkApply100kBans installs the table with 100,000 host bans in one
// transaction, as the daemon does at start. Needs root.
func BenchmarkApply100kBans(b *testing.B) {
	netnstest.RequireRoot(b)
	ns := netnstest.New(b)
	a := firewall.NewApplier(nftables.WithNetNSFd(ns.Fd()))
	els := make([]firewall.Element, 0, 100_000)
	for i := range 100_000 {
		addr := netip.AddrFrom4([4]byte{10, 210, byte(i >> 8), byte(i)})
		if i >= 65536 {
			addr = netip.AddrFrom16([16]byte{0xfd, 0, 2, 0x10, 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)})
		}
		els = append(els, firewall.Element{Prefix: netip.PrefixFrom(addr, addr.BitLen()), Timeout: time.Hour})
	}
	rs := firewall.Build(config.Firewall{ClosedResponse: "drop", LogRate: 1, LogBurst: 1}, nil)
	b.ReportAllocs()
	for b.Loop() {
		if err := a.Apply(rs, els, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func TestGrantsRoundTrip(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t)
	a := firewall.NewApplier(nftables.WithNetNSFd(ns.Fd()))
	door := config.Door{Name: "d", Sequence: []config.PortSpec{{Proto: config.TCP, From: 1, To: 1}}, SeqTimeout: time.Second,
		Open: []config.PortSpec{{Proto: config.TCP, From: 22, To: 22}}, OpenFor: time.Minute, StartCommand: []string{"/bin/true"}, MaxPending: 16}
	if err := a.Apply(firewall.Build(config.Firewall{ClosedResponse: "drop", LogRate: 1, LogBurst: 1}, nil, door), nil, nil); err != nil {
		t.Fatal(err)
	}
	g4 := firewall.Grant{Addr: netip.MustParseAddr("10.210.1.2"), Proto: 6, Port: 22, Timeout: time.Minute}
	g6 := firewall.Grant{Addr: netip.MustParseAddr("fd00:210::2"), Proto: 17, Port: 5353, Timeout: time.Hour}
	if err := a.UpdateGrants(nil, []firewall.Grant{g4, g6}); err != nil {
		t.Fatal(err)
	}
	gs, err := a.Grants()
	if err != nil || len(gs) != 2 {
		t.Fatalf("grants %+v %v", gs, err)
	}
	if gs[0].Addr != g4.Addr || gs[0].Port != 22 || gs[0].Proto != 6 || gs[0].Left <= 0 || gs[0].Left > time.Minute ||
		gs[1].Addr != g6.Addr || gs[1].Port != 5353 || gs[1].Proto != 17 {
		t.Fatalf("read back %+v", gs)
	}
	if out := ns.Run(t, "nft", "list", "set", "inet", "moat", "grant4"); !strings.Contains(out, "10.210.1.2 . tcp . 22") {
		t.Fatalf("nft lists:\n%s", out)
	}
	if err := a.UpdateGrants([]firewall.Grant{g4}, nil); err != nil {
		t.Fatal(err)
	}
	if gs, _ := a.Grants(); len(gs) != 1 {
		t.Fatalf("after delete: %+v", gs)
	}
}

// BenchmarkApplyMillionBans installs the table with 1,000,000 bans (half
// IPv4, half IPv6, one in a thousand a prefix) in one transaction, as the
// daemon does at start. Needs root. Run it with -benchtime=1x.
func BenchmarkApplyMillionBans(b *testing.B) {
	netnstest.RequireRoot(b)
	ns := netnstest.New(b)
	a := firewall.NewApplier(nftables.WithNetNSFd(ns.Fd()))
	els := MillionBans()
	rs := firewall.Build(config.Firewall{ClosedResponse: "drop", LogRate: 1, LogBurst: 1}, nil)
	b.ReportAllocs()
	for b.Loop() {
		if err := a.Apply(rs, els, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// MillionBans is 1,000,000 ban elements: 500,000 IPv4 (hosts in 10.0.0.0/9
// and /24s above it) and 500,000 IPv6, one in a thousand a prefix.
func MillionBans() []firewall.Element {
	els := make([]firewall.Element, 0, 1_000_000)
	for i := range 500_000 {
		a4 := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		p4 := netip.PrefixFrom(a4, 32)
		a6 := netip.AddrFrom16([16]byte{0xfd, 0, 2, 0x10, 8: byte(i >> 16), 9: byte(i >> 8), 15: byte(i)})
		p6 := netip.PrefixFrom(a6, 128)
		if i%1000 == 999 {
			p4 = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 128 + byte(i>>16), byte(i >> 8), 0}), 24)
			p6 = netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0, 2, 0x11, 4: byte(i >> 16), 5: byte(i >> 8)}), 48)
		}
		els = append(els, firewall.Element{Prefix: p4, Timeout: time.Hour}, firewall.Element{Prefix: p6, Timeout: 2 * time.Hour})
	}
	return els
}

// BenchmarkUpdateOneBan times one ban's netlink transaction, as the ban
// manager makes it for each guard's ban, with 100,000 bans in the sets.
// Needs root.
func BenchmarkUpdateOneBan(b *testing.B) {
	netnstest.RequireRoot(b)
	ns := netnstest.New(b)
	a := firewall.NewApplier(nftables.WithNetNSFd(ns.Fd()))
	els := MillionBans()[:100_000]
	if err := a.Apply(firewall.Build(config.Firewall{ClosedResponse: "drop", LogRate: 1, LogBurst: 1}, nil), els, nil); err != nil {
		b.Fatal(err)
	}
	add := make([]firewall.Element, 1)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		add[0] = firewall.Element{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 210, byte(i >> 8), byte(i)}), 32), Timeout: time.Hour}
		if err := a.Update(firewall.Bans, nil, add); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadMillionBans reads 1,000,000 ban elements back from the
// kernel, as the reconcile does when the monitor saw a change and a start
// after a kill -9 does. Needs root; run it with -benchtime=1x.
func BenchmarkReadMillionBans(b *testing.B) {
	netnstest.RequireRoot(b)
	ns := netnstest.New(b)
	a := firewall.NewApplier(nftables.WithNetNSFd(ns.Fd()))
	els := MillionBans()
	if err := a.Apply(firewall.Build(config.Firewall{ClosedResponse: "drop", LogRate: 1, LogBurst: 1}, nil), els, nil); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		if err := a.EachElement(firewall.Bans, func(firewall.Element) { n++ }); err != nil {
			b.Fatal(err)
		}
		if n != len(els) {
			b.Fatalf("read %d elements, want %d", n, len(els))
		}
	}
}

// TestMissingFindsWhatTheSetsLack: the lookup by key finds hosts and
// prefixes that are there, and names those that are not.
func TestMissingFindsWhatTheSetsLack(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t)
	a := firewall.NewApplier(nftables.WithNetNSFd(ns.Fd()))
	els := MillionBans()[:3000]
	if err := a.Apply(firewall.Build(config.Firewall{ClosedResponse: "drop", LogRate: 1, LogBurst: 1}, nil), els, nil); err != nil {
		t.Fatal(err)
	}
	ps := make([]netip.Prefix, len(els))
	for i, e := range els {
		ps[i] = e.Prefix
	}
	absent := []netip.Prefix{netip.MustParsePrefix("10.210.9.9/32"), netip.MustParsePrefix("fd00:210:99::/48")}
	missing, err := a.Missing(firewall.Bans, append(ps, absent...))
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(missing, netip.Prefix.Compare)
	if !slices.Equal(missing, absent) {
		t.Fatalf("missing %v, want %v", missing, absent)
	}
}

// TestHostSetsGrowBeforeTheyFill: the host sets are sized from the bans
// they are installed with; bans added after fill them up, Crowded says so
// at three quarters, and an install with the bans sizes them anew. Past
// its size the kernel refuses a ban, which is why.
func TestHostSetsGrowBeforeTheyFill(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t)
	a := firewall.NewApplier(nftables.WithNetNSFd(ns.Fd()))
	rs := firewall.Build(config.Firewall{ClosedResponse: "drop", LogRate: 1, LogBurst: 1}, nil)
	if err := a.Apply(rs, nil, nil); err != nil {
		t.Fatal(err)
	}
	var els []firewall.Element
	for i := range 65536 {
		els = append(els, firewall.Element{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 32), Timeout: time.Hour})
	}
	if err := a.Update(firewall.Bans, nil, els[:50000]); err != nil {
		t.Fatal(err)
	}
	if !a.Crowded() {
		t.Fatal("50,000 hosts in a set of 65,536: not reported crowded")
	}
	if err := a.Update(firewall.Bans, nil, els[50000:]); err != nil {
		t.Fatal(err)
	}
	over := []firewall.Element{{Prefix: netip.MustParsePrefix("10.2.0.1/32")}}
	if err := a.Update(firewall.Bans, nil, over); err == nil {
		t.Fatal("the kernel took a host past the set's size: the sizing is not what bounds it")
	}
	if err := a.Apply(rs, append(els, over...), nil); err != nil {
		t.Fatal(err)
	}
	if a.Crowded() {
		t.Fatal("still crowded after an install sized for the bans")
	}
	if err := a.Update(firewall.Bans, nil, []firewall.Element{{Prefix: netip.MustParsePrefix("10.2.0.2/32")}}); err != nil {
		t.Fatalf("a ban after the bigger install: %v", err)
	}
}

// BenchmarkUpdateOneGrant times one door grant's netlink transaction, as a
// knock or an SPA packet makes it. Needs root.
func BenchmarkUpdateOneGrant(b *testing.B) {
	netnstest.RequireRoot(b)
	ns := netnstest.New(b)
	a := firewall.NewApplier(nftables.WithNetNSFd(ns.Fd()))
	door := config.Door{Name: "d", Sequence: []config.PortSpec{{Proto: config.TCP, From: 7000, To: 7000}, {Proto: config.TCP, From: 8000, To: 8000}},
		SeqTimeout: time.Second, Open: []config.PortSpec{{Proto: config.TCP, From: 2222, To: 2222}}, OpenFor: time.Minute, MaxPending: 16}
	if err := a.Apply(firewall.Build(config.Firewall{ClosedResponse: "drop", LogRate: 1, LogBurst: 1}, nil, door), nil, nil); err != nil {
		b.Fatal(err)
	}
	add := make([]firewall.Grant, 1)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		add[0] = firewall.Grant{Addr: netip.AddrFrom4([4]byte{10, 210, byte(i >> 8), byte(i)}), Proto: 6, Port: 2222, Timeout: time.Minute}
		if err := a.UpdateGrants(nil, add); err != nil {
			b.Fatal(err)
		}
	}
}

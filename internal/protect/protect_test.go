package protect

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

var (
	mp = netip.MustParsePrefix
	ma = netip.MustParseAddr
)

func TestSetCoversAndOverlaps(t *testing.T) {
	s := New(LinkLocal, []Entry{
		Host(ma("10.210.0.1"), WhyRouter),
		Host(ma("::ffff:10.210.0.2"), WhySession), // a dual-stack socket's IPv4 client
		Host(ma("fd00:210::5"), WhyHost),
		Host(ma("10.210.0.1"), WhyOutgoing), // the first reason stays
	})
	for _, c := range []struct {
		a   string
		why string
	}{
		{"10.210.0.1", WhyRouter},
		{"10.210.0.2", WhySession},
		{"fd00:210::5", WhyHost},
		{"fe80::1", WhyLinkLocal},
		{"169.254.3.4", WhyLinkLocal},
		{"10.210.0.3", ""},
		{"::ffff:10.210.0.1", ""}, // a wire address is never unmapped into the other family
	} {
		why, ok := s.Covers(ma(c.a))
		if why != c.why || ok != (c.why != "") {
			t.Errorf("Covers(%s) = %q, %v; want %q", c.a, why, ok, c.why)
		}
	}
	for _, c := range []struct {
		p    string
		want string // the protected prefix reported, "" for none
	}{
		{"10.210.0.1/32", "10.210.0.1/32"},
		{"10.210.0.0/24", "10.210.0.1/32"},   // a wide ban over a protected host
		{"fd00:210::/64", "fd00:210::5/128"}, // the IPv6 /64 escalation
		{"fe80::/64", "fe80::/10"},
		{"fe00::/7", "fe80::/10"}, // wider than a protected prefix
		{"10.210.1.0/24", ""},
		{"fd00:211::/64", ""},
	} {
		e, ok := s.Overlaps(mp(c.p))
		got := ""
		if ok {
			got = e.Prefix.String()
		}
		if got != c.want {
			t.Errorf("Overlaps(%s) = %q; want %q", c.p, got, c.want)
		}
	}
	var nilSet *Set
	if _, ok := nilSet.Covers(ma("10.210.0.1")); ok {
		t.Error("a nil set protects nothing")
	}
	if got := len(s.Entries()); got != s.Len() || got != 5 {
		t.Errorf("Entries: %d, Len %d; want 5", got, s.Len())
	}
}

func TestSetIsBounded(t *testing.T) {
	var es []Entry
	for i := range maxHosts + 10 {
		es = append(es, Host(netip.AddrFrom4([4]byte{10, 210, byte(i >> 8), byte(i)}), WhyOutgoing))
	}
	es = append(es, Host(ma("fd00:210::1"), WhyOutgoing))
	if n := New(es).Len(); n != maxHosts {
		t.Fatalf("len %d, want %d", n, maxHosts)
	}
}

const (
	route4 = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" +
		"eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n" +
		"eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n" +
		"eth1\t0000D20A\tFE00D20A\t0003\t0\t0\t0\t0000FFFF\t0\t0\t0\n"
	route6 = "fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n" +
		"00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe8000000000000000000000000000fe 00000400 00000002 00000000 00000003     eth0\n" +
		"00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000002 00000000 00000003     eth0\n"
	resolv = "# comment\nsearch example.org\nnameserver 127.0.0.53\nnameserver 10.255.255.53\nnameserver fe80::1%eth0\nnameserver bogus\noptions edns0\n"
	tcp4   = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
		"   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 101 1 0 100 0 0 10 0\n" +
		"   1: 0100D20A:0016 0200D20A:D431 01 00000000:00000000 02:0000001B 00000000     0        0 6551 2 0 20 4 0 150 -1\n" + // incoming to sshd
		"   2: 0100D20A:E944 507100CB:01BB 01 00000000:00000000 02:0000001B 00000000     0        0 6552 2 0 20 4 0 150 -1\n" + // outgoing to 203.0.113.80:443
		"   3: 0100D20A:E945 517100CB:01BB 06 00000000:00000000 02:0000001B 00000000     0        0 0 2 0 20 4 0 150 -1\n" + // TIME_WAIT: gone
		"   4: 0100D20A:E946 527100CB:0050 02 00000000:00000000 02:0000001B 00000000     0        0 6553 2 0 20 4 0 150 -1\n" // SYN_SENT
	tcp6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
		"   0: 0000000000000000FFFF00000100D20A:E947 0000000000000000FFFF0000537100CB:01BB 01 00000000:00000000 00:00000000 00000000     0        0 7 1 0 100 0 0 10 0\n"
	udp4 = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n" +
		"  1: 0100D20A:A1B2 35FFFF0A:0035 01 00000000:00000000 00:00000000 00000000     0        0 9 2 0 0\n" +
		"  2: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 10 2 0 0\n"
)

func TestParsers(t *testing.T) {
	if got, want := ParseRoute4([]byte(route4)), []netip.Addr{ma("192.0.2.1"), ma("10.210.0.254")}; !slices.Equal(got, want) {
		t.Errorf("ParseRoute4 = %v, want %v", got, want)
	}
	if got, want := ParseRoute6([]byte(route6)), []netip.Addr{ma("fe80::fe"), ma("fd00::1")}; !slices.Equal(got, want) {
		t.Errorf("ParseRoute6 = %v, want %v", got, want)
	}
	if got, want := ParseResolvConf([]byte(resolv)), []netip.Addr{ma("10.255.255.53"), ma("fe80::1")}; !slices.Equal(got, want) {
		t.Errorf("ParseResolvConf = %v, want %v", got, want)
	}
	var s Sockets
	s.Parse([]byte(tcp4))
	s.Parse([]byte(tcp6))
	if got, want := s.Outgoing(), []netip.Addr{ma("203.0.113.80"), ma("203.0.113.82"), ma("203.0.113.83")}; !slices.Equal(got, want) {
		t.Errorf("Outgoing = %v, want %v", got, want)
	}
	var u Sockets
	u.Parse([]byte(udp4))
	if got, want := u.Connected(), []netip.Addr{ma("10.255.255.53")}; !slices.Equal(got, want) {
		t.Errorf("Connected = %v, want %v", got, want)
	}
}

func TestDiscoverFakeTree(t *testing.T) {
	root := t.TempDir()
	for rel, text := range map[string]string{
		"proc/net/route": route4, "proc/net/ipv6_route": route6, "etc/resolv.conf": resolv,
		"run/systemd/resolve/resolv.conf": "nameserver 10.210.9.9\n",
		"proc/net/tcp":                    tcp4, "proc/net/udp": udp4,
	} {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f := Discover(System{Root: root, HostAddrs: func() ([]netip.Addr, error) { return []netip.Addr{ma("10.210.0.1")}, nil }})
	if len(f.Errors) != 0 {
		t.Fatalf("errors: %v", f.Errors)
	}
	s := New(LinkLocal, f.Entries())
	for a, why := range map[string]string{
		"10.210.0.254": WhyRouter, "fe80::fe": WhyRouter, "10.255.255.53": WhyResolver,
		"10.210.9.9": WhyResolver, "10.210.0.1": WhyHost, "203.0.113.80": WhyOutgoing,
	} {
		if got, _ := s.Covers(ma(a)); got != why {
			t.Errorf("%s: %q, want %q", a, got, why)
		}
	}
	if _, ok := s.Covers(ma("10.210.0.2")); ok {
		t.Error("an incoming client of sshd is not an outgoing peer")
	}
}

func FuzzParsers(f *testing.F) {
	for _, s := range []string{route4, route6, resolv, tcp4, tcp6, udp4} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, a := range append(append(ParseRoute4(data), ParseRoute6(data)...), ParseResolvConf(data)...) {
			if !a.IsValid() || a.Zone() != "" {
				t.Fatalf("bad address %v", a)
			}
		}
		var s Sockets
		s.Parse(data)
		for _, a := range append(s.Outgoing(), s.Connected()...) {
			if !a.IsValid() || a.IsUnspecified() || a.IsLoopback() || a.Is4In6() {
				t.Fatalf("bad peer %v", a)
			}
		}
	})
}

// benchSet is a busy host's snapshot: a few hundred outgoing peers and
// sessions beside the routers, resolvers and link-local prefixes.
func benchSet() *Set {
	var es []Entry
	for i := range 1000 {
		es = append(es, Host(netip.AddrFrom4([4]byte{10, 210, byte(i >> 8), byte(i)}), WhyOutgoing))
		es = append(es, Host(netip.AddrFrom16([16]byte{0xfd, 0, 2, 0x10, 15: byte(i)}), WhySession))
	}
	return New(LinkLocal, es)
}

// The guards ask on every ban and every scored packet: it must not allocate.
func BenchmarkCovers(b *testing.B) {
	s := benchSet()
	a := ma("203.0.113.9")
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := s.Covers(a); ok {
			b.Fatal("covered")
		}
	}
}

func BenchmarkOverlaps64(b *testing.B) {
	s := benchSet()
	p := mp("2001:db8:1:2::/64")
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := s.Overlaps(p); ok {
			b.Fatal("covered")
		}
	}
}

func TestCoversDoesNotAllocate(t *testing.T) {
	s := benchSet()
	a := ma("203.0.113.9")
	if n := testing.AllocsPerRun(100, func() { s.Covers(a) }); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

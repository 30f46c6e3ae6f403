package portscan

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/moat-fw/moat/internal/packet"
)

// mix is a minute of what an exposed host logs, in proportions seen on
// the internet, in a fixed order: SYN scanners working through the ports,
// stealth scans, UDP scans, ping sweeps, stray clients and forgotten
// connections (unscored), and forged one-packet sources (every one new:
// the loop rewrites their address).
type mix struct {
	pkts     []packet.Packet
	prefixes [][]byte
	spoofed  []bool
}

func newMix(n int) *mix {
	rng := rand.New(rand.NewPCG(1, 2))
	m := &mix{}
	host := netip.MustParseAddr("203.0.113.1")
	hosts := []netip.Addr{host, netip.MustParseAddr("203.0.113.2"), netip.MustParseAddr("2001:db8::1")}
	scanner := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}) }
	for i := range n {
		var p packet.Packet
		spoofed := false
		switch r := rng.IntN(100); {
		case r < 35: // 20 SYN scanners, in port order
			p = nmapSYN(scanner(i%20).String(), host.String(), uint16(i/20))
		case r < 45: // stealth scans: FIN, XMAS, NULL, ACK, Maimon
			s := rng.IntN(5)
			flags := [...]packet.Flags{packet.FIN, packet.FIN | packet.PSH | packet.URG, 0, packet.ACK, packet.FIN | packet.ACK}[s]
			p = withFlags(nmapSYN(scanner(20+s).String(), host.String(), uint16(rng.IntN(1024))), flags)
		case r < 50: // UDP scans
			p = udp(scanner(30+rng.IntN(3)).String(), host.String(), 40000, uint16(rng.IntN(65536)))
		case r < 53: // ping sweeps
			p = echo(scanner(40).String(), hosts[rng.IntN(2)].String())
		case r < 63: // forgotten connections, backscatter: unscored
			p = withFlags(clientSYN(netip.AddrFrom4([4]byte{192, 0, 2, byte(rng.IntN(256))}).String(), host.String(), 50000, 443), packet.PSH|packet.ACK)
			p.PayloadLen = 100
		case r < 65: // stray clients
			p = clientSYN(netip.AddrFrom4([4]byte{192, 0, 2, byte(rng.IntN(256))}).String(), host.String(), 50000, 443)
		default: // forged sources, one packet each
			p = nmapSYN("10.0.0.1", host.String(), uint16(rng.IntN(65536)))
			spoofed = true
		}
		m.pkts = append(m.pkts, p)
		m.spoofed = append(m.spoofed, spoofed)
		m.prefixes = append(m.prefixes, []byte(prefixFor(&p)))
	}
	return m
}

// BenchmarkObserve feeds the mix at one packet per microsecond (a million
// packets per second of simulated time) into a detector of the default size.
func BenchmarkObserve(b *testing.B) {
	m := newMix(1 << 16)
	d := New(Config{})
	now := t0
	var forged uint32
	var p packet.Packet
	// A daemon that has run a while: the table full.
	for i := range uint32(DefaultMaxSources) {
		p = nmapSYN("10.0.0.1", "203.0.113.1", uint16(i))
		p.Src = netip.AddrFrom4([4]byte{172, byte(i >> 16), byte(i >> 8), byte(i)})
		d.Observe(&p, m.prefixes[0], now)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		k := i & (len(m.pkts) - 1)
		p = m.pkts[k]
		if m.spoofed[k] {
			forged++
			p.Src = netip.AddrFrom4([4]byte{10, byte(forged >> 16), byte(forged >> 8), byte(forged)})
		}
		now = now.Add(time.Microsecond)
		d.Observe(&p, m.prefixes[k], now)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "packets/s")
}

// BenchmarkObserveForged is the worst case: every packet from a new
// source, the table full, each one evicting the least recently seen.
func BenchmarkObserveForged(b *testing.B) {
	d := New(Config{})
	p := nmapSYN("10.0.0.1", "203.0.113.1", 80)
	prefix := []byte("moat:closed")
	fill := func(i uint32) {
		p.Src = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		p.DstPort = uint16(i)
		d.Observe(&p, prefix, t0)
	}
	for i := range uint32(DefaultMaxSources) {
		fill(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		fill(uint32(DefaultMaxSources + i))
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "packets/s")
}

// BenchmarkMemory feeds a million distinct sources (IPv6, the larger keys)
// to a detector of the default size, and reports the heap it holds then.
func BenchmarkMemory(b *testing.B) {
	for range b.N {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		d := New(Config{})
		var p packet.Packet
		var src [16]byte
		src[0] = 0x20
		for i := range uint32(1_000_000) {
			p = nmapSYN("2001:db8::1", "2001:db8::2", uint16(i))
			binary.BigEndian.PutUint32(src[12:], i)
			p.Src = netip.AddrFrom16(src)
			d.Observe(&p, nil, t0.Add(time.Duration(i)*time.Microsecond))
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		heap := float64(after.HeapAlloc - before.HeapAlloc)
		b.ReportMetric(heap/(1<<20), "heap-MB")
		b.ReportMetric(heap/float64(d.Len()), "bytes/source")
		b.ReportMetric(float64(unsafe.Sizeof(source{})), "slot-bytes")
		b.ReportMetric(float64(d.Len()), "sources")
		runtime.KeepAlive(d)
	}
}

// TestMemoryBounded checks a flood of forged sources costs no more than
// MaxSources slots.
func TestMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const max = 20_000
	d := New(Config{MaxSources: max})
	var p packet.Packet
	for i := range uint32(300_000) {
		p = nmapSYN("10.0.0.1", "203.0.113.1", uint16(i))
		p.Src = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		d.Observe(&p, nil, t0)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if d.Len() != max {
		t.Errorf("%d sources, want %d", d.Len(), max)
	}
	// Slots and index, less the TCP port counters (256 KiB and their bitmap).
	perSource := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)-int64(unsafe.Sizeof([1 << 16]uint32{})+unsafe.Sizeof([1 << 10]uint64{}))) / max
	t.Logf("%.0f bytes per source (slot %d)", perSource, unsafe.Sizeof(source{}))
	if perSource > 400 {
		t.Errorf("%.0f bytes per source, want under 400", perSource)
	}
	runtime.KeepAlive(d)
}

package knock

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/config"
)

var t0 = time.Unix(1_700_000_000, 0)

func tcp(p uint16) config.PortSpec { return config.PortSpec{Proto: config.TCP, From: p, To: p} }
func udp(p uint16) config.PortSpec { return config.PortSpec{Proto: config.UDP, From: p, To: p} }

const syn = 0x02

func testDoor(seq ...config.PortSpec) *Door {
	return NewDoor(config.Door{Name: "t", Sequence: seq, SeqTimeout: 5 * time.Second,
		TCPFlags: config.TCPFlags{Set: syn, Clear: 0x10}, MaxPending: 1000,
		CloseSequence: []config.PortSpec{udp(9100), udp(9200)}})
}

func TestDoorSemantics(t *testing.T) {
	a := netip.MustParseAddr("10.210.0.2")
	type pkt struct {
		proto config.Proto
		port  uint16
		flags uint8
		after time.Duration
		want  Result
	}
	for name, pkts := range map[string][]pkt{
		"in order":          {{config.TCP, 7000, syn, 0, Advanced}, {config.TCP, 7100, syn, 0, Advanced}, {config.UDP, 7200, 0, 0, Completed}},
		"repeat tolerated":  {{config.TCP, 7000, syn, 0, Advanced}, {config.TCP, 7000, syn, 0, Repeated}, {config.TCP, 7100, syn, 0, Advanced}, {config.UDP, 7200, 0, 0, Completed}},
		"other port resets": {{config.TCP, 7000, syn, 0, Advanced}, {config.TCP, 7050, syn, 0, Reset}, {config.TCP, 7100, syn, 0, Ignored}},
		// As in knockd, the packet that ends a sequence does not start one.
		"restart on first": {{config.TCP, 7000, syn, 0, Advanced}, {config.TCP, 7100, syn, 0, Advanced}, {config.TCP, 7000, syn, 0, Reset}, {config.TCP, 7000, syn, 0, Advanced}, {config.TCP, 7100, syn, 0, Advanced}, {config.UDP, 7200, 0, 0, Completed}},
		"wrong flags":      {{config.TCP, 7000, syn | 0x10, 0, Ignored}, {config.TCP, 7000, syn, 0, Advanced}, {config.TCP, 7100, 0x10, 0, Ignored}, {config.TCP, 7100, syn, 0, Advanced}},
		"too slow":         {{config.TCP, 7000, syn, 0, Advanced}, {config.TCP, 7100, syn, 3 * time.Second, Advanced}, {config.UDP, 7200, 0, 3 * time.Second, Ignored}},
		"udp vs tcp":       {{config.TCP, 7000, syn, 0, Advanced}, {config.TCP, 7100, syn, 0, Advanced}, {config.TCP, 7200, syn, 0, Reset}},
		"close":            {{config.UDP, 9100, 0, 0, Advanced}, {config.UDP, 9200, 0, 0, Closed}},
	} {
		d := testDoor(tcp(7000), tcp(7100), udp(7200))
		now := t0
		for i, p := range pkts {
			now = now.Add(p.after)
			if got := d.Observe(a, p.proto, p.port, p.flags, now); got != p.want {
				t.Errorf("%s: packet %d (%v/%d): got %v, want %v", name, i, p.proto, p.port, got, p.want)
			}
		}
	}
}

// No sweep of every port, in order, backwards or shuffled, ever completes
// a sequence, ascending or descending.
func TestDoorSweepsNeverComplete(t *testing.T) {
	a := netip.MustParseAddr("10.210.0.2")
	for _, seq := range [][]config.PortSpec{{tcp(7000), tcp(7100), tcp(7200)}, {tcp(7300), tcp(7250), tcp(7150)}, {tcp(1), tcp(3)}, {tcp(65535), tcp(65533)}} {
		ports := make([]uint16, 65535)
		for i := range ports {
			ports[i] = uint16(i + 1)
		}
		orders := map[string][]uint16{"ascending": ports}
		desc := make([]uint16, len(ports))
		for i := range ports {
			desc[i] = ports[len(ports)-1-i]
		}
		orders["descending"] = desc
		r := rand.New(rand.NewPCG(1, 2))
		for i := range 20 {
			sh := append([]uint16(nil), ports...)
			r.Shuffle(len(sh), func(i, j int) { sh[i], sh[j] = sh[j], sh[i] })
			orders["random"+string(rune('a'+i))] = sh
		}
		for name, order := range orders {
			d := testDoor(seq...)
			for _, p := range order {
				if d.Observe(a, config.TCP, p, syn, t0) == Completed {
					t.Fatalf("sequence %v: a %s sweep completed it", seq, name)
				}
			}
		}
	}
}

// A flood of spoofed sources at the first knock cannot stop a real knock.
func TestDoorFloodDoesNotStopAKnock(t *testing.T) {
	d := NewDoor(config.Door{Name: "t", Sequence: []config.PortSpec{tcp(7000), tcp(7100), udp(7200)},
		SeqTimeout: 5 * time.Second, TCPFlags: config.TCPFlags{Set: syn}, MaxPending: 4096})
	r := rand.New(rand.NewPCG(3, 4))
	real := netip.MustParseAddr("10.210.0.2")
	flood := func(n int) {
		for range n {
			src := netip.AddrFrom4([4]byte{byte(r.IntN(223) + 1), byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))})
			d.Observe(src, config.TCP, 7000, syn, t0)
		}
	}
	opened := 0
	for range 20 {
		flood(1000)
		d.Observe(real, config.TCP, 7000, syn, t0)
		flood(100) // packets of the flood arriving between two knocks
		d.Observe(real, config.TCP, 7100, syn, t0)
		flood(100)
		if d.Observe(real, config.UDP, 7200, 0, t0) == Completed {
			opened++
		}
	}
	if opened != 20 {
		t.Fatalf("%d of 20 knocks opened under the flood", opened)
	}
	if d.Pending() > 4096 {
		t.Fatalf("the flood grew the table to %d", d.Pending())
	}
}

func BenchmarkDoorObserve(b *testing.B) {
	d := testDoor(tcp(7000), tcp(7100), udp(7200))
	srcs := make([]netip.Addr, 1<<16)
	for i := range srcs {
		srcs[i] = netip.AddrFrom4([4]byte{10, 210, byte(i >> 8), byte(i)})
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		d.Observe(srcs[i&(len(srcs)-1)], config.TCP, 7000, syn, t0)
		i++
	}
}

// Debian's stock knockd.conf: open 7000,8000,9000, close the reverse. The
// close sequence starts on the open sequence's last port; knocked 4.5 s
// after opening (seq_timeout 5 s) it must still close, which it cannot if
// the open's last knock already started it.
func TestDebianStockPair(t *testing.T) {
	a := netip.MustParseAddr("10.210.0.2")
	d := NewDoor(config.Door{Name: "ssh", Sequence: []config.PortSpec{tcp(7000), tcp(8000), tcp(9000)},
		CloseSequence: []config.PortSpec{tcp(9000), tcp(8000), tcp(7000)}, SeqTimeout: 5 * time.Second,
		TCPFlags: config.TCPFlags{Set: syn}, MaxPending: 100})
	now := t0
	knock := func(gap time.Duration, ports ...uint16) (last Result) {
		now = now.Add(gap)
		for _, p := range ports {
			now = now.Add(10 * time.Millisecond)
			last = d.Observe(a, config.TCP, p, syn, now)
		}
		return last
	}
	for i, step := range []struct {
		gap   time.Duration
		ports []uint16
		want  Result
	}{
		{0, []uint16{7000, 8000, 9000}, Completed},
		{4500 * time.Millisecond, []uint16{9000, 8000, 7000}, Closed},
		{time.Second, []uint16{7000, 8000, 9000}, Completed},
		{100 * time.Millisecond, []uint16{9000, 8000, 7000}, Closed},
		{0, []uint16{7000, 8000, 9000}, Completed},
	} {
		if got := knock(step.gap, step.ports...); got != step.want {
			t.Fatalf("step %d %v: got %v, want %v", i, step.ports, got, step.want)
		}
	}
}

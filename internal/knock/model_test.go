package knock_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/knock"
	"github.com/moat-fw/moat/internal/knock/knocktest"
)

// The reference model of knockd is in package knocktest, shared with the
// kernel doors' replay in package firewall.

func tcp(p uint16) config.PortSpec { return config.PortSpec{Proto: config.TCP, From: p, To: p} }

const syn = 0x02

// The model itself, on the cases its source makes plain.
func TestKnockdModel(t *testing.T) {
	a := netip.MustParseAddr("10.210.0.2")
	debian := []config.Door{{Name: "ssh", Sequence: []config.PortSpec{tcp(7000), tcp(8000), tcp(9000)},
		CloseSequence: []config.PortSpec{tcp(9000), tcp(8000), tcp(7000)}, SeqTimeout: 5 * time.Second, TCPFlags: config.TCPFlags{Set: syn}}}
	for _, moat := range []bool{false, true} {
		m := knocktest.NewModel(moat, debian)
		now := knocktest.T0
		knockAt := func(ports ...uint16) (last knock.Result) {
			for _, p := range ports {
				now = now.Add(100 * time.Millisecond)
				last = m.Sniff(a, config.TCP, p, syn, now, 1)[0]
			}
			return last
		}
		if r := knockAt(7000, 8000, 9000); r != knock.Completed {
			t.Fatalf("moat=%v: open: %v", moat, r)
		}
		if r := knockAt(9000, 8000, 7000); r != knock.Closed {
			t.Fatalf("moat=%v: close: %v", moat, r)
		}
		if r := knockAt(7000, 8000, 9000); r != knock.Completed {
			t.Fatalf("moat=%v: open again: %v", moat, r)
		}
		// The packet that fails an attempt starts nothing, not even at
		// the first knock: 7000 8000 7000 8000 9000 does not open.
		if r := knockAt(7000, 8000, 7000, 8000, 9000); r == knock.Completed {
			t.Fatalf("moat=%v: a failing packet started a sequence", moat)
		}
		// An ascending sweep: knockd sees only the knock ports and opens.
		now = now.Add(time.Minute)
		opened := false
		for p := uint16(6990); p < 9010; p++ {
			now = now.Add(time.Millisecond)
			opened = opened || m.Sniff(a, config.TCP, p, syn, now, 1)[0] == knock.Completed
		}
		if opened == moat {
			t.Fatalf("moat=%v: an ascending sweep opened=%v", moat, opened)
		}
	}
}

// TestDoorsEqualKnockdModel is the property: for random door configs
// within config validation's rules and random knock streams from several
// sources (correct knocks, close knocks, sweeps, stray packets, wrong
// flags, pauses past seq_timeout, all interleaved), moat's daemon-mode
// verifier decides exactly what the model decides, packet by packet.
func TestDoorsEqualKnockdModel(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 6))
	n := 3000
	if testing.Short() {
		n = 300
	}
	for i := range n {
		doors := knocktest.RandomDoors(r)
		stream := knocktest.RandomStream(r, doors, 80)
		checkAgainstModel(t, fmt.Sprintf("case %d", i), doors, stream)
	}
}

func checkAgainstModel(t *testing.T, name string, doors []config.Door, stream []knocktest.Packet) {
	t.Helper()
	vs := make([]*knock.Door, len(doors))
	for i, d := range doors {
		vs[i] = knock.NewDoor(d)
	}
	g := knock.NewGroup(vs...)
	m := knocktest.NewModel(true, doors)
	for j, p := range stream {
		got := g.Observe(p.Src, p.Proto, p.Port, p.Flags, p.At)
		want := m.Sniff(p.Src, p.Proto, p.Port, p.Flags, p.At, len(doors))
		if !slices.Equal(got, want) {
			t.Fatalf("%s: doors %v\npacket %d (%v): moat %v, model %v\nstream:\n%s", name, knocktest.Describe(doors), j, p, got, want, formatStream(stream[:j+1]))
		}
	}
}

func formatStream(ps []knocktest.Packet) string {
	s := ""
	for _, p := range ps {
		s += fmt.Sprintf("  %v\n", p)
	}
	return s
}

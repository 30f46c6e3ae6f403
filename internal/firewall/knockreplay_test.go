package firewall_test

import (
	"fmt"
	"github.com/moat-fw/moat/internal/knock/knocktest"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/knock"
	"github.com/moat-fw/moat/internal/netnstest"
)

// The kernel's side of issue 11's property: internal/knock proves that the
// daemon verifier decides what a reference model of knockd decides
// (TestDoorsEqualKnockdModel); this test replays the same kind of random
// door sets and knock streams as real packets through the kernel rules
// (knockseq.go) and checks that the kernel's grant sets say, after every
// moment of the stream, what the model and the daemon verifier say.
//
// Timing: the generated stream is cut into ticks of replayTick real time
// (replayGenTick of the generator's time each), every packet is sent at its
// tick, and every seq_timeout is a whole number of ticks less half a tick.
// A source's knocks are a whole number of ticks apart, so the kernel's
// clock can only disagree with the model when a send is late by half a
// tick; sends later than replaySlack are not trusted and the stream is
// replayed again.
const (
	// 200 ms: CI runs this beside other packages' tests under -race, and
	// sends there ran up to 150 ms late at 100 ms ticks.
	replayTick    = 200 * time.Millisecond
	replayGenTick = 250 * time.Millisecond
	replaySlack   = replayTick/2 - 15*time.Millisecond // less a few jiffies at HZ=100
	replayTries   = 6                                  // sends of a stream late this often: the machine is too busy
	replayStreams = 48
	replayWorkers = 12 // streams at a time
	replayPackets = 40
	grantPortBase = 3000 // door i opens tcp/grantPortBase+i
)

// replayCase is one door set and one stream, in the generator's time.
type replayCase struct {
	doors  []config.Door
	stream []knocktest.Packet
	reject bool
}

// TestKernelDoorsEqualKnockdModel replays 48 random door sets and streams
// (seeded: a failure names its stream and prints it) and a few edge cases,
// in both closed_response modes, and fails at the first tick where the
// kernel's grants differ from the model's openings and closings.
func TestKernelDoorsEqualKnockdModel(t *testing.T) {
	netnstest.RequireRoot(t)
	r := rand.New(rand.NewPCG(11, 7))
	cases := make([]replayCase, replayStreams)
	for i := range cases {
		doors := knocktest.RandomDoors(r)
		cases[i] = replayCase{doors: doors, stream: knocktest.RandomStream(r, doors, replayPackets), reject: r.IntN(2) == 0}
	}
	cases = append(cases, edgeCases()...)
	// The streams run side by side, each in a namespace pair of its own,
	// driven by this goroutine alone: an event loop rather than parallel
	// subtests, which -parallel (GOMAXPROCS) would serialize, and rather
	// than goroutines, which must not call t.Fatal.
	runs := make([]*replayRun, replayWorkers)
	for w := range runs {
		runs[w] = &replayRun{rp: newReplayer(t)}
		for i := w; i < len(cases); i += replayWorkers {
			runs[w].queue = append(runs[w].queue, i)
		}
	}
	for {
		var next *replayRun
		for _, run := range runs {
			if len(run.queue) > 0 && (next == nil || run.due.Before(next.due)) {
				next = run
			}
		}
		if next == nil {
			break
		}
		time.Sleep(time.Until(next.due))
		next.step(t, cases)
	}
	var sum replayStats
	for _, run := range runs {
		sum.retries += run.stats.retries
		for r, n := range run.stats.results {
			sum.results[r] += n
		}
	}
	t.Logf("%d streams replayed (%d again for a late send): the model decided %d openings, %d closings, %d resets, %d repeats",
		len(cases), sum.retries, sum.results[knock.Completed], sum.results[knock.Closed], sum.results[knock.Reset], sum.results[knock.Repeated])
}

// replayRun is one namespace pair's way through its cases: begin a case
// (install its doors), then for each tick send its packets and, half a
// tick later, compare the grants with the model.
type replayRun struct {
	rp    *replayer
	queue []int // cases still to replay, the current one first
	due   time.Time
	stats replayStats

	// the current case
	attempt       int
	doors         []config.Door
	ticks         []tickPackets
	reject        bool
	k             int // the tick being replayed; -1 before the case begins
	sending       bool
	start         time.Time
	invalidBefore uint64
	sent          []knocktest.Packet
}

func (run *replayRun) step(t *testing.T, cases []replayCase) {
	rp := run.rp
	i := run.queue[0]
	c := cases[i]
	name := fmt.Sprintf("stream %d", i)
	switch {
	case run.ticks == nil: // begin
		run.doors = kernelDoors(c.doors)
		run.ticks = rp.expect(t, name, run.doors, c.stream, &run.stats)
		run.reject = c.reject
		run.restart(t)
	case run.sending:
		tp := run.ticks[run.k]
		if late := time.Since(run.due); late > replaySlack {
			if run.attempt++; run.attempt == replayTries {
				t.Fatalf("%s: sends late by %v, %d times: the machine is too busy to time knocks", name, late, replayTries)
			}
			run.stats.retries++
			t.Logf("%s: a send was %v late, replaying", name, late)
			run.restart(t)
			return
		}
		rp.send(t, tp.pkts)
		run.sent = append(run.sent, tp.pkts...)
		// Read half a tick later, when the packets have long been judged
		// and the next tick's are not yet sent.
		run.sending = false
		run.due = run.due.Add(replayTick / 2)
	default:
		tp := run.ticks[run.k]
		if got := rp.kernelOpen(t); !equalOpen(got, tp.open) {
			t.Fatalf("%s: closed_response reject=%v, doors %s\nafter tick %d the kernel has open %v, the model and the verifier %v\nstream (tick: packet):\n%s",
				name, run.reject, knocktest.Describe(run.doors), tp.tick, got, tp.open, formatTicks(run.ticks, tp.tick))
		}
		if run.k++; run.k < len(run.ticks) {
			run.sending = true
			run.due = run.start.Add(time.Duration(run.ticks[run.k].tick) * replayTick)
			return
		}
		wantInvalid := 0
		for _, p := range run.sent {
			if !reachesKnockChain(p) {
				wantInvalid++
			}
		}
		if got := rp.counter(t, firewall.CounterInvalid) - run.invalidBefore; got != uint64(wantInvalid) {
			t.Fatalf("%s: %d packets counted invalid, want the %d SYN-ACKs the model was not shown", name, got, wantInvalid)
		}
		*run = replayRun{rp: rp, queue: run.queue[1:], due: time.Now(), stats: run.stats}
	}
}

// restart installs the case's doors (which empties every set) and starts
// the clock, a little ahead so that the first send is not already late.
func (run *replayRun) restart(t *testing.T) {
	fw := config.Firewall{ClosedResponse: "drop", LogGroup: 7, LogRate: 1, LogBurst: 1, Forward: "untouched"}
	if run.reject {
		fw.ClosedResponse = "reject"
	}
	if err := run.rp.applier.Apply(firewall.Build(fw, nil, run.doors...), nil, nil); err != nil {
		t.Fatal(err)
	}
	run.invalidBefore = run.rp.counter(t, firewall.CounterInvalid)
	run.sent = nil
	run.k, run.sending = 0, true
	run.start = time.Now().Add(replayTick)
	run.due = run.start.Add(time.Duration(run.ticks[0].tick) * replayTick)
}

// edgeCases are streams the generator seldom makes, on Debian's stock door
// (7000,8000,9000 closed by 9000,8000,7000, seq_timeout 1 s: 4 ticks).
func edgeCases() []replayCase {
	tcp := func(p uint16) config.PortSpec { return config.PortSpec{Proto: config.TCP, From: p, To: p} }
	debian := []config.Door{{Name: "d0", Sequence: []config.PortSpec{tcp(7000), tcp(8000), tcp(9000)},
		CloseSequence: []config.PortSpec{tcp(9000), tcp(8000), tcp(7000)}, SeqTimeout: time.Second,
		TCPFlags: config.TCPFlags{Set: 0x02}, MaxPending: 1000}}
	knocks := func(src netip.Addr, ms ...int) func(ports ...uint16) []knocktest.Packet {
		return func(ports ...uint16) []knocktest.Packet {
			var out []knocktest.Packet
			for i, p := range ports {
				out = append(out, knocktest.Packet{Src: src, Proto: config.TCP, Port: p, Flags: 0x02, At: knocktest.T0.Add(time.Duration(ms[i]) * time.Millisecond)})
			}
			return out
		}
	}
	return []replayCase{
		// Open, close with the reverse, open again.
		{doors: debian, stream: knocks(knocktest.Sources[2], 0, 250, 500, 750, 1000, 1250, 1500, 1750, 2000)(7000, 8000, 9000, 9000, 8000, 7000, 7000, 8000, 9000)},
		// A sequence left in stage 2 when its clock runs out (tick 3.5),
		// started again while that stage is still alive (until tick 4.5):
		// the old stage must not judge the retransmitted first knock (and
		// fail the new attempt), so the door opens.
		{doors: debian, stream: knocks(knocktest.Sources[0], 0, 250, 1000, 1001, 1002, 1003)(7000, 8000, 7000, 7000, 8000, 9000), reject: true},
	}
}

// replayer is one server namespace (the firewall) and one client namespace
// (the knockers) on a veth.
type replayer struct {
	server, client *netnstest.NS
	link           *netnstest.Link
	applier        *firewall.Applier
	srcs           map[netip.Addr]netip.Addr // generator's source -> client address
	n              uint16                    // packets sent, for ports and ids
}

func newReplayer(t *testing.T) *replayer {
	server, client := netnstest.New(t), netnstest.New(t)
	link := netnstest.Connect(t, server, client)
	// A second IPv4 knocker on the client's interface: the generator's
	// sources are two IPv4 addresses and one IPv6 address.
	client.AddAddr(t, link.BIf, netip.PrefixFrom(link.Host4(3), 24))
	return &replayer{server: server, client: client, link: link,
		applier: firewall.NewApplier(nftables.WithNetNSFd(server.Fd())),
		srcs:    map[netip.Addr]netip.Addr{knocktest.Sources[0]: link.B4, knocktest.Sources[1]: link.Host4(3), knocktest.Sources[2]: link.B6}}
}

// replayStats says how much the streams exercised the doors.
type replayStats struct {
	retries int
	results [knock.Closed + 1]int // per door per packet, as the model decided
}

// tickPackets is what one tick sends, and what the model and the verifier
// say is open (source -> door indexes) once it has been sent.
type tickPackets struct {
	tick int
	pkts []knocktest.Packet
	open map[netip.Addr][]int
}

// kernelDoors turns generated doors into kernel doors on the tick scale:
// seq_timeout of N generated seconds becomes N seconds' worth of ticks
// less half a tick, so no whole number of ticks is ever on the edge.
func kernelDoors(doors []config.Door) []config.Door {
	out := make([]config.Door, len(doors))
	for i, d := range doors {
		ticks := d.SeqTimeout / replayGenTick
		d.SeqTimeout = time.Duration(ticks)*replayTick - replayTick/2
		d.Open = []config.PortSpec{{Proto: config.TCP, From: grantPortBase + uint16(i), To: grantPortBase + uint16(i)}}
		// Never runs out during a stream: only knocks change the grants.
		d.OpenFor = time.Hour
		out[i] = d
	}
	return out
}

// reachesKnockChain reports whether the guard lets the packet through to
// chain knock: a SYN-ACK that answers nothing is conntrack-invalid and
// dropped before it (checked against the invalid counter), so neither kind
// of moat door ever sees one.
func reachesKnockChain(p knocktest.Packet) bool {
	return p.Proto != config.TCP || p.Flags&0x12 != 0x12
}

// expect runs the stream through the model and the daemon verifier, on
// the tick scale, and groups it into ticks with the doors open after each.
func (rp *replayer) expect(t *testing.T, name string, doors []config.Door, stream []knocktest.Packet, stats *replayStats) []tickPackets {
	vs := make([]*knock.Door, len(doors))
	for i, d := range doors {
		vs[i] = knock.NewDoor(d)
	}
	g := knock.NewGroup(vs...)
	m := knocktest.NewModel(true, doors)
	open := map[netip.Addr]map[int]bool{}
	var ticks []tickPackets
	for j, p := range stream {
		tick := int((p.At.Sub(knocktest.T0) + replayGenTick/2) / replayGenTick)
		p.Src = rp.srcs[p.Src]
		p.At = knocktest.T0.Add(time.Duration(tick) * replayTick)
		if len(ticks) == 0 || ticks[len(ticks)-1].tick != tick {
			ticks = append(ticks, tickPackets{tick: tick})
		}
		tp := &ticks[len(ticks)-1]
		tp.pkts = append(tp.pkts, p)
		if reachesKnockChain(p) {
			got := slices.Clone(g.Observe(p.Src, p.Proto, p.Port, p.Flags, p.At))
			want := m.Sniff(p.Src, p.Proto, p.Port, p.Flags, p.At, len(doors))
			if !slices.Equal(got, want) {
				t.Fatalf("%s: the daemon verifier and the model disagree at packet %d (%v): verifier %v, model %v", name, j, p, got, want)
			}
			for i, r := range want {
				stats.results[r]++
				if open[p.Src] == nil {
					open[p.Src] = map[int]bool{}
				}
				switch r {
				case knock.Completed:
					open[p.Src][i] = true
				case knock.Closed:
					open[p.Src][i] = false
				}
			}
		}
		tp.open = openList(open)
	}
	return ticks
}

func openList(open map[netip.Addr]map[int]bool) map[netip.Addr][]int {
	out := map[netip.Addr][]int{}
	for src, ds := range open {
		for i, o := range ds {
			if o {
				out[src] = append(out[src], i)
			}
		}
		slices.Sort(out[src])
	}
	return out
}

// send sends one tick's packets from the client.
func (rp *replayer) send(t *testing.T, pkts []knocktest.Packet) {
	var raw [][]byte
	for _, p := range pkts {
		dst := rp.link.A4
		if p.Src.Is6() {
			dst = rp.link.A6
		}
		rp.n++
		raw = append(raw, rawPacket(p, dst, rp.n))
	}
	rp.client.SendRaw(t, rp.link.BIf, raw...)
}

func (rp *replayer) counter(t *testing.T, name string) uint64 {
	cs, err := rp.applier.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return cs[name].Packets
}

// kernelOpen reads the grant sets as source -> door indexes.
func (rp *replayer) kernelOpen(t *testing.T) map[netip.Addr][]int {
	gs, err := rp.applier.Grants()
	if err != nil {
		t.Fatal(err)
	}
	out := map[netip.Addr][]int{}
	for _, g := range gs {
		i := int(g.Port) - grantPortBase
		if g.Proto != 6 || i < 0 || i > 9 {
			i = -int(g.Port) // a grant no door should make: shown as is
		}
		out[g.Addr] = append(out[g.Addr], i)
	}
	for _, ds := range out {
		slices.Sort(ds)
	}
	return out
}

func equalOpen(a, b map[netip.Addr][]int) bool {
	return maps.EqualFunc(a, b, slices.Equal[[]int])
}

func formatTicks(ticks []tickPackets, upTo int) string {
	var b strings.Builder
	for _, tp := range ticks {
		if tp.tick > upTo {
			break
		}
		for _, p := range tp.pkts {
			fmt.Fprintf(&b, "  %3d: %s %s/%d flags %#x\n", tp.tick, p.Src, p.Proto, p.Port, p.Flags)
		}
	}
	return b.String()
}

// rawPacket builds the packet as the client sends it: a TCP segment with
// the generated flags, or an empty UDP datagram, from a source port of its
// own.
func rawPacket(p knocktest.Packet, dst netip.Addr, n uint16) []byte {
	sport := 40000 + n%20000
	if p.Proto == config.TCP {
		return netnstest.IP(p.Src, dst, 6, n, netnstest.TCP(p.Src, dst, sport, p.Port, p.Flags, uint32(n)*2654435761))
	}
	return netnstest.IP(p.Src, dst, 17, n, netnstest.UDP(p.Src, dst, sport, p.Port, nil))
}

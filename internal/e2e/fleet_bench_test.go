package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/moat-fw/moat/internal/control"
	"github.com/moat-fw/moat/internal/daemon"
	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/fleet"
	"github.com/moat-fw/moat/internal/netnstest"
)

// TestFleetBench measures what bench/fleet/run.sh reports; it runs only
// with MOAT_BENCH_FLEET=1. Figures are logged as "BENCH" lines.
//
//   - propagation: a ban made on a (its control socket answered: the ban is
//     in a's kernel) to the element in the kernels of b and c, read by
//     polling each kernel's ban sets over netlink every 0.5 ms;
//   - sustained: MOAT_BENCH_RATE bans/s (default 10,000) for 10 s published
//     into the bucket, applied by b and c (real daemons, real kernels);
//   - join: a host joining a fleet whose bucket holds MOAT_BENCH_JOIN live
//     bans (default 1,000,000), from `moat run` to all of them installed.
func TestFleetBench(t *testing.T) {
	if os.Getenv("MOAT_BENCH_FLEET") == "" {
		t.Skip("a benchmark: run bench/fleet/run.sh (MOAT_BENCH_FLEET=1)")
	}
	l := newFleetLab(t, 1)
	hs := l.startHosts("", "a", "b", "c")
	a, b, c := hs[0], hs[1], hs[2]
	benchPropagation(t, a, []*fleetHost{b, c}, envInt("MOAT_BENCH_PROPAGATION", 300))
	pub := l.publisher(t)
	// Two connections publish the sustained bans: one goroutine waiting
	// for its acknowledgements held the rate under what the bucket takes.
	benchSustained(t, []*benchPublisher{pub, l.publisher(t)}, []*fleetHost{b, c}, envInt("MOAT_BENCH_RATE", 10_000), 10*time.Second)
	for _, h := range []*fleetHost{a, b, c} {
		h.stop()
	}
	benchJoin(t, l, pub, envInt("MOAT_BENCH_JOIN", 1_000_000))
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

func benchPropagation(t *testing.T, a *fleetHost, others []*fleetHost, n int) {
	cl := control.NewClient(filepath.Join(a.dir, "moat.sock"))
	type seen struct {
		mu sync.Mutex
		at map[netip.Prefix]time.Time
	}
	watch := make([]*seen, len(others))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i, h := range others {
		s := &seen{at: map[netip.Prefix]time.Time{}}
		watch[i] = s
		ap := firewall.NewApplier(nftables.WithNetNSFd(h.server.Fd()))
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer ap.Close()
			for ctx.Err() == nil {
				ps, err := ap.Elements(firewall.Bans)
				now := time.Now()
				if err == nil {
					s.mu.Lock()
					for _, p := range ps {
						if _, ok := s.at[p]; !ok {
							s.at[p] = now
						}
					}
					s.mu.Unlock()
				}
				time.Sleep(500 * time.Microsecond)
			}
		}()
	}
	sent := map[netip.Prefix]time.Time{}
	for i := range n {
		p := quiet(2, i)
		var e daemon.EntryJSON
		if err := cl.Call(ctx, "POST", daemon.RouteBans, daemon.AddRequest{Addr: p.Addr().String(), For: time.Hour, Fleet: true}, &e); err != nil {
			t.Fatal(err)
		}
		sent[p] = time.Now()
		time.Sleep(20 * time.Millisecond) // one ban at a time: this is delay, not rate
	}
	time.Sleep(2 * time.Second)
	cancel()
	wg.Wait()
	var all []time.Duration
	for i, h := range others {
		var ds []time.Duration
		missing := 0
		for p, t0 := range sent {
			t1, ok := watch[i].at[p]
			if !ok {
				missing++
				continue
			}
			ds = append(ds, t1.Sub(t0))
		}
		all = append(all, ds...)
		t.Logf("BENCH propagation a->%s kernel: n=%d missing=%d %s", h.name, len(ds), missing, percentiles(ds))
		st := h.fleet()
		if st.Lag != nil {
			t.Logf("BENCH propagation a->%s moat's own lag (last %d): p50 %s p99 %s max %s", h.name, st.Lag.Samples,
				time.Duration(st.Lag.P50), time.Duration(st.Lag.P99), time.Duration(st.Lag.Max))
		}
	}
	t.Logf("BENCH propagation a->{b,c} kernel, all: n=%d %s", len(all), percentiles(all))
}

func percentiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "no samples"
	}
	slices.Sort(ds)
	q := func(f float64) time.Duration { return ds[min(len(ds)-1, int(f*float64(len(ds))))] }
	return fmt.Sprintf("p50 %s p90 %s p99 %s max %s", q(0.5).Round(10*time.Microsecond), q(0.9).Round(10*time.Microsecond),
		q(0.99).Round(10*time.Microsecond), ds[len(ds)-1].Round(10*time.Microsecond))
}

// publisher is a fleet host "x" in the test process, publishing into the
// bucket as moat's publisher does (a value per key, per-key TTL).
type benchPublisher struct {
	nc *nats.Conn
	js jetstream.JetStream
}

func (l *fleetLab) publisher(t *testing.T) *benchPublisher {
	var nc *nats.Conn
	// Dialled from inside the NATS namespace: the socket stays there.
	if err := l.nats.Do(func() (err error) {
		nc, err = nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", l.nodes[0].port), nats.MaxReconnects(0))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(16384))
	if err != nil {
		t.Fatal(err)
	}
	return &benchPublisher{nc: nc, js: js}
}

func (p *benchPublisher) put(t *testing.T, pfx netip.Prefix, now time.Time) {
	if err := p.try(pfx, now); err != nil {
		t.Fatal(err)
	}
}

// try is put for any goroutine: it returns what went wrong.
func (p *benchPublisher) try(pfx netip.Prefix, now time.Time) error {
	v := fleet.Value{Origin: "scan", Host: "x", Reason: "bench", Count: 1, Created: now, Until: now.Add(time.Hour)}
	if p.js.PublishAsyncPending() > 8000 {
		if err := p.wait(); err != nil {
			return err
		}
	}
	_, err := p.js.PublishAsync("$KV.moat-bans."+fleet.Key(pfx), v.Encode(), jetstream.WithMsgTTL(time.Hour+time.Second))
	return err
}

func (p *benchPublisher) flush(t *testing.T) {
	if err := p.wait(); err != nil {
		t.Fatal(err)
	}
}

func (p *benchPublisher) wait() error {
	select {
	case <-p.js.PublishAsyncComplete():
		return nil
	case <-time.After(60 * time.Second):
		return errors.New("publishes not acknowledged within 60s")
	}
}

func benchSustained(t *testing.T, pubs []*benchPublisher, hosts []*fleetHost, rate int, d time.Duration) {
	before := make([]uint64, len(hosts))
	cpu0 := make([]time.Duration, len(hosts))
	for i, h := range hosts {
		before[i] = h.fleet().Received
		cpu0[i] = procCPU(t, h.proc.Pid())
	}
	total := int(float64(rate) * d.Seconds())
	start := time.Now()
	var wg sync.WaitGroup
	for j, p := range pubs {
		wg.Go(func() {
			for i := j; i < total; i += len(pubs) {
				// Paced in 1 ms steps.
				if ahead := time.Duration(i)*time.Second/time.Duration(rate) - time.Since(start); ahead > time.Millisecond {
					time.Sleep(ahead)
				}
				if err := p.try(quiet(3, i), time.Now()); err != nil {
					t.Error(err)
					return
				}
			}
			if err := p.wait(); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	pubTook := time.Since(start)
	t.Logf("BENCH sustained: published %d bans in %s (%.0f/s acknowledged by the bucket)", total, pubTook.Round(time.Millisecond), float64(total)/pubTook.Seconds())
	for i, h := range hosts {
		var done time.Duration
		netnstest.Eventually(t, 120*time.Second, h.name+" applies every ban", func() bool {
			if h.fleet().Received-before[i] >= uint64(total) {
				done = time.Since(start)
				return true
			}
			return false
		})
		st := h.fleet()
		cpu := procCPU(t, h.proc.Pid()) - cpu0[i]
		t.Logf("BENCH sustained: %s applied %d bans %s after the first was published (%.0f/s); lag of the last %d: p50 %s p99 %s max %s; refused %v; moat's CPU time %s (%.1f µs a ban)",
			h.name, st.Received-before[i], done.Round(time.Millisecond), float64(total)/done.Seconds(), st.Lag.Samples,
			time.Duration(st.Lag.P50), time.Duration(st.Lag.P99), time.Duration(st.Lag.Max), st.Refused,
			cpu.Round(time.Millisecond), float64(cpu.Microseconds())/float64(total))
	}
}

func benchJoin(t *testing.T, l *fleetLab, p *benchPublisher, n int) {
	start := time.Now()
	now := time.Now()
	for i := range n {
		p.put(t, quiet(4, i), now)
		if i%100_000 == 99_999 {
			p.flush(t)
		}
	}
	p.flush(t)
	t.Logf("BENCH join: bucket filled with %d more bans in %s", n, time.Since(start).Round(time.Millisecond))
	d := l.addHost("d", "")
	t0 := time.Now()
	d.start()
	var st fleet.Status
	netnstest.Eventually(t, 1200*time.Second, "d to replay the bucket", func() bool {
		out, err := d.moatErr("fleet", "status", "--json")
		if err != nil || json.Unmarshal([]byte(out), &st) != nil {
			return false // a daemon busy with a million bans may answer late
		}
		return st.LastReplay != nil
	})
	took := time.Since(t0)
	r := st.LastReplay
	t.Logf("BENCH join: d replayed %d keys, applied %d: replay %s (bucket read and kernel; the store follows), `moat run` to done (polled every 1s) <= %s",
		r.Keys, r.Applied, time.Duration(r.Took).Round(time.Millisecond), took.Round(time.Millisecond))
	ds := d.status(t)
	t.Logf("BENCH join: d holds %d bans; d's peak RSS %d MB, CPU time %s; read of the bucket %s", ds.Bans, vmHWM(t, d.proc.Pid())>>20,
		procCPU(t, d.proc.Pid()).Round(time.Millisecond), time.Duration(r.Read).Round(time.Millisecond))
	// The store writes follow the replay (ban.Manager.HoldRemoteWrites).
	netnstest.Eventually(t, 600*time.Second, "d to save the replayed bans", func() bool {
		out, err := d.moatErr("fleet", "status", "--json")
		if err != nil || json.Unmarshal([]byte(out), &st) != nil {
			return false
		}
		return st.LastReplay != nil && st.LastReplay.Saved > 0
	})
	t.Logf("BENCH join: the replayed bans saved %s after the replay began; d's peak RSS %d MB, CPU time %s", time.Duration(st.LastReplay.Saved).Round(time.Millisecond),
		vmHWM(t, d.proc.Pid())>>20, procCPU(t, d.proc.Pid()).Round(time.Millisecond))
	// Spot checks in the kernel, read over netlink (`nft get element` lists
	// the whole set to answer: minutes for a million).
	ap := firewall.NewApplier(nftables.WithNetNSFd(d.server.Fd()))
	defer ap.Close()
	t0 = time.Now()
	ps, err := ap.Elements(firewall.Bans)
	if err != nil {
		t.Fatal(err)
	}
	in := map[netip.Prefix]bool{}
	for _, p := range ps {
		in[p] = true
	}
	t.Logf("BENCH join: d's kernel holds %d ban elements (read back in %s)", len(ps), time.Since(t0).Round(time.Millisecond))
	for _, i := range []int{0, n / 3, n / 2, n - 1} {
		if !in[quiet(4, i)] {
			t.Errorf("ban %d (%s) not in d's kernel", i, quiet(4, i))
		}
	}
}

// procCPU is a process's CPU time so far (user and system, from
// /proc/PID/stat), which the machine's load changes less than the wall
// clock.
func procCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The fields after the command's name, which is in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

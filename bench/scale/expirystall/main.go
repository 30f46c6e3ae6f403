// Command expirystall measures what a thousand bans expiring in the same
// second do to a host holding a million: it installs a million bans (half
// IPv4, half IPv6, one in a thousand a prefix) into the kernel of the
// network namespace it runs in, through the ban manager and the real store
// and netlink applier, with -expiring of them ending at one instant. A
// maintain loop expires them as the daemon's does, while new bans are made
// every 2 ms from 2 s before to 3 s after that instant, each timed (the
// time a guard waits in Manager.Add, netlink commit included). Then it
// reads the kernel's sets back and checks that every ban still live is
// there.
//
// Needs root; run it in a throwaway namespace (bench/scale/run.sh does).
// Usage: expirystall [-n 1000000] [-expiring 1000] [-lead 90s]
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/moat-fw/moat/bench/scale/million"
	"github.com/moat-fw/moat/internal/ban"
	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/store"
)

func main() {
	n := flag.Int("n", 1_000_000, "live bans")
	expiring := flag.Int("expiring", 1000, "how many of them end at the same instant")
	lead := flag.Duration("lead", 90*time.Second, "when they end, from the start (seeding and installing come first)")
	flag.Parse()
	if err := run(*n, *expiring, *lead); err != nil {
		fmt.Fprintln(os.Stderr, "expirystall:", err)
		os.Exit(1)
	}
}

func run(n, expiring int, lead time.Duration) error {
	dir, err := os.MkdirTemp("", "moat-expirystall.")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	st, err := store.Open(dir)
	if err != nil {
		return err
	}
	defer st.Close()
	now := time.Now()
	at := now.Add(lead)
	es := make([]store.Entry, 0, n)
	for i := range n {
		exp := now.Add(24 * time.Hour)
		if i < expiring {
			exp = at
		}
		es = append(es, store.Entry{Prefix: million.Prefix(i), Origin: "bench", Reason: "seeded", Created: now, Expires: exp})
	}
	if _, err := st.PutBans(es); err != nil {
		return err
	}
	es = nil
	fw := firewall.NewApplier()
	defer fw.Close()
	m, err := ban.New(st, fw, nil, time.Now(), func(error) {})
	if err != nil {
		return err
	}
	rs := firewall.Build(config.Firewall{ClosedResponse: "drop", LogRate: 1, LogBurst: 1}, nil)
	t0 := time.Now()
	if err := m.Install(time.Now(), func(b, a firewall.Seq) error { return fw.ApplyEach(rs, b, a) }); err != nil {
		return err
	}
	fmt.Printf("installed %d bans in %s\n", n, time.Since(t0).Round(time.Millisecond))
	if time.Until(at) < 3*time.Second {
		return fmt.Errorf("seeding and installing took more than -lead %s: the expiry is already due", lead)
	}

	// The daemon's maintain loop, for expiries only.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	var expireTook []time.Duration
	go func() {
		defer close(done)
		for {
			next := m.NextExpiry()
			if next.IsZero() || next.After(at.Add(time.Hour)) {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(next)):
			}
			t := time.Now()
			if err := m.Expire(t); err != nil {
				fmt.Fprintln(os.Stderr, "expire:", err)
			}
			expireTook = append(expireTook, time.Since(t))
		}
	}()

	time.Sleep(time.Until(at.Add(-2 * time.Second)))
	var lat, near []time.Duration // every Add's time; those from 50 ms before to 500 ms after the expiry
	var worst time.Duration
	var worstAt time.Duration
	added := 0
	for i := 0; time.Now().Before(at.Add(3 * time.Second)); i++ {
		a := netip.AddrFrom4([4]byte{10, 210, byte(i >> 8), byte(i)})
		t := time.Now()
		if _, err := m.Add(ban.Request{Prefix: netip.PrefixFrom(a, 32), For: time.Hour, Origin: "login", NoWait: true}, t); err != nil {
			cancel()
			<-done
			return err
		}
		d := time.Since(t)
		lat = append(lat, d)
		if d > worst {
			worst, worstAt = d, t.Sub(at)
		}
		if since := t.Sub(at); since > -50*time.Millisecond && since < 500*time.Millisecond {
			near = append(near, d)
		}
		added++
		time.Sleep(2 * time.Millisecond)
	}
	cancel()
	<-done
	m.Flush()
	slices.Sort(lat)
	fmt.Printf("new bans during the expiry: %d, Add p50 %s p99 %s max %s (at %+v from the expiry)\n", len(lat),
		us(lat[len(lat)/2]), us(lat[len(lat)*99/100]), us(worst), worstAt.Round(time.Millisecond))
	if len(near) > 0 {
		fmt.Printf("new bans from 50 ms before to 500 ms after the expiry: %d, slowest %s\n", len(near), us(slices.Max(near)))
	}
	for _, d := range expireTook {
		fmt.Printf("Manager.Expire took %s (its share under the manager's lock, then the store's deletes without it)\n", us(d))
	}

	// Every ban still live must be in the kernel: asked by key (a dump
	// would take minutes, and the kernel's timing out of the expired ones
	// meanwhile shifts the walk it restarts at every chunk).
	live := m.List(time.Now())
	ps := make([]netip.Prefix, len(live))
	for i, e := range live {
		ps[i] = e.Prefix
	}
	missing, err := fw.Missing(firewall.Bans, ps)
	if err != nil {
		return err
	}
	want := n - expiring + added
	fmt.Printf("live bans %d (want %d); missing from the kernel: %d\n", len(live), want, len(missing))
	if len(live) != want || len(missing) > 0 {
		return fmt.Errorf("bans lost: %d live, want %d; %d not in the kernel, first %v", len(live), want, len(missing), missing[:min(len(missing), 5)])
	}
	return nil
}

func us(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/1e6) }

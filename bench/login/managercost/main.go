// Command managercost times, in process, the ban manager calls the login
// guard makes on its way to a ban, with N bans already live: Active (is
// the address banned already?), IsAllowed (asked for every failure line),
// Add (store write with fsync, kernel update faked), NextExpiry and Expire
// (what the daemon's maintain loop runs each time a ban expires). It tells the
// guard's own cost from the kernel's and the machine's in the end-to-end
// latency figures. All of them hold the manager's lock, so a slow one
// also delays the others (the maintain loop's Expire delays a login ban).
//
// Usage: managercost [-n 100000] [-calls 200]
package main

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/moat-fw/moat/bench/scale/million"
	"github.com/moat-fw/moat/internal/ban"
	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/store"
)

// nopEnforcer stands in for the kernel: only moat's own work is timed.
type nopEnforcer struct{}

func (nopEnforcer) Update(firewall.SetKind, []firewall.Element, []firewall.Element) error { return nil }

func main() {
	n := flag.Int("n", 100_000, "live bans before timing")
	calls := flag.Int("calls", 200, "calls timed per operation")
	flag.Parse()
	if err := run(*n, *calls); err != nil {
		fmt.Fprintln(os.Stderr, "managercost:", err)
		os.Exit(1)
	}
}

func run(n, calls int) error {
	dir, err := os.MkdirTemp("", "moat-managercost.")
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
	es := make([]store.Entry, 0, n)
	for i := range n {
		es = append(es, store.Entry{Prefix: netip.PrefixFrom(million.Seed6(i), 128), Origin: "login",
			Created: now, Expires: now.Add(24 * time.Hour)})
	}
	if _, err := st.PutBans(es); err != nil {
		return err
	}
	m, err := ban.New(st, nopEnforcer{}, nil, now, func(error) {})
	if err != nil {
		return err
	}
	m.Elements(now)

	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 210, byte(1 + i/250), byte(1 + i%250)}) }
	time1 := func(name string, f func(i int) error) error {
		d := make([]time.Duration, calls)
		for i := range calls {
			t0 := time.Now()
			if err := f(i); err != nil {
				return err
			}
			d[i] = time.Since(t0)
		}
		slices.Sort(d)
		fmt.Printf("| %s | %d | %s | %s |\n", name, n, us(d[calls/2]), us(d[calls*99/100]))
		return nil
	}
	fmt.Println("| call | live bans | p50 | p99 |")
	fmt.Println("|---|---|---|---|")
	if err := time1("Manager.IsAllowed (every failure line)", func(i int) error { m.IsAllowed(addr(i), time.Now()); return nil }); err != nil {
		return err
	}
	if err := time1("Manager.Active (every ban)", func(i int) error { m.Active(addr(i), time.Now()); return nil }); err != nil {
		return err
	}
	if err := time1("Manager.Add, kernel faked (every ban)", func(i int) error {
		_, err := m.Add(ban.Request{Prefix: netip.PrefixFrom(addr(i), 32), Origin: "login",
			Backoff: &ban.Backoff{Base: time.Hour, Multiplier: 2, Max: 7 * 24 * time.Hour}}, time.Now())
		return err
	}); err != nil {
		return err
	}
	if err := time1("Manager.NextExpiry (each maintain loop turn)", func(int) error { m.NextExpiry(); return nil }); err != nil {
		return err
	}
	return time1("Manager.Expire, nothing due (each expiry wakeup)", func(int) error { return m.Expire(time.Now()) })
}

func us(d time.Duration) string { return fmt.Sprintf("%.1f µs", float64(d)/1e3) }

// Command reconcilecost shows what the daemon's periodic reconcile does to a
// ban made while it runs. It installs moat's table with N bans in the given
// network namespace through firewall.Applier, as the daemon does, then
// times Applier.Update for one ban alone, and again while another goroutine
// reads the ban sets back with Applier.Elements (the kernel read of
// ban.Manager.Reconcile, every reconcile_every): both take the applier's
// lock.
//
// Usage: reconcilecost -netns NAME [-n 100000] [-tries 3]
package main

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/google/nftables"
	"github.com/moat-fw/moat/bench/scale/million"
	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/firewall"
)

func main() {
	ns := flag.String("netns", "", "network namespace to install the table in (the caller makes and removes it)")
	n := flag.Int("n", 100_000, "bans in the table")
	tries := flag.Int("tries", 3, "reads timed")
	flag.Parse()
	if *ns == "" || *n < 1 || *tries < 1 {
		fmt.Fprintln(os.Stderr, "usage: reconcilecost -netns NAME [-n N] [-tries K]")
		os.Exit(2)
	}
	if err := run(*ns, *n, *tries); err != nil {
		fmt.Fprintln(os.Stderr, "reconcilecost:", err)
		os.Exit(1)
	}
}

func run(ns string, n, tries int) error {
	f, err := os.Open(filepath.Join("/run/netns", ns))
	if err != nil {
		return err
	}
	defer f.Close()
	a := firewall.NewApplier(nftables.WithNetNSFd(int(f.Fd())))
	cfg, err := config.Parse(config.Default(), "default")
	if err != nil {
		return err
	}
	bans := make([]firewall.Element, 0, n)
	for i := range n {
		bans = append(bans, firewall.Element{Prefix: netip.PrefixFrom(million.Seed6(i), 128), Timeout: 24 * time.Hour})
	}
	if err := a.Apply(firewall.Build(cfg.Firewall, []uint16{22}), bans, nil); err != nil {
		return err
	}
	k := 0
	ban1 := func() (time.Duration, error) {
		k++
		e := firewall.Element{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 210, byte(200 + k/250), byte(1 + k%250)}), 32), Timeout: time.Hour}
		t0 := time.Now()
		err := a.Update(firewall.Bans, nil, []firewall.Element{e})
		return time.Since(t0), err
	}
	var alone []time.Duration
	for range 50 {
		d, err := ban1()
		if err != nil {
			return err
		}
		alone = append(alone, d)
	}
	slices.Sort(alone)
	fmt.Printf("| one ban (Applier.Update), %d bans in the table, nothing else running | p50 %s, max %s |\n", n, ms(alone[len(alone)/2]), ms(alone[len(alone)-1]))
	for range tries {
		read := make(chan time.Duration, 1)
		errs := make(chan error, 1)
		go func() {
			t0 := time.Now()
			ps, err := a.Elements(firewall.Bans)
			if err == nil && len(ps) < n {
				err = fmt.Errorf("read %d bans back, want %d", len(ps), n)
			}
			errs <- err
			read <- time.Since(t0)
		}()
		time.Sleep(5 * time.Millisecond) // the read has the lock now
		d, err := ban1()
		if err != nil {
			return err
		}
		if err := <-errs; err != nil {
			return err
		}
		fmt.Printf("| one ban while the reconcile reads the ban sets back | waited %s (the read took %s) |\n", ms(d), ms(<-read))
	}
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }

// Command seedstore fills a moat state directory with N host bans, so the
// benchmarks can measure a daemon that restores or holds them. By default
// the first 65,000 are IPv4 in 10.210.0.0/16 and the rest IPv6 under
// fd00:210::/32; -v6 makes them all IPv6 (fd00:210:5eed::/48 plus a
// counter), leaving 10.210.0.0/16 free for a benchmark's own bans. The first
// -expiring of them expire one after another, spread over -over starting
// -after from now; the rest last 1 to 24 hours (a day with -v6). -mixed
// seeds the scale benchmarks' set instead (package bench/scale/million:
// half IPv4, half IPv6, one in a thousand a prefix).
//
// Usage: seedstore -dir STATE_DIR [-n 100000] [-v6 | -mixed] [-expiring K -after 10s -over 60s]
package main

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/moat-fw/moat/bench/scale/million"
	"github.com/moat-fw/moat/internal/store"
)

func main() {
	dir := flag.String("dir", "", "state_dir to fill")
	n := flag.Int("n", 100000, "number of bans")
	v6 := flag.Bool("v6", false, "IPv6 addresses only")
	mixed := flag.Bool("mixed", false, "the scale benchmarks' set: half IPv4, half IPv6, some prefixes")
	expiring := flag.Int("expiring", 0, "how many of them expire soon")
	after := flag.Duration("after", 10*time.Second, "when the first of those expires")
	over := flag.Duration("over", time.Minute, "how long they take to expire, one after another")
	flag.Parse()
	if *dir == "" || *n < 1 || *expiring > *n {
		fmt.Fprintln(os.Stderr, "usage: seedstore -dir STATE_DIR [-n N] [-v6] [-expiring K (<= N) -after D -over D]")
		os.Exit(2)
	}
	st, err := store.Open(*dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer st.Close()
	now := time.Now()
	es := make([]store.Entry, 0, *n)
	for i := range *n {
		var a netip.Addr
		exp := now.Add(time.Duration(1+i%24) * time.Hour)
		var p netip.Prefix
		switch {
		case *mixed:
			p = million.Prefix(i)
		case *v6:
			a, exp = million.Seed6(i), now.Add(24*time.Hour)
		case i < 65000:
			a = netip.AddrFrom4([4]byte{10, 210, byte(i >> 8), byte(i)})
		default:
			a = netip.AddrFrom16([16]byte{0xfd, 0, 2, 0x10, 0xbe, 0xef, 12: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)})
		}
		if i < *expiring {
			exp = now.Add(*after + time.Duration(i)*(*over)/time.Duration(*expiring))
		}
		if !p.IsValid() {
			p = netip.PrefixFrom(a, a.BitLen())
		}
		es = append(es, store.Entry{Prefix: p, Origin: "bench", Reason: "seeded",
			Created: now, Expires: exp})
	}
	t0 := time.Now()
	if _, err := st.PutBans(es); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("stored %d bans in %s (%d expiring from %s for %s)\n", *n, time.Since(t0).Round(time.Millisecond), *expiring, *after, *over)
}

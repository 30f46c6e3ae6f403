// Command seedbans fills a moat state directory with N IPv6 host bans
// (fd00:210:5eed::/48 plus a counter), so the latency benchmark can ban
// 10.210.x.y addresses on a daemon that already holds many bans. The first
// -expiring of them expire one after another, evenly spread over -over
// starting -after from now (as the bans of an attack an hour ago do); the
// rest last a day.
//
// Usage: seedbans -dir STATE_DIR [-n 100000] [-expiring 0 -after 10s -over 60s]
package main

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/moat-fw/moat/internal/store"
)

func main() {
	dir := flag.String("dir", "", "state_dir to fill")
	n := flag.Int("n", 100_000, "bans")
	expiring := flag.Int("expiring", 0, "how many of them expire soon")
	after := flag.Duration("after", 10*time.Second, "when the first of those expires")
	over := flag.Duration("over", time.Minute, "how long they take to expire, one after another")
	flag.Parse()
	if *dir == "" || *n < 1 || *expiring > *n {
		fmt.Fprintln(os.Stderr, "usage: seedbans -dir STATE_DIR [-n N] [-expiring K (<= N) -after D -over D]")
		os.Exit(2)
	}
	st, err := store.Open(*dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer st.Close()
	now := time.Now()
	base := netip.MustParseAddr("fd00:210:5eed::").As16()
	es := make([]store.Entry, 0, *n)
	for i := range *n {
		a := base
		a[12], a[13], a[14], a[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
		exp := now.Add(24 * time.Hour)
		if i < *expiring {
			exp = now.Add(*after + time.Duration(i)*(*over)/time.Duration(*expiring))
		}
		es = append(es, store.Entry{Prefix: netip.PrefixFrom(netip.AddrFrom16(a), 128), Origin: "login",
			Reason: "seeded", Created: now, Expires: exp})
	}
	if _, err := st.PutBans(es); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("stored %d bans (%d expiring from %s for %s)\n", *n, *expiring, *after, *over)
}

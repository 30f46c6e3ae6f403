// Command seedstore fills a moat state directory with N bans, so the
// benchmarks can measure a daemon restoring them at start.
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
	n := flag.Int("n", 100000, "number of bans")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "usage: seedstore -dir STATE_DIR [-n N]")
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
		// Hosts in 10.210.0.0/16 and beyond it inside 10.0.0.0/8 would leave
		// the test range, so larger sets use IPv6 under fd00:210::/32.
		var a netip.Addr
		if i < 65000 {
			a = netip.AddrFrom4([4]byte{10, 210, byte(i >> 8), byte(i)})
		} else {
			a = netip.AddrFrom16([16]byte{0xfd, 0, 2, 0x10, 0xbe, 0xef, 14: byte(i >> 8), 15: byte(i)})
			a = netip.AddrFrom16(func() [16]byte { b := a.As16(); b[12] = byte(i >> 16); return b }())
		}
		es = append(es, store.Entry{Prefix: netip.PrefixFrom(a, a.BitLen()), Origin: "bench", Reason: "seeded",
			Created: now, Expires: now.Add(time.Duration(1+i%24) * time.Hour)})
	}
	t0 := time.Now()
	if _, err := st.PutBans(es); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("stored %d bans in %s\n", *n, time.Since(t0).Round(time.Millisecond))
}

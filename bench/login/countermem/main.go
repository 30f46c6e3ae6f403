// Command countermem fills the login guard's failure counter (login.Counter,
// as the daemon makes it: max_retry 3, find_time 10m, max_tracked 1,000,000)
// with N distinct IPv6 addresses, one failure each, and prints the live
// heap it holds after a GC and the heap the runtime had to map on the way.
// It separates what the counter needs from what the daemon's RSS adds (GC
// headroom, garbage from growing slices, the rest of the daemon).
//
// Usage: countermem [-n 1000000]
package main

import (
	"flag"
	"fmt"
	"net/netip"
	"runtime"
	"time"

	"github.com/moat-fw/moat/internal/login"
)

func main() {
	n := flag.Int("n", 1_000_000, "distinct addresses, one failure each")
	flag.Parse()
	mb := func(b uint64) float64 { return float64(b) / (1 << 20) }
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)

	c := login.NewCounter(3, 10*time.Minute, 1_000_000)
	base := netip.MustParseAddr("fd00:210:abcd::").As16()
	now := time.Now()
	t0 := time.Now()
	for i := range *n {
		a := base
		a[12], a[13], a[14], a[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
		c.FailConn(netip.AddrFrom16(a), 1, 1, uint16(i), now)
	}
	took := time.Since(t0)
	runtime.ReadMemStats(&m1)
	peakSys := m1.HeapSys
	runtime.GC()
	runtime.ReadMemStats(&m1)
	fmt.Printf("addresses=%d counting=%d fail_ns=%.0f live_heap_mb=%.1f bytes_per_address=%.0f heap_sys_mb=%.1f\n",
		*n, c.Len(), float64(took.Nanoseconds())/float64(*n),
		mb(m1.HeapAlloc-m0.HeapAlloc), float64(m1.HeapAlloc-m0.HeapAlloc)/float64(*n), mb(peakSys))
	runtime.KeepAlive(c)
}

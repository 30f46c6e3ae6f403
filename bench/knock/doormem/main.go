// Command doormem feeds a daemon-mode door's verifier (internal/knock) the
// first knock from N distinct spoofed sources, as a flood does, and prints
// the Go heap it then holds, to tell how much of the daemon's RSS under a
// flood is the per-source table and how much is the garbage collector's
// headroom.
//
// Usage: go run ./bench/knock/doormem [-n 300000] [-max-pending 262144]
package main

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/knock"
)

func main() {
	n := flag.Int("n", 300000, "distinct sources, one first knock each")
	maxPending := flag.Int("max-pending", 262144, "the door's max_pending")
	flag.Parse()
	cfg, err := config.Parse(fmt.Appendf(nil, `
[[door]]
name = "bench"
sequence = ["tcp/7000", "tcp/7100", "udp/7200"]
seq_timeout = "5s"
open = ["tcp/2222"]
start_command = ["/bin/true"]
max_pending = %d
`, *maxPending), "doormem.toml")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	heap := func() (inuse, sys uint64) {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse, m.HeapSys
	}
	runtime.GC()
	base, _ := heap()
	d := knock.NewDoor(cfg.Doors[0])
	now := time.Now()
	b := netip.MustParseAddr("fd00:210::").As16()
	var peakSys uint64
	for i := range *n {
		a := b
		a[12], a[13], a[14], a[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
		d.Observe(netip.AddrFrom16(a), config.TCP, 7000, 0x02, now)
		if i%4096 == 0 {
			_, sys := heap()
			peakSys = max(peakSys, sys)
		}
	}
	inuseBefore, sysBefore := heap()
	runtime.GC()
	live, _ := heap()
	debug.FreeOSMemory()
	fmt.Printf("pending %d of %d sources (max_pending %d)\n", d.Pending(), *n, *maxPending)
	fmt.Printf("live heap of the table after GC: %.1f MB (%.0f bytes per source)\n",
		float64(live-base)/(1<<20), float64(live-base)/float64(d.Pending()))
	fmt.Printf("heap in use before that GC: %.1f MB; heap obtained from the OS: %.1f MB (peak seen %.1f MB)\n",
		float64(inuseBefore)/(1<<20), float64(sysBefore)/(1<<20), float64(peakSys)/(1<<20))
}

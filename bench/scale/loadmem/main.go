// Command loadmem loads a state directory's bans into a ban manager, as
// the daemon does at start, and prints the time it took and what the
// records hold of the Go heap afterwards (live bytes after a collection).
// With -heapprofile it writes a heap profile.
//
// Usage: loadmem -dir STATE_DIR [-heapprofile FILE] [-cpuprofile FILE]
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/moat-fw/moat/internal/ban"
	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/store"
)

// nopEnforcer stands in for the kernel.
type nopEnforcer struct{}

func (nopEnforcer) Update(firewall.SetKind, []firewall.Element, []firewall.Element) error { return nil }

func main() {
	dir := flag.String("dir", "", "state_dir to load")
	prof := flag.String("heapprofile", "", "write a heap profile here")
	cpu := flag.String("cpuprofile", "", "write a CPU profile of the load here")
	flag.Parse()
	if *cpu != "" {
		f, err := os.Create(*cpu)
		if err == nil {
			defer f.Close()
			_ = pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	if err := run(*dir, *prof); err != nil {
		fmt.Fprintln(os.Stderr, "loadmem:", err)
		os.Exit(1)
	}
}

func run(dir, prof string) error {
	st, err := store.Open(dir)
	if err != nil {
		return err
	}
	defer st.Close()
	t0 := time.Now()
	m, err := ban.New(st, nopEnforcer{}, nil, time.Now(), func(error) {})
	if err != nil {
		return err
	}
	took := time.Since(t0)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	n, _ := m.Counts()
	fmt.Printf("loaded %d bans in %s; live heap %.1f MB (%.0f bytes a ban)\n", n, took.Round(time.Millisecond),
		float64(ms.HeapAlloc)/(1<<20), float64(ms.HeapAlloc)/float64(max(n, 1)))
	if prof != "" {
		f, err := os.Create(prof)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.WriteHeapProfile(f); err != nil {
			return err
		}
	}
	runtime.KeepAlive(m)
	return nil
}

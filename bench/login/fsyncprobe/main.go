// Command fsyncprobe measures the disk under moat's store: it rewrites one
// 4 KiB block of a file in DIR and fdatasyncs it, every 20 ms for a while,
// and prints the distribution. A ban made by moat waits for two such syncs
// (bbolt's commit: data pages, then the meta page), so this bounds what the
// store adds to the ban latency on this machine, at this moment.
//
// Usage: fsyncprobe [-dir /tmp] [-for 10s]
package main

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"time"
)

func main() {
	dir := flag.String("dir", os.TempDir(), "directory on the disk to probe")
	dur := flag.Duration("for", 10*time.Second, "how long to probe")
	flag.Parse()
	f, err := os.CreateTemp(*dir, "moat-fsyncprobe.")
	if err != nil {
		fmt.Fprintln(os.Stderr, "fsyncprobe:", err)
		os.Exit(1)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	b := make([]byte, 4096)
	var d []time.Duration
	for end := time.Now().Add(*dur); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		b[0]++
		if _, err := f.WriteAt(b, 0); err != nil {
			fmt.Fprintln(os.Stderr, "fsyncprobe:", err)
			os.Exit(1)
		}
		t0 := time.Now()
		if err := f.Sync(); err != nil {
			fmt.Fprintln(os.Stderr, "fsyncprobe:", err)
			os.Exit(1)
		}
		d = append(d, time.Since(t0))
	}
	slices.Sort(d)
	n := len(d)
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }
	fmt.Printf("%d syncs: p50 %s, p90 %s, p99 %s, max %s\n", n, ms(d[n/2]), ms(d[n*9/10]), ms(d[n*99/100]), ms(d[n-1]))
}

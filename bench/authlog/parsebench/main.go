// Command parsebench parses every line of an auth.log with moat's sshd
// parser and prints lines/s and the login events it found, for
// bench/authlog/parse.sh.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/moat-fw/moat/internal/authlog"
)

func main() {
	events := flag.Bool("events", false, "print each event (kind, address) instead of the summary, to compare with other tools")
	flag.Usage = func() { fmt.Fprintln(os.Stderr, "usage: parsebench [-events] AUTH.LOG") }
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	start := time.Now()
	data, err := os.ReadFile(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "parsebench:", err)
		os.Exit(1)
	}
	// A first pass over the bytes just read, before the parse is timed:
	// the first touch of freshly read memory cost 2.5x the parse itself
	// on this VM (page-table walks), which is the reading's cost, not the
	// parser's (explain reads through a small buffer that stays hot).
	nl := bytes.Count(data, []byte{'\n'})
	read := time.Since(start)

	var (
		ev                    authlog.Event
		lines, attempts, aggr int
		kinds                 = map[authlog.Kind]int{}
	)
	parseStart, parseCPU := time.Now(), cpuTime()
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		var line []byte
		if i < 0 {
			line, data = data, nil
		} else {
			line, data = data[:i], data[i+1:]
		}
		lines++
		if !authlog.ParseSSHD(line, &ev) {
			continue
		}
		kinds[ev.Kind] += ev.Count
		if *events {
			fmt.Fprintf(out, "%s %s\n", ev.Kind, ev.Addr)
			continue
		}
		switch {
		case ev.Kind == authlog.Accepted:
		case ev.Kind.Aggressive():
			aggr += ev.Count
		default:
			attempts += ev.Count
		}
	}
	parse, pcpu := time.Since(parseStart), cpuTime()-parseCPU
	total := time.Since(start)
	if *events {
		return
	}

	fmt.Fprintf(out, "lines %d\n", lines)
	fmt.Fprintf(out, "newlines %d\n", nl)
	fmt.Fprintf(out, "attempts %d\n", attempts)
	fmt.Fprintf(out, "aggressive %d\n", aggr)
	fmt.Fprintf(out, "parse_seconds %.6f\n", parse.Seconds())
	fmt.Fprintf(out, "parse_cpu_seconds %.6f\n", pcpu.Seconds())
	fmt.Fprintf(out, "total_seconds %.6f\n", total.Seconds())
	fmt.Fprintf(out, "read_seconds %.6f\n", read.Seconds())
	fmt.Fprintf(out, "parse_lines_per_second %.0f\n", float64(lines)/parse.Seconds())
	for k := authlog.Kind(1); k.String() != "unknown"; k++ {
		if kinds[k] > 0 {
			fmt.Fprintf(out, "kind %s %d\n", k, kinds[k])
		}
	}
}

// cpuTime is the CPU time (user and system) the process has used: on a
// machine shared with other work, the parse loop's wall time counts the
// time others held the core, its CPU time does not.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

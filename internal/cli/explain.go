package cli

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"github.com/moat-fw/moat/internal/authlog"
	"github.com/moat-fw/moat/internal/ban"
	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/daemon"
	"github.com/moat-fw/moat/internal/kernlog"
	"github.com/moat-fw/moat/internal/packet"
	"github.com/moat-fw/moat/internal/portscan"
)

// explainCmd is moat's fail2ban-regex: what moat makes of each log line.
func (a *app) explainCmd() *cobra.Command {
	var asJSON, kernelLog bool
	var mode string
	cmd := &cobra.Command{
		Use:   "explain [--json] [--mode normal|aggressive] [--kernel-log] FILE|-",
		Short: "Show what the login guard (or, with --kernel-log, the scan guard) makes of log lines",
		Long: "explain reads sshd log lines (syslog, RFC 5424, ISO-8601 or bare journal messages) and shows\n" +
			"each attempt it finds, or with no --json a summary: lines read, attempts by kind, distinct\n" +
			"addresses, and which addresses the current [login] policy would ban (like fail2ban-regex).\n\n" +
			"With --kernel-log it reads the kernel's iptables/nftables LOG lines (IN= OUT= SRC= DST= ...)\n" +
			"and prints the scan guard's report, as psad -A does. Feed it kernel lines only: any process\n" +
			"can write text that looks like one to syslog.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in := io.Reader(os.Stdin)
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			ld, err := daemon.LoadConfig(a.configPath, a.explicit)
			if err != nil {
				return err
			}
			if kernelLog {
				return explainKernel(in, a.out, asJSON, ld.Cfg.Scan, time.Now())
			}
			lc := ld.Cfg.Login
			if cmd.Flags().Changed("mode") {
				if mode != "normal" && mode != "aggressive" {
					return fmt.Errorf(`--mode %q: want "normal" or "aggressive"`, mode)
				}
				lc.Mode = mode
			}
			return explain(in, a.out, asJSON, lc.Mode == "aggressive", lc.MaxRetry, lc.FindTime, time.Now())
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per attempt and nothing else")
	cmd.Flags().StringVar(&mode, "mode", "normal", `"normal" or "aggressive" (default: [login] mode)`)
	cmd.Flags().BoolVar(&kernelLog, "kernel-log", false, "read kernel LOG lines and print the scan report (like psad -A)")
	return cmd
}

// explainLine is one attempt in `explain --json`.
type explainLine struct {
	Line int    `json:"line"`
	Kind string `json:"kind"`
	IP   string `json:"ip"`
	User string `json:"user,omitempty"`
}

func explain(in io.Reader, out io.Writer, asJSON, aggressive bool, retry int, window time.Duration, now time.Time) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	bw := bufio.NewWriter(out)
	defer bw.Flush()
	enc := json.NewEncoder(bw)
	counter := ban.NewCounter(retry, window, 1<<20)
	kinds := map[string]int{}
	addrs := map[netip.Addr]bool{}
	wouldBan := map[netip.Addr]int{}
	n, attempts := 0, 0
	var ev authlog.Event
	for sc.Scan() {
		n++
		line := sc.Bytes()
		if !authlog.ParseSSHD(line, &ev) && !authlog.ParseSSHDMessage(line, &ev) {
			continue
		}
		if ev.Kind == authlog.Accepted {
			counter.Forget(ev.Addr)
			continue
		}
		if ev.Kind.Aggressive() && !aggressive {
			continue
		}
		attempts++
		kinds[ev.Kind.String()]++
		addrs[ev.Addr] = true
		if asJSON {
			if err := enc.Encode(explainLine{Line: n, Kind: ev.Kind.String(), IP: ev.Addr.String(), User: string(ev.User)}); err != nil {
				return err
			}
		}
		t := authlog.InferYear(ev.Time, now)
		if t.IsZero() {
			t = now // no timestamp: treat the lines as one burst
		}
		if _, _, hit := counter.Fail(ev.Addr, max(ev.Count, 1), 0, t); hit {
			wouldBan[ev.Addr]++
			counter.Forget(ev.Addr)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading line %d: %w", n+1, err)
	}
	if asJSON {
		return nil
	}
	fmt.Fprintf(bw, "lines read:         %d\n", n)
	fmt.Fprintf(bw, "attempts found:     %d\n", attempts)
	ks := make([]string, 0, len(kinds))
	for k := range kinds {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool {
		return kinds[ks[i]] > kinds[ks[j]] || kinds[ks[i]] == kinds[ks[j]] && ks[i] < ks[j]
	})
	for _, k := range ks {
		fmt.Fprintf(bw, "  %-28s %d\n", k, kinds[k])
	}
	fmt.Fprintf(bw, "distinct addresses: %d\n", len(addrs))
	fmt.Fprintf(bw, "would ban (max_retry %d in %s): %d\n", retry, window, len(wouldBan))
	bs := make([]netip.Addr, 0, len(wouldBan))
	for a := range wouldBan {
		bs = append(bs, a)
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].Less(bs[j]) })
	for _, a := range bs {
		fmt.Fprintf(bw, "  %s (%d times)\n", a, wouldBan[a])
	}
	return nil
}

// explainKernel runs kernel LOG lines through a fresh scan detector with
// the config's thresholds and prints its report.
func explainKernel(in io.Reader, out io.Writer, asJSON bool, sc config.Scan, now time.Time) error {
	det := portscan.New(portscan.Config{Window: sc.Window, MaxSources: sc.MaxSources, PacketTiers: sc.PacketTiers, SweepTiers: sc.SweepTiers})
	r := bufio.NewScanner(in)
	r.Buffer(make([]byte, 64<<10), 1<<20)
	var p packet.Packet
	lines, parsed := 0, 0
	for r.Scan() {
		lines++
		prefix, ok := kernlog.Parse(r.Bytes(), &p)
		if !ok {
			continue
		}
		parsed++
		det.Observe(&p, prefix, now)
	}
	if err := r.Err(); err != nil {
		return fmt.Errorf("reading line %d: %w", lines+1, err)
	}
	rep := det.Report(now, 50)
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	fmt.Fprintf(out, "lines read: %d, kernel LOG lines: %d, sources: %d\n", lines, parsed, len(rep.Sources))
	printScanReport(out, rep)
	return nil
}

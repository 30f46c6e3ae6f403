package cli

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/moat-fw/moat/internal/daemon"
	"github.com/moat-fw/moat/internal/lookup"
	"github.com/moat-fw/moat/internal/osfp"
)

// printReport prints what psad -S and fail2ban-client status show, one
// heading per section (docs/status.md maps psad's sections onto these).
func printReport(w io.Writer, st daemon.Status) {
	r := st.Report
	if r == nil {
		return
	}
	fmt.Fprintf(w, "\ntop attackers (danger level %d and up; the whole story: moat status ADDR):\n", r.MinLevel)
	if len(r.Attackers) == 0 {
		fmt.Fprintln(w, "  none")
	} else {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  SOURCE\tLEVEL\tTYPES\tPROBES\tPORTS\tFIRST\tLAST\tBANNED\tOS GUESS\tWHERE")
		for _, a := range r.Attackers {
			banned := "no"
			switch {
			case a.Banned && a.BannedUntil == nil:
				banned = "until removed"
			case a.Banned:
				banned = "until " + a.BannedUntil.Local().Format("01-02 15:04")
			}
			os := "-"
			if a.Fingerprint != "" {
				os = osString(a.OS)
			}
			where := whereString(a.Info)
			if where == "" {
				where = "-"
			}
			fmt.Fprintf(tw, "  %s\t%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", a.Addr, a.Level, strings.Join(a.Types, ","), a.Packets, portRange(a.SourceReport.Ports, a.PortLow, a.PortHigh),
				a.First.Local().Format(time.TimeOnly), a.Last.Local().Format(time.TimeOnly), banned, os, where)
		}
		tw.Flush()
	}
	var ts []string
	for _, t := range r.Types {
		ts = append(ts, fmt.Sprintf("%s %d", t.Type, t.Sources))
	}
	fmt.Fprintf(w, "scan types (sources that sent each): %s\n", orNone(ts))
	var ps []string
	for _, p := range r.Ports {
		ps = append(ps, fmt.Sprintf("%s/%d (%d)", p.Proto, p.Port, p.Packets))
	}
	fmt.Fprintf(w, "most scanned ports: %s\n", orNone(ps))
	var pre []string
	for _, p := range r.Prefixes {
		pre = append(pre, fmt.Sprintf("%s (%s) %d", p.Prefix, p.Kind, p.Packets))
	}
	fmt.Fprintf(w, "packets per log prefix: %s\n", orNone(pre))
	pk := r.Packets
	fmt.Fprintf(w, "packets seen: tcp %d, udp %d, icmp %d, other %d (%d probes scored, %d not probes, %d ignored, %d knocks)\n",
		pk.TCP, pk.UDP, pk.ICMP, pk.Other, pk.Probes, pk.Unscored, pk.Ignored, pk.Knocks)
	fmt.Fprintf(w, "scan sources: %d tracked; scan destinations: %d local addresses probed\n", r.Sources, r.Destinations)
	fmt.Fprintf(w, "auto-blocked (scan bans in force): %d\n", r.BlockedTotal)
	for _, b := range r.Blocked {
		until := "until removed"
		if b.Until != nil {
			until = "until " + b.Until.Local().Format(time.DateTime)
		}
		fmt.Fprintf(w, "  %-39s %s\n", b.Addr, until)
	}
	var gs []string
	for _, g := range r.Guards {
		s := fmt.Sprintf("%s %d in force", g.Guard, g.Active)
		if g.Made >= 0 {
			s += fmt.Sprintf(", %d made", g.Made)
		}
		if g.Events > 0 {
			s += fmt.Sprintf(", %d %s", g.Events, map[string]string{"scan": "probes", "login": "failures", "doors": "knocks"}[g.Guard])
		}
		gs = append(gs, s)
	}
	fmt.Fprintf(w, "guards: %s\n", orNone(gs, "; "))
	var js []string
	for _, j := range r.Jails {
		js = append(js, fmt.Sprintf("%s: %d being counted, %d banned", j.Name, j.Counting, j.Banned))
	}
	fmt.Fprintf(w, "jails: %s\n", orNone(js, "; "))
	lk := r.Lookups
	fmt.Fprintf(w, "look-ups: geoip %s, asn %s, reverse dns %s", onOff(lk.GeoIP), onOff(lk.ASN), onOff(lk.ReverseDNS))
	if lk.Error != "" {
		fmt.Fprintf(w, "; NOT IN USE: %s", lk.Error)
	}
	fmt.Fprintln(w)
	printAlerts(w, st.Alerts)
	fmt.Fprintln(w, "all of this as JSON: moat status --json")
}

func printAlerts(w io.Writer, a *daemon.AlertStatus) {
	if a == nil {
		fmt.Fprintln(w, "alerts: none configured ([alert] in the config)")
		return
	}
	if a.Error != "" {
		fmt.Fprintf(w, "alerts: OFF: %s\n", a.Error)
		return
	}
	fmt.Fprintf(w, "alerts: %d events read, %d held back by the throttle", a.Received, a.Throttled)
	if a.BusDropped > 0 {
		fmt.Fprintf(w, ", %d DROPPED (alerts fell behind)", a.BusDropped)
	}
	fmt.Fprintln(w)
	for _, d := range a.Destinations {
		fmt.Fprintf(w, "  %s: %d sent, %d failed, %d retried, %d dropped (queue full), %d waiting", d.Name, d.Sent, d.Failed, d.Retried, d.Dropped, d.Queued)
		if d.LastErr != "" {
			fmt.Fprintf(w, "; last error: %s", d.LastErr)
		}
		fmt.Fprintln(w)
	}
}

func portRange(n int, lo, hi uint16) string {
	switch {
	case n == 0:
		return "0"
	case lo == hi:
		return fmt.Sprintf("%d (%d)", n, lo)
	}
	return fmt.Sprintf("%d (%d-%d)", n, lo, hi)
}

func osString(g *osfp.Guess) string {
	if g == nil {
		return "unknown"
	}
	s := g.Name
	if !g.Exact {
		s += "?"
	}
	if g.Hops > 0 {
		s += fmt.Sprintf(", %d hops", g.Hops)
	}
	return s
}

// whereString is the look-ups' answer in a few words: "scanner.example.net NL AS64500 Example Net".
func whereString(i lookup.Info) string {
	var parts []string
	if i.Name != "" {
		parts = append(parts, i.Name)
	}
	if i.Country != "" {
		parts = append(parts, i.Country)
	}
	if i.ASN != 0 {
		parts = append(parts, strings.TrimSpace(fmt.Sprintf("AS%d %s", i.ASN, i.ASOrg)))
	}
	return strings.Join(parts, " ")
}

func usersString(users map[string]int) string {
	names := slices.SortedFunc(maps.Keys(users), func(a, b string) int {
		return cmp.Or(cmp.Compare(users[b], users[a]), cmp.Compare(a, b))
	})
	var out []string
	for _, u := range names {
		out = append(out, fmt.Sprintf("%q %d", u, users[u]))
	}
	return strings.Join(out, ", ")
}

// orNone joins items with sep (", " by default), or says "none".
func orNone(items []string, sep ...string) string {
	if len(items) == 0 {
		return "none"
	}
	return strings.Join(items, cmp.Or(append(sep, ", ")...))
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

package config

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

const portForms = `"ssh", "tcp/22", "udp/53" or a range like "tcp/8000-8100"`

// ParsePortSpec parses "ssh", "tcp/22", "udp/53" or "tcp/8000-8100".
func ParsePortSpec(s string) (PortSpec, error) {
	if s == "ssh" {
		return PortSpec{Proto: TCP, SSH: true}, nil
	}
	protoName, ports, ok := strings.Cut(s, "/")
	if !ok {
		if _, err := strconv.ParseUint(s, 10, 16); err == nil {
			return PortSpec{}, fmt.Errorf("no protocol; did you mean \"tcp/%s\"? want %s", s, portForms)
		}
		return PortSpec{}, fmt.Errorf("want %s", portForms)
	}
	var proto Proto
	switch protoName {
	case "tcp":
		proto = TCP
	case "udp":
		proto = UDP
	default:
		return PortSpec{}, fmt.Errorf("protocol %q: want tcp or udp, as in %s", protoName, portForms)
	}
	fromS, toS, isRange := strings.Cut(ports, "-")
	from, err := parsePort(fromS)
	if err != nil {
		return PortSpec{}, err
	}
	to := from
	if isRange {
		if to, err = parsePort(toS); err != nil {
			return PortSpec{}, err
		}
		if from > to {
			return PortSpec{}, fmt.Errorf("range %d-%d is backwards; did you mean \"%s/%d-%d\"?", from, to, protoName, to, from)
		}
	}
	return PortSpec{Proto: proto, From: from, To: to}, nil
}

func parsePort(s string) (uint16, error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("port %q is not a number; want %s", s, portForms)
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %s out of range 1-65535", s)
	}
	return uint16(n), nil
}

// ParseAddrOrPrefix parses an address ("192.0.2.7", "2001:db8::1", giving a
// /32 or /128) or a network ("192.0.2.0/24"). IPv4-mapped IPv6 forms become
// IPv4, because that is how the kernel sees those packets; zones and
// networks with host bits set are refused.
func ParseAddrOrPrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "%") {
		return netip.Prefix{}, errors.New("zones (the %interface suffix) are not allowed; write the address alone")
	}
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf(`want an address like "192.0.2.7" or "2001:db8::1", or a network like "192.0.2.0/24"`)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf(`want a network like "192.0.2.0/24" or "2001:db8::/32", or an address like "192.0.2.7"`)
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("host bits are set; did you mean %s?", unmapPrefix(m))
	}
	return unmapPrefix(p), nil
}

// unmapPrefix turns ::ffff:a.b.c.d/n (n >= 96) into a.b.c.d/(n-96); shorter
// prefixes cover more than IPv4-mapped space and stay IPv6.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p
}

// maxSocketPath is the longest path a unix socket can be bound to on Linux:
// sockaddr_un's sun_path is 108 bytes and a path must leave room for the NUL.
const maxSocketPath = 107

// problems checks the values against each other and their ranges. Parse has
// already rejected what cannot even be decoded; this is what a Config built
// in code can still get wrong, so Validate shares it.
func (c *Config) problems() []problem {
	var out []problem
	bad := func(path, value, format string, args ...any) {
		out = append(out, problem{path: path, value: value, msg: fmt.Sprintf(format, args...)})
	}
	q := strconv.Quote

	d := &c.Daemon
	if !absPathOK(d.StateDir) {
		bad("daemon.state_dir", q(d.StateDir), `want an absolute path like "/var/lib/moat"`)
	}
	if !absPathOK(d.Socket) {
		bad("daemon.socket", q(d.Socket), `want an absolute path like "/run/moat/moat.sock"`)
	} else if len(d.Socket) > maxSocketPath {
		// Caught here rather than by the daemon's listen, so that
		// config check and apply refuse it instead of a start failing.
		bad("daemon.socket", q(d.Socket), "%d bytes; a unix socket path is at most %d bytes on Linux (sun_path holds %d with the NUL); choose a shorter path",
			len(d.Socket), maxSocketPath, maxSocketPath+1)
	}
	if f := c.DoorLog.LogFile; f != "" && !absPathOK(f) {
		bad("doors.log_file", q(f), `want an absolute path like "/var/log/moat-knock.log"`)
	}
	if !slices.Contains(onExitValues, d.OnExit) {
		bad("daemon.on_exit", q(d.OnExit), "want %s", quotedOr(onExitValues))
	}
	if d.ReconcileEvery < time.Second {
		bad("daemon.reconcile_every", q(d.ReconcileEvery.String()), `too short; want at least "1s"`)
	}
	if !slices.Contains(logLevelValues, d.LogLevel) {
		bad("daemon.log_level", q(d.LogLevel), "want %s", quotedOr(logLevelValues))
	}

	f := &c.Firewall
	seenIf := map[string]int{}
	for i, name := range f.Interfaces {
		path := joinIndex("firewall.interfaces", i)
		if msg := checkInterface(name); msg != "" {
			bad(path, q(name), "%s", msg)
			continue
		}
		if j, dup := seenIf[name]; dup {
			bad(path, q(name), "duplicate of interfaces[%d]", j)
			continue
		}
		seenIf[name] = i
	}
	for _, p := range openProblems(f.Open) {
		bad(p.path, p.value, "%s", p.msg)
	}
	for _, p := range allowProblems(f.Allow) {
		bad(p.path, p.value, "%s", p.msg)
	}
	if !slices.Contains(closedResponseValues, f.ClosedResponse) {
		bad("firewall.closed_response", q(f.ClosedResponse), "want %s", quotedOr(closedResponseValues))
	}
	if f.LogRate < 1 {
		bad("firewall.log_rate", strconv.FormatUint(uint64(f.LogRate), 10), "want at least 1 (packets per second)")
	}
	if f.LogBurst < 1 {
		bad("firewall.log_burst", strconv.FormatUint(uint64(f.LogBurst), 10), "want at least 1 (packets)")
	}
	if f.KnockRatePerSource < 1 {
		bad("firewall.knock_rate_per_source", strconv.FormatUint(uint64(f.KnockRatePerSource), 10), "want at least 1 (packets per second)")
	}
	if f.KnockRate < 1 {
		bad("firewall.knock_rate", strconv.FormatUint(uint64(f.KnockRate), 10), "want at least 1 (packets per second)")
	}
	if !slices.Contains(forwardValues, f.Forward) {
		bad("firewall.forward", q(f.Forward), "want %s", quotedOr(forwardValues))
	}
	out = append(out, f.scriptProblems()...)
	out = append(out, c.Login.problems()...)
	out = append(out, c.doorProblems()...)
	out = append(out, c.Scan.problems()...)
	out = append(out, c.spaProblems()...)
	out = append(out, c.Scan.dangerProblems()...)
	out = append(out, c.Report.problems()...)
	out = append(out, c.Alert.problems()...)
	out = append(out, c.Page.problems()...)
	out = append(out, c.blocklistProblems()...)
	out = append(out, c.Fleet.problems()...)
	return out
}

// checkInterface returns what is wrong with an interfaces entry, or "".
// The rules are the kernel's (dev_valid_name), plus one trailing "*".
func checkInterface(name string) string {
	name, _ = InterfaceName(name)
	base := strings.TrimSuffix(name, "*")
	switch {
	case name == "lo":
		return "loopback is always accepted; remove it"
	case name == "*":
		return `to match every interface leave interfaces empty ([])`
	case base == "":
		return `want an interface name like "eth0" or a prefix like "eth*"`
	case len(base) > 15:
		return "interface names are at most 15 bytes"
	case base == "." || base == "..":
		return "not a valid interface name"
	case strings.Contains(base, "*"):
		return `"*" may only end a name, as in "eth*"`
	case strings.ContainsAny(base, "/: \t\n\v\f\r\x00"):
		return `interface names cannot contain "/", ":", whitespace or NUL`
	}
	return ""
}

// openProblems finds malformed specs, duplicates and overlapping ranges (an
// nftables interval set refuses overlaps, and they are always a mistake).
func openProblems(open []PortSpec) []problem {
	var out []problem
	path := func(i int) string { return joinIndex("firewall.open", i) }
	var plain []int // indexes of non-alias specs
	sshAt := -1
	for i, s := range open {
		v := strconv.Quote(s.String())
		switch {
		case s.SSH:
			if s.Proto != TCP || s.From != 0 || s.To != 0 {
				out = append(out, problem{path(i), v, "the ssh alias is TCP with no port of its own"})
			} else if sshAt >= 0 {
				out = append(out, problem{path(i), v, fmt.Sprintf("duplicate of open[%d]", sshAt)})
			} else {
				sshAt = i
			}
		case s.Proto != TCP && s.Proto != UDP:
			out = append(out, problem{path(i), v, "want tcp or udp"})
		case s.From < 1:
			out = append(out, problem{path(i), v, "port 0 out of range 1-65535"})
		case s.From > s.To:
			out = append(out, problem{path(i), v, fmt.Sprintf("range %d-%d is backwards", s.From, s.To)})
		default:
			plain = append(plain, i)
		}
	}
	// Sorted by protocol and start, an overlap is a start at or before the
	// furthest end seen so far.
	slices.SortStableFunc(plain, func(a, b int) int {
		x, y := open[a], open[b]
		if x.Proto != y.Proto {
			return int(x.Proto) - int(y.Proto)
		}
		if x.From != y.From {
			return int(x.From) - int(y.From)
		}
		return int(x.To) - int(y.To)
	})
	reach := -1 // index in open of the spec reaching furthest in the current protocol
	for _, i := range plain {
		s := open[i]
		if reach >= 0 && open[reach].Proto == s.Proto && s.From <= open[reach].To {
			first, later := min(i, reach), max(i, reach)
			what := "overlaps"
			if open[first] == open[later] {
				what = "duplicate of"
			}
			out = append(out, problem{path(later), strconv.Quote(open[later].String()),
				fmt.Sprintf("%s open[%d] %q", what, first, open[first].String())})
			if s.To <= open[reach].To {
				continue
			}
		}
		reach = i
	}
	return out
}

// allowProblems finds invalid or unnormalised prefixes and entries covered
// by another (an interval set refuses overlaps too).
func allowProblems(allow []netip.Prefix) []problem {
	var out []problem
	path := func(i int) string { return joinIndex("firewall.allow", i) }
	var good []int
	for i, p := range allow {
		v := strconv.Quote(fmtPrefix(p))
		switch {
		case !p.IsValid():
			out = append(out, problem{path(i), v, `want an address like "192.0.2.7" or a network like "2001:db8::/32"`})
		case p.Addr().Is4In6() && p.Bits() >= 96:
			out = append(out, problem{path(i), v, fmt.Sprintf("IPv4-mapped; write it as %s", unmapPrefix(p))})
		case p.Masked() != p:
			out = append(out, problem{path(i), v, fmt.Sprintf("host bits are set; did you mean %s?", p.Masked())})
		default:
			good = append(good, i)
		}
	}
	// Prefixes are nested or disjoint; sorted by address then length, an
	// entry overlaps an earlier one only if it lies inside the last entry
	// that did not.
	slices.SortStableFunc(good, func(a, b int) int {
		if c := allow[a].Addr().Compare(allow[b].Addr()); c != 0 {
			return c
		}
		return allow[a].Bits() - allow[b].Bits()
	})
	cover := -1
	for _, i := range good {
		if cover >= 0 && allow[cover].Overlaps(allow[i]) {
			first, later := min(i, cover), max(i, cover)
			what := "covers"
			switch {
			case allow[first] == allow[later]:
				what = "duplicate of"
			case later == i:
				what = "is inside"
			}
			out = append(out, problem{path(later), strconv.Quote(fmtPrefix(allow[later])),
				fmt.Sprintf("%s allow[%d] %q", what, first, fmtPrefix(allow[first]))})
			continue
		}
		cover = i
	}
	return out
}

// fmtPrefix writes a host prefix as the bare address, as the admin wrote it.
func fmtPrefix(p netip.Prefix) string {
	if p.IsValid() && p.Bits() == p.Addr().BitLen() {
		return p.Addr().String()
	}
	return p.String()
}

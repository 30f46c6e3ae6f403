// Package config holds moat's configuration: the TOML schema, the embedded
// default, and validation that names the offending key and its line.
package config

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Config is a parsed, validated moat configuration.
type Config struct {
	Daemon   Daemon
	Firewall Firewall
	Login    Login
	Scan     Scan
	Doors    []Door
	DoorLog  DoorLog // the [doors] table: settings shared by every door
	Metrics  Metrics
	SPA      SPA
	Report   Report // [report]: what moat status shows
	Alert    Alert  // [alert]: webhooks, syslog, e-mail
	Page     Page   // [page]: the live page

	Blocklists []Blocklist // [[blocklist]]
	Fleet      Fleet       // [fleet]: ban sharing between hosts
}

// DoorLog configures the doors' audit trail.
type DoorLog struct {
	// LogFile is log_file: an optional file moat appends knockd-style lines
	// to ("[2026-03-01 12:00] 10.0.0.2: ssh: OPEN SESAME") for every door
	// opening and closing; empty means none.
	LogFile string
}

// Daemon configures the long-running process.
type Daemon struct {
	StateDir       string        // state_dir: where the ban store lives
	Socket         string        // socket: the control socket path
	OnExit         string        // on_exit: "keep" (fail closed, default) or "remove"
	ReconcileEvery time.Duration // reconcile_every: how often the kernel is checked against the store
	LogLevel       string        // log_level: "debug", "info", "warn", "error"
}

// Firewall configures the nftables table moat owns.
type Firewall struct {
	Interfaces []string // interfaces: guarded with the full ruleset; "eth*" matches a prefix, "wg0?" may be absent
	// TrustedInterfaces are accepted unfiltered (bans aside). Every
	// interface in neither list stays default deny.
	TrustedInterfaces []string       // trusted_interfaces
	Output            string         // output: "accept" (default) or "deny" what this host starts
	OutputAllow       []OutputRule   // output_allow: what output = "deny" lets out
	Reject            []PortSpec     // reject: closed ports answered with RST / port unreachable
	Open              []PortSpec     // open: public services
	Allow             []netip.Prefix // allow: trusted sources (hosts are /32 or /128)
	ClosedResponse    string         // closed_response: "drop" or "reject"
	Ping              bool           // ping: answer ICMP echo requests
	Stealth           bool           // stealth: drop invalid TCP flag combinations, and fragments before reassembly
	LogGroup          uint16         // log_group: NFLOG group for dropped packets
	LogRate           uint32         // log_rate: packets per second logged to NFLOG at most
	LogBurst          uint32         // log_burst: burst allowed above log_rate
	Forward           string         // forward: "untouched" (default), "ban" or "drop"

	// Daemon-mode doors' knock packets handed to moat (NFLOG) per second:
	// per source (burst twice that), and in total for sources not already
	// in a sequence (burst one second's worth).
	KnockRatePerSource uint32 // knock_rate_per_source
	KnockRate          uint32 // knock_rate

	// What the ruleset needs of [spa], filled in by the daemon
	// (daemon.FirewallFor) rather than written in [firewall]: the ports
	// while SPA runs, the clients' wire ids (derived from their keys, some
	// read from files), and whether fwknop's packets, which carry no clear
	// id, are handed over too.
	SPAPorts     []PortSpec
	SPAClientIDs [][8]byte
	SPAFwknop    bool

	// The scan guard's kernel hold, filled in by daemon.FirewallFor from
	// [scan]: how long a source that sprays crafted SYNs at closed ports
	// has them dropped (0: no hold), and the sources never put on hold.
	ScanHold       time.Duration
	ScanHoldIgnore []netip.Prefix

	// Blocklists are the names of the [[blocklist]] entries, each with
	// its sets and drop rules, filled in by daemon.FirewallFor.
	Blocklists []string
}

// Defaults of the knock handoff's limits. The total is above the 60,000
// forged knocks per second under which the knock bench measured the daemon
// at 16% of a core, so it bounds the daemon's knock work at roughly a
// quarter of a core.
const (
	DefaultKnockRatePerSource = 32
	DefaultKnockRate          = 100000
)

// Proto is an IP protocol number that a port belongs to.
type Proto uint8

// The protocols a port spec may name.
const (
	TCP Proto = 6
	UDP Proto = 17
)

func (p Proto) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return fmt.Sprintf("proto-%d", uint8(p))
}

// PortSpec is "tcp/22", "udp/53", "tcp/8000-8100", or the alias "ssh"
// (the TCP ports sshd really listens on, resolved at load time).
type PortSpec struct {
	Proto Proto
	From  uint16
	To    uint16 // equal to From for a single port
	SSH   bool   // the "ssh" alias: Proto is TCP, From/To are unset until resolved
}

func (p PortSpec) String() string {
	if p.SSH {
		return "ssh"
	}
	if p.From == p.To {
		return fmt.Sprintf("%s/%d", p.Proto, p.From)
	}
	return fmt.Sprintf("%s/%d-%d", p.Proto, p.From, p.To)
}

// Contains reports whether the spec covers proto/port.
func (p PortSpec) Contains(proto Proto, port uint16) bool {
	return !p.SSH && p.Proto == proto && port >= p.From && port <= p.To
}

// ResolveSSH returns open with the "ssh" alias replaced by one TCP spec per
// port in sshPorts (22 when sshPorts is empty), without duplicates.
func ResolveSSH(open []PortSpec, sshPorts []uint16) []PortSpec {
	if len(sshPorts) == 0 {
		sshPorts = []uint16{22}
	}
	out := make([]PortSpec, 0, len(open)+len(sshPorts))
	seen := map[PortSpec]bool{}
	add := func(s PortSpec) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	for _, s := range open {
		if !s.SSH {
			add(s)
			continue
		}
		for _, port := range sshPorts {
			add(PortSpec{Proto: TCP, From: port, To: port})
		}
	}
	return out
}

// ParseDuration is time.ParseDuration plus days ("d") and weeks ("w"), which
// ban times are naturally written in: "1w", "1d12h".
func ParseDuration(s string) (time.Duration, error) {
	if !strings.ContainsAny(s, "dw") {
		return time.ParseDuration(s)
	}
	var total time.Duration
	rest := s
	for rest != "" {
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		j := i
		for j < len(rest) && !(rest[j] >= '0' && rest[j] <= '9' || rest[j] == '.') {
			j++
		}
		num, unit := rest[:i], rest[i:j]
		rest = rest[j:]
		mult := time.Duration(0)
		switch unit {
		case "d":
			mult = 24 * time.Hour
		case "w":
			mult = 7 * 24 * time.Hour
		}
		if mult == 0 {
			d, err := time.ParseDuration(num + unit)
			if err != nil {
				return 0, fmt.Errorf("invalid duration %q", s)
			}
			total += d
			continue
		}
		n, err := strconv.ParseFloat(num, 64)
		if err != nil || n < 0 || n > float64(math.MaxInt64)/float64(mult) {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		total += time.Duration(n * float64(mult))
	}
	if s == "" {
		return 0, fmt.Errorf("invalid duration %q", s)
	}
	return total, nil
}

package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Keys that complete the reference guide's iptables script: egress
// filtering, per-port REJECT and trusted interfaces.

// OutputRule is one entry of output_allow: traffic this host may start,
// to a protocol and port, optionally only to one network.
type OutputRule struct {
	Port PortSpec
	To   netip.Prefix // the zero Prefix: any destination
}

func (r OutputRule) String() string {
	if !r.To.IsValid() {
		return r.Port.String()
	}
	return r.Port.String() + "@" + fmtPrefix(r.To)
}

var outputValues = []string{"accept", "deny"}

const outputForms = `"tcp/443", "udp/53", "tcp/8000-8100" or "tcp/22@192.0.2.0/24"`

// ParseOutputRule parses "tcp/443", "udp/53" or "tcp/22@192.0.2.0/24".
func ParseOutputRule(s string) (OutputRule, error) {
	ports, to, hasTo := strings.Cut(s, "@")
	if ports == "ssh" {
		return OutputRule{}, fmt.Errorf(`"ssh" means this host's sshd; to reach other hosts' sshd write "tcp/22"`)
	}
	spec, err := ParsePortSpec(ports)
	if err != nil {
		return OutputRule{}, fmt.Errorf("%s (want %s)", strings.TrimSuffix(err.Error(), "; want "+portForms), outputForms)
	}
	r := OutputRule{Port: spec}
	if hasTo {
		if r.To, err = ParseAddrOrPrefix(to); err != nil {
			return OutputRule{}, fmt.Errorf("after @: %w", err)
		}
	}
	return r, nil
}

// InterfaceName splits an interfaces entry into the name (or "eth*"
// prefix) and whether it is optional: "wg0?" may be absent, as a tunnel
// that comes and goes is, without config check refusing it.
func InterfaceName(entry string) (name string, optional bool) {
	name, optional = strings.CutSuffix(entry, "?")
	return name, optional
}

var scriptKeys = []key{
	{"trusted_interfaces", func(d *decoder, p string, v any) { d.names(p, v, &d.cfg.Firewall.TrustedInterfaces) }},
	{"output", func(d *decoder, p string, v any) { d.enum(p, v, outputValues, &d.cfg.Firewall.Output) }},
	{"output_allow", func(d *decoder, p string, v any) {
		var rules []OutputRule
		ok := d.list(p, v, `a list like ["tcp/443", "udp/53", "tcp/22@192.0.2.0/24"]`, func(p string, e any) {
			s, ok := e.(string)
			if !ok {
				d.badType(p, e, outputForms)
				return
			}
			r, err := ParseOutputRule(s)
			if err != nil {
				d.bad(p, e, "%v", err)
				return
			}
			rules = append(rules, r)
		})
		if ok {
			d.cfg.Firewall.OutputAllow = rules
		}
	}},
	{"reject", func(d *decoder, p string, v any) {
		d.portList(p, v, `a list like ["tcp/137-139", "udp/137-139"]`, `"tcp/139", "udp/137" or a range like "tcp/137-139"`, false, &d.cfg.Firewall.Reject)
	}},
}

// names decodes a list of interface names.
func (d *decoder) names(path string, v any, dst *[]string) {
	var names []string
	ok := d.list(path, v, `a list of interface names like ["lxcbr0"]`, func(p string, e any) {
		s, ok := e.(string)
		if !ok {
			d.badType(p, e, `an interface name like "lxcbr0" or a prefix like "veth*"`)
			return
		}
		names = append(names, s)
	})
	if ok {
		*dst = names
	}
}

// scriptProblems checks the keys above against each other and [firewall].
func (f *Firewall) scriptProblems() []problem {
	var out []problem
	q := strconv.Quote
	bad := func(path, value, format string, args ...any) {
		out = append(out, problem{path: path, value: value, msg: fmt.Sprintf(format, args...)})
	}
	guarded := map[string]int{}
	for i, e := range f.Interfaces {
		name, _ := InterfaceName(e)
		guarded[name] = i
	}
	seen := map[string]int{}
	for i, name := range f.TrustedInterfaces {
		path := joinIndex("firewall.trusted_interfaces", i)
		if msg := checkInterface(name); msg != "" {
			bad(path, q(name), "%s", msg)
			continue
		}
		if strings.HasSuffix(name, "?") {
			bad(path, q(name), `trusted interfaces need no "?": an absent one is simply not trusted`)
			continue
		}
		if j, dup := seen[name]; dup {
			bad(path, q(name), "duplicate of trusted_interfaces[%d]", j)
			continue
		}
		if j, both := guarded[name]; both {
			bad(path, q(name), "also in interfaces[%d]: an interface is guarded or trusted, not both", j)
			continue
		}
		seen[name] = i
	}
	// "" is accept too, for configs built in code.
	if f.Output != "" && !slices.Contains(outputValues, f.Output) {
		bad("firewall.output", q(f.Output), "want %s", quotedOr(outputValues))
	}
	for i, r := range f.OutputAllow {
		path := joinIndex("firewall.output_allow", i)
		v := q(r.String())
		switch {
		case r.Port.SSH || r.Port.Proto != TCP && r.Port.Proto != UDP || r.Port.From < 1 || r.Port.From > r.Port.To:
			bad(path, v, "want %s", outputForms)
		case r.To.IsValid() && (r.To.Masked() != r.To || r.To.Addr().Is4In6() && r.To.Bits() >= 96):
			bad(path, v, "want a network written as %s", unmapPrefix(r.To.Masked()))
		}
	}
	if len(f.OutputAllow) > 0 && f.Output != "deny" {
		bad("firewall.output_allow", "", `has no effect unless output = "deny"`)
	}
	for i, s := range f.Reject {
		path := joinIndex("firewall.reject", i)
		v := q(s.String())
		if s.SSH || s.Proto != TCP && s.Proto != UDP || s.From < 1 || s.From > s.To {
			bad(path, v, `want "tcp/139", "udp/137" or a range like "tcp/137-139"`)
			continue
		}
		for _, o := range ResolveSSH(f.Open, nil) {
			if o.Proto == s.Proto && o.From <= s.To && s.From <= o.To {
				bad(path, v, "overlaps open %q: an open port is accepted and never rejected", o.String())
				break
			}
		}
		for j := range i {
			if o := f.Reject[j]; o.Proto == s.Proto && o.From <= s.To && s.From <= o.To {
				bad(path, v, "overlaps reject[%d] %q", j, o.String())
				break
			}
		}
	}
	return out
}

// CheckInterfaces checks [firewall] interfaces against the interfaces
// that exist (present reports whether a name, or a "eth*" prefix, matches
// one). An entry that matches none is an error naming its key and line,
// unless it is optional ("wg0?"): then it is returned in absent, for a
// warning. raw and name are the file Parse read, for the line numbers.
func CheckInterfaces(raw []byte, name string, fw Firewall, present func(nameOrPrefix string) bool) (absent []string, err error) {
	var probs []problem
	for i, entry := range fw.Interfaces {
		n, optional := InterfaceName(entry)
		if present(n) {
			continue
		}
		if optional {
			absent = append(absent, entry)
			continue
		}
		what := "no interface of this name exists here"
		if strings.HasSuffix(n, "*") {
			what = "no interface name starts with " + strconv.Quote(strings.TrimSuffix(n, "*")) + " here"
		}
		probs = append(probs, problem{path: joinIndex("firewall.interfaces", i), value: strconv.Quote(entry),
			msg: what + ` (a typo?); moat would guard nothing there; write "` + n + `?" if it may be absent`})
	}
	if len(probs) == 0 {
		return absent, nil
	}
	return absent, joinProblems(name, scanPositions(string(raw)), probs)
}

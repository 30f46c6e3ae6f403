package daemon

import (
	"fmt"
	"strings"

	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/store"
)

// maxBanPorts caps the ports of one port-limited ban once ranges are
// expanded (the ban manager refuses more).
const maxBanPorts = 256

// banPorts expands port specs (a [[login.rule]]'s ports, `moat ban add
// --port`) into the ports a port-limited ban drops: "ssh" becomes sshd's
// ports, ranges their ports.
func banPorts(specs []config.PortSpec, sshPorts []uint16) ([]store.Port, error) {
	var out []store.Port
	for _, s := range config.ResolveSSH(specs, sshPorts) {
		if int(s.To)-int(s.From)+1+len(out) > maxBanPorts {
			return nil, fmt.Errorf("ports %v: more than %d ports; ban the address on every port instead", specs, maxBanPorts)
		}
		for p := int(s.From); p <= int(s.To); p++ {
			sp := store.Port{Proto: uint8(s.Proto), Port: uint16(p)}
			if !containsPort(out, sp) {
				out = append(out, sp)
			}
		}
	}
	return out, nil
}

func containsPort(ps []store.Port, p store.Port) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// parseBanPorts reads `moat ban add --port` values: port specs, each
// repeatable or comma separated ("tcp/80,tcp/443", "udp/5060-5061").
func parseBanPorts(vals []string, sshPorts []uint16) ([]store.Port, error) {
	var specs []config.PortSpec
	for _, v := range vals {
		for _, s := range strings.Split(v, ",") {
			sp, err := config.ParsePortSpec(strings.TrimSpace(s))
			if err != nil {
				return nil, fmt.Errorf("port %q: %w", s, err)
			}
			specs = append(specs, sp)
		}
	}
	return banPorts(specs, sshPorts)
}

func banPortStrings(ps []store.Port) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}

// reconcilePortBans re-adds the port-limited ban elements the kernel lost
// (a set flushed by hand) and returns how many. A ban added meanwhile may
// be added twice: adding an element the set holds changes nothing.
func (d *Daemon) reconcilePortBans() (int, error) {
	have, err := d.fw.PortBans()
	if err != nil {
		return 0, err
	}
	in := make(map[firewall.PortBan]bool, len(have))
	for _, p := range have {
		in[firewall.PortBan{Addr: p.Addr, Proto: p.Proto, Port: p.Port}] = true
	}
	var miss []firewall.PortBan
	for _, p := range d.bans.PortBanElements(d.now()) {
		if !in[firewall.PortBan{Addr: p.Addr, Proto: p.Proto, Port: p.Port}] {
			miss = append(miss, p)
		}
	}
	return len(miss), d.fw.UpdatePortBans(nil, miss)
}

package daemon

import (
	"fmt"
	"net"
	"strings"

	"github.com/moat-fw/moat/internal/config"
)

// CheckInterfaces refuses a config whose [firewall] interfaces names an
// interface this network namespace does not have, unless the entry is
// optional ("wg0?"): a misspelt name would guard nothing (M8). It returns
// the optional entries that match nothing, to warn about.
func CheckInterfaces(ld *Loaded) (absent []string, err error) {
	names, err := linkNames()
	if err != nil {
		return nil, err
	}
	return config.CheckInterfaces(ld.Raw, ld.Source, ld.Cfg.Firewall, func(n string) bool { return matchesAny(n, names) })
}

func linkNames() ([]string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list this host's network interfaces, to check [firewall] interfaces: %w", err)
	}
	names := make([]string, len(ifs))
	for i, ifc := range ifs {
		names[i] = ifc.Name
	}
	return names, nil
}

func matchesAny(nameOrPrefix string, names []string) bool {
	prefix, isPrefix := strings.CutSuffix(nameOrPrefix, "*")
	for _, n := range names {
		if n == nameOrPrefix || isPrefix && strings.HasPrefix(n, prefix) {
			return true
		}
	}
	return false
}

// missingInterfaces lists the guarded and trusted entries that match no
// interface now, for the warning at start and when links change.
func missingInterfaces(fw config.Firewall) string {
	names, err := linkNames()
	if err != nil {
		return ""
	}
	var out []string
	for _, e := range append(append([]string{}, fw.Interfaces...), fw.TrustedInterfaces...) {
		if n, _ := config.InterfaceName(e); !matchesAny(n, names) {
			out = append(out, e)
		}
	}
	return strings.Join(out, ", ")
}

// warnInterfaces warns when entries of interfaces or trusted_interfaces
// match no link, at start and whenever that changes (a link renamed,
// removed or added), and says so when they all match again.
func (d *Daemon) warnInterfaces(fw config.Firewall) {
	missing := missingInterfaces(fw)
	prev, _ := d.ifMissing.Load().(string)
	if missing == prev {
		return
	}
	d.ifMissing.Store(missing)
	if missing == "" {
		d.log.Info("every interface in [firewall] interfaces and trusted_interfaces exists now")
		return
	}
	d.log.Warn("[firewall] interfaces or trusted_interfaces match no link here; moat guards nothing there until one appears, and other interfaces stay default deny",
		"missing", missing)
}

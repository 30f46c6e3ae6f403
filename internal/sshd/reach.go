package sshd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"

	"github.com/moat-fw/moat/internal/config"
)

// CheckReachable warns when moat's firewall config would close a port
// sshd listens on: after `moat firewall apply` nobody could open a new SSH
// session. listen returns sshd's ports (ListenPorts); it is called only
// when the answer matters, since the "ssh" alias follows sshd by itself.
// The warnings are sentences without a "warning:" prefix.
func CheckReachable(ctx context.Context, fw config.Firewall, listen func(context.Context) ([]uint16, error)) []string {
	if slices.ContainsFunc(fw.Open, func(p config.PortSpec) bool { return p.SSH }) {
		return nil
	}
	ports, err := listen(ctx)
	var warnings []string
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil // no sshd installed: no SSH session to lose
	case err != nil || len(ports) == 0:
		warnings = append(warnings, fmt.Sprintf("cannot read sshd's ports (%v): checking tcp/22, the port moat assumes", err))
		ports = []uint16{22}
	}
	open := config.ResolveSSH(fw.Open, ports)
	for _, port := range ports {
		if slices.ContainsFunc(open, func(p config.PortSpec) bool { return p.Contains(config.TCP, port) }) {
			continue
		}
		// Knock doors will go here: a port behind a door is reachable
		// after the knock, which deserves a note naming the door rather
		// than this warning.
		w := fmt.Sprintf("sshd listens on tcp/%d, but [firewall] open has neither \"ssh\" nor \"tcp/%d\": with this config no new SSH session can reach this host", port, port)
		if len(fw.Allow) > 0 {
			w = fmt.Sprintf("sshd listens on tcp/%d, but [firewall] open has neither \"ssh\" nor \"tcp/%d\": only sources in [firewall] allow (%s) can open an SSH session", port, port, prefixes(fw))
		}
		warnings = append(warnings, w+"; add \"ssh\" to open")
	}
	return warnings
}

func prefixes(fw config.Firewall) string {
	s := ""
	for i, p := range fw.Allow {
		if i > 0 {
			s += ", "
		}
		s += p.String()
	}
	return s
}

package sshd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/moat-fw/moat/internal/config"
)

// CheckReachable warns when moat's firewall config would close a port
// sshd listens on: after `moat firewall apply` nobody could open a new SSH
// session. listen returns sshd's ports (ListenPorts); it is called only
// when the answer matters, since the "ssh" alias follows sshd by itself.
//
// A port that a door opens is not closed, only hidden: it gets a note that
// names the door and how to knock, not a warning. Warnings and notes are
// sentences without a "warning:" or "note:" prefix; they are kept apart so
// the caller can tell a lockout from a reminder.
func CheckReachable(ctx context.Context, fw config.Firewall, doors []config.Door, listen func(context.Context) ([]uint16, error)) (warnings, notes []string) {
	if slices.ContainsFunc(fw.Open, func(p config.PortSpec) bool { return p.SSH }) {
		return nil, nil
	}
	ports, err := listen(ctx)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil // no sshd installed: no SSH session to lose
	case err != nil || len(ports) == 0:
		warnings = append(warnings, fmt.Sprintf("cannot read sshd's ports (%v): checking tcp/22, the port moat assumes", err))
		ports = []uint16{22}
	}
	open := config.ResolveSSH(fw.Open, ports)
	for _, port := range ports {
		if slices.ContainsFunc(open, func(p config.PortSpec) bool { return p.Contains(config.TCP, port) }) {
			continue
		}
		if behind := doorsOpening(doors, port); len(behind) > 0 {
			notes = append(notes, doorNote(port, behind, fw))
			continue
		}
		w := fmt.Sprintf("sshd listens on tcp/%d, but [firewall] open has neither \"ssh\" nor \"tcp/%d\" and no [[door]] opens it: with this config no new SSH session can reach this host", port, port)
		if len(fw.Allow) > 0 {
			w = fmt.Sprintf("sshd listens on tcp/%d, but [firewall] open has neither \"ssh\" nor \"tcp/%d\" and no [[door]] opens it: only sources in [firewall] allow (%s) can open an SSH session", port, port, prefixes(fw))
		}
		warnings = append(warnings, w+"; add \"ssh\" to open, or put the port behind a door")
	}
	return warnings, notes
}

// doorsOpening returns the names of the doors whose knock opens tcp/port.
func doorsOpening(doors []config.Door, port uint16) []string {
	var names []string
	for _, d := range doors {
		if slices.ContainsFunc(d.Open, func(p config.PortSpec) bool { return p.Contains(config.TCP, port) }) {
			names = append(names, d.Name)
		}
	}
	return names
}

// doorNote says that tcp/port opens after a knock, and how to knock: the
// admin reading it is about to close the port they may be logged in on.
func doorNote(port uint16, names []string, fw config.Firewall) string {
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = fmt.Sprintf("%q", n)
	}
	n := fmt.Sprintf("sshd's tcp/%d is behind door %s: knock first (moat knock HOST --door %s)", port, quoted[0], names[0])
	if len(names) > 1 {
		n = fmt.Sprintf("sshd's tcp/%d is behind doors %s: knock on one first (moat knock HOST --door %s)", port, strings.Join(quoted, ", "), names[0])
	}
	if len(fw.Allow) > 0 {
		n += fmt.Sprintf("; sources in [firewall] allow (%s) need no knock", prefixes(fw))
	}
	return n
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

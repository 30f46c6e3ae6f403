// Package sshd reads and audits the OpenSSH server's effective configuration.
package sshd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

// fallbackPath is where Debian installs sshd; a daemon started by systemd
// may run with a PATH that lacks /usr/sbin.
const fallbackPath = "/usr/sbin/sshd"

// ListenPorts returns the TCP ports sshd listens on, sorted, as its effective
// configuration (`sshd -T`) says. Callers fall back to 22 on error.
//
// sshd -T needs the host keys and, on Debian, /run/sshd to exist; when it
// fails the error carries the first line it printed, which names the cause.
func ListenPorts(ctx context.Context) ([]uint16, error) {
	bin, err := exec.LookPath("sshd")
	if err != nil {
		bin = fallbackPath
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-T")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("sshd not found in PATH or at %s: %w", fallbackPath, err)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s -T: %w", bin, ctx.Err())
		}
		if line := firstLine(stderr.Bytes()); line != "" {
			return nil, fmt.Errorf("%s -T: %w: %s", bin, err, line)
		}
		return nil, fmt.Errorf("%s -T: %w", bin, err)
	}
	ports := ParseListenPorts(stdout.Bytes())
	if len(ports) == 0 {
		return nil, fmt.Errorf("%s -T printed no port or listenaddress line", bin)
	}
	return ports, nil
}

func firstLine(b []byte) string {
	line, _, _ := bytes.Cut(bytes.TrimSpace(b), []byte("\n"))
	return strings.TrimSpace(string(line))
}

// ParseListenPorts reads `sshd -T` output and returns the listening ports,
// sorted and unique.
//
// sshd -T prints one "listenaddress host:port" line per socket it will open
// (every ListenAddress crossed with every Port, or the wildcard addresses
// when there is no ListenAddress), so those lines are the truth: with
// "Port 22" and "ListenAddress 192.0.2.1:2222" sshd listens on 2222 only.
// The "port N" lines are used only when no listenaddress line is present
// (older or trimmed output).
func ParseListenPorts(out []byte) []uint16 {
	var listen, port []uint16
	for line := range bytes.Lines(out) {
		// "port 22"; "listenaddress [::]:22", perhaps followed by "rdomain NAME".
		f := strings.Fields(string(line))
		if len(f) < 2 {
			continue
		}
		switch strings.ToLower(f[0]) {
		case "port":
			if p, ok := parsePort(f[1]); ok {
				port = append(port, p)
			}
		case "listenaddress":
			if p, ok := addrPort(f[1]); ok {
				listen = append(listen, p)
			}
		}
	}
	ports := listen
	if len(ports) == 0 {
		ports = port
	}
	slices.Sort(ports)
	return slices.Compact(ports)
}

// addrPort returns the port of "host:port" or "[v6]:port"; a bare IPv6
// address has no port.
func addrPort(s string) (uint16, bool) {
	var port string
	if strings.HasPrefix(s, "[") {
		i := strings.Index(s, "]:")
		if i < 0 {
			return 0, false
		}
		port = s[i+2:]
	} else {
		host, p, ok := strings.Cut(s, ":")
		if !ok || strings.Contains(p, ":") || host == "" {
			return 0, false
		}
		port = p
	}
	return parsePort(port)
}

func parsePort(s string) (uint16, bool) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, false
	}
	return uint16(n), true
}

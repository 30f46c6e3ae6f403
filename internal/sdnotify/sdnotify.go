// Package sdnotify tells systemd how the daemon is doing (ready,
// reloading, stopping, alive) over the NOTIFY_SOCKET datagram protocol
// of sd_notify(3), written out by hand: moat is a static binary without
// cgo, so libsystemd is not an option, and the protocol is one datagram
// of newline-separated KEY=VALUE lines.
package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The states moat sends.
const (
	Ready     = "READY=1"
	Reloading = "RELOADING=1"
	Stopping  = "STOPPING=1"
	Watchdog  = "WATCHDOG=1"
)

// Notifier sends to the socket systemd named in NOTIFY_SOCKET. The zero
// value, and a nil *Notifier, send nothing: run by hand or under another
// supervisor, moat has no one to tell.
type Notifier struct {
	addr *net.UnixAddr
}

// FromEnv returns a notifier for $NOTIFY_SOCKET, or nil when it is unset.
// The variable is left in place: the start_command hooks moat runs get a
// clean environment of their own (a child that found it could otherwise
// speak for moat, but NotifyAccess=main makes systemd ignore it anyway).
func FromEnv() *Notifier {
	return New(os.Getenv("NOTIFY_SOCKET"))
}

// New returns a notifier for the socket at path ("@name" is Linux's
// abstract namespace, as systemd writes it), or nil for "".
func New(path string) *Notifier {
	if path == "" {
		return nil
	}
	// Go's net package maps a leading '@' to the abstract namespace.
	return &Notifier{addr: &net.UnixAddr{Name: path, Net: "unixgram"}}
}

// Send sends the states as one datagram. A nil notifier sends nothing.
func (n *Notifier) Send(states ...string) error {
	if n == nil || n.addr == nil {
		return nil
	}
	for _, s := range states {
		if !strings.Contains(s, "=") {
			return fmt.Errorf("sd_notify: %q is not KEY=VALUE", s)
		}
	}
	// A fresh unbound socket each time, as libsystemd does: nothing to
	// keep open across a reload, and the kernel reports the sender's pid,
	// which is what NotifyAccess=main checks.
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(strings.Join(states, "\n") + "\n")); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// ReloadingNow is the RELOADING=1 message with the MONOTONIC_USEC
// timestamp systemd wants with it (sd_notify(3)): it tells this reload
// from an earlier one.
func ReloadingNow() []string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return []string{Reloading}
	}
	usec := ts.Nano() / 1e3
	return []string{Reloading, "MONOTONIC_USEC=" + strconv.FormatInt(usec, 10)}
}

// Status is a STATUS= line, shown by `systemctl status`.
func Status(s string) string {
	return "STATUS=" + strings.ReplaceAll(s, "\n", " ")
}

// WatchdogInterval is how often systemd wants WATCHDOG=1 (WatchdogSec=),
// from $WATCHDOG_USEC, when the watchdog is on and meant for this process
// ($WATCHDOG_PID, when set, names it). ok is false when there is no
// watchdog.
func WatchdogInterval() (d time.Duration, ok bool, err error) {
	return watchdogInterval(os.Getenv("WATCHDOG_USEC"), os.Getenv("WATCHDOG_PID"), os.Getpid())
}

func watchdogInterval(usec, pid string, self int) (time.Duration, bool, error) {
	if usec == "" {
		return 0, false, nil
	}
	if pid != "" {
		p, err := strconv.Atoi(pid)
		if err != nil {
			return 0, false, fmt.Errorf("sd_notify: WATCHDOG_PID=%q: %w", pid, err)
		}
		if p != self {
			return 0, false, nil
		}
	}
	u, err := strconv.ParseInt(usec, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("sd_notify: WATCHDOG_USEC=%q: %w", usec, err)
	}
	if u <= 0 {
		return 0, false, errors.New("sd_notify: WATCHDOG_USEC is not positive")
	}
	return time.Duration(u) * time.Microsecond, true, nil
}

package e2e

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSystemdNotify runs the daemon as systemd would with Type=notify and
// WatchdogSec: READY=1 once the table is in, WATCHDOG=1 pings, RELOADING=1
// then READY=1 around SIGHUP, STOPPING=1 on SIGTERM. The socket is a
// unixgram socket standing in for systemd's.
func TestSystemdNotify(t *testing.T) {
	h := newHost(t, fmt.Sprintf("open = [\"tcp/%d\"]", openPort))
	path := filepath.Join(h.dir, "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msgs := make(chan string, 64)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	want := func(prefix string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case m, ok := <-msgs:
				if !ok {
					t.Fatalf("notify socket closed waiting for %q", prefix)
				}
				if strings.HasPrefix(m, prefix) {
					return
				}
			case <-deadline:
				t.Fatalf("no %q from the daemon:\n%s", prefix, h.proc.Output())
			}
		}
	}
	// WATCHDOG_PID is left out: systemd sets it to the main pid, which
	// here is `ip netns exec`'s child, not known in advance.
	h.start("NOTIFY_SOCKET="+path, "WATCHDOG_USEC=600000")
	want("READY=1")
	if out := h.server.Run(t, "nft", "list", "tables"); !strings.Contains(out, "inet moat") {
		t.Fatalf("READY=1 before table inet moat was installed: %s", out)
	}
	want("WATCHDOG=1")
	want("WATCHDOG=1")
	if err := h.proc.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	want("RELOADING=1\nMONOTONIC_USEC=")
	want("READY=1")
	if err := h.proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	want("STOPPING=1")
}

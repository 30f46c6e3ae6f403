package sdnotify

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// listen makes a unixgram socket standing in for systemd's.
func listen(t *testing.T, path string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func recv(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestSendOneDatagram(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	c := listen(t, path)
	n := New(path)
	if err := n.Send(Ready, Status("guarding")); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, c); got != "READY=1\nSTATUS=guarding\n" {
		t.Fatalf("got %q", got)
	}
	if err := n.Send(ReloadingNow()...); err != nil {
		t.Fatal(err)
	}
	got := recv(t, c)
	if !strings.HasPrefix(got, "RELOADING=1\nMONOTONIC_USEC=") {
		t.Fatalf("got %q", got)
	}
	for _, s := range []string{Ready, Watchdog, Stopping} {
		if err := n.Send(s); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, c); got != s+"\n" {
			t.Fatalf("got %q, want %q", got, s)
		}
	}
}

func TestAbstractSocket(t *testing.T) {
	name := "@moat-sdnotify-test-" + filepath.Base(t.TempDir())
	c := listen(t, name)
	if err := New(name).Send(Watchdog); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, c); got != "WATCHDOG=1\n" {
		t.Fatalf("got %q", got)
	}
}

func TestNoSocketSendsNothing(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n := FromEnv()
	if n != nil {
		t.Fatalf("FromEnv with no NOTIFY_SOCKET: %v", n)
	}
	if err := n.Send(Ready); err != nil {
		t.Fatal(err)
	}
}

func TestSendFailsWithoutListener(t *testing.T) {
	if err := New(filepath.Join(t.TempDir(), "gone")).Send(Ready); err == nil {
		t.Fatal("want an error when nobody listens")
	}
	if err := New("/x").Send("READY"); err == nil {
		t.Fatal("want an error for a state without =")
	}
}

func TestWatchdogInterval(t *testing.T) {
	for _, tc := range []struct {
		usec, pid string
		want      time.Duration
		ok, err   bool
	}{
		{"", "", 0, false, false},
		{"30000000", "", 30 * time.Second, true, false},
		{"30000000", "42", 30 * time.Second, true, false},
		{"30000000", "43", 0, false, false}, // meant for another process
		{"x", "", 0, false, true},
		{"0", "", 0, false, true},
	} {
		d, ok, err := watchdogInterval(tc.usec, tc.pid, 42)
		if d != tc.want || ok != tc.ok || (err != nil) != tc.err {
			t.Errorf("watchdogInterval(%q, %q) = %v %v %v", tc.usec, tc.pid, d, ok, err)
		}
	}
}

package daemon

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/sshd"
)

// TestReadSSHDLogging runs a stand-in sshd: the wrapper must read the two
// keywords, turn a failure into Err, and give up on a hung sshd in time.
func TestReadSSHDLogging(t *testing.T) {
	dir := t.TempDir()
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ok := script("ok", "printf 'port 22\\nsyslogfacility LOCAL5\\nloglevel ERROR\\n'")
	if got := readSSHDLogging(context.Background(), sshd.Server{Binary: ok}); got.Err != nil || got.Facility != "LOCAL5" || got.Level != "ERROR" {
		t.Errorf("got %+v, want LOCAL5 ERROR", got)
	}
	fails := script("fails", "echo 'sshd: no hostkeys available -- exiting.' >&2; exit 1")
	if got := readSSHDLogging(context.Background(), sshd.Server{Binary: fails}); got.Err == nil || !strings.Contains(got.Err.Error(), "no hostkeys") {
		t.Errorf("got %+v, want sshd's error", got)
	}
	if got := readSSHDLogging(context.Background(), sshd.Server{Binary: filepath.Join(dir, "missing")}); !errors.Is(got.Err, fs.ErrNotExist) {
		t.Errorf("got %+v, want fs.ErrNotExist", got)
	}
	defer func(d time.Duration) { sshdLoggingTimeout = d }(sshdLoggingTimeout)
	sshdLoggingTimeout = 100 * time.Millisecond
	hangs := script("hangs", "exec sleep 60")
	start := time.Now()
	if got := readSSHDLogging(context.Background(), sshd.Server{Binary: hangs}); !errors.Is(got.Err, context.DeadlineExceeded) {
		t.Errorf("got %+v, want a timeout", got)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a hung sshd held the start for %s", d)
	}
}

package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestDiskFull fills a small tmpfs (root only) and checks the error says
// what happened and where, and that the store still works for what fits.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	dir := t.TempDir()
	if err := syscall.Mount("moat-test", dir, "tmpfs", 0, "size=512k,mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmounting the test tmpfs %s: %v", dir, err)
		}
	})
	state := filepath.Join(dir, "state")
	s, err := Open(state)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.PutBans(randomEntries(20_000))
	if err == nil {
		t.Fatal("PutBans of 20k entries fit in 512 KiB")
	}
	t.Logf("PutBans on a full disk: %v", err)
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "disk full under "+state) {
		t.Errorf("error %q does not say the disk is full under %s", err, state)
	}
	// The failed transaction left nothing behind, and small writes still work.
	if bans, err := s.Bans(); err != nil || len(bans) != 0 {
		t.Errorf("after the failed burst: %d bans, %v", len(bans), err)
	}
	if _, err := s.PutBan(Entry{Prefix: pfx("192.0.2.1")}); err != nil {
		t.Errorf("small PutBan after the failed burst: %v", err)
	}
}

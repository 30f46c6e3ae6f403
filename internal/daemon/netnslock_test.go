package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
)

// A second lock in the same network namespace is refused with the first
// holder's pid and state_dir; once released, the lock can be taken again.
func TestNetnsLockRefusesASecondHolder(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs CAP_NET_ADMIN: without it the holder looks like a squatter")
	}
	// Its own name: the real one may be held by a moat on this host.
	netnsLockName = fmt.Sprintf("@moat-test-%x", rand.Uint64())
	t.Cleanup(func() { netnsLockName = "@moat-netns-lock" })
	log := slog.New(slog.DiscardHandler)
	first, err := lockNetns(log, "/var/lib/moat-a", "/run/moat-a.sock")
	if err != nil {
		t.Fatal(err)
	}
	_, err = lockNetns(log, "/var/lib/moat-b", "/run/moat-b.sock")
	if !errors.Is(err, ErrNetnsTaken) {
		t.Fatalf("second lock: %v, want ErrNetnsTaken", err)
	}
	want := fmt.Sprintf("another moat (pid %d, state_dir /var/lib/moat-a, socket /run/moat-a.sock)", os.Getpid())
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("second lock: %q, want it to name %q", err, want)
	}
	first.Close()
	again, err := lockNetns(log, "/var/lib/moat-b", "/run/moat-b.sock")
	if err != nil {
		t.Fatalf("the lock after its holder released it: %v", err)
	}
	again.Close()
}

package ban

import (
	"syscall"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/firewall"
)

// Every store write that fails is counted, whichever path made it: the
// daemon must not mark a store clean that lacks what the kernel holds.
func TestUnsavedCountsEveryFailedStoreWrite(t *testing.T) {
	fail := func(st *memStore, err error) {
		st.mu.Lock()
		st.fail = err
		st.mu.Unlock()
	}
	for _, c := range []struct {
		name string
		do   func(t *testing.T, m *Manager)
	}{
		{"add", func(t *testing.T, m *Manager) {
			if _, err := m.Add(Request{Prefix: mp("10.210.1.1/32"), For: time.Hour}, t0); err == nil {
				t.Fatal("a ban on a full disk said nothing")
			}
		}},
		{"add nowait", func(t *testing.T, m *Manager) {
			if _, err := m.Add(Request{Prefix: mp("10.210.1.1/32"), For: time.Hour, NoWait: true}, t0); err != nil {
				t.Fatal(err) // the kernel has it; the store failure comes later
			}
			m.Flush()
		}},
		{"adopt", func(t *testing.T, m *Manager) {
			if _, err := m.Adopt([]firewall.Element{{Prefix: mp("10.210.1.1/32"), Timeout: time.Hour}}, t0); err == nil {
				t.Fatal("adopting on a full disk said nothing")
			}
		}},
		{"del", func(t *testing.T, m *Manager) {
			if _, err := m.Del(mp("10.210.9.9/32"), t0); err == nil {
				t.Fatal("an unban the store could not record said nothing")
			}
		}},
		{"allow", func(t *testing.T, m *Manager) {
			if _, _, err := m.Allow(AllowRequest{Prefix: mp("10.210.2.2/32")}, t0); err == nil {
				t.Fatal("an allow on a full disk said nothing")
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, enf := newMemStore(), newEnforcer()
			m, err := New(st, enf, nil, t0, func(error) {})
			if err != nil {
				t.Fatal(err)
			}
			m.OnStoreError(func(error) {})
			if _, err := m.Add(Request{Prefix: mp("10.210.9.9/32"), For: time.Hour}, t0); err != nil {
				t.Fatal(err)
			}
			if n := m.Unsaved(); n != 0 {
				t.Fatalf("Unsaved() = %d after writes that worked", n)
			}
			fail(st, syscall.ENOSPC)
			c.do(t, m)
			if n := m.Unsaved(); n != 1 {
				t.Fatalf("Unsaved() = %d after one failed store write, want 1", n)
			}
			// The count stays: the store still lacks what failed, even
			// once the disk has room again.
			fail(st, nil)
			if _, err := m.Add(Request{Prefix: mp("10.210.3.3/32"), For: time.Hour}, t0); err != nil {
				t.Fatal(err)
			}
			if n := m.Unsaved(); n != 1 {
				t.Fatalf("Unsaved() = %d after a later write worked, want 1", n)
			}
		})
	}
}

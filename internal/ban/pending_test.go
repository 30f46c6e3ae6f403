package ban

import (
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/store"
)

// A ban whose store write never happened (moat killed during the fsync)
// is in the pending log, and the next start adopts it from there without
// reading the kernel back; once every write is done, the log is empty.
func TestPendingLogKeepsBansAKillLeftUnsaved(t *testing.T) {
	dir := t.TempDir()
	pend, err := store.OpenPending(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, enf := newMemStore(), newEnforcer()
	m, _ := New(st, enf, nil, t0, func(error) {})
	if _, err := m.SetPending(pend, t0); err != nil {
		t.Fatal(err)
	}
	// One ban saved: the log empties.
	if _, err := m.Add(Request{Prefix: mp("10.210.1.1/32"), For: time.Hour}, t0); err != nil {
		t.Fatal(err)
	}
	if es, _ := pend.Entries(); len(es) != 0 {
		t.Fatalf("the log holds %v after the store write", es)
	}
	// The next one's store write never ends: the "kill" comes first.
	block := make(chan struct{})
	defer close(block)
	st.putHook = func(store.Entry) { <-block }
	if _, err := m.Add(Request{Prefix: mp("10.210.1.2/32"), For: time.Hour, Reason: "killed", NoWait: true}, t0); err != nil {
		t.Fatal(err)
	}
	pend.Close()

	// The next start: a store without the ban, the log with it.
	st2 := newMemStore()
	m2, _ := New(st2, newEnforcer(), nil, t0, func(error) {})
	pend2, err := store.OpenPending(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer pend2.Close()
	got, err := m2.SetPending(pend2, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Prefix != mp("10.210.1.2/32") || !got[0].Expires.Equal(t0.Add(time.Hour)) {
		t.Fatalf("adopted %+v, want 10.210.1.2 until %s", got, t0.Add(time.Hour))
	}
	if _, ok := st2.bans[mp("10.210.1.2/32")]; !ok {
		t.Fatal("the adopted ban is not in the store")
	}
	if es, _ := pend2.Entries(); len(es) != 0 {
		t.Fatalf("the log still holds %v once adopted", es)
	}
}

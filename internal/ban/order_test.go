package ban

import (
	"errors"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/store"
)

// A ban must be in the kernel before its store write starts: the write is
// an fsync, tens of milliseconds on a busy disk.
func TestAddReachesKernelBeforeTheStore(t *testing.T) {
	st, enf := newMemStore(), newEnforcer()
	m, _ := New(st, enf, nil, t0, func(error) {})
	var inKernel bool
	st.putHook = func(e store.Entry) {
		_, inKernel = enf.k[firewall.Bans].els[e.Prefix]
	}
	if _, err := m.Add(Request{Prefix: mp("10.210.1.1/32"), For: time.Hour}, t0); err != nil {
		t.Fatal(err)
	}
	if !inKernel {
		t.Fatal("the store was written before the kernel had the ban")
	}
	if _, ok := st.bans[mp("10.210.1.1/32")]; !ok {
		t.Fatal("Add returned before the store had the ban")
	}
}

// A second ban does not wait for the first one's store write.
func TestAddDoesNotWaitForAnotherBansStoreWrite(t *testing.T) {
	st, enf := newMemStore(), newEnforcer()
	m, _ := New(st, enf, nil, t0, func(error) {})
	slow := mp("10.210.1.1/32")
	entered, release := make(chan struct{}), make(chan struct{})
	st.putHook = func(e store.Entry) {
		if e.Prefix == slow {
			close(entered)
			<-release
		}
	}
	first := make(chan error, 1)
	go func() {
		_, err := m.Add(Request{Prefix: slow, For: time.Hour}, t0)
		first <- err
	}()
	<-entered
	// The second Add's store write queues behind the first, so it cannot
	// return yet; its kernel change must already be there.
	second := make(chan error, 1)
	go func() {
		_, err := m.Add(Request{Prefix: mp("10.210.1.2/32"), For: time.Hour}, t0)
		second <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for !m.Active(mp("10.210.1.2/32").Addr(), t0) || !kernelHas(m, enf, "10.210.1.2/32") {
		if time.Now().After(deadline) {
			t.Fatal("the second ban waited for the first ban's store write to reach the kernel")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case <-second:
		t.Fatal("the second ban's store write overtook the first one's")
	default:
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	if len(st.bans) != 2 {
		t.Fatalf("store holds %d bans, want 2", len(st.bans))
	}
}

// kernelHas reads the fake kernel under the manager's lock, as Update
// writes it.
func kernelHas(m *Manager, enf *kernelEnforcer, p string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := enf.k[firewall.Bans].els[mp(p)]
	return ok
}

// A ban lifted while its store write is still running stays lifted in the
// store: the writes land in the order of the changes.
func TestDelDuringAStoreWriteKeepsOrder(t *testing.T) {
	st, enf := newMemStore(), newEnforcer()
	m, _ := New(st, enf, nil, t0, func(error) {})
	p := mp("10.210.1.1/32")
	entered, release := make(chan struct{}), make(chan struct{})
	st.putHook = func(store.Entry) {
		close(entered)
		<-release
	}
	added := make(chan error, 1)
	go func() {
		_, err := m.Add(Request{Prefix: p, For: time.Hour}, t0)
		added <- err
	}()
	<-entered
	st.putHook = nil
	deleted := make(chan error, 1)
	go func() {
		_, err := m.Del(p, t0)
		deleted <- err
	}()
	time.Sleep(20 * time.Millisecond) // let Del reach the store lock if it could
	close(release)
	if err := <-added; err != nil {
		t.Fatal(err)
	}
	if err := <-deleted; err != nil {
		t.Fatal(err)
	}
	if _, ok := st.bans[p]; ok {
		t.Fatal("the ban's store write landed after its removal: it would come back at restart")
	}
	if len(enf.k[firewall.Bans].els) != 0 {
		t.Fatal("the kernel still holds the lifted ban")
	}
}

func TestAddCountsRepeatBansBeforeTheStoreWrite(t *testing.T) {
	st, enf := newMemStore(), newEnforcer()
	m, _ := New(st, enf, nil, t0, func(error) {})
	p := mp("10.210.1.1/32")
	b := &Backoff{Base: time.Minute, Multiplier: 2, Max: time.Hour}
	for i, want := range []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute} {
		now := t0.Add(time.Duration(i) * time.Hour)
		e, err := m.Add(Request{Prefix: p, Backoff: b}, now)
		if err != nil {
			t.Fatal(err)
		}
		if e.Count != i+1 || e.Expires.Sub(now) != want {
			t.Fatalf("ban %d: count %d, lasts %v; want %d, %v", i+1, e.Count, e.Expires.Sub(now), i+1, want)
		}
		if got := st.bans[p].Count; got != i+1 {
			t.Fatalf("ban %d: the store counts %d", i+1, got)
		}
		if _, err := m.Del(p, now); err != nil { // history stays
			t.Fatal(err)
		}
	}
}

func TestAddWithNeitherKernelNorStoreSaysBoth(t *testing.T) {
	st, enf := newMemStore(), &failingEnforcer{}
	m, _ := New(st, enf, nil, t0, func(error) {})
	st.fail = syscall.ENOSPC
	_, err := m.Add(Request{Prefix: mp("10.210.1.1/32"), For: time.Hour}, t0)
	if err == nil || !errors.Is(err, ErrNotPersisted) || !strings.Contains(err.Error(), "neither in the kernel") {
		t.Fatalf("err = %v", err)
	}
	if !m.Active(mp("10.210.1.1/32").Addr(), t0) {
		t.Fatal("the ban is not kept in memory for the reconcile to enforce")
	}
}

type failingEnforcer struct{}

func (failingEnforcer) Update(firewall.SetKind, []firewall.Element, []firewall.Element) error {
	return errors.New("netlink: no such table")
}

// Adopt takes into the store what only the kernel held at start, with the
// time the kernel had left, and nothing the store or policy already covers.
func TestAdoptTakesWhatOnlyTheKernelHeld(t *testing.T) {
	st, enf := newMemStore(), newEnforcer()
	m, _ := New(st, enf, []netip.Prefix{mp("10.210.5.0/24")}, t0, func(error) {})
	if _, err := m.Add(Request{Prefix: mp("10.210.2.0/24"), For: time.Hour}, t0); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(time.Minute)
	kernel := []firewall.Element{
		{Prefix: mp("10.210.2.0/24"), Timeout: 59 * time.Minute}, // in the store
		{Prefix: mp("10.210.2.9/32"), Timeout: time.Minute},      // inside a stored ban
		{Prefix: mp("10.210.1.1/32"), Timeout: 30 * time.Second}, // only in the kernel
		{Prefix: mp("fd00:210::/64")},                            // only in the kernel, no timeout
		{Prefix: mp("10.210.5.7/32"), Timeout: time.Hour},        // allowed by the config now
		{Prefix: mp("127.0.0.1/32"), Timeout: time.Hour},         // never bannable
	}
	got, err := m.Adopt(kernel, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("adopted %v, want 10.210.1.1 and fd00:210::/64", got)
	}
	e := st.bans[mp("10.210.1.1/32")]
	if e.Origin != OriginRecovered || !e.Expires.Equal(now.Add(30*time.Second)) || e.Count != 1 {
		t.Fatalf("stored %+v", e)
	}
	if e := st.bans[mp("fd00:210::/64")]; e.Origin != OriginRecovered || !e.Expires.IsZero() {
		t.Fatalf("stored %+v", e)
	}
	bans, _ := m.Elements(now)
	if len(bans) != 3 {
		t.Fatalf("the install would hold %v, want the stored /24 and both adopted bans", bans)
	}
	if n, _ := m.Counts(); n != 3 {
		t.Fatalf("%d live bans, want 3", n)
	}
}

// A NoWait ban returns with the kernel changed and the store write still
// queued; Flush waits for it, and a store failure reaches the handler.
func TestNoWaitBanAndFlush(t *testing.T) {
	st, enf := newMemStore(), newEnforcer()
	m, _ := New(st, enf, nil, t0, func(error) {})
	reported := make(chan error, 1)
	m.OnStoreError(func(err error) { reported <- err })
	release := make(chan struct{})
	st.putHook = func(store.Entry) { <-release }
	if _, err := m.Add(Request{Prefix: mp("10.210.1.1/32"), For: time.Hour, NoWait: true}, t0); err != nil {
		t.Fatal(err)
	}
	if !kernelHas(m, enf, "10.210.1.1/32") {
		t.Fatal("NoWait returned before the kernel had the ban")
	}
	flushed := make(chan struct{})
	go func() { m.Flush(); close(flushed) }()
	select {
	case <-flushed:
		t.Fatal("Flush returned while a store write was still queued")
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	<-flushed
	st.mu.Lock()
	_, ok := st.bans[mp("10.210.1.1/32")]
	st.mu.Unlock()
	if !ok {
		t.Fatal("the NoWait ban never reached the store")
	}

	st.putHook = nil
	st.mu.Lock()
	st.fail = syscall.ENOSPC
	st.mu.Unlock()
	if _, err := m.Add(Request{Prefix: mp("10.210.1.2/32"), For: time.Hour, NoWait: true}, t0); err != nil {
		t.Fatal(err)
	}
	m.Flush()
	select {
	case err := <-reported:
		if !errors.Is(err, ErrNotPersisted) || !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("reported %v", err)
		}
	default:
		t.Fatal("the store failure of a NoWait ban was not reported")
	}
}

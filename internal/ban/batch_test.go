package ban

import (
	"maps"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/protect"
	"github.com/moat-fw/moat/internal/store"
)

// countingEnforcer counts kernel transactions.
type countingEnforcer struct {
	*kernelEnforcer
	calls int
}

func (c *countingEnforcer) Update(kind firewall.SetKind, del, add []firewall.Element) error {
	c.calls++
	return c.kernelEnforcer.Update(kind, del, add)
}

func TestAddRemoteAppliesPolicyInOneTransaction(t *testing.T) {
	st, enf := newMemStore(), &countingEnforcer{kernelEnforcer: newEnforcer()}
	m, err := New(st, enf, []netip.Prefix{mp("10.210.5.0/24")}, t0, func(error) {})
	if err != nil {
		t.Fatal(err)
	}
	m.SetProtector(setProtector{protect.New([]protect.Entry{
		protect.Host(netip.MustParseAddr("10.210.0.254"), protect.WhyRouter),
	})})
	// A local ban that outlasts the remote one is kept as it is.
	if _, err := m.Add(Request{Prefix: mp("10.210.8.8/32"), For: 24 * time.Hour, Origin: "login"}, t0); err != nil {
		t.Fatal(err)
	}
	enf.calls = 0
	hour := t0.Add(time.Hour)
	rs := []Remote{
		{Prefix: mp("10.210.1.1/32"), Until: hour, Reason: "login", Host: "a"},
		{Prefix: mp("10.210.0.254/32"), Until: hour, Host: "a"},                // the router
		{Prefix: mp("10.210.0.0/16"), Until: hour, Host: "a"},                  // covers the router and the allow list
		{Prefix: mp("10.210.5.7/32"), Until: hour, Host: "a"},                  // allow list
		{Prefix: mp("127.0.0.1/32"), Until: hour, Host: "a"},                   // loopback
		{Prefix: mp("10.210.2.2/32"), Until: t0, Host: "a"},                    // ended
		{Prefix: mp("10.210.8.8/32"), Until: hour, Host: "a"},                  // longer here
		{Prefix: mp("10.210.3.3/32"), Host: "b"},                               // until removed
		{Prefix: mp("10.210.4.0/24"), Until: hour, Host: "b"},                  // a prefix ...
		{Prefix: mp("10.210.4.4/32"), Until: hour, Host: "b"},                  // ... and a host inside it
		{Prefix: mp("fd00:210::1/128"), Until: hour, Host: "b"},                // IPv6
		{Prefix: mp("10.210.1.1/32"), Until: t0.Add(2 * time.Hour), Host: "c"}, // the same again, longer: replaces in the batch
	}
	out, err := m.AddRemote(rs, t0)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"", SkipProtected, SkipProtected, SkipAllowed, SkipInvalid, SkipExpired, SkipLongerLocal, "", "", "", "", ""}
	for i, o := range out {
		if o.Skipped != want[i] {
			t.Errorf("%s: skipped %q, want %q (%s)", rs[i].Prefix, o.Skipped, want[i], o.Detail)
		}
	}
	if enf.calls != 1 {
		t.Errorf("%d kernel transactions, want 1", enf.calls)
	}
	k := enf.k[firewall.Bans].els
	for _, p := range []string{"10.210.1.1/32", "10.210.3.3/32", "10.210.4.0/24", "fd00:210::1/128", "10.210.8.8/32"} {
		if _, ok := k[mp(p)]; !ok {
			t.Errorf("%s not in the kernel: %v", p, k)
		}
	}
	for _, p := range []string{"10.210.0.254/32", "10.210.0.0/16", "10.210.5.7/32", "10.210.2.2/32", "10.210.4.4/32"} {
		if _, ok := k[mp(p)]; ok {
			t.Errorf("%s in the kernel", p)
		}
	}
	if got := k[mp("10.210.1.1/32")]; got != 2*time.Hour {
		t.Errorf("10.210.1.1 timeout %v, want the later ban's 2h", got)
	}
	if got := k[mp("10.210.8.8/32")]; got != 24*time.Hour {
		t.Errorf("the local ban was changed: timeout %v", got)
	}
	m.Flush() // the store write follows the kernel
	e := st.bans[mp("10.210.3.3/32")]
	if e.Origin != OriginFleet || e.Host != "b" || !e.Expires.IsZero() {
		t.Errorf("stored %+v", e)
	}
	if n := fleetBans(m, t0); n != 5 {
		t.Errorf("%d fleet bans, want 5", n)
	}

	// A remote unban lifts only fleet bans.
	if ok, err := m.DelRemote(mp("10.210.8.8/32"), t0); ok || err != nil {
		t.Errorf("DelRemote of a local ban: %v %v", ok, err)
	}
	if ok, err := m.DelRemote(mp("10.210.3.3/32"), t0); !ok || err != nil {
		t.Errorf("DelRemote of a fleet ban: %v %v", ok, err)
	}
	if _, ok := k[mp("10.210.3.3/32")]; ok {
		t.Error("10.210.3.3 still in the kernel")
	}
}

func TestKernelDeltaCancelsAddThenDelete(t *testing.T) {
	var k kernelDelta
	a := firewall.Element{Prefix: mp("10.0.0.1/32")}
	old := firewall.Element{Prefix: mp("10.0.0.2/32")}
	k.merge(nil, []firewall.Element{a})
	k.merge([]firewall.Element{old}, []firewall.Element{old})
	k.merge([]firewall.Element{a}, nil)
	b := firewall.Element{Prefix: mp("10.0.0.3/32")}
	k.merge(nil, []firewall.Element{b})
	k.merge([]firewall.Element{old}, []firewall.Element{old})
	del, add := k.lists()
	if len(del) != 1 || del[0] != old || len(add) != 2 || add[0] != old || add[1] != b {
		t.Fatalf("del %v add %v; want the replacement of the deleted element first", del, add)
	}
}

// Until something is deleted the additions are listed as made; the first
// deletion folds them.
func TestKernelDeltaListsUntilADeletion(t *testing.T) {
	var k kernelDelta
	a, b := firewall.Element{Prefix: mp("10.0.0.1/32")}, firewall.Element{Prefix: mp("10.0.0.2/32")}
	k.merge(nil, []firewall.Element{a})
	k.merge(nil, []firewall.Element{b})
	if del, add := k.lists(); len(del) != 0 || len(add) != 2 || add[0] != a || add[1] != b {
		t.Fatalf("del %v add %v; want a, b", del, add)
	}
	a2 := firewall.Element{Prefix: a.Prefix, Timeout: time.Hour}
	k.merge([]firewall.Element{a}, []firewall.Element{a2}) // a put again in the batch
	if del, add := k.lists(); len(del) != 0 || len(add) != 2 || add[0] != a2 || add[1] != b {
		t.Fatalf("del %v add %v; want a with its new timeout, and b", del, add)
	}
}

// A remote ban's store write, still under way, must not deadlock with an
// unban that holds the lock while waiting for its turn.
func TestAddRemoteThenDelDuringStoreWrite(t *testing.T) {
	st, enf := newMemStore(), newEnforcer()
	m, err := New(st, enf, nil, t0, func(error) {})
	if err != nil {
		t.Fatal(err)
	}
	st.putHook = func(store.Entry) { time.Sleep(100 * time.Millisecond) }
	p := mp("10.210.1.1/32")
	if _, err := m.AddRemote([]Remote{{Prefix: p, Until: t0.Add(time.Hour), Host: "a"}}, t0); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := m.Del(p, t0); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Del and AddRemote's store write deadlocked")
	}
}

// Past chunk bans, AddRemote splits the kernel's transactions; a ban that
// replaces one in the kernel is in the first, with its deletion.
func TestAddRemoteChunks(t *testing.T) {
	defer func(n int) { chunk = n }(chunk)
	chunk = 2
	st, enf := newMemStore(), &countingEnforcer{kernelEnforcer: newEnforcer()}
	m, err := New(st, enf, nil, t0, func(error) {})
	if err != nil {
		t.Fatal(err)
	}
	old := mp("10.210.9.9/32")
	if _, err := m.AddRemote([]Remote{{Prefix: old, Until: t0.Add(time.Minute), Host: "a"}}, t0); err != nil {
		t.Fatal(err)
	}
	enf.calls = 0
	var rs []Remote
	for i := range 4 {
		rs = append(rs, Remote{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 210, 8, byte(i)}), 32), Until: t0.Add(time.Hour), Host: "b"})
	}
	rs = append(rs, Remote{Prefix: old, Until: t0.Add(time.Hour), Host: "b"}) // longer: replaces
	if _, err := m.AddRemote(rs, t0); err != nil {
		t.Fatal(err)
	}
	if enf.calls != 3 {
		t.Errorf("%d kernel transactions for 5 bans in chunks of 2, want 3", enf.calls)
	}
	k := enf.k[firewall.Bans].els
	if len(k) != 5 || k[old] != time.Hour {
		t.Errorf("kernel: %v", k)
	}
	m.Flush()
	if len(st.bans) != 5 {
		t.Errorf("stored %d bans, want 5", len(st.bans))
	}
}

// The compact records keep which host a fleet ban came from: `moat ban
// list` shows it, and a restart (the store) keeps it.
func TestFleetHostKeptInRecords(t *testing.T) {
	st, enf := newMemStore(), newEnforcer()
	m, err := New(st, enf, nil, t0, func(error) {})
	if err != nil {
		t.Fatal(err)
	}
	rs := []Remote{
		{Prefix: mp("10.210.1.1/32"), Until: t0.Add(time.Hour), Reason: "login", Host: "web-1"},
		{Prefix: mp("10.210.2.0/24"), Until: t0.Add(time.Hour), Reason: "scan", Host: "web-2"},
	}
	if _, err := m.AddRemote(rs, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Add(Request{Prefix: mp("10.210.3.3/32"), Origin: "login", For: time.Hour}, t0); err != nil {
		t.Fatal(err)
	}
	m.Flush()
	check := func(m *Manager, when string) {
		t.Helper()
		hosts := map[netip.Prefix]string{}
		for _, e := range m.List(t0) {
			hosts[e.Prefix] = e.Host
		}
		want := map[netip.Prefix]string{mp("10.210.1.1/32"): "web-1", mp("10.210.2.0/24"): "web-2", mp("10.210.3.3/32"): ""}
		if !maps.Equal(hosts, want) {
			t.Fatalf("%s: hosts %v, want %v", when, hosts, want)
		}
		if got := fleetBans(m, t0); got != 2 {
			t.Fatalf("%s: %d fleet bans, want 2", when, got)
		}
	}
	check(m, "running")
	m2, err := New(st, newEnforcer(), nil, t0, func(error) {})
	if err != nil {
		t.Fatal(err)
	}
	check(m2, "after a restart")
}

// batchStore records the bans of each PutBans call, and holds the first
// until gate is closed (a slow fsync).
type batchStore struct {
	*memStore
	gate    chan struct{}
	mu      sync.Mutex
	batches [][]netip.Prefix
}

func (s *batchStore) PutBans(es []store.Entry) ([]store.Entry, error) {
	s.mu.Lock()
	first := len(s.batches) == 0
	var ps []netip.Prefix
	for _, e := range es {
		ps = append(ps, e.Prefix)
	}
	s.batches = append(s.batches, ps)
	s.mu.Unlock()
	if first {
		<-s.gate
	}
	return s.memStore.PutBans(es)
}

// writing waits until the first write is under way (held at the gate).
func (s *batchStore) writing(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		s.mu.Lock()
		n := len(s.batches)
		s.mu.Unlock()
		if n > 0 {
			return
		}
	}
	t.Fatal("the first store write did not start")
}

func remote(p string, until time.Time) []Remote {
	return []Remote{{Prefix: mp(p), Until: until, Host: "a"}}
}

// While a store write is under way, the fleet bans applied meanwhile wait
// in one write: three AddRemote calls, one transaction.
func TestAddRemoteStoreWritesJoin(t *testing.T) {
	st := &batchStore{memStore: newMemStore(), gate: make(chan struct{})}
	m, err := New(st, newEnforcer(), nil, t0, func(error) {})
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range []string{"10.210.1.1/32", "10.210.1.2/32", "10.210.1.3/32", "10.210.1.4/32"} {
		if _, err := m.AddRemote(remote(p, t0.Add(time.Hour)), t0); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			st.writing(t)
		}
	}
	if n := m.RemoteBacklog(); n != 4 {
		t.Errorf("backlog %d, want 4", n)
	}
	close(st.gate)
	m.Flush()
	if len(st.batches) != 2 || len(st.batches[0]) != 1 || len(st.batches[1]) != 3 {
		t.Errorf("store writes %v; want the first alone and the three applied during it together", st.batches)
	}
	if n := m.RemoteBacklog(); n != 0 {
		t.Errorf("backlog %d after Flush, want 0", n)
	}
}

// A fleet ban applied after a guard's ban of the same address was queued
// for the store does not join an earlier write: the store ends as memory
// does (the longer fleet ban replaced the guard's).
func TestAddRemoteStoreWriteKeepsOrder(t *testing.T) {
	st := &batchStore{memStore: newMemStore(), gate: make(chan struct{})}
	m, err := New(st, newEnforcer(), nil, t0, func(error) {})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.AddRemote(remote("10.210.1.1/32", t0.Add(time.Hour)), t0); err != nil { // writing, held
		t.Fatal(err)
	}
	st.writing(t)
	if _, err := m.AddRemote(remote("10.210.1.2/32", t0.Add(time.Hour)), t0); err != nil { // waiting for its turn
		t.Fatal(err)
	}
	p := mp("10.210.1.3/32")
	if _, err := m.Add(Request{Prefix: p, For: time.Minute, Origin: "login", NoWait: true}, t0); err != nil {
		t.Fatal(err)
	}
	out, err := m.AddRemote(remote("10.210.1.3/32", t0.Add(time.Hour)), t0)
	if err != nil || out[0].Skipped != "" {
		t.Fatalf("%+v %v", out, err)
	}
	close(st.gate)
	m.Flush()
	if e := st.bans[p]; e.Origin != OriginFleet {
		t.Errorf("store holds %+v for %s; memory holds the fleet ban", e, p)
	}
}

// fleetBans counts the live fleet bans.
func fleetBans(m *Manager, now time.Time) int {
	n := 0
	m.Each(now, func(e store.Entry) {
		if e.Origin == OriginFleet {
			n++
		}
	})
	return n
}

// A replay's fleet bans are held from the store until released, then
// written in the store's key order by chunks, as memory holds them then:
// one lifted meanwhile is not written, one a guard replaced keeps the
// guard's record. Flush releases a hold (a daemon stopping mid-replay).
func TestHeldRemoteWrites(t *testing.T) {
	defer func(n int) { chunk = n }(chunk)
	chunk = 2
	st := &batchStore{memStore: newMemStore(), gate: make(chan struct{})}
	close(st.gate)
	m, err := New(st, newEnforcer(), nil, t0, func(error) {})
	if err != nil {
		t.Fatal(err)
	}
	m.HoldRemoteWrites()
	hour := t0.Add(time.Hour)
	var rs []Remote
	for _, p := range []string{"fd00:210::9/128", "10.210.9.9/32", "10.210.1.1/32", "10.210.5.0/24", "10.210.5.5/32", "10.210.1.1/32"} {
		rs = append(rs, remote(p, hour)...)
	}
	if _, err := m.AddRemote(rs, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := m.AddRemote(remote("10.210.3.3/32", hour), t0); err != nil {
		t.Fatal(err)
	}
	if n := len(st.batches); n != 0 || m.RemoteBacklog() != 0 {
		t.Fatalf("%d store writes and a backlog of %d while held, want none", n, m.RemoteBacklog())
	}
	if ok, err := m.DelRemote(mp("10.210.9.9/32"), t0); !ok || err != nil {
		t.Fatalf("DelRemote: %v %v", ok, err)
	}
	local := mp("10.210.3.3/32")
	if _, err := m.Add(Request{Prefix: local, For: 48 * time.Hour, Origin: "login"}, t0); err != nil {
		t.Fatal(err)
	}
	saved := make(chan struct{})
	m.ReleaseRemoteWrites(func() { close(saved) })
	<-saved
	var got []string
	for _, b := range st.batches {
		for _, p := range b {
			got = append(got, p.String())
		}
	}
	want := []string{"10.210.1.1/32", "10.210.5.0/24", "10.210.5.5/32", "fd00:210::9/128"}
	if !slices.Equal(got, want) {
		t.Errorf("written %v, want %v (key order, lifted and replaced ones left out)", got, want)
	}
	// Chunks of two keys, 10.210.3.3 and 10.210.9.9 left out of theirs.
	if len(st.batches) != 3 {
		t.Errorf("%d store writes %v, want 3 (chunks of 2 keys)", len(st.batches), st.batches)
	}
	if e := st.bans[local]; e.Origin != "login" {
		t.Errorf("store holds %+v for %s, want the guard's ban", e, local)
	}
	if _, ok := st.bans[mp("10.210.9.9/32")]; ok {
		t.Error("a fleet ban lifted while held was written")
	}

	// Flush releases a hold that was never released.
	m.HoldRemoteWrites()
	if _, err := m.AddRemote(remote("10.210.7.7/32", hour), t0); err != nil {
		t.Fatal(err)
	}
	m.Flush()
	if _, ok := st.bans[mp("10.210.7.7/32")]; !ok {
		t.Error("Flush left a held fleet ban unwritten")
	}
	// Released, AddRemote writes as before.
	if _, err := m.AddRemote(remote("10.210.8.8/32", hour), t0); err != nil {
		t.Fatal(err)
	}
	m.Flush()
	if _, ok := st.bans[mp("10.210.8.8/32")]; !ok {
		t.Error("a fleet ban after the hold was not written")
	}
}

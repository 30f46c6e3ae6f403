package ban

import (
	"errors"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/store"
)

// memStore is an in-memory Store whose writes can be made to fail, as a
// full disk makes them, or wait, as a slow fsync does. Its methods lock
// because the manager reads History while another ban's write is running.
type memStore struct {
	mu           sync.Mutex
	bans, allows map[netip.Prefix]store.Entry
	counts       map[netip.Prefix]int
	fail         error
	putHook      func(store.Entry) // called before a ban is written, unlocked
}

func newMemStore() *memStore {
	return &memStore{bans: map[netip.Prefix]store.Entry{}, allows: map[netip.Prefix]store.Entry{}, counts: map[netip.Prefix]int{}}
}

func (s *memStore) PutBan(e store.Entry) (store.Entry, error) {
	out, err := s.PutBans([]store.Entry{e})
	if err != nil {
		return store.Entry{}, err
	}
	return out[0], nil
}
func (s *memStore) PutBans(es []store.Entry) ([]store.Entry, error) {
	if s.putHook != nil {
		for _, e := range es {
			s.putHook(e)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	out := make([]store.Entry, len(es))
	for i, e := range es {
		s.counts[e.Prefix]++
		e.Count = s.counts[e.Prefix]
		s.bans[e.Prefix] = e
		out[i] = e
	}
	return out, nil
}
func (s *memStore) DelBan(p netip.Prefix) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.bans[p]
	delete(s.bans, p)
	return ok, s.fail
}
func (s *memStore) Bans() ([]store.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return values(s.bans), nil
}
func (s *memStore) EachBan(size func(int), fn func(store.Entry)) error {
	bans, err := s.Bans()
	size(len(bans))
	for _, e := range bans {
		fn(e)
	}
	return err
}
func (s *memStore) History(p netip.Prefix) (int, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[p], time.Time{}, nil
}
func (s *memStore) PruneBans(now time.Time) ([]store.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return prune(s.bans, now), nil
}
func (s *memStore) DelEndedBans(ps []netip.Prefix, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range ps {
		if e, ok := s.bans[p]; ok && !e.Active(now) {
			delete(s.bans, p)
		}
	}
	return s.fail
}
func (s *memStore) PutAllow(e store.Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.allows[e.Prefix] = e
	return nil
}
func (s *memStore) DelAllow(p netip.Prefix) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.allows[p]
	delete(s.allows, p)
	return ok, nil
}
func (s *memStore) Allows() ([]store.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return values(s.allows), nil
}
func (s *memStore) PruneAllows(now time.Time) ([]store.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return prune(s.allows, now), nil
}

func values(m map[netip.Prefix]store.Entry) []store.Entry {
	var out []store.Entry
	for _, e := range m {
		out = append(out, e)
	}
	return out
}

func prune(m map[netip.Prefix]store.Entry, now time.Time) []store.Entry {
	var out []store.Entry
	for p, e := range m {
		if !e.Active(now) {
			out = append(out, e)
			delete(m, p)
		}
	}
	return out
}

// kernelEnforcer applies updates to a fakeKernel per kind.
type kernelEnforcer struct {
	k map[firewall.SetKind]*fakeKernel
}

func newEnforcer() *kernelEnforcer {
	return &kernelEnforcer{k: map[firewall.SetKind]*fakeKernel{
		firewall.Bans:   {els: map[netip.Prefix]time.Duration{}},
		firewall.Allows: {els: map[netip.Prefix]time.Duration{}},
	}}
}

func (e *kernelEnforcer) Update(kind firewall.SetKind, del, add []firewall.Element) error {
	return e.k[kind].apply(del, add)
}

var t0 = time.Unix(1_700_000_000, 0)

func mp(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func TestAddRefusesWhatPolicyForbids(t *testing.T) {
	st, enf := newMemStore(), newEnforcer()
	m, err := New(st, enf, []netip.Prefix{mp("10.210.5.0/24")}, t0, func(error) {})
	if err != nil {
		t.Fatal(err)
	}
	session := netip.MustParseAddr("::ffff:10.210.9.9")
	for _, c := range []struct {
		req  Request
		want string
	}{
		{Request{Prefix: mp("127.0.0.1/32")}, "cannot ban 127.0.0.1: it is a loopback address"},
		{Request{Prefix: mp("0.0.0.0/0")}, "covers every address"},
		{Request{Prefix: mp("10.210.5.7/32")}, "overlaps 10.210.5.0/24 in the allow list (from the config's [firewall] allow)"},
		{Request{Prefix: mp("10.210.0.0/16")}, "overlaps 10.210.5.0/24 in the allow list"},
		{Request{Prefix: mp("10.210.9.0/24"), Session: session}, "source of your SSH session"},
		{Request{Prefix: mp("10.210.7.1/32"), For: -time.Second}, "negative"},
	} {
		_, err := m.Add(c.req, t0)
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Add(%v): got %v, want a refusal containing %q", c.req.Prefix, err, c.want)
		}
	}
	if len(st.bans) != 0 || len(enf.k[firewall.Bans].els) != 0 {
		t.Fatalf("refused bans reached the store or kernel: %v %v", st.bans, enf.k[firewall.Bans].els)
	}
	// --force overrides the session guard (only that one).
	if _, err := m.Add(Request{Prefix: mp("10.210.9.0/24"), Session: session, Force: true}, t0); err != nil {
		t.Fatal(err)
	}
}

func TestAddCountsAndExpires(t *testing.T) {
	st, enf := newMemStore(), newEnforcer()
	m, _ := New(st, enf, nil, t0, func(error) {})
	for i := 1; i <= 3; i++ {
		e, err := m.Add(Request{Prefix: mp("10.210.1.1/32"), For: time.Minute, Reason: "x"}, t0)
		if err != nil || e.Count != i || e.Origin != OriginManual {
			t.Fatalf("ban %d: %+v %v", i, e, err)
		}
	}
	if got := enf.k[firewall.Bans].els[mp("10.210.1.1/32")]; got != time.Minute {
		t.Fatalf("kernel timeout %v, want 1m", got)
	}
	if next := m.NextExpiry(); !next.Equal(t0.Add(time.Minute)) {
		t.Fatalf("next expiry %v", next)
	}
	if err := m.Expire(t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if len(m.List(t0.Add(time.Minute))) != 0 || len(st.bans) != 0 {
		t.Fatal("expired ban still listed or stored")
	}
}

// A full disk must not stop a ban from being enforced, and must say so.
func TestAddWithFullDiskStillEnforces(t *testing.T) {
	st, enf := newMemStore(), newEnforcer()
	m, _ := New(st, enf, nil, t0, func(error) {})
	st.fail = syscall.ENOSPC
	e, err := m.Add(Request{Prefix: mp("10.210.1.1/32")}, t0)
	if !errors.Is(err, ErrNotPersisted) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("want ErrNotPersisted wrapping ENOSPC, got %v", err)
	}
	if _, ok := enf.k[firewall.Bans].els[mp("10.210.1.1/32")]; !ok || e.Count != 1 {
		t.Fatalf("the ban is not enforced: %v %+v", enf.k[firewall.Bans].els, e)
	}
}

func TestAllowLiftsOverlappingBans(t *testing.T) {
	st, enf := newMemStore(), newEnforcer()
	m, _ := New(st, enf, nil, t0, func(error) {})
	for _, s := range []string{"10.210.1.0/24", "10.210.1.7/32", "10.210.2.1/32"} {
		if _, err := m.Add(Request{Prefix: mp(s)}, t0); err != nil {
			t.Fatal(err)
		}
	}
	_, lifted, err := m.Allow(AllowRequest{Prefix: mp("10.210.1.7/32")}, t0)
	if err != nil || len(lifted) != 2 {
		t.Fatalf("lifted %v, %v; want the /24 and the host", lifted, err)
	}
	if len(enf.k[firewall.Bans].els) != 1 || !m.IsAllowed(netip.MustParseAddr("10.210.1.7"), t0) {
		t.Fatalf("kernel bans %v", enf.k[firewall.Bans].els)
	}
	if _, err := m.Disallow(mp("10.210.1.7/32"), t0); err != nil {
		t.Fatal(err)
	}
	if m.IsAllowed(netip.MustParseAddr("10.210.1.7"), t0) {
		t.Fatal("still allowed")
	}
}

func TestReconcileReaddsMissing(t *testing.T) {
	st, enf := newMemStore(), newEnforcer()
	m, _ := New(st, enf, nil, t0, func(error) {})
	m.Add(Request{Prefix: mp("10.210.1.1/32"), For: time.Hour}, t0)
	m.Add(Request{Prefix: mp("fd00:210::/64")}, t0)
	delete(enf.k[firewall.Bans].els, mp("10.210.1.1/32"))
	have := func(k firewall.SetKind, fn func(firewall.Element)) error {
		for p := range enf.k[k].els {
			fn(firewall.Element{Prefix: p})
		}
		return nil
	}
	n, err := m.Reconcile(have, t0.Add(time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("reconcile re-added %d, %v", n, err)
	}
	if d := enf.k[firewall.Bans].els[mp("10.210.1.1/32")]; d != 59*time.Minute {
		t.Fatalf("re-added with timeout %v, want the remaining 59m", d)
	}
}

func TestBackoffGrowsToMax(t *testing.T) {
	st, enf := newMemStore(), newEnforcer()
	m, _ := New(st, enf, nil, t0, func(error) {})
	b := &Backoff{Base: time.Hour, Multiplier: 2, Max: 5 * time.Hour}
	var got []time.Duration
	for range 5 {
		e, err := m.Add(Request{Prefix: mp("10.210.3.3/32"), Origin: "login", Backoff: b}, t0)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e.Expires.Sub(t0))
	}
	want := []time.Duration{time.Hour, 2 * time.Hour, 4 * time.Hour, 5 * time.Hour, 5 * time.Hour}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("ban lengths %v, want %v", got, want)
		}
	}
	if n := m.CountWithin(mp("10.210.3.0/24"), "login", t0); n != 1 {
		t.Fatalf("CountWithin = %d", n)
	}
}

// A ban made while the kernel is being read is not "missing" from it.
func TestReconcileIgnoresBansDuringTheRead(t *testing.T) {
	st, enf := newMemStore(), newEnforcer()
	m, _ := New(st, enf, nil, t0, func(error) {})
	m.Add(Request{Prefix: mp("10.210.1.1/32")}, t0)
	have := func(k firewall.SetKind, fn func(firewall.Element)) error {
		var out []netip.Prefix
		for p := range enf.k[k].els {
			out = append(out, p)
		}
		if k == firewall.Bans {
			// A ban lands after the kernel was read.
			m.Add(Request{Prefix: mp("10.210.1.2/32")}, t0)
		}
		for _, p := range out {
			fn(firewall.Element{Prefix: p})
		}
		return nil
	}
	if n, err := m.Reconcile(have, t0); err != nil || n != 0 {
		t.Fatalf("reconcile re-added %d (%v): a ban made during the read is not a loss", n, err)
	}
	if !m.Active(netip.MustParseAddr("10.210.1.2"), t0) || m.Active(netip.MustParseAddr("10.210.1.3"), t0) {
		t.Fatal("Active is wrong")
	}
}

// Only a host prefix is "the unspecified address" (security review L7):
// 0.0.0.0/1 is half of IPv4, as 128.0.0.0/1 is the other half, and goes on
// to the checks any wide ban goes through.
func TestUnspecifiedIsOnlyTheHostPrefix(t *testing.T) {
	st, enf := newMemStore(), newEnforcer()
	m, err := New(st, enf, []netip.Prefix{mp("10.210.5.0/24")}, t0, func(error) {})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		prefix string
		want   string // "" when the ban must be made
	}{
		{"0.0.0.0/32", "cannot ban 0.0.0.0: it is the unspecified address"},
		{"::/128", "cannot ban ::: it is the unspecified address"},
		{"0.0.0.0/1", "overlaps 10.210.5.0/24 in the allow list"}, // the allow list, not "unspecified"
		{"::/1", ""},
		{"0.0.0.0/8", ""},
		{"128.0.0.0/1", ""},
	} {
		_, err := m.Add(Request{Prefix: mp(c.prefix), For: time.Minute}, t0)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("Add(%s): %v, want a ban", c.prefix, err)
		case c.want != "" && (!errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("Add(%s): got %v, want a refusal containing %q", c.prefix, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "unspecified") && c.prefix != "0.0.0.0/32" && c.prefix != "::/128" {
			t.Errorf("Add(%s): refused as the unspecified address: %v", c.prefix, err)
		}
	}
}

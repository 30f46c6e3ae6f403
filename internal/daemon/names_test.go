package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/authlog"
	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/protect"
)

// fakeDNS answers from a table; a name in slow blocks until the lookup's
// context ends (a resolver an attacker made slow).
type fakeDNS struct {
	mu      sync.Mutex
	answers map[string][]netip.Addr
	slow    map[string]bool
	asked   map[string]int
	release chan struct{} // closed: slow names answer
}

func newFakeDNS(answers map[string][]netip.Addr) *fakeDNS {
	return &fakeDNS{answers: answers, slow: map[string]bool{}, asked: map[string]int{}, release: make(chan struct{})}
}

func (f *fakeDNS) LookupNetIP(ctx context.Context, _, host string) ([]netip.Addr, error) {
	f.mu.Lock()
	f.asked[host]++
	slow := f.slow[host]
	addrs, ok := f.answers[host]
	f.mu.Unlock()
	if slow {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-f.release:
		}
	}
	if !ok {
		return nil, errors.New("no such host")
	}
	return slices.Clone(addrs), nil
}

func (f *fakeDNS) count(host string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.asked[host]
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// resolveWait resolves name and waits for the answer.
func resolveWait(t *testing.T, r *nameResolver, name string) ([]netip.Addr, error) {
	t.Helper()
	type answer struct {
		addrs []netip.Addr
		err   error
	}
	ch := make(chan answer, 1)
	if !r.resolve(name, func(a []netip.Addr, err error) { ch <- answer{a, err} }) {
		t.Fatalf("resolve(%q) dropped", name)
	}
	select {
	case a := <-ch:
		return a.addrs, a.err
	case <-time.After(5 * time.Second):
		t.Fatalf("no answer for %q", name)
		return nil, nil
	}
}

func startResolver(t *testing.T, look nameLookup, clock *fakeClock, workers int) *nameResolver {
	r := newNameResolver(look, clock.now)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.run(ctx, workers) }()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

func TestNameResolverCache(t *testing.T) {
	a := netip.MustParseAddr("10.210.0.9")
	dns := newFakeDNS(map[string][]netip.Addr{"h.example": {netip.AddrFrom16(a.As16()), a}})
	clock := &fakeClock{t: t0}
	r := startResolver(t, dns, clock, 2)
	for range 3 {
		addrs, err := resolveWait(t, r, "h.example")
		if err != nil || !slices.Equal(addrs, []netip.Addr{a}) {
			t.Fatalf("got %v, %v; want [%v] (unmapped, once)", addrs, err, a)
		}
	}
	if n := dns.count("h.example"); n != 1 {
		t.Fatalf("looked up %d times, want once: the cache answers", n)
	}
	clock.add(nameTTL + time.Second)
	if _, err := resolveWait(t, r, "h.example"); err != nil {
		t.Fatal(err)
	}
	if n := dns.count("h.example"); n != 2 {
		t.Fatalf("looked up %d times after the TTL, want 2", n)
	}
	// A failure is cached for the shorter negative TTL.
	if _, err := resolveWait(t, r, "gone.example"); err == nil {
		t.Fatal("an unknown name resolved")
	}
	resolveWait(t, r, "gone.example")
	clock.add(nameNegTTL + time.Second)
	resolveWait(t, r, "gone.example")
	if n := dns.count("gone.example"); n != 2 {
		t.Fatalf("failed name looked up %d times, want 2 (cached for %s)", n, nameNegTTL)
	}
	if s := r.statsNow(); s.Cached != 3 || s.Resolved != 2 || s.Failed != 2 {
		t.Fatalf("stats %+v", s)
	}
}

func TestNameResolverTimeout(t *testing.T) {
	dns := newFakeDNS(map[string][]netip.Addr{"slow.example": {netip.MustParseAddr("10.210.0.9")}})
	dns.slow["slow.example"] = true
	r := newNameResolver(dns, (&fakeClock{t: t0}).now)
	r.timeout = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.run(ctx, 1)
	start := time.Now()
	if _, err := resolveWait(t, r, "slow.example"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want the lookup's deadline", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the lookup took %s, beyond its timeout", d)
	}
}

// A flood of names an attacker's DNS makes slow: resolve never blocks the
// reader, the queue and the workers stay bounded, the rest is dropped and
// counted, and the events of one name share one lookup.
func TestNameResolverBounded(t *testing.T) {
	dns := newFakeDNS(map[string][]netip.Addr{})
	r := startResolver(t, dns, &fakeClock{t: t0}, nameWorkers)
	queued, dropped := 0, 0
	start := time.Now()
	for i := range 1000 {
		name := fmt.Sprintf("n%d.example", i)
		dns.mu.Lock()
		dns.slow[name] = true
		dns.mu.Unlock()
		if r.resolve(name, func([]netip.Addr, error) {}) {
			queued++
		} else {
			dropped++
		}
	}
	// The same name again: joins the lookup in flight or queued.
	for range nameWaiters + 10 {
		r.resolve("n0.example", func([]netip.Addr, error) {})
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("resolve blocked the reader for %s", d)
	}
	if queued > nameQueue+nameWorkers || dropped < 1000-nameQueue-nameWorkers {
		t.Fatalf("queued %d, dropped %d: want at most %d queued", queued, dropped, nameQueue+nameWorkers)
	}
	// n0 had one event waiting: nameWaiters-1 more join it, 11 are dropped.
	if s := r.statsNow(); s.Dropped != uint64(dropped)+11 {
		t.Fatalf("stats count %d drops, want %d", s.Dropped, dropped+11)
	}
	close(dns.release)
}

func TestNameResolverCacheCap(t *testing.T) {
	dns := newFakeDNS(map[string][]netip.Addr{})
	r := newNameResolver(dns, (&fakeClock{t: t0}).now)
	r.max = 10
	for i := range 50 {
		r.mu.Lock()
		r.store(fmt.Sprintf("n%d", i), nameAnswer{until: t0.Add(time.Hour)})
		r.mu.Unlock()
	}
	if len(r.cache) > 10 {
		t.Fatalf("cache holds %d answers, cap 10", len(r.cache))
	}
}

// The login guard with use_dns and a fake resolver: a name counts for its
// one address; a name of a protected address, or of several, never does;
// use_dns "no" counts none and says so in status.
func TestLoginHostNames(t *testing.T) {
	a := netip.MustParseAddr
	victim, router := a("10.210.0.50"), a("10.210.0.1")
	dns := map[string][]netip.Addr{
		"one.example":     {a("10.210.0.9")},
		"router.example":  {router},
		"several.example": {a("10.210.0.10"), victim},
		"mixed.example":   {a("10.210.0.11"), router},
	}
	line := func(pid int, host string) []byte {
		return fmt.Appendf(nil, "Mar  1 12:00:00 h sshd[%d]: User root from %s not allowed because not listed in AllowUsers", pid, host)
	}
	for _, c := range []struct {
		useDNS string
		host   string
		banned netip.Addr // invalid: none
	}{
		{"yes", "one.example", a("10.210.0.9")},
		{"warn", "one.example", a("10.210.0.9")},
		{"no", "one.example", netip.Addr{}},
		{"yes", "router.example", netip.Addr{}},
		{"yes", "several.example", netip.Addr{}},
		{"yes", "mixed.example", netip.Addr{}},
		{"yes", "unknown.example", netip.Addr{}},
	} {
		t.Run(c.useDNS+"/"+c.host, func(t *testing.T) {
			g := trustGuardWith(t, &fakeHandshakes{down: true}, nil, func(l *config.Login) { l.UseDNS = c.useDNS })
			g.protected = &protection{session: func(x netip.Addr) bool { return false }}
			g.protected.(*protection).set.Store(protect.New([]protect.Entry{protect.Host(router, "a router")}))
			var r *nameResolver
			if c.useDNS != "no" {
				r = startResolver(t, newFakeDNS(dns), &fakeClock{t: t0}, 1)
				g.names = r
			}
			j := newJoiner()
			var evs []authlog.Event
			for i := range 3 {
				evs = g.fileLine(j, evs, line(900+i, c.host), t0.Add(time.Duration(i)*time.Second))
			}
			want := 0
			if c.banned.IsValid() {
				want = 1
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				st := g.status(nil)
				if c.useDNS == "no" {
					if st.Names.NotResolved != 3 || st.Events != 0 {
						t.Fatalf("use_dns no: status %+v, want 3 names not resolved, nothing counted", st.Names)
					}
					return
				}
				if st.Names.Counted+st.Names.NotCounted == 3 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("names not settled: %+v", st.Names)
				}
				time.Sleep(5 * time.Millisecond)
			}
			if b := g.status(nil).Banned; b != want || want == 1 && !g.bans.Active(c.banned, t0.Add(3*time.Second)) {
				t.Fatalf("banned %d, want %d (%v)", b, want, c.banned)
			}
			if g.bans.Active(victim, t0.Add(3*time.Second)) || g.bans.Active(router, t0.Add(3*time.Second)) {
				t.Fatal("banned an address a hostile name points at")
			}
		})
	}
}

package daemon

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// nameLookup resolves a host name: *net.Resolver, or a fake in tests.
type nameLookup interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Bounds of the login guard's name resolver ([login] use_dns). An attacker
// chooses its reverse DNS, so it can make sshd write a new name for every
// connection and make each lookup as slow as it likes: lookups never run on
// the log reader's goroutine, at most nameWorkers run at once, each for at
// most nameTimeout, at most nameQueue wait (more are dropped and counted),
// and at most nameCacheMax answers are kept.
const (
	nameWorkers  = 4
	nameQueue    = 64
	nameWaiters  = 64 // events waiting for one name's answer
	nameTimeout  = 2 * time.Second
	nameTTL      = 5 * time.Minute
	nameNegTTL   = time.Minute
	nameCacheMax = 4096
)

// NameStats is the name resolver's part of `moat status`.
type NameStats struct {
	Resolved uint64 `json:"resolved"` // lookups that answered
	Failed   uint64 `json:"failed"`   // lookups that failed or timed out
	Cached   uint64 `json:"cached"`   // events answered from the cache
	Dropped  uint64 `json:"dropped"`  // events not looked up: the queue was full
}

type nameAnswer struct {
	addrs []netip.Addr
	err   error
	until time.Time
}

// nameResolver looks host names up for the login guard off the log
// reader's goroutine, bounded as the constants above say. Answers reach
// the caller's done function: at once from the cache, or later from a
// worker that run owns.
type nameResolver struct {
	look    nameLookup
	now     func() time.Time
	timeout time.Duration
	ttl     time.Duration
	negTTL  time.Duration
	max     int
	jobs    chan string

	mu      sync.Mutex
	cache   map[string]nameAnswer                  // under mu
	waiting map[string][]func([]netip.Addr, error) // under mu: names being looked up
	stats   NameStats                              // under mu
}

func newNameResolver(look nameLookup, now func() time.Time) *nameResolver {
	return &nameResolver{look: look, now: now, timeout: nameTimeout, ttl: nameTTL, negTTL: nameNegTTL, max: nameCacheMax,
		jobs: make(chan string, nameQueue), cache: map[string]nameAnswer{}, waiting: map[string][]func([]netip.Addr, error){}}
}

// resolve calls done with name's addresses: at once if the cache holds a
// fresh answer, else from a worker once looked up. It never blocks: when
// the queue is full the event is dropped (and counted), and it reports
// whether done will be called.
func (r *nameResolver) resolve(name string, done func([]netip.Addr, error)) bool {
	r.mu.Lock()
	if a, ok := r.cache[name]; ok && r.now().Before(a.until) {
		r.stats.Cached++
		r.mu.Unlock()
		done(a.addrs, a.err)
		return true
	}
	if w, ok := r.waiting[name]; ok {
		// Already being looked up: one lookup answers every event.
		if len(w) >= nameWaiters {
			r.stats.Dropped++
			r.mu.Unlock()
			return false
		}
		r.waiting[name] = append(w, done)
		r.mu.Unlock()
		return true
	}
	select {
	case r.jobs <- name:
		r.waiting[name] = []func([]netip.Addr, error){done}
		r.mu.Unlock()
		return true
	default:
		r.stats.Dropped++
		r.mu.Unlock()
		return false
	}
}

// run looks queued names up with nameWorkers workers until ctx ends.
func (r *nameResolver) run(ctx context.Context, workers int) {
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case name := <-r.jobs:
					r.lookup(ctx, name)
				}
			}
		})
	}
	wg.Wait()
}

func (r *nameResolver) lookup(ctx context.Context, name string) {
	lctx, cancel := context.WithTimeout(ctx, r.timeout)
	addrs, err := r.look.LookupNetIP(lctx, "ip", name)
	cancel()
	for i := range addrs {
		addrs[i] = addrs[i].Unmap().WithZone("")
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	addrs = slices.Compact(addrs)
	if err != nil {
		addrs = nil
	}
	r.mu.Lock()
	ttl := r.ttl
	if err != nil {
		r.stats.Failed++
		ttl = r.negTTL
	} else {
		r.stats.Resolved++
	}
	if ctx.Err() == nil {
		// A lookup cut short by the daemon stopping says nothing of the
		// name: not cached.
		r.store(name, nameAnswer{addrs: addrs, err: err, until: r.now().Add(ttl)})
	}
	waiters := r.waiting[name]
	delete(r.waiting, name)
	r.mu.Unlock()
	for _, done := range waiters {
		done(addrs, err)
	}
}

// store caches an answer, making room first: expired answers go, and if
// none has expired an arbitrary one does (map order), so that a flood of
// new names cannot grow the cache.
func (r *nameResolver) store(name string, a nameAnswer) {
	if len(r.cache) >= r.max {
		now := r.now()
		for n, old := range r.cache {
			if !now.Before(old.until) {
				delete(r.cache, n)
			}
		}
		for n := range r.cache {
			if len(r.cache) < r.max {
				break
			}
			delete(r.cache, n)
		}
	}
	r.cache[name] = a
}

func (r *nameResolver) statsNow() NameStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

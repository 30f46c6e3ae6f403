package fleet

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/firewall"
)

// heldKernel is a fake kernel whose transactions can be held, as a busy
// kernel holds them, and which records each transaction's size.
type heldKernel struct {
	kernel
	hold  chan struct{} // while set, each transaction waits for a token
	sizes []int
	in    chan struct{} // a token when a transaction starts
}

func newHeldKernel() *heldKernel {
	return &heldKernel{kernel: kernel{els: map[netip.Prefix]time.Duration{}}, in: make(chan struct{}, 100)}
}

func (k *heldKernel) Update(kind firewall.SetKind, del, add []firewall.Element) error {
	k.mu.Lock()
	hold := k.hold
	k.sizes = append(k.sizes, len(add))
	k.mu.Unlock()
	k.in <- struct{}{}
	if hold != nil {
		<-hold
	}
	return k.kernel.Update(kind, del, add)
}

func (k *heldKernel) txns() []int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]int(nil), k.sizes...)
}

func liveUpdate(i int) update {
	now := time.Now()
	return update{p: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 210, byte(i >> 8), byte(i)}), 32),
		v: Value{V: 1, Origin: "scan", Host: "x", Count: 1, Created: now, Until: now.Add(time.Hour)}}
}

// startApplier runs an applier over q for the test's life.
func startApplier(t *testing.T, f *Fleet, pub *publisher, q *inbox, rp *replay) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { f.applier(ctx, q, rp, pub) })
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// The replay is applied in chunks of replayChunk, not as each entry
// comes; after the caught-up mark, a lone ban goes at once, and what
// arrives while the kernel is busy goes in the next transaction, together.
func TestApplierChunksTheReplayAndBatchesWhatWaits(t *testing.T) {
	k := newHeldKernel()
	f, pub, _ := natslessMember(t, k)
	q := newInbox()
	startApplier(t, f, pub, q, f.startReplay(pub))
	ctx := context.Background()
	n := replayChunk + 10
	for i := range replayChunk - 1 {
		if !q.put(ctx, liveUpdate(i), false) {
			t.Fatal("put")
		}
	}
	time.Sleep(50 * time.Millisecond)
	if got := k.txns(); len(got) != 0 {
		t.Fatalf("transactions %v before a chunk filled", got)
	}
	for i := replayChunk - 1; i < n; i++ {
		q.put(ctx, liveUpdate(i), false)
	}
	q.put(ctx, update{caughtUp: true}, true)
	eventually(t, "the replay", 10*time.Second, func() bool { return f.Status().LastReplay != nil })
	replayed := k.txns()
	for i, size := range replayed {
		if size < replayChunk && i < len(replayed)-1 || size > inboxMax {
			t.Errorf("replay transactions %v: each but the last of %d to %d", replayed, replayChunk, inboxMax)
		}
	}
	if r := f.Status().LastReplay; r.Keys != n || r.Applied != n {
		t.Errorf("replay %+v, want %d keys applied", r, n)
	}
	for len(k.in) > 0 {
		<-k.in
	}

	// Live: the first ban goes alone, and is held in the kernel; 50 more
	// arrive meanwhile and go in one transaction when it is done.
	hold := make(chan struct{})
	k.mu.Lock()
	k.hold = hold
	k.mu.Unlock()
	q.put(ctx, liveUpdate(n), true)
	<-k.in
	for i := range 50 {
		q.put(ctx, liveUpdate(n+1+i), true)
	}
	close(hold)
	eventually(t, "the live bans", 10*time.Second, func() bool { return f.Status().Received == uint64(n+51) })
	if got := k.txns()[len(replayed):]; len(got) != 2 || got[0] != 1 || got[1] != 50 {
		t.Errorf("live transactions %v, want [1 50]", got)
	}
}

// A full inbox holds the reader back until the applier takes from it.
func TestInboxPutWaitsWhenFull(t *testing.T) {
	q := newInbox()
	ctx := context.Background()
	for i := range inboxMax {
		q.put(ctx, liveUpdate(i), false)
	}
	select {
	case <-q.ready:
	default:
		t.Fatal("a full chunk did not wake the applier")
	}
	done := make(chan bool)
	go func() { done <- q.put(ctx, liveUpdate(0), false) }()
	select {
	case <-done:
		t.Fatal("put did not wait on a full inbox")
	case <-time.After(50 * time.Millisecond):
	}
	if got := q.take(nil); len(got) != inboxMax {
		t.Fatalf("took %d, want %d", len(got), inboxMax)
	}
	if !<-done {
		t.Fatal("put failed after room was made")
	}
	cctx, cancel := context.WithCancel(ctx)
	for range inboxMax - 1 {
		q.put(ctx, liveUpdate(0), false)
	}
	cancel()
	if q.put(cctx, liveUpdate(0), false) {
		t.Error("put on a full inbox with its context ended reported success")
	}
}

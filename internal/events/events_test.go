package events

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

func TestSubscribersGetEventsInOrderAndSlowOnesDrop(t *testing.T) {
	b := New(3)
	ctx, cancel := context.WithCancel(context.Background())
	fast := b.Subscribe(ctx, 10)
	slow := b.Subscribe(ctx, 1)
	p := netip.MustParsePrefix("10.210.0.9/32")
	for i := range 5 {
		e := b.Publish(Event{Kind: Ban, Prefix: p, Count: i + 1, Time: time.Unix(int64(i), 0)})
		if e.Seq != uint64(i+1) {
			t.Fatalf("event %d: seq %d", i, e.Seq)
		}
	}
	for i := range 5 {
		if e := <-fast.C; e.Count != i+1 || e.Seq != uint64(i+1) {
			t.Fatalf("fast subscriber's event %d: %+v", i, e)
		}
	}
	if e := <-slow.C; e.Count != 1 {
		t.Fatalf("slow subscriber kept %+v, want the first", e)
	}
	if slow.Dropped() != 4 || fast.Dropped() != 0 {
		t.Fatalf("dropped: slow %d (want 4), fast %d (want 0)", slow.Dropped(), fast.Dropped())
	}
	cancel()
	for range 2 {
		select {
		case _, ok := <-fast.C:
			if ok {
				t.Fatal("event after cancel")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("channel not closed after its context ended")
		}
	}
	// Publishing after the subscribers left must not panic.
	b.Publish(Event{Kind: Unban, Prefix: p})
}

func TestRecentKeepsTheLastEventsOldestFirst(t *testing.T) {
	b := New(3)
	if got := b.Recent(10, 0); len(got) != 0 {
		t.Fatalf("empty bus: %v", got)
	}
	for range 5 {
		b.Publish(Event{Kind: Scan})
	}
	got := b.Recent(10, 0)
	if len(got) != 3 || got[0].Seq != 3 || got[2].Seq != 5 {
		t.Fatalf("Recent(10, 0) = %v, want seq 3..5", got)
	}
	if got := b.Recent(10, 4); len(got) != 1 || got[0].Seq != 5 {
		t.Fatalf("Recent(10, 4) = %v, want seq 5", got)
	}
	if got := b.Recent(2, 0); len(got) != 2 || got[0].Seq != 4 {
		t.Fatalf("Recent(2, 0) = %v, want seq 4, 5", got)
	}
	if b.Last() != 5 {
		t.Fatalf("Last = %d", b.Last())
	}
}

func TestNilBusPublishIsANoOp(t *testing.T) {
	var b *Bus
	if e := b.Publish(Event{Kind: Ban}); e.Seq != 0 {
		t.Fatalf("nil bus numbered an event: %+v", e)
	}
}

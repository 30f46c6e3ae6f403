package spa

import (
	"bytes"
	"testing"
	"time"
)

// TestReplayBounded floods the cache with authentic packets from one
// client: it stays at its bound, every packet ever accepted stays refused
// while its timestamp is in the window, and fresh packets still pass.
func TestReplayBounded(t *testing.T) {
	k := keysOnce()
	v := newTestVerifier(t, k.server, Options{ReplayPerClient: 8})
	var accepted [][]byte
	for i := range 40 {
		// Timestamps go up one second every other packet, as in a flood.
		d := seal(t, Request{Door: "ssh"}, k.server, k.alice, t0.Add(time.Duration(i/2)*time.Second))
		if _, err := v.Verify(d, src4, t0.Add(20*time.Second)); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		accepted = append(accepted, d)
		if n := v.replay.len(); n > 8 {
			t.Fatalf("packet %d: %d entries, bound 8", i, n)
		}
	}
	for i, d := range accepted {
		_, err := v.Verify(d, src4, t0.Add(21*time.Second))
		if r := reasonOf(err); r != ReasonReplay && r != ReasonStale {
			t.Errorf("replay of packet %d: %v", i, err)
		}
	}
	// A genuine packet stamped now is still fine.
	if _, err := v.Verify(seal(t, Request{Door: "ssh"}, k.server, k.alice, t0.Add(21*time.Second)), src4, t0.Add(21*time.Second)); err != nil {
		t.Errorf("fresh packet after the flood: %v", err)
	}
	// Other clients have their own share.
	if _, err := v.Verify(seal(t, Request{Door: "web"}, k.server, k.bob, t0), src4, t0); err != nil {
		t.Errorf("bob after alice's flood: %v", err)
	}
}

// TestReplayExpiry: an entry lives exactly as long as the window admits
// its timestamp.
func TestReplayExpiry(t *testing.T) {
	c := newReplayCache(60, 2)
	var id ID
	n1, n2, n3 := [NonceLen]byte{1}, [NonceLen]byte{2}, [NonceLen]byte{3}
	if r := c.check(id, &n1, 100, 100); r != 0 {
		t.Fatal(r)
	}
	if r := c.check(id, &n2, 150, 150); r != 0 {
		t.Fatal(r)
	}
	// At 160, n1 (ts 100) is still admissible (100+60 >= 160): the cache is
	// full, so the oldest goes and the floor rises to 100.
	if r := c.check(id, &n3, 160, 160); r != 0 || c.clients[id].floor != 100 {
		t.Fatalf("third entry: %v, floor %d", r, c.clients[id].floor)
	}
	if r := c.check(id, &n1, 100, 160); r != ReasonStale {
		t.Errorf("evicted n1: %v, want stale", r)
	}
	// At 211, n2 (ts 150) is expired and makes room without raising the floor.
	n4 := [NonceLen]byte{4}
	if r := c.check(id, &n4, 211, 211); r != 0 || c.clients[id].floor != 100 || len(c.clients[id].seen) != 2 {
		t.Errorf("after expiry: %v, floor %d, %d entries", r, c.clients[id].floor, len(c.clients[id].seen))
	}
	if r := c.check(id, &n3, 160, 211); r != ReasonReplay {
		t.Errorf("n3 again: %v", r)
	}
}

func TestReplaySnapshot(t *testing.T) {
	k := keysOnce()
	v := newTestVerifier(t, k.server, Options{})
	early := seal(t, Request{Door: "ssh"}, k.server, k.alice, t0)
	late := seal(t, Request{Door: "ssh"}, k.server, k.alice, t0.Add(50*time.Second))
	bob := seal(t, Request{Door: "web"}, k.server, k.bob, t0.Add(30*time.Second))
	for _, d := range [][]byte{early, late, bob} {
		if _, err := v.Verify(d, src4, t0.Add(50*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	snap := v.AppendSnapshot(nil, t0.Add(55*time.Second))
	if !bytes.Equal(snap, v.AppendSnapshot(nil, t0.Add(55*time.Second))) {
		t.Error("snapshot is not deterministic")
	}

	// Restart at t0+65s: early (ts t0) has left the window, the others not.
	now := t0.Add(65 * time.Second)
	w := newTestVerifier(t, k.server, Options{})
	if err := w.LoadSnapshot(snap, now); err != nil {
		t.Fatal(err)
	}
	if n := w.replay.len(); n != 2 {
		t.Errorf("after load: %d entries, want 2 (early expired)", n)
	}
	for name, tc := range map[string]struct {
		d    []byte
		want Reason
	}{"early": {early, ReasonTooOld}, "late": {late, ReasonReplay}, "bob": {bob, ReasonReplay}} {
		if _, err := w.Verify(tc.d, src4, now); reasonOf(err) != tc.want {
			t.Errorf("%s after restart: %v, want %v", name, err, tc.want)
		}
	}

	// A server that no longer knows bob drops his entries.
	alone, err := NewVerifier(k.server, testClients(k)[:1], Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := alone.LoadSnapshot(snap, now); err != nil || alone.replay.len() != 1 {
		t.Errorf("load without bob: %v, %d entries", err, alone.replay.len())
	}

	// Damaged snapshots change nothing.
	for i := range len(snap) {
		x := newTestVerifier(t, k.server, Options{})
		if err := x.LoadSnapshot(snap[:i], now); err == nil {
			t.Fatalf("truncated to %d bytes: loaded", i)
		}
		if x.replay.len() != 0 || x.replay.floor != 0 {
			t.Fatalf("truncated to %d bytes: partly loaded", i)
		}
	}
	if err := w.LoadSnapshot(append(bytes.Clone(snap), 0), now); err == nil {
		t.Error("trailing byte: loaded")
	}
}

// TestRefuseUntil: after a restart that lost the snapshot, the daemon
// refuses one window's worth of packets that may have been spent.
func TestRefuseUntil(t *testing.T) {
	k := keysOnce()
	spent := seal(t, Request{Door: "ssh"}, k.server, k.alice, t0.Add(59*time.Second)) // a fast clock
	v := newTestVerifier(t, k.server, Options{})
	v.RefuseUntil(t0.Add(time.Minute))
	if _, err := v.Verify(spent, src4, t0); reasonOf(err) != ReasonStale {
		t.Errorf("packet stamped before the floor: %v", err)
	}
	if _, err := v.Verify(seal(t, Request{Door: "ssh"}, k.server, k.alice, t0.Add(61*time.Second)), src4, t0.Add(61*time.Second)); err != nil {
		t.Errorf("packet after the floor: %v", err)
	}
	snap := v.AppendSnapshot(nil, t0.Add(61*time.Second))
	w := newTestVerifier(t, k.server, Options{})
	if err := w.LoadSnapshot(snap, t0.Add(61*time.Second)); err != nil || w.replay.floor != t0.Add(time.Minute).Unix() {
		t.Errorf("floor across a snapshot: %v, %d", err, w.replay.floor)
	}
}

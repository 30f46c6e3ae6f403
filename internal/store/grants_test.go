package store

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestGrantsRoundTripAndDelete(t *testing.T) {
	s := openTest(t)
	g4 := Grant{Door: "ssh", Addr: netip.MustParseAddr("10.210.0.2"), Ports: []GrantPort{{6, 22, 22}, {17, 6000, 6010}},
		Kernel: true, Opened: t0, Expires: t0.Add(30 * time.Second)}
	g6 := Grant{Door: "hook", Addr: netip.MustParseAddr("fd00:210::2"), Ports: []GrantPort{{6, 9000, 9000}},
		Opened: t0, Expires: t0.Add(time.Hour), StopCommand: []string{"/bin/echo", "close", "%IP%"}}
	// A v4-mapped address is the same source as its IPv4 form.
	mapped := g4
	mapped.Addr = netip.MustParseAddr("::ffff:10.210.0.2")
	for _, g := range []Grant{g6, mapped} {
		if err := s.PutGrant(g); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Grants()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d grants, want 2: %+v", len(got), got)
	}
	same := func(a, b Grant) bool {
		return a.Door == b.Door && a.Addr == b.Addr && slices.Equal(a.Ports, b.Ports) && a.Kernel == b.Kernel &&
			a.Opened.Equal(b.Opened) && a.Expires.Equal(b.Expires) && slices.Equal(a.StopCommand, b.StopCommand)
	}
	if !same(got[0], g6) || !same(got[1], g4) { // ordered by door name
		t.Fatalf("got %+v\nwant %+v and %+v", got, g6, g4)
	}
	if !got[1].Active(t0.Add(29*time.Second)) || got[1].Active(t0.Add(30*time.Second)) {
		t.Fatal("Active: a grant ends at its expiry")
	}
	// A renewed knock replaces the record: still one per door and source.
	g4.Expires = t0.Add(time.Minute)
	if err := s.PutGrant(g4); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Grants(); len(got) != 2 || !got[1].Expires.Equal(g4.Expires) {
		t.Fatalf("after renewal: %+v", got)
	}
	if found, err := s.DelGrant("ssh", g4.Addr); err != nil || !found {
		t.Fatalf("DelGrant: %v %v", found, err)
	}
	if found, _ := s.DelGrant("ssh", g4.Addr); found {
		t.Fatal("DelGrant found a deleted grant")
	}
	if got, _ := s.Grants(); len(got) != 1 || got[0].Door != "hook" {
		t.Fatalf("after delete: %+v", got)
	}
	if err := s.PutGrant(Grant{Door: "ssh"}); err == nil {
		t.Fatal("a grant without an address was stored")
	}
}

func TestGrantsSurviveReopenAndSkipCorrupt(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	g := Grant{Door: "ssh", Addr: netip.MustParseAddr("10.210.0.2"), Ports: []GrantPort{{6, 22, 22}}, Opened: t0, Expires: t0.Add(time.Minute)}
	if err := s.PutGrant(g); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketGrants).Put([]byte("bad\x00\x01"), []byte{9, 9})
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Grants()
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v, want ErrCorrupt", err)
	}
	if len(got) != 1 || got[0].Door != "ssh" || got[0].Addr != g.Addr {
		t.Fatalf("the good record must still come back: %+v", got)
	}
}

package store

import (
	"slices"
	"testing"
)

// A port-limited ban keeps its ports through the store, and a record
// written without them (every record before them) reads as before.
func TestBanPorts(t *testing.T) {
	s := openTest(t)
	ports := []Port{{6, 80}, {6, 443}, {17, 53}}
	if _, err := s.PutBan(Entry{Prefix: pfx("192.0.2.1"), Origin: "login", Expires: t0, Ports: ports}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutBan(Entry{Prefix: pfx("192.0.2.2"), Origin: "login", Expires: t0}); err != nil {
		t.Fatal(err)
	}
	e, ok, err := s.Ban(pfx("192.0.2.1"))
	if err != nil || !ok || !slices.Equal(e.Ports, ports) {
		t.Fatalf("Ban = %+v, %v, %v; want ports %v", e, ok, err, ports)
	}
	if e, _, _ := s.Ban(pfx("192.0.2.2")); e.Ports != nil {
		t.Fatalf("a whole-host ban read back with ports %v", e.Ports)
	}
	if got := ports[2].String(); got != "udp/53" {
		t.Errorf("String = %q", got)
	}
	v := appendEntry(nil, Entry{Origin: "x", Ports: ports})
	for _, bad := range [][]byte{v[:len(v)-1], append(v[:len(v):len(v)], 'q'), append(appendEntry(nil, Entry{Origin: "x"}), tagPorts, 0)} {
		if _, err := decodeEntry(pfx("192.0.2.1"), bad, nil); err == nil {
			t.Errorf("%x decoded", bad)
		}
	}
}

package store

import (
	"testing"
	"time"
)

// The fleet host of a remote ban is stored; records written before the
// field existed (ending after the reason) still decode, with Host "".
func TestEntryHost(t *testing.T) {
	s := openTest(t)
	e := Entry{Prefix: pfx("192.0.2.9"), Origin: "fleet", Reason: "login: 5 failures", Host: "web-1", Created: t0, Expires: t0.Add(time.Hour)}
	if _, err := s.PutBan(e); err != nil {
		t.Fatal(err)
	}
	back, ok, err := s.Ban(e.Prefix)
	if err != nil || !ok || back.Host != "web-1" {
		t.Fatalf("Ban = %+v, %v, %v; want Host web-1", back, ok, err)
	}

	old := appendEntry(nil, Entry{Origin: "login", Reason: "r", Created: t0, Count: 2})
	got, err := decodeEntry(pfx("192.0.2.1"), old, nil)
	if err != nil || got.Host != "" || got.Reason != "r" || got.Count != 2 {
		t.Fatalf("record without host: %+v, %v", got, err)
	}
	// A host cut short is corrupt, not silently dropped.
	v := appendEntry(nil, Entry{Origin: "fleet", Host: "web-1"})
	if _, err := decodeEntry(pfx("192.0.2.1"), v[:len(v)-2], nil); err == nil {
		t.Error("truncated host decoded")
	}
}

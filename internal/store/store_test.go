package store

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)

func openTest(t testing.TB) *Store {
	t.Helper()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func pfx(s string) netip.Prefix {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p
	}
	a := netip.MustParseAddr(s)
	return netip.PrefixFrom(a, a.BitLen())
}

// sameEntry compares entries, times with Equal (decoding yields local time).
func sameEntry(a, b Entry) bool {
	return a.Prefix == b.Prefix && a.Origin == b.Origin && a.Reason == b.Reason &&
		a.Created.Equal(b.Created) && a.Expires.Equal(b.Expires) && a.Count == b.Count && slices.Equal(a.Ports, b.Ports) && a.Host == b.Host
}

func TestOpenCreatesDirAndFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "moat")
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for path, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, s.Path(): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode(), want)
		}
	}
}

func TestBanRoundTrip(t *testing.T) {
	s := openTest(t)
	in := []Entry{
		{Prefix: pfx("2001:db8:1:2:3:4:5:6/64"), Origin: "scan", Reason: "SYN scan of 40 ports", Created: t0, Expires: t0.Add(time.Hour)},
		{Prefix: pfx("192.0.2.7"), Origin: "login", Reason: "5 failed logins for «root»", Created: t0, Expires: time.Date(3000, 1, 1, 0, 0, 0, 1, time.UTC)},
		{Prefix: pfx("198.51.100.0/24"), Origin: "manual", Created: t0},
		{Prefix: pfx("10.1.2.3/8"), Origin: "config"},
		{Prefix: pfx("::1"), Origin: "fleet", Reason: strings.Repeat("x", 70000), Created: t0.Add(-time.Hour), Expires: t0},
	}
	for _, e := range in {
		got, err := s.PutBan(e)
		if err != nil {
			t.Fatal(err)
		}
		want := e
		want.Prefix = e.Prefix.Masked()
		want.Count = 1
		if !sameEntry(got, want) {
			t.Errorf("PutBan returned %+v, want %+v", got, want)
		}
		back, ok, err := s.Ban(e.Prefix)
		if err != nil || !ok {
			t.Fatalf("Ban(%s) = %v, %v", e.Prefix, ok, err)
		}
		if !sameEntry(back, want) {
			t.Errorf("Ban(%s) = %+v, want %+v", e.Prefix, back, want)
		}
	}
	all, err := s.Bans()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range all {
		got = append(got, e.Prefix.String())
	}
	want := []string{"10.0.0.0/8", "192.0.2.7/32", "198.51.100.0/24", "::1/128", "2001:db8:1:2::/64"}
	if !slices.Equal(got, want) {
		t.Errorf("Bans order %v, want %v", got, want)
	}
	if !slices.IsSortedFunc(all, func(a, b Entry) int { return a.Prefix.Compare(b.Prefix) }) {
		t.Error("Bans not sorted as netip.Prefix.Compare")
	}
	if _, ok, err := s.Ban(pfx("192.0.2.8")); ok || err != nil {
		t.Errorf("Ban of unknown prefix: %v, %v", ok, err)
	}
}

func TestReopenKeepsData(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := Entry{Prefix: pfx("192.0.2.1"), Origin: "manual", Created: t0}
	if _, err := s.PutBan(e); err != nil {
		t.Fatal(err)
	}
	if err := s.SetMeta("journal-cursor", []byte("s=abc")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok, err := s.Ban(e.Prefix); !ok || err != nil {
		t.Errorf("ban lost across reopen: %v, %v", ok, err)
	}
	if v, err := s.Meta("journal-cursor"); string(v) != "s=abc" || err != nil {
		t.Errorf("meta lost across reopen: %q, %v", v, err)
	}
}

func TestCountSurvivesDelete(t *testing.T) {
	s := openTest(t)
	p := pfx("203.0.113.9")
	for i := 1; i <= 3; i++ {
		created := t0.Add(time.Duration(i) * time.Hour)
		e, err := s.PutBan(Entry{Prefix: p, Origin: "login", Created: created, Expires: created.Add(time.Minute), Count: 99})
		if err != nil {
			t.Fatal(err)
		}
		if e.Count != i {
			t.Errorf("ban %d: count %d", i, e.Count)
		}
		stored, _, _ := s.Ban(p)
		if stored.Count != i {
			t.Errorf("ban %d: stored count %d", i, stored.Count)
		}
		count, last, err := s.History(p)
		if err != nil || count != i || !last.Equal(created) {
			t.Errorf("History after ban %d = %d, %v, %v", i, count, last, err)
		}
		found, err := s.DelBan(p)
		if !found || err != nil {
			t.Fatalf("DelBan = %v, %v", found, err)
		}
		if found, _ := s.DelBan(p); found {
			t.Error("second DelBan found the ban")
		}
	}
	// Replacing an active ban counts too.
	if _, err := s.PutBan(Entry{Prefix: p}); err != nil {
		t.Fatal(err)
	}
	if e, _ := s.PutBan(Entry{Prefix: p}); e.Count != 5 {
		t.Errorf("count %d after replacing an active ban, want 5", e.Count)
	}
	if c, _, _ := s.History(pfx("203.0.113.10")); c != 0 {
		t.Errorf("History of a never-banned prefix = %d", c)
	}
}

func TestPutBansBatch(t *testing.T) {
	s := openTest(t)
	if _, err := s.PutBan(Entry{Prefix: pfx("192.0.2.2")}); err != nil {
		t.Fatal(err)
	}
	in := []Entry{
		{Prefix: pfx("192.0.2.3"), Reason: "a"},
		{Prefix: pfx("2001:db8::1"), Reason: "b"},
		{Prefix: pfx("192.0.2.2"), Reason: "c"},
		{Prefix: pfx("192.0.2.3"), Reason: "d"}, // duplicate: later wins, counts twice
	}
	out, err := s.PutBans(in)
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	var counts []int
	for _, e := range out {
		reasons = append(reasons, e.Reason)
		counts = append(counts, e.Count)
	}
	if !slices.Equal(reasons, []string{"a", "b", "c", "d"}) || !slices.Equal(counts, []int{1, 1, 2, 2}) {
		t.Errorf("PutBans returned reasons %v counts %v", reasons, counts)
	}
	if e, _, _ := s.Ban(pfx("192.0.2.3")); e.Reason != "d" || e.Count != 2 {
		t.Errorf("duplicate in batch stored %+v", e)
	}
	if out, err := s.PutBans(nil); len(out) != 0 || err != nil {
		t.Errorf("PutBans(nil) = %v, %v", out, err)
	}
	// An invalid prefix fails the whole batch before anything is written.
	if _, err := s.PutBans([]Entry{{Prefix: pfx("192.0.2.99")}, {}}); err == nil {
		t.Error("PutBans with an invalid prefix succeeded")
	}
	if _, ok, _ := s.Ban(pfx("192.0.2.99")); ok {
		t.Error("failed batch stored an entry")
	}
}

func TestPrune(t *testing.T) {
	s := openTest(t)
	now := t0
	es := []Entry{
		{Prefix: pfx("192.0.2.1"), Expires: now.Add(-time.Second)}, // expired
		{Prefix: pfx("192.0.2.2"), Expires: now},                   // expires exactly now: gone
		{Prefix: pfx("192.0.2.3"), Expires: now.Add(time.Nanosecond)},
		{Prefix: pfx("192.0.2.4")}, // never expires
		{Prefix: pfx("2001:db8::/48"), Expires: now.Add(-time.Hour)},
	}
	if _, err := s.PutBans(es); err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if err := s.PutAllow(e); err != nil {
			t.Fatal(err)
		}
	}
	wantGone := []string{"192.0.2.1/32", "192.0.2.2/32", "2001:db8::/48"}
	wantKept := []string{"192.0.2.3/32", "192.0.2.4/32"}
	for _, kind := range []struct {
		name  string
		prune func(time.Time) ([]Entry, error)
		list  func() ([]Entry, error)
	}{{"bans", s.PruneBans, s.Bans}, {"allows", s.PruneAllows, s.Allows}} {
		removed, err := kind.prune(now)
		if err != nil {
			t.Fatal(err)
		}
		if got := prefixes(removed); !slices.Equal(got, wantGone) {
			t.Errorf("%s: removed %v, want %v", kind.name, got, wantGone)
		}
		left, err := kind.list()
		if err != nil {
			t.Fatal(err)
		}
		if got := prefixes(left); !slices.Equal(got, wantKept) {
			t.Errorf("%s: kept %v, want %v", kind.name, got, wantKept)
		}
		if removed, _ := kind.prune(now); len(removed) != 0 {
			t.Errorf("%s: second prune removed %v", kind.name, prefixes(removed))
		}
	}
	if c, _, _ := s.History(pfx("192.0.2.1")); c != 1 {
		t.Errorf("prune dropped the history: count %d", c)
	}
	if e, _ := s.PutBan(Entry{Prefix: pfx("192.0.2.1")}); e.Count != 2 {
		t.Errorf("count after expiry and re-ban = %d, want 2", e.Count)
	}
}

func TestPruneHistory(t *testing.T) {
	s := openTest(t)
	old, recent, banned := pfx("192.0.2.1"), pfx("192.0.2.2"), pfx("192.0.2.3")
	for _, e := range []Entry{
		{Prefix: old, Created: t0.Add(-48 * time.Hour)},
		{Prefix: recent, Created: t0},
		{Prefix: banned, Created: t0.Add(-48 * time.Hour)},
	} {
		if _, err := s.PutBan(e); err != nil {
			t.Fatal(err)
		}
	}
	s.DelBan(old)
	s.DelBan(recent)
	n, err := s.PruneHistory(t0.Add(-24 * time.Hour))
	if n != 1 || err != nil {
		t.Fatalf("PruneHistory = %d, %v; want 1", n, err)
	}
	for p, want := range map[netip.Prefix]int{old: 0, recent: 1, banned: 1} {
		if c, _, _ := s.History(p); c != want {
			t.Errorf("History(%s) = %d, want %d", p, c, want)
		}
	}
}

func TestAllows(t *testing.T) {
	s := openTest(t)
	e := Entry{Prefix: pfx("2001:db8::5/64"), Origin: "manual", Reason: "office", Created: t0, Count: 7}
	if err := s.PutAllow(e); err != nil {
		t.Fatal(err)
	}
	all, err := s.Allows()
	if err != nil || len(all) != 1 {
		t.Fatalf("Allows = %v, %v", all, err)
	}
	want := e
	want.Prefix, want.Count = e.Prefix.Masked(), 0
	if !sameEntry(all[0], want) {
		t.Errorf("Allows()[0] = %+v, want %+v", all[0], want)
	}
	if bans, _ := s.Bans(); len(bans) != 0 {
		t.Errorf("allow leaked into bans: %v", bans)
	}
	if found, err := s.DelAllow(pfx("2001:db8::/64")); !found || err != nil {
		t.Errorf("DelAllow = %v, %v", found, err)
	}
	if all, _ := s.Allows(); len(all) != 0 {
		t.Errorf("Allows after delete = %v", all)
	}
}

func TestMeta(t *testing.T) {
	s := openTest(t)
	if v, err := s.Meta("absent"); v != nil || err != nil {
		t.Errorf("Meta(absent) = %q, %v", v, err)
	}
	if err := s.SetMeta("empty", nil); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Meta("empty"); v == nil || len(v) != 0 || err != nil {
		t.Errorf("Meta(empty) = %#v, %v; want non-nil empty", v, err)
	}
	val := []byte("v1")
	if err := s.SetMeta("k", val); err != nil {
		t.Fatal(err)
	}
	val[0] = 'X' // the store must have copied it
	v, _ := s.Meta("k")
	if string(v) != "v1" {
		t.Errorf("Meta(k) = %q", v)
	}
	if err := s.SetMeta("", val); err == nil {
		t.Error("SetMeta with an empty key succeeded")
	}
}

func TestInvalidPrefix(t *testing.T) {
	s := openTest(t)
	if _, err := s.PutBan(Entry{}); err == nil {
		t.Error("PutBan of a zero prefix succeeded")
	}
	if err := s.PutAllow(Entry{}); err == nil {
		t.Error("PutAllow of a zero prefix succeeded")
	}
	if _, err := s.DelBan(netip.Prefix{}); err == nil {
		t.Error("DelBan of a zero prefix succeeded")
	}
}

func TestLocked(t *testing.T) {
	dir := t.TempDir()
	s := openTestDir(t, dir)
	_ = s
	start := time.Now()
	s2, err := Open(dir)
	if err == nil {
		s2.Close()
		t.Fatal("second Open succeeded")
	}
	if !errors.Is(err, ErrLocked) {
		t.Errorf("error does not wrap ErrLocked: %v", err)
	}
	want := "state store " + filepath.Join(dir, FileName) + " is locked by another moat process"
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("second Open took %v", d)
	}
}

func openTestDir(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestNotADatabase(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte(strings.Repeat("not a database\n", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir)
	if err == nil || !strings.Contains(err.Error(), "not a valid moat database") {
		t.Errorf("Open of garbage: %v", err)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	dir := t.TempDir()
	s := openTestDir(t, dir)
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketInfo).Put(keySchema, []byte{schemaVersion + 1})
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err := Open(dir)
	if err == nil || !strings.Contains(err.Error(), "upgrade moat") {
		t.Errorf("Open of a newer schema: %v", err)
	}
}

func TestCorruptRecords(t *testing.T) {
	s := openTest(t)
	good := []Entry{
		{Prefix: pfx("192.0.2.1"), Origin: "a", Expires: t0},
		{Prefix: pfx("192.0.2.5"), Origin: "b", Expires: t0},
	}
	if _, err := s.PutBans(good); err != nil {
		t.Fatal(err)
	}
	valid := appendEntry(nil, Entry{Origin: "x", Reason: "y", Created: t0, Expires: t0})
	bad := map[string][]byte{
		string(prefixKey(pfx("192.0.2.2"))):          {},                                                                                    // empty
		string(prefixKey(pfx("192.0.2.3"))):          valid[:len(valid)-1],                                                                  // truncated
		string(prefixKey(pfx("192.0.2.4"))):          append([]byte{9}, valid[1:]...),                                                       // future version
		string(prefixKey(pfx("2001:db8::1"))):        append(valid[:2:2], 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), // overlong varint
		"\x04\x01\x02":                               valid,                                                                                 // malformed key
		"\x04\xc0\x00\x02\x07\x18":                   valid,                                                                                 // host bits set: 192.0.2.7/24
		"\x06" + strings.Repeat("\x00", 16) + "\xff": valid,                                                                                 // length 255
	}
	if err := s.db.Update(func(tx *bolt.Tx) error {
		for k, v := range bad {
			if err := tx.Bucket(bucketBans).Put([]byte(k), v); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketHistory).Put(prefixKey(pfx("192.0.2.1")), []byte{1, 2})
	}); err != nil {
		t.Fatal(err)
	}

	all, err := s.Bans()
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("Bans error %v, want ErrCorrupt", err)
	} else {
		t.Logf("Bans error: %v", err)
	}
	if got := prefixes(all); !slices.Equal(got, []string{"192.0.2.1/32", "192.0.2.5/32"}) {
		t.Errorf("Bans returned %v alongside the corrupt ones", got)
	}
	if _, _, err := s.Ban(pfx("192.0.2.3")); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "c0000203") {
		t.Errorf("Ban of corrupt record: %v", err)
	}
	removed, err := s.PruneBans(t0)
	if err != nil || !slices.Equal(prefixes(removed), []string{"192.0.2.1/32", "192.0.2.5/32"}) {
		t.Errorf("PruneBans = %v, %v", prefixes(removed), err)
	}
	if _, _, err := s.History(pfx("192.0.2.1")); !errors.Is(err, ErrCorrupt) {
		t.Errorf("History of corrupt record: %v", err)
	}
	// A corrupt counter does not block a new ban; it restarts.
	if e, err := s.PutBan(Entry{Prefix: pfx("192.0.2.1")}); err != nil || e.Count != 1 {
		t.Errorf("PutBan over corrupt history = %+v, %v", e, err)
	}
	// A corrupt record can be replaced and deleted by prefix.
	if found, err := s.DelBan(pfx("192.0.2.3")); !found || err != nil {
		t.Errorf("DelBan of corrupt record = %v, %v", found, err)
	}
}

func prefixes(es []Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Prefix.String())
	}
	return out
}

func FuzzDecode(f *testing.F) {
	f.Add(appendEntry(nil, Entry{Origin: "scan", Reason: "r", Created: t0, Expires: t0, Count: 3}))
	f.Add(appendEntry(nil, Entry{}))
	f.Add(appendEntry(nil, Entry{Origin: "login", Reason: "nginx-http-auth", Expires: t0, Count: 1, Ports: []Port{{6, 80}, {6, 443}}}))
	f.Add(appendEntry(nil, Entry{Origin: "fleet", Host: "web-1", Created: t0}))
	f.Add(appendHistory(nil, 4, t0))
	f.Add(appendHistory(nil, 1, time.Time{}))
	f.Add([]byte{})
	p := pfx("192.0.2.1")
	f.Fuzz(func(t *testing.T, v []byte) {
		// Decoding never panics; whatever decodes survives a re-encoding.
		if e, err := decodeEntry(p, v, nil); err == nil {
			e2, err := decodeEntry(p, appendEntry(nil, e), map[string]string{})
			if err != nil || !sameEntry(e, e2) {
				t.Errorf("entry %+v re-decoded as %+v, %v", e, e2, err)
			}
			if exp, ok := entryExpires(v); !ok || !exp.Equal(e.Expires) {
				t.Errorf("entryExpires = %v, %v; full decode says %v", exp, ok, e.Expires)
			}
		}
		if c, last, err := decodeHistory(v); err == nil {
			c2, last2, err := decodeHistory(appendHistory(nil, c, last))
			if err != nil || c2 != c || !last2.Equal(last) {
				t.Errorf("history %d %v re-decoded as %d %v, %v", c, last, c2, last2, err)
			}
		}
		if p, err := parseKey(v); err == nil {
			if got := prefixKey(p); string(got) != string(v) {
				t.Errorf("key re-encoded %x, want %x", got, v)
			}
		}
	})
}

// randomEntries returns n distinct ban entries: mostly IPv4 hosts, some IPv6
// /64 and /128, in random order, as a burst from a scan would.
func randomEntries(n int) []Entry {
	r := rand.New(rand.NewPCG(1, 2))
	seen := make(map[netip.Prefix]bool, n)
	out := make([]Entry, 0, n)
	for len(out) < n {
		var p netip.Prefix
		switch r.IntN(10) {
		case 0:
			var a [16]byte
			a[0], a[1] = 0x20, 0x01
			for i := 2; i < 16; i++ {
				a[i] = byte(r.Uint32())
			}
			p = netip.PrefixFrom(netip.AddrFrom16(a), 128)
		case 1:
			var a [16]byte
			a[0], a[1] = 0x2a, 0x02
			for i := 2; i < 8; i++ {
				a[i] = byte(r.Uint32())
			}
			p = netip.PrefixFrom(netip.AddrFrom16(a), 64)
		default:
			p = netip.PrefixFrom(netip.AddrFrom4([4]byte(binaryBE(r.Uint32()))), 32)
		}
		if seen[p] {
			continue
		}
		seen[p] = true
		out = append(out, Entry{Prefix: p, Origin: "scan", Reason: "tcp syn scan, 25 ports in 3s", Created: t0, Expires: t0.Add(24 * time.Hour)})
	}
	return out
}

func binaryBE(v uint32) []byte { return []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)} }

// TestPutBans100kFast guards the burst path against going quadratic (as
// unsorted inserts or mmap regrowth made it): about 0.3 s here, the bound is
// loose so that a loaded machine does not fail it. The benchmark gives the
// figure.
func TestPutBans100kFast(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("timing test: not in -short or -race runs")
	}
	es := randomEntries(100_000)
	s := openTest(t)
	start := time.Now()
	if _, err := s.PutBans(es); err != nil {
		t.Fatal(err)
	}
	d := time.Since(start)
	t.Logf("PutBans(100k) into an empty store: %v", d)
	if d > 5*time.Second {
		t.Errorf("PutBans(100k) took %v", d)
	}
	all, err := s.Bans()
	if err != nil || len(all) != len(es) {
		t.Fatalf("Bans = %d entries, %v", len(all), err)
	}
}

func BenchmarkPutBans100k(b *testing.B) {
	es := randomEntries(100_000)
	b.Run("empty", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			s, err := Open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if _, err := s.PutBans(es); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			s.Close()
			b.StartTimer()
		}
	})
	b.Run("rebanAll", func(b *testing.B) {
		s := openTest(b)
		if _, err := s.PutBans(es); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if _, err := s.PutBans(es); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkPutBan(b *testing.B) {
	es := randomEntries(10_000)
	s := openTest(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := s.PutBan(es[i%len(es)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkBans100k(b *testing.B) {
	s := openTest(b)
	if _, err := s.PutBans(randomEntries(100_000)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		all, err := s.Bans()
		if err != nil || len(all) != 100_000 {
			b.Fatal(len(all), err)
		}
	}
}

func BenchmarkPruneBans100kNone(b *testing.B) {
	s := openTest(b)
	if _, err := s.PutBans(randomEntries(100_000)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if removed, err := s.PruneBans(t0); err != nil || len(removed) != 0 {
			b.Fatal(len(removed), err)
		}
	}
}

// TestConcurrentUse runs writers and readers together (for -race).
func TestConcurrentUse(t *testing.T) {
	s := openTest(t)
	es := randomEntries(400)
	done := make(chan error, 5)
	for w := range 4 {
		go func() {
			for _, e := range es[w*100 : (w+1)*100] {
				if _, err := s.PutBan(e); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	go func() {
		for range 20 {
			if _, err := s.Bans(); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for range 5 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	if all, _ := s.Bans(); len(all) != len(es) {
		t.Errorf("%d bans stored, want %d", len(all), len(es))
	}
}

func TestDelEndedBans(t *testing.T) {
	s := openTest(t)
	for _, e := range []Entry{
		{Prefix: pfx("10.210.1.1/32"), Created: t0, Expires: t0.Add(time.Minute)}, // ended
		{Prefix: pfx("10.210.1.2/32"), Created: t0, Expires: t0.Add(time.Hour)},   // banned again, later
		{Prefix: pfx("10.210.1.3/32"), Created: t0},                               // forever
	} {
		if _, err := s.PutBan(e); err != nil {
			t.Fatal(err)
		}
	}
	now := t0.Add(2 * time.Minute)
	ps := []netip.Prefix{pfx("10.210.1.1/32"), pfx("10.210.1.2/32"), pfx("10.210.1.3/32"), pfx("10.210.9.9/32")}
	if err := s.DelEndedBans(ps, now); err != nil {
		t.Fatal(err)
	}
	bans, err := s.Bans()
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, e := range bans {
		left = append(left, e.Prefix.String())
	}
	if strings.Join(left, " ") != "10.210.1.2/32 10.210.1.3/32" {
		t.Fatalf("left %v: only the ended ban may go", left)
	}
	if n, _, _ := s.History(pfx("10.210.1.1/32")); n != 1 {
		t.Fatalf("history count %d after the ban ended, want 1", n)
	}
}

// An empty store must not take bbolt's default 16 MiB growth step on disk.
func TestEmptyStoreIsSmall(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 2<<20 {
		t.Fatalf("an empty store is %d bytes; want at most 2 MiB", fi.Size())
	}
	t.Logf("empty store: %d bytes", fi.Size())
}

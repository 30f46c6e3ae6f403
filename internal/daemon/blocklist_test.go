package daemon

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/blocklist"
	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/firewall"
)

// fakeBlocklistKernel holds what the kernel would, per list.
type fakeBlocklistKernel struct {
	sets  map[string]map[blocklist.Range]bool
	calls int
	fail  bool
}

func (f *fakeBlocklistKernel) UpdateBlocklist(name string, del, add []blocklist.Range) (int, error) {
	if f.fail {
		return 0, io.ErrUnexpectedEOF
	}
	f.calls++
	s := f.sets[name]
	if s == nil {
		s = map[blocklist.Range]bool{}
		f.sets[name] = s
	}
	for _, r := range del {
		delete(s, r)
	}
	for _, r := range add {
		s[r] = true
	}
	return 2 * (len(del) + len(add)), nil
}

func (f *fakeBlocklistKernel) has(name, a string) bool {
	for r := range f.sets[name] {
		if r.Contains(netip.MustParseAddr(a)) {
			return true
		}
	}
	return false
}

func TestBlocklistsRefreshDiffHolesAndLastGood(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "list.txt")
	write := func(s string) {
		if err := os.WriteFile(src, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("192.0.2.0/24\n198.51.100.7\n")
	k := &fakeBlocklistKernel{sets: map[string]map[blocklist.Range]bool{}}
	holes := []blocklist.Range{blocklist.FromPrefix(netip.MustParsePrefix("192.0.2.1/32"))}
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	b := newBlocklists(slog.New(slog.NewTextHandler(io.Discard, nil)), k, dir, func() []blocklist.Range { return holes }, func() time.Time { return now })
	cfg := config.Blocklist{Name: "x", Source: src, Format: "plain", Refresh: time.Hour, MaxSize: 1 << 20}
	rs := firewall.Build(config.Firewall{Blocklists: []string{"x"}, ClosedResponse: "drop", LogRate: 1, LogBurst: 1}, nil)
	b.hold(rs, []config.Blocklist{cfg})(true)
	ctx := context.Background()
	b.tick(ctx)
	if !k.has("x", "192.0.2.7") || !k.has("x", "198.51.100.7") || k.has("x", "192.0.2.1") {
		t.Fatalf("kernel %v: want the list less the protected 192.0.2.1", k.sets["x"])
	}
	st := b.status(nil)[0]
	if st.Entries != 2 || st.Ranges != 3 || st.Protected != 1 {
		t.Fatalf("status %+v", st)
	}

	// A refresh with one entry changed sends that change only.
	write("192.0.2.0/24\n198.51.100.8\n")
	b.refreshNow()
	b.tick(ctx)
	st = b.status(nil)[0]
	if st.LastAdded != 1 || st.LastRemoved != 1 || !k.has("x", "198.51.100.8") || k.has("x", "198.51.100.7") {
		t.Fatalf("after a one-entry change: %+v, kernel %v", st, k.sets["x"])
	}

	// A protected address that stops being protected goes back in; the
	// list is not read again for it.
	holes = nil
	b.tick(ctx)
	if !k.has("x", "192.0.2.1") {
		t.Fatal("192.0.2.1 not listed once no longer protected")
	}

	// A bad file and a missing one keep the last good list.
	for _, bad := range []string{"<html>502 Bad Gateway</html>\n", ""} {
		if bad == "" {
			os.Remove(src)
		} else {
			write(bad)
		}
		b.refreshNow()
		b.tick(ctx)
		st = b.status(nil)[0]
		if st.LastError == "" || !k.has("x", "198.51.100.8") || st.Entries != 2 {
			t.Fatalf("after a bad source: %+v", st)
		}
	}

	// A new daemon (a restart) starts from the saved copy while the
	// source is gone.
	k2 := &fakeBlocklistKernel{sets: map[string]map[blocklist.Range]bool{}}
	b2 := newBlocklists(slog.New(slog.NewTextHandler(io.Discard, nil)), k2, dir, func() []blocklist.Range { return nil }, func() time.Time { return now })
	b2.hold(rs, []config.Blocklist{cfg})(true)
	b2.tick(ctx)
	if st := b2.status(nil)[0]; !k2.has("x", "198.51.100.8") || st.LastError == "" || !strings.Contains(st.LastError, "no such file") {
		t.Fatalf("restart with the source gone: %+v, kernel %v", st, k2.sets["x"])
	}

	// An install of the whole table carries what the kernel holds.
	rs = firewall.Build(config.Firewall{Blocklists: []string{"x"}, ClosedResponse: "drop", LogRate: 1, LogBurst: 1}, nil)
	b2.hold(rs, []config.Blocklist{cfg})(true)
	n := 0
	for _, sd := range rs.Sets {
		if sd.Name == firewall.BlocklistSet("x", false) {
			n = len(sd.Ranges)
		}
	}
	if n != len(k2.sets["x"]) || n == 0 {
		t.Fatalf("install carries %d ranges, the kernel holds %d", n, len(k2.sets["x"]))
	}
}

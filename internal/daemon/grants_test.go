package daemon

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/store"
)

func TestEventRingKeepsTheMostRecent(t *testing.T) {
	r := eventRing{max: 3}
	if got := r.last(0); got == nil || len(got) != 0 {
		t.Fatalf("empty ring: %#v, want an empty list (JSON [])", got)
	}
	for i := range 5 {
		r.add(DoorEvent{Door: string(rune('a' + i))})
	}
	doors := func(evs []DoorEvent) string {
		var b strings.Builder
		for _, e := range evs {
			b.WriteString(e.Door)
		}
		return b.String()
	}
	if got := doors(r.last(0)); got != "cde" {
		t.Fatalf("ring holds %q, want the last three, oldest first: cde", got)
	}
	if got := doors(r.last(2)); got != "de" {
		t.Fatalf("last(2) = %q, want de", got)
	}
	// What last returns is the caller's: the ring going on must not change it.
	got := r.last(0)
	r.add(DoorEvent{Door: "f"})
	if doors(got) != "cde" {
		t.Fatalf("last's result changed under the ring: %q", doors(got))
	}
}

func testBook(t *testing.T, dir string) (*grantBook, *store.Store) {
	t.Helper()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	b := newGrantBook(context.Background(), slog.New(slog.NewTextHandler(io.Discard, nil)), st)
	return b, st
}

func TestGrantBookPlansReloadsAndRestarts(t *testing.T) {
	dir := t.TempDir()
	stopLog := filepath.Join(dir, "stops")
	hook := filepath.Join(dir, "hook")
	if err := os.WriteFile(hook, []byte("#!/bin/sh\necho \"$@\" >> "+stopLog+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	knockLog := filepath.Join(dir, "knock.log")
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	a4, a6 := netip.MustParseAddr("10.210.0.2"), netip.MustParseAddr("fd00:210::2")
	tcp := func(p uint16) config.PortSpec { return config.PortSpec{Proto: config.TCP, From: p, To: p} }
	kern := config.Door{Name: "kern", Open: []config.PortSpec{tcp(22)}, OpenFor: time.Minute}
	hookDoor := config.Door{Name: "hook", Open: []config.PortSpec{{Proto: config.TCP, From: 9000, To: 9001}}, OpenFor: time.Minute,
		StopCommand: []string{hook, "close", "%IP%", "%DOOR%"}}
	cfg := &config.Config{Doors: []config.Door{kern, hookDoor}}

	b, st := testBook(t, dir)
	b.setLogFile(knockLog)
	b.opened(store.Grant{Door: "kern", Addr: a4, Ports: doorPorts(kern), Kernel: true, Opened: now, Expires: now.Add(time.Minute)}, "knock", now)
	// The same kernel opening seen again (its log message, then a read of
	// the set) is one event.
	b.opened(store.Grant{Door: "kern", Addr: a4, Ports: doorPorts(kern), Kernel: true, Opened: now, Expires: now.Add(time.Minute + 300*time.Millisecond)}, "found in the kernel", now)
	b.opened(store.Grant{Door: "hook", Addr: a6, Ports: doorPorts(hookDoor), Opened: now, Expires: now.Add(time.Minute), StopCommand: hookDoor.StopCommand}, "knock", now)
	if n := len(b.events(0)); n != 2 {
		t.Fatalf("%d events after two openings, want 2: %+v", n, b.events(0))
	}
	keep, stale := b.plan(cfg, now.Add(10*time.Second))
	if len(stale) != 0 || len(keep) != 3 {
		t.Fatalf("plan with the same doors: keep %+v stale %+v; want all three ports kept", keep, stale)
	}
	for _, g := range keep {
		if g.Timeout != 50*time.Second {
			t.Fatalf("a kept grant goes back with the time it has left (50s), got %v", g.Timeout)
		}
	}

	// A restart: the store has both.
	b.save()
	st.Close()
	b, st = testBook(t, dir)
	defer st.Close()
	b.setLogFile(knockLog)
	if n := len(b.list()); n != 2 {
		t.Fatalf("after a restart the book has %d grants, want 2", n)
	}
	if n := len(b.events(0)); n != 2 {
		t.Fatalf("after a restart the door log has %d events, want 2", n)
	}

	// A reload that removes the hook door and changes the kernel door's ports.
	kern2 := kern
	kern2.Open = []config.PortSpec{tcp(2222)}
	keep, stale = b.plan(&config.Config{Doors: []config.Door{kern2}}, now.Add(20*time.Second))
	if len(keep) != 0 || len(stale) != 2 {
		t.Fatalf("plan after removing a door and changing one: keep %+v stale %+v", keep, stale)
	}
	b.retire(stale, now.Add(20*time.Second))
	b.retire(stale, now.Add(21*time.Second)) // a second reload must not end them again
	b.expire(now.Add(time.Hour))
	b.wait()
	if got, _ := os.ReadFile(stopLog); string(got) != "close fd00:210::2 hook\n" {
		t.Fatalf("stop commands run:\n%q\nwant the removed door's once", got)
	}
	if len(b.list()) != 0 {
		t.Fatalf("grants left: %+v", b.list())
	}
	evs := b.events(0)
	if len(evs) != 4 || evs[2].Action != ActionClosed || evs[3].Action != ActionClosed || evs[2].Why != "door removed from the config" {
		t.Fatalf("events: %+v", evs)
	}

	// A grant whose time ran out while moat was down is not put back; it
	// is logged as expired.
	b.opened(store.Grant{Door: "kern", Addr: a4, Ports: doorPorts(kern2), Kernel: true, Opened: now, Expires: now.Add(time.Minute)}, "knock", now)
	keep, stale = b.plan(&config.Config{Doors: []config.Door{kern2}}, now.Add(2*time.Minute))
	if len(keep) != 0 || len(stale) != 1 || stale[0].action != ActionExpired {
		t.Fatalf("an ended grant: keep %+v stale %+v", keep, stale)
	}

	data, _ := os.ReadFile(knockLog)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	stamp := `^\[\d{4}-\d\d-\d\d \d\d:\d\d\] `
	for i, want := range []string{
		stamp + `10\.210\.0\.2: kern: OPEN SESAME$`,
		stamp + `fd00:210::2: hook: OPEN SESAME$`,
		stamp + `fd00:210::2: hook: closed \(door removed from the config\)$`,
		stamp + `hook: running command: ` + regexp.QuoteMeta(hook) + ` close fd00:210::2 hook$`,
		stamp + `10\.210\.0\.2: kern: closed \(door's open ports changed\)$`,
		stamp + `10\.210\.0\.2: kern: OPEN SESAME$`,
	} {
		if i >= len(lines) || !regexp.MustCompile(want).MatchString(lines[i]) {
			t.Fatalf("log file line %d: want %s\n%s", i+1, want, data)
		}
	}
}

// The guards ask whether an address holds any grant, per packet and per
// line: the book keeps a count per address, right across doors, renewals
// and restarts.
func TestGrantBookKnowsWhoHoldsAGrant(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	a, other := netip.MustParseAddr("10.210.0.2"), netip.MustParseAddr("10.210.0.3")
	b, st := testBook(t, dir)
	g := func(door string) store.Grant {
		return store.Grant{Door: door, Addr: netip.AddrFrom16(a.As16()), Kernel: true, Opened: now, Expires: now.Add(time.Minute)}
	}
	b.opened(g("one"), "knock", now)
	b.opened(g("two"), "knock", now)
	b.opened(g("one"), "knock again", now.Add(10*time.Second)) // a renewal
	if !b.holds(a) || b.holds(other) || len(b.holders()) != 1 {
		t.Fatalf("holds %v, other %v, holders %v", b.holds(a), b.holds(other), b.holders())
	}
	b.closed("one", a, ActionClosed, "close sequence", now)
	if !b.holds(a) {
		t.Fatal("a still holds door two's grant")
	}
	b.save()
	st.Close()
	b2, st2 := testBook(t, dir)
	defer st2.Close()
	if !b2.holds(a) {
		t.Fatal("a restart forgot the grant")
	}
	b2.closed("two", a, ActionClosed, "close sequence", now)
	if b2.holds(a) || len(b2.holders()) != 0 {
		t.Fatal("no grant left, yet a holds one")
	}
}

package daemon

import (
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/session"
)

// fakeSessions is what session.Proc.LoggedIn would report.
type fakeSessions struct {
	ss     []session.Session
	hidden bool
}

func (f *fakeSessions) scan([]uint16) ([]session.Session, error) {
	if f.hidden {
		return f.ss, session.ErrOwnersHidden
	}
	return f.ss, nil
}

func conn(client string, loggedIn, unknown bool) session.Session {
	return session.Session{Client: netip.MustParseAddrPort(client), Server: netip.MustParseAddrPort("10.210.0.1:22"),
		LoggedIn: loggedIn, Unknown: unknown}
}

func TestSessionTable(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	grace := 2 * time.Minute
	admin, old, fresh := netip.MustParseAddr("10.210.0.2"), netip.MustParseAddr("10.210.0.3"), netip.MustParseAddr("10.210.0.4")
	f := &fakeSessions{ss: []session.Session{conn("10.210.0.2:40000", true, false)}}
	tab := newSessionTable(log, nil)
	tab.scan = f.scan
	tab.refresh([]uint16{22}, grace, t0)
	if !tab.has(admin) || tab.has(old) {
		t.Fatal("a verified session is one; nothing else is")
	}

	// Owners hidden: a connection counts once sshd's Accepted line is read,
	// or once it outlives LoginGraceTime; a pre-auth one never does.
	f.hidden = true
	f.ss = []session.Session{conn("10.210.0.2:40000", false, true), conn("10.210.0.3:40001", false, true), conn("10.210.0.4:40002", false, true)}
	tab.refresh([]uint16{22}, grace, t0)
	if tab.has(admin) || tab.has(old) || tab.has(fresh) {
		t.Fatal("unattributable connections are not sessions by themselves")
	}
	tab.accept(admin, 40000, []uint16{22}, grace, t0.Add(time.Second))
	if !tab.has(admin) || tab.has(old) {
		t.Fatal("the Accepted line makes exactly its connection a session")
	}
	tab.refresh([]uint16{22}, grace, t0.Add(grace))
	if tab.has(old) {
		t.Fatal("a connection within LoginGraceTime may still be authenticating")
	}
	tab.refresh([]uint16{22}, grace, t0.Add(grace+graceMargin+time.Second))
	if !tab.has(old) || !tab.has(fresh) {
		t.Fatal("a connection that outlived LoginGraceTime logged in")
	}
	tab.refresh([]uint16{22}, 0, t0.Add(time.Hour))
	if tab.has(old) || !tab.has(admin) {
		t.Fatal("without a known LoginGraceTime age proves nothing; the Accepted line still does")
	}

	// A restart keeps what was known; a closed connection is forgotten.
	saved, ok := tab.snapshot()
	if !ok {
		t.Fatal("nothing to save")
	}
	again := newSessionTable(log, saved)
	again.scan = f.scan
	again.refresh([]uint16{22}, grace, t0.Add(grace+graceMargin+time.Second))
	if !again.has(admin) || !again.has(old) {
		t.Fatal("the restart lost the sessions")
	}
	f.ss = f.ss[:1]
	again.refresh([]uint16{22}, grace, t0.Add(time.Hour))
	if again.has(old) || len(again.conns) != 1 {
		t.Fatalf("closed connections kept: %v", again.conns)
	}
}

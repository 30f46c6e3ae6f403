package daemon

import (
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/authlog"
	"github.com/moat-fw/moat/internal/ban"
	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/store"
)

// nullKernel takes every set change: the guard's tests look at the bans
// the manager holds.
type nullKernel struct{}

func (nullKernel) Update(firewall.SetKind, []firewall.Element, []firewall.Element) error { return nil }

// fakeHandshakes is the evidence table with its answers set by hand.
type fakeHandshakes struct {
	at   map[netip.Addr]time.Time
	down bool
}

func (f *fakeHandshakes) handshake(a netip.Addr, now time.Time) (bool, bool) {
	if f.down {
		return false, false
	}
	t, ok := f.at[a]
	return ok && now.Sub(t) <= sshPeerWindow, true
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// trustGuard is a login guard (max_retry 3, forget_on_success) over a real
// ban manager, with fake evidence: handshakes from hs, the connections in
// conns established to sshd, those mapped to true held by a logged-in
// sshd process.
func trustGuard(t *testing.T, hs *fakeHandshakes, conns map[connKey]bool) *loginGuard {
	t.Helper()
	return trustGuardWith(t, hs, conns, nil)
}

// trustGuardWith is trustGuard with its [login] config changed by edit.
func trustGuardWith(t *testing.T, hs *fakeHandshakes, conns map[connKey]bool, edit func(*config.Login)) *loginGuard {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	bans, err := ban.New(st, nullKernel{}, nil, t0, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Login{Enabled: true, Mode: "normal", MaxRetry: 3, FindTime: 10 * time.Minute, BanTime: time.Hour,
		BanTimeMultiplier: 1, MaxBanTime: time.Hour, ForgetOnSuccess: true, MaxTracked: 1000}
	if edit != nil {
		edit(&cfg)
	}
	g := newLoginGuard(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), bans)
	g.trust.peers = hs
	g.trust.conns = func() map[connKey]bool { return conns }
	// The daemon's session table, reduced to the Accepted lines it is told.
	sessions := map[netip.Addr]bool{}
	g.accepted = func(a netip.Addr, _ uint16) { sessions[a] = true }
	g.protected = &protection{session: func(a netip.Addr) bool { return sessions[a] }}
	forgetSessions[g] = func() { clear(sessions) }
	return g
}

// forgetSessions ends the sessions a trustGuard was told of.
var forgetSessions = map[*loginGuard]func(){}

// fileLine parses a line as the file follower hands it on.
func fileLine(t *testing.T, msg string) *authlog.Event {
	t.Helper()
	var ev authlog.Event
	if !authlog.ParseSSHD([]byte("Mar  1 12:00:00 host sshd[4242]: "+msg), &ev) {
		t.Fatalf("not an sshd event: %s", msg)
	}
	return &ev
}

func failed(a netip.Addr, port int) string {
	return "Failed password for root from " + a.String() + " port " + strconv.Itoa(port) + " ssh2"
}

// Forged failure lines (no handshake behind them) never ban; real ones do;
// a handshake older than the window vouches for nothing.
func TestFileFailuresNeedHandshake(t *testing.T) {
	forged := netip.MustParseAddr("10.210.0.77")
	genuine := netip.MustParseAddr("10.210.0.2")
	stale := netip.MustParseAddr("10.210.0.3")
	hs := &fakeHandshakes{at: map[netip.Addr]time.Time{genuine: t0.Add(-time.Minute), stale: t0.Add(-sshPeerWindow - time.Second)}}
	g := trustGuard(t, hs, nil)
	for i := range 6 {
		g.sshdFromFile(fileLine(t, failed(forged, 40000+i)), t0)
		g.sshdFromFile(fileLine(t, failed(stale, 40000+i)), t0)
	}
	for _, a := range []netip.Addr{forged, stale} {
		if g.bans.Active(a, t0) {
			t.Fatalf("%s banned by lines with no recent handshake behind them", a)
		}
	}
	if st := g.status(nil); st.Unverified != 12 || st.Events != 0 {
		t.Fatalf("status: unverified %d, events %d; want 12 and 0", st.Unverified, st.Events)
	}
	for i := range 3 {
		g.sshdFromFile(fileLine(t, failed(genuine, 50000+i)), t0)
	}
	if !g.bans.Active(genuine, t0) {
		t.Fatal("three failures with a handshake behind them did not ban")
	}
}

// Without a packet intake there is no evidence: file lines count as they
// did before, rather than the guard going blind.
func TestFileFailuresCountWhenIntakeDown(t *testing.T) {
	a := netip.MustParseAddr("10.210.0.8")
	g := trustGuard(t, &fakeHandshakes{down: true}, nil)
	for i := range 3 {
		g.sshdFromFile(fileLine(t, failed(a, 40000+i)), t0)
	}
	if !g.bans.Active(a, t0) {
		t.Fatal("with the intake down, file lines no longer counted")
	}
}

// One forged "message repeated 5 times" line is one failure, not five.
func TestFileRepeatedCountsOnce(t *testing.T) {
	a := netip.MustParseAddr("10.210.0.9")
	g := trustGuard(t, &fakeHandshakes{at: map[netip.Addr]time.Time{a: t0}}, nil)
	g.sshdFromFile(fileLine(t, "message repeated 5 times: [ "+failed(a, 40001)+"]"), t0)
	if g.bans.Active(a, t0) {
		t.Fatal("one repeated line banned (max_retry 3)")
	}
	if st := g.status(nil); st.Events != 1 {
		t.Fatalf("events %d, want 1", st.Events)
	}
}

// A forged Accepted line neither forgets failures nor makes a session,
// even for an address that holds a real pre-auth connection (the review's
// M2 forgery); a real one, whose connection a logged-in sshd process
// holds (at once, or within acceptGrace), does both.
func TestFileAcceptedNeedsHandshakeAndLoggedInConnection(t *testing.T) {
	a := netip.MustParseAddr("10.210.0.140")
	k := connKey{a, 40100}
	const (
		none     = iota
		preauth  // established, held by pre-auth processes only
		loggedIn // established, held by "sshd: U@notty"
	)
	for _, tc := range []struct {
		name      string
		handshake bool
		conn      int
		later     int // the connection at the recheck
		trusted   bool
	}{
		{"no handshake, no connection", false, none, none, false},
		{"handshake, no such connection", true, none, none, false},
		{"logged-in connection without a handshake report", false, loggedIn, loggedIn, false},
		{"handshake and a pre-auth connection held open", true, preauth, preauth, false},
		{"handshake, pre-auth connection closed", true, preauth, none, false},
		{"handshake and a logged-in connection", true, loggedIn, loggedIn, true},
		{"handshake, logged in by the recheck", true, preauth, loggedIn, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs := &fakeHandshakes{at: map[netip.Addr]time.Time{}}
			if tc.handshake {
				hs.at[a] = t0
			}
			conns := map[connKey]bool{}
			set := func(c int) {
				delete(conns, k)
				if c != none {
					conns[k] = c == loggedIn
				}
			}
			set(tc.conn)
			// Failures need a handshake to count at all.
			g := trustGuard(t, &fakeHandshakes{at: map[netip.Addr]time.Time{a: t0}}, conns)
			for i := range 2 {
				g.sshdFromFile(fileLine(t, failed(a, 40000+i)), t0)
			}
			g.trust.peers = hs
			g.sshdFromFile(fileLine(t, "Accepted password for nobody from "+a.String()+" port 40100 ssh2"), t0)
			set(tc.later)
			g.recheckAccepted(t0.Add(acceptRecheck))
			g.recheckAccepted(t0.Add(acceptGrace))
			if len(g.trust.pending) != 0 {
				t.Fatalf("still pending after acceptGrace: %v", g.trust.pending)
			}
			if _, got := g.protected.Protected(netip.PrefixFrom(a, 32)); got != tc.trusted {
				t.Fatalf("session: %v, want %v", got, tc.trusted)
			}
			if st := g.status(nil); (st.Unverified == 0) != tc.trusted {
				t.Fatalf("unverified_lines %d", st.Unverified)
			}
			set(none) // the session ends: only the forget (or not) remains
			forgetSessions[g]()
			g.trust.peers = &fakeHandshakes{at: map[netip.Addr]time.Time{a: t0}}
			g.sshdFromFile(fileLine(t, failed(a, 40002)), t0.Add(acceptGrace))
			// Trusted: the failures were forgotten. Not: the third bans.
			if got := g.bans.Active(a, t0.Add(acceptGrace)); got == tc.trusted {
				t.Fatalf("banned: %v, want %v", got, !tc.trusted)
			}
		})
	}
}

// The pending queue is bounded: lines past it are not counted.
func TestFileAcceptedPendingBounded(t *testing.T) {
	hs := &fakeHandshakes{at: map[netip.Addr]time.Time{}}
	conns := map[connKey]bool{}
	for i := range maxPendingAccepts + 4 {
		a := netip.AddrFrom4([4]byte{10, 210, 1, byte(i)})
		hs.at[a] = t0
		conns[connKey{a, 40000}] = false
	}
	g := trustGuard(t, hs, conns)
	for a := range hs.at {
		g.sshdFromFile(fileLine(t, "Accepted password for x from "+a.String()+" port 40000 ssh2"), t0)
	}
	if len(g.trust.pending) != maxPendingAccepts || g.status(nil).Unverified != 4 {
		t.Fatalf("pending %d, unverified %d", len(g.trust.pending), g.status(nil).Unverified)
	}
}

func TestSSHPeersWindowAndSeed(t *testing.T) {
	var s sshPeers
	a := netip.MustParseAddr("10.210.0.2")
	b := netip.MustParseAddr("fd00:210::2")
	if seen, ok := s.handshake(a, t0); seen || !ok {
		t.Fatalf("empty table: %v %v", seen, ok)
	}
	s.record(netip.AddrFrom16(a.As16()), t0) // mapped: the same address
	if seen, _ := s.handshake(a, t0.Add(sshPeerWindow)); !seen {
		t.Fatal("a record within the window not seen")
	}
	if seen, _ := s.handshake(a, t0.Add(sshPeerWindow+time.Nanosecond)); seen {
		t.Fatal("a record past the window still vouches")
	}
	// A kernel element with 1 minute left was added 9 minutes ago.
	s.seed([]firewall.SSHPeer{{Addr: b, Left: time.Minute}}, t0)
	if seen, _ := s.handshake(b, t0.Add(sshPeerWindow-9*time.Minute)); !seen {
		t.Fatal("seeded peer not seen")
	}
	if seen, _ := s.handshake(b, t0.Add(sshPeerWindow-9*time.Minute+time.Second)); seen {
		t.Fatal("seeded peer dated too late")
	}
	s.down.Store(true)
	if _, ok := s.handshake(a, t0); ok {
		t.Fatal("intake down, yet evidence claimed available")
	}
}

// The intake records every sshpeer message: no allocation once the table
// holds the address (the kernel reports each peer at most every 10 min).
func TestSSHPeersRecordDoesNotAllocate(t *testing.T) {
	var s sshPeers
	a := netip.MustParseAddr("10.210.0.2")
	s.record(a, t0)
	if n := testing.AllocsPerRun(1000, func() { s.record(a, t0) }); n != 0 {
		t.Fatalf("record allocates %v times", n)
	}
}

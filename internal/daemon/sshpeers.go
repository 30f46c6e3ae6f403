package daemon

import (
	"context"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moat-fw/moat/internal/authlog"
	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/lru"
	"github.com/moat-fw/moat/internal/session"
)

// Lines in a syslog file are trusted only with evidence from the kernel.
//
// Any local user can write a line into a syslog file that reads as sshd's
// (logger -t 'sshd[1]' ...): one forged failure line per attempt bans any
// address, and one forged "Accepted" line made an address immune to both
// guards. The journal says who wrote each entry (the journal follower
// checks _COMM and _UID); a file does not. What a local user cannot forge
// is a remote address completing a TCP handshake with sshd, so the ruleset
// reports every peer with an established connection to sshd's ports
// (firewall/sshpeer.go, NFLOG prefix moat:sshpeer), the daemon remembers
// when, and an sshd line from a file counts only if its address did that
// within sshPeerWindow. An "Accepted" line from a file must also name a
// connection (address and port) established to sshd right now, and that
// connection must be held by a logged-in sshd process (title "sshd: U@tty",
// which sshd gives the post-auth child): an attacker who holds a real
// pre-auth connection open and forges the line for it gets nothing, since
// its connection is held by pre-auth processes ("[accepted]", "[net]") and
// no local user can pass a socket into sshd's.

// sshPeerWindow is how long a reported handshake vouches for an address's
// lines. The kernel reports an active peer again every
// firewall.SSHPeerTimeout (its set does not refresh), and every auth
// attempt is itself established packets, so at the time of any real line
// the last report is at most that old; the minute more covers reading
// the file late.
const sshPeerWindow = firewall.SSHPeerTimeout + time.Minute

// sshPeerCapacity bounds the addresses remembered: the kernel's two sets
// hold at most 65536 each.
const sshPeerCapacity = 2 * 65536

// sshPeers remembers when each address last had an established
// connection to sshd reported. The zero value is ready to use.
type sshPeers struct {
	mu   sync.Mutex
	seen *lru.Table[int64] // unix nanoseconds of the last report
	// down is set when the NFLOG intake could not start: no report will
	// come, and file lines are counted as before, unverified.
	down atomic.Bool
}

// record notes that a had an established connection to sshd at now. It is
// on the packet path and does not allocate once the table has grown.
func (s *sshPeers) record(a netip.Addr, now time.Time) {
	k := a.Unmap().As16()
	s.mu.Lock()
	if s.seen == nil {
		s.seen = lru.New[int64](sshPeerCapacity)
	}
	v, _, _ := s.seen.Touch(k)
	*v = max(*v, now.UnixNano())
	s.mu.Unlock()
}

// seed takes the peers the kernel's sets hold, each seen
// firewall.SSHPeerTimeout-Left before now. The daemon reads them before it
// installs its table, which empties the sets.
func (s *sshPeers) seed(peers []firewall.SSHPeer, now time.Time) {
	for _, p := range peers {
		s.record(p.Addr, now.Add(p.Left-firewall.SSHPeerTimeout))
	}
}

// handshake reports whether a had an established connection to sshd
// reported within sshPeerWindow before now; available is false when no
// report can come (the intake is down).
func (s *sshPeers) handshake(a netip.Addr, now time.Time) (seen, available bool) {
	if s.down.Load() {
		return false, false
	}
	k := a.Unmap().As16()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil {
		return false, true
	}
	v, _, ok := s.seen.Get(k)
	return ok && now.UnixNano()-*v <= int64(sshPeerWindow), true
}

// seedSSHPeers reads the kernel's sshpeer sets into d.peers. A start after
// a restart thus still counts the lines of connections made before it.
func (d *Daemon) seedSSHPeers() {
	peers, err := d.fw.SSHPeers()
	if err != nil {
		d.log.Debug("sshd's peers not read from the kernel", "err", err)
		return
	}
	d.peers.seed(peers, d.now())
}

// handshakes is what the login guard asks of sshPeers (a fake in tests).
type handshakes interface {
	handshake(a netip.Addr, now time.Time) (seen, available bool)
}

// fileTrust decides whether an sshd event read from a syslog file counts.
type fileTrust struct {
	peers handshakes
	// conns lists the connections established to sshd's ports, each
	// mapped to whether a logged-in sshd process holds it. One call reads
	// /proc once, however many Accepted lines wait on it.
	conns func() map[connKey]bool

	unverified uint64    // lines not counted; under the guard's mu
	lastLog    time.Time // of the last debug line about one; under mu
	warnedDown atomic.Bool
	// pending holds Accepted lines whose connection was open but not yet
	// held by a logged-in process: sshd logs the line before it forks the
	// post-auth child. recheckAccepted settles them. Under mu.
	pending []pendingAccept
}

// pendingAccept is an Accepted line waiting for its post-auth process.
type pendingAccept struct {
	key   connKey
	until time.Time
}

// Bounds on Accepted lines waiting for their post-auth process: how many,
// how long, and how often they are looked at again.
const (
	maxPendingAccepts = 16
	acceptGrace       = 3 * time.Second
	acceptRecheck     = 100 * time.Millisecond
)

// why says why a file line's event is not to be trusted, or "".
func (g *loginGuard) untrusted(ev *authlog.Event, now time.Time) string {
	t := &g.trust
	a := ev.Addr.Unmap()
	if t.peers != nil {
		switch seen, available := t.peers.handshake(a, now); {
		case !available:
			if !t.warnedDown.Swap(true) {
				g.log.Warn("no packet intake, so no handshake evidence: sshd lines read from syslog files are counted unverified, and any local user can forge them")
			}
		case !seen:
			return "no TCP handshake from the address to sshd in the last " + sshPeerWindow.String()
		}
	}
	return ""
}

// sshdFromFile handles an sshd event read from a syslog file, which any
// local user can write: only events the kernel vouches for count.
func (g *loginGuard) sshdFromFile(ev *authlog.Event, now time.Time) {
	why := g.untrusted(ev, now)
	if why == "" && ev.Kind == authlog.Accepted && g.trust.conns != nil {
		switch in, open := g.trust.conns()[connKey{ev.Addr.Unmap(), ev.Port}]; {
		case !open:
			why = "no connection from the address and port is established to sshd"
		case !in:
			if g.deferAccepted(connKey{ev.Addr.Unmap(), ev.Port}, now) {
				return
			}
			why = "too many Accepted lines waiting for a logged-in sshd process"
		}
	}
	if why == "" {
		g.sshd(ev, now)
		return
	}
	g.notCounted(ev.Addr, ev.Kind, why, now)
}

// deferAccepted queues an Accepted line for recheckAccepted, unless the
// queue is full.
func (g *loginGuard) deferAccepted(k connKey, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, p := range g.trust.pending {
		if p.key == k {
			return true
		}
	}
	if len(g.trust.pending) >= maxPendingAccepts {
		return false
	}
	g.trust.pending = append(g.trust.pending, pendingAccept{key: k, until: now.Add(acceptGrace)})
	return true
}

// recheckAccepted settles the waiting Accepted lines: a connection now held
// by a logged-in sshd process counts as a login; one that closed, or is
// still pre-auth after acceptGrace, does not.
func (g *loginGuard) recheckAccepted(now time.Time) {
	g.mu.Lock()
	pending := append([]pendingAccept(nil), g.trust.pending...)
	g.mu.Unlock()
	if len(pending) == 0 {
		return
	}
	conns := g.trust.conns()
	var keep []pendingAccept
	for _, p := range pending {
		in, open := conns[p.key]
		switch {
		case open && in:
			ev := authlog.Event{Kind: authlog.Accepted, Addr: p.key.addr, Port: p.key.port, Count: 1}
			g.sshd(&ev, now)
		case !open:
			g.notCounted(p.key.addr, authlog.Accepted, "the connection closed before a logged-in sshd process held it", now)
		case !now.Before(p.until):
			g.notCounted(p.key.addr, authlog.Accepted, "no logged-in sshd process holds the connection", now)
		default:
			keep = append(keep, p)
		}
	}
	g.mu.Lock()
	// Lines deferred meanwhile were appended after the copy.
	g.trust.pending = append(keep, g.trust.pending[len(pending):]...)
	g.mu.Unlock()
}

// notCounted counts and (at most once a second) logs a line not counted.
func (g *loginGuard) notCounted(a netip.Addr, kind authlog.Kind, why string, now time.Time) {
	g.mu.Lock()
	g.trust.unverified++
	n := g.trust.unverified
	say := now.Sub(g.trust.lastLog) >= time.Second // a forger must not flood the log
	if say {
		g.trust.lastLog = now
	}
	g.mu.Unlock()
	if say {
		g.log.Debug("sshd line from a syslog file not counted: nothing shows sshd wrote it", "addr", a,
			"kind", kind.String(), "why", why, "unverified_lines", n)
	}
}

// sshdConns lists the connections established to one of ports, from the
// daemon's network namespace, each mapped to whether a logged-in sshd
// process holds it (package session: where sshd's processes cannot be
// read, none is known to be logged in).
func sshdConns(ports []uint16) map[connKey]bool {
	out := map[connKey]bool{}
	for _, f := range []string{"/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		session.ParseTCP(data, func(e session.TCPEntry) {
			if e.Established() && slices.Contains(ports, e.Local.Port()) {
				out[connKey{e.Remote.Addr(), e.Remote.Port()}] = false
			}
		})
	}
	ss, _ := session.Proc{}.LoggedIn(ports)
	for _, s := range ss {
		if s.LoggedIn {
			out[connKey{s.Client.Addr().Unmap(), s.Client.Port()}] = true
		}
	}
	return out
}

// fileSourceWarning is said once per start for each syslog-file source.
func fileSourceWarning(path string) string {
	return "login source " + path + " is a syslog file: any local user can write lines into it that read as sshd's (logger -t sshd). " +
		"moat counts a line from it only when the kernel saw its address complete a TCP handshake with sshd in the last " +
		sshPeerWindow.String() + ", and an Accepted line only for a connection a logged-in sshd process holds; " +
		"the journal source is preferred (it records which program wrote each line): set [login] sources = [\"journal\"] where journald runs"
}

// recheckAccepts runs recheckAccepted every acceptRecheck until ctx ends.
func (g *loginGuard) recheckAccepts(ctx context.Context, now func() time.Time) {
	t := time.NewTicker(acceptRecheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.recheckAccepted(now())
		}
	}
}

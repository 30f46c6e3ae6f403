package daemon

import (
	"bufio"
	"bytes"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moat-fw/moat/internal/authlog"
	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/lru"
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
// connection (address and port) that is established to sshd right now.

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
	// connOpen reports whether a connection from a port p is established
	// to one of sshd's ports now.
	connOpen func(a netip.Addr, p uint16) bool

	unverified uint64    // lines not counted; under the guard's mu
	lastLog    time.Time // of the last debug line about one; under mu
	warnedDown atomic.Bool
}

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
	if ev.Kind == authlog.Accepted && t.connOpen != nil && !t.connOpen(a, ev.Port) {
		return "no connection from the address and port is established to sshd"
	}
	return ""
}

// sshdFromFile handles an sshd event read from a syslog file, which any
// local user can write: only events the kernel vouches for count.
func (g *loginGuard) sshdFromFile(ev *authlog.Event, now time.Time) {
	why := g.untrusted(ev, now)
	if why == "" {
		g.sshd(ev, now)
		return
	}
	g.mu.Lock()
	g.trust.unverified++
	n := g.trust.unverified
	say := now.Sub(g.trust.lastLog) >= time.Second // a forger must not flood the log
	if say {
		g.trust.lastLog = now
	}
	g.mu.Unlock()
	if say {
		g.log.Debug("sshd line from a syslog file not counted: nothing shows sshd wrote it", "addr", ev.Addr,
			"kind", ev.Kind.String(), "why", why, "unverified_lines", n)
	}
}

// sshdConnOpen reports whether a connection from a port p is established
// to one of ports, from /proc/net/tcp{,6} of the daemon's namespace.
func sshdConnOpen(ports []uint16, a netip.Addr, p uint16) bool {
	want := connKey{a.Unmap(), p}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(f)
		if err == nil && connEstablished(data, want, ports) {
			return true
		}
	}
	return false
}

// connEstablished reports whether a /proc/net/tcp{,6} table lists an
// established connection from remote to one of the local ports.
func connEstablished(data []byte, remote connKey, ports []uint16) bool {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for first := true; sc.Scan(); first = false {
		if first { // the header
			continue
		}
		f := bytes.Fields(sc.Bytes())
		if len(f) < 4 || string(f[3]) != "01" { // 01: TCP_ESTABLISHED
			continue
		}
		r, ok := parseProcAddr(f[2])
		if !ok || r != remote {
			continue
		}
		if l, ok := parseProcAddr(f[1]); ok && slices.Contains(ports, l.port) {
			return true
		}
	}
	return false
}

// fileSourceWarning is said once per start for each syslog-file source.
func fileSourceWarning(path string) string {
	return "login source " + path + " is a syslog file: any local user can write lines into it that read as sshd's (logger -t sshd). " +
		"moat counts a line from it only when the kernel saw its address complete a TCP handshake with sshd in the last " +
		sshPeerWindow.String() + ", and an Accepted line only for a connection established now; " +
		"the journal source is preferred (it records which program wrote each line): set [login] sources = [\"journal\"] where journald runs"
}

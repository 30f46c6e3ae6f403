package daemon

import (
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moat-fw/moat/internal/ban"
	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/protect"
)

// protection is the daemon's ban.Protector: the addresses found on the
// system (routers, resolvers, the host, outgoing peers), refreshed every
// few seconds, and the ones that change faster than that (door grants,
// logged-in sessions), asked live.
type protection struct {
	log     *slog.Logger
	set     atomic.Pointer[protect.Set]
	caller  netip.Addr             // the SSH session of whoever started moat
	granted func(netip.Addr) bool  // holds a door grant
	session func(netip.Addr) bool  // holds a logged-in SSH session
	extra   func() []protect.Entry // grants and sessions, listed for the snapshot
	system  protect.System         // where Discover reads
	warned  sync.Map               // file errors logged once
	lifted  atomic.Int64           // guard bans lifted for covering a protected address
}

var _ ban.Protector = (*protection)(nil)

// Protected implements ban.Protector.
func (p *protection) Protected(q netip.Prefix) (protect.Entry, bool) {
	if e, ok := p.set.Load().Overlaps(q); ok {
		return e, true
	}
	if !q.IsSingleIP() {
		// A wide ban is rare: list what changed since the snapshot.
		if p.caller.IsValid() && q.Contains(p.caller) {
			return protect.Host(p.caller, protect.WhyCaller), true
		}
		if p.extra != nil {
			for _, e := range p.extra() {
				if e.Prefix.Overlaps(q) {
					return e, true
				}
			}
		}
		return protect.Entry{}, false
	}
	a := q.Addr()
	switch {
	case a == p.caller:
		return protect.Host(a, protect.WhyCaller), true
	case p.session != nil && p.session(a):
		return protect.Host(a, protect.WhySession), true
	case p.granted != nil && p.granted(a):
		return protect.Host(a, protect.WhyGrant), true
	}
	return protect.Entry{}, false
}

func (d *Daemon) newProtection(sshConn string) *protection {
	p := &protection{log: d.log, granted: d.holdsGrant, system: protect.System{Root: "/"},
		session: d.sessions.has,
		extra:   d.liveProtected,
	}
	if s, ok := firewall.ParseSSHConnection(sshConn); ok {
		p.caller = s.Client
	}
	return p
}

// liveProtected lists the protected addresses that change between two
// refreshes: logged-in sessions and door-grant holders.
func (d *Daemon) liveProtected() []protect.Entry {
	var out []protect.Entry
	for _, a := range d.sessions.addrs() {
		out = append(out, protect.Host(a, protect.WhySession))
	}
	for _, a := range d.grantHolders() {
		out = append(out, protect.Host(a, protect.WhyGrant))
	}
	return out
}

// covers reports whether a guard must leave a alone.
func (p *protection) covers(a netip.Addr) bool {
	_, ok := p.Protected(netip.PrefixFrom(a, a.BitLen()))
	return ok
}

// refresh rediscovers the system's protected addresses and returns the new
// snapshot.
func (p *protection) refresh() *protect.Set {
	f := protect.Discover(p.system)
	for _, err := range f.Errors {
		if _, seen := p.warned.LoadOrStore(err.Error(), true); !seen {
			p.log.Warn("cannot read what to protect from it; those addresses are not protected", "err", err)
		}
	}
	var live []protect.Entry
	if p.caller.IsValid() {
		live = append(live, protect.Host(p.caller, protect.WhyCaller))
	}
	if p.extra != nil {
		live = append(live, p.extra()...)
	}
	s := protect.New(live, f.Entries(), protect.LinkLocal)
	p.set.Store(s)
	return s
}

// refreshProtection rediscovers the protected addresses and lifts the
// guards' bans that cover one.
func (d *Daemon) refreshProtection(now time.Time) {
	s := d.prot.refresh()
	lifted, err := d.bans.LiftProtected(s, now)
	for _, e := range lifted {
		d.log.Warn("lifted a ban that covers a protected address", "addr", ban.PrefixString(e.Prefix), "origin", e.Origin, "reason", e.Reason)
	}
	d.prot.lifted.Add(int64(len(lifted)))
	if err != nil {
		d.log.Error("lifting bans of protected addresses", "err", err)
	}
}

// snapshot is the last refresh with the live entries added: what status
// shows.
func (p *protection) snapshot() *protect.Set {
	var live []protect.Entry
	if p.extra != nil {
		live = p.extra()
	}
	return protect.New(p.set.Load().Entries(), live)
}

// ProtectedJSON is one protected address or prefix in `moat status`.
type ProtectedJSON struct {
	Addr   string `json:"addr,omitempty"`
	Prefix string `json:"prefix,omitempty"`
	Why    string `json:"why"`
}

func protectedJSON(s *protect.Set) []ProtectedJSON {
	out := []ProtectedJSON{}
	for _, e := range s.Entries() {
		j := ProtectedJSON{Why: e.Why}
		if e.Prefix.IsSingleIP() {
			j.Addr = e.Prefix.Addr().String()
		} else {
			j.Prefix = e.Prefix.String()
		}
		out = append(out, j)
	}
	return out
}

package daemon

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"sync"

	"github.com/moat-fw/moat/internal/session"
)

// sessionTable holds the logged-in SSH sessions, which no guard may ban:
// an administrator who mistypes a password in a second window, or a
// colleague behind the same NAT, must not cut off a session that is in.
//
// The daemon owns it, not a guard, and rebuilds it from the kernel and the
// process table (package session) at start and every few seconds: a
// reload, an apply or a restart never empties it, and a session that
// logged in before moat started is in it as well. When moat cannot see
// which sshd process holds a connection (no CAP_SYS_PTRACE), a connection
// counts only once sshd's own Accepted line for it was seen, from a source
// that vouches for its writer (the journal, or a file line the kernel's
// handshake evidence backs); those are kept in the store across restarts.
type sessionTable struct {
	proc session.Proc
	log  *slog.Logger

	mu       sync.Mutex
	live     map[netip.Addr]session.Session // by client address
	accepted map[connKey]bool               // Accepted lines for connections moat cannot attribute
	dirty    bool                           // accepted changed since the last save
	hidden   bool                           // the last refresh could not see owners
	warned   bool
}

// maxAccepted bounds the Accepted lines kept for unattributable
// connections: each is pruned once its connection is gone.
const maxAccepted = 4096

func newSessionTable(log *slog.Logger, saved []byte) *sessionTable {
	t := &sessionTable{log: log, live: map[netip.Addr]session.Session{}, accepted: map[connKey]bool{}}
	var keys []netip.AddrPort
	if saved != nil && json.Unmarshal(saved, &keys) == nil {
		for _, k := range keys[:min(len(keys), maxAccepted)] {
			t.accepted[connKey{k.Addr().Unmap(), k.Port()}] = true
		}
	}
	return t
}

// refresh rebuilds the table for sshd's ports.
func (t *sessionTable) refresh(sshPorts []uint16) {
	ss, err := t.proc.LoggedIn(sshPorts)
	hidden := errors.Is(err, session.ErrOwnersHidden)
	if err != nil && !hidden {
		t.log.Warn("cannot read the SSH sessions from /proc; keeping the last ones", "err", err)
		return
	}
	live := make(map[netip.Addr]session.Session, len(ss))
	open := make(map[connKey]bool, len(ss))
	for _, s := range ss {
		k := connKey{s.Client.Addr().Unmap(), s.Client.Port()}
		open[k] = true
		if s.LoggedIn {
			live[k.addr] = s
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range ss {
		if k := (connKey{s.Client.Addr().Unmap(), s.Client.Port()}); s.Unknown && t.accepted[k] {
			live[k.addr] = s
		}
	}
	for k := range t.accepted {
		if !open[k] {
			delete(t.accepted, k)
			t.dirty = true
		}
	}
	t.live = live
	t.hidden = hidden
	if hidden && !t.warned {
		t.warned = true
		t.log.Warn("SSH sessions are known from sshd's Accepted lines only: a session that logged in before moat started is not protected until its next login", "err", err)
	}
}

// accept records sshd's Accepted line for a connection. It matters only
// when owners are hidden; otherwise the process table already says which
// connections logged in.
func (t *sessionTable) accept(a netip.Addr, port uint16, sshPorts []uint16) {
	if port == 0 {
		return
	}
	t.mu.Lock()
	if len(t.accepted) < maxAccepted {
		t.accepted[connKey{a.Unmap(), port}] = true
		t.dirty = true
	}
	t.mu.Unlock()
	t.refresh(sshPorts) // protect it now, not at the next tick
}

// has reports whether a holds a logged-in session.
func (t *sessionTable) has(a netip.Addr) bool {
	if t == nil {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.live[a.Unmap()]
	return ok
}

// addrs lists the addresses holding a logged-in session.
func (t *sessionTable) addrs() []netip.Addr {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]netip.Addr, 0, len(t.live))
	for a := range t.live {
		out = append(out, a)
	}
	return out
}

// list is the table for status.
func (t *sessionTable) list() []session.Session {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]session.Session, 0, len(t.live))
	for _, s := range t.live {
		out = append(out, s)
	}
	return out
}

// snapshot returns the Accepted lines to persist when they changed.
func (t *sessionTable) snapshot() ([]byte, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.dirty {
		return nil, false
	}
	t.dirty = false
	keys := make([]netip.AddrPort, 0, len(t.accepted))
	for k := range t.accepted {
		keys = append(keys, netip.AddrPortFrom(k.addr, k.port))
	}
	b, err := json.Marshal(keys)
	return b, err == nil
}

// metaSessions is the store key of the Accepted lines kept for connections
// whose owner moat cannot see, so a restart keeps their protection.
const metaSessions = "sessions.accepted"

// saveSessions persists the session table's Accepted lines if they changed.
func (d *Daemon) saveSessions() {
	if b, ok := d.sessions.snapshot(); ok {
		if err := d.st.SetMeta(metaSessions, b); err != nil {
			d.log.Warn("cannot save the SSH sessions' Accepted lines", "err", err)
		}
	}
}

// connKey is a client's end of a TCP connection.
type connKey struct {
	addr netip.Addr
	port uint16
}

package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/moat-fw/moat/internal/session"
	"github.com/moat-fw/moat/internal/sshd"
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
// counts once sshd's own Accepted line for it was seen, from a source that
// vouches for its writer (the journal, or a file line the kernel's
// handshake evidence backs), or once it has been established for longer
// than sshd's LoginGraceTime: sshd cuts every connection still
// authenticating by then, so one that outlives it logged in. Both are
// kept in the store across restarts.
type sessionTable struct {
	scan func(sshPorts []uint16) ([]session.Session, error) // session.Proc.LoggedIn
	log  *slog.Logger

	mu      sync.Mutex
	live    map[netip.Addr]session.Session // by client address
	conns   map[connKey]*connSeen          // connections moat cannot attribute
	dirty   bool                           // conns changed since the last save
	warned  bool
	failing bool // the last refresh failed (logged once)
}

// connSeen is what moat knows of a connection it cannot attribute.
type connSeen struct {
	First    time.Time `json:"first"`    // first seen established
	Accepted bool      `json:"accepted"` // sshd's Accepted line for it was seen
}

// graceMargin is added to LoginGraceTime before a connection's age says it
// logged in: sshd's timer starts a little after the handshake moat saw.
const graceMargin = 5 * time.Second

// maxAccepted bounds the unattributable connections kept: each is pruned
// once its connection is gone.
const maxAccepted = 4096

func newSessionTable(log *slog.Logger, saved []byte) *sessionTable {
	t := &sessionTable{scan: session.Proc{}.LoggedIn, log: log, live: map[netip.Addr]session.Session{}, conns: map[connKey]*connSeen{}}
	var rows []savedConn
	if saved != nil && json.Unmarshal(saved, &rows) == nil {
		for _, r := range rows[:min(len(rows), maxAccepted)] {
			c := r.connSeen
			t.conns[connKey{r.Client.Addr().Unmap(), r.Client.Port()}] = &c
		}
	}
	return t
}

// savedConn is a connSeen as the store keeps it.
type savedConn struct {
	Client netip.AddrPort `json:"client"`
	connSeen
}

// refresh rebuilds the table for sshd's ports. grace is sshd's
// LoginGraceTime (0: unknown or unlimited, and age proves nothing).
func (t *sessionTable) refresh(sshPorts []uint16, grace time.Duration, now time.Time) {
	ss, err := t.scan(sshPorts)
	hidden := errors.Is(err, session.ErrOwnersHidden)
	if err != nil && !hidden {
		t.mu.Lock()
		say := !t.failing
		t.failing = true
		t.mu.Unlock()
		if say { // once per failure, not every 2 s
			t.log.Warn("cannot read the SSH sessions from /proc; keeping the last ones", "err", err)
		}
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
		if !s.Unknown {
			continue
		}
		k := connKey{s.Client.Addr().Unmap(), s.Client.Port()}
		c := t.conns[k]
		if c == nil {
			if len(t.conns) >= maxAccepted {
				continue
			}
			c = &connSeen{First: now}
			t.conns[k] = c
			t.dirty = true
		}
		if c.Accepted || grace > 0 && now.Sub(c.First) > grace+graceMargin {
			live[k.addr] = s
		}
	}
	for k := range t.conns {
		if !open[k] {
			delete(t.conns, k)
			t.dirty = true
		}
	}
	t.live = live
	t.failing = false
	if hidden && !t.warned {
		t.warned = true
		t.log.Warn("moat cannot see which sshd process holds each SSH connection: a connection counts as a logged-in session once sshd's Accepted line for it is read, or once it outlives sshd's LoginGraceTime", "err", err)
	}
}

// accept records sshd's Accepted line for a connection. It matters only
// when owners are hidden; otherwise the process table already says which
// connections logged in.
func (t *sessionTable) accept(a netip.Addr, port uint16, sshPorts []uint16, grace time.Duration, now time.Time) {
	if port == 0 {
		return
	}
	k := connKey{a.Unmap(), port}
	t.mu.Lock()
	if c := t.conns[k]; c != nil {
		c.Accepted = true
	} else if len(t.conns) < maxAccepted {
		t.conns[k] = &connSeen{First: now, Accepted: true}
	}
	t.dirty = true
	t.mu.Unlock()
	t.refresh(sshPorts, grace, now) // protect it now, not at the next tick
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
	return slices.Collect(maps.Keys(t.live))
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
	rows := make([]savedConn, 0, len(t.conns))
	for k, c := range t.conns {
		rows = append(rows, savedConn{Client: netip.AddrPortFrom(k.addr, k.port), connSeen: *c})
	}
	b, err := json.Marshal(rows)
	return b, err == nil
}

// metaSessions is the store key of what moat knows of the connections
// whose owner it cannot see, so a restart keeps their protection.
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

// loginGrace is sshd's LoginGraceTime from sshd -T, or 0 when sshd cannot
// say or sets none (0 there means unlimited: age then proves nothing).
func loginGrace(ctx context.Context) time.Duration {
	ctx, cancel := context.WithTimeout(ctx, sshdLoggingTimeout)
	defer cancel()
	e, err := sshd.Server{}.Effective(ctx, "")
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(e.Get("logingracetime"))
	if err != nil || n <= 0 {
		return 0
	}
	return time.Duration(n) * time.Second
}

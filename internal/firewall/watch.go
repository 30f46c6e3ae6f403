package firewall

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Reading a million elements back from the kernel takes seconds of CPU:
// too much to do every reconcile just to find that nothing changed. The
// kernel announces every change to a set on the nftables netlink group,
// naming the socket that made it, so a monitor of moat's own sets sees
// each element someone else deleted (`nft delete element`, `nft flush
// set`), and the daemon reads the sets back only then. Elements that time
// out are not announced, and need no repair: moat gave them their timeout.

// pidSet holds the port ids of the sockets moat changed its sets from.
type pidSet struct {
	mu sync.Mutex
	m  map[uint32]bool
}

func (p *pidSet) add(pid uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[uint32]bool{}
	}
	p.m[pid] = true
}

func (p *pidSet) has(pid uint32) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m[pid]
}

// Watch follows the kernel's announcements of changes to moat's table
// until ctx ends, and calls changed when another process deleted elements
// of the ban or allow sets, removed one of those sets or the table, or when
// announcements were lost (the socket's buffer overflowed): each time, the
// kernel may lack what moat put there, and only a full read tells. It
// returns only when ctx ends; while it cannot listen it calls changed
// every few seconds, so the caller falls back to reading.
func (a *Applier) Watch(ctx context.Context, changed func()) {
	watched := map[string]bool{}
	for _, k := range []SetKind{Bans, Allows} {
		for _, r := range k.sets() {
			watched[r.name] = true
		}
	}
	// Port-limited bans are bans too: a flush of their sets must bring
	// the full read that puts them back.
	watched[SetPortBan4], watched[SetPortBan6] = true, true
	for ctx.Err() == nil {
		s, err := a.openMonitor()
		if err != nil {
			changed()
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Second):
			}
			continue
		}
		stop := context.AfterFunc(ctx, func() { _ = s.Close() })
		err = s.events(func(pid uint32, typ uint16, table, set string) {
			if table != TableName || a.pids.has(pid) {
				return
			}
			switch typ {
			case nftSubsys | unix.NFT_MSG_DELSETELEM, nftSubsys | unix.NFT_MSG_DELSET:
				if watched[set] {
					changed()
				}
			case nftSubsys | unix.NFT_MSG_DELTABLE:
				changed()
			}
		}, changed)
		stop()
		a.mu.Lock()
		ours := a.mon != s // closed by Apply: see there
		if !ours {
			a.mon = nil
		}
		a.mu.Unlock()
		_ = s.Close()
		if ctx.Err() == nil && !ours {
			changed()
			_ = err
		}
	}
}

// openMonitor joins the nftables group on a new socket, registered so
// that Apply can close it (see Apply).
func (a *Applier) openMonitor() (*rawSock, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s, err := dialRaw(a.opts)
	if err != nil {
		return nil, err
	}
	if err := s.c.JoinGroup(unix.NFNLGRP_NFTABLES); err != nil {
		s.Close()
		return nil, fmt.Errorf("nftables monitor: %w", err)
	}
	_ = s.setsockopt(unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
	a.mon = s
	return s, nil
}

// pauseMonitor closes the monitor's socket before a full install (a.mu
// held): the kernel would otherwise announce each of a million elements
// the install adds, costing the commit time and overflowing the monitor.
// The install replaces every element, so nothing it could have seen
// matters; Watch opens a new socket once the install is done.
func (a *Applier) pauseMonitor() {
	if a.mon != nil {
		_ = a.mon.Close()
		a.mon = nil
	}
}

// events reads announcements until the socket is closed, calling fn with
// the sender, type, table and set of each, and lost when some were lost.
func (s *rawSock) events(fn func(pid uint32, typ uint16, table, set string), lost func()) error {
	for {
		n, rerr := s.read(true)
		if rerr == unix.ENOBUFS {
			lost()
			continue
		}
		if rerr != nil {
			return rerr
		}
		for m := s.rbuf[:n]; len(m) >= nlmsgHdrLen; {
			l := int(binary.NativeEndian.Uint32(m))
			if l < nlmsgHdrLen || l > len(m) {
				break
			}
			typ := binary.NativeEndian.Uint16(m[4:])
			pid := binary.NativeEndian.Uint32(m[12:])
			body := m[nlmsgHdrLen:l]
			m = m[nlmsgAlign(l):]
			if typ>>8 != unix.NFNL_SUBSYS_NFTABLES || len(body) < nfgenLen {
				continue
			}
			// Table and set are attributes 1 and 2 of table, set and
			// element messages alike.
			var table, set string
			eachAttr(body[nfgenLen:], func(at uint16, v []byte) {
				switch at {
				case 1:
					table = cstring(v)
				case 2:
					set = cstring(v)
				}
			})
			fn(pid, typ, table, set)
		}
	}
}

func cstring(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

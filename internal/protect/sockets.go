package protect

import (
	"net/netip"

	"github.com/moat-fw/moat/internal/session"
)

// Socket states in /proc/net/tcp (include/net/tcp_states.h). For UDP the
// kernel prints TCP_ESTABLISHED for a connected socket.
const (
	stateEstablished = 0x01
	stateSynSent     = 0x02
	stateListen      = 0x0a
)

// Sockets holds the lines of /proc/net/{tcp,udp}{,6} that tell outgoing
// connections from incoming ones.
type Sockets struct {
	listening map[uint16]bool
	conns     []sock
}

type sock struct {
	local  uint16
	remote netip.AddrPort
	state  uint8
}

// maxSockets bounds what one refresh keeps of a huge table.
const maxSockets = 1 << 18

// Parse adds one /proc/net/{tcp,udp}{,6} table.
func (s *Sockets) Parse(data []byte) {
	if s.listening == nil {
		s.listening = map[uint16]bool{}
	}
	session.ParseTCP(data, func(e session.TCPEntry) {
		if e.State == stateListen {
			s.listening[e.Local.Port()] = true
			return
		}
		if len(s.conns) < maxSockets {
			s.conns = append(s.conns, sock{local: e.Local.Port(), remote: e.Remote, state: e.State})
		}
	})
}

// Outgoing returns the remote ends of TCP connections this host opened (or
// is opening): established or SYN-sent from a port nothing listens on. A
// reply to the host's own connection comes from these peers, and a forged
// scan from one of them must not cut the connection off.
func (s *Sockets) Outgoing() []netip.Addr {
	var out []netip.Addr
	seen := map[netip.Addr]bool{}
	for _, c := range s.conns {
		if (c.state == stateEstablished || c.state == stateSynSent) && !s.listening[c.local] && usable(c.remote) {
			if a := c.remote.Addr(); !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	return out
}

// Connected returns the peers of connected UDP sockets (a resolver library
// that calls connect(), NTP clients).
func (s *Sockets) Connected() []netip.Addr {
	var out []netip.Addr
	seen := map[netip.Addr]bool{}
	for _, c := range s.conns {
		if c.state == stateEstablished && c.remote.Port() != 0 && usable(c.remote) {
			if a := c.remote.Addr(); !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	return out
}

func usable(ap netip.AddrPort) bool {
	a := ap.Addr()
	return a.IsValid() && !a.IsUnspecified() && !a.IsLoopback()
}

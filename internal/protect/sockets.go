package protect

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"strconv"
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
	lines(data, func(i int, f [][]byte) {
		if i == 0 || len(f) < 4 {
			return // the header
		}
		st, err := strconv.ParseUint(string(f[3]), 16, 8)
		if err != nil {
			return
		}
		local, ok := ParseProcAddr(f[1])
		if !ok {
			return
		}
		if st == stateListen {
			s.listening[local.Port()] = true
			return
		}
		remote, ok := ParseProcAddr(f[2])
		if !ok || len(s.conns) >= maxSockets {
			return
		}
		s.conns = append(s.conns, sock{local: local.Port(), remote: remote, state: uint8(st)})
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

// ParseProcAddr parses "0100007F:0016" (IPv4) or 32 hex digits and a port
// (IPv6): the address in host-order 32-bit words, the port big-endian hex.
// IPv4-mapped addresses of dual-stack sockets are unmapped: the peer is an
// IPv4 host.
func ParseProcAddr(b []byte) (netip.AddrPort, bool) {
	i := bytes.IndexByte(b, ':')
	if i != 8 && i != 32 {
		return netip.AddrPort{}, false
	}
	port, err := strconv.ParseUint(string(b[i+1:]), 16, 16)
	if err != nil {
		return netip.AddrPort{}, false
	}
	var raw [16]byte
	n, err := hex.Decode(raw[:], b[:i])
	if err != nil {
		return netip.AddrPort{}, false
	}
	// Each 32-bit word is in the kernel's (little-endian here) order.
	for w := 0; w < n; w += 4 {
		binary.BigEndian.PutUint32(raw[w:], binary.LittleEndian.Uint32(raw[w:]))
	}
	var a netip.Addr
	if n == 4 {
		a = netip.AddrFrom4([4]byte(raw[:4]))
	} else {
		a = netip.AddrFrom16(raw).Unmap()
	}
	return netip.AddrPortFrom(a, uint16(port)), true
}

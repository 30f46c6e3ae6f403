package daemon

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"os"
	"strconv"
)

// Sessions that logged in: a successful sshd login ("Accepted ... from A
// port P") marks A as holding a session for as long as that connection is
// established. The guards never ban such an address: an administrator who
// mistypes a password in a second window, or a colleague behind the same
// NAT, must not cut off the session that is already in. Attackers cannot
// borrow the protection without logging in.

type connKey struct {
	addr netip.Addr
	port uint16
}

// established returns the remote ends of established TCP connections, from
// /proc/net/tcp and /proc/net/tcp6 of the daemon's network namespace.
func established() map[connKey]bool {
	out := map[connKey]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		parseProcNetTCP(data, out)
	}
	return out
}

// parseProcNetTCP adds the remote ends of established connections listed in
// a /proc/net/tcp{,6} table to out.
func parseProcNetTCP(data []byte, out map[connKey]bool) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	first := true
	for sc.Scan() {
		if first { // the header
			first = false
			continue
		}
		f := bytes.Fields(sc.Bytes())
		if len(f) < 4 || string(f[3]) != "01" { // 01: TCP_ESTABLISHED
			continue
		}
		if k, ok := parseProcAddr(f[2]); ok {
			out[k] = true
		}
	}
}

// parseProcAddr parses "0100007F:0016" (IPv4) or 32 hex digits and a port
// (IPv6): the address in host-order 32-bit words, the port big-endian hex.
func parseProcAddr(b []byte) (connKey, bool) {
	i := bytes.IndexByte(b, ':')
	if i < 0 {
		return connKey{}, false
	}
	port, err := strconv.ParseUint(string(b[i+1:]), 16, 16)
	if err != nil {
		return connKey{}, false
	}
	raw := make([]byte, hex.DecodedLen(i))
	if _, err := hex.Decode(raw, b[:i]); err != nil || (len(raw) != 4 && len(raw) != 16) {
		return connKey{}, false
	}
	// Each 32-bit word is in the kernel's (little-endian here) order.
	for w := 0; w < len(raw); w += 4 {
		binary.BigEndian.PutUint32(raw[w:], binary.LittleEndian.Uint32(raw[w:]))
	}
	a, _ := netip.AddrFromSlice(raw)
	return connKey{a.Unmap(), uint16(port)}, true
}

// sessionAccepted records a login that succeeded.
func (g *loginGuard) sessionAccepted(a netip.Addr, port uint16) {
	if port == 0 {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.sessions) < 65536 {
		g.sessions[connKey{a.Unmap(), port}] = true
	}
}

// pruneSessions forgets sessions whose connection is gone.
func (g *loginGuard) pruneSessions(live map[connKey]bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for k := range g.sessions {
		if !live[k] {
			delete(g.sessions, k)
		}
	}
}

// inSession reports whether a holds a logged-in session.
func (g *loginGuard) inSession(a netip.Addr) bool {
	if g == nil {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	a = a.Unmap()
	for k := range g.sessions {
		if k.addr == a {
			return true
		}
	}
	return false
}

// sessionAddrs lists the addresses holding a logged-in session.
func (g *loginGuard) sessionAddrs() []netip.Addr {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []netip.Addr
	for k := range g.sessions {
		out = append(out, k.addr)
	}
	return out
}

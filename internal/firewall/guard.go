package firewall

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/moat-fw/moat/internal/config"
)

// Session is the SSH session a command runs in, from SSH_CONNECTION
// ("client_ip client_port server_ip server_port").
type Session struct {
	Client netip.Addr
	Server netip.AddrPort
	Who    string // how a refusal names it; "" is "your SSH session"
}

// ParseSSHConnection parses SSH_CONNECTION; ok is false when it is empty
// or malformed (then there is no session to protect).
func ParseSSHConnection(v string) (Session, bool) {
	f := strings.Fields(v)
	if len(f) != 4 {
		return Session{}, false
	}
	client, err := netip.ParseAddr(f[0])
	if err != nil {
		return Session{}, false
	}
	server, err := netip.ParseAddr(f[2])
	if err != nil {
		return Session{}, false
	}
	port, err := strconv.ParseUint(f[3], 10, 16)
	if err != nil || port == 0 {
		return Session{}, false
	}
	// sshd reports IPv4 clients of a dual-stack socket as ::ffff:a.b.c.d.
	return Session{Client: client.Unmap().WithZone(""), Server: netip.AddrPortFrom(server.Unmap().WithZone(""), uint16(port))}, true
}

// CutsOff says why the firewall config would stop the session's client from
// reaching sshd again, or "" if it would not. extraAllow holds runtime allow
// entries. The session itself would live on through conntrack, but the next
// login would fail: that is the lockout this guards against.
func CutsOff(fw config.Firewall, sshPorts []uint16, extraAllow []netip.Prefix, s Session) string {
	if !s.Client.IsValid() {
		return ""
	}
	if s.Client.IsLoopback() {
		return ""
	}
	for _, p := range append(append([]netip.Prefix{}, fw.Allow...), extraAllow...) {
		if p.Contains(s.Client) {
			return ""
		}
	}
	for _, p := range config.ResolveSSH(fw.Open, sshPorts) {
		if p.Contains(config.TCP, s.Server.Port()) {
			return ""
		}
	}
	who := s.Who
	if who == "" {
		who = "your SSH session"
	}
	return fmt.Sprintf("it would cut off %s (from %s to port %d): tcp/%d is not in [firewall] open and %s is not in [firewall] allow; open the port or allow the address, or use --force if you are sure",
		who, s.Client, s.Server.Port(), s.Server.Port(), s.Client)
}

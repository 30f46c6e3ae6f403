package kernlog

import (
	"bytes"
	"net/netip"

	"github.com/moat-fw/moat/internal/ipaddr"
)

// parseAddr parses an address as the kernel prints it: IPv4 dotted quad
// (%pI4), IPv6 as eight groups of four hex digits (%pI6), or compressed
// with "::" as other printers write it. It does not allocate.
func parseAddr(b []byte) (netip.Addr, uint8, bool) {
	if bytes.IndexByte(b, ':') < 0 {
		ip, ok := ipaddr.Parse4(b)
		return netip.AddrFrom4(ip), 4, ok
	}
	ip, ok := ipaddr.Parse6(b)
	return netip.AddrFrom16(ip), 6, ok
}

package authlog

import (
	"bytes"
	"net/netip"

	"github.com/moat-fw/moat/internal/ipaddr"
)

// parseAddr parses an address as sshd prints it: dotted-quad IPv4 (no
// leading zeros) or IPv6, optionally with a %zone, which is dropped. An
// IPv4-mapped IPv6 address is unmapped. It does not allocate, unlike
// netip.ParseAddr with a zone or on error.
func parseAddr(b []byte) (netip.Addr, bool) {
	zone := bytes.IndexByte(b, '%')
	colon := bytes.IndexByte(b, ':') >= 0
	if zone >= 0 {
		if !colon || zone == len(b)-1 || !validZone(b[zone+1:]) {
			return netip.Addr{}, false
		}
		b = b[:zone]
	}
	if colon {
		ip, ok := ipaddr.Parse6(b)
		if !ok {
			return netip.Addr{}, false
		}
		return netip.AddrFrom16(ip).Unmap(), true
	}
	ip, ok := ipaddr.Parse4(b)
	if !ok {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(ip), true
}

// validZone accepts interface names and numbers.
func validZone(z []byte) bool {
	if len(z) > 64 {
		return false
	}
	for _, c := range z {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-' || c == '@') {
			return false
		}
	}
	return true
}

// parsePort parses a decimal port as sshd prints it (%d: no sign, no
// leading zeros).
func parsePort(b []byte) (uint16, bool) {
	if len(b) == 0 || len(b) > 5 || len(b) > 1 && b[0] == '0' {
		return 0, false
	}
	v := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	if v > 65535 {
		return 0, false
	}
	return uint16(v), true
}

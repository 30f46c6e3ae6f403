package login

import (
	"fmt"
	"net/netip"
)

// NameAddr decides which address, if any, a host name sshd wrote in place
// of its client's address ([login] use_dns "warn" or "yes") stands for.
// addrs are what the name resolved to; spared says why an address must
// never be banned (the allow list, the protected addresses), if it must.
//
// The client controls its own reverse DNS, so the name sshd writes, and
// that name's forward records (it may change them between sshd's lookup
// and moat's). A name is therefore trusted only when it cannot hurt anyone
// moat protects and cannot fan out:
//
//   - a name with a spared address is never counted, even when it has
//     others: pointing one's name at a router or a logged-in session must
//     not make moat ban its neighbours either;
//   - a name with more than one address is never counted: sshd's client is
//     one of them, and moat cannot tell which (a dual-stack client is not
//     banned: the price of never banning a victim listed next to it);
//   - a name with no address is not counted.
//
// It returns the address to count, or why none is, and does no DNS: the
// daemon's resolver and `moat explain --use-dns` look the name up, and both
// decide through this one function.
func NameAddr(addrs []netip.Addr, spared func(netip.Addr) (string, bool)) (netip.Addr, string) {
	if len(addrs) == 0 {
		return netip.Addr{}, "the name resolves to no address"
	}
	for _, a := range addrs {
		if spared == nil {
			break
		}
		if why, ok := spared(a.Unmap()); ok {
			return netip.Addr{}, fmt.Sprintf("the name resolves to %s, which is never banned (%s)", a.Unmap(), why)
		}
	}
	first := addrs[0].Unmap()
	for _, a := range addrs[1:] {
		if a.Unmap() != first {
			return netip.Addr{}, fmt.Sprintf("the name resolves to %d addresses; only a name with exactly one is counted", distinct(addrs))
		}
	}
	if !first.IsValid() || first.IsUnspecified() || first.IsLoopback() || first.IsMulticast() {
		return netip.Addr{}, "the name resolves to no usable address"
	}
	return first.WithZone(""), ""
}

func distinct(addrs []netip.Addr) int {
	n := 0
	for i, a := range addrs {
		seen := false
		for _, b := range addrs[:i] {
			if a.Unmap() == b.Unmap() {
				seen = true
				break
			}
		}
		if !seen {
			n++
		}
	}
	return n
}

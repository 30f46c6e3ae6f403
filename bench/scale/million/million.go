// Package million generates the ban set of the scale benchmarks: half
// IPv4, half IPv6, one in a thousand a prefix, none inside another. The
// IPv4 bans lie in 10.0.0.0/8 outside 10.210.0.0/16 and the IPv6 ones under
// fd00:210::/32: they are set elements only, never the source of a packet,
// and leave 10.210.0.0/16 to the benchmarks' own bans.
package million

import "net/netip"

// Prefix returns the i-th ban prefix (i below 2^24).
func Prefix(i int) netip.Prefix {
	h := i / 2
	if i%2 == 0 {
		if h%1000 == 999 {
			return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 128 + byte(h>>16), byte(h >> 8), 0}), 24)
		}
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(h >> 16), byte(h >> 8), byte(h)}), 32)
	}
	if h%1000 == 999 {
		return netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0, 2, 0x11, 4: byte(h >> 16), 5: byte(h >> 8)}), 48)
	}
	return netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0, 2, 0x10, 13: byte(h >> 16), 14: byte(h >> 8), 15: byte(h)}), 128)
}

// Seed6 returns the i-th address of the login benchmarks' seeded bans,
// fd00:210:5eed::/96 plus i (bench/seedstore -v6, and the tables the login
// latency benches prefill to match it).
func Seed6(i int) netip.Addr {
	return netip.AddrFrom16([16]byte{0xfd, 0, 2, 0x10, 0x5e, 0xed, 12: byte(i >> 24), 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)})
}

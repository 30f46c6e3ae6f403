package protect

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
)

// System is where Discover reads the host's facts: a root directory for
// /proc and /etc files (tests use a fake tree) and the interface addresses.
type System struct {
	Root      string                       // "/" on a real host
	HostAddrs func() ([]netip.Addr, error) // nil: net.InterfaceAddrs
}

// Facts are what Discover found, by reason, and the files it could not
// read (a missing file is not an error: not every host has IPv6 or
// systemd-resolved).
type Facts struct {
	Routers   []netip.Addr
	Resolvers []netip.Addr
	Host      []netip.Addr
	Outgoing  []netip.Addr
	Errors    []error
}

// Entries turns facts into set entries, strongest reason first.
func (f *Facts) Entries() []Entry {
	var out []Entry
	for _, l := range []struct {
		as  []netip.Addr
		why string
	}{{f.Host, WhyHost}, {f.Routers, WhyRouter}, {f.Resolvers, WhyResolver}, {f.Outgoing, WhyOutgoing}} {
		for _, a := range l.as {
			out = append(out, Host(a, l.why))
		}
	}
	return out
}

// maxFile bounds what Discover reads of one file: /proc/net/tcp of a busy
// host runs to megabytes, and the outgoing peers past that point are not
// worth the memory of reading it whole every few seconds.
const maxFile = 16 << 20

// Discover reads the routing tables (every gateway is a router, IPv4 and
// IPv6, which includes the routers learned from router advertisements),
// /etc/resolv.conf and systemd-resolved's upstream list, the host's
// addresses, and the peers of connections this host opened (TCP sockets
// that are not on a listening port, connected UDP sockets), all in the
// caller's network namespace.
func Discover(sys System) Facts {
	var f Facts
	read := func(rel string) []byte {
		b, err := readBounded(filepath.Join(sys.Root, rel))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			f.Errors = append(f.Errors, err)
		}
		return b
	}
	f.Routers = append(ParseRoute4(read("proc/net/route")), ParseRoute6(read("proc/net/ipv6_route"))...)
	f.Resolvers = ParseResolvConf(read("etc/resolv.conf"))
	// With the stub resolver (127.0.0.53) the real upstreams are here.
	f.Resolvers = append(f.Resolvers, ParseResolvConf(read("run/systemd/resolve/resolv.conf"))...)
	var tcp Sockets
	tcp.Parse(read("proc/net/tcp"))
	tcp.Parse(read("proc/net/tcp6"))
	f.Outgoing = tcp.Outgoing()
	var udp Sockets
	udp.Parse(read("proc/net/udp"))
	udp.Parse(read("proc/net/udp6"))
	f.Outgoing = append(f.Outgoing, udp.Connected()...)
	host := sys.HostAddrs
	if host == nil {
		host = interfaceAddrs
	}
	var err error
	if f.Host, err = host(); err != nil {
		f.Errors = append(f.Errors, err)
	}
	return f
}

func readBounded(path string) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	var buf bytes.Buffer
	_, err = buf.ReadFrom(&limited{fh, maxFile})
	return buf.Bytes(), err
}

type limited struct {
	f *os.File
	n int64
}

func (l *limited) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errEOF
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.f.Read(p)
	l.n -= int64(n)
	return n, err
}

var errEOF = errors.New("EOF")

func interfaceAddrs() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out, nil
}

// ParseRoute4 returns the gateways in /proc/net/route: "Iface Destination
// Gateway Flags ...", addresses in hex of the kernel's (little-endian here)
// byte order.
func ParseRoute4(data []byte) []netip.Addr {
	var out []netip.Addr
	lines(data, func(i int, f [][]byte) {
		if i == 0 || len(f) < 4 {
			return // the header
		}
		flags, err := strconv.ParseUint(string(f[3]), 16, 16)
		if err != nil || flags&0x2 == 0 { // RTF_GATEWAY
			return
		}
		gw, err := strconv.ParseUint(string(f[2]), 16, 32)
		if err != nil || gw == 0 {
			return
		}
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], uint32(gw))
		out = appendNew(out, netip.AddrFrom4(b))
	})
	return out
}

// ParseRoute6 returns the next hops in /proc/net/ipv6_route: "dest
// dest_len src src_len nexthop metric refcnt use flags iface", addresses as
// 32 hex digits in network order.
func ParseRoute6(data []byte) []netip.Addr {
	var out []netip.Addr
	lines(data, func(_ int, f [][]byte) {
		if len(f) < 10 || len(f[4]) != 32 {
			return
		}
		var b [16]byte
		if _, err := hex.Decode(b[:], f[4]); err != nil {
			return
		}
		if a := netip.AddrFrom16(b); !a.IsUnspecified() {
			out = appendNew(out, a)
		}
	})
	return out
}

// ParseResolvConf returns the nameserver addresses of a resolv.conf.
// Loopback resolvers are left out: loopback is always accepted.
func ParseResolvConf(data []byte) []netip.Addr {
	var out []netip.Addr
	lines(data, func(_ int, f [][]byte) {
		if len(f) < 2 || string(f[0]) != "nameserver" {
			return
		}
		a, err := netip.ParseAddr(string(f[1]))
		if err != nil || a.Unmap().IsLoopback() {
			return
		}
		out = appendNew(out, a.Unmap().WithZone(""))
	})
	return out
}

func lines(data []byte, fn func(i int, fields [][]byte)) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for i := 0; sc.Scan(); i++ {
		fn(i, bytes.Fields(sc.Bytes()))
	}
}

func appendNew(out []netip.Addr, a netip.Addr) []netip.Addr {
	for _, b := range out {
		if a == b {
			return out
		}
	}
	return append(out, a)
}

// Package knock implements moat's knock doors: the door state machines
// that verify knocks in user space, and the knock client. knockd.conf
// import lives in package knockd.
package knock

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Step is one knock: a packet to one port over TCP or UDP.
type Step struct {
	Proto string // "tcp" or "udp"
	Port  uint16
}

// String writes the step as moat's config does: "tcp/7000".
func (s Step) String() string { return s.Proto + "/" + strconv.Itoa(int(s.Port)) }

// MaxSteps is the longest sequence a door accepts, as in knockd (SEQ_MAX).
const MaxSteps = 32

// ParseStep parses a step in moat's form, "tcp/7000" or "udp/9000".
func ParseStep(s string) (Step, error) {
	proto, port, ok := strings.Cut(s, "/")
	if !ok {
		if _, err := strconv.ParseUint(s, 10, 16); err == nil {
			return Step{}, fmt.Errorf("knock %q has no protocol; did you mean \"tcp/%s\"?", s, s)
		}
		return Step{}, fmt.Errorf("knock %q: want a protocol and port like \"tcp/7000\" or \"udp/9000\"", s)
	}
	p, err := parseProto(proto)
	if err != nil {
		return Step{}, fmt.Errorf("knock %q: %w", s, err)
	}
	n, err := parsePort(port)
	if err != nil {
		return Step{}, fmt.Errorf("knock %q: %w", s, err)
	}
	return Step{Proto: p, Port: n}, nil
}

// ParseKnockArg parses a port as the knock client and knockd's sequence
// take it: "7000", "7000:tcp" or "7000:udp". A port without a protocol uses
// defProto ("tcp", or "udp" for knock -u).
//
// Unlike knock(1), which sends TCP for any suffix but exactly "udp" and
// knocks port 0 for a typo, an unknown protocol or a bad port is an error.
func ParseKnockArg(s, defProto string) (Step, error) {
	port, proto, hasProto := strings.Cut(s, ":")
	p := defProto
	if hasProto {
		var err error
		if p, err = parseProto(strings.TrimSpace(proto)); err != nil {
			return Step{}, fmt.Errorf("knock %q: %w, as in \"7000:udp\"", s, err)
		}
	}
	n, err := parsePort(strings.TrimSpace(port))
	if err != nil {
		return Step{}, fmt.Errorf("knock %q: %w", s, err)
	}
	return Step{Proto: p, Port: n}, nil
}

func parseProto(s string) (string, error) {
	switch strings.ToLower(s) {
	case "tcp":
		return "tcp", nil
	case "udp":
		return "udp", nil
	}
	return "", fmt.Errorf("protocol %q: want tcp or udp", s)
}

func parsePort(s string) (uint16, error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("port %q is not a number", s)
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("port %s is out of range; want 1 to 65535", s)
	}
	return uint16(n), nil
}

// Family picks which of a host's addresses to knock on (knock -4, -6).
type Family int

// The families Resolve can pick.
const (
	AnyFamily Family = iota // the resolver's first choice, as getaddrinfo orders them
	IPv4
	IPv6
)

// Options change how Knock sends.
type Options struct {
	Family Family
	// Delay is the pause between two knocks (knock -d, in milliseconds
	// there). Some routers take a quick run of SYNs for a port scan.
	Delay time.Duration
	// Verbose, when set, gets one line per knock, as knock -v prints:
	// "hitting tcp 192.0.2.1:7000".
	Verbose io.Writer
}

// Resolve returns the address of host to knock on: an IP literal as it is
// (with brackets or an IPv6 zone allowed), else the first address the
// resolver returns for the family.
func Resolve(ctx context.Context, host string, fam Family) (netip.Addr, error) {
	if host == "" {
		return netip.Addr{}, errors.New("no host to knock on")
	}
	lit := host
	if strings.HasPrefix(lit, "[") && strings.HasSuffix(lit, "]") {
		lit = lit[1 : len(lit)-1]
	}
	if a, err := netip.ParseAddr(lit); err == nil {
		a = a.Unmap()
		if err := checkFamily(a, fam); err != nil {
			return netip.Addr{}, fmt.Errorf("%s: %w", host, err)
		}
		return a, nil
	}
	network := map[Family]string{AnyFamily: "ip", IPv4: "ip4", IPv6: "ip6"}[fam]
	if network == "" {
		return netip.Addr{}, fmt.Errorf("family %d: want AnyFamily, IPv4 or IPv6", fam)
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, network, host)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("resolve %s: %w", host, err)
	}
	for _, a := range addrs {
		// The resolver may hand back IPv4-mapped IPv6 for "ip6" on some
		// systems; only a real address of the family will do.
		if a = a.Unmap(); checkFamily(a, fam) == nil {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("resolve %s: no %s address", host, network)
}

func checkFamily(a netip.Addr, fam Family) error {
	switch {
	case fam == IPv4 && !a.Is4():
		return errors.New("not an IPv4 address, but -4 asks for one")
	case fam == IPv6 && !a.Is6():
		return errors.New("not an IPv6 address, but -6 asks for one")
	}
	return nil
}

// Knock resolves host and sends the steps to it, one packet each.
func Knock(ctx context.Context, host string, steps []Step, opt Options) error {
	addr, err := Resolve(ctx, host, opt.Family)
	if err != nil {
		return err
	}
	return KnockAddr(ctx, addr, steps, opt)
}

// KnockAddr sends the steps to addr: for a TCP step exactly one SYN, for a
// UDP step one datagram of one zero byte (what knock(1) sends). It stops at
// the first step that could not be sent.
func KnockAddr(ctx context.Context, addr netip.Addr, steps []Step, opt Options) error {
	if len(steps) == 0 {
		return errors.New("no knocks to send: give ports like 7000 8000:udp, or --door NAME")
	}
	for i, s := range steps {
		if i > 0 && opt.Delay > 0 {
			if err := sleep(ctx, opt.Delay); err != nil {
				return err
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		dst := netip.AddrPortFrom(addr, s.Port)
		if opt.Verbose != nil {
			fmt.Fprintf(opt.Verbose, "hitting %s %s\n", s.Proto, dst)
		}
		var err error
		switch s.Proto {
		case "tcp":
			err = sendSYN(dst)
		case "udp":
			err = sendDatagram(dst)
		default:
			err = fmt.Errorf("protocol %q: want tcp or udp", s.Proto)
		}
		if err != nil {
			return fmt.Errorf("knock %d of %d (%s) to %s: %w", i+1, len(steps), s, addr, err)
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// sendSYN sends one SYN and nothing else. connect(2) on a non-blocking
// socket hands the SYN to the IP layer before it returns EINPROGRESS;
// closing a socket in SYN-SENT then moves it to CLOSED without a FIN or a
// RST (the kernel's tcp_close_state), and takes the retransmit timer with
// it. net.Dial would wait for the handshake and resend the SYN.
func sendSYN(dst netip.AddrPort) error {
	sa, fam, err := sockaddr(dst)
	if err != nil {
		return err
	}
	fd, err := unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return fmt.Errorf("tcp socket: %w", err)
	}
	defer unix.Close(fd)
	switch err := unix.Connect(fd, sa); {
	// ECONNREFUSED: a local RST came back already; the SYN did go out.
	case err == nil, errors.Is(err, unix.EINPROGRESS), errors.Is(err, unix.ECONNREFUSED):
		return nil
	default:
		return sendError(err)
	}
}

// sendDatagram sends one UDP datagram holding one zero byte, as knock(1)
// does: some middleboxes drop empty datagrams.
func sendDatagram(dst netip.AddrPort) error {
	sa, fam, err := sockaddr(dst)
	if err != nil {
		return err
	}
	fd, err := unix.Socket(fam, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return fmt.Errorf("udp socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Sendto(fd, []byte{0}, 0, sa); err != nil {
		return sendError(err)
	}
	return nil
}

func sendError(err error) error {
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return fmt.Errorf("%w (a firewall on this machine refused to send it)", err)
	case errors.Is(err, unix.ENETUNREACH), errors.Is(err, unix.EHOSTUNREACH):
		return fmt.Errorf("%w (check the address and this machine's routes)", err)
	}
	return err
}

func sockaddr(dst netip.AddrPort) (unix.Sockaddr, int, error) {
	a := dst.Addr()
	if a.Is4() {
		return &unix.SockaddrInet4{Port: int(dst.Port()), Addr: a.As4()}, unix.AF_INET, nil
	}
	sa := &unix.SockaddrInet6{Port: int(dst.Port()), Addr: a.As16()}
	if z := a.Zone(); z != "" {
		ifi, err := net.InterfaceByName(z)
		if err != nil {
			if n, perr := strconv.ParseUint(z, 10, 32); perr == nil {
				sa.ZoneId = uint32(n)
				return sa, unix.AF_INET6, nil
			}
			return nil, 0, fmt.Errorf("zone %q of %s: %w", z, a, err)
		}
		sa.ZoneId = uint32(ifi.Index)
	}
	return sa, unix.AF_INET6, nil
}

// Relay connects to addr over TCP and copies in to the connection and the
// connection to out, as nc does, so that `moat knock` can stand in for ssh's
// ProxyCommand. When in ends, the sending half is shut and the server's
// answer still read; Relay returns when the server closes its half, or ctx
// ends.
//
// The copy from in runs on its own goroutine and ends at in's next read
// after Relay returns (for a process's stdin: when the process exits).
func Relay(ctx context.Context, addr netip.AddrPort, in io.Reader, out io.Writer, timeout time.Duration) error {
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return fmt.Errorf("connect after knocking: %w (did the knock open the door? try a longer --connect-wait)", err)
	}
	conn := c.(*net.TCPConn)
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	go func() {
		// A failed send needs no report of its own: the server's reset
		// ends the read below too.
		if _, err := io.Copy(conn, in); err == nil {
			_ = conn.CloseWrite()
		}
	}()
	_, err = io.Copy(out, conn)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("relay from %s: %w", addr, err)
	}
	return nil
}

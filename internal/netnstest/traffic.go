package netnstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Result is what became of a TCP connection attempt.
type Result int

const (
	_ Result = iota // the zero value is no result, so it never passes for one
	// Connected: the handshake completed.
	Connected
	// Refused: a TCP reset (or ICMP port unreachable) came back.
	Refused
	// Unreachable: an ICMP error other than port unreachable came back,
	// such as the admin-prohibited of `reject with icmpx admin-prohibited`.
	// Over a veth the error for the first SYN arrives while connect(2)
	// still holds the socket (TcpExtLockDroppedIcmps counts it). IPv4
	// still fails at once; IPv6 (seen on 6.18) fails only on the SYN
	// retransmitted a second later: give such a dial more than 1s, or it
	// is TimedOut.
	Unreachable
	// TimedOut: nothing came back: the packets were dropped.
	TimedOut
)

func (r Result) String() string {
	switch r {
	case Connected:
		return "Connected"
	case Refused:
		return "Refused"
	case Unreachable:
		return "Unreachable"
	case TimedOut:
		return "TimedOut"
	}
	return fmt.Sprintf("Result(%d)", int(r))
}

var loopback4 = mustPrefix("127.0.0.0/8")

// checkTestAddr keeps test traffic inside the test ranges. Loopback is
// allowed because inside a namespace it is the namespace's own.
func checkTestAddr(a netip.Addr) error {
	a = a.Unmap()
	if Prefix4.Contains(a) || Prefix6.Contains(a) || loopback4.Contains(a) || a == netip.IPv6Loopback() {
		return nil
	}
	return fmt.Errorf("netnstest: refusing address %v: tests use only %v, %v and loopback", a, Prefix4, Prefix6)
}

// DialTCP connects from inside the namespace to dst, from src unless src
// is the zero Addr, and reports the outcome. A connection is closed at
// once. Errors other than the Result kinds fail the test.
func (n *NS) DialTCP(t testing.TB, src netip.Addr, dst netip.AddrPort, timeout time.Duration) Result {
	t.Helper()
	if err := checkTestAddr(dst.Addr()); err != nil {
		t.Fatal(err)
	}
	d := net.Dialer{Timeout: timeout}
	if src.IsValid() {
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
	}
	var res Result
	err := n.Do(func() error {
		c, err := d.DialContext(context.Background(), "tcp", dst.String())
		if err == nil {
			res = Connected
			return c.Close()
		}
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			res = Refused
		case isICMPUnreachable(err):
			res = Unreachable
		case isTimeout(err):
			res = TimedOut
		default:
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatalf("netnstest: dial %v from %v in %s: %v", dst, src, n.Name, err)
	}
	return res
}

// ListenTCP listens inside the namespace and accepts and closes
// connections until the test ends. A zero Addr listens on all addresses;
// port 0 picks one. It returns the bound address.
func (n *NS) ListenTCP(t testing.TB, addr netip.AddrPort) netip.AddrPort {
	t.Helper()
	var ln *net.TCPListener
	err := n.Do(func() (err error) {
		ln, err = net.ListenTCP("tcp", tcpAddr(addr))
		return err
	})
	if err != nil {
		t.Fatalf("netnstest: listen tcp %v in %s: %v", addr, n.Name, err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed by cleanup
			}
			_ = c.Close()
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	return unmapped(ln.Addr().(*net.TCPAddr).AddrPort())
}

// ListenUDPEcho answers every UDP datagram with the same bytes until the
// test ends. Listen on a specific address: a reply from a wildcard socket
// may leave from another address and miss a connected client.
func (n *NS) ListenUDPEcho(t testing.TB, addr netip.AddrPort) netip.AddrPort {
	t.Helper()
	var conn *net.UDPConn
	err := n.Do(func() (err error) {
		conn, err = net.ListenUDP("udp", udpAddr(addr))
		return err
	})
	if err != nil {
		t.Fatalf("netnstest: listen udp %v in %s: %v", addr, n.Name, err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 64<<10)
		for {
			nr, from, err := conn.ReadFromUDPAddrPort(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				continue // e.g. an ICMP error for an earlier reply
			}
			_, _ = conn.WriteToUDPAddrPort(buf[:nr], from)
		}
	})
	t.Cleanup(func() {
		_ = conn.Close()
		wg.Wait()
	})
	return unmapped(conn.LocalAddr().(*net.UDPAddr).AddrPort())
}

// UDPEcho sends one datagram from a connected socket (from src unless src
// is the zero Addr) and waits up to timeout for the echo. icmpUnreachable
// reports that an ICMP error came back instead: port unreachable
// (ECONNREFUSED) or administratively prohibited. Both false means silence.
func (n *NS) UDPEcho(t testing.TB, src netip.Addr, dst netip.AddrPort, timeout time.Duration) (answered, icmpUnreachable bool) {
	t.Helper()
	if err := checkTestAddr(dst.Addr()); err != nil {
		t.Fatal(err)
	}
	var laddr *net.UDPAddr
	if src.IsValid() {
		laddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
	}
	payload := []byte("moat netnstest " + randHex(8))
	err := n.Do(func() error {
		c, err := net.DialUDP("udp", laddr, net.UDPAddrFromAddrPort(dst))
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
			return err
		}
		if _, err := c.Write(payload); err != nil {
			return err
		}
		buf := make([]byte, len(payload)+1)
		nr, err := c.Read(buf)
		switch {
		case err == nil && bytes.Equal(buf[:nr], payload):
			answered = true
		case err == nil:
			return fmt.Errorf("reply %q is not the echo of %q", buf[:nr], payload)
		case errors.Is(err, syscall.ECONNREFUSED) || isICMPUnreachable(err):
			icmpUnreachable = true
		case isTimeout(err):
		default:
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatalf("netnstest: udp to %v from %v in %s: %v", dst, src, n.Name, err)
	}
	return answered, icmpUnreachable
}

// isICMPUnreachable matches the errnos the kernel maps ICMP and ICMPv6
// unreachable codes to, other than port unreachable (ECONNREFUSED).
func isICMPUnreachable(err error) bool {
	return errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) ||
		errors.Is(err, syscall.EACCES)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, syscall.ETIMEDOUT) || (errors.As(err, &ne) && ne.Timeout())
}

func tcpAddr(ap netip.AddrPort) *net.TCPAddr {
	if !ap.Addr().IsValid() {
		return &net.TCPAddr{Port: int(ap.Port())}
	}
	return net.TCPAddrFromAddrPort(ap)
}

func udpAddr(ap netip.AddrPort) *net.UDPAddr {
	if !ap.Addr().IsValid() {
		return &net.UDPAddr{Port: int(ap.Port())}
	}
	return net.UDPAddrFromAddrPort(ap)
}

func unmapped(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

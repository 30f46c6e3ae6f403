package knock

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moat-fw/moat/internal/netnstest"
	"github.com/moat-fw/moat/internal/packet"
)

func TestParseStep(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Step
		err  string
	}{
		{in: "tcp/7000", want: Step{"tcp", 7000}},
		{in: "udp/1", want: Step{"udp", 1}},
		{in: "UDP/65535", want: Step{"udp", 65535}},
		{in: "7000", err: `did you mean "tcp/7000"`},
		{in: "icmp/8", err: `protocol "icmp"`},
		{in: "tcp/0", err: "out of range"},
		{in: "tcp/65536", err: "out of range"},
		{in: "tcp/70a", err: "not a number"},
		{in: "tcp/7000-7001", err: "not a number"},
		{in: "", err: "want a protocol and port"},
	} {
		got, err := ParseStep(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseStep(%q) = %v, %v; want an error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want || got.String() != strings.ToLower(tc.in) {
			t.Errorf("ParseStep(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseKnockArg(t *testing.T) {
	for _, tc := range []struct {
		in, def string
		want    Step
		err     string
	}{
		{in: "7000", def: "tcp", want: Step{"tcp", 7000}},
		{in: "7000", def: "udp", want: Step{"udp", 7000}},
		{in: "8000:udp", def: "tcp", want: Step{"udp", 8000}},
		{in: "9000:tcp", def: "udp", want: Step{"tcp", 9000}}, // an explicit protocol beats -u
		{in: "9000:TCP", def: "udp", want: Step{"tcp", 9000}},
		{in: "9000: udp", def: "tcp", want: Step{"udp", 9000}},
		{in: "9000:sctp", def: "tcp", err: `protocol "sctp": want tcp or udp, as in "7000:udp"`},
		{in: "ssh", def: "tcp", err: `port "ssh" is not a number`},
		{in: "0", def: "tcp", err: "out of range"},
		{in: ":udp", def: "tcp", err: "not a number"},
	} {
		got, err := ParseKnockArg(tc.in, tc.def)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseKnockArg(%q) = %v, %v; want an error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseKnockArg(%q, %s) = %v, %v; want %v", tc.in, tc.def, got, err, tc.want)
		}
	}
}

func TestResolveLiterals(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		host string
		fam  Family
		want string
		err  string
	}{
		{host: "10.210.0.1", want: "10.210.0.1"},
		{host: "10.210.0.1", fam: IPv4, want: "10.210.0.1"},
		{host: "fd00:210::1", fam: IPv6, want: "fd00:210::1"},
		{host: "[fd00:210::1]", want: "fd00:210::1"},
		{host: "::ffff:10.210.0.1", fam: IPv4, want: "10.210.0.1"},
		{host: "10.210.0.1", fam: IPv6, err: "-6 asks for one"},
		{host: "fd00:210::1", fam: IPv4, err: "-4 asks for one"},
		{host: "", err: "no host"},
	} {
		got, err := Resolve(ctx, tc.host, tc.fam)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Resolve(%q, %d) = %v, %v; want an error with %q", tc.host, tc.fam, got, err, tc.err)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("Resolve(%q, %d) = %v, %v; want %s", tc.host, tc.fam, got, err, tc.want)
		}
	}
}

func TestKnockAddrHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var verbose bytes.Buffer
	err := KnockAddr(ctx, netip.MustParseAddr("127.0.0.1"), []Step{{"udp", 9}}, Options{Verbose: &verbose})
	if !errors.Is(err, context.Canceled) || verbose.Len() != 0 {
		t.Fatalf("a cancelled knock: %v, sent %q", err, verbose.String())
	}
	if err := KnockAddr(context.Background(), netip.MustParseAddr("127.0.0.1"), nil, Options{}); err == nil {
		t.Fatal("no steps must be an error")
	}

	// The delay between knocks is a sleep ctx can end.
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = KnockAddr(ctx, netip.MustParseAddr("127.0.0.1"), []Step{{"udp", 9}, {"udp", 9}}, Options{Delay: time.Hour})
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Fatalf("a delay past the deadline: %v after %v", err, time.Since(start))
	}
}

// Relay pipes both ways and returns when the server closes, after in ends.
func TestRelay(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go serveBannerEcho(ln)
	var out bytes.Buffer
	addr := netip.MustParseAddrPort(ln.Addr().String())
	if err := Relay(context.Background(), addr, strings.NewReader("hello door\n"), &out, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if out.String() != "SSH-2.0-moattest\r\nhello door\n" {
		t.Fatalf("relayed %q", out.String())
	}

	ln.Close()
	err = Relay(context.Background(), addr, strings.NewReader(""), io.Discard, time.Second)
	if err == nil || !strings.Contains(err.Error(), "connect after knocking") {
		t.Fatalf("no server: %v", err)
	}
}

// serveBannerEcho answers like an sshd would start: a banner, then it
// echoes what it reads until the client half-closes, and closes.
func serveBannerEcho(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			io.WriteString(c, "SSH-2.0-moattest\r\n")
			io.Copy(c, c)
		}()
	}
}

// seen is what the wire showed of one knock packet.
type seen struct {
	proto   string
	port    uint16
	flags   packet.Flags
	payload uint16
}

func (s seen) String() string {
	return fmt.Sprintf("%s/%d flags=%s payload=%d", s.proto, s.port, s.flags, s.payload)
}

// capture is an AF_PACKET socket on one interface of a namespace: it sees
// every packet there before the firewall does.
type capture struct{ fd int }

func startCapture(t *testing.T, ns *netnstest.NS, ifname string) *capture {
	t.Helper()
	proto := int(uint16(unix.ETH_P_ALL)<<8 | uint16(unix.ETH_P_ALL)>>8) // in network byte order
	c := &capture{fd: -1}
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return err
		}
		c.fd = fd
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: ifi.Index})
	})
	if c.fd >= 0 {
		t.Cleanup(func() { unix.Close(c.fd) })
	}
	if err != nil {
		t.Fatalf("capture on %s: %v", ifname, err)
	}
	return c
}

// from returns the TCP and UDP packets from src captured so far.
func (c *capture) from(t *testing.T, src netip.Addr) []seen {
	t.Helper()
	var out []seen
	buf := make([]byte, 65536)
	var p packet.Packet
	for {
		n, _, err := unix.Recvfrom(c.fd, buf, unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) {
			return out
		}
		if err != nil {
			t.Fatalf("capture: %v", err)
		}
		if packet.Decode(0, buf[:n], &p) != nil || p.Src != src {
			continue
		}
		switch p.Proto {
		case packet.ProtoTCP:
			out = append(out, seen{"tcp", p.DstPort, p.TCPFlags, p.PayloadLen})
		case packet.ProtoUDP:
			out = append(out, seen{"udp", p.DstPort, 0, p.PayloadLen})
		}
	}
}

// counters reads the named counters of table inet t.
func counters(t *testing.T, ns *netnstest.NS, table string) map[string]uint64 {
	t.Helper()
	var list struct {
		Nftables []struct {
			Counter *struct {
				Name    string `json:"name"`
				Packets uint64 `json:"packets"`
			} `json:"counter"`
		} `json:"nftables"`
	}
	out := ns.Run(t, "nft", "-j", "list", "counters", "table", "inet", table)
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("nft -j: %v\n%s", err, out)
	}
	m := map[string]uint64{}
	for _, e := range list.Nftables {
		if e.Counter != nil {
			m[e.Counter.Name] = e.Counter.Packets
		}
	}
	return m
}

// TestKnockOnTheWire knocks from one namespace at another whose firewall
// counts and drops, and whose interface is captured: each TCP step is one
// SYN and nothing more (no RST after it, no retransmission in the second
// after), each UDP step one datagram of one byte, in order, over IPv4 and
// IPv6; and knockd's own knock client puts the same packets on the wire.
func TestKnockOnTheWire(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommands(t, "nft")
	steps := []Step{{"tcp", 7000}, {"udp", 7000}, {"tcp", 8000}, {"udp", 9000}}
	want := []seen{{"tcp", 7000, packet.SYN, 0}, {"udp", 7000, 0, 1}, {"tcp", 8000, packet.SYN, 0}, {"udp", 9000, 0, 1}}
	wantCounters := map[string]uint64{"tcp_all": 2, "rst": 0, "not_syn": 0, "syn_7000": 1, "syn_8000": 1, "udp_7000": 1, "udp_9000": 1, "udp_all": 2}

	for _, fam := range []string{"ipv4", "ipv6"} {
		t.Run(fam, func(t *testing.T) {
			t.Parallel()
			client, server := netnstest.New(t), netnstest.New(t)
			l := netnstest.Connect(t, client, server)
			src, dst, match := l.A4, l.B4, "ip saddr "+l.A4.String()
			if fam == "ipv6" {
				src, dst, match = l.A6, l.B6, "ip6 saddr "+l.A6.String()
			}
			server.Nft(t, strings.ReplaceAll(`
table inet knocktest {
	counter tcp_all {}
	counter udp_all {}
	counter rst {}
	counter not_syn {}
	counter syn_7000 {}
	counter syn_8000 {}
	counter udp_7000 {}
	counter udp_9000 {}
	chain in {
		type filter hook input priority 0; policy accept;
		MATCH meta l4proto tcp counter name "tcp_all"
		MATCH meta l4proto udp counter name "udp_all"
		MATCH tcp flags & rst == rst counter name "rst"
		MATCH tcp flags & (fin|syn|rst|ack) != syn counter name "not_syn"
		MATCH tcp dport 7000 tcp flags & (fin|syn|rst|ack) == syn counter name "syn_7000" drop
		MATCH tcp dport 8000 tcp flags & (fin|syn|rst|ack) == syn counter name "syn_8000" drop
		MATCH udp dport 7000 counter name "udp_7000" drop
		MATCH udp dport 9000 counter name "udp_9000" drop
		MATCH meta l4proto { tcp, udp } drop
	}
}
`, "MATCH", match))
			capt := startCapture(t, server, l.BIf)

			var verbose bytes.Buffer
			err := client.Do(func() error {
				return KnockAddr(context.Background(), dst, steps, Options{Verbose: &verbose})
			})
			if err != nil {
				t.Fatal(err)
			}
			// Past the first SYN retransmission (1s): there must be none.
			time.Sleep(1500 * time.Millisecond)
			if got := capt.from(t, src); !slices.Equal(got, want) {
				t.Errorf("on the wire:\n%v\nwant\n%v", got, want)
			}
			if got := counters(t, server, "knocktest"); !mapsEqual(got, wantCounters) {
				t.Errorf("counters %v, want %v", got, wantCounters)
			}
			wantVerbose := fmt.Sprintf("hitting tcp %s\nhitting udp %s\nhitting tcp %s\nhitting udp %s\n",
				netip.AddrPortFrom(dst, 7000), netip.AddrPortFrom(dst, 7000), netip.AddrPortFrom(dst, 8000), netip.AddrPortFrom(dst, 9000))
			if verbose.String() != wantVerbose {
				t.Errorf("verbose %q, want %q", verbose.String(), wantVerbose)
			}

			// knockd's client, same arguments: the same packets.
			netnstest.RequireCommands(t, "knock")
			server.Run(t, "nft", "reset", "counters", "table", "inet", "knocktest")
			client.Run(t, "knock", dst.String(), "7000", "7000:udp", "8000", "9000:udp")
			time.Sleep(1500 * time.Millisecond)
			if got := capt.from(t, src); !slices.Equal(got, want) {
				t.Errorf("knock(1) on the wire:\n%v\nwant (as moat knock)\n%v", got, want)
			}
			if got := counters(t, server, "knocktest"); !mapsEqual(got, wantCounters) {
				t.Errorf("knock(1) counters %v, want %v", got, wantCounters)
			}
		})
	}
}

func mapsEqual(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

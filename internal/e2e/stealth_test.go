package e2e

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moat-fw/moat/internal/netnstest"
)

// answer is what came back to one probe, at the packet level: the reply's
// TCP flags, or its ICMP type and code, with its TTL (hop limit) and, for
// TCP, its window and whether it acknowledges the probe; or "silence".
type answer string

// stealthProbe sends one probe from the client namespace, a TCP SYN (a
// non-blocking connect, closed at once, as knock(1) sends it) or a UDP
// datagram of one byte, and captures on the client's interface what the
// server sends back about it within wait.
func (h *host) stealthProbe(t *testing.T, src netip.Addr, proto string, port uint16, wait time.Duration) answer {
	t.Helper()
	dst := h.link.A4
	if src.Is6() {
		dst = h.link.A6
	}
	var got answer
	err := h.client.Do(func() error {
		ifi, err := net.InterfaceByName(h.link.BIf)
		if err != nil {
			return err
		}
		cap, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return fmt.Errorf("capture socket: %w", err)
		}
		defer unix.Close(cap)
		if err := unix.Bind(cap, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			return fmt.Errorf("bind capture: %w", err)
		}
		fam, typ, ip := unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_TCP
		if src.Is6() {
			fam = unix.AF_INET6
		}
		if proto == "udp" {
			typ, ip = unix.SOCK_DGRAM, unix.IPPROTO_UDP
		}
		fd, err := unix.Socket(fam, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, ip)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		sa := func(a netip.Addr, p uint16) unix.Sockaddr {
			if a.Is6() {
				return &unix.SockaddrInet6{Addr: a.As16(), Port: int(p)}
			}
			return &unix.SockaddrInet4{Addr: a.As4(), Port: int(p)}
		}
		if err := unix.Bind(fd, sa(src, 0)); err != nil {
			return err
		}
		if err := unix.Connect(fd, sa(dst, port)); err != nil && !errors.Is(err, unix.EINPROGRESS) {
			return fmt.Errorf("connect: %w", err)
		}
		local, err := unix.Getsockname(fd)
		if err != nil {
			return err
		}
		var sport uint16
		switch l := local.(type) {
		case *unix.SockaddrInet4:
			sport = uint16(l.Port)
		case *unix.SockaddrInet6:
			sport = uint16(l.Port)
		}
		if proto == "udp" {
			if _, err := unix.Write(fd, []byte{0}); err != nil {
				return fmt.Errorf("udp send: %w", err)
			}
		}
		got = capture(cap, dst, proto, sport, port, wait)
		return nil
	})
	if err != nil {
		t.Fatalf("probe %s/%d from %s: %v", proto, port, src, err)
	}
	return got
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// capture reads packets from the server about the probe sport -> dport
// until one matches or wait ends.
func capture(fd int, server netip.Addr, proto string, sport, dport uint16, wait time.Duration) answer {
	end := time.Now().Add(wait)
	buf := make([]byte, 2048)
	for {
		left := time.Until(end)
		if left <= 0 {
			return "silence"
		}
		tv := unix.NsecToTimeval(left.Nanoseconds())
		_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
		n, from, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			continue
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); !ok || ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		if a := parseAnswer(buf[:n], server, proto, sport, dport); a != "" {
			return a
		}
	}
}

// parseAnswer describes pkt if it is the server's answer to the probe.
func parseAnswer(pkt []byte, server netip.Addr, proto string, sport, dport uint16) answer {
	var l4proto, ttl byte
	var l4 []byte
	var srcAddr netip.Addr
	switch {
	case len(pkt) >= 20 && pkt[0]>>4 == 4:
		ihl := int(pkt[0]&0xf) * 4
		if len(pkt) < ihl {
			return ""
		}
		l4proto, ttl, l4 = pkt[9], pkt[8], pkt[ihl:]
		srcAddr = netip.AddrFrom4([4]byte(pkt[12:16]))
	case len(pkt) >= 40 && pkt[0]>>4 == 6:
		l4proto, ttl, l4 = pkt[6], pkt[7], pkt[40:]
		srcAddr = netip.AddrFrom16([16]byte(pkt[8:24]))
	default:
		return ""
	}
	if srcAddr != server {
		return ""
	}
	switch {
	case l4proto == unix.IPPROTO_TCP && len(l4) >= 20:
		if proto != "tcp" || binary.BigEndian.Uint16(l4[0:]) != dport || binary.BigEndian.Uint16(l4[2:]) != sport {
			return ""
		}
		return answer(fmt.Sprintf("tcp flags %s ttl %d window %d", tcpFlagNames(l4[13]), ttl, binary.BigEndian.Uint16(l4[14:])))
	case (l4proto == unix.IPPROTO_ICMP || l4proto == unix.IPPROTO_ICMPV6) && len(l4) >= 8:
		// The quoted packet: its ports must be the probe's.
		inner := l4[8:]
		off := 0
		switch {
		case len(inner) >= 20 && inner[0]>>4 == 4:
			off = int(inner[0]&0xf) * 4
		case len(inner) >= 40 && inner[0]>>4 == 6:
			off = 40
		default:
			return ""
		}
		if len(inner) < off+4 || binary.BigEndian.Uint16(inner[off:]) != sport || binary.BigEndian.Uint16(inner[off+2:]) != dport {
			return ""
		}
		return answer(fmt.Sprintf("icmp%s type %d code %d ttl %d", map[byte]string{unix.IPPROTO_ICMP: "", unix.IPPROTO_ICMPV6: "v6"}[l4proto], l4[0], l4[1], ttl))
	}
	return ""
}

func tcpFlagNames(f byte) string {
	var out []string
	for i, n := range []string{"fin", "syn", "rst", "psh", "ack", "urg"} {
		if f&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return strings.Join(out, ",")
}

type probeSpec struct {
	proto string
	port  uint16
}

func (p probeSpec) String() string { return fmt.Sprintf("%s/%d", p.proto, p.port) }

// Ports of the stealth tests: the door's knock ports (open and close
// sequences), its hidden port, and unused closed ports around them.
var (
	knockPorts  = []probeSpec{{"tcp", 7000}, {"tcp", 7100}, {"udp", 7200}, {"udp", 7400}, {"udp", 7500}}
	unusedPorts = []probeSpec{{"tcp", 6999}, {"tcp", 7001}, {"tcp", 7200}, {"udp", 7000}, {"udp", 7100}, {"udp", 7300}, {"tcp", 12345}, {"udp", 12345}}
	doorPorts   = []probeSpec{{"tcp", closedPort}, {"udp", closedPort}}
)

// H4: with either closed_response, in kernel and daemon mode, knock ports,
// the door's hidden port and the ports of a sequence under way answer, at
// the packet level, exactly as unused closed ports do (drop: nothing;
// reject: the same RST, or the same ICMP port unreachable), before, during
// and after a sequence. So neither the knock ports nor, after a correct
// knock, the next step's port stand out; and nmap (-sS, -sU, -sA) reports
// every one of them in the same state.
func TestKnockPortsLookLikeClosedPorts(t *testing.T) {
	netnstest.RequireCommands(t, "nmap")
	for _, mode := range []string{"kernel", "daemon"} {
		for _, resp := range []string{"drop", "reject"} {
			t.Run(mode+"/"+resp, func(t *testing.T) {
				extra := ""
				if mode == "daemon" {
					extra = "start_command = [\"/bin/true\"]\n"
				}
				// The scan guard would ban the prober part-way (every
				// answer would then be silence): out of the way.
				h := newHost(t, fmt.Sprintf("open = [\"tcp/%d\"]\nclosed_response = %q\n", openPort, resp)+
					fmt.Sprintf(doorTOML, closedPort)+extra+"\n[scan]\nenabled = false\n")
				h.start()
				testStealth(t, h, resp)
			})
		}
	}
}

func famProto(src netip.Addr, proto string) string {
	if src.Is6() {
		return "ip6 " + proto
	}
	return "ip " + proto
}

func testStealth(t *testing.T, h *host, resp string) {
	wait := 300 * time.Millisecond
	want := map[string]answer{}
	for _, src := range []netip.Addr{h.link.B4, h.link.B6} {
		for _, proto := range []string{"tcp", "udp"} {
			want[famProto(src, proto)] = h.stealthProbe(t, src, proto, 12346, wait)
		}
	}
	t.Logf("unused closed ports answer: %v", want)
	if resp == "drop" {
		for k, a := range want {
			if a != "silence" {
				t.Fatalf("drop mode: an unused port answered (%s): %s", k, a)
			}
		}
	} else if !strings.Contains(string(want["ip tcp"]), "rst") || !strings.Contains(string(want["ip udp"]), "type 3 code 3") {
		t.Fatalf("reject mode: an unused port answered %q / %q, want an RST and an ICMP port unreachable", want["ip tcp"], want["ip udp"])
	}
	check := func(when string, src netip.Addr, p probeSpec) {
		t.Helper()
		w := want[famProto(src, p.proto)]
		if got := h.stealthProbe(t, src, p.proto, p.port, wait); got != w {
			t.Errorf("%s: %s from %s answered %q; an unused closed port answers %q", when, p, src, got, w)
		}
	}

	// Before: every port, both families, in an order that never makes a
	// sequence: the door's ports first, then the knock ports backwards
	// (in order they are the open sequence, then the close one, and a
	// daemon-mode close still in flight when the door port is probed
	// would show the door open).
	backwards := slices.Clone(knockPorts)
	slices.Reverse(backwards)
	for _, src := range []netip.Addr{h.link.B4, h.link.B6} {
		for _, p := range slices.Concat(doorPorts, backwards, unusedPorts) {
			check("before any knock", src, p)
		}
	}
	// During: after a correct first knock, the next step's port answers
	// as every other port does (the review's oracle), whichever comes.
	for _, p := range []probeSpec{{"tcp", 7100}, {"tcp", 7050}, {"tcp", 7150}, {"udp", 7200}, {"tcp", closedPort}, {"tcp", 6999}} {
		check("first knock", h.link.B4, probeSpec{"tcp", 7000})
		check("after the first knock", h.link.B4, p)
	}
	// The second knock, then the last one's port and an unused one.
	check("first knock", h.link.B4, probeSpec{"tcp", 7000})
	check("second knock", h.link.B4, probeSpec{"tcp", 7100})
	check("after the second knock", h.link.B4, probeSpec{"udp", 7300})
	check("first knock", h.link.B4, probeSpec{"tcp", 7000})
	check("second knock", h.link.B4, probeSpec{"tcp", 7100})
	check("last knock", h.link.B4, probeSpec{"udp", 7200})
	// The sequence was real: the door opened.
	h.eventually("the door to open", h.link.B4, closedPort, netnstest.Connected)
	// After: the knock ports still answer as closed ports, the close
	// sequence too.
	for _, p := range slices.Concat(knockPorts, unusedPorts[:3]) {
		check("after the door opened", h.link.B4, p)
	}

	// nmap sees one state for all of them.
	var tcp, udp []string
	for _, p := range slices.Concat(knockPorts, unusedPorts, []probeSpec{{"udp", closedPort}}) {
		if p.proto == "tcp" {
			tcp = append(tcp, fmt.Sprint(p.port))
		} else {
			udp = append(udp, fmt.Sprint(p.port))
		}
	}
	second := h.link.Host4(3) // not the knocker: the open door is not what is tested
	h.client.AddAddr(t, h.link.BIf, netip.PrefixFrom(second, 24))
	for _, scan := range []struct {
		flag  string
		ports []string
	}{{"-sS", append(tcp, fmt.Sprint(closedPort))}, {"-sA", append(tcp, fmt.Sprint(closedPort))}, {"-sU", udp}} {
		states := h.nmapStates(t, scan.flag, "-S", second.String(), "-e", h.link.BIf, "-p", strings.Join(scan.ports, ","), h.link.A4.String())
		if len(states) != len(scan.ports) {
			t.Errorf("nmap %s: %d ports reported, want %d: %v", scan.flag, len(states), len(scan.ports), states)
			continue
		}
		first := ""
		for _, st := range states {
			if first == "" {
				first = st
			}
			if st != first {
				t.Errorf("nmap %s tells ports apart: %v", scan.flag, states)
				break
			}
		}
		t.Logf("nmap %s: every port %s", scan.flag, first)
	}
}

var nmapPort = regexp.MustCompile(`(\d+)/([a-z|]+)/(tcp|udp)`)

// nmapStates runs nmap with grepable output, every port listed, and
// returns each port's state.
func (h *host) nmapStates(t *testing.T, args ...string) map[string]string {
	t.Helper()
	all := append([]string{"netns", "exec", h.client.Name, "nmap", "-n", "-Pn", "--max-retries", "1", "-T4",
		"--max-rtt-timeout", "200ms", "-oG", "-", "--reason"}, args...)
	out, err := exec.Command("ip", all...).CombinedOutput()
	if err != nil {
		t.Fatalf("nmap %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	// Grepable output folds the most common state into "Ignored State"
	// unless every port is listed: ask for them all.
	states := map[string]string{}
	for _, m := range nmapPort.FindAllStringSubmatch(string(out), -1) {
		states[m[1]] = m[2]
	}
	if ign := regexp.MustCompile(`Ignored State: ([a-z|]+) \((\d+)\)`).FindStringSubmatch(string(out)); ign != nil {
		states["ignored:"+ign[2]] = ign[1]
	}
	return states
}

// L5: the daemon-mode doors' knock handoff is rate limited per source and
// in total, the packets kept back are counted (knock_limited, in status),
// and a real knock completes while a forged flood runs over the total: a
// source part-way through a sequence is not held to the total limit.
func TestDaemonKnockHandoffIsRateLimited(t *testing.T) {
	netnstest.RequireCommands(t, "knock")
	h := newHost(t, fmt.Sprintf("open = [\"tcp/%d\"]\nknock_rate_per_source = 10\nknock_rate = 200\n", openPort)+
		fmt.Sprintf(doorTOML, closedPort)+"start_command = [\"/bin/true\"]\n\n[scan]\nenabled = false\n")
	h.start()
	limited := func() uint64 { return h.status(t).Counters["knock_limited"].Packets }

	// One forged source, 300 knocks at once: its burst (20) gets through,
	// the rest are over its own limit.
	one := h.link.Host4(77)
	h.client.SpoofSYNsFunc(t, 0, 300, func(int) netnstest.Probe { return netnstest.Probe{Src: one, Dst: h.link.A4, Port: 7000} })
	if n := limited(); n < 250 || n > 285 {
		t.Fatalf("300 knocks from one source: %d over the limit, want about 280 (burst 20)", n)
	}

	// The real first knock, then a flood of forged first knocks from
	// 3,000 sources at 3,000/s (15 times knock_rate) while the rest of the
	// sequence is knocked.
	h.knock(t, h.link.A4.String(), "7000")
	before := limited()
	done := make(chan error, 1)
	go func() {
		time.Sleep(300 * time.Millisecond)
		out, err := exec.Command("ip", "netns", "exec", h.client.Name, "knock", h.link.A4.String(), "7100", "7200:udp").CombinedOutput()
		if err != nil {
			err = fmt.Errorf("knock: %w\n%s", err, out)
		}
		done <- err
	}()
	link := h.link.B4.As4()[2]
	h.client.SpoofSYNsFunc(t, 3000, 3000, func(i int) netnstest.Probe {
		x := 200 + byte(i/250)
		if x >= link { // never the knocker's own /24
			x++
		}
		return netnstest.Probe{Src: netip.AddrFrom4([4]byte{10, 210, x, byte(i % 250)}), Dst: h.link.A4, Port: 7000}
	})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	h.eventually("the real knock to open the door under the flood", h.link.B4, closedPort, netnstest.Connected)
	if n := limited() - before; n < 2000 {
		t.Fatalf("a flood of 3000 forged knocks at 15 times knock_rate: only %d kept back", n)
	}
	if out := h.moat("status"); !strings.Contains(out, "over the knock rate limits (knock_limited)") {
		t.Fatalf("status does not show the knock limit:\n%s", out)
	}
}

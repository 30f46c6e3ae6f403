package e2e

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/daemon"
	"github.com/moat-fw/moat/internal/netnstest"
)

func protectedWhy(st daemon.Status, a string) string {
	for _, p := range st.Protected {
		if p.Addr == a {
			return p.Why
		}
		if p.Prefix != "" && netip.MustParsePrefix(p.Prefix).Contains(netip.MustParseAddr(a)) {
			return p.Why
		}
	}
	return ""
}

// The review's H1: forged scans from the gateway's, the resolver's and the
// IPv6 router's link-local address banned them for 24 h and cut the host off
// its own network. Now none is banned, DNS and neighbour discovery keep
// working, and a forged scan from an unprotected address earns the short
// first ban.
func TestForgedScansNeverBanProtectedAddresses(t *testing.T) {
	h := newHost(t, fmt.Sprintf("open = [%q]", "tcp/8022"))
	netnstest.RequireCommands(t, "ping")
	gw, router6 := h.link.B4, netip.MustParseAddr("fe80::fe")
	resolver := h.link.Host4(53)
	h.client.AddAddr(t, h.link.BIf, netip.PrefixFrom(resolver, 24))
	h.client.IP(t, "addr", "add", router6.String()+"/64", "dev", h.link.BIf, "nodad")
	h.server.IP(t, "route", "add", "default", "via", gw.String())
	h.server.IP(t, "-6", "route", "add", "default", "via", router6.String(), "dev", h.link.AIf)
	h.server.WriteResolvConf(t, resolver)
	dns := h.client.ListenUDPEcho(t, netip.AddrPortFrom(resolver, 53))
	if ans, _ := h.server.UDPEcho(t, h.link.A4, dns, patient); !ans {
		t.Fatal("the resolver does not answer before moat starts")
	}
	h.start()

	st := h.status(t)
	for a, why := range map[string]string{gw.String(): "default router", resolver.String(): "DNS resolver",
		router6.String(): "link-local", h.link.A4.String(): "this host's own"} {
		if got := protectedWhy(st, a); !strings.Contains(got, why) {
			t.Errorf("status: %s protected as %q, want %q", a, got, why)
		}
	}

	unprotected := h.link.Host4(77)
	mapped := netip.AddrFrom16(h.link.Host4(78).As16()) // ::ffff:10.210.x.78, in an IPv6 header
	var probes []netnstest.Probe
	probes = append(probes, netnstest.PortScan(gw, h.link.A4, 1000, 40)...)
	probes = append(probes, netnstest.PortScan(resolver, h.link.A4, 2000, 40)...)
	probes = append(probes, netnstest.PortScan(router6, h.link.A6, 3000, 40)...)
	probes = append(probes, netnstest.PortScan(mapped, h.link.A6, 4000, 40)...)
	probes = append(probes, netnstest.PortScan(unprotected, h.link.A4, 5000, 40)...)
	h.client.SpoofSYNs(t, 2000, probes)

	netnstest.Eventually(t, 10*time.Second, "the unprotected forged scanner to be banned", func() bool {
		return hasBan(h.bans(t), unprotected.String(), "scan")
	})
	for _, e := range h.bans(t) {
		if e.Addr != unprotected.String() {
			t.Errorf("banned %s (%s): %s", e.Addr, e.Origin, e.Reason)
			continue
		}
		if d := e.Expires.Sub(e.Created); d != 10*time.Minute {
			t.Errorf("a first scan ban from packets alone lasts %s, want the short first_ban 10m", d)
		}
	}
	if ans, _ := h.server.UDPEcho(t, h.link.A4, dns, patient); !ans {
		t.Error("DNS stopped working after forged scans from the resolver")
	}
	h.server.IP(t, "-6", "neigh", "flush", "dev", h.link.AIf)
	if out, err := h.server.RunErr("ping", "-6", "-c", "2", "-W", "1", router6.String()+"%"+h.link.AIf); err != nil {
		t.Errorf("neighbour discovery with the router broke: %v\n%s", err, out)
	}
	st = h.status(t)
	if st.Counters["v4mapped"].Packets < 40 {
		t.Errorf("v4-mapped sources dropped: %d packets, want 40", st.Counters["v4mapped"].Packets)
	}
	// A manual ban of a protected address needs --force, and says why.
	if out, err := h.moatErr("ban", "add", gw.String()); err == nil || !strings.Contains(out, "default router; add --force") {
		t.Errorf("a manual ban of the gateway: err=%v\n%s", err, out)
	}
}

// The review's M3: forged scans made bans without limit (about 70 a second,
// each 24 h). A flood of invented sources that each look like a scanner now
// gets at most max_bans_per_minute bans, each the short first_ban; the rest
// are counted in status, and the daemon's memory stays bounded.
func TestForgedScannerFloodIsCapped(t *testing.T) {
	// The log limit raised far above the default so the scan guard sees the
	// flood itself, not the kernel's sample of it.
	h := newHost(t, fmt.Sprintf("open = [%q]\nlog_rate = 1000000\nlog_burst = 100000\n\n[scan]\nmax_bans_per_minute = 50", "tcp/8022"))
	h.start()
	const sources, per = 100_000, 15
	base := h.link.Prefix6.Addr().As16()
	start := time.Now()
	// Two senders, one per core, each half the sources: one alone reaches
	// about 80,000 packets a second here since crafted SYNs are logged one
	// netlink message each (queue-threshold 1), below the 100,000 the
	// issue's bar floods with.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for s := range 2 {
		wg.Go(func() {
			errs[s] = h.client.SpoofSYNsErr(100_000, sources/2*per, func(i int) netnstest.Probe {
				n := s*sources/2 + i/per
				src := base
				src[8], src[9], src[10], src[11] = 0xaa, byte(n>>16), byte(n>>8), byte(n)
				return netnstest.Probe{Src: netip.AddrFrom16(src), Dst: h.link.A6, Port: 1000 + uint16(i%per)}
			})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	sent := time.Since(start)
	var st daemon.Status
	netnstest.Eventually(t, 10*time.Second, "the scan guard to count the capped scanners", func() bool {
		st = h.status(t)
		return st.Scan != nil && st.Scan.Capped > 0
	})
	time.Sleep(time.Second) // what the kernel still queued
	st = h.status(t)
	// The budget rolls over a minute: 11 s of flood on a quiet machine,
	// minutes on a loaded one, each minute with its own 50.
	budget := 50 * (1 + int(time.Since(start)/time.Minute))
	if st.Bans > budget || st.Scan.Blocked > budget {
		t.Errorf("%d bans (%d by the scan guard) from a flood over %s, want at most max_bans_per_minute 50 a minute (%d)",
			st.Bans, st.Scan.Blocked, time.Since(start).Round(time.Second), budget)
	}
	if st.Scan.MaxBansPerMinute != 50 {
		t.Errorf("status max_bans_per_minute %d", st.Scan.MaxBansPerMinute)
	}
	hwm := vmHWM(t, h.proc.Pid())
	t.Logf("%d forged SYNs in %s (%.0f a second): %d bans, %d scanners capped, %d packets lost; daemon peak RSS %d MB",
		sources*per, sent.Round(time.Millisecond), float64(sources*per)/sent.Seconds(), st.Bans, st.Scan.Capped, st.Scan.Lost, hwm>>20)
	// Bounded: the scan guard's table is capped (max_sources), and the
	// flood's 100,000 sources fit in it. The 64 MB bar is a
	// figure this test logs on a quiet machine (bench/README.md): under
	// load the daemon falls behind and more sits in its buffers, which
	// this bound allows and a leak per source would not.
	if hwm > 128<<20 {
		t.Errorf("daemon peak RSS %d MB, want under 128 MB", hwm>>20)
	}
	if !strings.Contains(h.moat("status"), "NOT banned: the cap of 50 bans per minute was reached") {
		t.Error("text status does not say the cap was reached")
	}
}

// vmHWM is a process's peak resident set, in bytes.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// A peer the host itself is connected to (an upstream API, a backup
// server, the package mirror) is protected while the connection lasts: a
// forged scan in its name would otherwise cut the host's own connection.
// Found in the kernel's socket table of the real namespace.
func TestForgedScanSparesThePeersOfOutgoingConnections(t *testing.T) {
	h := newHost(t, fmt.Sprintf("open = [%q]", "tcp/8022"))
	peer, control := h.link.Host4(88), h.link.Host4(89)
	h.client.AddAddr(t, h.link.BIf, netip.PrefixFrom(peer, 24))
	// A listener that keeps what it accepts open (ListenTCP's closes at
	// once, and a half-closed connection is not one the host holds).
	var ln net.Listener
	if err := h.client.Do(func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(peer, 7777).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	held := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			held <- c
		}
	}()
	h.start()
	var conn net.Conn
	if err := h.server.Do(func() error {
		var err error
		conn, err = net.DialTimeout("tcp", ln.Addr().String(), 2*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	defer (<-held).Close()
	netnstest.Eventually(t, 10*time.Second, "the peer to be protected", func() bool {
		return protectedWhy(h.status(t), peer.String()) == "peer of a connection this host opened"
	})
	h.client.SpoofSYNs(t, 2000, append(netnstest.PortScan(peer, h.link.A4, 3000, 40), netnstest.PortScan(control, h.link.A4, 4000, 40)...))
	netnstest.Eventually(t, 10*time.Second, "the control's forged scan to be banned", func() bool {
		return hasBan(h.bans(t), control.String(), "scan")
	})
	if hasBan(h.bans(t), peer.String(), "scan") {
		t.Fatal("a forged scan banned a peer the host is connected to")
	}
	// The connection still works.
	if _, err := conn.Write([]byte("x")); err != nil {
		t.Fatalf("the host's own connection was cut: %v", err)
	}
}

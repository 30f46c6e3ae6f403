package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/daemon"
	"github.com/moat-fw/moat/internal/netnstest"
)

// The door used by the knock tests: three knocks open closedPort.
const doorTOML = `
[[door]]
name = "ssh"
sequence = ["tcp/7000", "tcp/7100", "udp/7200"]
seq_timeout = "5s"
open = ["tcp/%d"]
open_for = "3s"
close_sequence = ["udp/7400", "udp/7500"]
`

func knockHost(t *testing.T, extra string) *host {
	t.Helper()
	netnstest.RequireCommands(t, "knock")
	h := newHost(t, fmt.Sprintf("open = [\"tcp/%d\"]\n", openPort)+fmt.Sprintf(doorTOML, closedPort)+extra)
	h.start()
	return h
}

// knock runs knockd's own client from the client namespace.
func (h *host) knock(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", h.client.Name, "knock"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("knock %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func TestKnockOpensForTheKnockerOnly(t *testing.T) {
	h := knockHost(t, "")
	second4 := h.link.Host4(3)
	h.client.AddAddr(t, h.link.BIf, netip.PrefixFrom(second4, 24))
	other := uint16(9001)
	h.server.ListenTCP(t, netip.AddrPortFrom(h.link.A4, other))

	h.expect(h.link.B4, closedPort, netnstest.TimedOut)
	h.knock(t, h.link.A4.String(), "7000", "7100", "7200:udp")
	h.expect(h.link.B4, closedPort, netnstest.Connected)
	h.expect(h.link.B4, other, netnstest.TimedOut) // only the door's ports
	h.expect(second4, closedPort, netnstest.TimedOut)
	h.expect(h.link.B6, closedPort, netnstest.TimedOut) // only the knocking address

	h.knock(t, "-6", h.link.A6.String(), "7000", "7100", "7200:udp")
	h.expect(h.link.B6, closedPort, netnstest.Connected)

	// The moat daemon is not needed: the kernel verifies kernel-mode doors.
	h.proc.Kill9()
	_ = h.proc.Wait(5 * time.Second)
	h.eventually("the grant to end after open_for", h.link.B4, closedPort, netnstest.TimedOut)
	h.knock(t, h.link.A4.String(), "7000", "7100", "7200:udp")
	h.expect(h.link.B4, closedPort, netnstest.Connected)
}

// An established connection outlives its grant; new ones are refused.
func TestKnockGrantEndsButEstablishedGoesOn(t *testing.T) {
	h := knockHost(t, "")
	port := uint16(9500)
	h.writeConfig(fmt.Sprintf("open = [\"tcp/%d\"]\n", openPort) + fmt.Sprintf(doorTOML, port))
	h.moat("firewall", "apply")
	echo := echoServer(t, h.server, netip.AddrPortFrom(h.link.A4, port))
	h.knock(t, h.link.A4.String(), "7000", "7100", "7200:udp")
	var conn net.Conn
	if err := h.client.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp", echo.String(), 2*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	time.Sleep(4 * time.Second) // open_for is 3s
	h.expect(h.link.B4, port, netnstest.TimedOut)
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := fmt.Fprintln(conn, "still here"); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || line != "still here\n" {
		t.Fatalf("established connection after the grant ended: %q %v", line, err)
	}
}

func TestKnockRepeatResetAndClose(t *testing.T) {
	h := knockHost(t, "")
	// A repeated step (a retransmitted SYN) still opens.
	h.knock(t, h.link.A4.String(), "7000", "7000", "7100", "7200:udp")
	h.expect(h.link.B4, closedPort, netnstest.Connected)
	// The close sequence ends the grant early.
	h.knock(t, h.link.A4.String(), "7400:udp", "7500:udp")
	h.expect(h.link.B4, closedPort, netnstest.TimedOut)
	// A knock to another closed port in between resets the sequence.
	h.knock(t, h.link.A4.String(), "7000", "7050", "7100", "7200:udp")
	h.expect(h.link.B4, closedPort, netnstest.TimedOut)
	// Out of order never opens.
	h.knock(t, h.link.A4.String(), "7100", "7000", "7200:udp")
	h.expect(h.link.B4, closedPort, netnstest.TimedOut)
	// Too slow: the whole sequence must fit in seq_timeout (5s).
	h.knock(t, "-d", "2600", h.link.A4.String(), "7000", "7100", "7200:udp")
	h.expect(h.link.B4, closedPort, netnstest.TimedOut)
	h.knock(t, h.link.A4.String(), "7000", "7100", "7200:udp")
	h.expect(h.link.B4, closedPort, netnstest.Connected)
}

// A full port sweep, in order or not, never completes a sequence: neither
// an ascending one nor a descending one.
func TestKnockResistsSweeps(t *testing.T) {
	netnstest.RequireCommands(t, "nmap")
	netnstest.RequireCommands(t, "knock")
	// All-TCP sequences, so a TCP sweep covers every step.
	door := strings.Replace(fmt.Sprintf(doorTOML, closedPort), `"udp/7200"`, `"tcp/7200"`, 1)
	h := newHost(t, fmt.Sprintf("open = [\"tcp/%d\"]\n", openPort)+door+`
[[door]]
name = "down"
sequence = ["tcp/7300", "tcp/7250", "tcp/7150"]
open = ["tcp/9600"]

# The sweeps must reach the doors: the scan guard would ban the sweeper.
[scan]
enabled = false
`)
	h.server.ListenTCP(t, netip.AddrPortFrom(h.link.A4, 9600))
	h.start()
	for _, order := range [][]string{{"-r"}, {}} {
		args := append([]string{"netns", "exec", h.client.Name, "nmap", "-sS", "-Pn", "-n", "-p", "1-65535",
			"--max-retries", "0", "--min-rate", "20000", "-e", h.link.BIf}, order...)
		args = append(args, h.link.A4.String())
		before := h.closedDrops(t)
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("nmap: %v\n%s", err, out)
		}
		// The sweep really reached the host: one probe per port, every
		// knock port included.
		if n := h.closedDrops(t) - before; n < 65000 {
			t.Fatalf("nmap %v: only %d probes reached the closed-port rule", order, n)
		}
		for _, p := range []uint16{closedPort, 9600} {
			h.expect(h.link.B4, p, netnstest.TimedOut)
		}
		if out := h.server.Run(t, "nft", "list", "set", "inet", "moat", "grant4"); strings.Contains(out, "elements") {
			t.Fatalf("a sweep (%v) opened a door:\n%s", order, out)
		}
	}
	// The real knocks still work afterwards.
	h.knock(t, h.link.A4.String(), "7300", "7250", "7150")
	h.expect(h.link.B4, 9600, netnstest.Connected)
}

// echoServer echoes lines back on every connection until the test ends.
func echoServer(t *testing.T, ns *netnstest.NS, addr netip.AddrPort) netip.AddrPort {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", addr.String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					c.Write([]byte(line))
				}
			})
		}
	})
	t.Cleanup(func() {
		// Close the server side too: a client cut off by a ban never
		// sends the FIN that would end it.
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return addr
}

func (h *host) closedDrops(t *testing.T) uint64 {
	t.Helper()
	var st daemon.Status
	if err := json.Unmarshal([]byte(h.moat("status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	return st.Counters["closed"].Packets
}

// Daemon-mode doors: commands run as argv with the knocker's address, stop
// commands run when the grant ends, and one-time sequences are consumed.
func TestKnockDaemonModeCommandsAndOneTime(t *testing.T) {
	netnstest.RequireCommands(t, "knock")
	h := newHost(t, "")
	hook := filepath.Join(h.dir, "hook")
	hookLog := filepath.Join(h.dir, "hook.log")
	os.WriteFile(hook, []byte("#!/bin/sh\necho \"$@\" >> "+hookLog+"\n"), 0o755)
	otp := filepath.Join(h.dir, "otp")
	os.WriteFile(otp, []byte("# one-time sequences\n7300,7400:udp\n7500 7600\n"), 0o600)
	h.server.ListenTCP(t, netip.AddrPortFrom(h.link.A4, 9600))
	second4 := h.link.Host4(3)
	h.client.AddAddr(t, h.link.BIf, netip.PrefixFrom(second4, 24))
	h.writeConfig(fmt.Sprintf(`open = ["tcp/%d"]

[[door]]
name = "hook"
sequence = ["tcp/7000", "tcp/7100", "udp/7200"]
seq_timeout = "2s"
open = ["tcp/%d"]
open_for = "2s"
start_command = [%q, "open", "%%IP%%", "%%DOOR%%"]
stop_command = [%q, "close", "%%IP%%", "%%DOOR%%"]

[[door]]
name = "otp"
seq_timeout = "2s"
one_time_sequences = %q
open = ["tcp/9600"]
open_for = "2s"
`, openPort, closedPort, hook, hook, otp))
	h.start()
	if out := h.moat("door", "list"); !strings.Contains(out, "daemon") {
		t.Fatalf("door list:\n%s", out)
	}

	h.knock(t, h.link.A4.String(), "7000", "7050", "7100", "7200:udp")
	h.expect(h.link.B4, closedPort, netnstest.TimedOut)
	h.knock(t, h.link.A4.String(), "7000", "7100", "7200:udp")
	h.eventually("the daemon-mode door to open", h.link.B4, closedPort, netnstest.Connected)
	h.expect(second4, closedPort, netnstest.TimedOut)
	if out := h.moat("grant", "list", "--json"); !strings.Contains(out, `"door":"hook","addr":"`+h.link.B4.String()+`"`) {
		t.Fatalf("grant list:\n%s", out)
	}
	st := h.status(t)
	if l := st.KnockGrantLatency; l == nil || l.Count != 1 || l.Max <= 0 || l.Max > 10*time.Second {
		t.Fatalf("knock to grant latency %+v, want the one opening timed", l)
	}
	// The part before moat read the knock: timed too, and a part: not
	// nothing (the kernel's timestamp is read) and not the whole (the
	// commit comes after the read).
	if r := st.KnockReadLatency; r == nil || r.Count != 1 || r.Max <= 0 || r.Max >= st.KnockGrantLatency.Max {
		t.Fatalf("knock read latency %+v beside %+v, want the same opening's part before the read", r, st.KnockGrantLatency)
	}
	h.eventually("the grant to end", h.link.B4, closedPort, netnstest.TimedOut)
	netnstest.Eventually(t, 5*time.Second, "the stop command", func() bool {
		b, _ := os.ReadFile(hookLog)
		return strings.Contains(string(b), "close "+h.link.B4.String()+" hook")
	})
	b, _ := os.ReadFile(hookLog)
	if want := "open " + h.link.B4.String() + " hook\nclose " + h.link.B4.String() + " hook\n"; string(b) != want {
		t.Fatalf("hook log:\n%s\nwant\n%s", b, want)
	}

	// One-time sequences: the first opens once, then only the next does.
	// (Knocks from a fresh source: let the hook door's pending state lapse.)
	time.Sleep(2500 * time.Millisecond)
	h.knock(t, h.link.A4.String(), "7300", "7400:udp")
	h.eventually("the first one-time sequence to open", h.link.B4, 9600, netnstest.Connected)
	h.eventually("the one-time grant to end", h.link.B4, 9600, netnstest.TimedOut)
	h.knock(t, h.link.A4.String(), "7300", "7400:udp")
	h.expect(h.link.B4, 9600, netnstest.TimedOut)
	h.knock(t, h.link.A4.String(), "7500", "7600")
	h.eventually("the second one-time sequence to open", h.link.B4, 9600, netnstest.Connected)
	if b, _ := os.ReadFile(otp); !strings.Contains(string(b), "#7300,7400:udp\n#7500 7600\n") {
		t.Fatalf("used sequences not consumed:\n%q", b)
	}
}

// M5: forged SYNs from a victim's address make the scan guard track the
// victim, which must not stop the victim's correct daemon-mode knock (the
// sequence is the secret; the scan score is anyone's to forge). A banned
// source still cannot knock at all.
func TestKnockOpensForForgedScannerButNotBanned(t *testing.T) {
	netnstest.RequireCommands(t, "knock")
	h := newHost(t, "")
	hook := filepath.Join(h.dir, "hook")
	os.WriteFile(hook, []byte("#!/bin/sh\nexit 0\n"), 0o755)
	h.writeConfig(fmt.Sprintf(`open = ["tcp/%d"]

[[door]]
name = "hook"
sequence = ["tcp/7000", "tcp/7100", "udp/7200"]
open = ["tcp/%d"]
start_command = [%q]

[[door]]
name = "kern"
sequence = ["tcp/7300", "tcp/7500"]
open = ["tcp/9600"]
`, openPort, closedPort, hook))
	h.server.ListenTCP(t, netip.AddrPortFrom(h.link.A6, 9600))
	h.start()
	// The review's attack: SYNs to closed ports with the victim's address
	// forged as their source (raw packets, not the victim's sockets), ten
	// of them: past the five that reached level 1. To two ports: crafted
	// SYNs to a third port would ban the victim (the scan guard bans
	// nmap -sS at its third probe, see docs/scan-guard.md), which is a
	// ban, not a forged score, and a banned source cannot knock (below).
	probes := netnstest.PortScan(h.link.B4, h.link.A4, 4000, 10)
	for i := range probes {
		probes[i].Port = 4000 + uint16(i%2)
	}
	h.client.SpoofSYNs(t, 200, probes)
	netnstest.Eventually(t, 5*time.Second, "the victim to be tracked as a scanner", func() bool {
		for _, s := range h.status(t).Scan.Report.Sources {
			if s.Addr == h.link.B4 && s.Level >= 1 {
				return true
			}
		}
		return false
	})
	h.knock(t, h.link.A4.String(), "7000", "7100", "7200:udp")
	h.eventually("the victim's knock to open the door", h.link.B4, closedPort, netnstest.Connected)

	// A banned source's knocks never reach the doors.
	h.moat("ban", "add", h.link.B6.String())
	h.knock(t, "-6", h.link.A6.String(), "7300", "7500")
	h.moat("ban", "del", h.link.B6.String())
	h.expect(h.link.B6, 9600, netnstest.TimedOut)
	h.knock(t, "-6", h.link.A6.String(), "7300", "7500")
	h.expect(h.link.B6, 9600, netnstest.Connected)
}

// An address the host gains after moat started (DHCP, a new IPv6 prefix)
// works for doors without a restart: the rules never name local addresses.
func TestKnockOnAddressAddedLater(t *testing.T) {
	h := knockHost(t, "")
	late := h.link.Host4(77)
	h.server.AddAddr(t, h.link.AIf, netip.PrefixFrom(late, 24))
	h.server.ListenTCP(t, netip.AddrPortFrom(late, closedPort))
	h.knock(t, late.String(), "7000", "7100", "7200:udp")
	if got := h.client.DialTCP(t, netip.Addr{}, netip.AddrPortFrom(late, closedPort), 2*time.Second); got != netnstest.Connected {
		t.Fatalf("door on an address added after start: %s", got)
	}
}

// A one-time sequence that cannot be marked used (here the rename's
// temporary path is taken) still lets its knocker in once, and then the door
// stays shut: reading the file again would offer the same sequence, which
// anyone who saw it could replay.
func TestOneTimeSequenceThatCannotBeMarkedIsNotReplayable(t *testing.T) {
	netnstest.RequireCommands(t, "knock")
	h := newHost(t, "")
	otp := filepath.Join(h.dir, "otp")
	os.WriteFile(otp, []byte("7300 7400\n7500 7600\n"), 0o600)
	if err := os.Mkdir(otp+".moat-tmp", 0o700); err != nil {
		t.Fatal(err)
	}
	h.server.ListenTCP(t, netip.AddrPortFrom(h.link.A4, 9600))
	h.writeConfig(fmt.Sprintf(`open = ["tcp/%d"]

[[door]]
name = "otp"
seq_timeout = "2s"
one_time_sequences = %q
open = ["tcp/9600"]
open_for = "1s"
`, openPort, otp))
	h.start()
	h.knock(t, h.link.A4.String(), "7300", "7400")
	h.eventually("the one-time sequence to open once", h.link.B4, 9600, netnstest.Connected)
	h.eventually("the grant to end", h.link.B4, 9600, netnstest.TimedOut)
	h.knock(t, h.link.A4.String(), "7300", "7400")
	h.expect(h.link.B4, 9600, netnstest.TimedOut)
	h.knock(t, h.link.A4.String(), "7500", "7600")
	h.expect(h.link.B4, 9600, netnstest.TimedOut)
	if b, _ := os.ReadFile(otp); string(b) != "7300 7400\n7500 7600\n" {
		t.Fatalf("the file changed: %q", b)
	}
}

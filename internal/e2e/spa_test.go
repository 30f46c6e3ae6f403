package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/daemon"
	"github.com/moat-fw/moat/internal/netnstest"
)

func spaStatus(t *testing.T, h *host) daemon.SPAStatus {
	t.Helper()
	var st daemon.Status
	if err := json.Unmarshal([]byte(h.moat("status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.SPA == nil {
		t.Fatal("status has no spa part")
	}
	return *st.SPA
}

// sendUDP sends b from src (an address of the client namespace) to dst.
func sendUDP(t *testing.T, h *host, src, dst netip.Addr, b []byte) {
	t.Helper()
	if err := h.client.Do(func() error {
		c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, 62201)))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write(b)
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// spaLab sets h up for moat's SPA: a server key and one client, "laptop",
// made with moat spa keygen in h.dir, and the config: open, then top
// (more [firewall] keys and tables), [spa] with spaExtra, and the
// client's table with clientExtra.
type spaLab struct {
	h                              *host
	serverPub, clientKey, datagram string
}

func newSPALab(t *testing.T, h *host, top, spaExtra, clientExtra string) *spaLab {
	t.Helper()
	serverKey, clientKey := filepath.Join(h.dir, "server.key"), filepath.Join(h.dir, "client.key")
	l := &spaLab{h: h, clientKey: clientKey, datagram: filepath.Join(h.dir, "datagram")}
	l.serverPub = strings.TrimSpace(h.moat("spa", "keygen", "--out", serverKey))
	clientPub := strings.TrimSpace(h.moat("spa", "keygen", "--out", clientKey))
	h.writeConfig(fmt.Sprintf("open = [\"tcp/%d\"]\n%s\n\n[spa]\nkey_file = %q\n%s\n\n[[spa.client]]\nname = \"laptop\"\nkey = %q\n%s\n",
		openPort, top, serverKey, spaExtra, clientPub, clientExtra))
	return l
}

// send runs moat spa send from the client namespace to dst, asking for
// tcp/closedPort, and keeps the datagram in l.datagram.
func (l *spaLab) send(t *testing.T, dst netip.Addr, extra ...string) {
	t.Helper()
	args := append([]string{moatBin, "spa", "send", "--key", l.clientKey, "--server-key", l.serverPub,
		"--port", fmt.Sprintf("tcp/%d", closedPort), "--save", l.datagram}, extra...)
	if out, err := l.h.client.RunErr(append(args, dst.String())...); err != nil {
		t.Fatalf("moat spa send: %v\n%s", err, out)
	}
}

// moat's own SPA client opens a port for its address only, over IPv4 and
// IPv6, for the time asked; a captured datagram resent (from the same or
// another address), or with one bit flipped, opens nothing and is counted
// by its reason; and the replay is still refused after a restart.
func TestSPAOpensForTheSenderOnly(t *testing.T) {
	h := newHost(t, "")
	l := newSPALab(t, h, "", "", fmt.Sprintf("ports = [\"tcp/%d\"]\nmax_duration = \"1h\"", closedPort))
	second4 := h.link.Host4(3)
	h.client.AddAddr(t, h.link.BIf, netip.PrefixFrom(second4, 24))
	h.start()
	h.expect(h.link.B4, closedPort, netnstest.TimedOut)

	send := func(dst netip.Addr, extra ...string) { t.Helper(); l.send(t, dst, extra...) }
	saved := l.datagram
	send(h.link.A4, "--for", "3s")
	h.eventually("the SPA grant", h.link.B4, closedPort, netnstest.Connected)
	h.expect(second4, closedPort, netnstest.TimedOut)
	if st := spaStatus(t, h); st.Accepted != 1 || st.GrantLatency == nil || st.GrantLatency.Count != 1 ||
		st.GrantLatency.Max <= 0 || st.GrantLatency.Max > 10*time.Second ||
		st.ReadLatency == nil || st.ReadLatency.Count != 1 || st.ReadLatency.Max <= 0 || st.ReadLatency.Max >= st.GrantLatency.Max {
		t.Fatalf("spa status %+v, want one accepted, its datagram to grant timed, and the part before moat read it", st)
	}
	dgram, err := os.ReadFile(saved)
	if err != nil {
		t.Fatal(err)
	}
	h.eventually("the grant to end after 3s", h.link.B4, closedPort, netnstest.TimedOut)

	// The captured datagram again: from its sender, from another address,
	// and with one bit flipped.
	sendUDP(t, h, h.link.B4, h.link.A4, dgram)
	sendUDP(t, h, second4, h.link.A4, dgram)
	flipped := append([]byte(nil), dgram...)
	flipped[len(flipped)/2] ^= 0x10
	sendUDP(t, h, second4, h.link.A4, flipped)
	netnstest.Eventually(t, 5*time.Second, "three refusals", func() bool {
		st := spaStatus(t, h)
		n := uint64(0)
		for _, v := range st.Refused {
			n += v
		}
		return n >= 3
	})
	st := spaStatus(t, h)
	if st.Accepted != 1 || st.Refused["replay"] < 1 {
		t.Fatalf("spa status %+v: want the resent datagram refused as a replay, and nothing accepted", st)
	}
	h.expect(h.link.B4, closedPort, netnstest.TimedOut)
	h.expect(second4, closedPort, netnstest.TimedOut)

	// A restart keeps the replay cache: the datagram stays spent.
	h.restart()
	sendUDP(t, h, h.link.B4, h.link.A4, dgram)
	netnstest.Eventually(t, 5*time.Second, "the replay after a restart refused", func() bool {
		return spaStatus(t, h).Refused["replay"] >= 1
	})
	h.expect(h.link.B4, closedPort, netnstest.TimedOut)

	// IPv6.
	send(h.link.A6)
	h.eventually("the SPA grant over IPv6", h.link.B6, closedPort, netnstest.Connected)
	h.expect(h.link.B4, closedPort, netnstest.TimedOut)
}

// An SPA port answers exactly as an unused closed UDP port does, in both
// response modes and both families, to a probe and to a datagram the
// verifier refuses: nothing tells a scanner which port to aim at.
func TestSPAPortLooksLikeAClosedPort(t *testing.T) {
	for _, resp := range []string{"drop", "reject"} {
		t.Run(resp, func(t *testing.T) {
			h := newHost(t, "")
			newSPALab(t, h, fmt.Sprintf("closed_response = %q\n\n[scan]\nenabled = false", resp), "", fmt.Sprintf("ports = [\"tcp/%d\"]", closedPort))
			h.start()
			wait := 300 * time.Millisecond
			for _, src := range []netip.Addr{h.link.B4, h.link.B6} {
				want := h.stealthProbe(t, src, "udp", 12346, wait)
				if resp == "reject" && !strings.Contains(string(want), "type") {
					t.Fatalf("reject mode: an unused UDP port answered %q", want)
				}
				if got := h.stealthProbe(t, src, "udp", 62201, wait); got != want {
					t.Errorf("%s: the SPA port answered %q, an unused closed port %q", src, got, want)
				}
			}
			if st := spaStatus(t, h); st.Accepted != 0 {
				t.Fatalf("a probe was accepted: %+v", st)
			}
		})
	}
}

// An ssh through `moat spa proxy` (its ProxyCommand) reaches a real sshd
// whose port is closed to everyone but SPA clients, in one command.
func TestSSHThroughSPAProxy(t *testing.T) {
	h := newHost(t, "")
	s := startSSHD(t, h)
	l := newSPALab(t, h, "\n[login]\nenabled = false", "", "ports = [\"tcp/22\"]\nmax_duration = \"1m\"")
	h.start()
	h.expect(h.link.B4, 22, netnstest.TimedOut)
	ssh := func(proxy bool) (string, error) {
		args := []string{"netns", "exec", h.client.Name, "ssh", "-l", "root", "-i", s.key, "-o", "BatchMode=yes",
			"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=3", "-o", "LogLevel=ERROR"}
		if proxy {
			args = append(args, "-o", fmt.Sprintf("ProxyCommand=%s spa proxy --key %s --server-key '%s' %%h %%p", moatBin, l.clientKey, l.serverPub))
		}
		out, err := exec.Command("ip", append(args, h.link.A4.String(), "echo", "through-the-moat")...).CombinedOutput()
		return string(out), err
	}
	if out, err := ssh(false); err == nil {
		t.Fatalf("ssh without SPA reached sshd: %s", out)
	}
	out, err := ssh(true)
	if err != nil || !strings.Contains(out, "through-the-moat") {
		t.Fatalf("ssh through moat spa proxy: %v\n%s", err, out)
	}
}

// A crash may come between a datagram's grant and the record that it was
// spent: the start after it refuses every datagram for one window (here
// 5s), the captured one included, and then accepts fresh ones again.
func TestSPAAfterACrashRefusesForOneWindow(t *testing.T) {
	h := newHost(t, "")
	l := newSPALab(t, h, "", "window = \"5s\"", fmt.Sprintf("ports = [\"tcp/%d\"]\nmax_duration = \"2s\"", closedPort))
	h.start()
	saved := l.datagram
	send := func() { t.Helper(); l.send(t, h.link.A4) }
	send()
	h.eventually("the SPA grant", h.link.B4, closedPort, netnstest.Connected)
	dgram, err := os.ReadFile(saved)
	if err != nil {
		t.Fatal(err)
	}
	h.proc.Kill9()
	_ = h.proc.Wait(5 * time.Second)
	h.start()
	crashed := time.Now()
	h.eventually("the grant to end", h.link.B4, closedPort, netnstest.TimedOut)
	sendUDP(t, h, h.link.B4, h.link.A4, dgram)
	send()
	netnstest.Eventually(t, 5*time.Second, "two refusals", func() bool {
		n := uint64(0)
		for _, v := range spaStatus(t, h).Refused {
			n += v
		}
		return n >= 2
	})
	if st := spaStatus(t, h); st.Accepted != 0 {
		t.Fatalf("within a window of an unclean start moat accepted a datagram: %+v", st)
	}
	h.expect(h.link.B4, closedPort, netnstest.TimedOut)
	time.Sleep(time.Until(crashed.Add(6 * time.Second)))
	// Sent until one opens: on a loaded machine a lone datagram's grant can
	// take longer than one dial waits.
	netnstest.Eventually(t, 30*time.Second, "a fresh datagram after the window", func() bool {
		send()
		return h.client.DialTCP(t, h.link.B4, netip.AddrPortFrom(h.link.A4, closedPort), patient) == netnstest.Connected
	})
}

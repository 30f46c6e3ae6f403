package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/daemon"
	"github.com/moat-fw/moat/internal/netnstest"
)

func (h *host) status(t *testing.T) daemon.Status {
	t.Helper()
	var st daemon.Status
	if err := json.Unmarshal([]byte(h.moat("status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func (h *host) nmap(t *testing.T, args ...string) {
	t.Helper()
	// Fast timing keeps the suite short: on a veth nothing is lost, and
	// dropped probes need not be waited for long.
	all := append([]string{"netns", "exec", h.client.Name, "nmap", "-n", "--max-retries", "1", "-T4",
		"--max-rtt-timeout", "100ms", "--min-rate", "2000"}, args...)
	if !contains(args, "-sn") {
		all = append(all, "-Pn")
	}
	if out, err := exec.Command("ip", all...).CombinedOutput(); err != nil {
		t.Fatalf("nmap %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// Each nmap scan is reported with its type and the scanner is banned; a
// client using the open ports from another address in the same run is not
// flagged.
func TestScanGuardClassifiesAndBlocksNmap(t *testing.T) {
	netnstest.RequireCommands(t, "nmap")
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"syn", []string{"-sS", "-p", "1-1000"}, "syn"},
		{"connect", []string{"-sT", "-p", "1-1000"}, "connect"},
		{"fin", []string{"-sF", "-p", "1-1000"}, "fin"},
		{"xmas", []string{"-sX", "-p", "1-1000"}, "xmas"},
		{"null", []string{"-sN", "-p", "1-1000"}, "null"},
		{"ack", []string{"-sA", "-p", "1-1000"}, "ack/window"},
		{"window", []string{"-sW", "-p", "1-1000"}, "ack/window"},
		{"maimon", []string{"-sM", "-p", "1-1000"}, "maimon"},
		{"udp", []string{"-sU", "--top-ports", "200"}, "udp"},
		{"proto", []string{"-sO"}, "proto"},
		{"ping-sweep", []string{"-sn", "-PE", "--disable-arp-ping"}, "ping"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHost(t, fmt.Sprintf("open = [\"tcp/%d\"]\nlog_rate = 100000\nlog_burst = 100000\n\n[scan]\nblock_level = 1\nwindow = \"1m\"", openPort))
			// A second server address, for the ping sweep.
			h.server.AddAddr(t, h.link.AIf, netip.PrefixFrom(h.link.Host4(9), 24))
			client2 := h.link.Host4(3)
			h.client.AddAddr(t, h.link.BIf, netip.PrefixFrom(client2, 24))
			h.start()
			target := []string{h.link.A4.String()}
			if c.name == "ping-sweep" {
				target = []string{h.link.A4.String(), h.link.Host4(9).String()}
			}
			// The normal client, before and during the scan.
			h.expect(client2, openPort, netnstest.Connected)
			done := make(chan struct{})
			go func() {
				defer close(done)
				h.nmap(t, append(append(c.args, "-S", h.link.B4.String(), "-e", h.link.BIf), target...)...)
			}()
			h.expect(client2, openPort, netnstest.Connected)
			<-done
			netnstest.Eventually(t, 10*time.Second, "the scanner to be banned", func() bool {
				return hasBan(h.bans(t), h.link.B4.String(), "scan")
			})
			st := h.status(t)
			var types []string
			for _, s := range st.Scan.Report.Sources {
				if s.Addr == h.link.B4 {
					types = s.Types
				}
				if s.Addr == client2 {
					t.Fatalf("the normal client was flagged: %+v", s)
				}
			}
			if !contains(types, c.want) {
				t.Fatalf("nmap %v reported as %v, want %q", c.args, types, c.want)
			}
			h.expect(h.link.B4, openPort, netnstest.TimedOut) // banned: its packets are dropped
			h.expect(client2, openPort, netnstest.Connected)
		})
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// With the defaults (block_level 3, the kernel's log rate limit) a SYN scan
// is still banned, and the report survives a restart.
func TestScanGuardDefaultsAndRestart(t *testing.T) {
	netnstest.RequireCommands(t, "nmap")
	h := newHost(t, fmt.Sprintf("open = [\"tcp/%d\"]", openPort))
	h.start()
	h.nmap(t, "-sS", "-p", "1-1000", "-e", h.link.BIf, h.link.A4.String())
	netnstest.Eventually(t, 15*time.Second, "the SYN scanner to be banned", func() bool {
		return hasBan(h.bans(t), h.link.B4.String(), "scan")
	})
	h.proc.Signal(os.Interrupt)
	if err := h.proc.Wait(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	h.start()
	st := h.status(t)
	found := false
	for _, e := range st.Scan.Events {
		if e.Addr == h.link.B4 && e.Blocked {
			found = true
		}
	}
	if !found {
		t.Fatalf("scan events lost across the restart: %+v", st.Scan.Events)
	}
}

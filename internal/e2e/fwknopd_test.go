package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/netnstest"
)

// moat's client in fwknop mode (`moat spa send --fwknop`) opens a port on
// the real fwknopd 2.6.10 (Debian's fwknop-server, UDP server mode, no
// pcap). fwknopd manages its own iptables chain (iptables-nft, inside the
// server namespace): a DROP rule for the port sits behind its FWKNOP_INPUT
// jump, so the connection getting through proves fwknopd accepted moat's
// packet and opened the port, for the packet's address only, until its
// FW_ACCESS_TIMEOUT. The same packet resent, and a packet under another
// HMAC key, open nothing.
func TestSendFwknopOpensFwknopd(t *testing.T) {
	if _, err := exec.LookPath("fwknopd"); err != nil {
		t.Skip("fwknopd not installed (apt-get install fwknop-server)")
	}
	netnstest.RequireCommands(t, "iptables")
	h := newHost(t, "")
	key, hmacKey := make([]byte, 32), make([]byte, 64)
	rand.Read(key)
	rand.Read(hmacKey)
	std := base64.StdEncoding
	write := func(name, text string) string {
		p := filepath.Join(h.dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	access := write("access.conf", fmt.Sprintf("SOURCE ANY\nOPEN_PORTS tcp/%d\nKEY_BASE64 %s\nHMAC_KEY_BASE64 %s\nFW_ACCESS_TIMEOUT 3\nREQUIRE_SOURCE_ADDRESS Y\n",
		closedPort, std.EncodeToString(key), std.EncodeToString(hmacKey)))
	conf := write("fwknopd.conf", "ENABLE_UDP_SERVER Y;\nUDPSERV_PORT 62201;\n")
	// The port is closed by a rule fwknopd's jump (inserted at the top of
	// INPUT) comes before.
	h.server.Run(t, "iptables", "-A", "INPUT", "-p", "tcp", "--dport", fmt.Sprint(closedPort), "-j", "DROP")
	second4 := h.link.Host4(3)
	h.client.AddAddr(t, h.link.BIf, netip.PrefixFrom(second4, 24))
	h.expect(h.link.B4, closedPort, netnstest.TimedOut)

	fw := h.server.Start(t, "fwknopd", "-f", "-U", "-v", "-c", conf, "-a", access,
		"-d", filepath.Join(h.dir, "digest.cache"), "-p", filepath.Join(h.dir, "fwknopd.pid"), "-r", h.dir)
	netnstest.Eventually(t, 10*time.Second, "fwknopd's UDP server", func() bool {
		if fw.Exited() {
			t.Fatalf("fwknopd exited:\n%s", fw.Output())
		}
		return strings.Contains(fw.Output(), "Kicking off UDP server")
	})

	send := func(hmacB64, save string) {
		t.Helper()
		out, err := h.client.RunErr(moatBin, "spa", "send", "--fwknop", "--key-base64-rijndael", std.EncodeToString(key),
			"--key-base64-hmac", hmacB64, "--port", fmt.Sprintf("tcp/%d", closedPort), "--spoof-user", "moat", "--save", save, h.link.A4.String())
		if err != nil {
			t.Fatalf("moat spa send --fwknop: %v\n%s", err, out)
		}
	}
	saved := filepath.Join(h.dir, "spa.pkt")
	send(std.EncodeToString(hmacKey), saved)
	h.eventually("fwknopd to open the port for moat's packet", h.link.B4, closedPort, netnstest.Connected)
	h.expect(second4, closedPort, netnstest.TimedOut)
	if !strings.Contains(fw.Output(), "Added access rule to FWKNOP_INPUT for "+h.link.B4.String()) {
		t.Fatalf("fwknopd did not log the access rule for %s:\n%s", h.link.B4, fw.Output())
	}
	h.eventually("fwknopd's rule to expire after 3s", h.link.B4, closedPort, netnstest.TimedOut)

	// The captured packet again, from its sender and from another address:
	// fwknopd's digest cache refuses it.
	pkt, err := os.ReadFile(saved)
	if err != nil {
		t.Fatal(err)
	}
	sendUDP(t, h, h.link.B4, h.link.A4, pkt)
	sendUDP(t, h, second4, h.link.A4, pkt)
	netnstest.Eventually(t, 5*time.Second, "fwknopd to see the replays", func() bool {
		return strings.Count(fw.Output(), "Replay detected") >= 2
	})
	// A packet under another HMAC key.
	hmacBefore := strings.Count(fw.Output(), "HMAC")
	other := bytes.Repeat([]byte{1}, 64)
	send(std.EncodeToString(other), filepath.Join(h.dir, "other.pkt"))
	netnstest.Eventually(t, 5*time.Second, "fwknopd to refuse the wrong HMAC", func() bool {
		return strings.Count(fw.Output(), "HMAC") > hmacBefore
	})
	h.expect(h.link.B4, closedPort, netnstest.TimedOut)
	h.expect(second4, closedPort, netnstest.TimedOut)
	if n := strings.Count(fw.Output(), "Added access rule"); n != 1 {
		t.Fatalf("fwknopd added %d access rules, want 1:\n%s", n, fw.Output())
	}
}

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
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/netnstest"
)

// fwknopClient runs the real fwknop client in the client namespace with
// the command line of ecosystem-notes §1.4, saving the packet it sends.
func fwknopClient(t *testing.T, h *host, key, hmacKey []byte, allow, dst netip.Addr, saved string, extra ...string) {
	t.Helper()
	home := t.TempDir()
	std := base64.StdEncoding
	args := append([]string{"env", "HOME=" + home, "fwknop", "--no-rc-file", "--no-save-args",
		"-A", fmt.Sprintf("tcp/%d", closedPort), "-a", allow.String(), "-D", dst.String(), "-p", "62201", "-P", "udp",
		"--use-hmac", "--key-base64-rijndael", std.EncodeToString(key), "--key-base64-hmac", std.EncodeToString(hmacKey),
		"-B", saved}, extra...)
	if out, err := h.client.RunErr(args...); err != nil {
		t.Fatalf("fwknop: %v\n%s", err, out)
	}
}

// The real fwknop client opens a port for its address through a
// [[spa.fwknop]] entry; its packet resent (from the same and from another
// address), with one bit flipped, or with an old timestamp opens nothing
// and is counted by its reason; the replay is still refused after a restart.
func TestFwknopClientOpens(t *testing.T) {
	if _, err := exec.LookPath("fwknop"); err != nil {
		t.Skip("fwknop not installed (apt-get install fwknop-client)")
	}
	h := newHost(t, "")
	key, hmacKey := make([]byte, 32), make([]byte, 64)
	rand.Read(key)
	rand.Read(hmacKey)
	hmacFile := filepath.Join(h.dir, "fwknop.hmac")
	if err := os.WriteFile(hmacFile, []byte(base64.StdEncoding.EncodeToString(hmacKey)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h.writeConfig(fmt.Sprintf(`open = ["tcp/%d"]

[spa]

[[spa.fwknop]]
name = "laptop"
source = ["any"]
open_ports = ["tcp/%d"]
key_base64 = %q
hmac_key_file = %q
max_duration = "4s"
require_source_address = true
`, openPort, closedPort, base64.StdEncoding.EncodeToString(key), hmacFile))
	second4 := h.link.Host4(3)
	h.client.AddAddr(t, h.link.BIf, netip.PrefixFrom(second4, 24))
	h.start()
	h.expect(h.link.B4, closedPort, netnstest.TimedOut)

	saved := filepath.Join(h.dir, "fwknop.pkt")
	fwknopClient(t, h, key, hmacKey, h.link.B4, h.link.A4, saved)
	h.eventually("the fwknop grant", h.link.B4, closedPort, netnstest.Connected)
	h.expect(second4, closedPort, netnstest.TimedOut)
	if st := spaStatus(t, h); st.Accepted != 1 || st.Fwknop != 1 {
		t.Fatalf("spa status %+v, want one accepted", st)
	}
	pkt, err := os.ReadFile(saved)
	if err != nil {
		t.Fatal(err)
	}
	pkt = bytes.TrimSpace(pkt)
	h.eventually("the grant to end after 4s", h.link.B4, closedPort, netnstest.TimedOut)

	// The captured packet again, from its sender and from another
	// address, and altered (still base64, so it reaches the HMAC).
	sendUDP(t, h, h.link.B4, h.link.A4, pkt)
	sendUDP(t, h, second4, h.link.A4, pkt)
	flipped := bytes.Clone(pkt)
	if i := len(flipped) / 2; flipped[i] == 'A' { // another base64 character: bits change, the text stays base64
		flipped[i] = 'B'
	} else {
		flipped[i] = 'A'
	}
	sendUDP(t, h, second4, h.link.A4, flipped)
	// Another address's packet, asking for second4, from B4:
	// require_source_address refuses it.
	fwknopClient(t, h, key, hmacKey, second4, h.link.A4, filepath.Join(h.dir, "other.pkt"))
	want := map[string]uint64{"fwknop_replay": 2, "fwknop_hmac": 1, "fwknop_source_address": 1}
	netnstest.Eventually(t, 5*time.Second, "the refusals", func() bool {
		st := spaStatus(t, h)
		for k, n := range want {
			if st.Refused[k] < n {
				return false
			}
		}
		return true
	})
	if st := spaStatus(t, h); st.Accepted != 1 {
		t.Fatalf("spa status %+v: want nothing more accepted", st)
	}
	h.expect(h.link.B4, closedPort, netnstest.TimedOut)
	h.expect(second4, closedPort, netnstest.TimedOut)

	// An old timestamp: the real client with its clock 200s back (fwknop's
	// --time-offset-minus).
	fwknopClient(t, h, key, hmacKey, h.link.B4, h.link.A4, filepath.Join(h.dir, "old.pkt"), "--time-offset-minus", "200s")
	netnstest.Eventually(t, 5*time.Second, "the old packet refused", func() bool {
		return spaStatus(t, h).Refused["fwknop_too_old"] >= 1
	})
	h.expect(h.link.B4, closedPort, netnstest.TimedOut)

	// A restart keeps the digests: the packet stays spent.
	h.restart()
	sendUDP(t, h, h.link.B4, h.link.A4, pkt)
	netnstest.Eventually(t, 5*time.Second, "the replay after a restart refused", func() bool {
		return spaStatus(t, h).Refused["fwknop_replay"] >= 1
	})
	h.expect(h.link.B4, closedPort, netnstest.TimedOut)

	// A crash: the replay cache is saved after the grant, so a packet
	// accepted just before a kill -9 may be missing from it. The start
	// after the crash refuses every packet stamped within fwknop's 120 s,
	// a fresh one too, rather than accept one that could be a replay.
	h.proc.Kill9()
	_ = h.proc.Wait(5 * time.Second)
	h.start()
	fwknopClient(t, h, key, hmacKey, h.link.B4, h.link.A4, filepath.Join(h.dir, "crash.pkt"))
	netnstest.Eventually(t, 5*time.Second, "a fresh packet after the crash refused", func() bool {
		return spaStatus(t, h).Refused["fwknop_stale"] >= 1
	})
	if st := spaStatus(t, h); st.Accepted != 0 {
		t.Fatalf("after an unclean start moat accepted an fwknop packet within its window: %+v", st)
	}
	h.expect(h.link.B4, closedPort, netnstest.TimedOut)
}

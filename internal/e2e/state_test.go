package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/daemon"
	"github.com/moat-fw/moat/internal/netnstest"
	"github.com/moat-fw/moat/internal/nflog"
)

// kernelSet reads the elements of one of moat's sets with `nft -j`, as
// sorted strings (an address, a prefix, or a range).
func (h *host) kernelSet(t *testing.T, name string) []string {
	t.Helper()
	out := h.server.Run(t, "nft", "-j", "list", "set", "inet", "moat", name)
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("nft -j list set %s: %v\n%s", name, err, out)
	}
	var got []string
	for _, o := range doc.Nftables {
		raw, ok := o["set"]
		if !ok {
			continue
		}
		var set struct {
			Elem []any `json:"elem"`
		}
		if err := json.Unmarshal(raw, &set); err != nil {
			t.Fatal(err)
		}
		for _, e := range set.Elem {
			got = append(got, elemString(e))
		}
	}
	sort.Strings(got)
	return got
}

// elemString prints one element of nft's JSON: a bare value, or
// {"elem": {"val": V, "timeout": ...}}, where V is an address,
// {"prefix": {"addr", "len"}} or {"range": [a, b]}.
func elemString(e any) string {
	switch v := e.(type) {
	case string:
		return v
	case map[string]any:
		if in, ok := v["elem"].(map[string]any); ok {
			return elemString(in["val"])
		}
		if p, ok := v["prefix"].(map[string]any); ok {
			return fmt.Sprintf("%v/%v", p["addr"], p["len"])
		}
		if r, ok := v["range"].([]any); ok && len(r) == 2 {
			return fmt.Sprintf("%v-%v", r[0], r[1])
		}
	}
	return fmt.Sprint(e)
}

// loginBurst appends one "message repeated" failure line per address to the
// log, as rsyslog writes a burst of guesses, and returns the addresses.
// They come from 10.210.200.0-10.210.239.255, leaving out the link's /24.
func loginBurst(t *testing.T, h *host, log string, n int) []netip.Addr {
	t.Helper()
	var addrs []netip.Addr
	var b strings.Builder
	stamp := time.Now().Format(time.Stamp)
	for x := 200; len(addrs) < n && x < 240; x++ {
		if netip.AddrFrom4([4]byte{10, 210, byte(x), 0}) == h.link.Prefix4.Addr() {
			continue
		}
		for y := 1; y < 255 && len(addrs) < n; y++ {
			a := netip.AddrFrom4([4]byte{10, 210, byte(x), byte(y)})
			addrs = append(addrs, a)
			// A [[login.rule]] service's lines: sshd's from a file need the
			// kernel's handshake evidence, which 2000 addresses cannot give.
			fmt.Fprintf(&b, "%s host myapp[7]: auth failure for root from %s\n", stamp, a)
		}
	}
	f, err := os.OpenFile(log, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(b.String()); err != nil {
		t.Fatal(err)
	}
	return addrs
}

// TestCleanStopAfterFullDiskKeepsBans: bans the store could not save (a
// full disk) are in the kernel only. A clean stop must not mark the store
// complete, or the next start trusts it, skips reading the kernel's bans
// back and installs the table from the store alone, dropping them (M4).
func TestCleanStopAfterFullDiskKeepsBans(t *testing.T) {
	h := newHost(t, fmt.Sprintf("open = [\"tcp/%d\"]", openPort))
	state := h.smallStateDir()
	log := filepath.Join(h.dir, "auth.log")
	if err := os.WriteFile(log, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	h.writeConfig(fmt.Sprintf("open = [\"tcp/%d\"]\n\n[login]\nsources = []\nban_time = \"1h\"\n\n[[login.rule]]\nname = \"myapp\"\nsource = %q\npattern = '^\\w{3} +\\d+ [\\d:]+ \\S+ myapp\\[\\d+\\]: auth failure for \\S+ from <HOST>$'\nmax_retry = 1\n", openPort, log))
	h.start()
	filler := filepath.Join(state, "filler")
	fillDisk(t, filler)

	const n = 2000
	loginBurst(t, h, log, n)
	netnstest.Eventually(t, 30*time.Second, fmt.Sprintf("%d login bans", n), func() bool {
		return h.status(t).Bans >= n
	})
	if st := h.status(t); st.StoreWriteFailures == 0 {
		t.Fatalf("%d bans fit on a full 256 KiB tmpfs: the test did not fill the disk", n)
	}
	before := h.kernelSet(t, "ban4")
	if len(before) < n {
		t.Fatalf("the kernel holds %d bans, want at least %d", len(before), n)
	}
	// Room again: the small write that marks the store clean would work,
	// and so would a start; only the bans written while it was full are
	// missing from the store.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	h.proc.Signal(syscall.SIGTERM)
	if err := h.proc.Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if out := h.proc.Output(); !strings.Contains(out, "not marking the store as cleanly stopped") {
		t.Errorf("the stop did not say why the store stays unclean:\n%s", lastLines(out, 20))
	}
	// Without the login guard, only the kernel can bring the bans back
	// (its saved position may be behind: that write failed too).
	h.writeConfig(fmt.Sprintf("open = [\"tcp/%d\"]", openPort))
	h.start()
	after := map[string]bool{}
	for _, e := range h.kernelSet(t, "ban4") {
		after[e] = true
	}
	var lost []string
	for _, e := range before {
		if !after[e] {
			lost = append(lost, e)
		}
	}
	if len(lost) > 0 {
		t.Fatalf("%d of %d kernel bans lost across a clean stop and start, e.g. %v", len(lost), len(before), lost[:min(len(lost), 5)])
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// TestSecondDaemonInTheNamespaceRefused: a second moat with its own
// state_dir and socket (so neither the store's lock nor the socket stops
// it) is refused in a network namespace a moat already guards, and says
// which moat holds it; the first one's table is left as it was (M10).
func TestSecondDaemonInTheNamespaceRefused(t *testing.T) {
	h := newHost(t, fmt.Sprintf("open = [\"tcp/%d\"]", openPort))
	h.start()
	want := h.server.Run(t, "nft", "-s", "list", "table", "inet", "moat")

	other := filepath.Join(h.dir, "other")
	cfg := filepath.Join(h.dir, "other.toml")
	text := fmt.Sprintf("[daemon]\nstate_dir = %q\nsocket = %q\n\n[firewall]\nopen = [\"tcp/%d\", \"tcp/%d\"]\n",
		filepath.Join(other, "state"), filepath.Join(other, "moat.sock"), openPort, closedPort)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", h.server.Name, moatBin, "--config", cfg, "run")
	done := make(chan struct{})
	var out []byte
	var err error
	go func() {
		defer close(done)
		out, err = cmd.CombinedOutput()
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("a second moat in the namespace kept running:\n%s", out)
	}
	wantErr := fmt.Sprintf("another moat (pid %d, state_dir %s", h.proc.Pid(), filepath.Join(h.dir, "state"))
	if err == nil || !strings.Contains(string(out), wantErr) {
		t.Fatalf("second moat: err=%v, want it refused naming %q:\n%s", err, wantErr, out)
	}
	if got := h.server.Run(t, "nft", "-s", "list", "table", "inet", "moat"); got != want {
		t.Fatalf("the refused moat changed the first one's table:\n%s\nwant:\n%s", got, want)
	}
	h.expect(h.link.B4, closedPort, netnstest.TimedOut)
	// The first moat's socket still answers; a standalone apply of the
	// other config is refused the same way.
	h.moat("status")
	h.moat("ban", "list")
	out2, err := exec.Command("ip", "netns", "exec", h.server.Name, moatBin, "--config", cfg, "firewall", "apply").CombinedOutput()
	if err == nil || !strings.Contains(string(out2), wantErr) {
		t.Fatalf("standalone apply beside a running moat: err=%v\n%s", err, out2)
	}
	h.expect(h.link.B4, closedPort, netnstest.TimedOut)
	if h.proc.Exited() {
		t.Fatalf("the first moat died:\n%s", h.proc.Output())
	}
}

// TestReconcileRepairsRuleDrift: a ban rule deleted from moat's chain and
// an accept rule inserted into it are put right by the next full
// reconcile, which also says so in status (L3).
func TestReconcileRepairsRuleDrift(t *testing.T) {
	h := newHost(t, fmt.Sprintf("open = [\"tcp/%d\"]", openPort))
	const backdoor = 31337
	h.server.ListenTCP(t, netip.AddrPortFrom(h.link.A4, backdoor))
	second := h.link.Host4(3)
	h.client.AddAddr(t, h.link.BIf, netip.PrefixFrom(second, 24))
	h.start() // reconcile_every = "1s"
	h.moat("ban", "add", h.link.B4.String())
	h.expect(h.link.B4, openPort, netnstest.TimedOut)
	h.expect(second, backdoor, netnstest.TimedOut)

	listing := h.server.Run(t, "nft", "-a", "list", "chain", "inet", "moat", "guard")
	m := regexp.MustCompile(`ip saddr @ban4 .*# handle (\d+)`).FindStringSubmatch(listing)
	if m == nil {
		t.Fatalf("no @ban4 rule in chain guard:\n%s", listing)
	}
	// One transaction, so no reconcile runs between the two changes.
	h.server.Nft(t, fmt.Sprintf("delete rule inet moat guard handle %s\ninsert rule inet moat guard tcp dport %d accept\n", m[1], backdoor))
	h.eventually("reconcile to put the ban rule back", h.link.B4, openPort, netnstest.TimedOut)
	h.eventually("reconcile to remove the inserted accept", second, backdoor, netnstest.TimedOut)
	if st := h.status(t); st.RulesRepaired == 0 {
		t.Fatalf("status after a repair: rules_repaired = 0")
	}
	out := h.proc.Output()
	if !strings.Contains(out, "differ from what moat installed") || !strings.Contains(out, "@ban4") || !strings.Contains(out, "not installed by moat") {
		t.Fatalf("the log does not say what differed:\n%s", lastLines(out, 30))
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "differ from what moat installed") {
			t.Log(l)
		}
	}
	if !strings.Contains(h.moat("status"), "1 reinstalls of the table") {
		t.Fatalf("status text:\n%s", h.moat("status"))
	}
	// An untouched table is not repaired again.
	time.Sleep(2500 * time.Millisecond)
	if st := h.status(t); st.RulesRepaired != 1 {
		t.Fatalf("rules_repaired = %d with nothing changed since the repair, want 1", st.RulesRepaired)
	}
}

// synProbe sends one SYN from src to each of n closed ports from base on,
// as a small port scan does.
func (h *host) synProbe(src netip.Addr, base uint16, n int) {
	h.t.Helper()
	for i := range n {
		h.client.DialTCP(h.t, src, netip.AddrPortFrom(h.link.A4, base+uint16(i)), 100*time.Millisecond)
	}
}

// TestRollbackRestoresTheGuards: an unconfirmed apply rolls back the whole
// config, so a scan guard told to ban at danger level 1 goes back to the
// default level 3; and status says the file on disk differs from the
// config in force (M1).
func TestRollbackRestoresTheGuards(t *testing.T) {
	good := fmt.Sprintf("open = [\"tcp/%d\"]", openPort)
	h := newHost(t, good)
	control := h.link.Host4(3)
	h.client.AddAddr(t, h.link.BIf, netip.PrefixFrom(control, 24))
	h.start()
	h.writeConfig(good + "\n\n[scan]\nblock_level = 1\n")
	h.moat("firewall", "apply", "--confirm", "3s")
	// While it is in force, a few SYNs to closed ports get a ban.
	h.synProbe(control, 4200, 6)
	netnstest.Eventually(t, 5*time.Second, "the unconfirmed block_level = 1 to ban a small scan", func() bool {
		return hasBan(h.bans(t), control.String(), "scan")
	})
	h.writeConfig(good) // the admin puts the file back
	if st := h.status(t); !st.ConfigFileDiffers {
		t.Fatal("status: config_file_differs is false while the unconfirmed config is in force and the file was put back")
	}
	netnstest.Eventually(t, 10*time.Second, "the unconfirmed apply to roll back", func() bool {
		return h.status(t).PendingConfirm == nil
	})
	if st := h.status(t); st.ConfigFileDiffers {
		t.Fatal("status: config_file_differs is true after rolling back to the file's config")
	}
	h.synProbe(h.link.B4, 4300, 6)
	time.Sleep(2 * time.Second)
	if hasBan(h.bans(t), h.link.B4.String(), "scan") {
		t.Fatal("the scan guard still bans at block_level 1 after the rollback")
	}

	// Rolled back while the file still holds the unconfirmed config: status says so.
	h.writeConfig(good + "\n\n[scan]\nblock_level = 2\n")
	h.moat("firewall", "apply", "--confirm", "2s")
	netnstest.Eventually(t, 10*time.Second, "the second unconfirmed apply to roll back", func() bool {
		return h.status(t).PendingConfirm == nil
	})
	if st := h.status(t); !st.ConfigFileDiffers {
		t.Fatal("status: config_file_differs is false after a rollback left the unconfirmed config in the file")
	}
	if out := h.moat("status"); !strings.Contains(out, "DIFFERS") {
		t.Fatalf("status text does not say the file differs:\n%s", out)
	}
}

// TestStatusShowsIntakeNotBound: when another process holds the NFLOG
// group, moat runs on without packet intake; status says so, with the
// reason, and that the scan guard and daemon-mode doors are blind (L6).
func TestStatusShowsIntakeNotBound(t *testing.T) {
	h := newHost(t, fmt.Sprintf("open = [\"tcp/%d\"]\nlog_group = 7", openPort))
	squatter, err := nflog.Open(7, nflog.WithNetNS(h.server.Fd()))
	if err != nil {
		t.Fatalf("taking NFLOG group 7 in the namespace first: %v", err)
	}
	defer squatter.Close()
	h.start()
	var st daemon.Status
	netnstest.Eventually(t, 5*time.Second, "status to report the intake", func() bool {
		st = h.status(t)
		return st.Intake != nil && st.Intake.Error != ""
	})
	if st.Intake.Bound || st.Intake.Group != 7 {
		t.Fatalf("status intake: %+v, want group 7 not bound", st.Intake)
	}
	out := h.moat("status")
	if !strings.Contains(out, "NOT bound") || !strings.Contains(out, "BLIND") {
		t.Fatalf("status text does not say the intake failed:\n%s", out)
	}
	squatter.Close()

	// And bound, with its counts, when the group is free.
	h.proc.Signal(syscall.SIGTERM)
	if err := h.proc.Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	h.start()
	netnstest.Eventually(t, 5*time.Second, "the intake to be bound", func() bool {
		st = h.status(t)
		return st.Intake != nil && st.Intake.Bound
	})
	h.expect(h.link.B4, closedPort, netnstest.TimedOut) // logged, then dropped
	netnstest.Eventually(t, 5*time.Second, "the logged SYN to be received", func() bool {
		return h.status(t).Intake.Received > 0
	})
	if out := h.moat("status"); !strings.Contains(out, "NFLOG group 7 bound") {
		t.Fatalf("status text with a working intake:\n%s", out)
	}
}

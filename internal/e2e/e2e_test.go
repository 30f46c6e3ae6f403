// Package e2e runs the real moat binary in throwaway network namespaces and
// asserts, with real packets, what the kernel did.
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
	"syscall"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/daemon"
	"github.com/moat-fw/moat/internal/netnstest"
)

var moatBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Geteuid() == 0 {
		dir, err := os.MkdirTemp("", "moat-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		moatBin = filepath.Join(dir, "moat")
		cmd := exec.Command("go", "build", "-o", moatBin, "../../cmd/moat")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building moat: %v\n%s", err, out)
			return 1
		}
	}
	return m.Run()
}

// host is a server namespace running moat and a client namespace linked to it.
type host struct {
	t      *testing.T
	server *netnstest.NS
	client *netnstest.NS
	link   *netnstest.Link
	dir    string
	cfg    string
	proc   *netnstest.Proc
	// startWait is how long start waits for the socket (zero: 10s); a
	// daemon restoring a million bans on a busy CI machine needs longer.
	startWait time.Duration
}

// Ports the tests use: one open, one closed with a listener behind it, so a
// refusal or a timeout proves the firewall acted, not a missing listener.
const (
	openPort   = 8022
	closedPort = 9000
)

func newHost(t *testing.T, firewallTOML string) *host {
	t.Helper()
	netnstest.RequireRoot(t)
	netnstest.RequireCommands(t, "nft")
	t.Parallel()
	h := &host{t: t, server: netnstest.New(t), client: netnstest.New(t), dir: t.TempDir()}
	h.link = netnstest.Connect(t, h.server, h.client)
	for _, a := range []netip.Addr{h.link.A4, h.link.A6} {
		h.server.ListenTCP(t, netip.AddrPortFrom(a, openPort))
		h.server.ListenTCP(t, netip.AddrPortFrom(a, closedPort))
	}
	h.writeConfig(firewallTOML)
	return h
}

func (h *host) writeConfig(firewallTOML string) {
	h.t.Helper()
	h.cfg = filepath.Join(h.dir, "moat.toml")
	text := fmt.Sprintf("[daemon]\nstate_dir = %q\nsocket = %q\nreconcile_every = \"1s\"\nlog_level = \"debug\"\n\n[firewall]\n%s\n",
		filepath.Join(h.dir, "state"), filepath.Join(h.dir, "moat.sock"), firewallTOML)
	if err := os.WriteFile(h.cfg, []byte(text), 0o600); err != nil {
		h.t.Fatal(err)
	}
}

// start runs `moat run` in the server namespace and waits for its socket.
func (h *host) start(env ...string) {
	h.t.Helper()
	cmd := exec.Command(moatBin, "--config", h.cfg, "run")
	cmd.Env = append(os.Environ(), env...)
	h.startCmd(cmd)
}

// startCmd is start for a prepared command that runs `moat run`.
func (h *host) startCmd(cmd *exec.Cmd) {
	h.t.Helper()
	h.proc = h.server.StartCmd(h.t, cmd)
	wait := h.startWait
	if wait == 0 {
		wait = 10 * time.Second
	}
	netnstest.Eventually(h.t, wait, "moat to answer on its socket", func() bool {
		if h.proc.Exited() {
			h.t.Fatalf("moat exited:\n%s", h.proc.Output())
		}
		_, err := h.moatErr("status")
		return err == nil
	})
}

// restart stops moat with SIGTERM, as systemd does, and starts it again.
func (h *host) restart() {
	h.t.Helper()
	if err := h.proc.Signal(syscall.SIGTERM); err != nil {
		h.t.Fatal(err)
	}
	if err := h.proc.Wait(10 * time.Second); err != nil {
		h.t.Logf("moat stopped: %v", err)
	}
	h.start()
}

// fillDisk writes path until the filesystem under it is full.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			return
		}
	}
}

// moatErr runs the CLI in the server namespace.
func (h *host) moatErr(args ...string) (string, error) {
	return h.moatEnv(nil, args...)
}

func (h *host) moatEnv(env []string, args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", h.server.Name, moatBin, "--config", h.cfg}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (h *host) moat(args ...string) string {
	h.t.Helper()
	out, err := h.moatErr(args...)
	if err != nil {
		h.t.Fatalf("moat %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

const (
	quick   = 400 * time.Millisecond // long enough for a LAN answer, short for a drop
	patient = 2 * time.Second
)

// expect dials from src to the server's address of the same family.
func (h *host) expect(src netip.Addr, port uint16, want netnstest.Result) {
	h.t.Helper()
	dst := h.link.A4
	if src.Is6() {
		dst = h.link.A6
	}
	timeout := quick
	if want != netnstest.TimedOut {
		timeout = patient
	}
	if got := h.client.DialTCP(h.t, src, netip.AddrPortFrom(dst, port), timeout); got != want {
		h.t.Fatalf("tcp from %s to [%s]:%d: got %s, want %s", src, dst, port, got, want)
	}
}

func (h *host) eventually(what string, src netip.Addr, port uint16, want netnstest.Result) {
	h.t.Helper()
	dst := h.link.A4
	if src.Is6() {
		dst = h.link.A6
	}
	netnstest.Eventually(h.t, 10*time.Second, what, func() bool {
		return h.client.DialTCP(h.t, src, netip.AddrPortFrom(dst, port), quick) == want
	})
}

func TestOpenAndClosedPorts(t *testing.T) {
	for _, resp := range []string{"drop", "reject"} {
		t.Run(resp, func(t *testing.T) {
			h := newHost(t, fmt.Sprintf("open = [\"tcp/%d\"]\nclosed_response = %q", openPort, resp))
			closed := netnstest.TimedOut
			if resp == "reject" {
				closed = netnstest.Refused
			}
			// Without moat the closed port answers: it has a listener.
			h.expect(h.link.B4, closedPort, netnstest.Connected)
			h.start()
			for _, src := range []netip.Addr{h.link.B4, h.link.B6} {
				h.expect(src, openPort, netnstest.Connected)
				h.expect(src, closedPort, closed)
			}
			if resp == "reject" {
				// UDP to a closed port gets ICMP port unreachable, as from a
				// host with nothing listening.
				h.server.ListenUDPEcho(t, netip.AddrPortFrom(h.link.A4, 5353))
				ans, unreach := h.client.UDPEcho(t, h.link.B4, netip.AddrPortFrom(h.link.A4, 5353), patient)
				if ans || !unreach {
					t.Fatalf("udp to a closed port: answered=%v unreachable=%v, want an ICMP port unreachable", ans, unreach)
				}
			}
		})
	}
}

func TestBansDropAndPrefixesCover(t *testing.T) {
	h := newHost(t, fmt.Sprintf("open = [\"tcp/%d\"]", openPort))
	second4 := h.link.Host4(3)
	second6 := h.link.Host6(3)
	h.client.AddAddr(t, h.link.BIf, netip.PrefixFrom(second4, 24))
	h.client.AddAddr(t, h.link.BIf, netip.PrefixFrom(second6, 64))
	h.start()

	h.moat("ban", "add", h.link.B4.String(), "--reason", "test")
	h.moat("ban", "add", h.link.B6.String())
	h.expect(h.link.B4, openPort, netnstest.TimedOut)
	h.expect(h.link.B6, openPort, netnstest.TimedOut)
	h.expect(second4, openPort, netnstest.Connected)
	h.expect(second6, openPort, netnstest.Connected)

	// A prefix ban covers every host in it, including ones banned alone.
	// The link's prefixes hold the host's own addresses: --force.
	h.moat("ban", "add", h.link.Prefix4.String(), "--force")
	h.moat("ban", "add", h.link.Prefix6.String(), "--force")
	h.expect(second4, openPort, netnstest.TimedOut)
	h.expect(second6, openPort, netnstest.TimedOut)

	// Lifting the prefix frees the second address but not the host banned
	// on its own.
	h.moat("ban", "del", h.link.Prefix4.String())
	h.moat("ban", "del", h.link.Prefix6.String())
	h.expect(second4, openPort, netnstest.Connected)
	h.expect(second6, openPort, netnstest.Connected)
	h.expect(h.link.B4, openPort, netnstest.TimedOut)

	var list []daemon.EntryJSON
	if err := json.Unmarshal([]byte(h.moat("ban", "list", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Addr != h.link.B4.String() || list[0].Reason != "test" || list[0].Origin != "manual" || list[0].Count != 1 {
		t.Fatalf("ban list: %+v", list)
	}
	var st daemon.Status
	if err := json.Unmarshal([]byte(h.moat("status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Bans != 2 || st.Counters["ban"].Packets == 0 || !st.TablePresent {
		t.Fatalf("status after dropped SYNs from banned sources: %+v", st)
	}
	h.moat("ban", "del", h.link.B4.String())
	h.expect(h.link.B4, openPort, netnstest.Connected)

	if out, err := h.moatErr("ban", "del", "10.210.250.250"); err == nil {
		t.Fatalf("deleting an absent ban should fail, got %q", out)
	}
}

func TestBanExpiresInTheKernel(t *testing.T) {
	h := newHost(t, fmt.Sprintf("open = [\"tcp/%d\"]", openPort))
	h.start()
	h.moat("ban", "add", h.link.B4.String(), "--for", "2s")
	h.expect(h.link.B4, openPort, netnstest.TimedOut)
	// Stop the daemon first: the kernel must expire the ban by itself.
	h.proc.Signal(syscall.SIGTERM)
	if err := h.proc.Wait(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	h.eventually("the ban to expire", h.link.B4, openPort, netnstest.Connected)
}

func TestBanSurvivesKill9AndRestart(t *testing.T) {
	h := newHost(t, fmt.Sprintf("open = [\"tcp/%d\"]", openPort))
	h.start()
	h.moat("ban", "add", h.link.B4.String(), "--for", "1h")
	h.moat("ban", "add", h.link.Prefix6.String(), "--force")
	h.proc.Kill9()
	_ = h.proc.Wait(5 * time.Second)
	// Fail closed: the kernel keeps enforcing with moat dead.
	h.expect(h.link.B4, openPort, netnstest.TimedOut)
	h.expect(h.link.B6, openPort, netnstest.TimedOut)
	// A reboot empties the kernel; moat restores from its store (and the
	// stale socket the kill left behind does not stop it).
	h.server.Run(t, "nft", "flush", "ruleset")
	h.expect(h.link.B4, openPort, netnstest.Connected)
	h.start()
	h.expect(h.link.B4, openPort, netnstest.TimedOut)
	h.expect(h.link.B6, openPort, netnstest.TimedOut)
	if out := h.moat("ban", "list"); !strings.Contains(out, h.link.B4.String()) || !strings.Contains(out, h.link.Prefix6.String()) {
		t.Fatalf("ban list after restart:\n%s", out)
	}
}

// moat puts a ban in the kernel before its store write (an fsync can take
// tens of milliseconds); a daemon killed between the two must not lose the
// ban at the next start, which installs the table from the store.
func TestBanOnlyInTheKernelSurvivesKill9(t *testing.T) {
	h := newHost(t, fmt.Sprintf("open = [\"tcp/%d\"]", openPort))
	h.start()
	// What a ban looks like when the daemon dies right after the kernel
	// took it: in the sets, with its timeout, and nowhere in the store.
	h.server.Run(t, "nft", "add", "element", "inet", "moat", "ban4", "{ "+h.link.B4.String()+" timeout 1h }")
	h.server.Run(t, "nft", "add", "element", "inet", "moat", "ban6", "{ "+h.link.B6.String()+" }")
	h.proc.Kill9()
	_ = h.proc.Wait(5 * time.Second)
	h.start()
	h.expect(h.link.B4, openPort, netnstest.TimedOut)
	h.expect(h.link.B6, openPort, netnstest.TimedOut)
	var bans []struct {
		Addr    string    `json:"addr"`
		Origin  string    `json:"origin"`
		Expires time.Time `json:"expires"`
	}
	if err := json.Unmarshal([]byte(h.moat("ban", "list", "--json")), &bans); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, b := range bans {
		got[b.Addr] = b.Origin
		if b.Addr == h.link.B4.String() {
			if left := time.Until(b.Expires); left < 58*time.Minute || left > time.Hour {
				t.Fatalf("adopted ban of %s ends in %v, want the hour the kernel had left", b.Addr, left)
			}
		}
	}
	if got[h.link.B4.String()] != "recovered" || got[h.link.B6.String()] != "recovered" {
		t.Fatalf("ban list after restart: %+v", bans)
	}
	// Now in the store: a clean stop, a reboot and a start keep them.
	h.proc.Signal(syscall.SIGTERM)
	if err := h.proc.Wait(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	h.server.Run(t, "nft", "flush", "ruleset")
	h.start()
	h.expect(h.link.B4, openPort, netnstest.TimedOut)
	h.expect(h.link.B6, openPort, netnstest.TimedOut)
}

func TestReconcileReassertsWhatTheKernelLost(t *testing.T) {
	h := newHost(t, fmt.Sprintf("open = [\"tcp/%d\"]", openPort))
	h.start()
	h.moat("ban", "add", h.link.B4.String())
	h.expect(h.link.B4, openPort, netnstest.TimedOut)
	h.server.Run(t, "nft", "delete", "element", "inet", "moat", "ban4", "{ "+h.link.B4.String()+" }")
	h.eventually("reconcile to re-add the deleted element", h.link.B4, openPort, netnstest.TimedOut)
	h.server.Run(t, "nft", "delete", "table", "inet", "moat")
	h.eventually("reconcile to reinstall the table", h.link.B4, openPort, netnstest.TimedOut)
	h.expect(h.link.B6, closedPort, netnstest.TimedOut)
}

func TestOtherTablesSurviveApplyReloadAndOff(t *testing.T) {
	h := newHost(t, fmt.Sprintf("open = [\"tcp/%d\"]", openPort))
	h.server.Nft(t, `
table ip dockerish {
	set blocked { type ipv4_addr; elements = { 10.210.200.1 } }
	chain forward { type filter hook forward priority filter; policy accept; ip saddr @blocked counter drop; }
}
`)
	want := h.server.Run(t, "nft", "list", "table", "ip", "dockerish")
	check := func(step string) {
		t.Helper()
		if got := h.server.Run(t, "nft", "list", "table", "ip", "dockerish"); got != want {
			t.Fatalf("%s changed another table:\n%s", step, got)
		}
	}
	h.start()
	check("start")
	h.writeConfig(fmt.Sprintf("open = [\"tcp/%d\", \"tcp/%d\"]", openPort, closedPort))
	h.proc.Signal(syscall.SIGHUP)
	h.eventually("SIGHUP to open the second port", h.link.B4, closedPort, netnstest.Connected)
	check("reload")
	h.moat("firewall", "apply")
	check("apply")
	h.moat("firewall", "off")
	check("off")
	if out := h.server.Run(t, "nft", "list", "tables"); strings.Contains(out, "inet moat") {
		t.Fatalf("firewall off left moat's table:\n%s", out)
	}
	// The daemon must not put back a table the admin turned off: wait past
	// its table check, which runs every 2 s.
	time.Sleep(3 * time.Second)
	if out := h.server.Run(t, "nft", "list", "tables"); strings.Contains(out, "inet moat") {
		t.Fatalf("reconcile reinstalled the table after firewall off:\n%s", out)
	}
}

func TestApplyConfirmRollsBack(t *testing.T) {
	h := newHost(t, fmt.Sprintf("open = [\"tcp/%d\"]", openPort))
	h.start()
	h.expect(h.link.B4, closedPort, netnstest.TimedOut)
	h.writeConfig(fmt.Sprintf("open = [\"tcp/%d\", \"tcp/%d\"]", openPort, closedPort))
	h.moat("firewall", "apply", "--confirm", "2s")
	h.expect(h.link.B4, closedPort, netnstest.Connected)
	h.eventually("the unconfirmed apply to roll back", h.link.B4, closedPort, netnstest.TimedOut)

	h.moat("firewall", "apply", "--confirm", "2s")
	h.moat("firewall", "confirm")
	time.Sleep(3 * time.Second)
	h.expect(h.link.B4, closedPort, netnstest.Connected)
	if out, err := h.moatErr("firewall", "confirm"); err == nil {
		t.Fatalf("a second confirm should say there is nothing to confirm, got %q", out)
	}
}

func TestApplyConfirmWithoutDaemon(t *testing.T) {
	h := newHost(t, fmt.Sprintf("open = [\"tcp/%d\"]", openPort))
	h.moat("firewall", "apply")
	h.expect(h.link.B4, closedPort, netnstest.TimedOut)
	h.writeConfig(fmt.Sprintf("open = [\"tcp/%d\", \"tcp/%d\"]", openPort, closedPort))
	out, err := h.moatErr("firewall", "apply", "--confirm", "1s")
	if err == nil || !strings.Contains(out, "rolled back") {
		t.Fatalf("unconfirmed standalone apply: err=%v\n%s", err, out)
	}
	h.expect(h.link.B4, closedPort, netnstest.TimedOut)
}

func TestLockoutGuard(t *testing.T) {
	h := newHost(t, fmt.Sprintf("open = [\"tcp/%d\"]", openPort))
	session := []string{fmt.Sprintf("SSH_CONNECTION=%s 50000 %s 2222", h.link.B4, h.link.A4)}
	// The config does not open 2222, where this pretend session came in.
	cmd := exec.Command("ip", "netns", "exec", h.server.Name, moatBin, "--config", h.cfg, "run")
	cmd.Env = append(os.Environ(), session...)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "cut off your SSH session") {
		t.Fatalf("moat run inside an SSH session it would cut off: err=%v\n%s", err, out)
	}
	if out := h.server.Run(t, "nft", "list", "tables"); strings.Contains(out, "inet moat") {
		t.Fatalf("a refused start installed the table anyway")
	}

	h.start()
	// Banning the session's own source is refused unless forced.
	out2, err := h.moatEnv(session, "ban", "add", h.link.Prefix4.String())
	if err == nil || !strings.Contains(out2, "source of your SSH session") {
		t.Fatalf("ban of the admin's own source: err=%v\n%s", err, out2)
	}
	h.expect(h.link.B4, openPort, netnstest.Connected)
	// apply of the same config is refused too.
	out3, err := h.moatEnv(session, "firewall", "apply")
	if err == nil || !strings.Contains(out3, "cut off your SSH session") {
		t.Fatalf("apply inside an SSH session it would cut off: err=%v\n%s", err, out3)
	}
	// No session: only the host's own address in the prefix asks for --force.
	if out, err := h.moatErr("ban", "add", h.link.Prefix4.String()); err == nil || !strings.Contains(out, "one of this host's own addresses; add --force") {
		t.Fatalf("a ban of the host's own prefix: err=%v\n%s", err, out)
	}
	h.moat("ban", "add", h.link.Prefix4.String(), "--force")
	h.expect(h.link.B4, openPort, netnstest.TimedOut)
}

func TestAllowListAndSecondDaemon(t *testing.T) {
	h := newHost(t, fmt.Sprintf("open = [\"tcp/%d\"]", openPort))
	h.start()
	h.moat("ban", "add", h.link.B4.String())
	out := h.moat("allow", "add", h.link.B4.String())
	if !strings.Contains(out, "lifted") {
		t.Fatalf("allow over a ban should say it lifted it:\n%s", out)
	}
	// Allowed sources reach every port, closed ones included.
	h.expect(h.link.B4, closedPort, netnstest.Connected)
	h.expect(h.link.B6, closedPort, netnstest.TimedOut)
	if out, err := h.moatErr("ban", "add", h.link.B4.String()); err == nil || !strings.Contains(out, "allow list") {
		t.Fatalf("ban of an allowed address: err=%v\n%s", err, out)
	}
	// A second daemon is refused while the first runs.
	cmd := exec.Command("ip", "netns", "exec", h.server.Name, moatBin, "--config", h.cfg, "run")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "another moat") {
		t.Fatalf("second daemon: err=%v\n%s", err, out)
	}
	h.expect(h.link.B4, closedPort, netnstest.Connected)
}

func TestCLIWithoutDaemon(t *testing.T) {
	h := newHost(t, fmt.Sprintf("open = [\"tcp/%d\"]", openPort))
	out, err := h.moatErr("ban", "list")
	if err == nil || !strings.Contains(out, "moat is not running") || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Fatalf("ban list without a daemon should say so in one line: err=%v\n%q", err, out)
	}
}

// smallStateDir mounts a 256 KiB tmpfs on the host's state_dir, for tests
// that fill the disk under moat's store.
func (h *host) smallStateDir() string {
	h.t.Helper()
	state := filepath.Join(h.dir, "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		h.t.Fatal(err)
	}
	if err := syscall.Mount("moat-e2e", state, "tmpfs", 0, "size=256k,mode=0700"); err != nil {
		h.t.Skipf("cannot mount a small tmpfs: %v", err)
	}
	h.t.Cleanup(func() { _ = syscall.Unmount(state, syscall.MNT_DETACH) })
	return state
}

// TestFullDiskKeepsBans fills the filesystem under state_dir: a new ban is
// still enforced and the error says it was not saved; bans already in the
// kernel stay, and moat keeps running.
func TestFullDiskKeepsBans(t *testing.T) {
	h := newHost(t, fmt.Sprintf("open = [\"tcp/%d\"]", openPort))
	state := h.smallStateDir()
	h.start()
	h.moat("ban", "add", h.link.B6.String())
	fillDisk(t, filepath.Join(state, "filler"))
	// bbolt reuses its free pages first: ban until a write needs space.
	var failed netip.Addr
	for i := range 2000 {
		a := netip.AddrFrom4([4]byte{10, 210, byte(250 + i/250), byte(1 + i%250)})
		out, err := h.moatErr("ban", "add", a.String())
		if err == nil {
			continue
		}
		if !strings.Contains(out, "not saved") || !strings.Contains(out, "disk full") {
			t.Fatalf("ban on a full disk: err=%v\n%s", err, out)
		}
		failed = a
		break
	}
	if !failed.IsValid() {
		t.Fatal("2000 bans fit on a full 256 KiB tmpfs: the test did not fill the disk")
	}
	if out := h.server.Run(t, "nft", "list", "set", "inet", "moat", "ban4"); !strings.Contains(out, failed.String()) {
		t.Fatalf("the unsaved ban of %s is not enforced:\n%s", failed, out)
	}
	h.expect(h.link.B6, openPort, netnstest.TimedOut)
	h.expect(h.link.B4, openPort, netnstest.Connected)
	if h.proc.Exited() {
		t.Fatalf("moat died on a full disk:\n%s", h.proc.Output())
	}
}

func TestOnExitRemove(t *testing.T) {
	h := newHost(t, fmt.Sprintf("open = [\"tcp/%d\"]", openPort))
	text, _ := os.ReadFile(h.cfg)
	os.WriteFile(h.cfg, []byte(strings.Replace(string(text), "[daemon]\n", "[daemon]\non_exit = \"remove\"\n", 1)), 0o600)
	h.start()
	h.expect(h.link.B4, closedPort, netnstest.TimedOut)
	h.proc.Signal(syscall.SIGTERM)
	if err := h.proc.Wait(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	h.expect(h.link.B4, closedPort, netnstest.Connected)
}

// Bans are checked before connection tracking: a ban also cuts a connection
// that was already established.
func TestBanCutsEstablishedConnections(t *testing.T) {
	h := newHost(t, fmt.Sprintf("open = [\"tcp/%d\"]", 9700))
	echo := echoServer(t, h.server, netip.AddrPortFrom(h.link.A4, 9700))
	h.start()
	var conn net.Conn
	if err := h.client.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp", echo.String(), 2*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	roundTrip := func() error {
		conn.SetDeadline(time.Now().Add(time.Second))
		if _, err := fmt.Fprintln(conn, "ping"); err != nil {
			return err
		}
		_, err := r.ReadString('\n')
		return err
	}
	if err := roundTrip(); err != nil {
		t.Fatalf("before the ban: %v", err)
	}
	h.moat("ban", "add", h.link.B4.String())
	if err := roundTrip(); err == nil {
		t.Fatal("an established connection from a banned address still works")
	}
}

// forward = "ban" drops banned sources in traffic the host routes (to
// containers or VMs behind it) and leaves the rest alone; the default
// leaves forwarded traffic untouched.
func TestForwardedTrafficBans(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommands(t, "nft")
	t.Parallel()
	client, router, server := netnstest.New(t), netnstest.New(t), netnstest.New(t)
	l1 := netnstest.Connect(t, router, client) // router .1, client .2
	l2 := netnstest.Connect(t, router, server) // router .1, server .2
	router.Run(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	client.IP(t, "route", "add", l2.Prefix4.String(), "via", l1.A4.String())
	server.IP(t, "route", "add", l1.Prefix4.String(), "via", l2.A4.String())
	svc := netip.AddrPortFrom(l2.B4, 8080)
	server.ListenTCP(t, svc)

	h := &host{t: t, server: router, client: client, link: l1, dir: t.TempDir()}
	h.writeConfig("forward = \"ban\"")
	h.start()
	if got := client.DialTCP(t, netip.Addr{}, svc, patient); got != netnstest.Connected {
		t.Fatalf("forwarded traffic of an unbanned client: %s", got)
	}
	h.moat("ban", "add", l1.B4.String())
	if got := client.DialTCP(t, netip.Addr{}, svc, quick); got != netnstest.TimedOut {
		t.Fatalf("forwarded traffic of a banned client: %s, want TimedOut", got)
	}
	h.writeConfig("forward = \"untouched\"")
	h.moat("firewall", "apply")
	if got := client.DialTCP(t, netip.Addr{}, svc, patient); got != netnstest.Connected {
		t.Fatalf("forward untouched: %s, want Connected", got)
	}
}

// `moat firewall apply --config X` beside a running daemon that reads
// another file is refused, naming both (security review L7), and changes
// nothing; the daemon's own file still applies.
func TestApplyOtherConfigRefused(t *testing.T) {
	h := newHost(t, fmt.Sprintf("open = [\"tcp/%d\"]", openPort))
	h.start()
	daemonCfg := h.cfg
	kept, err := os.ReadFile(daemonCfg)
	if err != nil {
		t.Fatal(err)
	}
	h.writeConfig(fmt.Sprintf("open = [\"tcp/%d\", \"tcp/%d\"]", openPort, closedPort)) // same socket, more open
	other := filepath.Join(h.dir, "other.toml")
	if err := os.Rename(h.cfg, other); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(daemonCfg, kept, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ip", "netns", "exec", h.server.Name, moatBin, "--config", other, "firewall", "apply").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "the running daemon reads "+daemonCfg+", not "+other) ||
		!strings.Contains(string(out), "moat run --config "+other) {
		t.Fatalf("apply --config %s beside a daemon reading %s: err=%v\n%s", other, daemonCfg, err, out)
	}
	h.expect(h.link.B4, closedPort, netnstest.TimedOut)
	h.moat("firewall", "apply")
	h.expect(h.link.B4, openPort, netnstest.Connected)
}

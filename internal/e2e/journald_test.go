package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/netnstest"
)

// journald is a real systemd-journald, run without systemd as PID 1: in a
// private mount namespace whose /run is a fresh tmpfs with
// /run/systemd/journal and /run/log bound to directories of the test. Other
// processes see this journal when their namespace binds the same two
// directories (journalNS), and log to it through runDir/dev-log, journald's
// syslog socket, which sshd takes for /dev/log (startSSHDDevLog).
type journald struct {
	h       *host
	runDir  string // /run/systemd/journal: the sockets
	logDir  string // /run/log: the volatile journal files
	proc    *netnstest.Proc
	started int
}

func startJournald(t *testing.T, h *host) *journald {
	t.Helper()
	netnstest.RequireCommands(t, "journalctl", "unshare", "/lib/systemd/systemd-journald")
	// Not under t.TempDir's 0700 tree alone: sshd's privilege-separated
	// child (user sshd) must reach the socket, as journald's dev-log is
	// reachable by anyone on a real host.
	dir, err := os.MkdirTemp("", "moat-journald-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	j := &journald{h: h, runDir: filepath.Join(dir, "run"), logDir: filepath.Join(dir, "log")}
	for _, d := range []string{dir, j.runDir, j.logDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	j.start(t)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := j.ctl("--no-pager", "-o", "short-iso", "-n", "200")
			t.Logf("the test journal's last entries:\n%s", out)
		}
	})
	return j
}

// journalNS is a shell prologue that gives the rest of the script this
// journal as the system's: a private /run with the journal's directories,
// and /run/sshd, which sshd -T needs.
func (j *journald) journalNS() string {
	return fmt.Sprintf(`set -e
mount -t tmpfs -o mode=755 moat-test-run /run
mkdir -p /run/systemd/journal /run/log /run/sshd
mount --bind %s /run/systemd/journal
mount --bind %s /run/log
`, j.runDir, j.logDir)
}

func (j *journald) start(t *testing.T) {
	t.Helper()
	j.started++
	// ip netns exec gives the namespace a fresh /sys without cgroups, and
	// journald will not start without its cgroup root.
	j.proc = j.h.server.Start(t, "unshare", "-m", "--propagation", "private", "sh", "-c",
		j.journalNS()+"mountpoint -q /sys/fs/cgroup || mount -t cgroup2 moat-test-cgroup /sys/fs/cgroup\nexec /lib/systemd/systemd-journald")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if j.proc.Exited() {
			t.Fatalf("journald exited:\n%s", j.proc.Output())
		}
		if _, err := os.Stat(filepath.Join(j.runDir, "dev-log")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			ents, _ := os.ReadDir(j.runDir)
			t.Fatalf("journald made no dev-log socket in 10 s (%s holds %v)", j.runDir, ents)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := os.Chmod(filepath.Join(j.runDir, "dev-log"), 0o666); err != nil {
		t.Fatal(err)
	}
}

// restart stops journald as systemd would (SIGTERM) and starts it again.
func (j *journald) restart(t *testing.T) {
	t.Helper()
	if err := j.proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := j.proc.Wait(10 * time.Second); err != nil {
		t.Logf("journald stopped: %v", err)
	}
	// The old sockets stay as files; journald binds them anew.
	j.start(t)
}

// ctl runs journalctl against this journal.
func (j *journald) ctl(args ...string) (string, error) {
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	out, err := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c",
		j.journalNS()+"exec journalctl "+strings.Join(quoted, " ")).CombinedOutput()
	return string(out), err
}

// startMoat runs `moat run` in the server namespace, seeing this journal.
func (j *journald) startMoat(t *testing.T) {
	t.Helper()
	j.h.startCmd(exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c",
		j.journalNS()+fmt.Sprintf("exec %s --config %s run", moatBin, j.h.cfg)))
}

// startSSHDDevLog runs the real sshd logging through syslog(3) to sock: in
// its own mount namespace, on a private /dev whose log is sock.
func startSSHDDevLog(t *testing.T, h *host, sock string) *sshServer {
	t.Helper()
	s, dir := sshdFiles(t, h)
	realDev := filepath.Join(dir, "realdev")
	if err := os.MkdirAll(realDev, 0o700); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf(`set -e
mount --bind /dev %[1]s
mount -t tmpfs -o mode=755 moat-test-dev /dev
for n in null zero full random urandom tty; do touch /dev/$n; mount --bind %[1]s/$n /dev/$n; done
ln -s %[2]s /dev/log
umount -l %[1]s
exec /usr/sbin/sshd -D -f %[3]s
`, realDev, sock, filepath.Join(dir, "sshd_config"))
	h.server.Start(t, "unshare", "-m", "--propagation", "private", "sh", "-c", script)
	waitSSHD(t, h)
	return s
}

// The journal is the main path on Debian 12 (no rsyslog, no auth.log), so
// it is tested with the real thing: sshd logging to a real journald, moat
// reading it with journalctl. Bans over IPv4 and IPv6; an address in a
// user name is never banned; a restart of moat resumes at its cursor
// (nothing lost, nothing counted twice); moat keeps reading when journald
// restarts and when the journal rotates and is vacuumed.
func TestLoginGuardThroughRealJournald(t *testing.T) {
	h := newHost(t, "open = [\"tcp/22\"]")
	j := startJournald(t, h)
	s := startSSHDDevLog(t, h, filepath.Join(j.runDir, "dev-log"))
	h.writeConfig("open = [\"tcp/22\"]\n\n[login]\nsources = [\"journal\"]\nmax_retry = 3\nfind_time = \"10m\"\nban_time = \"1h\"\n")
	j.startMoat(t)
	if out := h.moat("status"); !strings.Contains(out, "journal") {
		t.Fatalf("the login guard does not follow the journal:\n%s", out)
	}
	addr := func(i int) netip.Addr { return h.link.Host4(i) }
	for _, i := range []int{3, 4, 5, 6} {
		h.client.AddAddr(t, h.link.BIf, netip.PrefixFrom(addr(i), 24))
	}
	fail := func(src netip.Addr, n int, user string) {
		t.Helper()
		for range n {
			if h.sshTry(t, s, src, user, false) {
				t.Fatalf("a wrong password from %s logged in", src)
			}
		}
	}
	events := func() uint64 { return loginStatus(t, h).Events }
	// settled waits until moat has counted everything sshd logged: the
	// count holds still for a second.
	settled := func() uint64 {
		t.Helper()
		last := events()
		for range 20 {
			time.Sleep(time.Second)
			n := events()
			if n == last {
				return n
			}
			last = n
		}
		t.Fatal("moat's count of login events never settled")
		return 0
	}
	banned := func(a netip.Addr) bool { return hasBan(h.bans(t), a.String(), "login") }

	// IPv4 and IPv6 through the journal; user names carrying an address
	// ban the real source only.
	victim := h.link.Host4(99)
	fail(h.link.B4, 1, "x from "+victim.String()+" port 22 ssh2")
	fail(h.link.B4, 1, victim.String())
	fail(h.link.B4, 1, "root")
	fail(h.link.B6, 3, "root")
	for _, a := range []netip.Addr{h.link.B4, h.link.B6} {
		netnstest.Eventually(t, 10*time.Second, "a ban of "+a.String()+" from the journal", func() bool { return banned(a) })
	}
	if banned(victim) {
		t.Fatalf("an address in a user name (%s) was banned", victim)
	}
	base := settled()

	// A restart resumes at the cursor: A (two failures before, one while
	// moat is down) must be banned, and moat must read only that one
	// failure's entries after the restart, not the old ones again.
	a, b := addr(3), addr(4)
	fail(a, 2, "root")
	fail(b, 2, "root")
	perFailure := (settled() - base) / 4
	if perFailure == 0 {
		t.Fatal("moat counted nothing of four failures")
	}
	if err := h.proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := h.proc.Wait(10 * time.Second); err != nil {
		t.Logf("moat stopped: %v", err)
	}
	fail(a, 1, "root")
	j.startMoat(t)
	netnstest.Eventually(t, 10*time.Second, "the failure logged while moat was down to complete a ban", func() bool { return banned(a) })
	if n := settled(); n != perFailure {
		t.Fatalf("after the restart moat counted %d login events, want %d (one failure's): old journal entries read again, or lost", n, perFailure)
	}
	if banned(b) {
		t.Fatal("after a restart moat counted old journal entries again")
	}

	// journald restarts; then the journal rotates and archived files are
	// vacuumed: moat goes on reading.
	j.restart(t)
	c := addr(5)
	fail(c, 3, "root")
	netnstest.Eventually(t, 15*time.Second, "a ban after journald restarted", func() bool { return banned(c) })
	for _, args := range [][]string{{"--rotate"}, {"--vacuum-size=1"}} {
		if out, err := j.ctl(args...); err != nil {
			t.Fatalf("journalctl %s: %v\n%s", args[0], err, out)
		}
	}
	d := addr(6)
	fail(d, 3, "root")
	netnstest.Eventually(t, 15*time.Second, "a ban after the journal rotated", func() bool { return banned(d) })
	if j.started != 2 {
		t.Fatalf("journald started %d times", j.started)
	}
}

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/daemon"
	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/netnstest"
	"github.com/moat-fw/moat/internal/nflog"
)

// rsyslog is a real rsyslogd writing auth and authpriv lines, received on
// its own socket (the tests' /dev/log), to a file in the traditional
// format: the syslog-fed auth.log of a host without journald.
type rsyslog struct {
	sock string // the socket anyone may write to, as /dev/log
	log  string // the auth.log
}

func startRsyslog(t *testing.T, h *host) *rsyslog {
	t.Helper()
	netnstest.RequireCommands(t, "rsyslogd", "logger", "setpriv", "unshare")
	// Not under t.TempDir: user nobody must reach the socket.
	dir, err := os.MkdirTemp("", "moat-rsyslog-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := &rsyslog{sock: filepath.Join(dir, "devlog"), log: filepath.Join(dir, "auth.log")}
	conf := filepath.Join(dir, "rsyslog.conf")
	text := fmt.Sprintf(`global(workDirectory=%q)
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket=%q CreatePath="on" RateLimit.Interval="0")
auth,authpriv.* action(type="omfile" file=%q template="RSYSLOG_TraditionalFileFormat")
`, dir, r.sock, r.log)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	h.server.Start(t, "rsyslogd", "-n", "-i", filepath.Join(dir, "rsyslogd.pid"), "-f", conf)
	netnstest.Eventually(t, 5*time.Second, "rsyslogd's socket", func() bool {
		_, err := os.Stat(r.sock)
		return err == nil
	})
	if err := os.Chmod(r.sock, 0o666); err != nil {
		t.Fatal(err)
	}
	// A first line creates the file and shows the path works.
	r.write(t, "moat-test", "rsyslog is up")
	netnstest.Eventually(t, 5*time.Second, "rsyslogd to write its file", func() bool {
		b, _ := os.ReadFile(r.log)
		return strings.Contains(string(b), "rsyslog is up")
	})
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(r.log)
			t.Logf("rsyslog's auth.log:\n%s", b)
		}
	})
	return r
}

// write logs msg under tag as user nobody: what any local user can do.
func (r *rsyslog) write(t *testing.T, tag, msg string) {
	t.Helper()
	out, err := exec.Command("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
		"logger", "-u", r.sock, "-p", "auth.info", "-t", tag, msg).CombinedOutput()
	if err != nil {
		t.Fatalf("logger as nobody: %v\n%s", err, out)
	}
}

// startSSHDSyslog runs the real sshd logging through syslog(3) to r: in
// its own mount namespace, on a private /dev whose log is r's socket.
func startSSHDSyslog(t *testing.T, h *host, r *rsyslog) *sshServer {
	t.Helper()
	s := startSSHDDevLog(t, h, r.sock)
	s.log = r.log
	return s
}

func loginStatus(t *testing.T, h *host) *daemon.LoginStatus {
	t.Helper()
	var st daemon.Status
	if err := json.Unmarshal([]byte(h.moat("status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Login == nil {
		t.Fatal("status has no login part")
	}
	return st.Login
}

// The review's M2 forgeries, through a real rsyslogd: a local user (nobody)
// writes sshd lines with logger. None may ban an address or make one
// immune; real failures through the same file still ban.
func TestLoginGuardRefusesForgedSyslogLines(t *testing.T) {
	h := newHost(t, "open = [\"tcp/22\"]")
	r := startRsyslog(t, h)
	s := startSSHDSyslog(t, h, r)
	h.writeConfig(fmt.Sprintf("open = [\"tcp/22\"]\n\n[login]\nsources = [%q]\nmax_retry = 3\nfind_time = \"1m\"\nban_time = \"1h\"\n", r.log))
	holder := h.link.Host4(3)
	h.client.AddAddr(t, h.link.BIf, netip.PrefixFrom(holder, 24))
	h.start()

	// (a) Six plain failure lines for an address nobody uses.
	victim := h.link.Host4(77)
	for i := range 6 {
		r.write(t, "sshd[4242]", fmt.Sprintf("Failed password for root from %s port %d ssh2", victim, 40000+i))
	}
	// (b) One "message repeated" line for another.
	victim2 := h.link.Host4(78)
	r.write(t, "sshd[4242]", fmt.Sprintf("message repeated 5 times: [ Failed password for root from %s port 40001 ssh2]", victim2))
	netnstest.Eventually(t, 10*time.Second, "moat to read the forged lines", func() bool {
		st := loginStatus(t, h)
		return st.Unverified+st.Events >= 7 // refused, or (before the fix) counted
	})
	for _, v := range []netip.Addr{victim, victim2} {
		if hasBan(h.bans(t), v.String(), "login") {
			t.Fatalf("forged lines banned %s", v)
		}
	}

	// (c) A real pre-auth connection held open from holder, and a forged
	// Accepted line for exactly that connection.
	var conn net.Conn
	if err := h.client.Do(func() error {
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(holder, 0)), Timeout: 2 * time.Second}
		var err error
		conn, err = d.Dial("tcp", netip.AddrPortFrom(h.link.A4, 22).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	banner := make([]byte, 64)
	if _, err := conn.Read(banner); err != nil { // sshd answered: the handshake is done
		t.Fatal(err)
	}
	port := netip.MustParseAddrPort(conn.LocalAddr().String()).Port()
	// (b, with evidence) holder did complete a handshake, so its lines
	// count; a forged "message repeated 5 times" still counts once.
	r.write(t, "sshd[4242]", fmt.Sprintf("message repeated 5 times: [ Failed password for root from %s port %d ssh2]", holder, port))
	netnstest.Eventually(t, 10*time.Second, "moat to count the repeated line", func() bool {
		return loginStatus(t, h).Events >= 1
	})
	if hasBan(h.bans(t), holder.String(), "login") {
		t.Fatal("one repeated line banned an address (max_retry 3)")
	}
	r.write(t, "sshd[4243]", fmt.Sprintf("Accepted password for nobody from %s port %d ssh2", holder, port))
	netnstest.Eventually(t, 10*time.Second, "moat to read the forged Accepted line", func() bool {
		b, _ := os.ReadFile(r.log)
		return strings.Contains(string(b), "Accepted password for nobody from "+holder.String())
	})
	time.Sleep(4 * time.Second) // moat read it, and settled it (3 s at most)
	for i := range 3 {
		if h.sshTry(t, s, holder, "root", false) {
			t.Fatalf("a wrong password logged in (try %d)", i)
		}
	}
	netnstest.Eventually(t, 10*time.Second, "real failures from the holder of a forged session to ban it", func() bool {
		return hasBan(h.bans(t), holder.String(), "login")
	})

	// Positive control: real failed logins through the same rsyslog file.
	for i := range 3 {
		if h.sshTry(t, s, h.link.B4, "root", false) {
			t.Fatalf("a wrong password logged in (try %d)", i)
		}
	}
	netnstest.Eventually(t, 10*time.Second, "real failures through rsyslog to ban", func() bool {
		return hasBan(h.bans(t), h.link.B4.String(), "login")
	})
	b, _ := os.ReadFile(r.log)
	if !strings.Contains(string(b), "Failed password for root from "+h.link.B4.String()) {
		t.Fatalf("sshd's own lines did not go through rsyslog:\n%s", b)
	}
	if !strings.Contains(h.proc.Output(), "is a syslog file: any local user can write lines into it") {
		t.Fatal("no warning that the source is a syslog file")
	}
}

// The sshpeer report of a connection reaches user space before sshd's
// first log line about it: the handshake's last ACK precedes any auth
// exchange. It also proves the rule is in the ruleset: without it no
// report comes.
func TestSSHPeerReportPrecedesLogLine(t *testing.T) {
	h := newHost(t, "open = [\"tcp/22\"]")
	s := startSSHD(t, h, "LogLevel VERBOSE")
	const group = 7
	fw := config.Firewall{Open: []config.PortSpec{{Proto: config.TCP, SSH: true}}, ClosedResponse: "drop",
		LogGroup: group, LogRate: 20, LogBurst: 50, Forward: "untouched"}
	a := firewall.NewApplier(nftables.WithNetNSFd(h.server.Fd()))
	if err := a.Apply(firewall.Build(fw, []uint16{22}), nil, nil); err != nil {
		t.Fatal(err)
	}
	c, err := nflog.Open(group, nflog.WithNetNS(h.server.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var reports []time.Time
	var lines, first []time.Time
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.Receive(ctx, func(m *nflog.Message) {
			if string(m.Prefix) == firewall.SSHPeerPrefix {
				// The kernel's receive time of the ACK: from then on the
				// report waits in the socket for whoever reads it. When this
				// goroutine gets a CPU is the test's own scheduling (on a
				// loaded machine it read the report after the line once).
				at := m.Timestamp
				if at.IsZero() {
					at = time.Now()
				}
				mu.Lock()
				reports = append(reports, at)
				mu.Unlock()
			}
		})
	}()
	defer func() { cancel(); c.Close(); <-done }()
	s.mu.Lock()
	s.onLine = func(line string, at time.Time) {
		// At VERBOSE, "Connection from" is the first line sshd writes
		// about a connection, right after accept(): the closest race.
		if strings.Contains(line, "Connection from "+h.link.B4.String()) {
			mu.Lock()
			first = append(first, at)
			mu.Unlock()
		}
		if strings.Contains(line, "Failed password for root from "+h.link.B4.String()) {
			mu.Lock()
			lines = append(lines, at)
			mu.Unlock()
		}
	}
	s.mu.Unlock()
	const n = 5
	var gaps, firsts []time.Duration
	for i := range n {
		// The set remembers the peer: forget it so each try is reported.
		time.Sleep(200 * time.Millisecond) // the last try's packets are done
		h.server.Run(t, "nft", "flush", "set", "inet", "moat", firewall.SetSSHPeer4)
		mu.Lock()
		reports, lines, first = nil, nil, nil
		mu.Unlock()
		h.sshTry(t, s, h.link.B4, "root", false)
		netnstest.Eventually(t, 5*time.Second, "the log line", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(lines) > 0
		})
		// The report may still wait in the socket for the reader goroutine
		// to get a CPU (CI saw none read yet once): its order against the
		// line is the kernel timestamps', below, not the reading's.
		netnstest.Eventually(t, 2*time.Second, "the sshpeer report to be read", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(reports) > 0
		})
		time.Sleep(50 * time.Millisecond) // a second report, if the rule sent one
		mu.Lock()
		if len(reports) != 1 {
			mu.Unlock()
			t.Fatalf("try %d: %d sshpeer reports, want 1 (one per peer while it is in the set)", i, len(reports))
		}
		gap, gapFirst := lines[0].Sub(reports[0]), time.Duration(0)
		if len(first) > 0 {
			gapFirst = first[0].Sub(reports[0])
		}
		mu.Unlock()
		if gap <= 0 || gapFirst <= 0 {
			t.Fatalf("try %d: sshd's lines came before the sshpeer report (Failed password %v, Connection from %v after it)", i, gap, gapFirst)
		}
		gaps, firsts = append(gaps, gap), append(firsts, gapFirst)
	}
	slices.Sort(gaps)
	slices.Sort(firsts)
	t.Logf("sshpeer report ahead of sshd's first line (Connection from) by: min %v, median %v, max %v", firsts[0], firsts[n/2], firsts[n-1])
	t.Logf("sshpeer report ahead of sshd's Failed password line by: min %v, median %v, max %v", gaps[0], gaps[n/2], gaps[n-1])
}

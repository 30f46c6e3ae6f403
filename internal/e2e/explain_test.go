package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/netnstest"
	"github.com/moat-fw/moat/internal/nflog"
)

// The daemon and moat explain run the same login guard (package login), so
// the addresses explain says it would ban are the ones a running daemon
// bans from the same lines: every sshd log in internal/authlog/testdata,
// three "Failed password" lines each followed by its own "Connection
// closed" (one attempt each, which explain once counted twice), a
// [[login.rule]] with its own max_retry, [login] ignore, and a jail whose
// failures and addresses are on different lines of one connection id
// (fail2ban's <F-MLFID>), which the daemon bans from.
func TestExplainAgreesWithTheDaemon(t *testing.T) {
	const group = 7
	h := newHost(t, fmt.Sprintf("open = [\"tcp/%d\"]\nlog_group = %d", openPort, group))
	authPath := filepath.Join(h.dir, "auth.log")
	appPath := filepath.Join(h.dir, "myapp.log")
	mailPath := filepath.Join(h.dir, "mailer.log")
	for _, p := range []string{authPath, appPath, mailPath} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The lines' addresses never made a TCP handshake with this host's
	// sshd: the file source counts them only when there is no packet
	// intake to vouch for them, so a squatter takes the NFLOG group first.
	squatter, err := nflog.Open(group, nflog.WithNetNS(h.server.Fd()))
	if err != nil {
		t.Fatalf("taking NFLOG group %d in the namespace first: %v", group, err)
	}
	defer squatter.Close()
	// find_time spans the test logs' own timestamps (twenty years, for logs
	// collected over OpenSSH's history), which explain honours and the
	// daemon, reading them all now, does not.
	h.writeConfig(fmt.Sprintf(`open = ["tcp/%d"]
log_group = %d

[login]
sources = [%q]
mode = "aggressive"
max_retry = 4
find_time = "175200h"
ban_time = "1h"
ignore = ["203.0.113.16/32"]

[[login.rule]]
name = "myapp"
source = %q
pattern = '^\w{3} +\d+ [\d:]+ \S+ myapp\[\d+\]: auth failure for \S+ from <HOST>$'
max_retry = 2

[[login.rule]]
name = "mailer"
source = %[5]q
kind = "note"
pattern = '^\w{3} +\d+ [\d:]+ \S+ mailer\[(?P<id>\d+)\]: connect from <HOST>$'
max_retry = 2

[[login.rule]]
name = "mailer"
source = %[5]q
pattern = '^\w{3} +\d+ [\d:]+ \S+ mailer\[(?P<id>\d+)\]: auth failed for .*$'
max_retry = 2

[[login.rule]]
name = "mailer"
source = %[5]q
kind = "note"
forget = true
pattern = '^\w{3} +\d+ [\d:]+ \S+ mailer\[(?P<id>\d+)\]: disconnect$'
max_retry = 2
`, openPort, group, authPath, appPath, mailPath))
	h.start()
	netnstest.Eventually(t, 5*time.Second, "status to report no intake", func() bool {
		st := h.status(t)
		return st.Intake != nil && st.Intake.Error != ""
	})

	var auth, app strings.Builder
	logs, err := filepath.Glob("../authlog/testdata/*")
	if err != nil || len(logs) == 0 {
		t.Fatalf("no test logs: %v", err)
	}
	for _, p := range logs {
		if strings.HasSuffix(p, ".golden") {
			continue // what the parser makes of a log, not a log
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if l := sc.Text(); l != "" && !strings.HasPrefix(l, "#") {
				auth.WriteString(l + "\n")
			}
		}
		f.Close()
	}
	// fail2ban's own sshd sample, a decade of OpenSSH releases and
	// platforms, when fail2ban is installed (CI installs it; its files
	// are read here, never copied into the repository).
	if f, err := os.Open("/usr/lib/python3/dist-packages/fail2ban/tests/files/logs/sshd"); err == nil {
		sc := bufio.NewScanner(f)
		n := 0
		for sc.Scan() {
			if l := sc.Text(); l != "" && !strings.HasPrefix(l, "#") {
				auth.WriteString(l + "\n")
				n++
			}
		}
		f.Close()
		t.Logf("with %d lines of fail2ban's sshd sample", n)
	} else {
		t.Logf("without fail2ban's sshd sample: %v", err)
	}
	stamp := time.Now().Format(time.Stamp)
	for i := range 3 {
		fmt.Fprintf(&auth, "%s h sshd[9%d]: Failed password for root from 198.51.100.77 port %d ssh2\n", stamp, i, 50000+i)
		fmt.Fprintf(&auth, "%s h sshd[9%d]: Connection closed by authenticating user root 198.51.100.77 port %d [preauth]\n", stamp, i, 50000+i)
	}
	// Failures sshd spreads over lines of one PID, which only the
	// joiner (one per followed file, one in explain) attributes.
	for i := range 4 {
		pid := 7100 + 10*i
		fmt.Fprintf(&auth, "%s h sshd[%d]: Connection from 198.51.100.62 port %d on 10.210.0.1 port 22\n", stamp, pid, 52000+i)
		fmt.Fprintf(&auth, "%s h sshd[%d]: Disconnecting: Too many authentication failures for admin [preauth]\n", stamp, pid)
		fmt.Fprintf(&auth, "%s h sshd[%d]: Disconnecting: Too many authentication failures for root [preauth]\n", stamp, pid+1)
		fmt.Fprintf(&auth, "%s h sshd[%d]: Connection closed by 198.51.100.61 [preauth]\n", stamp, pid+1)
		fmt.Fprintf(&auth, "%s h sshd[%d]: error: kex_exchange_identification: Connection closed by remote host\n", stamp, pid+2)
		fmt.Fprintf(&auth, "%s h sshd[%d]: Connection closed by 198.51.100.65 port %d\n", stamp, pid+2, 53000+i)
		// A reused PID: .63's connection ended, the failure is .64's.
		fmt.Fprintf(&auth, "%s h sshd[%d]: Connection from 198.51.100.63 port %d on 10.210.0.1 port 22\n", stamp, pid+3, 54000+i)
		fmt.Fprintf(&auth, "%s h sshd[%d]: Connection closed by 198.51.100.63 port %d\n", stamp, pid+3, 54000+i)
		fmt.Fprintf(&auth, "%s h sshd[%d]: Disconnecting: Too many authentication failures for root [preauth]\n", stamp, pid+3)
		fmt.Fprintf(&auth, "%s h sshd[%d]: Connection closed by 198.51.100.64 port %d\n", stamp, pid+3, 55000+i)
		// A host name (UseDNS yes): use_dns "no" counts it nowhere.
		fmt.Fprintf(&auth, "%s h sshd[%d]: User root from one.example not allowed because not listed in AllowUsers\n", stamp, pid+4)
	}
	fmt.Fprintf(&app, "%s web myapp[7]: auth failure for bob from 198.51.100.80\n", stamp)
	fmt.Fprintf(&app, "%s web myapp[7]: auth failure for x from 198.51.100.81 from 198.51.100.82\n", stamp)
	fmt.Fprintf(&app, "%s web myapp[7]: auth failure for bob from 198.51.100.80\n", stamp)
	// Two-line failures: the address on the connection's first line, the
	// failure on a later one (or before it: it waits for the address); a
	// user name that writes another connection's note; a forgotten id.
	var mail strings.Builder
	for _, l := range []string{
		"mailer[100]: connect from 198.51.100.70",
		"mailer[100]: auth failed for bob",
		"mailer[101]: auth failed for bob",
		"mailer[101]: connect from 198.51.100.70",
		"mailer[102]: connect from 198.51.100.72",
		"mailer[102]: auth failed for x mailer[103]: connect from 198.51.100.71",
		"mailer[103]: auth failed for bob",
		"mailer[102]: disconnect",
		"mailer[102]: auth failed for bob",
		"mailer[200]: connect from 198.51.100.97",
		"mailer[200]: auth failed for bob",
		"mailer[201]: connect from 198.51.100.97",
		"mailer[201]: auth failed for bob",
	} {
		fmt.Fprintf(&mail, "%s mx %s\n", stamp, l)
	}
	// A sentinel at the end of each file: once it is banned, the daemon
	// has read every line before it.
	for i := range 4 {
		fmt.Fprintf(&auth, "%s h sshd[99]: Failed password for root from 198.51.100.99 port %d ssh2\n", stamp, 51000+i)
	}
	for range 2 {
		fmt.Fprintf(&app, "%s web myapp[7]: auth failure for bob from 198.51.100.98\n", stamp)
	}
	for p, text := range map[string]string{authPath: auth.String(), appPath: app.String(), mailPath: mail.String()} {
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	netnstest.Eventually(t, 10*time.Second, "the sentinels' bans", func() bool {
		l := h.bans(t)
		return hasBan(l, "198.51.100.99", "login") && hasBan(l, "198.51.100.98", "login") && hasBan(l, "198.51.100.97", "login")
	})
	var daemonBans []string
	for _, e := range h.bans(t) {
		if e.Origin == "login" {
			daemonBans = append(daemonBans, e.Addr)
		}
	}

	var explainBans []string
	for _, run := range [][2]string{{"sshd", authPath}, {"myapp", appPath}, {"mailer", mailPath}} {
		out, err := h.moatErr("explain", "--json", "--rule", run[0], run[1])
		if err != nil {
			t.Fatalf("explain --rule %s: %v\n%s", run[0], err, out)
		}
		for line := range strings.Lines(out) {
			var j struct {
				IP, Rule, Prefix string
				WouldBan         bool `json:"would_ban"`
			}
			if err := json.Unmarshal([]byte(line), &j); err != nil {
				t.Fatalf("explain --json printed %q: %v", line, err)
			}
			if j.Rule != run[0] {
				t.Fatalf("explain --rule %s printed a line of rule %q", run[0], j.Rule)
			}
			if j.WouldBan {
				explainBans = append(explainBans, j.IP)
			}
			if j.Prefix != "" {
				explainBans = append(explainBans, j.Prefix)
			}
		}
	}
	slices.Sort(daemonBans)
	slices.Sort(explainBans)
	explainBans = slices.Compact(explainBans)
	t.Logf("banned by both: %v", daemonBans)
	if !slices.Equal(daemonBans, explainBans) {
		t.Fatalf("the daemon banned %v, explain would ban %v", daemonBans, explainBans)
	}
	for _, want := range []string{"203.0.113.11", "198.51.100.80", "198.51.100.61", "198.51.100.62", "198.51.100.64", "198.51.100.65", "198.51.100.70"} {
		if !slices.Contains(daemonBans, want) {
			t.Errorf("%s was not banned: the comparison proves little", want)
		}
	}
	for _, never := range []string{"203.0.113.16", "198.51.100.77", "198.51.100.82", "198.51.100.63", "198.51.100.71", "198.51.100.72"} {
		if slices.Contains(daemonBans, never) {
			t.Errorf("%s was banned (in [login] ignore, three one-attempt connections, forged in the user field, an earlier client of a reused PID, or one failure before its id was forgotten)", never)
		}
	}
	if st := h.status(t); st.Login == nil || st.Login.Names.NotResolved < 4 {
		t.Errorf("status does not count our 4 host names (and the test logs') as not resolved: %+v", st.Login)
	}
}

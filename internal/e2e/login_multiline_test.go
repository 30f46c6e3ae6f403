package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/netnstest"
)

// A service that writes a connection's address on one line and its
// failures on later (or earlier) lines of the same connection id, as
// sendmail and sshd do (fail2ban's <F-MLFID>): the daemon follows its log
// file, attributes each failure to the address its id recorded, and the
// kernel then drops that client. A user name that imitates the service's
// own note for another connection records nothing: the client's other
// address stays reachable.
func TestLoginRuleTwoLineBan(t *testing.T) {
	h := newHost(t, fmt.Sprintf("open = [\"tcp/%d\"]", openPort))
	logPath := filepath.Join(h.dir, "mailer.log")
	if err := os.WriteFile(logPath, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	h.writeConfig(fmt.Sprintf(`open = ["tcp/%d"]

[login]
sources = []

[[login.rule]]
name = "mailer"
source = %[2]q
kind = "note"
pattern = '^\w{3} +\d+ [\d:]+ \S+ mailer\[(?P<id>\d+)\]: connect from <HOST>$'
max_retry = 3
ports = ["tcp/%[1]d"]

[[login.rule]]
name = "mailer"
source = %[2]q
pattern = '^\w{3} +\d+ [\d:]+ \S+ mailer\[(?P<id>\d+)\]: auth failed for .*$'
max_retry = 3
ports = ["tcp/%[1]d"]
`, openPort, logPath))
	h.start()
	h.expect(h.link.B4, openPort, netnstest.Connected)
	f, err := os.OpenFile(logPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	stamp := time.Now().Format(time.Stamp)
	for _, l := range []string{
		// The forged note, in a failure of a connection with no address.
		fmt.Sprintf("mailer[40]: auth failed for x mailer[41]: connect from %s", h.link.B6),
		"mailer[41]: auth failed for bob",
		"mailer[41]: auth failed for bob",
		"mailer[41]: auth failed for bob",
		// The real client: three failures over two connections, one of
		// them before its address.
		fmt.Sprintf("mailer[50]: connect from %s", h.link.B4),
		"mailer[50]: auth failed for bob",
		"mailer[51]: auth failed for bob",
		fmt.Sprintf("mailer[51]: connect from %s", h.link.B4),
		"mailer[51]: auth failed for bob",
	} {
		fmt.Fprintf(f, "%s mx %s\n", stamp, l)
	}
	netnstest.Eventually(t, 5*time.Second, "the client's ban", func() bool {
		return hasBan(h.bans(t), h.link.B4.String(), "login")
	})
	h.expect(h.link.B4, openPort, netnstest.TimedOut)
	h.expect(h.link.B6, openPort, netnstest.Connected)
	if hasBan(h.bans(t), h.link.B6.String(), "login") {
		t.Fatal("banned the address a user name wrote")
	}
}

package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"

	"github.com/moat-fw/moat/internal/netnstest"
)

// writeMMDB writes a MaxMind-format database (mmdbwriter, MaxMind's own
// writer) covering the test networks.
func writeMMDB(t *testing.T, path, dbType string, rec mmdbtype.Map) {
	t.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: dbType, RecordSize: 24, IncludeReservedNetworks: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, cidr := range []string{"10.210.0.0/16", "fd00:210::/32"} {
		_, n, _ := net.ParseCIDR(cidr)
		if err := tree.Insert(n, rec); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := tree.WriteTo(f); err != nil {
		t.Fatal(err)
	}
}

// A real nmap SYN scan, end to end: the report names the scanner (its SYN
// fingerprint), its country and network from local databases, its ban;
// the syslog alert arrives on the socket; a reload without [alert] stops
// the alerts.
func TestReportAndAlertsOfARealScan(t *testing.T) {
	netnstest.RequireCommands(t, "nmap")
	dir := t.TempDir()
	country, asn, sock := filepath.Join(dir, "country.mmdb"), filepath.Join(dir, "asn.mmdb"), filepath.Join(dir, "log")
	writeMMDB(t, country, "GeoLite2-Country", mmdbtype.Map{"country": mmdbtype.Map{"iso_code": mmdbtype.String("NL")}})
	writeMMDB(t, asn, "GeoLite2-ASN", mmdbtype.Map{"autonomous_system_number": mmdbtype.Uint32(64500),
		"autonomous_system_organization": mmdbtype.String("Example Net")})
	syslog, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer syslog.Close()

	base := fmt.Sprintf("open = [\"tcp/%d\"]\nlog_rate = 100000\nlog_burst = 100000\n\n[scan]\nblock_level = 3\n\n[report]\ngeoip = %q\nasn = %q\n",
		openPort, country, asn)
	h := newHost(t, base+fmt.Sprintf("\n[alert.syslog]\nsocket = %q\nformat = \"rfc5424\"\n", sock))
	h.start()
	h.nmap(t, "-sS", "-p", "1-1000", "-e", h.link.BIf, h.link.A4.String())
	netnstest.Eventually(t, 15*time.Second, "the SYN scanner to be banned", func() bool {
		return hasBan(h.bans(t), h.link.B4.String(), "scan")
	})

	// The syslog lines: the scan's levels, then the ban.
	_ = syslog.SetReadDeadline(time.Now().Add(15 * time.Second))
	var lines []string
	buf := make([]byte, 8192)
	for !strings.Contains(strings.Join(lines, "\n"), "banned "+h.link.B4.String()) {
		n, _, err := syslog.ReadFrom(buf)
		if err != nil {
			t.Fatalf("syslog: %v; lines so far:\n%s\n%s", err, strings.Join(lines, "\n"), h.proc.Output())
		}
		lines = append(lines, string(buf[:n]))
	}
	all := strings.Join(lines, "\n")
	if !strings.Contains(all, "scan from "+h.link.B4.String()+" (NL, AS64500 Example Net): danger level") ||
		!strings.Contains(all, `[moat@32473 kind="ban" addr="`+h.link.B4.String()+`" origin="scan"]`) {
		t.Errorf("syslog lines:\n%s", all)
	}

	st := h.status(t)
	if st.Report == nil || st.Alerts == nil {
		t.Fatalf("no report or alerts in status: %+v", st)
	}
	var found bool
	for _, a := range st.Report.Attackers {
		if a.Addr != h.link.B4 {
			continue
		}
		found = true
		if a.OS == nil || a.OS.Name != "nmap SYN scan" || a.Country != "NL" || a.ASN != 64500 || !a.Banned || a.BannedUntil == nil {
			t.Errorf("attacker %+v (os %+v)", a, a.OS)
		}
	}
	if !found {
		t.Fatalf("scanner not among the attackers: %+v", st.Report.Attackers)
	}
	if !st.Report.Lookups.GeoIP || !st.Report.Lookups.ASN || st.Report.BlockedTotal != 1 || st.Report.Packets.TCP == 0 {
		t.Errorf("report %+v", st.Report)
	}
	if len(st.Alerts.Destinations) != 1 || st.Alerts.Destinations[0].Sent < 2 {
		t.Errorf("alerts %+v", st.Alerts)
	}
	text := h.moat("status")
	for _, want := range []string{"top attackers", "nmap SYN scan", "NL AS64500 Example Net", "auto-blocked (scan bans in force): 1", "syslog " + sock + ": "} {
		if !strings.Contains(text, want) {
			t.Errorf("no %q in moat status:\n%s", want, text)
		}
	}
	if out := h.moat("status", h.link.B4.String()); !strings.Contains(out, "os guess:  nmap SYN scan") || !strings.Contains(out, "known as:  NL AS64500 Example Net") {
		t.Errorf("moat status ADDR:\n%s", out)
	}

	// A reload without [alert] stops the alerts.
	h.writeConfig(base)
	h.moat("firewall", "apply")
	if st := h.status(t); st.Alerts != nil {
		t.Errorf("alerts still on after the reload: %+v", st.Alerts)
	}
}

// The daemon's webhook reaches a server on the client's side of the link
// after two induced 500s, with the bearer token from its file; the token
// shows in neither status nor the daemon's log.
func TestWebhookFromTheDaemon(t *testing.T) {
	h := newHost(t, fmt.Sprintf("open = [\"tcp/%d\"]", openPort))
	const token = "e2e-token-5b1f-never-printed"
	tokenFile := filepath.Join(h.dir, "webhook.token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	if err := h.client.Do(func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(h.link.B4, 0).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	got := make(chan string, 4)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			http.Error(w, "induced failure", http.StatusInternalServerError)
			return
		}
		b, _ := io.ReadAll(r.Body)
		got <- r.Header.Get("Authorization") + "\n" + string(b)
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()

	h.writeConfig(fmt.Sprintf("open = [\"tcp/%d\"]\n\n[[alert.webhook]]\nurl = \"http://%s/hooks/secret-path\"\ntoken_file = %q\ntimeout = \"2s\"\nretries = 3\n",
		openPort, ln.Addr(), tokenFile))
	h.start()
	victim := h.link.Host4(77)
	h.moat("ban", "add", victim.String(), "--reason", "e2e webhook")
	var body string
	select {
	case body = <-got:
	case <-time.After(30 * time.Second):
		t.Fatalf("no webhook after %d calls\n%s", calls.Load(), h.proc.Output())
	}
	if !strings.HasPrefix(body, "Bearer "+token+"\n") || !strings.Contains(body, `"kind":"ban"`) || !strings.Contains(body, `"addr":"`+victim.String()+`"`) ||
		!strings.Contains(body, `"reason":"e2e webhook"`) {
		t.Errorf("webhook:\n%s", body)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("%d calls, want 3", n)
	}
	netnstest.Eventually(t, 10*time.Second, "the alert counted as sent", func() bool {
		st := h.status(t)
		return st.Alerts != nil && len(st.Alerts.Destinations) == 1 && st.Alerts.Destinations[0].Sent == 1 && st.Alerts.Destinations[0].Retried == 2
	})
	out := h.moat("status") + h.moat("status", "--json") + h.proc.Output()
	if strings.Contains(out, token) || strings.Contains(out, "secret-path") {
		t.Errorf("the token or the webhook's path leaked into status or the log")
	}
}

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"net/netip"

	"github.com/moat-fw/moat/internal/daemon"
	"github.com/moat-fw/moat/internal/netnstest"
)

// Ports of the services in the jails test: the jails' own (Debian's
// jail.conf names http,https for nginx-http-auth and imap among dovecot's).
const (
	httpPort = 80
	imapPort = 143
)

// fail2banJails copies Debian's /etc/fail2ban (jail.conf, filter.d, ...)
// and enables the nginx-http-auth and dovecot jails on the given logs, as
// an administrator's jail.d file would; the rest is fail2ban's own.
func fail2banJails(t *testing.T, nginxLog, dovecotLog string) string {
	t.Helper()
	if _, err := os.Stat("/etc/fail2ban/jail.conf"); err != nil {
		t.Skip("fail2ban not installed (apt-get install fail2ban): its jail.conf and filters are imported")
	}
	dir := filepath.Join(t.TempDir(), "fail2ban")
	if out, err := exec.Command("cp", "-r", "/etc/fail2ban", dir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	local := fmt.Sprintf("[nginx-http-auth]\nenabled = true\nlogpath = %s\nmaxretry = 3\n\n[dovecot]\nenabled = true\nlogpath = %s\nmaxretry = 3\n", nginxLog, dovecotLog)
	if err := os.WriteFile(filepath.Join(dir, "jail.d", "zz-moat-test.local"), []byte(local), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startNginx runs a real nginx in the server namespace: basic auth on /,
// one user (bob), its error log where the nginx-http-auth jail reads it.
func startNginx(t *testing.T, h *host) (errorLog string) {
	t.Helper()
	dir := filepath.Join(h.dir, "nginx")
	if err := os.MkdirAll(filepath.Join(dir, "www"), 0o755); err != nil {
		t.Fatal(err)
	}
	errorLog = filepath.Join(dir, "error.log")
	conf := fmt.Sprintf(`user root;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[2]s;
events { worker_connections 64; }
http {
	access_log off;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	server {
		listen %[3]s:%[5]d;
		listen [%[4]s]:%[5]d;
		server_name localhost;
		location / { auth_basic "moat"; auth_basic_user_file %[1]s/htpasswd; root %[1]s/www; }
	}
}
`, dir, errorLog, h.link.A4, h.link.A6, httpPort)
	for name, text := range map[string]string{"nginx.conf": conf, "htpasswd": "bob:{PLAIN}secret\n", "www/index.html": "in\n", "error.log": ""} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := h.server.Start(t, "nginx", "-c", filepath.Join(dir, "nginx.conf"), "-g", "daemon off;")
	netnstest.Eventually(t, 5*time.Second, "nginx to listen", func() bool {
		if p.Exited() {
			t.Fatalf("nginx exited:\n%s", p.Output())
		}
		return h.client.DialTCP(t, h.link.B4, netip.AddrPortFrom(h.link.A4, httpPort), time.Second) == netnstest.Connected
	})
	return errorLog
}

// startDovecot runs a real dovecot (IMAP, passwords through PAM, as
// Debian sets it up) in the server namespace, logging where the dovecot
// jail reads.
func startDovecot(t *testing.T, h *host) (logPath, confPath string) {
	t.Helper()
	// dovecot's login processes run as dovenull and chroot into base_dir:
	// it must be reachable, unlike the tests' 0700 temporary directories.
	dir, err := os.MkdirTemp("", "moat-t-dovecot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	logPath = filepath.Join(dir, "dovecot.log")
	conf := fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[2]s
protocols = imap
listen = %[3]s
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_verbose = yes
passdb {
  driver = pam
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=%[1]s/home/%%u
}
`, dir, logPath, h.link.A4)
	confPath = filepath.Join(dir, "dovecot.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(logPath, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p := h.server.Start(t, "dovecot", "-F", "-c", confPath)
	netnstest.Eventually(t, 10*time.Second, "dovecot to listen", func() bool {
		if p.Exited() {
			t.Fatalf("dovecot exited:\n%s", p.Output())
		}
		return h.client.DialTCP(t, h.link.B4, netip.AddrPortFrom(h.link.A4, imapPort), time.Second) == netnstest.Connected
	})
	return logPath, confPath
}

// banOf returns addr's ban in the list.
func banOf(list []daemon.EntryJSON, addr string) (daemon.EntryJSON, bool) {
	for _, e := range list {
		if e.Addr == addr {
			return e, true
		}
	}
	return daemon.EntryJSON{}, false
}

// A real nginx (basic auth) and a real dovecot (IMAP, PAM) behind moat,
// their jails imported with `moat import fail2ban` from Debian's jail.conf
// and filter.d: three wrong passwords to nginx ban the attacker on the
// jail's ports (http, https) only, so it still reaches IMAP and the other
// open port; three wrong IMAP logins from another address ban that one on
// dovecot's ports only, so it still reaches nginx. A third address
// reaches everything.
func TestFail2banJailsBanOnTheirPorts(t *testing.T) {
	netnstest.RequireCommands(t, "nginx", "dovecot", "curl")
	h := newHost(t, "")
	nginxLog := startNginx(t, h)
	dovecotLog, dovecotConf := startDovecot(t, h)
	rules := filepath.Join(h.dir, "jails.toml")
	report := h.moat("import", "fail2ban", "--dovecot-config", dovecotConf, "-o", rules, fail2banJails(t, nginxLog, dovecotLog))
	// The running dovecot keeps its default log format and user names:
	// doveconf says so, and dovecot's gated failregexes import.
	if !strings.Contains(report, "filter dovecot): 4 of 4 failregexes imported") {
		t.Fatalf("the import did not take dovecot's four failregexes:\n%s", report)
	}
	imported := readFile(t, rules)
	for _, want := range []string{`name = "nginx-http-auth"`, `ports = ["tcp/80", "tcp/443"]`, `name = "dovecot"`, `"tcp/143"`, `Disconnected`} {
		if !strings.Contains(imported, want) {
			t.Fatalf("the import lacks %s:\n%s", want, imported)
		}
	}
	h.writeConfig(fmt.Sprintf("open = [\"tcp/%d\", \"tcp/%d\", \"tcp/%d\"]\n\n[login]\nsources = []\n\n%s", httpPort, imapPort, openPort, imported))
	h.start()

	web, mail, bystander, forger := h.link.B4, h.link.Host4(3), h.link.Host4(4), h.link.Host4(5)
	for _, a := range []netip.Addr{mail, bystander, forger} {
		h.client.AddAddr(t, h.link.BIf, netip.PrefixFrom(a, 24))
	}
	curl := func(src netip.Addr, url, user string) string {
		out, _ := h.client.RunErr("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
			"--interface", src.String(), "-u", user, url)
		return out
	}
	httpURL := fmt.Sprintf("http://%s:%d/", h.link.A4, httpPort)
	imapURL := fmt.Sprintf("imap://%s:%d/", h.link.A4, imapPort)
	if got := curl(bystander, httpURL, "bob:secret"); got != "200" {
		t.Fatalf("nginx with the right password: %q", got)
	}
	for range 3 {
		if got := curl(web, httpURL, "bob:wrong"); got != "401" {
			t.Fatalf("nginx with a wrong password: %q", got)
		}
	}
	// A client aims the imported disconnect failregex at the bystander:
	// its user name writes ", method=PLAIN, rip=BYSTANDER, ..." into
	// dovecot's "Disconnected (auth failed, ...): user=<NAME>" line.
	// Dovecot's ">, method=..., rip=FORGER" after the name keeps it from
	// counting (testdata/forged/dovecot.log in internal/fail2ban); the
	// lines come before the mail attacker's in the one followed file, so
	// they have been read when that ban is seen.
	forged := fmt.Sprintf("a>, method=PLAIN, rip=%s, lip=%s, session=<q", bystander, h.link.A4)
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() { curl(forger, imapURL, forged+":wrong") })
	}
	wg.Wait()
	if log := readFile(t, dovecotLog); !strings.Contains(log, "rip="+bystander.String()+", lip=") {
		t.Fatalf("dovecot did not write the forged name:\n%s", log)
	}
	// PAM delays each failure by about 2s: the three logins at once.
	for range 3 {
		wg.Go(func() { curl(mail, imapURL, "root:wrong") })
	}
	wg.Wait()

	var bans []daemon.EntryJSON
	netnstest.Eventually(t, 10*time.Second, "both attackers banned", func() bool {
		bans = h.bans(t)
		_, ok1 := banOf(bans, web.String())
		_, ok2 := banOf(bans, mail.String())
		return ok1 && ok2
	})
	if b, _ := banOf(bans, web.String()); b.Origin != "login" || !slices.Equal(b.Ports, []string{"tcp/80", "tcp/443"}) || !strings.Contains(b.Reason, "nginx-http-auth") {
		t.Fatalf("nginx attacker's ban: %+v", b)
	}
	if b, _ := banOf(bans, mail.String()); !slices.Contains(b.Ports, "tcp/143") || slices.Contains(b.Ports, "tcp/80") || !strings.Contains(b.Reason, "dovecot") {
		t.Fatalf("IMAP attacker's ban: %+v", b)
	}
	if _, ok := banOf(bans, bystander.String()); ok || len(bans) != 2 {
		t.Fatalf("bans %+v: want exactly the two attackers (not the bystander the forger aimed at)", bans)
	}
	dial := func(src netip.Addr, port uint16, want netnstest.Result) {
		t.Helper()
		timeout := patient
		if want == netnstest.TimedOut {
			timeout = quick
		}
		if got := h.client.DialTCP(t, src, netip.AddrPortFrom(h.link.A4, port), timeout); got != want {
			t.Fatalf("tcp from %s to port %d: %s, want %s", src, port, got, want)
		}
	}
	dial(web, httpPort, netnstest.TimedOut)
	dial(web, imapPort, netnstest.Connected)
	dial(web, openPort, netnstest.Connected)
	dial(mail, imapPort, netnstest.TimedOut)
	dial(mail, httpPort, netnstest.Connected)
	dial(mail, openPort, netnstest.Connected)
	dial(bystander, httpPort, netnstest.Connected)
	dial(bystander, imapPort, netnstest.Connected)
	if got := curl(mail, httpURL, "bob:secret"); got != "200" {
		t.Fatalf("the IMAP attacker on nginx: %q, want 200", got)
	}
	if out := h.moat("ban", "list"); !strings.Contains(out, web.String()+"  tcp/80,tcp/443") {
		t.Fatalf("ban list does not show the ports:\n%s", out)
	}

	// The reconcile loop puts back what the kernel lost.
	h.server.Run(t, "nft", "flush", "set", "inet", "moat", "portban4")
	h.eventually("the port bans re-added", web, httpPort, netnstest.TimedOut)
	dial(mail, imapPort, netnstest.TimedOut)

	// The bans hold across a restart (from the store into the new table).
	h.restart()
	dial(web, httpPort, netnstest.TimedOut)
	dial(web, imapPort, netnstest.Connected)
	dial(mail, imapPort, netnstest.TimedOut)
	// moat ban del lifts a port-limited ban.
	h.moat("ban", "del", web.String())
	dial(web, httpPort, netnstest.Connected)
}

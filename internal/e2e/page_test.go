package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/moat-fw/moat/internal/browsertest"
	"github.com/moat-fw/moat/internal/netnstest"
	"github.com/moat-fw/moat/internal/page"
)

// forward serves a loopback port of the test's namespace that connects
// to addr inside ns: the browser runs out here, the page in there.
func forward(t *testing.T, ns *netnstest.NS, addr string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	keep := func(c net.Conn) {
		mu.Lock()
		open = append(open, c)
		mu.Unlock()
	}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			keep(c)
			var up net.Conn
			if err := ns.Do(func() (err error) { up, err = net.DialTimeout("tcp", addr, 2*time.Second); return err }); err != nil {
				c.Close()
				continue
			}
			keep(up)
			wg.Go(func() { _, _ = io.Copy(up, c); up.Close() })
			wg.Go(func() { _, _ = io.Copy(c, up); c.Close() })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return "http://" + ln.Addr().String()
}

// The live page of a running daemon, in headless Chromium: it loads with
// the daemon's data, its feed shows the ban of a real nmap scan as it
// happens, it needs its token, and it listens only where [page] says.
func TestLivePageInChromium(t *testing.T) {
	netnstest.RequireCommands(t, "nmap", "ss")
	h := newHost(t, "")
	h.writeConfig(fmt.Sprintf("open = [\"tcp/%d\"]\n\n[login]\nenabled = false\n\n[page]\nlisten = \"127.0.0.1:9734\"\n", openPort))
	h.start()
	ctx := browsertest.Start(t)

	// moat page url prints the address with the token kept in state_dir.
	raw, _, _ := strings.Cut(h.moat("page", "url"), "\n") // the tunnel hint follows, on stderr
	u, err := url.Parse(raw)
	if err != nil || u.Host != "127.0.0.1:9734" || len(u.Query().Get("token")) < 40 {
		t.Fatalf("moat page url: %q", raw)
	}
	token := u.Query().Get("token")
	if fi, err := os.Stat(filepath.Join(h.dir, "state", page.TokenFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v, %v: want mode 0600", fi, err)
	}

	// It listens on the server's loopback and nowhere else.
	if out := h.server.Run(t, "ss", "-Htln", "sport = :9734"); strings.Count(strings.TrimSpace(out), "\n") != 0 || !strings.Contains(out, "127.0.0.1:9734") {
		t.Fatalf("sockets on port 9734:\n%s\nwant one, on 127.0.0.1", out)
	}
	if got := h.client.DialTCP(t, h.link.B4, netip.AddrPortFrom(h.link.A4, 9734), quick); got == netnstest.Connected {
		t.Fatal("the page answered on the server's network address")
	}

	base := forward(t, h.server, "127.0.0.1:9734")
	for _, path := range []string{"/", "/api/state", "/events", "/static/app.js", "/?token=nope"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("GET %s without the token: %s, want 401", path, resp.Status)
		}
	}

	step, cancel := browsertest.Timeout(ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(step, chromedp.Navigate(base+"/?token="+token), chromedp.WaitVisible("#tiles .tile")); err != nil {
		t.Fatalf("the page did not load: %v", err)
	}
	if _, err := chromedp.Run(step, chromedp.Poll[bool](`document.getElementById('guard').textContent === 'guarding'`)); err != nil {
		t.Fatalf("the page did not load with the daemon's data: %v", err)
	}
	if loc, _ := chromedp.Run(step, chromedp.Location()); strings.Contains(loc, token) {
		t.Fatalf("the token stayed in the address bar: %s", loc)
	}
	if got, _ := chromedp.Run(step, chromedp.TextContent("#protected")); !strings.Contains(got, h.link.A4.String()) {
		t.Errorf("protected addresses %q: want the server's own %s", got, h.link.A4)
	}
	browsertest.Screenshot(t, step, "live-page-before-scan")

	// A real scan from the client's namespace; the page is not reloaded:
	// the ban must arrive through the live feed.
	h.nmap(t, "-sS", "-p", "1-1000", "-e", h.link.BIf, h.link.A4.String())
	banned := fmt.Sprintf(`[...document.querySelectorAll('#feed li[data-kind="ban"]')].some((li) => li.textContent.includes(%q))`, h.link.B4.String()+" ")
	if _, err := chromedp.Run(step, chromedp.Poll[bool](banned)); err != nil {
		t.Fatalf("the live feed did not show the scanner's ban: %v", err)
	}
	if _, err := chromedp.Run(step, chromedp.Poll[bool](fmt.Sprintf(`document.getElementById('sources').textContent.includes(%q)`, h.link.B4.String()))); err != nil {
		t.Fatalf("top sources did not show the scanner: %v", err)
	}
	if !hasBan(h.bans(t), h.link.B4.String(), "scan") {
		t.Fatal("the page shows a ban the daemon does not have")
	}
	browsertest.Screenshot(t, step, "live-page-after-scan")

	// A reload moves the page; the old address stops answering, and the
	// token stays the same.
	h.writeConfig(fmt.Sprintf("open = [\"tcp/%d\"]\n\n[login]\nenabled = false\n\n[page]\nlisten = \"127.0.0.1:9736\"\n", openPort))
	h.moat("firewall", "apply")
	dial := func(port int) error {
		_, err := h.server.RunErr("bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/127.0.0.1/%d", port))
		return err
	}
	netnstest.Eventually(t, 5*time.Second, "the page to leave port 9734", func() bool { return dial(9734) != nil })
	if err := dial(9736); err != nil {
		t.Fatalf("the page did not move to 9736: %v", err)
	}
	if again, _, _ := strings.Cut(h.moat("page", "url"), "\n"); again != strings.Replace(raw, "9734", "9736", 1) {
		t.Fatalf("after the move: %q, want the same token on 9736", again)
	}
}

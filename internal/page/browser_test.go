package page_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/moat-fw/moat/internal/browsertest"
	"github.com/moat-fw/moat/internal/daemon"
	"github.com/moat-fw/moat/internal/events"
	"github.com/moat-fw/moat/internal/page"
	"github.com/moat-fw/moat/internal/portscan"
)

// hostileUser is a user name an attacker sent to sshd: if the page ever
// inserted it as markup, the image's error handler would set __xss.
const hostileUser = `<img src=x onerror="window.__xss=1"><b>root</b>`

func fakeState(now time.Time) daemon.PageState {
	until := now.Add(9 * time.Minute)
	scanner := netip.MustParseAddr("10.210.5.4")
	return daemon.PageState{
		Status: daemon.Status{Started: now.Add(-time.Hour), ConfigSource: "/etc/moat/moat.toml", Enforcing: true, TablePresent: true,
			Open: []string{"tcp/2222"}, Bans: 2, BansByOrigin: map[string]int{"scan": 1, "login": 1},
			Protected: []daemon.ProtectedJSON{{Addr: "10.210.5.1", Why: "default router"}},
			Login: &daemon.LoginStatus{Enabled: true, Events: 7, Banned: 1, Counting: 2,
				TopUsers: []daemon.UserAttempt{{User: hostileUser, Attempts: 4}, {User: "admin", Attempts: 3}}},
			Scan: &daemon.ScanStatus{Blocked: 1, Report: portscan.Report{
				Sources: []portscan.SourceReport{{Addr: scanner, Level: 3, Types: []string{"syn"}, Packets: 1000, Ports: 1000, PortLow: 1, PortHigh: 1000,
					First: now.Add(-2 * time.Minute), Last: now.Add(-time.Minute), Active: true}},
				Ports:  []portscan.PortReport{{Proto: "tcp", Port: 22, Packets: 40}, {Proto: "tcp", Port: 443, Packets: 12}},
				Totals: portscan.Totals{Probes: 1052, Sources: 1}}}},
		Bans: []daemon.EntryJSON{{Addr: scanner.String(), Origin: "scan", Reason: "port scan: danger level 3 (syn)", Created: now.Add(-time.Minute), Expires: &until, Count: 1},
			{Addr: "10.210.5.5", Origin: "login", Reason: hostileUser, Created: now.Add(-30 * time.Second), Expires: &until, Count: 1}},
		Doors:  []daemon.DoorJSON{{Name: "ssh", Mode: "kernel", Sequence: []string{"tcp/7000", "tcp/8000", "udp/9000"}, Open: []string{"tcp/22"}, OpenFor: "30s"}},
		Grants: []daemon.GrantJSON{{Door: "ssh", Addr: "10.210.5.3", Port: "tcp/22", Seconds: 25, Mode: "kernel"}},
	}
}

// In a real browser: the token leaves the address bar, every panel fills
// from the state, the attacker's user name shows as text and runs
// nothing, and an event published on the bus appears in the live feed.
func TestPageInChromium(t *testing.T) {
	ctx := browsertest.Start(t)
	bus := events.New(100)
	now := time.Now()
	bus.Publish(events.Event{Time: now.Add(-time.Minute), Kind: events.Scan, Prefix: netip.MustParsePrefix("10.210.5.4/32"), Level: 3, Types: "syn", Probes: 15, NPorts: 15})
	bus.Publish(events.Event{Time: now.Add(-time.Minute), Kind: events.Ban, Prefix: netip.MustParsePrefix("10.210.5.4/32"), Origin: "scan", Reason: "port scan", Until: now.Add(9 * time.Minute)})
	const token = "browser-test-token-0123456789"
	n := 0 // samples taken; Run calls Sample from one goroutine
	addr := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := fakeState(time.Now())
		json.NewEncoder(w).Encode(daemon.AddrStatus{Addr: r.URL.Query().Get("addr"), Bans: st.Bans[:1], Login: map[string]int{"sshd": 2},
			Scan: &st.Status.Scan.Report.Sources[0], Grants: []daemon.GrantJSON{}, Events: []daemon.DoorEvent{}})
	})
	p := page.New(page.Options{Token: token, Bus: bus, State: func() any { return fakeState(time.Now()) }, Addr: addr,
		Sample: func() page.Sample {
			n++
			return page.Sample{Bans: 2, LoginFailures: uint64(n * n), ScanProbes: uint64(40 * n)}
		}, SampleEvery: 500 * time.Millisecond})
	pctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(pctx) }()
	srv := httptest.NewServer(p)
	t.Cleanup(func() { stop(); srv.Close(); <-done })

	step, cancel := browsertest.Timeout(ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(step, chromedp.Navigate(srv.URL+"/?token="+token), chromedp.WaitVisible("#sources table"),
		chromedp.WaitVisible(`#feed li[data-kind="ban"]`)); err != nil {
		t.Fatalf("the page did not render: %v", err)
	}
	loc, err := chromedp.Run(step, chromedp.Location())
	if err != nil || strings.Contains(loc, token) {
		t.Fatalf("address bar after load: %q (%v): the token must leave it", loc, err)
	}
	login, err := chromedp.Run(step, chromedp.TextContent("#login"))
	if err != nil || !strings.Contains(login, hostileUser) {
		t.Fatalf("login panel %q (%v): want the user name shown as text", login, err)
	}
	xss, err := chromedp.Run(step, chromedp.Evaluate[bool](`window.__xss !== undefined || document.querySelectorAll('main img').length > 0 || [...document.querySelectorAll('main b')].some((b) => b.textContent === 'root')`))
	if err != nil || xss {
		t.Fatalf("the hostile user name became markup (%v)", err)
	}
	for sel, want := range map[string]string{"#sources": "10.210.5.4", "#ports": "tcp/22", "#doors": "10.210.5.3", "#protected": "default router", "#bans": "10.210.5.5", "#guard": "guarding"} {
		got, err := chromedp.Run(step, chromedp.TextContent(sel))
		if err != nil || !strings.Contains(got, want) {
			t.Errorf("%s shows %q (%v), want %q", sel, got, err, want)
		}
	}
	// The knock sequence itself is not shown: the page says how long it
	// is, not what it is.
	if got, _ := chromedp.Run(step, chromedp.TextContent("#doors")); strings.Contains(got, "7000") {
		t.Errorf("the doors panel shows the knock sequence: %q", got)
	}

	e := bus.Publish(events.Event{Time: time.Now(), Kind: events.Ban, Prefix: netip.MustParsePrefix("10.210.5.9/32"), Origin: "login", Reason: hostileUser, Until: time.Now().Add(time.Hour)})
	sel := `#feed li[data-seq="` + strconv.FormatUint(e.Seq, 10) + `"]`
	if err := chromedp.Do(step, chromedp.WaitVisible(sel)); err != nil {
		t.Fatalf("the published event did not reach the live feed: %v", err)
	}
	if got, _ := chromedp.Run(step, chromedp.TextContent(sel)); !strings.Contains(got, "10.210.5.9") || !strings.Contains(got, hostileUser) {
		t.Fatalf("feed row %q", got)
	}
	// One address's story opens from the table.
	if err := chromedp.Do(step, chromedp.Click(`#sources button.addr`), chromedp.WaitVisible("#detail")); err != nil {
		t.Fatalf("address detail: %v", err)
	}
	if _, err := chromedp.Run(step, chromedp.Poll[bool](`document.getElementById('detail-body').textContent.includes('port scan: danger level 3')`)); err != nil {
		got, _ := chromedp.Run(step, chromedp.TextContent("#detail-body"))
		t.Fatalf("the address's story: %q (%v)", got, err)
	}
	browsertest.Screenshot(t, step, "page-detail")
	if err := chromedp.Do(step, chromedp.Click("#detail-close"), chromedp.WaitNotVisible("#detail")); err != nil {
		t.Fatal(err)
	}
	// The counters sampled over time are drawn as rates.
	if _, err := chromedp.Run(step, chromedp.Poll[bool](`document.querySelectorAll('#login svg.spark path, #types svg.spark path').length === 2`)); err != nil {
		t.Fatalf("no rate charts: %v", err)
	}
	browsertest.Screenshot(t, step, "page")
	browsertest.Dark(t, step)
	browsertest.Screenshot(t, step, "page-dark")
}

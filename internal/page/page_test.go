package page

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/events"
)

const testToken = "test-token-0123456789abcdef"

// hostile is a user name an attacker sent to sshd.
const hostile = `<img src=x onerror="window.__xss=1">"'&`

type fakeState struct {
	Login struct {
		TopUsers []struct {
			User     string `json:"user"`
			Attempts int    `json:"attempts"`
		} `json:"top_users"`
	} `json:"login"`
}

func newTestPage(t *testing.T, bus *events.Bus) (*httptest.Server, context.CancelFunc) {
	t.Helper()
	var st fakeState
	st.Login.TopUsers = append(st.Login.TopUsers, struct {
		User     string `json:"user"`
		Attempts int    `json:"attempts"`
	}{hostile, 3})
	p := New(Options{Token: testToken, Bus: bus, State: func() any { return map[string]any{"status": st} },
		Sample: func() Sample { return Sample{Bans: 2} }, SampleEvery: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()
	srv := httptest.NewServer(p)
	t.Cleanup(func() { cancel(); srv.Close(); <-done })
	return srv, cancel
}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

func get(t *testing.T, url string, hdr ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := (&http.Client{CheckRedirect: noRedirect}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestEveryPathNeedsTheToken(t *testing.T) {
	srv, _ := newTestPage(t, events.New(10))
	for _, path := range []string{"/", "/static/app.js", "/static/app.css", "/api/state", "/api/addr?addr=10.210.0.1", "/events", "/?token=wrong", "/?token="} {
		for _, hdr := range [][]string{nil, {"Authorization", "Bearer wrong"}, {"Cookie", "moat_page=" + testToken}, {"Authorization", testToken}} {
			resp := get(t, srv.URL+path, hdr...)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("GET %s with %v: %s, want 401", path, hdr, resp.Status)
			}
			if resp.Header.Get("Set-Cookie") != "" {
				t.Errorf("GET %s with %v set a cookie", path, hdr)
			}
		}
	}
}

func TestTokenMovesIntoACookie(t *testing.T) {
	srv, _ := newTestPage(t, events.New(10))
	resp := get(t, srv.URL+"/?token="+testToken)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("GET /?token=: %s to %q, want 303 to /", resp.Status, resp.Header.Get("Location"))
	}
	cs := resp.Cookies()
	if len(cs) != 1 || cs[0].Value != testToken || !cs[0].HttpOnly || cs[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("cookie %+v: want the token, HttpOnly, SameSite=Strict", cs)
	}
	if !strings.HasPrefix(cs[0].Name, "moat_page_") {
		t.Fatalf("cookie name %q: want one per port", cs[0].Name)
	}
	for _, c := range []struct {
		path, ctype string
	}{{"/", "text/html"}, {"/static/app.js", "text/javascript"}, {"/static/app.css", "text/css"}, {"/api/state", "application/json"}} {
		resp := get(t, srv.URL+c.path, "Cookie", cs[0].Name+"="+cs[0].Value)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s with the cookie: %s", c.path, resp.Status)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, c.ctype) {
			t.Errorf("GET %s: Content-Type %q, want %s", c.path, ct, c.ctype)
		}
		h := resp.Header
		if !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'self'") || h.Get("X-Content-Type-Options") != "nosniff" ||
			h.Get("Cache-Control") != "no-store" || h.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("GET %s: headers %v", c.path, h)
		}
	}
	if resp := get(t, srv.URL+"/api/state", "Authorization", "Bearer "+testToken); resp.StatusCode != http.StatusOK {
		t.Fatalf("bearer token: %s", resp.Status)
	}
}

// The state reaches the browser as JSON with markup escaped; the script
// never parses text as markup (the browser test shows it rendered as
// text).
func TestHostileTextIsEscaped(t *testing.T) {
	srv, _ := newTestPage(t, events.New(10))
	resp := get(t, srv.URL+"/api/state", "Authorization", "Bearer "+testToken)
	body, _ := io.ReadAll(resp.Body)
	if strings.Contains(string(body), "<img") || !strings.Contains(string(body), `\u003cimg src=x onerror=\"window.__xss=1\"\u003e`) {
		t.Fatalf("state: %s", body)
	}
	js, err := static.ReadFile("static/app.js")
	if err != nil {
		t.Fatal(err)
	}
	for _, sink := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "setAttribute('on", "href ="} {
		if strings.Contains(string(js), sink) {
			t.Errorf("app.js uses %s: attacker text must go in as text only", sink)
		}
	}
	html, _ := static.ReadFile("static/index.html")
	if strings.Contains(string(html), "<script>") || strings.Contains(string(html), "style=") || strings.Contains(string(html), "http") && strings.Contains(string(html), "://") {
		t.Error("index.html has inline script or style, or a remote URL: the CSP forbids them and the page must work offline")
	}
}

// sse reads a feed's events.
type sse struct {
	r    *bufio.Reader
	resp *http.Response
}

func openFeed(t *testing.T, url string, hdr ...string) *sse {
	t.Helper()
	resp := get(t, url+"/events", append([]string{"Authorization", "Bearer " + testToken}, hdr...)...)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /events: %s %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	return &sse{r: bufio.NewReader(resp.Body), resp: resp}
}

// next returns the next event's id and data.
func (s *sse) next(t *testing.T) (id, data string) {
	t.Helper()
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			t.Fatalf("feed ended: %v", err)
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case strings.HasPrefix(line, "id: "):
			id = line[4:]
		case strings.HasPrefix(line, "data: "):
			data = line[6:]
		case line == "" && data != "":
			return id, data
		}
	}
}

func TestFeedReplaysThenDeliversPublishedEvents(t *testing.T) {
	bus := events.New(10)
	srv, _ := newTestPage(t, bus)
	p := netip.MustParsePrefix("10.210.0.9/32")
	bus.Publish(events.Event{Kind: events.Scan, Prefix: p, Level: 3, Types: "syn"})
	bus.Publish(events.Event{Kind: events.Ban, Prefix: p, Origin: "scan"})

	f := openFeed(t, srv.URL)
	if id, data := f.next(t); id != "1" || !strings.Contains(data, `"kind":"scan"`) {
		t.Fatalf("first replayed event: %s %s", id, data)
	}
	if id, _ := f.next(t); id != "2" {
		t.Fatalf("second replayed event: id %s", id)
	}
	// A new event arrives while the feed is open. Publishing races with
	// the subscription only before the replay, which was read above.
	bus.Publish(events.Event{Kind: events.Ban, Prefix: netip.MustParsePrefix("10.210.0.10/32"), Origin: "login", Reason: hostile})
	id, data := f.next(t)
	if id != "3" || !strings.Contains(data, `"10.210.0.10/32"`) || strings.Contains(data, "<img") {
		t.Fatalf("live event: %s %s", id, data)
	}

	// A reconnecting browser sends Last-Event-ID and gets only what it
	// missed.
	g := openFeed(t, srv.URL, "Last-Event-ID", "2")
	if id, _ := g.next(t); id != "3" {
		t.Fatalf("resumed feed started at %s, want 3", id)
	}
	// An id past the bus's last (the daemon restarted) replays all.
	h := openFeed(t, srv.URL, "Last-Event-ID", "99")
	if id, _ := h.next(t); id != "1" {
		t.Fatalf("feed after a restart started at %s, want 1", id)
	}
}

func TestRunEndsOpenFeeds(t *testing.T) {
	srv, cancel := newTestPage(t, events.New(10))
	f := openFeed(t, srv.URL)
	cancel()
	done := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, f.r); done <- err }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("an open feed outlived the page")
	}
}

func TestFeedsAreBounded(t *testing.T) {
	p := New(Options{Token: testToken, Bus: events.New(10), MaxStreams: 1})
	ctx, cancel := context.WithCancel(context.Background())
	go p.Run(ctx)
	srv := httptest.NewServer(p)
	defer srv.Close()
	defer cancel() // before Close, which waits for the open feed
	openFeed(t, srv.URL)
	if resp := get(t, srv.URL+"/events", "Authorization", "Bearer "+testToken); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("second feed: %s, want 503", resp.Status)
	}
}

func TestTokenFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	var wg sync.WaitGroup
	toks := make([]string, 8)
	for i := range toks {
		wg.Go(func() {
			tok, err := Token(dir)
			if err != nil {
				t.Error(err)
			}
			toks[i] = tok
		})
	}
	wg.Wait()
	for _, tok := range toks {
		if tok != toks[0] || len(tok) < 40 {
			t.Fatalf("tokens %q: want one, of 32 random bytes", toks)
		}
	}
	fi, err := os.Stat(filepath.Join(dir, TokenFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v, want mode 0600", fi.Mode(), err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("left behind: %v", ents)
	}
	if err := os.WriteFile(filepath.Join(dir, TokenFile), []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Token(dir); err == nil || !strings.Contains(err.Error(), "too short") {
		t.Fatalf("short token: %v", err)
	}
}

// Package page serves moat's live page: a token-protected web page, with
// its scripts and styles embedded in the binary, that shows what the
// daemon's guards saw and did (bans over time, scans, login attempts,
// doors and grants, protected addresses) and a live feed of events as
// server-sent events. It reads the daemon through the functions it is
// given and changes nothing.
//
// Everything the page shows may come from an attacker (user names from
// sshd's log, addresses from forged packets), so the script inserts it as
// text only, and every response carries a Content-Security-Policy that
// allows no inline script and no other origin.
package page

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/moat-fw/moat/internal/events"
)

//go:embed static
var static embed.FS

// Sample is a moment's counters, kept for the page's charts over time.
type Sample struct {
	At            time.Time         `json:"t"`
	Bans          int               `json:"bans"`           // active bans
	Grants        int               `json:"grants"`         // open door and SPA grants
	LoginFailures uint64            `json:"login_failures"` // since the daemon started
	ScanProbes    uint64            `json:"scan_probes"`    // since the daemon started
	Knocks        uint64            `json:"knocks"`
	Kernel        map[string]uint64 `json:"kernel,omitempty"` // the ruleset's counters, packets
}

// Options is what the page reads and how it is protected.
type Options struct {
	// Token is the secret a browser must present: once as ?token= (then
	// kept in a cookie), or as "Authorization: Bearer TOKEN".
	Token string
	// State is everything the page shows now, encoded as JSON as is: the
	// daemon's status, bans, doors and grants.
	State func() any
	// Addr answers GET ?addr=ADDRESS with one address's story (JSON).
	Addr http.Handler
	// Sample reads the counters the charts draw; Run calls it every
	// SampleEvery.
	Sample      func() Sample
	SampleEvery time.Duration // default 5s
	Bus         *events.Bus
	Now         func() time.Time
	// MaxStreams bounds the live feeds open at once (default 16): each
	// holds a queue of events.
	MaxStreams int
}

// keepSamples is an hour of samples at the default interval.
const keepSamples = 720

// recentOnConnect is how many past events a feed replays to a new page.
const recentOnConnect = 1000

// Page is the live page's http.Handler.
type Page struct {
	o       Options
	token   [sha256.Size]byte
	mux     *http.ServeMux
	streams chan struct{} // a slot per open feed
	done    chan struct{} // closed when Run ends: feeds end with it
	once    sync.Once

	mu      sync.Mutex
	samples []Sample // oldest first, at most keepSamples
}

// New returns the page. Run must run for its samples and to end its feeds.
func New(o Options) *Page {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.SampleEvery <= 0 {
		o.SampleEvery = 5 * time.Second
	}
	if o.MaxStreams <= 0 {
		o.MaxStreams = 16
	}
	p := &Page{o: o, token: sha256.Sum256([]byte(o.Token)), streams: make(chan struct{}, o.MaxStreams), done: make(chan struct{})}
	assets, _ := fs.Sub(static, "static")
	files := http.FileServerFS(assets)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, assets, "index.html")
	})
	mux.Handle("GET /static/", http.StripPrefix("/static/", files))
	mux.HandleFunc("GET /api/state", p.state)
	mux.HandleFunc("GET /api/addr", func(w http.ResponseWriter, r *http.Request) {
		if p.o.Addr == nil {
			http.NotFound(w, r)
			return
		}
		p.o.Addr.ServeHTTP(w, r)
	})
	mux.HandleFunc("GET /events", p.feed)
	p.mux = mux
	return p
}

// Run samples the counters until ctx ends, then ends every open feed.
func (p *Page) Run(ctx context.Context) {
	defer p.once.Do(func() { close(p.done) })
	if p.o.Sample == nil {
		<-ctx.Done()
		return
	}
	t := time.NewTicker(p.o.SampleEvery)
	defer t.Stop()
	for {
		p.sample()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *Page) sample() {
	s := p.o.Sample()
	if s.At.IsZero() {
		s.At = p.o.Now()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.samples) == keepSamples {
		copy(p.samples, p.samples[1:])
		p.samples = p.samples[:keepSamples-1]
	}
	p.samples = append(p.samples, s)
}

// ServeHTTP checks the token and serves the page.
func (p *Page) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// No inline script or style, nothing from elsewhere: a user name an
	// attacker chose cannot run even if it were ever inserted as markup.
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	cookie := cookieName(r)
	if tok := r.URL.Query().Get("token"); tok != "" && r.Method == http.MethodGet && r.URL.Path == "/" {
		if !p.valid(tok) {
			deny(w)
			return
		}
		// The token moves into a cookie and out of the address bar, the
		// history and any Referer.
		http.SetCookie(w, &http.Cookie{Name: cookie, Value: tok, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	if !p.authorized(r, cookie) {
		deny(w)
		return
	}
	p.mux.ServeHTTP(w, r)
}

func deny(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusUnauthorized)
	fmt.Fprintln(w, "moat: this page needs its token: run `moat page url` on the host and open the address it prints")
}

// cookieName is per port: cookies are not, and two moats on one host
// (a demo lab beside the real one) must not overwrite each other's.
func cookieName(r *http.Request) string {
	_, port, err := net.SplitHostPort(r.Host)
	if err != nil {
		return "moat_page"
	}
	return "moat_page_" + port
}

func (p *Page) authorized(r *http.Request, cookie string) bool {
	if c, err := r.Cookie(cookie); err == nil && p.valid(c.Value) {
		return true
	}
	const bearer = "Bearer "
	if a := r.Header.Get("Authorization"); len(a) > len(bearer) && a[:len(bearer)] == bearer {
		return p.valid(a[len(bearer):])
	}
	return false
}

// valid compares digests in constant time, so neither the token's bytes
// nor its length leak through timing.
func (p *Page) valid(tok string) bool {
	if p.o.Token == "" {
		return false
	}
	sum := sha256.Sum256([]byte(tok))
	return subtle.ConstantTimeCompare(sum[:], p.token[:]) == 1
}

// stateJSON is what /api/state answers.
type stateJSON struct {
	Now     time.Time `json:"now"`
	State   any       `json:"state"`
	Samples []Sample  `json:"samples"`
	// LastEvent is the sequence number of the last event published, so a
	// page can tell whether its feed missed any.
	LastEvent uint64 `json:"last_event"`
}

func (p *Page) state(w http.ResponseWriter, r *http.Request) {
	out := stateJSON{Now: p.o.Now(), Samples: []Sample{}}
	if p.o.State != nil {
		out.State = p.o.State()
	}
	p.mu.Lock()
	out.Samples = append(out.Samples, p.samples...)
	p.mu.Unlock()
	if p.o.Bus != nil {
		out.LastEvent = p.o.Bus.Last()
	}
	w.Header().Set("Content-Type", "application/json")
	// encoding/json escapes <, > and & in strings: attacker text stays
	// inert even in a browser that would sniff it.
	_ = json.NewEncoder(w).Encode(out)
}

// feed streams the bus as server-sent events: first the recent events
// after Last-Event-ID (all kept ones on a first connect), then each new
// one as it is published.
func (p *Page) feed(w http.ResponseWriter, r *http.Request) {
	if p.o.Bus == nil {
		http.Error(w, "no events", http.StatusNotFound)
		return
	}
	select {
	case p.streams <- struct{}{}:
		defer func() { <-p.streams }()
	default:
		http.Error(w, "too many live feeds open; close a tab", http.StatusServiceUnavailable)
		return
	}
	rc := http.NewResponseController(w)
	// The server's timeouts are for ordinary requests; a feed lives as
	// long as the page is open.
	_ = rc.SetWriteDeadline(time.Time{})
	_ = rc.SetReadDeadline(time.Time{})
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		select {
		case <-p.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	after := lastEventID(r)
	if after > p.o.Bus.Last() {
		after = 0 // the daemon restarted and numbers from 1 again
	}
	sub := p.o.Bus.Subscribe(ctx, 256)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 2000\n\n")
	last := after
	for _, e := range p.o.Bus.Recent(recentOnConnect, after) {
		if writeEvent(w, e) != nil {
			return
		}
		last = e.Seq
	}
	if rc.Flush() != nil {
		return
	}
	beat := time.NewTicker(15 * time.Second)
	defer beat.Stop()
	for {
		select {
		case e, ok := <-sub.C:
			if !ok {
				return
			}
			if e.Seq <= last { // already sent from Recent
				continue
			}
			last = e.Seq
			if writeEvent(w, e) != nil || rc.Flush() != nil {
				return
			}
		case <-beat.C:
			// A comment keeps proxies and tunnels from closing an idle
			// feed, and finds a browser that went away.
			if _, err := fmt.Fprint(w, ": keepalive\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

func lastEventID(r *http.Request) uint64 {
	s := r.Header.Get("Last-Event-ID")
	if s == "" {
		s = r.URL.Query().Get("after")
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0
	}
	return n
}

func writeEvent(w http.ResponseWriter, e events.Event) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "id: %d\nevent: moat\ndata: %s\n\n", e.Seq, b)
	return err
}

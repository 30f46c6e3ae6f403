package page

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/moat-fw/moat/internal/events"
)

// Whatever a request carries, without the token it gets 401 and nothing
// else: no page, no data, no cookie, no panic.
func FuzzRequestsWithoutTheToken(f *testing.F) {
	f.Add("/", "", "", "", "")
	f.Add("/api/state", "x", "moat_page_80=x", "Bearer x", "3")
	f.Add("/events", testToken[:10], "moat_page="+testToken+"x", "Bearer "+testToken+" ", "99999999999999999999")
	f.Add("/static/../index.html", "%00", "a=b; moat_page_80=", "bearer "+testToken, "-1")
	p := New(Options{Token: testToken, Bus: events.New(4), State: func() any { return "secret" }})
	f.Fuzz(func(t *testing.T, path, token, cookie, auth, lastID string) {
		for _, s := range []string{path, token, cookie, auth} {
			if strings.Contains(s, testToken) && !strings.Contains(s, testToken+"x") && s != "Bearer "+testToken+" " {
				t.Skip("carries the token")
			}
		}
		u := &url.URL{Path: "/" + strings.TrimLeft(path, "/"), RawQuery: url.Values{"token": {token}}.Encode()}
		req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:80/", nil)
		req.URL = u
		req.Header.Set("Cookie", cookie)
		req.Header.Set("Authorization", auth)
		req.Header.Set("Last-Event-ID", lastID)
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized || rec.Header().Get("Set-Cookie") != "" || strings.Contains(rec.Body.String(), "secret") {
			t.Fatalf("%s token=%q cookie=%q auth=%q: %d %v", u.Path, token, cookie, auth, rec.Code, rec.Header())
		}
	})
}

package alert

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/moat-fw/moat/internal/config"
)

// webhook POSTs each alert as JSON.
type webhook struct {
	url    string
	token  string // from token_file; never logged
	client *http.Client
}

func newWebhook(w config.AlertWebhook) (*webhook, error) {
	h := &webhook{url: w.URL, client: &http.Client{Timeout: w.Timeout,
		// A redirect would carry the token elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	if w.TokenFile != "" {
		tok, err := readSecret(w.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("token_file: %w", err)
		}
		h.token = tok
	}
	return h, nil
}

// site is the URL's scheme and host: a webhook's path often is its secret
// (Slack's, Discord's), so only this much is ever shown.
func (h *webhook) site() string {
	u, err := url.Parse(h.url)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Scheme + "://" + u.Host
}

func (h *webhook) Send(ctx context.Context, a *Alert) error {
	body, err := json.Marshal(a)
	if err != nil {
		return &Permanent{err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return &Permanent{errors.New("cannot make the request: check the url")}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "moat-alert/1")
	if h.token != "" {
		req.Header.Set("Authorization", "Bearer "+h.token)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		// url.Error quotes the whole URL, path and all: keep the site only.
		var ue *url.Error
		if errors.As(err, &ue) {
			return fmt.Errorf("POST %s: %w", h.site(), ue.Err)
		}
		return fmt.Errorf("POST %s: %w", h.site(), err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return fmt.Errorf("POST %s: %s", h.site(), resp.Status)
	}
	return &Permanent{fmt.Errorf("POST %s: %s (not retried)", h.site(), resp.Status)}
}

// readSecret reads a token or password file: its first line, trimmed. The
// error names the file, never its content.
func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("cannot read %s: %w", path, errors.Unwrap(err))
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSpace(line)
	if line == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	if strings.ContainsAny(line, "\r\x00") {
		return "", fmt.Errorf("%s holds control characters", path)
	}
	return line, nil
}

package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
)

// ErrNotRunning reports that no daemon listens on the socket.
var ErrNotRunning = errors.New("moat is not running")

// APIError is a non-2xx answer from the daemon. Error returns Message alone:
// the daemon writes it for the admin.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string { return e.Message }

// Client calls the daemon over its control socket. It is safe for
// concurrent use. Each call uses its own connection (no keep-alive), so a
// Client holds no goroutines or descriptors between calls and needs no
// Close.
type Client struct {
	path string
	hc   *http.Client
}

// NewClient returns a client for the daemon listening at the socket path.
func NewClient(path string) *Client {
	dialer := &net.Dialer{}
	return &Client{
		path: path,
		hc: &http.Client{
			// A Transport built here has no Proxy: HTTP_PROXY in the
			// environment must not redirect calls meant for the socket.
			Transport: &http.Transport{
				DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					conn, err := dialer.DialContext(ctx, "unix", path)
					if err != nil {
						return nil, &dialError{connError(path, err)}
					}
					return conn, nil
				},
				DisableKeepAlives:  true,
				DisableCompression: true,
			},
		},
	}
}

// Call sends method route (such as "POST", "/v1/bans") to the daemon with
// req JSON-encoded as the body (none if req is nil) and decodes the JSON
// answer into resp (discarded if resp is nil). A non-2xx answer returns an
// *APIError. If no daemon listens, the error wraps ErrNotRunning.
func (c *Client) Call(ctx context.Context, method, route string, req, resp any) error {
	if !strings.HasPrefix(route, "/") {
		return fmt.Errorf("control: route %q does not start with /", route)
	}
	var body io.Reader
	if req != nil {
		b, err := json.Marshal(req)
		if err != nil {
			return fmt.Errorf("control: encoding the %s %s request: %w", method, route, err)
		}
		body = bytes.NewReader(b)
	}
	// The host is a placeholder: the transport always dials the socket.
	hreq, err := http.NewRequestWithContext(ctx, method, "http://moat"+route, body)
	if err != nil {
		return fmt.Errorf("control: %s %s: %w", method, route, err)
	}
	if req != nil {
		hreq.Header.Set("Content-Type", "application/json")
	}
	hreq.Header.Set("Accept", "application/json")

	hresp, err := c.hc.Do(hreq)
	if err != nil {
		if de := (*dialError)(nil); errors.As(err, &de) {
			return de.err
		}
		// Strip url.Error's `Post "http://moat/v1/bans": ` prefix: the
		// URL is made up.
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("control: %s %s: %w", method, route, err)
	}
	defer hresp.Body.Close()

	if hresp.StatusCode < 200 || hresp.StatusCode > 299 {
		return readAPIError(hresp, method, route)
	}
	if resp == nil {
		return nil
	}
	if err := json.NewDecoder(hresp.Body).Decode(resp); err != nil && err != io.EOF {
		return fmt.Errorf("control: %s %s: decoding the daemon's answer: %w", method, route, err)
	}
	return nil
}

// errorBody is the JSON shape of every non-2xx answer.
type errorBody struct {
	Error string `json:"error"`
}

// maxErrorBody bounds how much of an error answer is read.
const maxErrorBody = 64 << 10

func readAPIError(hresp *http.Response, method, route string) error {
	b, _ := io.ReadAll(io.LimitReader(hresp.Body, maxErrorBody))
	var eb errorBody
	if json.Unmarshal(b, &eb) == nil && eb.Error != "" {
		return &APIError{Status: hresp.StatusCode, Message: eb.Error}
	}
	// Not ours: most likely a route this daemon does not know (404, 405
	// from the mux) because it is older than this CLI.
	msg := fmt.Sprintf("moat daemon answered %s to %s %s", hresp.Status, method, route)
	if text := strings.TrimSpace(string(b)); text != "" && len(text) < 200 {
		msg += ": " + text
	}
	if hresp.StatusCode == http.StatusNotFound || hresp.StatusCode == http.StatusMethodNotAllowed {
		msg += " (is the daemon an older moat? restart it)"
	}
	return &APIError{Status: hresp.StatusCode, Message: msg}
}

// dialError carries a connection failure through net/http unchanged.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// causeError is an error with its own wording that still matches its
// causes with errors.Is.
type causeError struct {
	msg    string
	causes []error
}

func (e *causeError) Error() string   { return e.msg }
func (e *causeError) Unwrap() []error { return e.causes }

// connError words a failure to connect to the socket at path.
func connError(path string, err error) error {
	switch {
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
		return &causeError{
			msg:    fmt.Sprintf(`moat is not running (no daemon at %s); start it with "moat run" or "systemctl start moat"`, path),
			causes: []error{ErrNotRunning, err},
		}
	case errors.Is(err, fs.ErrPermission):
		return &causeError{msg: fmt.Sprintf("permission denied on %s: run as root", path), causes: []error{err}}
	case errors.Is(err, syscall.EAGAIN):
		return &causeError{msg: fmt.Sprintf("moat daemon at %s is too busy to accept a connection: try again", path), causes: []error{err}}
	}
	return fmt.Errorf("control: connecting to %s: %w", path, err)
}

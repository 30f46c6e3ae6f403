package control

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

type echoReq struct {
	Addr string `json:"addr"`
	N    int    `json:"n"`
}

type echoResp struct {
	Addr string `json:"addr"`
	N    int    `json:"n"`
}

func testHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/echo", func(w http.ResponseWriter, r *http.Request) {
		var req echoReq
		if err := DecodeJSON(r, &req); err != nil {
			WriteError(w, http.StatusBadRequest, err)
			return
		}
		WriteJSON(w, http.StatusOK, echoResp(req))
	})
	mux.HandleFunc("GET /v1/conflict", func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, http.StatusConflict, errors.New(`192.0.2.1 is on the allow list: remove it with "moat allow del 192.0.2.1" first`))
	})
	mux.HandleFunc("DELETE /v1/thing", func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusNoContent, nil)
	})
	mux.HandleFunc("GET /v1/wait", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // a stream: runs until the daemon stops
	})
	return mux
}

// serve starts Listen+Serve at path and returns a stop function that
// cancels and waits for Serve's result.
func serve(t *testing.T, path string) (stop func() error) {
	t.Helper()
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, testHandler()) }()
	stopped := false
	var result error
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			result = <-done
		}
		return result
	}
	t.Cleanup(func() { stop() })
	return stop
}

func sockPath(t *testing.T) string {
	return filepath.Join(t.TempDir(), "run", "moat", "moat.sock")
}

func TestRoundTrip(t *testing.T) {
	before := runtime.NumGoroutine()
	path := sockPath(t)
	stop := serve(t, path)
	c := NewClient(path)
	ctx := context.Background()

	var resp echoResp
	if err := c.Call(ctx, "POST", "/v1/echo", echoReq{Addr: "192.0.2.1", N: 3}, &resp); err != nil {
		t.Fatal(err)
	}
	if resp != (echoResp{Addr: "192.0.2.1", N: 3}) {
		t.Errorf("echo = %+v", resp)
	}
	if err := c.Call(ctx, "DELETE", "/v1/thing", nil, &resp); err != nil {
		t.Errorf("204 answer: %v", err)
	}

	err := c.Call(ctx, "GET", "/v1/conflict", nil, nil)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusConflict {
		t.Fatalf("conflict: %v", err)
	}
	if want := `192.0.2.1 is on the allow list: remove it with "moat allow del 192.0.2.1" first`; err.Error() != want {
		t.Errorf("APIError text %q, want %q", err, want)
	}

	// The server rejects unknown fields, and says which.
	err = c.Call(ctx, "POST", "/v1/echo", map[string]any{"addr": "x", "color": "red"}, nil)
	if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || !strings.Contains(err.Error(), `unknown field "color"`) {
		t.Errorf("unknown field: %v", err)
	}

	// A route the daemon does not know: not our JSON, still a clear line.
	err = c.Call(ctx, "GET", "/v2/nothing", nil, nil)
	if !errors.As(err, &ae) || ae.Status != http.StatusNotFound || !strings.Contains(err.Error(), "older moat") {
		t.Errorf("unknown route: %v", err)
	}
	t.Logf("unknown route: %v", err)

	if err := stop(); err != nil {
		t.Errorf("Serve after cancel = %v, want nil", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket left after Serve: %v", err)
	}
	if err := c.Call(ctx, "POST", "/v1/echo", echoReq{}, nil); !errors.Is(err, ErrNotRunning) {
		t.Errorf("call after stop: %v", err)
	}
	// Nothing left running: no keep-alive connections, no server goroutines.
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines before, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}

func TestSocketMode(t *testing.T) {
	path := sockPath(t)
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want socket 0600", fi.Mode())
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil || di.Mode().Perm() != 0o755 {
		t.Errorf("socket directory mode %v, %v; want 0755", di.Mode(), err)
	}
	if got := ln.Addr().String(); got != path {
		t.Errorf("Addr = %s, want %s", got, path)
	}
	// No temporary directory left next to the socket.
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("socket directory holds %d entries, want 1", len(entries))
	}
	ln.Close()
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket left after Close: %v", err)
	}
}

// TestSocketModeLongPath covers the fallback for paths too long for the
// temporary name: bind in place, then chmod.
func TestSocketModeLongPath(t *testing.T) {
	dir := t.TempDir()
	dir = filepath.Join(dir, strings.Repeat("d", maxPathLen-len(dir)-12))
	path := filepath.Join(dir, "moat.sock")
	if len(path) > maxPathLen || len(path)+12 <= maxPathLen {
		t.Fatalf("test path length %d does not exercise the fallback", len(path))
	}
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if fi, err := os.Lstat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, %v; want 0600", fi.Mode(), err)
	}
	if _, err := Listen(path); !errors.Is(err, ErrRunning) {
		t.Errorf("second Listen: %v", err)
	}

	tooLong := filepath.Join(dir, "moat-control.sock")
	if _, err := Listen(tooLong); err == nil || !strings.Contains(err.Error(), "shorter path") {
		t.Errorf("Listen(%d bytes) = %v", len(tooLong), err)
	}
}

// staleSocket leaves a socket file nobody listens on, as a crash does.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ul.SetUnlinkOnClose(false)
	ul.Close()
}

func TestStaleSocketRemoved(t *testing.T) {
	path := sockPath(t)
	staleSocket(t, path)
	if err := NewClient(path).Call(context.Background(), "GET", "/v1/x", nil, nil); !errors.Is(err, ErrNotRunning) {
		t.Errorf("call to a stale socket: %v", err)
	}
	serve(t, path)
	var resp echoResp
	if err := NewClient(path).Call(context.Background(), "POST", "/v1/echo", echoReq{N: 1}, &resp); err != nil || resp.N != 1 {
		t.Errorf("call after replacing the stale socket: %+v, %v", resp, err)
	}
}

func TestSecondListenRunning(t *testing.T) {
	path := sockPath(t)
	serve(t, path)
	ln, err := Listen(path)
	if err == nil {
		ln.Close()
		t.Fatal("second Listen succeeded")
	}
	if !errors.Is(err, ErrRunning) {
		t.Errorf("error does not wrap ErrRunning: %v", err)
	}
	if want := "another moat daemon is running (socket " + path + " answers)"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	// The first daemon is untouched.
	if err := NewClient(path).Call(context.Background(), "POST", "/v1/echo", echoReq{}, nil); err != nil {
		t.Errorf("first daemon after a second Listen: %v", err)
	}
}

func TestListenRefusesNonSocket(t *testing.T) {
	path := sockPath(t)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Listen(path)
	if err == nil || !strings.Contains(err.Error(), "not a socket; refusing to remove it") {
		t.Errorf("Listen over a regular file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "keep me" {
		t.Error("the file was changed")
	}
}

func TestNotRunning(t *testing.T) {
	path := sockPath(t)
	err := NewClient(path).Call(context.Background(), "GET", "/v1/status", nil, nil)
	if !errors.Is(err, ErrNotRunning) {
		t.Fatalf("error does not wrap ErrNotRunning: %v", err)
	}
	want := `moat is not running (no daemon at ` + path + `); start it with "moat run" or "systemctl start moat"`
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if !errors.Is(err, syscall.ENOENT) {
		t.Errorf("error does not keep its cause: %v", err)
	}
}

func TestConnErrorWording(t *testing.T) {
	err := connError("/run/moat.sock", &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.EACCES)})
	if want := "permission denied on /run/moat.sock: run as root"; err.Error() != want {
		t.Errorf("EACCES: %q, want %q", err, want)
	}
	if !errors.Is(err, fs.ErrPermission) {
		t.Error("EACCES error does not match fs.ErrPermission")
	}
}

// TestServeCancelsStreams: a handler waiting on its request context does
// not hold up shutdown.
func TestServeCancelsStreams(t *testing.T) {
	path := sockPath(t)
	stop := serve(t, path)
	callDone := make(chan error, 1)
	go func() { callDone <- NewClient(path).Call(context.Background(), "GET", "/v1/wait", nil, nil) }()
	time.Sleep(50 * time.Millisecond) // let the request reach the handler
	start := time.Now()
	if err := stop(); err != nil {
		t.Errorf("Serve = %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("shutdown took %v with a stream open", d)
	}
	if err := <-callDone; err != nil {
		t.Logf("stream call ended with: %v", err)
	}
}

func TestServeLeavesReplacedSocket(t *testing.T) {
	// A socket that is no longer ours (an admin removed it and another
	// daemon started) must survive our shutdown.
	path := sockPath(t)
	stop := serve(t, path)
	os.Remove(path)
	staleSocket(t, path)
	stop()
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("another daemon's socket was removed: %v", err)
	}
}

func TestDecodeJSON(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
	}{
		{"ok", `{"addr":"192.0.2.1","n":2}`, ""},
		{"ok trailing space", "{\"n\":2}\n  ", ""},
		{"empty", ``, "request body is empty"},
		{"unknown field", `{"n":1,"color":"red"}`, `request body: unknown field "color"`},
		{"type", `{"n":"two"}`, `request body: field "n": want int, got string`},
		{"syntax", `{"n":1,}`, "request body: invalid JSON at byte"},
		{"truncated", `{"n":1`, "JSON ends too soon"},
		{"trailing", `{"n":1} {"n":2}`, "unexpected data after the JSON value"},
		{"too large", `{"addr":"` + strings.Repeat("a", MaxRequestBody) + `"}`, "larger than 1024 KiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/v1/echo", strings.NewReader(tc.body))
			var v echoReq
			err := DecodeJSON(r, &v)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("error %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	r := httptest.NewRequest("POST", "/", strings.NewReader(`{"addr":"`+strings.Repeat("a", MaxRequestBody)+`"}`))
	var mbe *http.MaxBytesError
	if err := DecodeJSON(r, &echoReq{}); !errors.As(err, &mbe) {
		t.Errorf("too large body error does not carry *http.MaxBytesError: %v", err)
	}
}

func TestWriteJSONEncodingFailure(t *testing.T) {
	w := httptest.NewRecorder()
	WriteJSON(w, http.StatusOK, map[string]any{"f": func() {}})
	if w.Code != http.StatusInternalServerError || !strings.Contains(w.Body.String(), `"error"`) {
		t.Errorf("got %d %s", w.Code, w.Body)
	}
}

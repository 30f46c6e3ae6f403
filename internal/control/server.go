// Package control carries moat's CLI-to-daemon API: HTTP with JSON over a unix socket.
//
// The daemon defines the routes and serves them with Listen and Serve,
// answering with WriteJSON and WriteError; the CLI calls them with Client.
// Only root may connect: the socket is mode 0600 from the moment it appears.
package control

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// ErrRunning reports that a daemon already answers on the socket.
var ErrRunning = errors.New("another moat daemon is running")

// maxPathLen is the longest socket path the kernel takes (sun_path is 108
// bytes with its NUL).
const maxPathLen = 107

// shutdownGrace is how long Serve waits for requests in flight when its
// context is done.
const shutdownGrace = 3 * time.Second

// Listen creates the control socket at path, mode 0600, creating its
// directory (0755) if missing. A socket left by a crashed daemon is
// removed; if a daemon answers on it, Listen fails with an error wrapping
// ErrRunning; anything else at path is left alone and reported.
//
// Permissions: the socket is bound inside a fresh 0700 directory next to
// path, chmodded to 0600 there, then hard-linked into place, so it is never
// reachable with wider permissions, and the process-wide umask is left
// alone (changing it would race with files other goroutines create). The
// link also fails if something appeared at path meanwhile, so a daemon
// starting at the same moment is never clobbered. If the temporary path
// would be too long for a socket address, Listen binds at path directly and
// chmods right after: the mode is briefly 0777 less the umask (0755 under
// the usual 022, which already refuses other users, as connecting needs
// write permission).
//
// Closing the returned listener removes the socket file if it is still
// the one Listen created.
func Listen(path string) (net.Listener, error) {
	if path == "" {
		return nil, errors.New("control: the socket path is empty: set socket in the [daemon] section")
	}
	if len(path) > maxPathLen {
		return nil, fmt.Errorf("control: socket path %s is %d bytes, longer than the %d a unix socket allows: choose a shorter path", path, len(path), maxPathLen)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control: creating the socket directory: %w", hint(err))
	}
	if err := clearStale(path); err != nil {
		return nil, err
	}
	return listenPrivate(path)
}

// clearStale makes room at path: nothing there, or a socket nobody answers.
func clearStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control: %w", hint(err))
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("control: %s exists and is not a socket; refusing to remove it: move it away or set socket to another path", path)
	}
	conn, err := net.DialTimeout("unix", path, time.Second)
	switch {
	case err == nil:
		conn.Close()
		return fmt.Errorf("%w (socket %s answers)", ErrRunning, path)
	case errors.Is(err, syscall.EAGAIN):
		// A full accept backlog: alive, just busy.
		return fmt.Errorf("%w (socket %s is busy)", ErrRunning, path)
	case errors.Is(err, syscall.ECONNREFUSED):
		// Bound by a process that is gone: left by a crash.
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("control: removing stale socket: %w", hint(err))
		}
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return nil // removed meanwhile
	}
	return fmt.Errorf("control: checking the existing socket %s: %w", path, hint(err))
}

func listenPrivate(path string) (net.Listener, error) {
	tmpDir, err := os.MkdirTemp(filepath.Dir(path), ".moat")
	if err != nil {
		return nil, fmt.Errorf("control: %w", hint(err))
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, "s")
	if len(tmp) > maxPathLen {
		return listenDirect(path)
	}
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control: %w", hint(err))
	}
	// The bound name goes away with tmpDir; listener.Close removes path.
	ul.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		ul.Close()
		return nil, fmt.Errorf("control: %w", hint(err))
	}
	if err := os.Link(tmp, path); err != nil {
		ul.Close()
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("%w (socket %s appeared while this one was starting)", ErrRunning, path)
		}
		return nil, fmt.Errorf("control: %w", hint(err))
	}
	return newListener(ul, path)
}

func listenDirect(path string) (net.Listener, error) {
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("%w (socket %s appeared while this one was starting)", ErrRunning, path)
		}
		return nil, fmt.Errorf("control: %w", hint(err))
	}
	ul.SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o600); err != nil {
		ul.Close()
		os.Remove(path)
		return nil, fmt.Errorf("control: %w", hint(err))
	}
	return newListener(ul, path)
}

func newListener(ul *net.UnixListener, path string) (net.Listener, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		ul.Close()
		return nil, fmt.Errorf("control: %w", err)
	}
	return &listener{UnixListener: ul, path: path, file: fi}, nil
}

// listener reports the socket's public path as its address and removes the
// socket file on Close, unless another daemon has replaced it since.
type listener struct {
	*net.UnixListener
	path string
	file fs.FileInfo
	once sync.Once
}

func (l *listener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

func (l *listener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() {
		if fi, serr := os.Lstat(l.path); serr == nil && os.SameFile(fi, l.file) {
			os.Remove(l.path)
		}
	})
	return err
}

// Serve answers requests on ln with h until ctx is done, then stops
// accepting and gives requests in flight a few seconds to finish. It
// returns nil after a clean shutdown. Request contexts derive from ctx, so
// long-lived handlers (streams) end when the daemon stops. Serve closes ln,
// which for a listener from Listen removes the socket file.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(slog.Default().Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	select {
	case err := <-errc:
		// Serve has closed ln and returned on its own: accept failed.
		srv.Close()
		return fmt.Errorf("control: serving %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	serr := srv.Shutdown(sctx)
	if serr != nil {
		srv.Close() // cut off what did not finish in time
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("control: serving %s: %w", ln.Addr(), err)
	}
	if serr != nil {
		return fmt.Errorf("control: requests still running after %v were cut off: %w", shutdownGrace, serr)
	}
	return nil
}

// hint adds what to do to file system errors.
func hint(err error) error {
	if errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("%w: run as root", err)
	}
	return err
}

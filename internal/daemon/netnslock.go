package daemon

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// netnsLockName is the abstract unix socket a moat binds for as long as it
// owns table inet moat. Abstract names live in the network namespace, not
// the file system, so two daemons with different state_dirs and sockets
// still meet here; and the kernel frees the name when the process dies,
// so no stale lock survives a kill -9.
var netnsLockName = "@moat-netns-lock" // a variable only so unit tests can use their own

// netnsHolder is what a holder of the lock tells whoever asks.
type netnsHolder struct {
	PID      int    `json:"pid"`
	StateDir string `json:"state_dir"`
	Socket   string `json:"socket"`
}

// netnsLock is a bound lock; Close releases it and waits for its goroutine.
type netnsLock struct {
	ln   *net.UnixListener
	done chan struct{}
	once sync.Once
}

// ErrNetnsTaken marks the refusal to start beside another moat.
var ErrNetnsTaken = errors.New("another moat already guards this network namespace")

// lockNetns takes the network namespace's lock for a moat using stateDir
// and socket. If another moat holds it, the error names its pid and
// state_dir. A holder that lacks CAP_NET_ADMIN cannot be a moat, only a
// local user squatting the name (abstract sockets have no permissions):
// it is logged and the start goes on without the lock rather than letting
// any user keep the firewall daemon from starting.
func lockNetns(log *slog.Logger, stateDir, socket string) (*netnsLock, error) {
	me := netnsHolder{PID: os.Getpid(), StateDir: stateDir, Socket: socket}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: netnsLockName, Net: "unix"})
	if err == nil {
		l := &netnsLock{ln: ln, done: make(chan struct{})}
		go l.serve(me)
		return l, nil
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("taking the network namespace's lock %s: %w", netnsLockName, err)
	}
	h, pid, capable := askHolder()
	if !capable {
		log.Warn("an unprivileged process holds moat's network namespace lock (abstract socket "+netnsLockName+"): ignoring it; find it with `ss -xlp | grep moat-netns-lock`",
			"pid", pid)
		return &netnsLock{}, nil
	}
	if h.PID == 0 {
		h.PID = pid
	}
	if h.StateDir == "" {
		h.StateDir = "unknown"
	}
	return nil, fmt.Errorf("%w: another moat (pid %d, state_dir %s, socket %s) already guards this network namespace; two would fight over table inet moat: stop it, or manage it with `moat --socket %s`",
		ErrNetnsTaken, h.PID, h.StateDir, h.Socket, h.Socket)
}

// serve answers each connection with who holds the lock.
func (l *netnsLock) serve(me netnsHolder) {
	defer close(l.done)
	line, _ := json.Marshal(me)
	line = append(line, '\n')
	for {
		c, err := l.ln.AcceptUnix()
		if err != nil {
			return // closed
		}
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.Write(line)
		c.Close()
	}
}

// Close releases the lock.
func (l *netnsLock) Close() {
	if l == nil || l.ln == nil {
		return
	}
	l.once.Do(func() {
		l.ln.Close()
		<-l.done
	})
}

// askHolder asks the lock's holder who it is. pid comes from the kernel
// (SO_PEERCRED), so it holds even if the answer is missing or forged;
// capable says whether that process has CAP_NET_ADMIN, or could not be
// checked (then it is presumed a moat).
func askHolder() (h netnsHolder, pid int, capable bool) {
	capable = true
	c, err := net.DialTimeout("unix", netnsLockName, time.Second)
	if err != nil {
		return h, 0, true
	}
	defer c.Close()
	if rc, err := c.(*net.UnixConn).SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
				pid = int(cred.Pid)
			}
		})
	}
	if pid > 0 {
		if has, ok := hasNetAdmin(pid); ok {
			capable = has
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	if line, err := bufio.NewReader(c).ReadBytes('\n'); err == nil {
		_ = json.Unmarshal(line, &h)
	}
	if pid > 0 {
		h.PID = pid // the kernel's word over the holder's
	}
	return h, pid, capable
}

// hasNetAdmin reads whether pid's effective capabilities include
// CAP_NET_ADMIN; ok is false when that cannot be read.
func hasNetAdmin(pid int) (has, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return false, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, found := strings.CutPrefix(line, "CapEff:"); found {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return false, false
			}
			return caps&(1<<unix.CAP_NET_ADMIN) != 0, true
		}
	}
	return false, false
}

// Package session finds the SSH sessions that must never be cut: the
// logged-in connections to sshd, and the one the caller runs in.
//
// Both answers come from the kernel and the process table under /proc, not
// from log lines, which any local user can forge. A connection counts as
// logged in only when its socket is held by an sshd process whose title
// (setproctitle) says it is past authentication: a client that merely holds
// a TCP connection open, or is still guessing passwords, never counts, or a
// brute-forcer could make itself immune to the guards.
//
// Seeing which process holds a socket means reading /proc/PID/fd of sshd's
// processes. sshd makes them non-dumpable, so that needs CAP_SYS_PTRACE,
// which a hardened systemd unit may not grant. LoggedIn then does not
// guess: it returns the connections flagged Unknown, with an error wrapping
// ErrOwnersHidden, and the caller decides.
package session

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Session is one SSH connection to this host.
type Session struct {
	Client netip.AddrPort // the SSH client's end
	Server netip.AddrPort // sshd's end: the address and port the client reached
	// PID is the post-auth sshd process holding the connection; 0 when the
	// session came from SSH_CONNECTION or could not be checked (Unknown).
	PID  int
	User string // the logged-in user, from the process title; "" if not known

	// LoggedIn: the connection is held by a logged-in sshd process (or,
	// from Caller, the caller runs inside it).
	LoggedIn bool
	// Unknown: the connection is established to sshd's port, but who holds
	// it could not be read (see ErrOwnersHidden). It may still be
	// authenticating.
	Unknown bool
}

// SSHConnection formats s the way sshd sets SSH_CONNECTION: "client_ip
// client_port server_ip server_port".
func (s Session) SSHConnection() string {
	if !s.Client.IsValid() || !s.Server.IsValid() {
		return ""
	}
	return s.Client.Addr().String() + " " + strconv.Itoa(int(s.Client.Port())) + " " +
		s.Server.Addr().String() + " " + strconv.Itoa(int(s.Server.Port()))
}

func (s Session) String() string {
	who := ""
	if s.User != "" {
		who = s.User + " "
	}
	return fmt.Sprintf("%sfrom %s to %s", who, s.Client, s.Server)
}

// ErrOwnersHidden is wrapped by LoggedIn's error when some sshd process's
// open files could not be read, so its connection cannot be told from one
// still authenticating. The sessions LoggedIn returns alongside are valid;
// those it could not check carry Unknown.
var ErrOwnersHidden = errors.New("cannot see which sshd process holds each SSH connection, so logged-in sessions cannot be told from connections still authenticating (moat needs CAP_SYS_PTRACE for /proc/PID/fd of sshd's processes)")

// Proc reads one /proc tree.
type Proc struct {
	// Root is the /proc mount; "" means "/proc". Tests point it at a fake
	// tree.
	Root string

	// readlinkat replaces unix.Readlinkat in tests, which run as root and
	// cannot meet EACCES otherwise.
	readlinkat func(dirfd int, name string, buf []byte) (int, error)
}

func (p Proc) root() string {
	if p.Root == "" {
		return "/proc"
	}
	return p.Root
}

// maxUnknown bounds the Unknown sessions LoggedIn returns: a flood of
// connections sitting in sshd's accept queue must not make every scan's
// answer arbitrarily large. Verified sessions are never dropped.
const maxUnknown = 4096

// LoggedIn returns the logged-in SSH sessions of the calling thread's
// network namespace: established TCP connections whose local port is one of
// sshPorts and whose socket is held by a post-auth sshd process. Sessions
// whose holder could not be checked are returned with Unknown set, and the
// error then wraps ErrOwnersHidden. Connections still authenticating are
// not returned.
//
// When no connection to sshPorts is established it reads nothing but
// /proc/thread-self/net/tcp{,6}; otherwise it scans the process table once,
// reading open files only of sshd processes with a post-auth title.
func (p Proc) LoggedIn(sshPorts []uint16) ([]Session, error) {
	var tables [2][]byte
	var readErr error
	read, conns := 0, 0
	toSSHD := func(e TCPEntry) bool {
		return e.State == tcpEstablished && slices.Contains(sshPorts, e.Local.Port())
	}
	// thread-self, not self (where /proc/net points): the tables of the
	// calling thread's network namespace, which a thread that entered
	// another namespace with setns (netnstest.NS.Do) needs.
	for i, name := range [2]string{"/thread-self/net/tcp", "/thread-self/net/tcp6"} {
		data, err := os.ReadFile(p.root() + name)
		if err != nil {
			readErr = err // tcp6 is missing when IPv6 is off
			continue
		}
		read++
		tables[i] = data
		ParseTCP(data, func(e TCPEntry) {
			if toSSHD(e) {
				conns++
			}
		})
	}
	if read == 0 {
		return nil, fmt.Errorf("session: reading established connections: %w", readErr)
	}
	if conns == 0 {
		return nil, nil
	}

	held, hidden := p.postAuthSockets()
	var out []Session
	unknown := 0
	for _, data := range tables {
		ParseTCP(data, func(e TCPEntry) {
			if !toSSHD(e) {
				return
			}
			if h, ok := held[e.Inode]; ok {
				out = append(out, Session{Client: e.Remote, Server: e.Local, PID: h.pid, User: h.user, LoggedIn: true})
			} else if hidden != nil && unknown < maxUnknown {
				out = append(out, Session{Client: e.Remote, Server: e.Local, Unknown: true})
				unknown++
			}
		})
	}
	if unknown > 0 {
		return out, fmt.Errorf("session: %w: %w", hidden, ErrOwnersHidden)
	}
	return out, nil
}

type holder struct {
	pid  int
	user string
}

// postAuthSockets returns the socket inodes held by sshd processes with a
// post-auth title, and the first error that hid such a process's files, or
// nil if every one was read.
func (p Proc) postAuthSockets() (map[uint64]holder, error) {
	sc := newScanner(p)
	held := map[uint64]holder{}
	var hidden error
	err := sc.eachPID(p.root(), func(pid int) {
		_, kind, user := sc.title(pid)
		if kind != titlePostAuth {
			return
		}
		h := holder{pid, string(user)}
		err := sc.socketInodes(pid, func(ino uint64) {
			if _, ok := held[ino]; !ok { // the first holder: the same socket lives on in children
				held[ino] = h
			}
		})
		if err != nil && hidden == nil {
			hidden = err
		}
	})
	if err != nil && hidden == nil {
		hidden = err
	}
	return held, hidden
}

// scanner holds the buffers one scan of /proc reuses.
type scanner struct {
	p    Proc
	dir  []byte // getdents
	fds  []byte // getdents of /proc/PID/fd, while dir is in use
	file []byte // comm, cmdline, stat
	link []byte // readlink
	path []byte // the NUL-terminated path of the file being read
}

func newScanner(p Proc) *scanner {
	return &scanner{p: p, dir: make([]byte, 8192), fds: make([]byte, 4096), file: make([]byte, 4096), link: make([]byte, 64), path: make([]byte, 0, 64)}
}

// eachPID calls fn for every process directory under root.
func (sc *scanner) eachPID(root string, fn func(pid int)) error {
	fd, err := syscall.Open(root, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: root, Err: err}
	}
	defer syscall.Close(fd)
	for {
		n, err := syscall.ReadDirent(fd, sc.dir)
		if err != nil {
			return &os.PathError{Op: "readdir", Path: root, Err: err}
		}
		if n == 0 {
			return nil
		}
		eachDirent(sc.dir[:n], func(name []byte) {
			if pid, ok := parseDec(name); ok && pid > 0 && pid < 1<<31 {
				fn(int(pid))
			}
		})
	}
}

// eachDirent calls fn with the name of every linux_dirent64 in buf.
func eachDirent(buf []byte, fn func(name []byte)) {
	// struct linux_dirent64 { u64 ino; s64 off; u16 reclen; u8 type; char name[]; }
	for len(buf) >= 19 {
		reclen := int(buf[16]) | int(buf[17])<<8 // little-endian, like the /proc/net words
		if reclen < 19 || reclen > len(buf) {
			return
		}
		name := buf[19:reclen]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		fn(name)
		buf = buf[reclen:]
	}
}

// readFile reads a small /proc file into sc.file; false if it is gone or
// unreadable.
func (sc *scanner) readFile(path string) ([]byte, bool) {
	sc.path = append(append(sc.path[:0], path...), 0)
	return sc.readPath()
}

// readPIDFile is readFile of /proc/PID/name, without building a string:
// it runs for every process on every scan.
func (sc *scanner) readPIDFile(pid int, name string) ([]byte, bool) {
	b := append(sc.path[:0], sc.p.root()...)
	b = append(strconv.AppendInt(append(b, '/'), int64(pid), 10), '/')
	sc.path = append(append(b, name...), 0)
	return sc.readPath()
}

// readPath reads the NUL-terminated path in sc.path into sc.file.
func (sc *scanner) readPath() ([]byte, bool) {
	// syscall.Open would copy the path into a new NUL-terminated string.
	r, _, errno := syscall.Syscall6(syscall.SYS_OPENAT, uintptr(atFDCWD), uintptr(unsafe.Pointer(&sc.path[0])),
		syscall.O_RDONLY|syscall.O_CLOEXEC, 0, 0, 0)
	if errno != 0 {
		return nil, false
	}
	fd := int(r)
	defer syscall.Close(fd)
	n := 0
	for n < len(sc.file) {
		m, err := syscall.Read(fd, sc.file[n:])
		if err != nil || m <= 0 {
			break
		}
		n += m
	}
	return sc.file[:n], true
}

var atFDCWD = unix.AT_FDCWD // a variable: the constant is negative

func (sc *scanner) pidPath(pid int, name string) string {
	return sc.p.root() + "/" + strconv.Itoa(pid) + "/" + name
}

// title reads a process's comm and, for sshd, classifies its title. user
// aliases sc.file: copy it before the next read.
func (sc *scanner) title(pid int) (sshd bool, kind titleKind, user []byte) {
	comm, ok := sc.readPIDFile(pid, "comm")
	if !ok || !sshdComm(bytes.TrimSuffix(comm, []byte("\n"))) {
		return false, titleOther, nil
	}
	cmdline, ok := sc.readPIDFile(pid, "cmdline")
	if !ok {
		return true, titleOther, nil
	}
	kind, user = classifyTitle(cmdline)
	return true, kind, user
}

// socketInodes calls fn with the inode of every socket pid holds open. A
// process that is gone is no error; anything else (EACCES without
// CAP_SYS_PTRACE) is.
func (sc *scanner) socketInodes(pid int, fn func(ino uint64)) error {
	path := sc.pidPath(pid, "fd")
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return gone(&os.PathError{Op: "open", Path: path, Err: err})
	}
	defer syscall.Close(fd)
	readlinkat := sc.p.readlinkat
	if readlinkat == nil {
		readlinkat = unix.Readlinkat
	}
	var firstErr error
	for {
		n, err := syscall.ReadDirent(fd, sc.fds)
		if err != nil {
			return gone(&os.PathError{Op: "readdir", Path: path, Err: err})
		}
		if n == 0 {
			return firstErr
		}
		eachDirent(sc.fds[:n], func(name []byte) {
			if _, ok := parseDec(name); !ok {
				return // . and ..
			}
			m, err := readlinkat(fd, string(name), sc.link)
			if err != nil {
				if err := gone(&os.PathError{Op: "readlink", Path: path + "/" + string(name), Err: err}); err != nil && firstErr == nil {
					firstErr = err
				}
				return
			}
			if ino, ok := socketInode(sc.link[:m]); ok {
				fn(ino)
			}
		})
	}
}

// gone turns "the process or the file descriptor went away meanwhile" into
// nil: that is a race with an exit, not a blind spot.
func gone(err *os.PathError) error {
	if errors.Is(err.Err, syscall.ENOENT) || errors.Is(err.Err, syscall.ESRCH) {
		return nil
	}
	return err
}

// socketInode parses the target of a /proc/PID/fd link to a socket:
// "socket:[12345]".
func socketInode(link []byte) (uint64, bool) {
	rest, ok := bytes.CutPrefix(link, []byte("socket:["))
	if !ok || len(rest) < 2 || rest[len(rest)-1] != ']' {
		return 0, false
	}
	return parseDec(rest[:len(rest)-1])
}

// parseSSHConnection parses SSH_CONNECTION ("client_ip client_port
// server_ip server_port"), as firewall.ParseSSHConnection does; ok is
// false when it is empty or malformed.
func parseSSHConnection(v string) (Session, bool) {
	f := strings.Fields(v)
	if len(f) != 4 {
		return Session{}, false
	}
	var ap [2]netip.AddrPort
	for i := range ap {
		a, err := netip.ParseAddr(f[2*i])
		if err != nil {
			return Session{}, false
		}
		port, err := strconv.ParseUint(f[2*i+1], 10, 16)
		if err != nil {
			return Session{}, false
		}
		// sshd reports IPv4 clients of a dual-stack socket as ::ffff:a.b.c.d.
		ap[i] = netip.AddrPortFrom(a.Unmap().WithZone(""), uint16(port))
	}
	if ap[1].Port() == 0 {
		return Session{}, false
	}
	return Session{Client: ap[0], Server: ap[1], LoggedIn: true}, true
}

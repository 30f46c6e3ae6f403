package session

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func itoa(i int) string { return strconv.Itoa(i) }

var unixReadlinkat = unix.Readlinkat

// fakeProc builds a /proc tree with just what this package reads.
type fakeProc struct {
	tb   testing.TB
	root string
	tcp  [2][]string // lines of net/tcp and net/tcp6
}

func newFake(tb testing.TB) *fakeProc {
	tb.Helper()
	f := &fakeProc{tb: tb, root: tb.TempDir()}
	f.must(os.MkdirAll(filepath.Join(f.root, "thread-self", "net"), 0o755))
	f.flush()
	return f
}

func (f *fakeProc) must(err error) {
	f.tb.Helper()
	if err != nil {
		f.tb.Fatal(err)
	}
}

func (f *fakeProc) proc() Proc { return Proc{Root: f.root} }

// hexAddrPort writes an address the way the kernel does: 32-bit words in
// host (little-endian) order, then the port in hex.
func hexAddrPort(ap netip.AddrPort) string {
	var b strings.Builder
	raw := ap.Addr().AsSlice()
	for w := 0; w < len(raw); w += 4 {
		fmt.Fprintf(&b, "%02X%02X%02X%02X", raw[w+3], raw[w+2], raw[w+1], raw[w])
	}
	fmt.Fprintf(&b, ":%04X", ap.Port())
	return b.String()
}

func tcpLine(n int, local, remote string, state uint8, inode uint64) string {
	return fmt.Sprintf("%4d: %s %s %02X 00000000:00000000 02:0008DB2B 00000000     0        0 %d 2 0000000000000000 20 4 30 10 -1",
		n, hexAddrPort(netip.MustParseAddrPort(local)), hexAddrPort(netip.MustParseAddrPort(remote)), state, inode)
}

// conn adds a socket to net/tcp (IPv4) or net/tcp6 (IPv6, including
// IPv4-mapped addresses, as a dual-stack listener's connections appear).
func (f *fakeProc) conn(local, remote string, state uint8, inode uint64) {
	fam := 0
	if netip.MustParseAddrPort(local).Addr().Is6() {
		fam = 1
	}
	f.tcp[fam] = append(f.tcp[fam], tcpLine(len(f.tcp[fam]), local, remote, state, inode))
	f.flush()
}

func (f *fakeProc) flush() {
	head := [2]string{
		"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
		"  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
	}
	for i, name := range []string{"tcp", "tcp6"} {
		text := head[i] + "\n" + strings.Join(f.tcp[i], "\n")
		if len(f.tcp[i]) > 0 {
			text += "\n"
		}
		f.must(os.WriteFile(filepath.Join(f.root, "thread-self", "net", name), []byte(text), 0o644))
	}
}

// process adds /proc/PID (or /proc/self when pid is 0) with comm, a
// cmdline (NUL-padded as setproctitle leaves it), stat naming the parent,
// an environ, and fds linking to the given socket inodes.
type fakeProcess struct {
	pid, ppid int
	comm      string
	cmdline   string
	environ   []string
	sockets   []uint64
}

func (f *fakeProc) process(p fakeProcess) string {
	name := strconv.Itoa(p.pid)
	if p.pid == 0 {
		name = "self"
	}
	dir := filepath.Join(f.root, name)
	f.must(os.MkdirAll(filepath.Join(dir, "fd"), 0o755))
	f.must(os.WriteFile(filepath.Join(dir, "comm"), []byte(p.comm+"\n"), 0o644))
	f.must(os.WriteFile(filepath.Join(dir, "cmdline"), []byte(p.cmdline+strings.Repeat("\x00", 12)), 0o644))
	f.must(os.WriteFile(filepath.Join(dir, "stat"),
		fmt.Appendf(nil, "%d (%s) S %d %d %d 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 100 0 0\n", p.pid, p.comm, p.ppid, p.pid, p.pid), 0o644))
	env := strings.Join(p.environ, "\x00")
	if env != "" {
		env += "\x00"
	}
	f.must(os.WriteFile(filepath.Join(dir, "environ"), []byte(env), 0o644))
	// stdin, stdout, stderr first, as in a real process.
	for i, target := range []string{"/dev/null", "/dev/null", "pipe:[77]"} {
		f.must(os.Symlink(target, filepath.Join(dir, "fd", strconv.Itoa(i))))
	}
	for i, ino := range p.sockets {
		f.must(os.Symlink(fmt.Sprintf("socket:[%d]", ino), filepath.Join(dir, "fd", strconv.Itoa(3+i))))
	}
	return dir
}

// netns gives a process its own net/tcp{,6}, as /proc/PID/net shows the
// tables of that process's network namespace.
func (f *fakeProc) netns(pid int, other *fakeProc) {
	dir := filepath.Join(f.root, strconv.Itoa(pid), "net")
	f.must(os.MkdirAll(dir, 0o755))
	for _, name := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(filepath.Join(other.root, "thread-self", "net", name))
		f.must(err)
		f.must(os.WriteFile(filepath.Join(dir, name), b, 0o644))
	}
}

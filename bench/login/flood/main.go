// Command flood appends one sshd failure line for each of N distinct IPv6
// addresses (fd00:210:abcd::/48 plus a counter) to a log file moat follows,
// as fast as it can write, then asks moat's control socket every few
// milliseconds until the login guard has counted all N, and prints how long
// that took, end to end. Without -socket it only writes (for sshguard,
// which has no status to ask: the caller watches its CPU time instead).
//
// One failure per address means nothing is banned: the run measures what
// counting costs, in time and (read by the caller from /proc) in memory.
// moat counts a line from a syslog file only for an address the kernel saw
// complete a TCP handshake with sshd (issue 10), which these addresses
// never do: such lines show up as unverified in moat's status, and the run
// ends when every line was either counted or refused, and says how many of
// each (unverified=).
//
// Usage: flood -file AUTH_LOG [-socket MOAT_SOCKET] [-n 1000000]
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/moat-fw/moat/internal/control"
	"github.com/moat-fw/moat/internal/daemon"
)

func main() {
	file := flag.String("file", "", "log file moat follows")
	sock := flag.String("socket", "", "moat's control socket")
	n := flag.Int("n", 1_000_000, "distinct addresses, one failure line each")
	timeout := flag.Duration("timeout", 3*time.Minute, "give up after")
	flag.Parse()
	if *file == "" || *n < 1 || *n > 1<<32 {
		fmt.Fprintln(os.Stderr, "usage: flood -file AUTH_LOG [-socket MOAT_SOCKET] [-n N]")
		os.Exit(2)
	}
	if err := run(*file, *sock, *n, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "flood:", err)
		os.Exit(1)
	}
}

func run(file, sock string, n int, timeout time.Duration) error {
	c := control.NewClient(sock)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	status := func() (*daemon.LoginStatus, error) {
		var st daemon.Status
		if err := c.Call(ctx, "GET", daemon.RouteStatus, nil, &st); err != nil {
			return nil, err
		}
		if st.Login == nil {
			return nil, fmt.Errorf("moat's login guard is off")
		}
		return st.Login, nil
	}
	var before *daemon.LoginStatus
	if sock != "" {
		var err error
		if before, err = status(); err != nil {
			return err
		}
	}

	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	// The lines are made before the clock starts, so the figure is moat's
	// reading, not this program's formatting.
	users := []string{"root", "invalid user admin", "invalid user test", "root", "invalid user oracle", "invalid user ubuntu"}
	base := netip.MustParseAddr("fd00:210:abcd::").As16()
	stamp := time.Now().Format(time.Stamp)
	lines := make([]byte, 0, n*110)
	for i := range n {
		a := base
		a[12], a[13], a[14], a[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
		lines = fmt.Appendf(lines, "%s bench sshd[%d]: Failed password for %s from %s port %d ssh2\n",
			stamp, 10000+i%50000, users[i%len(users)], netip.AddrFrom16(a), 1024+i%60000)
	}

	t0 := time.Now()
	// 64 KiB writes: a busy syslog daemon's buffered output, not one huge
	// write moat would see in full on its first read.
	for off := 0; off < len(lines); {
		end := min(off+64<<10, len(lines))
		k, err := f.Write(lines[off:end])
		if err != nil {
			return err
		}
		off += k
	}
	written := time.Since(t0)
	if sock == "" {
		fmt.Printf("lines=%d bytes=%d written_s=%.3f\n", n, len(lines), written.Seconds())
		return nil
	}

	want := before.Events + uint64(n)
	var ls *daemon.LoginStatus
	for {
		if ls, err = status(); err != nil {
			return err
		}
		if ls.Events+ls.Unverified >= want+before.Unverified {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	took := time.Since(t0)
	fmt.Printf("lines=%d bytes=%d written_s=%.3f counted_s=%.3f lines_per_s=%.0f events=%d counting=%d banned=%d unverified=%d\n",
		n, len(lines), written.Seconds(), took.Seconds(), float64(n)/took.Seconds(),
		ls.Events-before.Events, ls.Counting, ls.Banned-before.Banned, ls.Unverified-before.Unverified)
	return nil
}

// Command peerwait times a firewall tool's restore: it starts the tool (a
// command line, run in its own process group) and reports how long after
// the start the given nftables sets held N elements, then stops the tool.
//
// It watches the kernel, not the tool's log: a netlink monitor socket
// (NFNLGRP_NFTABLES) opened in the network namespace before the start
// counts the elements the kernel commits to the named sets (one
// notification per element, sent when its transaction commits), and when
// the count reaches N a dump of the sets confirms it (up to -check-max
// elements: a dump of a million takes minutes, each chunk restarting the
// kernel's walk, and the monitor's count is exact when it lost nothing). If
// the monitor loses notifications (its buffer overflows), or the dump
// finds fewer, the sets are dumped at growing intervals instead until they
// hold N, and the time is that dump's end, with the previous one's start as
// the lower bound. The monitor is the clock and the dump only the check.
//
// Output, one line: result=ok took=SECONDS ... | result=timeout ... |
// result=exited ... (the tool ended before its sets held N).
//
// Usage: peerwait -netns NS -set FAMILY:TABLE:SET [-set ...] -n N [-timeout 10m] [-log FILE] -- COMMAND ARGS...
package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

type sets []setRef

type setRef struct {
	family nftables.TableFamily
	table  string
	name   string
}

func (s *sets) String() string { return fmt.Sprint(*s) }
func (s *sets) Set(v string) error {
	p := strings.Split(v, ":")
	if len(p) != 3 {
		return fmt.Errorf("%q: want FAMILY:TABLE:SET", v)
	}
	fam, ok := map[string]nftables.TableFamily{"ip": nftables.TableFamilyIPv4, "ip6": nftables.TableFamilyIPv6,
		"inet": nftables.TableFamilyINet}[p[0]]
	if !ok {
		return fmt.Errorf("%q: family must be ip, ip6 or inet", v)
	}
	*s = append(*s, setRef{fam, p[1], p[2]})
	return nil
}

func main() {
	var ss sets
	ns := flag.String("netns", "", "network namespace the tool runs in (a name under /run/netns)")
	flag.Var(&ss, "set", "FAMILY:TABLE:SET whose elements count (repeat)")
	n := flag.Int("n", 0, "elements to wait for")
	timeout := flag.Duration("timeout", 10*time.Minute, "longest wait")
	logf := flag.String("log", "", "file for the tool's output (default: discarded)")
	checkMax := flag.Int("check-max", 300000, "confirm the monitor's count by a dump only up to this many elements")
	flag.Parse()
	if *ns == "" || len(ss) == 0 || *n < 1 || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: peerwait -netns NS -set FAMILY:TABLE:SET -n N [-timeout D] [-log FILE] -- COMMAND ARGS...")
		os.Exit(2)
	}
	res, err := run(*ns, ss, *n, *checkMax, *timeout, *logf, flag.Args())
	if err != nil {
		fmt.Fprintln(os.Stderr, "peerwait:", err)
		os.Exit(1)
	}
	fmt.Println(res)
}

func run(ns string, ss sets, n, checkMax int, timeout time.Duration, logf string, argv []string) (string, error) {
	nsf, err := os.Open(filepath.Join("/run/netns", ns))
	if err != nil {
		return "", err
	}
	defer nsf.Close()
	mon, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: int(nsf.Fd())})
	if err != nil {
		return "", fmt.Errorf("netlink in %s: %w", ns, err)
	}
	defer mon.Close()
	// A burst of a million notifications (moat's one transaction) needs
	// room; root may exceed rmem_max.
	if err := setRcvbufForce(mon, 1<<30); err != nil {
		return "", err
	}
	if err := mon.JoinGroup(unix.NFNLGRP_NFTABLES); err != nil {
		return "", fmt.Errorf("joining NFNLGRP_NFTABLES in %s: %w", ns, err)
	}
	nft, err := nftables.New(nftables.WithNetNSFd(int(nsf.Fd())))
	if err != nil {
		return "", err
	}

	var count atomic.Int64
	reached := make(chan time.Time, 1)
	lost := make(chan error, 1)
	go func() {
		for {
			msgs, err := mon.Receive()
			at := time.Now()
			if err != nil {
				if !errors.Is(err, os.ErrClosed) && !strings.Contains(err.Error(), "closed") {
					lost <- err
				}
				return
			}
			for _, m := range msgs {
				t := m.Header.Type
				if t>>8 != unix.NFNL_SUBSYS_NFTABLES || len(m.Data) < 4 {
					continue
				}
				var sign int64
				switch t & 0xff {
				case unix.NFT_MSG_NEWSETELEM:
					sign = 1
				case unix.NFT_MSG_DELSETELEM:
					sign = -1
				default:
					continue
				}
				k := elements(m.Data, ss)
				if k == 0 {
					continue
				}
				if c := count.Add(sign * int64(k)); c >= int64(n) {
					select {
					case reached <- at:
					default:
					}
				}
			}
		}
	}()

	out, err := logFile(logf)
	if err != nil {
		return "", err
	}
	defer out.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return "", err
	}
	defer stop(cmd)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	progress := time.NewTicker(30 * time.Second)
	defer progress.Stop()
	secs := func(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }
	polling := false
	for !polling {
		select {
		case at := <-reached:
			if n > checkMax {
				return fmt.Sprintf("result=ok took=%s n=%d in_kernel=%d clock=monitor check_dump=skipped", secs(at.Sub(t0)), n,
					count.Load()), nil
			}
			d0 := time.Now()
			got, err := dump(nft, ss)
			if err != nil {
				return "", err
			}
			if got >= n {
				return fmt.Sprintf("result=ok took=%s n=%d in_kernel=%d clock=monitor check_dump=%ss", secs(at.Sub(t0)), n, got,
					secs(time.Since(d0))), nil
			}
			fmt.Fprintf(os.Stderr, "peerwait: the monitor counted %d but the sets hold %d; dumping from now on\n", count.Load(), got)
			polling = true
		case err := <-lost:
			fmt.Fprintf(os.Stderr, "peerwait: monitor lost notifications (%v); dumping from now on\n", err)
			polling = true
		case err := <-exited:
			got, _ := dump(nft, ss)
			return fmt.Sprintf("result=exited after=%s n=%d in_kernel=%d err=%q", secs(time.Since(t0)), n, got, fmt.Sprint(err)), nil
		case <-deadline.C:
			got, _ := dump(nft, ss)
			return fmt.Sprintf("result=timeout after=%s n=%d in_kernel=%d", secs(time.Since(t0)), n, got), nil
		case <-progress.C:
			fmt.Fprintf(os.Stderr, "peerwait: %d of %d after %s s\n", count.Load(), n, secs(time.Since(t0)))
		}
	}
	// Dumping at growing intervals: each wait a tenth of the time so far,
	// at least three times the last dump (the dumps must not be the load).
	var prev time.Time
	for {
		d0 := time.Now()
		got, err := dump(nft, ss)
		if err != nil {
			return "", err
		}
		d1 := time.Now()
		if got >= n {
			return fmt.Sprintf("result=ok took=%s n=%d in_kernel=%d clock=dump lower_bound=%s", secs(d1.Sub(t0)), n, got,
				secs(prev.Sub(t0))), nil
		}
		prev = d0
		wait := max(d1.Sub(t0)/10, 3*d1.Sub(d0), 100*time.Millisecond)
		select {
		case err := <-exited:
			got, _ := dump(nft, ss)
			return fmt.Sprintf("result=exited after=%s n=%d in_kernel=%d err=%q", secs(time.Since(t0)), n, got, fmt.Sprint(err)), nil
		case <-deadline.C:
			got, _ := dump(nft, ss)
			return fmt.Sprintf("result=timeout after=%s n=%d in_kernel=%d", secs(time.Since(t0)), n, got), nil
		case <-time.After(wait):
		}
	}
}

// elements counts the elements (not interval ends) of a NEWSETELEM or
// DELSETELEM message that belong to one of ss.
func elements(data []byte, ss sets) int {
	fam := nftables.TableFamily(data[0])
	ad, err := netlink.NewAttributeDecoder(data[4:])
	if err != nil {
		return 0
	}
	var table, set string
	k := 0
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_SET_ELEM_LIST_TABLE:
			table = ad.String()
		case unix.NFTA_SET_ELEM_LIST_SET:
			set = ad.String()
		case unix.NFTA_SET_ELEM_LIST_ELEMENTS:
			ad.Nested(func(list *netlink.AttributeDecoder) error {
				for list.Next() {
					if list.Type() != unix.NFTA_LIST_ELEM {
						continue
					}
					end := false
					list.Nested(func(el *netlink.AttributeDecoder) error {
						for el.Next() {
							if v := el.Bytes(); el.Type() == unix.NFTA_SET_ELEM_FLAGS && len(v) == 4 {
								end = binary.BigEndian.Uint32(v)&unix.NFT_SET_ELEM_INTERVAL_END != 0
							}
						}
						return nil
					})
					if !end {
						k++
					}
				}
				return nil
			})
		}
	}
	for _, s := range ss {
		if s.family == fam && s.table == table && s.name == set {
			return k
		}
	}
	return 0
}

// dump counts the elements (not interval ends) the sets hold now; a set
// that does not exist yet holds none.
func dump(c *nftables.Conn, ss sets) (int, error) {
	total := 0
	for _, s := range ss {
		set, err := c.GetSetByName(&nftables.Table{Name: s.table, Family: s.family}, s.name)
		if err != nil {
			continue // not created yet
		}
		es, err := c.GetSetElements(set)
		if err != nil {
			return 0, fmt.Errorf("reading %s %s: %w", s.table, s.name, err)
		}
		for _, e := range es {
			if !e.IntervalEnd {
				total++
			}
		}
	}
	return total, nil
}

// stop ends the tool's process group: SIGTERM, then SIGKILL after 20 s.
func stop(cmd *exec.Cmd) {
	pg := -cmd.Process.Pid
	_ = syscall.Kill(pg, syscall.SIGTERM)
	for range 200 {
		if syscall.Kill(pg, 0) != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = syscall.Kill(pg, syscall.SIGKILL)
}

func setRcvbufForce(c *netlink.Conn, n int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n)
	}); err != nil {
		return err
	}
	return serr
}

// logFile opens the tool's log, or /dev/null.
func logFile(path string) (*os.File, error) {
	if path == "" {
		path = os.DevNull
	}
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
}

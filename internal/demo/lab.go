package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
)

// Prefix starts the name of every namespace the demo makes; Clean removes
// what a killed demo left behind by it.
const Prefix = "moat-demo-"

// The lab's one network: a bridge in the "lan" namespace, which is also
// the servers' gateway, and a host on it per role. 10.210.0.0/16 is the
// range moat's tests keep to; nothing here is routed anywhere else.
var (
	gateway  = netip.MustParseAddr("10.210.99.1")
	server   = netip.MustParseAddr("10.210.99.2")
	client   = netip.MustParseAddr("10.210.99.3")
	scanner  = netip.MustParseAddr("10.210.99.4")
	guesser  = netip.MustParseAddr("10.210.99.5")
	sweeper  = netip.MustParseAddr("10.210.99.6")
	labBits  = 24
	labIface = "eth0"
)

// lab is the namespaces and processes of one demo run. Everything it
// makes it records, so cleanup removes exactly that.
type lab struct {
	id   string // random, in every name
	dir  string // temp files: configs, keys, logs, moat's state
	ns   map[string]string
	pids []int // processes started, stopped by PID at cleanup
}

func (l *lab) name(role string) string { return l.ns[role] }

func newLab() (*lab, error) {
	var b [3]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	dir, err := os.MkdirTemp("", Prefix+id+"-")
	if err != nil {
		return nil, err
	}
	l := &lab{id: id, dir: dir, ns: map[string]string{}}
	for _, role := range []string{"lan", "srv", "cli", "att"} {
		l.ns[role] = Prefix + id + "-" + role
	}
	return l, nil
}

// ip runs iproute2.
func ip(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// build makes the namespaces and wires them: the server, the client and
// the attacker each on a veth to the lan's bridge.
func (l *lab) build(ctx context.Context) error {
	for _, role := range []string{"lan", "srv", "cli", "att"} {
		if err := ip(ctx, "netns", "add", l.name(role)); err != nil {
			return err
		}
	}
	lan := l.name("lan")
	steps := [][]string{
		{"-n", lan, "link", "add", "br0", "type", "bridge"},
		{"-n", lan, "addr", "add", gateway.String() + "/" + strconv.Itoa(labBits), "dev", "br0"},
		{"-n", lan, "link", "set", "br0", "up"},
		{"-n", lan, "link", "set", "lo", "up"},
	}
	hosts := map[string][]netip.Addr{"srv": {server}, "cli": {client}, "att": {scanner, guesser, sweeper}}
	for _, role := range []string{"srv", "cli", "att"} {
		ns, port := l.name(role), "to-"+role
		steps = append(steps,
			[]string{"-n", lan, "link", "add", port, "type", "veth", "peer", "name", labIface, "netns", ns},
			[]string{"-n", lan, "link", "set", port, "master", "br0", "up"},
			[]string{"-n", ns, "link", "set", "lo", "up"},
			[]string{"-n", ns, "link", "set", labIface, "up"})
		for _, a := range hosts[role] {
			steps = append(steps, []string{"-n", ns, "addr", "add", a.String() + "/" + strconv.Itoa(labBits), "dev", labIface, "nodad"})
		}
		steps = append(steps, []string{"-n", ns, "route", "add", "default", "via", gateway.String()})
	}
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			return err
		}
	}
	return nil
}

// cmd is a command to run in a namespace, through `ip netns exec`
// (which execs it: a started command's PID is its own), in its own
// process group: a Ctrl-C in the terminal reaches the demo, which stops
// the lab in order, not every child at once.
func (l *lab) cmd(ctx context.Context, role string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", l.name(role)}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

// start starts a long-running command and records its PID for cleanup.
func (l *lab) start(cmd *exec.Cmd) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	l.pids = append(l.pids, cmd.Process.Pid)
	return nil
}

// Cleanup is what cleanup removed, for the last lines of the demo (and its test).
type Cleanup struct {
	Namespaces []string
	PIDs       []int
	Dir        string
	Errs       []error
}

// cleanup stops every process in the lab's namespaces (those it started
// and any they started, such as sshd's sessions) by PID, deletes the
// namespaces and the temp files. It runs even after a failed build.
func (l *lab) cleanup() Cleanup {
	c := Cleanup{Dir: l.dir}
	c.PIDs = append(c.PIDs, l.pids...)
	for _, pid := range l.pids {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	waitGone(l.pids, 5*time.Second)
	for _, role := range []string{"srv", "cli", "att", "lan"} {
		name := l.name(role)
		if _, err := os.Stat(filepath.Join("/run/netns", name)); err != nil {
			continue
		}
		pids := nsPIDs(name)
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		c.PIDs = append(c.PIDs, pids...)
		waitGone(pids, 2*time.Second)
		if err := ip(context.Background(), "netns", "del", name); err != nil {
			c.Errs = append(c.Errs, err)
		} else {
			c.Namespaces = append(c.Namespaces, name)
		}
	}
	if err := os.RemoveAll(l.dir); err != nil {
		c.Errs = append(c.Errs, err)
	}
	return c
}

// nsPIDs lists the processes in a named namespace.
func nsPIDs(name string) []int {
	out, err := exec.Command("ip", "netns", "pids", name).Output()
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if n, err := strconv.Atoi(f); err == nil && n != os.Getpid() {
			pids = append(pids, n)
		}
	}
	return pids
}

func waitGone(pids []int, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for _, pid := range pids {
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if alive(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// alive says whether pid still runs; a zombie (exited, not yet reaped by
// its parent) does not.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

// Clean removes what demos killed before their cleanup left: namespaces
// named moat-demo-* with their processes, and their temp directories.
func Clean() (Cleanup, error) {
	var c Cleanup
	ents, err := os.ReadDir("/run/netns")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return c, err
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), Prefix) {
			continue
		}
		pids := nsPIDs(e.Name())
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		waitGone(pids, 2*time.Second)
		c.PIDs = append(c.PIDs, pids...)
		if err := ip(context.Background(), "netns", "del", e.Name()); err != nil {
			c.Errs = append(c.Errs, err)
			continue
		}
		c.Namespaces = append(c.Namespaces, e.Name())
	}
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), Prefix+"*"))
	for _, d := range dirs {
		if err := os.RemoveAll(d); err != nil {
			c.Errs = append(c.Errs, err)
		}
	}
	return c, nil
}

// dialIn connects to addr from inside the named namespace, from src if
// it is valid: the socket is made on a thread switched into it, and stays
// there.
func dialIn(ctx context.Context, name string, src netip.Addr, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, err}
			return
		}
		defer orig.Close()
		target, err := netns.GetFromName(name)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, err}
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, err}
			return
		}
		var d net.Dialer
		if src.IsValid() {
			d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
		}
		c, err := d.DialContext(ctx, "tcp", addr)
		// A thread that cannot go back stays locked and dies with this
		// goroutine, so no other goroutine runs in the lab by mistake.
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

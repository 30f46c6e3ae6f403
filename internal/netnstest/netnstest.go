// Package netnstest builds throwaway network namespaces so integration tests can send real packets and assert what the kernel did.
//
// Every namespace is named "moat-t-" plus a random suffix, holds addresses
// only from 10.210.0.0/16 and fd00:210::/32, and is deleted when the test
// ends, pass or fail. Helpers that send traffic refuse any other destination.
//
// The helpers shell out to iproute2 (`ip`) and run code inside a namespace
// on a dedicated OS thread (see NS.Do), so they need root: call RequireRoot
// first. Test helpers that take a testing.TB must be called from the test's
// own goroutine, as t.Fatal requires.
package netnstest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// Prefixes every test address comes from (see DESIGN.md, "Test network
// conventions").
var (
	Prefix4 = mustPrefix("10.210.0.0/16")
	Prefix6 = mustPrefix("fd00:210::/32")
)

// NamePrefix starts the name of every namespace this package creates.
const NamePrefix = "moat-t-"

// inCI reports whether the suite runs in CI, where a missing tool or
// privilege is a broken setup script, not a reason to skip.
func inCI() bool { return os.Getenv("CI") != "" }

func skipOrFail(t testing.TB, msg string) {
	t.Helper()
	if inCI() {
		t.Fatalf("%s (CI is set, so this fails instead of skipping)", msg)
	}
	t.Skip(msg)
}

// RequireRoot skips the test unless it runs as root with iproute2 installed.
// In CI (CI set in the environment) it fails instead, so a broken setup
// cannot hide behind skipped tests.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "integration test: needs root to create network namespaces (CI runs as root; try: sudo go test ./...)")
	}
	if _, err := lookTool("ip"); err != nil {
		skipOrFail(t, "integration test: needs `ip` from iproute2 (run scripts/setup.sh)")
	}
}

// RequireCommands skips the test (fails it in CI) unless every named
// program is installed, e.g. RequireCommands(t, "nft", "hping3").
func RequireCommands(t testing.TB, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := lookTool(name); err != nil {
			skipOrFail(t, fmt.Sprintf("integration test: needs %q installed (run scripts/setup.sh)", name))
		}
	}
}

// lookTool finds a program in PATH and then in the sbin directories, which
// a non-login root shell or CI may leave out of PATH.
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	if strings.ContainsRune(name, '/') {
		return "", fmt.Errorf("netnstest: %s: not found", name)
	}
	for _, dir := range []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("netnstest: %s: not in PATH, /usr/sbin or /sbin: install it (scripts/setup.sh)", name)
}

// NS is one named network namespace, deleted when the test that created it
// ends.
type NS struct {
	Name   string
	handle netns.NsHandle
	ip     string
}

// created records every namespace this process made, so its own tests can
// prove cleanup without tripping over other test binaries' namespaces.
var created struct {
	sync.Mutex
	names []string
}

// New creates a namespace with loopback up and registers its deletion with
// t.Cleanup. Cleanups run last-in first-out, so processes, listeners and
// links made after New are gone before the namespace is deleted.
//
// ICMP rate limits are lifted inside it, so every probe of a closed port
// is answered, and IPv6 duplicate address detection is off, so addresses
// are usable at once.
func New(t testing.TB) *NS {
	t.Helper()
	RequireRoot(t)
	ip, err := lookTool("ip")
	if err != nil {
		t.Fatal(err)
	}
	n := &NS{Name: NamePrefix + randHex(4), ip: ip, handle: -1}
	if out, err := exec.Command(ip, "netns", "add", n.Name).CombinedOutput(); err != nil {
		t.Fatalf("netnstest: ip netns add %s: %v\n%s", n.Name, err, out)
	}
	created.Lock()
	created.names = append(created.names, n.Name)
	created.Unlock()
	t.Cleanup(func() {
		if n.handle >= 0 {
			_ = n.handle.Close()
		}
		if out, err := exec.Command(ip, "netns", "del", n.Name).CombinedOutput(); err != nil {
			t.Errorf("netnstest: ip netns del %s: %v\n%s", n.Name, err, out)
		}
	})
	h, err := netns.GetFromName(n.Name)
	if err != nil {
		t.Fatalf("netnstest: open namespace %s: %v", n.Name, err)
	}
	n.handle = h
	n.IP(t, "link", "set", "lo", "up")
	n.tune(t)
	return n
}

// tune writes the namespace's sysctls. They are per namespace, so nothing
// outside it changes. Failures are logged, not fatal: an older kernel may
// lack some knobs, and the tests still work, only slower or less exact.
func (n *NS) tune(t testing.TB) {
	t.Helper()
	settings := []struct{ key, val string }{
		{"net/ipv6/conf/all/accept_dad", "0"},
		{"net/ipv6/conf/default/accept_dad", "0"},
		{"net/ipv4/icmp_ratelimit", "0"},
		{"net/ipv6/icmp/ratelimit", "0"},
		// The namespace-wide ICMP budget otherwise caps errors at 1000/s
		// with a burst of 50: a scan test would miss answers.
		{"net/ipv4/icmp_msgs_per_sec", "1000000"},
		{"net/ipv4/icmp_msgs_burst", "1000000"},
	}
	var errs []error
	err := n.Do(func() error {
		for _, s := range settings {
			if err := os.WriteFile("/proc/sys/"+s.key, []byte(s.val), 0o644); err != nil {
				errs = append(errs, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range errs {
		t.Logf("netnstest: %s: sysctl: %v (continuing)", n.Name, err)
	}
}

// Fd returns an open file descriptor for the namespace, for
// nftables.New(nftables.WithNetNSFd(fd)) or netlink sockets. It stays open
// until the test ends; do not close it.
func (n *NS) Fd() int { return int(n.handle) }

// Path is the namespace's bind mount, as `ip netns` made it.
func (n *NS) Path() string { return "/run/netns/" + n.Name }

// String returns the namespace name, for messages.
func (n *NS) String() string { return n.Name }

// Run runs a command inside the namespace (`ip netns exec`) and returns its
// combined output; the test fails with that output if the command does.
func (n *NS) Run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := n.RunErr(args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return out
}

// RunErr runs a command inside the namespace and returns its combined
// output and any error.
func (n *NS) RunErr(args ...string) (string, error) {
	return n.run(nil, args...)
}

// Nft loads an nft script (the syntax of `nft -f`) into the namespace in
// one transaction.
func (n *NS) Nft(t testing.TB, script string) {
	t.Helper()
	out, err := n.run(strings.NewReader(script), "nft", "-f", "-")
	if err != nil {
		t.Fatalf("%v\n%s\nscript:\n%s", err, out, script)
	}
}

// IP runs `ip -n NAME args...`, which is cheaper than Run because it needs
// no mount namespace.
func (n *NS) IP(t testing.TB, args ...string) string {
	t.Helper()
	full := append([]string{"-n", n.Name}, args...)
	out, err := runIP(n.ip, full...)
	if err != nil {
		t.Fatalf("netnstest: ip %s: %v\n%s", strings.Join(full, " "), err, out)
	}
	return out
}

func runIP(ip string, args ...string) (string, error) {
	out, err := exec.Command(ip, args...).CombinedOutput()
	return string(out), err
}

func (n *NS) run(stdin *strings.Reader, args ...string) (string, error) {
	if len(args) == 0 {
		return "", errors.New("netnstest: Run: no command given")
	}
	prog, err := lookTool(args[0])
	if err != nil {
		return "", err
	}
	cmd := exec.Command(n.ip, append([]string{"netns", "exec", n.Name, prog}, args[1:]...)...)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("netnstest: in %s: %s: %w", n.Name, strings.Join(args, " "), err)
	}
	return out.String(), nil
}

// Do runs fn on an OS thread switched into the namespace, so sockets fn
// creates (net.Listen, net.Dial, netlink) belong to the namespace and keep
// belonging to it after Do returns.
//
// Goroutines that fn starts run in the original namespace: create sockets
// in fn itself. fn must not call t.Fatal or t.FailNow (it runs on another
// goroutine): return an error instead. A panic in fn is re-raised in the
// caller.
func (n *NS) Do(fn func() error) error {
	type result struct {
		err   error
		panic any
	}
	done := make(chan result, 1)
	go func() {
		// Never unlocked on purpose: the runtime ends a locked thread when
		// its goroutine exits, so no other goroutine can ever be scheduled
		// in this namespace, even if switching back would have failed.
		runtime.LockOSThread()
		var r result
		returned := false
		defer func() {
			if !returned {
				if r.panic = recover(); r.panic == nil {
					r.err = errors.New("netnstest: Do: fn called runtime.Goexit (t.FailNow?): return an error instead")
				}
			}
			done <- r
		}()
		if err := netns.Set(n.handle); err != nil {
			r.err = fmt.Errorf("netnstest: enter namespace %s: %w", n.Name, err)
		} else {
			r.err = fn()
		}
		returned = true
	}()
	r := <-done
	if r.panic != nil {
		panic(r.panic)
	}
	return r.err
}

// Eventually polls cond until it is true, failing the test after timeout.
// what completes "timed out waiting for ...".
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(wait)
	}
}

func randHex(nbytes int) string {
	b := make([]byte, nbytes)
	_, _ = rand.Read(b) // never fails on Linux (Go 1.24+ crashes instead)
	return hex.EncodeToString(b)
}

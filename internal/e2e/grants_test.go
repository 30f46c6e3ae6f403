package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/daemon"
	"github.com/moat-fw/moat/internal/netnstest"
)

// grantDoorsTOML has a kernel-mode door ("kern", opening closedPort) and a
// daemon-mode door ("hook", opening 9600, with start and stop commands
// that append to a file).
const grantDoorsTOML = `
[[door]]
name = "kern"
sequence = ["tcp/7000", "tcp/7100", "udp/7200"]
seq_timeout = "5s"
open = ["tcp/%d"]
open_for = "%s"
close_sequence = ["udp/7400", "udp/7500"]

[[door]]
name = "hook"
sequence = ["tcp/7300", "udp/7600"]
seq_timeout = "5s"
open = ["tcp/9600"]
open_for = "%s"
start_command = [%q, "open", "%%IP%%", "%%DOOR%%"]
stop_command = [%q, "close", "%%IP%%", "%%DOOR%%"]
`

const hookPort = 9600

type grantHost struct {
	*host
	hookLog string
	hook    string
}

func newGrantHost(t *testing.T, openFor string, extra string) *grantHost {
	t.Helper()
	netnstest.RequireCommands(t, "knock")
	h := &grantHost{host: newHost(t, "")}
	h.hook = filepath.Join(h.dir, "hook")
	h.hookLog = filepath.Join(h.dir, "hook.log")
	if err := os.WriteFile(h.hook, []byte("#!/bin/sh\necho \"$@\" >> "+h.hookLog+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	h.server.ListenTCP(t, netip.AddrPortFrom(h.link.A6, hookPort))
	h.writeConfig(h.doors(openFor) + extra)
	return h
}

func (h *grantHost) doors(openFor string) string {
	return fmt.Sprintf("open = [\"tcp/%d\"]\n", openPort) + fmt.Sprintf(grantDoorsTOML, closedPort, openFor, openFor, h.hook, h.hook)
}

// openBoth knocks the kernel door open from B4 and the daemon door from B6.
func (h *grantHost) openBoth(t *testing.T) {
	t.Helper()
	h.knock(t, h.link.A4.String(), "7000", "7100", "7200:udp")
	h.knock(t, "-6", h.link.A6.String(), "7300", "7600:udp")
	h.eventually("the kernel-mode door to open", h.link.B4, closedPort, netnstest.Connected)
	h.eventually("the daemon-mode door to open", h.link.B6, hookPort, netnstest.Connected)
}

func (h *grantHost) hookLines() string {
	b, _ := os.ReadFile(h.hookLog)
	return string(b)
}

// reloaded waits until moat logged one more "config applied" than before.
func (h *grantHost) reloaded(t *testing.T, before int) {
	t.Helper()
	netnstest.Eventually(t, 10*time.Second, "the reload", func() bool {
		return strings.Count(h.proc.Output(), "config applied") > before
	})
}

// A grant, kernel or daemon mode, survives SIGHUP, `moat firewall apply`
// and a restart: a new connection within open_for still gets in, and
// after open_for none does. The daemon door's start command ran once and
// its stop command once, at the end.
func TestGrantsSurviveReloadApplyAndRestart(t *testing.T) {
	h := newGrantHost(t, "25s", "")
	h.start()
	opened := time.Now()
	h.openBoth(t)
	for _, step := range []string{"SIGHUP", "firewall apply", "restart"} {
		switch step {
		case "SIGHUP":
			n := strings.Count(h.proc.Output(), "config applied")
			if err := h.proc.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			h.reloaded(t, n)
		case "firewall apply":
			h.moat("firewall", "apply")
		case "restart":
			h.restart()
		}
		if got := h.client.DialTCP(t, h.link.B4, netip.AddrPortFrom(h.link.A4, closedPort), patient); got != netnstest.Connected {
			t.Fatalf("after %s: the kernel-mode door's grant is gone (%s)", step, got)
		}
		if got := h.client.DialTCP(t, h.link.B6, netip.AddrPortFrom(h.link.A6, hookPort), patient); got != netnstest.Connected {
			t.Fatalf("after %s: the daemon-mode door's grant is gone (%s)", step, got)
		}
		// Only the knocker: the door stays shut to everyone else.
		h.expect(h.link.B6, closedPort, netnstest.TimedOut)
	}
	if time.Since(opened) > 20*time.Second {
		t.Fatalf("the steps took %v, too close to open_for (25s) to prove anything", time.Since(opened))
	}
	// After open_for both close, once.
	for _, c := range []struct {
		src  netip.Addr
		dst  netip.Addr
		port uint16
	}{{h.link.B4, h.link.A4, closedPort}, {h.link.B6, h.link.A6, hookPort}} {
		// A patient dial: a quick one can time out on a loaded machine
		// while the grant still holds, which would pass for its end.
		netnstest.Eventually(t, 30*time.Second, fmt.Sprintf("the grant to %d to end", c.port), func() bool {
			return h.client.DialTCP(t, c.src, netip.AddrPortFrom(c.dst, c.port), patient) == netnstest.TimedOut
		})
	}
	if time.Since(opened) < 24*time.Second {
		t.Fatalf("a grant ended after %v, before open_for (25s)", time.Since(opened))
	}
	netnstest.Eventually(t, 5*time.Second, "the stop command", func() bool { return strings.Contains(h.hookLines(), "close") })
	time.Sleep(time.Second)
	if got, want := h.hookLines(), "open "+h.link.B6.String()+" hook\nclose "+h.link.B6.String()+" hook\n"; got != want {
		t.Fatalf("door commands:\n%s\nwant once each:\n%s", got, want)
	}
}

// A reload that removes the doors ends their grants, runs the daemon
// door's stop command exactly once, and every opening and closing (the
// kernel door's seen from the kernel) is in `moat door log` and, knockd
// style, in [doors] log_file.
func TestRemovedDoorEndsGrantsAndDoorLog(t *testing.T) {
	knockLog := filepath.Join(t.TempDir(), "knock.log")
	h := newGrantHost(t, "30s", fmt.Sprintf("\n[doors]\nlog_file = %q\n", knockLog))
	h.start()
	h.openBoth(t)
	// The close sequence ends the kernel door's grant; a knock opens it again.
	h.knock(t, h.link.A4.String(), "7400:udp", "7500:udp")
	h.expect(h.link.B4, closedPort, netnstest.TimedOut)
	h.knock(t, h.link.A4.String(), "7000", "7100", "7200:udp")
	h.eventually("the kernel-mode door to open again", h.link.B4, closedPort, netnstest.Connected)
	if out := h.moat("grant", "list"); !strings.Contains(out, "kern") || !strings.Contains(out, "kernel") || !strings.Contains(out, "daemon") {
		t.Fatalf("grant list:\n%s", out)
	}

	// Remove both doors.
	h.writeConfig(fmt.Sprintf("open = [\"tcp/%d\"]\n\n[doors]\nlog_file = %q\n", openPort, knockLog))
	h.moat("firewall", "apply")
	h.expect(h.link.B4, closedPort, netnstest.TimedOut)
	h.expect(h.link.B6, hookPort, netnstest.TimedOut)
	netnstest.Eventually(t, 5*time.Second, "the stop command", func() bool { return strings.Contains(h.hookLines(), "close") })
	// Another reload, and time for the expiry loop and the kernel read:
	// neither ends the grant a second time.
	n := strings.Count(h.proc.Output(), "config applied")
	if err := h.proc.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	h.reloaded(t, n)
	time.Sleep(3 * time.Second)
	if got, want := h.hookLines(), "open "+h.link.B6.String()+" hook\nclose "+h.link.B6.String()+" hook\n"; got != want {
		t.Fatalf("door commands:\n%s\nwant the stop command exactly once:\n%s", got, want)
	}
	if out := h.moat("grant", "list", "--json"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("grant list after the doors were removed:\n%s", out)
	}

	var evs []daemon.DoorEvent
	out := h.moat("door", "log", "--json")
	if err := json.Unmarshal([]byte(out), &evs); err != nil {
		t.Fatalf("door log --json: %v\n%s", err, out)
	}
	var got []string
	for _, e := range evs {
		got = append(got, fmt.Sprintf("%s %s %s %s %s [%s]", e.Door, e.Addr, e.Action, e.Mode, strings.Join(e.Ports, " "), e.Why))
		if e.Action == daemon.ActionOpened && e.Until.Sub(e.At) != 30*time.Second {
			t.Errorf("opening %+v: until is not open_for (30s) after it", e)
		}
	}
	b4, b6 := h.link.B4.String(), h.link.B6.String()
	kernOpen := fmt.Sprintf("kern %s opened kernel tcp/%d [knock verified by the kernel]", b4, closedPort)
	want := []string{
		kernOpen,
		fmt.Sprintf("hook %s opened daemon tcp/9600 [knock verified by the daemon]", b6),
		fmt.Sprintf("kern %s closed kernel tcp/%d [close sequence]", b4, closedPort),
		kernOpen,
	}
	removed := []string{
		fmt.Sprintf("hook %s closed daemon tcp/9600 [door removed from the config]", b6),
		fmt.Sprintf("kern %s closed kernel tcp/%d [door removed from the config]", b4, closedPort),
	}
	if len(got) != 6 || strings.Join(got[:4], "\n") != strings.Join(want, "\n") ||
		!(got[4] == removed[0] && got[5] == removed[1] || got[4] == removed[1] && got[5] == removed[0]) {
		t.Fatalf("door log:\n%s\nwant:\n%s\n(then, in either order)\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"), strings.Join(removed, "\n"))
	}

	data, err := os.ReadFile(knockLog)
	if err != nil {
		t.Fatal(err)
	}
	stamp := `\[\d{4}-\d\d-\d\d \d\d:\d\d\] `
	for _, re := range []string{
		`(?m)^` + stamp + regexp.QuoteMeta(b4) + `: kern: OPEN SESAME$`,
		`(?m)^` + stamp + regexp.QuoteMeta(b6) + `: hook: OPEN SESAME$`,
		`(?m)^` + stamp + `hook: running command: ` + regexp.QuoteMeta(h.hook+" open "+b6+" hook") + `$`,
		`(?m)^` + stamp + regexp.QuoteMeta(b4) + `: kern: closed \(close sequence\)$`,
		`(?m)^` + stamp + regexp.QuoteMeta(b6) + `: hook: closed \(door removed from the config\)$`,
		`(?m)^` + stamp + `hook: running command: ` + regexp.QuoteMeta(h.hook+" close "+b6+" hook") + `$`,
	} {
		if !regexp.MustCompile(re).Match(data) {
			t.Errorf("log_file lacks a line matching %s:\n%s", re, data)
		}
	}
}

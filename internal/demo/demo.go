// Package demo is `moat demo`: it builds a throwaway lab of network
// namespaces on this machine (a server running moat with a real OpenSSH
// behind a knock door, a client that knows the knock, an attacker, and
// their gateway), plays the attacks moat is for, narrates what moat saw
// and did, and removes the lab again, on Ctrl-C too. Nothing outside the
// lab is touched: its namespaces are named moat-demo-*, its addresses are
// in 10.210.99.0/24, and its moat is a child process with its own config
// and state in a temp directory.
package demo

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moat-fw/moat/internal/control"
	"github.com/moat-fw/moat/internal/daemon"
	"github.com/moat-fw/moat/internal/events"
	"github.com/moat-fw/moat/internal/page"
)

// Options configure a demo run.
type Options struct {
	Out  io.Writer
	Moat string // the moat binary to run as the lab's daemon (this one)
	// PagePort is the loopback port on this machine where the lab's live
	// page is offered (forwarded into the lab); 0: not offered.
	PagePort int
	// Keep leaves the lab up after the scenarios until ctx ends (Ctrl-C),
	// for a look at the live page.
	Keep bool
}

// Tools the lab runs, and the Debian packages they come in.
var tools = []struct{ bin, pkg string }{
	{"ip", "iproute2"}, {"sshd", "openssh-server"}, {"ssh", "openssh-client"}, {"ssh-keygen", "openssh-client"},
	{"nmap", "nmap"}, {"hping3", "hping3"},
}

const (
	pagePortInLab = 9734
	publicSSH     = 2222 // sshd's port open to everyone: where guessers guess
	doorSSH       = 22   // sshd's port behind the knock door
)

var knocks = []string{"7000", "8000", "9000:udp"}

// demo is one run.
type demo struct {
	o     Options
	lab   *lab
	ctl   *control.Client
	token string
	pr    *printer
	fails int
}

// printer serializes the narration and the events arriving meanwhile.
type printer struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *printer) f(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format, args...)
}

// Run plays the demo. It returns an error if the lab could not be built
// or a scenario did not go as moat promises.
func Run(ctx context.Context, o Options) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("the demo builds network namespaces and runs a firewall in them: run it as root (sudo moat demo)")
	}
	var missing []string
	for _, t := range tools {
		if _, err := exec.LookPath(t.bin); err != nil && !slices.Contains(missing, t.pkg) {
			missing = append(missing, t.pkg)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("the demo needs %s: apt-get install %s", strings.Join(missing, ", "), strings.Join(missing, " "))
	}
	if _, err := os.Stat("/run/sshd"); err != nil {
		return errors.New("sshd needs its privilege separation directory /run/sshd (made when the ssh service starts): mkdir -p /run/sshd")
	}
	start := time.Now()
	l, err := newLab()
	if err != nil {
		return err
	}
	d := &demo{o: o, lab: l, pr: &printer{w: o.Out}}
	d.pr.f("moat demo: a throwaway lab on this machine; nothing outside it is touched.\n\n")
	// Cleanup runs whatever happened, on Ctrl-C too: ctx ends, every
	// step returns, and this undoes what the lab made.
	defer func() {
		c := l.cleanup()
		d.pr.f("\ncleaned up: namespaces %s; processes %s; %s\n", strings.Join(c.Namespaces, " "), pidList(c.PIDs), c.Dir)
		if len(c.Errs) > 0 {
			err = errors.Join(append([]error{err}, c.Errs...)...)
		}
	}()
	if err := l.build(ctx); err != nil {
		return fmt.Errorf("building the lab: %w", err)
	}
	d.pr.f("  lab     namespaces %s\n", strings.Join([]string{l.name("lan"), l.name("srv"), l.name("cli"), l.name("att")}, " "))
	d.pr.f("          files in %s\n", l.dir)
	d.pr.f("  server  %s: moat, and OpenSSH on tcp/%d (open to all) and tcp/%d (behind a knock door)\n", server, publicSSH, doorSSH)
	d.pr.f("  client  %s: knows the knock    attacker %s, %s, %s    gateway %s\n\n", client, scanner, guesser, sweeper, gateway)

	if err := d.startServer(ctx); err != nil {
		return err
	}
	stopPage := d.offerPage(ctx)
	defer stopPage()
	feedCtx, stopFeed := context.WithCancel(ctx)
	feedDone := d.narrateEvents(feedCtx)
	defer func() { stopFeed(); <-feedDone }()

	for i, s := range []struct {
		title string
		play  func(context.Context) error
	}{
		{"A port scan gets blocked", d.scan},
		{"A password guesser gets banned", d.guess},
		{"The client knocks and logs in with ssh", d.knockAndLogin},
		{"The attacker's sweep over the knock ports never opens the door", d.sweep},
		{"A scan forged from the gateway's address is ignored", d.forged},
	} {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		d.pr.f("\n[%d/5] %s\n", i+1, s.title)
		t0 := time.Now()
		if err := s.play(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%s: %w", s.title, err)
		}
		d.pr.f("  (%.1fs)\n", time.Since(t0).Seconds())
	}
	d.summary(ctx)
	d.pr.f("\nall five scenarios played in %.1fs", time.Since(start).Seconds())
	if d.fails > 0 {
		d.pr.f(", %d checks FAILED\n", d.fails)
		for _, f := range []string{"moat.log", "auth.log"} {
			d.pr.f("\nthe end of the lab's %s:\n%s\n", f, tail(filepath.Join(l.dir, f)))
		}
		return fmt.Errorf("%d checks failed; moat's log is kept in the output above", d.fails)
	}
	d.pr.f(", every check passed.\n")
	if o.Keep {
		d.pr.f("\nthe lab stays up (--keep): look at the live page, then press Ctrl-C to remove the lab.\n")
		<-ctx.Done()
	}
	return nil
}

func pidList(pids []int) string {
	if len(pids) == 0 {
		return "none"
	}
	s := make([]string, len(pids))
	for i, p := range pids {
		s[i] = strconv.Itoa(p)
	}
	return strings.Join(s, " ")
}

// check prints a result line; a failed check fails the demo at its end.
func (d *demo) check(ok bool, good, bad string) {
	if ok {
		d.pr.f("  ✓ %s\n", good)
		return
	}
	d.fails++
	d.pr.f("  ✗ %s\n", bad)
}

func (d *demo) step(format string, args ...any) { d.pr.f("  ▸ "+format+"\n", args...) }

// config is the lab server's moat.toml.
func (d *demo) config() string {
	dir := d.lab.dir
	return fmt.Sprintf(`# The lab server's moat: written by moat demo.
[daemon]
state_dir = %q
socket = %q
on_exit = "remove"
reconcile_every = "1m"

[firewall]
open = ["tcp/%d"]

[login]
sources = [%q]
max_retry = 3
find_time = "10m"
ban_time = "10m"

[scan]
window = "5m"

[[door]]
name = "ssh"
sequence = ["tcp/7000", "tcp/8000", "udp/9000"]
seq_timeout = "5s"
open = ["tcp/%d"]
open_for = "30s"

[page]
listen = "127.0.0.1:%d"
`, filepath.Join(dir, "state"), filepath.Join(dir, "moat.sock"), publicSSH, filepath.Join(dir, "auth.log"), doorSSH, pagePortInLab)
}

// startServer starts sshd and moat in the server's namespace.
func (d *demo) startServer(ctx context.Context) error {
	if err := d.startSSHD(ctx); err != nil {
		return fmt.Errorf("starting the lab's sshd: %w", err)
	}
	cfg := filepath.Join(d.lab.dir, "moat.toml")
	if err := os.WriteFile(cfg, []byte(d.config()), 0o600); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(d.lab.dir, "moat.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	// --force: the lockout guard protects the SSH session this runs in,
	// which lives outside the lab and cannot be cut off by its firewall.
	cmd := d.lab.cmd(context.WithoutCancel(ctx), "srv", d.o.Moat, "--config", cfg, "run", "--force")
	cmd.Stdout, cmd.Stderr = logf, logf
	// moat asks `sshd -T` where sshd listens, to know a handshake with
	// sshd when it sees one; in the lab that is the lab's sshd, not this
	// host's: an sshd first in PATH answers with the lab's config.
	bin := filepath.Join(d.lab.dir, "bin")
	if err := os.MkdirAll(bin, 0o700); err != nil {
		return err
	}
	sshd, err := exec.LookPath("sshd")
	if err != nil {
		return err
	}
	wrapper := fmt.Sprintf("#!/bin/sh\nexec %s -f %s \"$@\"\n", sshd, filepath.Join(d.lab.dir, "sshd", "sshd_config"))
	if err := os.WriteFile(filepath.Join(bin, "sshd"), []byte(wrapper), 0o700); err != nil {
		return err
	}
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET=", "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	if err := d.lab.start(cmd); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	d.ctl = control.NewClient(filepath.Join(d.lab.dir, "moat.sock"))
	deadline := time.Now().Add(15 * time.Second)
	for {
		var st daemon.Status
		err := d.ctl.Call(ctx, http.MethodGet, daemon.RouteStatus, nil, &st)
		if err == nil {
			break
		}
		select {
		case <-exited:
			return fmt.Errorf("the lab's moat exited:\n%s", tail(filepath.Join(d.lab.dir, "moat.log")))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the lab's moat did not answer on its socket: %w\n%s", err, tail(filepath.Join(d.lab.dir, "moat.log")))
		}
	}
	d.token, err = page.Token(filepath.Join(d.lab.dir, "state"))
	if err != nil {
		return err
	}
	d.pr.f("  moat    guarding the server (pid %d): only tcp/%d open, everything else dropped and watched\n", cmd.Process.Pid, publicSSH)
	return nil
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-20):], "\n")
}

// reach says whether a TCP connection from src (in role's namespace) to
// the server's port is accepted within timeout.
func (d *demo) reach(ctx context.Context, role string, src netip.Addr, port int, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := dialIn(ctx, d.lab.name(role), src, netip.AddrPortFrom(server, uint16(port)).String())
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// eventually polls cond until it holds or limit passes.
func eventually(ctx context.Context, limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (d *demo) bans(ctx context.Context) []daemon.EntryJSON {
	var list []daemon.EntryJSON
	_ = d.ctl.Call(ctx, http.MethodGet, daemon.RouteBans, nil, &list)
	return list
}

func (d *demo) banOf(ctx context.Context, a netip.Addr) (daemon.EntryJSON, bool) {
	for _, b := range d.bans(ctx) {
		if b.Addr == a.String() {
			return b, true
		}
	}
	return daemon.EntryJSON{}, false
}

func (d *demo) status(ctx context.Context) daemon.Status {
	var st daemon.Status
	_ = d.ctl.Call(ctx, http.MethodGet, daemon.RouteStatus, nil, &st)
	return st
}

// run runs a command in role's namespace to completion, within limit.
func (d *demo) run(ctx context.Context, limit time.Duration, role string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := d.lab.cmd(ctx, role, args...)
	cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (d *demo) scan(ctx context.Context) error {
	d.step("the attacker %s runs nmap -sS on ports 1-1000 of the server", scanner)
	if out, err := d.run(ctx, 30*time.Second, "att", "nmap", "-n", "-Pn", "-sS", "-p", "1-1000", "-T4", "--max-retries", "1",
		"--max-rtt-timeout", "100ms", "--min-rate", "2000", "-e", labIface, "-S", scanner.String(), server.String()); err != nil {
		return fmt.Errorf("nmap: %w\n%s", err, out)
	}
	d.step("nmap finished: the server showed it one open port and nothing else")
	var b daemon.EntryJSON
	banned := eventually(ctx, 10*time.Second, func() (ok bool) { b, ok = d.banOf(ctx, scanner); return ok && b.Origin == "scan" })
	d.check(banned, fmt.Sprintf("moat banned the scanner %s (%s)", scanner, b.Reason), "moat did not ban the scanner")
	d.check(!d.reach(ctx, "att", scanner, publicSSH, 500*time.Millisecond),
		fmt.Sprintf("the kernel now drops everything from %s, even tcp/%d", scanner, publicSSH), "the banned scanner still connects")
	d.check(d.reach(ctx, "cli", client, publicSSH, 2*time.Second), fmt.Sprintf("the client %s still connects to tcp/%d", client, publicSSH),
		"the client lost tcp/"+strconv.Itoa(publicSSH))
	return nil
}

func (d *demo) guess(ctx context.Context) error {
	for _, user := range []string{"root", "admin", "oracle", "test"} {
		if !d.reach(ctx, "att", guesser, publicSSH, 500*time.Millisecond) {
			d.step("%s tries ssh %s@server: no answer any more", guesser, user)
			break
		}
		ok := d.ssh(ctx, "att", guesser, user, publicSSH, "", "true")
		d.step("%s tries ssh %s@server on tcp/%d with a guessed password: %s", guesser, user, publicSSH, map[bool]string{true: "logged in?!", false: "refused"}[ok])
	}
	var b daemon.EntryJSON
	banned := eventually(ctx, 10*time.Second, func() (ok bool) { b, ok = d.banOf(ctx, guesser); return ok && b.Origin == "login" })
	d.check(banned, fmt.Sprintf("moat read sshd's log and banned %s after 3 failures (%s)", guesser, b.Reason),
		"moat did not ban the password guesser")
	d.check(!d.reach(ctx, "att", guesser, publicSSH, 500*time.Millisecond),
		fmt.Sprintf("%s cannot even reach sshd any more", guesser), "the banned guesser still connects")
	if l := d.status(ctx).Login; l != nil && len(l.TopUsers) > 0 {
		var users []string
		for _, u := range l.TopUsers {
			users = append(users, fmt.Sprintf("%s (%d)", u.User, u.Attempts))
		}
		d.step("user names tried: %s", strings.Join(users, ", "))
	}
	return nil
}

func (d *demo) knockAndLogin(ctx context.Context) error {
	d.check(!d.reach(ctx, "cli", client, doorSSH, 500*time.Millisecond),
		fmt.Sprintf("before knocking, tcp/%d does not answer the client: it looks like nothing is there", doorSSH), "tcp/22 answered before any knock")
	d.step("the client knocks: moat knock %s %s", server, strings.Join(knocks, " "))
	if out, err := d.run(ctx, 10*time.Second, "cli", append([]string{d.o.Moat, "knock", "--delay", "50", server.String()}, knocks...)...); err != nil {
		return fmt.Errorf("moat knock: %w\n%s", err, out)
	}
	var grants []daemon.GrantJSON
	opened := eventually(ctx, 5*time.Second, func() bool {
		grants = nil
		_ = d.ctl.Call(ctx, http.MethodGet, daemon.RouteGrants, nil, &grants)
		return slices.ContainsFunc(grants, func(g daemon.GrantJSON) bool { return g.Addr == client.String() })
	})
	left := 0.0
	for _, g := range grants {
		if g.Addr == client.String() {
			left = g.Seconds
		}
	}
	d.check(opened, fmt.Sprintf("the kernel checked the knock and opened tcp/%d for %s alone, for %.0fs", doorSSH, client, left), "the knock opened nothing")
	var out string
	ok := eventually(ctx, 5*time.Second, func() bool {
		out = ""
		return d.ssh(ctx, "cli", client, "root", doorSSH, filepath.Join(d.lab.dir, "client_key"), `echo "logged in as $(id -un), sshd pid $PPID"`, &out)
	})
	d.check(ok, "the client logged in with its key over ssh: "+strings.TrimSpace(out), "the client could not log in through the door")
	d.check(!d.reach(ctx, "att", sweeper, doorSSH, 500*time.Millisecond), fmt.Sprintf("the door is open for the client only: %s still sees nothing on tcp/%d", sweeper, doorSSH),
		"the door opened for everyone")
	return nil
}

func (d *demo) sweep(ctx context.Context) error {
	// Few enough probes to stay below the scan guard's ban, so it is the
	// door itself that holds.
	d.step("%s sweeps the ports around each knock, in order: tcp/6999-7001, tcp/7999-8001, udp/8999-9001", sweeper)
	if out, err := d.run(ctx, 30*time.Second, "att", "nmap", "-n", "-Pn", "-sS", "-sU", "-r", "-p", "T:6999-7001,7999-8001,U:8999-9001",
		"--max-retries", "0", "--max-rtt-timeout", "50ms", "-e", labIface, "-S", sweeper.String(), server.String()); err != nil {
		return fmt.Errorf("nmap: %w\n%s", err, out)
	}
	var grants []daemon.GrantJSON
	_ = d.ctl.Call(ctx, http.MethodGet, daemon.RouteGrants, nil, &grants)
	d.check(!slices.ContainsFunc(grants, func(g daemon.GrantJSON) bool { return g.Addr == sweeper.String() }),
		"no grant for the sweeper: every wrong port between the knocks started the sequence over", "the sweep opened the door")
	d.check(!d.reach(ctx, "att", sweeper, doorSSH, 500*time.Millisecond), fmt.Sprintf("tcp/%d stays shut to %s", doorSSH, sweeper), "the sweeper reaches tcp/22")
	for _, s := range d.status(ctx).Scan.Report.Sources {
		if s.Addr == sweeper {
			d.step("moat saw it: %d probes, scan types %s, danger level %d (bans start at 3)", s.Packets, strings.Join(s.Types, ","), s.Level)
		}
	}
	return nil
}

func (d *demo) forged(ctx context.Context) error {
	before := d.status(ctx)
	ignored := func(st daemon.Status) uint64 {
		if st.Scan == nil {
			return 0
		}
		return st.Scan.Report.Totals.Ignored
	}
	d.step("the attacker sends 300 SYNs to ports 1-300 with the gateway's address %s as their source (hping3 -a)", gateway)
	if out, err := d.run(ctx, 20*time.Second, "att", "hping3", "-q", "-S", "-a", gateway.String(), "-p", "++1", "-c", "300", "-i", "u2000",
		server.String()); err != nil && !strings.Contains(out, "packets transmitted") {
		return fmt.Errorf("hping3: %w\n%s", err, out)
	}
	var after daemon.Status
	counted := eventually(ctx, 5*time.Second, func() bool { after = d.status(ctx); return ignored(after) >= ignored(before)+100 })
	d.check(counted, fmt.Sprintf("moat saw %d probes from %s and scored none: the gateway is protected", ignored(after)-ignored(before), gateway),
		"moat did not see the forged scan")
	_, banned := d.banOf(ctx, gateway)
	d.check(!banned, "the gateway is not banned: a forged source cannot aim moat at it", "moat banned the gateway")
	for _, p := range after.Protected {
		if p.Addr == gateway.String() {
			d.step("protected: %s (%s)", gateway, p.Why)
		}
	}
	out, err := d.run(ctx, 5*time.Second, "srv", "ping", "-c", "1", "-W", "1", gateway.String())
	d.check(err == nil, "the server still reaches its gateway", "the server lost its gateway: "+strings.TrimSpace(out))
	return nil
}

// summary prints what moat holds at the end, as `moat status` would.
func (d *demo) summary(ctx context.Context) {
	st := d.status(ctx)
	d.pr.f("\nwhat moat holds now (moat status):\n")
	var origins []string
	for o, n := range st.BansByOrigin {
		origins = append(origins, fmt.Sprintf("%s %d", o, n))
	}
	slices.Sort(origins)
	d.pr.f("  bans        %d (%s)\n", st.Bans, strings.Join(origins, ", "))
	if st.Scan != nil {
		t := st.Scan.Report.Totals
		d.pr.f("  scan guard  %d probes scored, %d ignored (protected sources), %d scanners banned\n", t.Probes, t.Ignored, st.Scan.Blocked)
	}
	if st.Login != nil {
		d.pr.f("  login guard %d failures counted, %d bans\n", st.Login.Events, st.Login.Banned)
	}
}

// narrateEvents prints what moat reports on its live page's feed as it
// happens. It reads the feed inside the lab, with the page's token.
func (d *demo) narrateEvents(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return dialIn(ctx, d.lab.name("srv"), netip.Addr{}, addr)
		},
	}}
	go func() {
		defer close(done)
		defer hc.CloseIdleConnections()
		var resp *http.Response
		ok := eventually(ctx, 5*time.Second, func() bool {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/events", pagePortInLab), nil)
			req.Header.Set("Authorization", "Bearer "+d.token)
			r, err := hc.Do(req)
			if err != nil {
				return false
			}
			if r.StatusCode != http.StatusOK {
				r.Body.Close()
				return false
			}
			resp = r
			return true
		})
		if !ok {
			if ctx.Err() == nil {
				d.pr.f("  (moat's event feed is not reachable; the scenarios go on without it)\n")
			}
			return
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var e events.Event
			if json.Unmarshal([]byte(data), &e) == nil {
				d.pr.f("    moat ▸ %s\n", describe(e))
			}
		}
	}()
	return done
}

// describe is one event as the narration tells it.
func describe(e events.Event) string {
	addr := e.Prefix.String()
	if e.Prefix.IsSingleIP() {
		addr = e.Prefix.Addr().String()
	}
	switch e.Kind {
	case events.Ban:
		s := fmt.Sprintf("banned %s until %s (%s", addr, e.Until.Format("15:04:05"), e.Origin)
		if e.Reason != "" {
			s += ": " + e.Reason
		}
		return s + ")"
	case events.Unban:
		return "lifted the ban on " + addr
	case events.Scan:
		return fmt.Sprintf("scan from %s reached danger level %d (%s; %d probes, %d ports)", addr, e.Level, e.Types, e.Probes, e.NPorts)
	case events.Door:
		return fmt.Sprintf("door %s %s for %s: %s", e.Door, e.Action, addr, strings.Join(e.Ports, " "))
	}
	return string(e.Kind) + " " + addr
}

// offerPage forwards a loopback port on this machine to the lab server's
// live page, so a browser here (or through an SSH tunnel) can open it.
func (d *demo) offerPage(ctx context.Context) (stop func()) {
	if d.o.PagePort == 0 {
		return func() {}
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(d.o.PagePort)))
	if err != nil {
		d.pr.f("  page    not offered: %v (choose another port with --page-port)\n", err)
		return func() {}
	}
	d.pr.f("  page    the lab's live page: %s\n", page.URL(ln.Addr().String(), d.token))
	d.pr.f("          (from another machine: ssh -L %d:127.0.0.1:%d THIS-HOST, then open it there; --keep keeps the lab up)\n", d.o.PagePort, d.o.PagePort)
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	track := func(c net.Conn, add bool) {
		mu.Lock()
		defer mu.Unlock()
		if add {
			conns[c] = struct{}{}
		} else {
			delete(conns, c)
		}
	}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				track(c, true)
				defer track(c, false)
				up, err := dialIn(ctx, d.lab.name("srv"), netip.Addr{}, fmt.Sprintf("127.0.0.1:%d", pagePortInLab))
				if err != nil {
					return
				}
				defer up.Close()
				track(up, true)
				defer track(up, false)
				wg.Go(func() { _, _ = io.Copy(up, c); up.Close() })
				_, _ = io.Copy(c, up)
			})
		}
	})
	return func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}
}

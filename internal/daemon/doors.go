package daemon

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/knock"
	"github.com/moat-fw/moat/internal/nflog"
	"github.com/moat-fw/moat/internal/packet"
)

// commandTimeout bounds a door's start or stop command.
const commandTimeout = 10 * time.Second

// doorEngine verifies daemon-mode doors from the packets the kernel hands
// over, opens grants in the kernel, and runs the doors' commands.
type doorEngine struct {
	log  *slog.Logger
	fw   *firewall.Applier
	ctx  context.Context // commands die with the daemon
	cmds sync.WaitGroup

	mu     sync.Mutex
	doors  []*daemonDoor
	grants map[grantKey]time.Time // open daemon-mode grants and when they end
	resets logLimiter
}

type daemonDoor struct {
	cfg config.Door
	v   *knock.Door
}

type grantKey struct {
	door string
	addr netip.Addr
}

func newDoorEngine(ctx context.Context, log *slog.Logger, fw *firewall.Applier, doors []config.Door) (*doorEngine, error) {
	e := &doorEngine{log: log, fw: fw, ctx: ctx, grants: map[grantKey]time.Time{}, resets: logLimiter{every: time.Second / 10}}
	for _, dc := range doors {
		if !dc.Daemon() {
			continue
		}
		dd := &daemonDoor{cfg: dc, v: knock.NewDoor(dc)}
		if dc.OneTimeSequences != "" {
			seq, err := nextOneTime(dc.OneTimeSequences)
			if err != nil {
				return nil, fmt.Errorf("door %q: %w", dc.Name, err)
			}
			dd.v.SetSequence(seq)
		}
		e.doors = append(e.doors, dd)
	}
	return e, nil
}

// adopt takes over the grants an engine of the previous config opened, so
// their stop commands still run after a reload.
func (e *doorEngine) adopt(old *doorEngine) {
	if old == nil {
		return
	}
	old.mu.Lock()
	defer old.mu.Unlock()
	for k, until := range old.grants {
		e.grants[k] = until
	}
}

// packet feeds one knock-related packet to every daemon-mode door.
func (e *doorEngine) packet(p *packet.Packet, now time.Time) {
	if e == nil {
		return
	}
	proto := config.Proto(p.Proto)
	if proto != config.TCP && proto != config.UDP {
		proto = 0 // still resets a knocking source
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, d := range e.doors {
		switch d.v.Observe(p.Src, proto, p.DstPort, uint8(p.TCPFlags), now) {
		case knock.Completed:
			// Whatever the scan guard thinks of the source: its score
			// comes from packets anyone can forge with that source (five
			// forged SYNs locked a victim out of every door), while a
			// correct sequence is the secret itself. A banned source
			// never gets here: the ban sets drop its packets first.
			e.open(d, p.Src, now)
		case knock.Closed:
			e.close(d, p.Src, "close sequence")
		case knock.Reset:
			if e.resets.allow(now) {
				e.log.Info("knock reset", "door", d.cfg.Name, "addr", p.Src, "by", fmt.Sprintf("%d/%d", p.Proto, p.DstPort))
			}
		}
	}
}

func grantsFor(d config.Door, a netip.Addr, withTimeout bool) []firewall.Grant {
	var out []firewall.Grant
	for _, p := range d.Open {
		for port := int(p.From); port <= int(p.To); port++ {
			g := firewall.Grant{Addr: a, Proto: uint8(p.Proto), Port: uint16(port)}
			if withTimeout {
				g.Timeout = d.OpenFor
			}
			out = append(out, g)
		}
	}
	return out
}

func (e *doorEngine) open(d *daemonDoor, a netip.Addr, now time.Time) {
	k := grantKey{d.cfg.Name, a}
	_, already := e.grants[k]
	if err := e.fw.UpdateGrants(nil, grantsFor(d.cfg, a, true)); err != nil {
		e.log.Error("door could not open", "door", d.cfg.Name, "addr", a, "err", err)
		return
	}
	e.grants[k] = now.Add(d.cfg.OpenFor)
	e.log.Info("door opened", "door", d.cfg.Name, "addr", a, "for", d.cfg.OpenFor, "mode", "daemon")
	if d.cfg.OneTimeSequences != "" {
		if err := consumeOneTime(d.cfg.OneTimeSequences); err != nil {
			e.log.Error("one-time sequence not consumed", "door", d.cfg.Name, "err", err)
		}
		seq, err := nextOneTime(d.cfg.OneTimeSequences)
		if err != nil {
			e.log.Warn("door has no one-time sequence left; it stays shut until the file has one", "door", d.cfg.Name, "err", err)
			seq = nil
		}
		d.v.SetSequence(seq)
	}
	if !already {
		e.run(d.cfg, d.cfg.StartCommand, a, "start_command")
	}
}

func (e *doorEngine) close(d *daemonDoor, a netip.Addr, why string) {
	k := grantKey{d.cfg.Name, a}
	if _, ok := e.grants[k]; !ok {
		return
	}
	delete(e.grants, k)
	if why != "expired" {
		if err := e.fw.UpdateGrants(grantsFor(d.cfg, a, false), nil); err != nil {
			e.log.Warn("door grant already gone from the kernel", "door", d.cfg.Name, "addr", a, "err", err)
		}
	}
	e.log.Info("door closed", "door", d.cfg.Name, "addr", a, "why", why)
	e.run(d.cfg, d.cfg.StopCommand, a, "stop_command")
}

// expire ends grants whose time is up (the kernel has already dropped
// their elements) and runs their stop commands.
func (e *doorEngine) expire(now time.Time) {
	if e == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for k, until := range e.grants {
		if now.Before(until) {
			continue
		}
		for _, d := range e.doors {
			if d.cfg.Name == k.door {
				e.close(d, k.addr, "expired")
			}
		}
	}
}

// run starts a door command as argv, never through a shell, with %IP% and
// %DOOR% replaced by values moat validated (an address it parsed, a name
// the config restricts to [a-z0-9_]).
func (e *doorEngine) run(d config.Door, argv []string, a netip.Addr, which string) {
	if len(argv) == 0 {
		return
	}
	args := make([]string, len(argv))
	for i, s := range argv {
		args[i] = strings.NewReplacer("%IP%", a.String(), "%DOOR%", d.Name).Replace(s)
	}
	e.cmds.Go(func() {
		ctx, cancel := context.WithTimeout(e.ctx, commandTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "MOAT_DOOR=" + d.Name, "MOAT_IP=" + a.String()}
		out, err := cmd.CombinedOutput()
		if len(out) > 4096 {
			out = out[:4096]
		}
		if err != nil {
			e.log.Error("door command failed", "door", d.Name, "command", which, "argv", args, "err", err, "output", string(out))
			return
		}
		e.log.Info("door command ran", "door", d.Name, "command", which, "argv", args, "output", string(out))
	})
}

// wait waits for commands still running (at shutdown).
func (e *doorEngine) wait() {
	if e != nil {
		e.cmds.Wait()
	}
}

// logLimiter lets one log line through per interval, so a flood of resets
// cannot flood the log.
type logLimiter struct {
	every time.Duration
	next  time.Time
}

func (l *logLimiter) allow(now time.Time) bool {
	if now.Before(l.next) {
		return false
	}
	l.next = now.Add(l.every)
	return true
}

// One-time sequences, in knockd's format: one sequence per line, knocks
// separated by commas or spaces, each "port" or "port:tcp" / "port:udp"
// (tcp by default); lines starting with '#' are used or comments. Using a
// line comments it out in place, as knockd does.

func nextOneTime(path string) ([]config.PortSpec, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("one_time_sequences: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		seq, err := parseOneTime(line)
		if err != nil {
			return nil, fmt.Errorf("%s: line %d: %w", path, n, err)
		}
		return seq, nil
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("%s: every sequence has been used", path)
}

func parseOneTime(line string) ([]config.PortSpec, error) {
	var seq []config.PortSpec
	for _, f := range strings.FieldsFunc(line, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		port, proto, _ := strings.Cut(f, ":")
		spec, err := config.ParsePortSpec(strings.ToLower(cmpOr(proto, "tcp")) + "/" + port)
		if err != nil || spec.From != spec.To {
			return nil, fmt.Errorf("knock %q: want port or port:tcp / port:udp", f)
		}
		seq = append(seq, spec)
	}
	if len(seq) == 0 || len(seq) > 32 {
		return nil, errors.New("want 1 to 32 knocks")
	}
	return seq, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// consumeOneTime comments out the first unused line. Unlike knockd, which
// overwrites the line's first character, it keeps the line whole, and
// writes a new file it renames into place, so a crash leaves the old or the
// new file and never half of one.
func consumeOneTime(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	for i, line := range lines {
		t := bytes.TrimSpace(line)
		if len(t) == 0 || t[0] == '#' {
			continue
		}
		lines[i] = append([]byte("#"), line...)
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		tmp := path + ".moat-tmp"
		if err := os.WriteFile(tmp, bytes.Join(lines, nil), fi.Mode().Perm()); err != nil {
			return err
		}
		return os.Rename(tmp, path)
	}
	return errors.New("no unused sequence to consume")
}

// intake receives the packets the ruleset logs and hands them to the door
// engine (and the scan guard, when it runs).
func (d *Daemon) intake(ctx context.Context, group uint16) error {
	c, err := nflog.Open(group)
	if err != nil {
		d.peers.down.Store(true)
		return err
	}
	defer c.Close()
	d.mu.Lock()
	d.nflog = c
	d.mu.Unlock()
	var p packet.Packet
	err = c.Receive(ctx, func(m *nflog.Message) { d.dispatch(m, &p) })
	if ctx.Err() != nil {
		return nil
	}
	d.peers.down.Store(true)
	return err
}

// The NFLOG prefixes intake dispatches on.
var (
	knockPrefix = []byte(firewall.KnockPrefix)
	peerPrefix  = []byte(firewall.SSHPeerPrefix)
	moatPrefix  = []byte(firewall.LogPrefix("")) // every prefix moat's ruleset logs with starts so
)

// dispatch hands one logged packet to whoever its prefix is for: the
// handshake evidence, the door engine, or the scan guard. p is scratch
// space, reused across calls.
func (d *Daemon) dispatch(m *nflog.Message, p *packet.Packet) {
	if !bytes.HasPrefix(m.Prefix, moatPrefix) {
		// Another ruleset logging to the same group: its packets are
		// not what moat dropped, and scoring them would let its rules
		// (or whoever they log) get addresses banned. Counted, so that
		// status shows the group is shared.
		d.foreign.Add(1)
		return
	}
	err := packet.Decode(m.Family, m.Payload, p)
	if err != nil && !errors.Is(err, packet.ErrTruncated) {
		return
	}
	if !p.Src.IsValid() {
		return
	}
	now := d.now()
	if bytes.Equal(m.Prefix, peerPrefix) {
		d.peers.record(p.Src, now)
		return
	}
	if bytes.Equal(m.Prefix, knockPrefix) {
		d.doors.Load().packet(p, now)
		return
	}
	if g := d.scan.Load(); g != nil && err == nil {
		g.packet(p, m.Prefix, now)
	}
}

// DoorJSON describes a door for `moat door list`.
type DoorJSON struct {
	Name     string   `json:"name"`
	Mode     string   `json:"mode"` // "kernel" or "daemon"
	Sequence []string `json:"sequence"`
	Open     []string `json:"open"`
	OpenFor  string   `json:"open_for"`
	Close    []string `json:"close_sequence,omitempty"`
	Pending  int      `json:"pending,omitempty"` // daemon mode: sources in the middle of a knock
}

// GrantJSON is an open grant for `moat grant list`.
type GrantJSON struct {
	Door    string  `json:"door"`
	Addr    string  `json:"addr"`
	Port    string  `json:"port"`
	Seconds float64 `json:"seconds_left"`
}

func specStrings(ps []config.PortSpec) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

func portName(proto uint8, port uint16) string {
	return config.PortSpec{Proto: config.Proto(proto), From: port, To: port}.String()
}

// doorsList describes every configured door.
func (d *Daemon) doorsList() []DoorJSON {
	d.mu.Lock()
	cfg := d.cur.Cfg
	d.mu.Unlock()
	eng := d.doors.Load()
	var out []DoorJSON
	for _, dc := range cfg.Doors {
		j := DoorJSON{Name: dc.Name, Mode: "kernel", Sequence: specStrings(dc.Sequence), Open: specStrings(dc.Open),
			OpenFor: dc.OpenFor.String(), Close: specStrings(dc.CloseSequence)}
		if dc.Daemon() {
			j.Mode = "daemon"
			if eng != nil {
				eng.mu.Lock()
				for _, dd := range eng.doors {
					if dd.cfg.Name == dc.Name {
						j.Pending = dd.v.Pending()
					}
				}
				eng.mu.Unlock()
			}
		}
		if dc.OneTimeSequences != "" {
			j.Sequence = []string{"one-time: " + dc.OneTimeSequences}
		}
		out = append(out, j)
	}
	return out
}

// grantsList reads the grants in the kernel and names their doors.
func (d *Daemon) grantsList() ([]GrantJSON, error) {
	gs, err := d.fw.Grants()
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	cfg := d.cur.Cfg
	d.mu.Unlock()
	out := []GrantJSON{}
	for _, g := range gs {
		door := "?"
		for _, dc := range cfg.Doors {
			for _, p := range dc.Open {
				if uint8(p.Proto) == g.Proto && g.Port >= p.From && g.Port <= p.To {
					door = dc.Name
				}
			}
		}
		out = append(out, GrantJSON{Door: door, Addr: g.Addr.String(), Port: portName(g.Proto, g.Port), Seconds: g.Left.Seconds()})
	}
	return out, nil
}

// expandDoors gives one-time-sequence doors, for the ruleset, the ports of
// every unused sequence in their file: the kernel must hand the daemon
// knocks on whichever comes next.
func expandDoors(doors []config.Door, log *slog.Logger) []config.Door {
	out := make([]config.Door, len(doors))
	copy(out, doors)
	for i, dr := range out {
		if dr.OneTimeSequences == "" {
			continue
		}
		ports, err := oneTimePorts(dr.OneTimeSequences)
		if err != nil {
			log.Error("door's one-time sequences unreadable; it cannot open", "door", dr.Name, "err", err)
			continue
		}
		seen := map[config.PortSpec]bool{}
		var seq []config.PortSpec
		for _, p := range append(append([]config.PortSpec{}, dr.Sequence...), ports...) {
			if !seen[p] {
				seen[p] = true
				seq = append(seq, p)
			}
		}
		out[i].Sequence = seq
	}
	return out
}

func oneTimePorts(path string) ([]config.PortSpec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("one_time_sequences: %w", err)
	}
	var out []config.PortSpec
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		seq, err := parseOneTime(line)
		if err != nil {
			return nil, fmt.Errorf("%s: line %d: %w", path, n+1, err)
		}
		out = append(out, seq...)
	}
	return out, nil
}

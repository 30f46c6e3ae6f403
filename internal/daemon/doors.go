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
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/knock"
	"github.com/moat-fw/moat/internal/nflog"
	"github.com/moat-fw/moat/internal/packet"
	"github.com/moat-fw/moat/internal/store"
)

// commandTimeout bounds a door's start or stop command.
const commandTimeout = 10 * time.Second

// doorEngine verifies daemon-mode doors from the packets the kernel hands
// over and opens grants in the kernel. The grants themselves, and the
// doors' commands, are the grantBook's: they outlive a reload's engine.
type doorEngine struct {
	log  *slog.Logger
	fw   *firewall.Applier
	book *grantBook
	lat  *grantLatency // the daemon's, set after construction; nil: not timed

	mu     sync.Mutex
	doors  []*daemonDoor
	group  *knock.Group // the doors' verifiers, judging each packet together as knockd's doors do
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

func newDoorEngine(log *slog.Logger, fw *firewall.Applier, book *grantBook, doors []config.Door) (*doorEngine, error) {
	e := &doorEngine{log: log, fw: fw, book: book, resets: logLimiter{every: time.Second / 10}}
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
	vs := make([]*knock.Door, len(e.doors))
	for i, d := range e.doors {
		vs[i] = d.v
	}
	e.group = knock.NewGroup(vs...)
	return e, nil
}

// packet feeds one knock-related packet to every daemon-mode door; at is
// when the kernel received it.
func (e *doorEngine) packet(p *packet.Packet, now, at time.Time) {
	if e == nil {
		return
	}
	proto := config.Proto(p.Proto)
	if proto != config.TCP && proto != config.UDP {
		proto = 0 // neither a knock nor a reset, as in knockd
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	results := e.group.Observe(p.Src, proto, p.DstPort, uint8(p.TCPFlags), now)
	for i, d := range e.doors {
		switch results[i] {
		case knock.Completed:
			// Whatever the scan guard thinks of the source: its score
			// comes from packets anyone can forge with that source (five
			// forged SYNs locked a victim out of every door), while a
			// correct sequence is the secret itself. A banned source
			// never gets here: the ban sets drop its packets first.
			e.open(d, p.Src, now, at)
		case knock.Closed:
			e.close(d, p.Src, now)
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

func (e *doorEngine) open(d *daemonDoor, a netip.Addr, now, at time.Time) {
	already := e.book.has(d.cfg.Name, a)
	// A one-time sequence is spent before the door opens: once the knocker
	// can connect, the file already says the sequence is used, and a crash
	// between the two leaves it spent rather than replayable.
	if d.cfg.OneTimeSequences != "" {
		var seq []config.PortSpec
		err := consumeOneTime(d.cfg.OneTimeSequences)
		if err != nil {
			// The file still offers the sequence just used: reading the
			// "next" one would make it replayable. Shut until a reload.
			e.log.Error("one-time sequence could not be marked used; the door stays shut until the file is writable and moat reloads", "door", d.cfg.Name, "err", err)
		} else if seq, err = nextOneTime(d.cfg.OneTimeSequences); err != nil {
			e.log.Warn("door has no one-time sequence left; it stays shut until the file has one and moat reloads", "door", d.cfg.Name, "err", err)
			seq = nil
		}
		d.v.SetSequence(seq)
	}
	if err := e.fw.UpdateGrants(nil, grantsFor(d.cfg, a, true)); err != nil {
		e.log.Error("door could not open", "door", d.cfg.Name, "addr", a, "err", err)
		return
	}
	e.lat.since(at, now)
	e.book.opened(store.Grant{Door: d.cfg.Name, Addr: a, Ports: doorPorts(d.cfg), Opened: now, Expires: now.Add(d.cfg.OpenFor),
		StopCommand: d.cfg.StopCommand}, "knock verified by the daemon", now)
	if !already {
		e.book.run(d.cfg.Name, d.cfg.StartCommand, a, "start_command")
	}
}

// close ends a grant on its close sequence; the book runs the stop command.
func (e *doorEngine) close(d *daemonDoor, a netip.Addr, now time.Time) {
	if !e.book.has(d.cfg.Name, a) {
		return
	}
	// The book first: a read of the kernel in between must not find the
	// grant gone from the kernel while the book still has it, and put it back.
	e.book.closed(d.cfg.Name, a, ActionClosed, "close sequence", now)
	if err := e.fw.UpdateGrants(grantsFor(d.cfg, a, false), nil); err != nil {
		e.log.Warn("door grant already gone from the kernel", "door", d.cfg.Name, "addr", a, "err", err)
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
	// The copy range is the most any rule's snaplen may take: SPA's rule
	// takes the whole datagram; every other rule snaps at 128 bytes.
	c, err := nflog.Open(group, nflog.WithCopyRange(1500))
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
	spaPrefix   = []byte(firewall.SPAPrefix)
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
		d.doors.Load().packet(p, now, m.Timestamp)
		return
	}
	if bytes.Equal(m.Prefix, spaPrefix) {
		d.spa.Load().packet(m, p, now)
		return
	}
	if door, closing, ok := firewall.ParseGrantLog(m.Prefix); ok {
		d.kernelDoor(door, p.Src, closing, now)
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

// GrantJSON is an open grant for `moat grant list`: one port the kernel
// lets a source in on.
type GrantJSON struct {
	Door    string  `json:"door"`
	Addr    string  `json:"addr"`
	Port    string  `json:"port"`
	Seconds float64 `json:"seconds_left"`
	// From moat's record of the grant; empty for one it has no record of
	// (added to the set by hand).
	Mode   string    `json:"mode,omitempty"` // "kernel" or "daemon": who verified the knock
	Opened time.Time `json:"opened,omitzero"`
	Until  time.Time `json:"until,omitzero"`
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
	recs := d.grants.list()
	out := []GrantJSON{}
	for _, g := range gs {
		j := GrantJSON{Door: "?", Addr: g.Addr.String(), Port: portName(g.Proto, g.Port), Seconds: g.Left.Seconds()}
		for _, dc := range cfg.Doors {
			for _, p := range dc.Open {
				if uint8(p.Proto) == g.Proto && g.Port >= p.From && g.Port <= p.To {
					j.Door = dc.Name
				}
			}
		}
		// The record names the door exactly, even when two doors open
		// the same port.
		for _, r := range recs {
			if r.Addr == g.Addr.Unmap() && slices.ContainsFunc(r.Ports, func(p store.GrantPort) bool {
				return p.Proto == g.Proto && g.Port >= p.From && g.Port <= p.To
			}) {
				j.Door, j.Mode, j.Opened, j.Until = r.Door, modeName(r.Kernel), r.Opened, r.Expires
				break
			}
		}
		out = append(out, j)
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

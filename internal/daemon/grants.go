package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/events"
	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/store"
)

// Door grants outlive the table. The kernel's grant sets are emptied
// whenever the table is rebuilt (a reload, an apply, a restart), so the
// grantBook keeps every open grant, kernel or daemon mode, in memory and in
// the store, hands them to the next install (which puts them back in the
// same transaction as the table), and ends those the new config no longer
// has a door for, running their stop_command once. Every opening and
// closing is a DoorEvent: logged, kept in a bounded ring in the store, shown
// by `moat door log`, and, with [doors] log_file, written knockd-style.

// metaDoorEvents is the store key of the recent door events.
const metaDoorEvents = "doors.events"

// doorEventsKept bounds the ring of door events kept in the store.
const doorEventsKept = 1000

// The actions of a DoorEvent.
const (
	ActionOpened  = "opened"
	ActionClosed  = "closed"
	ActionExpired = "expired"
)

// DoorEvent is one opening or closing of a door for one source.
type DoorEvent struct {
	At     time.Time `json:"at"`
	Door   string    `json:"door"`
	Addr   string    `json:"addr"`
	Ports  []string  `json:"ports"`
	Until  time.Time `json:"until,omitzero"` // openings: when the grant ends
	Mode   string    `json:"mode"`           // "kernel" or "daemon": who verified the knock
	Action string    `json:"action"`         // opened, closed or expired
	Why    string    `json:"why,omitempty"`
}

// eventRing keeps the most recent events, oldest first.
type eventRing struct {
	max int
	evs []DoorEvent
}

func (r *eventRing) add(e DoorEvent) {
	r.evs = append(r.evs, e)
	if over := len(r.evs) - r.max; over > 0 {
		r.evs = append(r.evs[:0], r.evs[over:]...)
	}
}

// last returns up to n of the most recent events (n <= 0: all), oldest first.
func (r *eventRing) last(n int) []DoorEvent {
	if n <= 0 || n > len(r.evs) {
		n = len(r.evs)
	}
	return append([]DoorEvent{}, r.evs[len(r.evs)-n:]...)
}

func modeName(kernel bool) string {
	if kernel {
		return "kernel"
	}
	return "daemon"
}

// doorPorts is what a door opens, as the store keeps it.
func doorPorts(dr config.Door) []store.GrantPort {
	out := make([]store.GrantPort, 0, len(dr.Open))
	for _, p := range dr.Open {
		out = append(out, store.GrantPort{Proto: uint8(p.Proto), From: p.From, To: p.To})
	}
	return out
}

func portStrings(ps []store.GrantPort) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = config.PortSpec{Proto: config.Proto(p.Proto), From: p.From, To: p.To}.String()
	}
	return out
}

// kernelGrants expands a grant into the kernel's elements, each with the
// time the grant has left.
func kernelGrants(g store.Grant, now time.Time) []firewall.Grant {
	var out []firewall.Grant
	for _, p := range g.Ports {
		for port := int(p.From); port <= int(p.To); port++ {
			out = append(out, firewall.Grant{Addr: g.Addr, Proto: p.Proto, Port: uint16(port), Timeout: g.Expires.Sub(now)})
		}
	}
	return out
}

// grantBook is the one record of open grants. Safe for concurrent use.
type grantBook struct {
	log *slog.Logger
	st  *store.Store
	bus *events.Bus

	// Door commands die with the daemon (ctx) and are waited for at its end.
	ctx  context.Context
	cmds sync.WaitGroup

	mu      sync.Mutex
	open    map[grantKey]store.Grant
	holding map[netip.Addr]int // open grants per address: the guards ask per packet and per line
	unsaved map[grantKey]bool  // changed since the last save
	ring    eventRing
	dirty   bool // ring changed since the last save
	file    string
	fileErr logLimiter
	// missing holds the grants the last read of the kernel lacked: only a
	// grant missing from two reads in a row is put back, so that one whose
	// close the kernel made and whose log message is still on its way is
	// not.
	missing map[grantKey]bool
}

// newGrantBook loads the grants and events the store kept.
func newGrantBook(ctx context.Context, log *slog.Logger, st *store.Store) *grantBook {
	b := &grantBook{log: log, st: st, ctx: ctx, open: map[grantKey]store.Grant{}, holding: map[netip.Addr]int{}, unsaved: map[grantKey]bool{}, missing: map[grantKey]bool{},
		ring: eventRing{max: doorEventsKept}, fileErr: logLimiter{every: time.Minute}}
	gs, err := st.Grants()
	if err != nil {
		log.Warn("some stored door grants are unreadable; the others are kept", "err", err)
	}
	for _, g := range gs {
		b.put(grantKey{g.Door, g.Addr}, g)
	}
	if raw, _ := st.Meta(metaDoorEvents); raw != nil {
		if err := json.Unmarshal(raw, &b.ring.evs); err != nil {
			log.Warn("saved door events unreadable; starting a new door log", "err", err)
			b.ring.evs = nil
		}
	}
	return b
}

func (b *grantBook) setLogFile(path string) {
	b.mu.Lock()
	b.file = path
	b.mu.Unlock()
}

func (b *grantBook) has(door string, a netip.Addr) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.open[grantKey{door, a.Unmap()}]
	return ok
}

// holders lists the sources holding a grant.
func (b *grantBook) holders() []netip.Addr {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Collect(maps.Keys(b.holding))
}

func (b *grantBook) holds(a netip.Addr) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.holding[a.Unmap()] > 0
}

// put records an open grant under b.mu.
func (b *grantBook) put(k grantKey, g store.Grant) {
	if _, ok := b.open[k]; !ok {
		b.holding[k.addr]++
	}
	b.open[k] = g
}

func (b *grantBook) list() []store.Grant {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]store.Grant, 0, len(b.open))
	for _, g := range b.open {
		out = append(out, g)
	}
	slices.SortFunc(out, func(x, y store.Grant) int {
		if c := strings.Compare(x.Door, y.Door); c != 0 {
			return c
		}
		return x.Addr.Compare(y.Addr)
	})
	return out
}

func (b *grantBook) events(n int) []DoorEvent {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ring.last(n)
}

// opened records a grant (a new one, or a knock again that renews it).
func (b *grantBook) opened(g store.Grant, why string, now time.Time) {
	g.Addr = g.Addr.Unmap()
	k := grantKey{g.Door, g.Addr}
	b.mu.Lock()
	defer b.mu.Unlock()
	if old, ok := b.open[k]; ok && old.Kernel && g.Kernel && g.Expires.Sub(old.Expires).Abs() < time.Second {
		// The same opening seen twice (the kernel's log message and a
		// read of its sets): one event.
		return
	}
	b.put(k, g)
	b.unsaved[k] = true
	b.event(DoorEvent{At: now, Door: g.Door, Addr: g.Addr.String(), Ports: portStrings(g.Ports), Until: g.Expires,
		Mode: modeName(g.Kernel), Action: ActionOpened, Why: why})
}

// closed ends a grant and, when it has one, runs its stop command. It
// reports whether there was a grant to end.
func (b *grantBook) closed(door string, a netip.Addr, action, why string, now time.Time) bool {
	k := grantKey{door, a.Unmap()}
	b.mu.Lock()
	g, ok := b.open[k]
	if ok {
		delete(b.open, k)
		if b.holding[k.addr]--; b.holding[k.addr] <= 0 {
			delete(b.holding, k.addr)
		}
		b.unsaved[k] = true
		b.event(DoorEvent{At: now, Door: door, Addr: k.addr.String(), Ports: portStrings(g.Ports), Mode: modeName(g.Kernel),
			Action: action, Why: why})
	}
	b.mu.Unlock()
	if ok {
		b.run(door, g.StopCommand, k.addr, "stop_command")
	}
	return ok
}

// expire ends the grants whose time ran out: the kernel has already
// dropped their elements.
func (b *grantBook) expire(now time.Time) {
	b.mu.Lock()
	var done []grantKey
	for k, g := range b.open {
		if !g.Active(now) {
			done = append(done, k)
		}
	}
	b.mu.Unlock()
	for _, k := range done {
		b.closed(k.door, k.addr, ActionExpired, "open_for ran out", now)
	}
}

// event logs e and keeps it. b.mu is held.
func (b *grantBook) event(e DoorEvent) {
	b.ring.add(e)
	b.dirty = true
	attrs := []any{"door", e.Door, "addr", e.Addr, "ports", e.Ports, "mode", e.Mode}
	if e.Action == ActionOpened {
		attrs = append(attrs, "until", e.Until)
	}
	if e.Why != "" {
		attrs = append(attrs, "why", e.Why)
	}
	b.log.Info("door "+e.Action, attrs...)
	b.bus.Publish(events.Event{Time: e.At, Kind: events.Door, Prefix: hostPrefix(e.Addr), Door: e.Door, Action: e.Action,
		Ports: e.Ports, Until: e.Until, Reason: e.Why})
	switch e.Action {
	case ActionOpened:
		// knockd's own line, so that scripts grepping its log keep working.
		b.writeFile(e.At, fmt.Sprintf("%s: %s: OPEN SESAME", e.Addr, e.Door))
	case ActionExpired:
		b.writeFile(e.At, fmt.Sprintf("%s: %s: grant expired", e.Addr, e.Door))
	default:
		b.writeFile(e.At, fmt.Sprintf("%s: %s: closed (%s)", e.Addr, e.Door, e.Why))
	}
}

// writeFile appends one knockd-style line to [doors] log_file. The file is
// opened for each line, so that logrotate needs no signal. b.mu is held.
func (b *grantBook) writeFile(at time.Time, msg string) {
	if b.file == "" {
		return
	}
	line := fmt.Sprintf("[%s] %s\n", at.Local().Format("2006-01-02 15:04"), msg)
	f, err := os.OpenFile(b.file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err == nil {
		_, err = f.WriteString(line)
		err = errorsJoinClose(err, f)
	}
	if err != nil && b.fileErr.allow(time.Now()) {
		b.log.Warn("cannot write the door log file ([doors] log_file)", "file", b.file, "err", err)
	}
}

func errorsJoinClose(err error, f *os.File) error {
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// run starts a door command as argv, never through a shell, with %IP% and
// %DOOR% replaced by values moat validated (an address it parsed, a name
// the config restricts to [a-z0-9_]).
func (b *grantBook) run(door string, argv []string, a netip.Addr, which string) {
	if len(argv) == 0 {
		return
	}
	args := make([]string, len(argv))
	for i, s := range argv {
		args[i] = strings.NewReplacer("%IP%", a.String(), "%DOOR%", door).Replace(s)
	}
	b.mu.Lock()
	b.writeFile(time.Now(), fmt.Sprintf("%s: running command: %s", door, strings.Join(args, " ")))
	b.mu.Unlock()
	b.cmds.Go(func() {
		ctx, cancel := context.WithTimeout(b.ctx, commandTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "MOAT_DOOR=" + door, "MOAT_IP=" + a.String()}
		out, err := cmd.CombinedOutput()
		if len(out) > 4096 {
			out = out[:4096]
		}
		if err != nil {
			b.log.Error("door command failed", "door", door, "command", which, "argv", args, "err", err, "output", string(out))
			return
		}
		b.log.Info("door command ran", "door", door, "command", which, "argv", args, "output", string(out))
	})
}

// wait waits for the door commands still running (at the end).
func (b *grantBook) wait() { b.cmds.Wait() }

// save writes the grants and events that changed to the store. It runs off
// the packet path (every few seconds and at the end): a grant opened just
// before a crash is still in the kernel, and the next start adopts it.
func (b *grantBook) save() {
	b.mu.Lock()
	var put []store.Grant
	var del []grantKey
	for k := range b.unsaved {
		if g, ok := b.open[k]; ok {
			put = append(put, g)
		} else {
			del = append(del, k)
		}
	}
	clear(b.unsaved)
	var evs []byte
	if b.dirty {
		evs, _ = json.Marshal(b.ring.evs)
		b.dirty = false
	}
	b.mu.Unlock()
	for _, g := range put {
		if err := b.st.PutGrant(g); err != nil {
			b.log.Warn("door grant not saved; it is lost at the next restart unless still in the kernel", "door", g.Door, "addr", g.Addr, "err", err)
		}
	}
	for _, k := range del {
		if _, err := b.st.DelGrant(k.door, k.addr); err != nil {
			b.log.Warn("ended door grant not deleted from the store", "door", k.door, "addr", k.addr, "err", err)
		}
	}
	if evs != nil {
		if err := b.st.SetMeta(metaDoorEvents, evs); err != nil {
			b.log.Warn("cannot save door events", "err", err)
		}
	}
}

// staleGrant is a grant the next table will not have, and why.
type staleGrant struct {
	g           store.Grant
	action, why string
}

// plan splits the grants into those the table for cfg keeps (as kernel
// elements with the time they have left) and those it ends: their time
// ran out (while moat was down), or their door is gone or changed.
func (b *grantBook) plan(cfg *config.Config, now time.Time) (keep []firewall.Grant, stale []staleGrant) {
	for _, g := range b.list() {
		if !g.Active(now.Add(100 * time.Millisecond)) {
			stale = append(stale, staleGrant{g, ActionExpired, "open_for ran out"})
			continue
		}
		if g.SPA != "" {
			if slices.ContainsFunc(cfg.SPA.Clients, func(c config.SPAClient) bool { return c.Name == g.SPA }) ||
				slices.ContainsFunc(cfg.SPA.Fwknop, func(f config.SPAFwknop) bool { return f.Name == g.SPA }) {
				keep = append(keep, kernelGrants(g, now)...)
			} else {
				stale = append(stale, staleGrant{g, ActionClosed, "SPA client removed from the config"})
			}
			continue
		}
		i := slices.IndexFunc(cfg.Doors, func(dr config.Door) bool { return dr.Name == g.Door })
		switch {
		case i < 0:
			stale = append(stale, staleGrant{g, ActionClosed, "door removed from the config"})
		case !slices.Equal(doorPorts(cfg.Doors[i]), g.Ports):
			stale = append(stale, staleGrant{g, ActionClosed, "door's open ports changed"})
		case cfg.Doors[i].Daemon() == g.Kernel:
			stale = append(stale, staleGrant{g, ActionClosed, "door's mode changed"})
		default:
			keep = append(keep, kernelGrants(g, now)...)
		}
	}
	return keep, stale
}

// retire ends the grants plan found stale, once each.
func (b *grantBook) retire(stale []staleGrant, now time.Time) {
	for _, s := range stale {
		b.closed(s.g.Door, s.g.Addr, s.action, s.why, now)
	}
}

// kernelDoor handles the kernel's log message of a kernel-mode door
// opening for a, or of its close sequence.
func (d *Daemon) kernelDoor(door string, a netip.Addr, closing bool, now time.Time) {
	d.mu.Lock()
	doors := d.cur.Cfg.Doors
	d.mu.Unlock()
	i := slices.IndexFunc(doors, func(dr config.Door) bool { return dr.Name == door && !dr.Daemon() })
	if i < 0 {
		return // from a table of an older config, already replaced
	}
	if closing {
		d.grants.closed(door, a, ActionClosed, "close sequence", now)
		return
	}
	dr := doors[i]
	d.grants.opened(store.Grant{Door: door, Addr: a, Ports: doorPorts(dr), Kernel: true, Opened: now, Expires: now.Add(dr.OpenFor)},
		"knock verified by the kernel", now)
}

// syncKernelGrants compares the grants in the kernel with the book. A
// grant only the kernel has (a kernel-mode door opened while moat was down,
// or whose log message was lost) is taken into the book. With adoptOnly
// false, a grant only the book has, in two reads in a row, is put back (the table was rebuilt
// while a knock was on its way) or, for a kernel-mode door while the
// kernel's log messages do not reach moat, taken as closed by its close
// sequence.
func (d *Daemon) syncKernelGrants(inKernel []firewall.Grant, now time.Time, adoptOnly bool) {
	d.mu.Lock()
	doors := d.cur.Cfg.Doors
	intakeUp := d.intakeErr == nil
	d.mu.Unlock()
	type elem struct {
		addr  netip.Addr
		proto uint8
		port  uint16
	}
	present := map[elem]bool{}
	found := map[grantKey]time.Duration{}
	for _, g := range inKernel {
		a := g.Addr.Unmap()
		present[elem{a, g.Proto, g.Port}] = true
		for _, dr := range doors {
			if !slices.ContainsFunc(dr.Open, func(p config.PortSpec) bool { return p.Contains(config.Proto(g.Proto), g.Port) }) {
				continue
			}
			k := grantKey{dr.Name, a}
			found[k] = max(found[k], g.Left)
			break
		}
	}
	for k, left := range found {
		// A grant about to end is not worth adopting: it would only be
		// logged as opened and expired at once.
		if d.grants.has(k.door, k.addr) || left < 2*time.Second {
			continue
		}
		i := slices.IndexFunc(doors, func(dr config.Door) bool { return dr.Name == k.door })
		dr := doors[i]
		g := store.Grant{Door: dr.Name, Addr: k.addr, Ports: doorPorts(dr), Kernel: !dr.Daemon(), Opened: now, Expires: now.Add(left)}
		if dr.Daemon() {
			g.StopCommand = dr.StopCommand
		}
		d.grants.opened(g, "found in the kernel", now)
	}
	if adoptOnly {
		return
	}
	var readd []firewall.Grant
	missingNow := map[grantKey]bool{}
	defer func() {
		d.grants.mu.Lock()
		d.grants.missing = missingNow
		d.grants.mu.Unlock()
	}()
	for _, g := range d.grants.list() {
		if g.Expires.Sub(now) < time.Second {
			continue // expire ends it
		}
		missing := false
		for _, e := range kernelGrants(g, now) {
			if !present[elem{e.Addr, e.Proto, e.Port}] {
				missing = true
			}
		}
		k := grantKey{g.Door, g.Addr}
		if missing {
			missingNow[k] = true
		}
		d.grants.mu.Lock()
		before := d.grants.missing[k]
		d.grants.mu.Unlock()
		switch {
		case !missing || !before:
		case g.Kernel && !intakeUp:
			d.grants.closed(g.Door, g.Addr, ActionClosed, "gone from the kernel (a close sequence?)", now)
		default:
			readd = append(readd, kernelGrants(g, now)...)
		}
	}
	if len(readd) > 0 {
		if err := d.fw.UpdateGrants(nil, readd); err != nil {
			d.log.Error("cannot put door grants back in the kernel", "err", err)
			return
		}
		d.log.Warn("door grants missing from the kernel put back", "elements", len(readd))
	}
}

// adoptKernelGrants takes into the book, before install rebuilds the
// table, the grants only the kernel knows of: kernel-mode doors open and
// close without moat, and may have opened while it was down.
func (d *Daemon) adoptKernelGrants() {
	if ok, err := d.fw.Exists(); err != nil || !ok {
		return
	}
	gs, err := d.fw.Grants()
	if err != nil {
		d.log.Warn("cannot read the kernel's door grants; grants opened while moat was down are lost at this start", "err", err)
		return
	}
	d.syncKernelGrants(gs, d.now(), true)
}

// Package daemon wires moat together: it loads the config, installs the
// firewall, restores bans, serves the control socket, reloads on SIGHUP,
// and keeps the kernel in step with the store. It owns every goroutine.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/moat-fw/moat/internal/ban"
	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/control"
	"github.com/moat-fw/moat/internal/events"
	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/login"
	"github.com/moat-fw/moat/internal/nflog"
	"github.com/moat-fw/moat/internal/sdnotify"
	"github.com/moat-fw/moat/internal/sshd"
	"github.com/moat-fw/moat/internal/store"
)

// Options configure a daemon.
type Options struct {
	ConfigPath string // config file; see Explicit
	Explicit   bool   // the path was given on the command line: a missing file is an error
	Session    string // SSH_CONNECTION of whoever started it
	Force      bool   // start even if the config would cut that session off
	Log        *slog.Logger
	Now        func() time.Time
}

// Loaded is a parsed config with where it came from and its text, kept so a
// confirmed apply can roll back to exactly what was in force.
type Loaded struct {
	Cfg    *config.Config
	Source string
	Raw    []byte
}

// LoadConfig reads the config file, or the embedded default when the file
// is missing and was not named explicitly.
func LoadConfig(path string, explicit bool) (*Loaded, error) {
	raw, err := os.ReadFile(path)
	switch {
	case err == nil:
		cfg, err := config.Parse(raw, path)
		if err != nil {
			return nil, err
		}
		return &Loaded{Cfg: cfg, Source: path, Raw: raw}, nil
	case errors.Is(err, os.ErrNotExist) && !explicit:
		raw = config.Default()
		cfg, err := config.Parse(raw, "embedded default")
		if err != nil {
			return nil, err
		}
		return &Loaded{Cfg: cfg, Source: "embedded default", Raw: raw}, nil
	}
	return nil, fmt.Errorf("config: %w", err)
}

// SSHPorts is where sshd really listens, falling back to 22.
func SSHPorts(ctx context.Context, log *slog.Logger) []uint16 {
	ports, err := sshd.ListenPorts(ctx)
	if err != nil || len(ports) == 0 {
		if log != nil {
			log.Warn("cannot read sshd's ports; keeping tcp/22 open for the ssh alias", "err", err)
		}
		return []uint16{22}
	}
	return ports
}

// gcPercent is the daemon's GOGC unless the environment sets one. A host
// guard should stay small when it is attacked: under a flood of forged
// scanners (TestForgedScannerFloodIsCapped) the default 100 let peak RSS
// swing between 60 and 66 MB, 50 keeps it near 58. The cost is small
// because the packet and line paths allocate nothing: the collector runs
// when guards record what they saw, not per packet.
const gcPercent = 50

// recentEvents is how many events the daemon keeps for a watcher that
// arrives late (the live page's first view).
const recentEvents = 1000

// Daemon is a running moat.
type Daemon struct {
	// Packet to grant in the kernel, for SPA and daemon-mode doors; the
	// engines a reload replaces share these.
	spaLat, knockLat grantLatency

	metrics metricsServer // the [metrics] endpoint
	report  reportService // [report]: look-ups and tallies for status (report.go)
	alerts  alertService  // [alert]: webhooks, syslog, e-mail (alert.go)
	page    pageServer    // the [page] live page
	fleet   fleetRunner   // [fleet]: bans shared with other hosts
	opts    Options
	sd      *sdnotify.Notifier // systemd's NOTIFY_SOCKET, or nil
	health  health             // the watchdog's evidence (notify.go)
	log     *slog.Logger
	now     func() time.Time
	fw      *firewall.Applier
	st      *store.Store
	bans    *ban.Manager
	// events tells the live page, alerts and the fleet what the guards did
	// (package events); publishing never blocks a guard.
	events  *events.Bus
	started time.Time
	wake    chan struct{}
	// ifMissing is the last warning about [firewall] interfaces that match
	// no link (see interfaces.go), so a link change is told once.
	ifMissing atomic.Value

	runCtx context.Context // the daemon's lifetime, for guards restarted on reload
	doors  atomic.Pointer[doorEngine]
	spa    atomic.Pointer[spaEngine] // nil while SPA is off
	// uncleanStart: the last run did not stop cleanly (see newSPAEngine).
	uncleanStart bool
	grants       *grantBook // open door grants, kept across reloads and restarts (see grants.go)
	scan         atomic.Pointer[scanGuard]
	nflog        *nflog.Conn
	foreign      atomic.Uint64 // logged packets on the group with another ruleset's prefix (see dispatch)
	peers        sshPeers      // sshd's peers the kernel reported (see sshpeers.go)
	prot         *protection
	blocks       *blocklists // [[blocklist]] entries in their kernel sets
	sessions     *sessionTable
	loginStop    func() // stops the running login guard and waits for it
	login        *loginGuard
	loginSrcs    []string

	mu         sync.Mutex // guards everything below
	cur        *Loaded
	sshPorts   []uint16
	sshGrace   time.Duration // sshd's LoginGraceTime (see sessionTable)
	enforcing  bool
	pending    *Loaded // config to roll back to unless confirmed
	deadline   time.Time
	lastRec    time.Time
	lastHouse  time.Time
	reasserted int
	repaired   int    // reinstalls after the kernel's rules drifted (see repairDrift)
	intakeErr  error  // why there is no packet intake (see intakeStatus)
	logGroup   uint16 // the NFLOG group intake was asked to bind

	kw kernelWatch // whether the kernel's sets need reading back (kernelwatch.go)
}

// Run runs the daemon until ctx ends.
func Run(ctx context.Context, opts Options) error {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	d := &Daemon{opts: opts, log: opts.Log, now: opts.Now, fw: firewall.NewApplier(),
		wake: make(chan struct{}, 1), enforcing: true, sd: sdnotify.FromEnv(), events: events.New(recentEvents)}
	defer d.fw.Close()
	d.spaLat.clock, d.knockLat.clock = d.now, d.now
	ld, err := LoadConfig(opts.ConfigPath, opts.Explicit)
	if err != nil {
		return err
	}
	// A start is not refused for it: at boot an interface may not exist
	// yet, and a moat that does not start leaves the host open. Unlisted
	// interfaces stay default deny, so a typo is not a hole either; config
	// check, apply and reload refuse it, with the admin there to fix it.
	if _, err := CheckInterfaces(ld); err != nil {
		d.log.Warn("starting anyway: every interface not listed stays default deny, and a listed one is guarded once it appears", "err", err)
	}
	d.cur = ld
	// Before anything touches the table: a second moat in this network
	// namespace (another state_dir and socket, so neither the store's lock
	// nor the socket stops it) would fight the first over inet moat.
	lock, err := lockNetns(d.log, ld.Cfg.Daemon.StateDir, ld.Cfg.Daemon.Socket)
	if err != nil {
		return err
	}
	defer lock.Close()
	d.sshPorts = SSHPorts(ctx, d.log)
	// Only the caller's session stops a start: refusing to start would leave
	// the host without its guards. Other sessions are warned about below.
	if err := d.guard(ld.Cfg, opts.Session, opts.Force, false); err != nil {
		return fmt.Errorf("refusing to start with %s: %w", ld.Source, err)
	}
	// The store's file lock is what makes a second daemon fail fast.
	st, err := store.Open(ld.Cfg.Daemon.StateDir)
	if err != nil {
		return err
	}
	defer st.Close()
	d.st = st
	ln, err := control.Listen(ld.Cfg.Daemon.Socket)
	if err != nil {
		return err
	}
	t0 := time.Now()
	d.bans, err = ban.New(st, d.fw, ld.Cfg.Firewall.Allow, d.now(), d.warnCorrupt)
	if err != nil {
		ln.Close()
		return err
	}
	st.Release() // the pages of every ban just read: the records hold them now
	nb, _ := d.bans.Counts()
	d.log.Debug("bans loaded from the store", "bans", nb, "took", time.Since(t0))
	pend, err := store.OpenPending(ld.Cfg.Daemon.StateDir)
	if err != nil {
		ln.Close()
		return err
	}
	defer pend.Close()
	if got, err := d.bans.SetPending(pend, d.now()); err != nil {
		d.log.Error("adopting the bans a killed moat had not saved", "err", err)
	} else if len(got) > 0 {
		d.log.Warn("bans moat put in the kernel but had not saved when it stopped are kept", "count", len(got))
	}
	d.bans.OnStoreError(func(err error) { d.log.Error("ban not saved", "err", err) })
	saved, _ := st.Meta(metaSessions)
	d.sessions = newSessionTable(d.log, saved)
	d.sshGrace = loginGrace(ctx)
	d.sessions.refresh(d.sshPorts, d.sshGrace, d.now())
	if err := d.guard(ld.Cfg, "", opts.Force, true); err != nil {
		d.log.Warn("this config cuts off a logged-in SSH session at its next login", "err", err)
	}
	d.prot = d.newProtection(opts.Session)
	d.prot.refresh()
	d.blocks = newBlocklists(d.log, d.fw, ld.Cfg.Daemon.StateDir, d.blocklistHoles, d.now)
	d.bans.SetProtector(d.prot)
	d.adoptKernelBans()
	// A crash may have lost the record of SPA datagrams accepted just
	// before it (they are saved right after their grant): see newSPAEngine.
	if v, err := st.Meta(metaStopped); err == nil && v != nil && string(v) != stoppedClean {
		d.uncleanStart = true
	}
	// From here bans may be in the kernel and not yet in the store.
	if err := st.SetMeta(metaStopped, []byte(stoppedDirty)); err != nil {
		d.log.Warn("could not mark the store as in use", "err", err)
	}
	d.started = d.now()
	d.seedSSHPeers() // before install empties the kernel's sets
	d.grants = newGrantBook(ctx, d.log, st)
	d.grants.bus = d.events
	defer d.grants.wait()
	defer d.grants.save()
	d.adoptKernelGrants() // before install empties the kernel's sets
	if err := d.install(ld); err != nil {
		ln.Close()
		return err
	}
	// Bans kept in the store from before an address became protected.
	d.refreshProtection(d.now())
	nb, na := d.bans.Counts()
	d.log.Info("moat is guarding this host", "config", ld.Source, "bans", nb, "allows", na,
		"open", openList(ld.Cfg, d.sshPorts), "socket", ld.Cfg.Daemon.Socket)
	if ld.Cfg.Daemon.OnExit != "remove" {
		// Said at start, while the admin is reading: after Ctrl-C it is too
		// late to learn that the host stays closed.
		d.log.Info("stopping moat (Ctrl-C, SIGTERM) leaves this firewall in force (on_exit = \"keep\"): `moat firewall off` takes it down")
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	g, gctx := errgroup.WithContext(ctx)
	d.runCtx = gctx
	if err := d.startLogin(gctx, ld.Cfg.Login); err != nil {
		ln.Close()
		return err
	}
	defer func() { d.stopLogin() }()
	eng, err := newDoorEngine(d.log, d.fw, d.grants, ld.Cfg.Doors)
	if err != nil {
		ln.Close()
		return err
	}
	d.storeDoors(eng)
	// A start is not refused for SPA's keys: the host stays guarded, and
	// the log says why SPA doors cannot open. Apply and reload refuse.
	if se, err := newSPAEngine(d.log, d.fw, d.grants, st, ld.Cfg, d.sshPorts, nil, d.now(), d.uncleanStart); err != nil {
		d.log.Error("SPA off: its keys do not load", "err", err)
	} else {
		d.storeSPA(se)
	}
	d.startScan(ld.Cfg)
	defer d.saveScan()
	{
		group := ld.Cfg.Firewall.LogGroup
		d.mu.Lock()
		d.logGroup = group
		d.mu.Unlock()
		g.Go(func() error {
			if err := d.intake(gctx, group); err != nil {
				// The firewall, bans and kernel-mode doors work without it.
				d.log.Error("no packet intake: the scan guard is blind and daemon-mode doors cannot open", "err", err)
				d.mu.Lock()
				d.intakeErr = err
				d.mu.Unlock()
			}
			return nil
		})
		g.Go(func() error {
			t := time.NewTicker(200 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-gctx.Done():
					return nil
				case <-t.C:
					now := d.now()
					d.grants.expire(now)
					d.housekeep(now)
					if d.fw.Crowded() {
						// Bigger host sets before the kernel refuses bans.
						d.check(false)
					}
					d.health.tick(time.Now())
				}
			}
		})
	}
	g.Go(func() error { return control.Serve(gctx, ln, d.handler()) })
	defer d.runMetrics(gctx, ld.Cfg.Metrics)()
	defer d.runReport(gctx, ld.Cfg.Report)()
	defer d.runAlerts(gctx, ld.Cfg.Alert, ld.Cfg.Report.MinLevel)()
	defer d.runPage(gctx, ld.Cfg)()
	defer d.runFleet(gctx, ld.Cfg.Fleet)()
	g.Go(func() error { return d.maintain(gctx) })
	g.Go(func() error { return d.blocks.run(gctx) })
	d.kw.lastFull.Store(d.now().UnixNano()) // the install just put every element
	g.Go(func() error { d.fw.Watch(gctx, d.kw.changed); return nil })
	// Type=notify: the table is installed, the socket listens (connections
	// queue until Serve accepts them) and the guards run.
	d.health.tick(time.Now())
	d.notify(sdnotify.Ready, sdnotify.Status("guarding: table inet moat installed"))
	g.Go(func() error { return d.watchdog(gctx) })
	g.Go(func() error {
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-hup:
				// No caller to ask; the logged-in sessions are still checked.
				d.notify(sdnotify.ReloadingNow()...)
				if err := d.reload("", false); err != nil {
					d.log.Error("reload failed; the previous config stays in force", "err", err)
					d.notify(sdnotify.Ready, sdnotify.Status("reload failed; the previous config stays in force: "+err.Error()))
				} else {
					d.notify(sdnotify.Ready, sdnotify.Status("guarding: config reloaded"))
				}
			}
		}
	})
	err = g.Wait()
	d.notify(sdnotify.Stopping)
	d.stopLogin()
	d.bans.Flush() // the guards' last bans must be saved before the store is marked clean
	d.markStopped()
	d.mu.Lock()
	onExit := d.cur.Cfg.Daemon.OnExit
	d.mu.Unlock()
	if onExit == "remove" {
		if _, rerr := d.fw.Remove(); rerr != nil {
			err = errors.Join(err, rerr)
		}
		d.log.Info("stopped; firewall table removed (on_exit = \"remove\")")
	} else {
		d.log.Info("stopped; the firewall and its bans stay in force (on_exit = \"keep\"): `moat firewall off` removes the table, `moat run` resumes")
	}
	return err
}

func openList(cfg *config.Config, ports []uint16) []string {
	var out []string
	for _, p := range config.ResolveSSH(cfg.Firewall.Open, ports) {
		out = append(out, p.String())
	}
	return out
}

func (d *Daemon) warnCorrupt(err error) {
	d.log.Error("the store has unreadable records; they are skipped, every other ban is restored", "err", err)
}

// guard refuses a config that would lock out the caller's SSH session or,
// with others true, any logged-in SSH session (see sessionTable).
func (d *Daemon) guard(cfg *config.Config, sshConn string, force, others bool) error {
	if force {
		return nil
	}
	var check []firewall.Session
	if s, ok := firewall.ParseSSHConnection(sshConn); ok {
		check = append(check, s)
	}
	if others && d.sessions != nil {
		for _, s := range d.sessions.list() {
			who := "the logged-in SSH session"
			if s.User != "" {
				who = fmt.Sprintf("%s's logged-in SSH session", s.User)
			}
			check = append(check, firewall.Session{Client: s.Client.Addr().Unmap(),
				Server: netip.AddrPortFrom(s.Server.Addr().Unmap(), s.Server.Port()), Who: who})
		}
	}
	var extra []netip.Prefix
	if d.bans != nil {
		for _, e := range d.bans.Allows(d.now()) {
			extra = append(extra, e.Prefix)
		}
	}
	for _, s := range check {
		if why := firewall.CutsOff(cfg.Firewall, d.sshPorts, extra, s); why != "" {
			return ban.Refuse("%s", why)
		}
	}
	return nil
}

// install builds the table from ld and puts it in the kernel with every
// live ban and allow, in one transaction.
func (d *Daemon) install(ld *Loaded) error {
	d.mu.Lock()
	ports := d.sshPorts
	d.mu.Unlock()
	fw, err := FirewallFor(ld.Cfg)
	if err != nil {
		d.log.Error("SPA clients without a usable key cannot open anything", "err", err)
	}
	rs := firewall.Build(fw, ports, expandDoors(ld.Cfg.Doors, d.log)...)
	now := d.now()
	// Open door grants go back in with the table; those of doors the config
	// no longer has end once the table that drops them is in.
	d.grants.setLogFile(ld.Cfg.DoorLog.LogFile)
	g, stale := d.grants.plan(ld.Cfg, now)
	t0 := time.Now()
	release := d.blocks.hold(rs, ld.Cfg.Blocklists)
	err = d.bans.Install(now, func(b, a iter.Seq[firewall.Element]) error { return d.fw.ApplyEach(rs, b, a, g...) })
	if err != nil {
		release(false)
		return err
	}
	// Port-limited bans go back in right after: the install emptied their
	// sets (a gap of one netlink round trip on a reload).
	if err := d.fw.UpdatePortBans(nil, d.bans.PortBanElements(now)); err != nil {
		d.log.Error("port-limited bans are not in the kernel until they are banned again", "err", err)
	}
	release(true)
	d.grants.retire(stale, now)
	nb, na := d.bans.Counts()
	d.log.Debug("table installed", "bans", nb, "allows", na, "grants", len(g), "took", time.Since(t0))
	if err := d.st.SetMeta(MetaApplied, ld.Raw); err != nil {
		d.log.Warn("could not record the applied config", "err", err)
	}
	return nil
}

// The store key saying whether the daemon stopped cleanly, and its values.
const (
	metaStopped  = "daemon.stopped"
	stoppedClean = "clean"
	stoppedDirty = "running" // or killed: the store may lack bans the kernel holds
)

// markStopped marks the store clean, so the next start skips reading the
// kernel's bans back, but only if every store write worked: after a failed
// one (a full disk) the store lacks bans the kernel holds, and a start that
// trusted it would install the table from the store alone and drop them.
func (d *Daemon) markStopped() {
	if n := d.bans.Unsaved(); n > 0 {
		d.log.Warn("not marking the store as cleanly stopped: store writes failed since start (disk full?), so it may lack bans the kernel holds; the next start reads the kernel's bans back",
			"failed_writes", n, "store", d.st.Path())
		return
	}
	if err := d.st.SetMeta(metaStopped, []byte(stoppedClean)); err != nil {
		d.log.Warn("could not mark the store as cleanly stopped; the next start reads the kernel's bans back", "err", err)
	}
}

// adoptKernelBans takes into the store the bans only the kernel holds. A ban
// goes into the kernel before the store (see ban.Manager), so a daemon
// killed between the two leaves one behind, and installing the table from
// the store alone would drop it. After a clean stop the store has every
// ban, and the read (1.5 s per 100,000 elements) is skipped. A failure is
// logged, not returned: the start must go on with the bans the store has.
func (d *Daemon) adoptKernelBans() {
	if v, err := d.st.Meta(metaStopped); err == nil && string(v) == stoppedClean {
		return
	}
	if ok, err := d.fw.Exists(); err != nil || !ok {
		return // no table: nothing to adopt (after a reboot), or no nftables (install says so)
	}
	if n, _ := d.bans.Counts(); n > readBackMax {
		// The pending log (SetPending) has moat's own unsaved bans; the
		// kernel's sets take minutes to read back at this size.
		d.log.Info("not reading the kernel's bans back: too many to read at start; the bans moat had not saved come from its pending log", "bans", n)
		return
	}
	// Only what the store lacks is kept from the read: after a kill -9
	// with a million bans, that is a few, not a million.
	now := d.now()
	var els []firewall.Element
	err := d.fw.EachElement(firewall.Bans, func(e firewall.Element) {
		if !d.bans.Covered(e.Prefix, now) {
			els = append(els, e)
		}
	})
	if err != nil {
		d.log.Error("cannot read the kernel's bans back to adopt those the store lacks", "err", err)
		return
	}
	got, err := d.bans.Adopt(els, now)
	if len(got) > 0 {
		var addrs []string
		for _, e := range got[:min(len(got), 10)] {
			addrs = append(addrs, ban.PrefixString(e.Prefix))
		}
		d.log.Warn("bans found in the kernel but not in the store (moat stopped before saving them) are kept", "count", len(got), "first", addrs)
	}
	if err != nil {
		d.log.Error("adopting the kernel's bans", "err", err)
	}
}

// readBackMax is the most bans for which a start after an unclean stop
// reads the kernel's ban sets back (see adoptKernelBans): the kernel's set
// dumps restart their walk at every chunk, so the read grows with the
// square of the size: 1.3 s at 100,000, two minutes at a million.
const readBackMax = 100_000

// MetaApplied is the store key holding the text of the config in force.
const MetaApplied = "applied_config"

// reload rereads the config file and installs it. sshConn is the caller's
// session to protect (empty for SIGHUP).
func (d *Daemon) reload(sshConn string, force bool) error {
	ld, err := LoadConfig(d.opts.ConfigPath, d.opts.Explicit)
	if err != nil {
		return err
	}
	if _, err := CheckInterfaces(ld); err != nil {
		return err
	}
	return d.switchTo(ld, sshConn, force, 0)
}

func (d *Daemon) switchTo(ld *Loaded, sshConn string, force bool, confirm time.Duration) error {
	ports := SSHPorts(context.Background(), d.log)
	d.mu.Lock()
	d.sshPorts = ports
	prev := d.cur
	d.mu.Unlock()
	// Sessions and protected addresses as they are now, before the guards
	// are rebuilt on them.
	grace := loginGrace(context.Background())
	d.mu.Lock()
	d.sshGrace = grace
	d.mu.Unlock()
	d.sessions.refresh(ports, grace, d.now())
	d.prot.refresh()
	if err := d.guard(ld.Cfg, sshConn, force, true); err != nil {
		return err
	}
	if ld.Cfg.Daemon.StateDir != prev.Cfg.Daemon.StateDir || ld.Cfg.Daemon.Socket != prev.Cfg.Daemon.Socket {
		d.log.Warn("state_dir and socket changes take effect at the next start")
	}
	// A bad rule pattern refuses the whole config before anything changes.
	if _, err := login.CompileRules(ld.Cfg.Login); err != nil {
		return err
	}
	// SPA's keys load before anything changes: a config whose key files
	// do not load is refused whole.
	se, err := newSPAEngine(d.log, d.fw, d.grants, d.st, ld.Cfg, ports, d.spa.Load(), d.now(), false)
	if err != nil {
		return err
	}
	d.bans.Reconfigure(ld.Cfg.Firewall.Allow)
	if err := d.install(ld); err != nil {
		d.bans.Reconfigure(prev.Cfg.Firewall.Allow)
		return err
	}
	d.storeSPA(se)
	if eng, err := newDoorEngine(d.log, d.fw, d.grants, ld.Cfg.Doors); err != nil {
		d.log.Error("daemon-mode doors not reloaded", "err", err)
	} else {
		d.storeDoors(eng)
	}
	d.saveScan()
	d.startScan(ld.Cfg)
	if ld.Cfg.Firewall.LogGroup != prev.Cfg.Firewall.LogGroup {
		d.log.Warn("a new log_group takes effect at the next start")
	}
	if d.loginStop != nil || ld.Cfg.Login.Enabled {
		d.stopLogin()
		if err := d.startLogin(d.runCtx, ld.Cfg.Login); err != nil {
			d.log.Error("login guard not restarted", "err", err)
		}
	}
	d.mu.Lock()
	d.cur = ld
	d.enforcing = true
	if confirm > 0 {
		if d.pending == nil {
			d.pending = prev // keep the oldest: that is the one known to work
		}
		d.deadline = d.now().Add(confirm)
	} else {
		d.pending = nil
	}
	d.mu.Unlock()
	d.applyMetrics(ld.Cfg.Metrics)
	d.applyReport(ld.Cfg.Report)
	d.applyAlerts(ld.Cfg.Alert, ld.Cfg.Report.MinLevel)
	d.applyPage(ld.Cfg.Page, ld.Cfg.Daemon.StateDir)
	d.applyFleet(ld.Cfg.Fleet)
	d.poke()
	d.log.Info("config applied", "config", ld.Source, "confirm_within", confirm)
	return nil
}

func (d *Daemon) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// maintain expires bans on time, rolls back unconfirmed applies, and
// reconciles the kernel with the store.
func (d *Daemon) maintain(ctx context.Context) error {
	d.mu.Lock()
	every := d.cur.Cfg.Daemon.ReconcileEvery
	d.mu.Unlock()
	nextRec := d.now().Add(every)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		now := d.now()
		due := nextRec
		if t := d.bans.NextExpiry(); !t.IsZero() && t.Before(due) {
			due = t
		}
		d.mu.Lock()
		if d.pending != nil && d.deadline.Before(due) {
			due = d.deadline
		}
		d.mu.Unlock()
		timer.Reset(max(due.Sub(now), 0))
		select {
		case <-ctx.Done():
			return nil
		case <-d.wake:
			if !timer.Stop() {
				<-timer.C
			}
			continue
		case <-timer.C:
		}
		now = d.now()
		if err := d.bans.Expire(now); err != nil {
			d.log.Warn("expiring bans", "err", err)
		}
		d.rollbackIfDue(now)
		if !now.Before(nextRec) {
			d.reconcile()
			d.mu.Lock()
			every = d.cur.Cfg.Daemon.ReconcileEvery
			d.mu.Unlock()
			nextRec = d.now().Add(every)
		}
	}
}

func (d *Daemon) rollbackIfDue(now time.Time) {
	d.mu.Lock()
	prev, deadline := d.pending, d.deadline
	d.mu.Unlock()
	if prev == nil || now.Before(deadline) {
		return
	}
	d.log.Warn("apply was not confirmed in time: rolling back", "to", prev.Source)
	// The whole config, not only the table: the scan guard, the login
	// guard and the doors must not keep running with what was not
	// confirmed. force: the config being restored is the one known to work.
	if err := d.switchTo(prev, "", true, 0); err != nil {
		d.log.Error("rollback failed; trying again in 5s", "err", err)
		d.mu.Lock()
		d.deadline = now.Add(5 * time.Second)
		d.mu.Unlock()
	}
}

// reconcile re-installs a table that vanished (a `flush ruleset` elsewhere)
// and re-adds set elements the kernel lost.
func (d *Daemon) reconcile() { d.check(true) }

// check reinstalls the table if it vanished, or installs it again with
// bigger host sets when they fill up, and, when full, also re-adds set
// elements the kernel lost. The existence check is cheap and runs every
// few seconds. Reading the sets back is not (seconds for a million): every
// reconcile_every it is done only if the monitor saw another process
// delete elements, or lost track (see kernelWatch); the rules, a few
// dozen, are compared each time.
func (d *Daemon) check(full bool) {
	d.mu.Lock()
	enforcing, cur := d.enforcing, d.cur
	d.mu.Unlock()
	if !enforcing {
		return
	}
	d.warnInterfaces(cur.Cfg.Firewall)
	ok, err := d.fw.Exists()
	if err != nil {
		d.log.Error("reconcile: cannot read the kernel's tables", "err", err)
		return
	}
	n := 0
	if !ok {
		d.log.Warn("table inet moat is gone from the kernel (a flush elsewhere?): reinstalling it with every ban")
		if err := d.install(cur); err != nil {
			d.log.Error("reconcile: reinstall failed", "err", err)
			return
		}
		b, a := d.bans.Counts()
		n = b + a
	} else if d.fw.Crowded() {
		d.log.Info("the ban sets are filling up: installing the table again with bigger ones")
		if err := d.install(cur); err != nil {
			d.log.Error("reconcile: reinstall failed", "err", err)
			return
		}
	} else if !full {
		return
	} else if !d.kernelSuspect() {
		d.repairDrift(cur)
	} else {
		n, err = d.bans.Reconcile(d.fw.EachElement, d.now())
		if np, perr := d.reconcilePortBans(); perr != nil {
			err = errors.Join(err, perr)
		} else {
			n += np
		}
		if err != nil {
			d.kw.changed()
			d.log.Error("reconcile failed", "err", err)
			return
		}
		if n > 0 {
			d.log.Warn("reconcile: re-added set elements missing from the kernel", "count", n)
		}
		d.repairDrift(cur)
	}
	d.mu.Lock()
	d.lastRec = d.now()
	d.reasserted += n
	d.mu.Unlock()
}

// startLogin starts the login guard's followers for cfg (nothing when it is
// disabled). stopLogin undoes it; reload does both.
func (d *Daemon) startLogin(ctx context.Context, cfg config.Login) error {
	if !cfg.Enabled {
		return nil
	}
	rules, err := login.CompileRules(cfg)
	if err != nil {
		return err
	}
	plan := loginSources(ctx, cfg)
	for _, w := range plan.Warnings {
		d.log.Warn(w)
	}
	for _, n := range plan.Notes {
		d.log.Info(n)
	}
	srcs := plan.Sources
	if len(cfg.Sources) == 0 && rules.Len() == 0 {
		d.log.Warn("login guard watches nothing: [login] sources is empty and there is no [[login.rule]]; set [login] sources, or enabled = false")
	}
	g := newLoginGuard(cfg, d.log, d.bans)
	g.tried = &d.report.tried
	g.bus = d.events
	g.protected = d.prot
	g.accepted = func(a netip.Addr, port uint16) {
		d.mu.Lock()
		ports, grace := d.sshPorts, d.sshGrace
		d.mu.Unlock()
		d.sessions.accept(a, port, ports, grace, d.now())
	}
	d.loadCounters(g)
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = d.followLogin(lctx, g, srcs, rules)
		// Saved after the followers stopped, with their positions: the
		// next start resumes both exactly.
		d.saveCounters(g)
	}()
	d.mu.Lock()
	d.login, d.loginSrcs = g, srcs
	d.loginStop = func() { cancel(); <-done }
	d.mu.Unlock()
	// Never "login guard on sources=[]": say what is followed, or what
	// to do when nothing is.
	switch {
	case len(srcs) > 0:
		d.log.Info("login guard on", "sources", srcs, "max_retry", cfg.MaxRetry, "find_time", cfg.FindTime, "mode", cfg.Mode)
	case rules.Len() > 0:
		d.log.Warn("login guard follows no sshd log, only the logs of its [[login.rule]] tables: sshd's failed logins are not counted; set [login] sources to \"journal\" or the file sshd logs to", "rules", rules.Len())
	case len(cfg.Sources) > 0: // empty sources was warned about above
		d.log.Warn("login guard follows no log and counts nothing: set [login] sources to \"journal\" or the file sshd logs to (e.g. /var/log/auth.log), or [login] enabled = false")
	}
	return nil
}

func (d *Daemon) stopLogin() {
	d.mu.Lock()
	stop := d.loginStop
	d.loginStop, d.login = nil, nil
	d.mu.Unlock()
	if stop != nil {
		stop()
	}
}

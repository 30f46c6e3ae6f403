package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/moat-fw/moat/internal/authlog"
	"github.com/moat-fw/moat/internal/ban"
	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/events"
	"github.com/moat-fw/moat/internal/login"
	"github.com/moat-fw/moat/internal/sshd"
)

// OriginLogin marks bans made by the login guard.
const OriginLogin = "login"

// loginGuard runs the login guard (package login) on the daemon's
// followed lines: it vouches for lines from syslog files (sshpeers.go),
// tells the session table of logins, and applies the guard's decisions
// through the ban policy (decide.go).
type loginGuard struct {
	cfg  config.Login
	log  *slog.Logger
	bans loginBans
	bus  *events.Bus
	// protected says why an address must never be banned, if it must (the
	// host's own addresses, its routers, logged-in sessions, grants: see
	// package protect): such failures are not even counted.
	protected ban.Protector

	mu  sync.Mutex
	det *login.Guard // under mu
	// accepted reports an Accepted line to the daemon's session table
	// (sessiontable.go); the sessions it finds reach the guard through
	// protected.
	accepted func(a netip.Addr, port uint16)
	banned   int
	// tried tallies the user names each address tried, for `moat status
	// ADDR` (report.go); nil tallies nothing.
	tried    *userTally
	sshPorts []uint16 // sshd's ports, for rules whose ports say "ssh"

	trust fileTrust // what vouches for lines from syslog files (see sshpeers.go)

	// names resolves the host names sshd writes with UseDNS yes, when
	// [login] use_dns is "warn" or "yes"; nil for "no".
	names *nameResolver
	// Host-name events by outcome (under mu): not resolved (use_dns "no"),
	// resolved but not counted (login.NameAddr's rule), counted.
	namesIgnored, namesRefused, namesCounted uint64
}

func newLoginGuard(cfg config.Login, log *slog.Logger, bans loginBans) *loginGuard {
	g := &loginGuard{cfg: cfg, log: log, bans: bans}
	g.det = login.New(cfg, loginPolicy{g})
	if cfg.UseDNS == "warn" || cfg.UseDNS == "yes" {
		g.names = newNameResolver(net.DefaultResolver, time.Now)
	}
	return g
}

// newJoiner is the joiner of one log source (docs/login-parser.md): it
// ties together the lines sshd writes about one connection. It always
// reports host names, so that use_dns "no" can count them in status.
func newJoiner() *authlog.Joiner { return authlog.NewJoiner(authlog.JoinerConfig{Names: true}) }

// fileLine handles one line of a followed syslog file through the file's
// joiner. Called only from that file's goroutine.
func (g *loginGuard) fileLine(j *authlog.Joiner, evs []authlog.Event, line []byte, now time.Time) []authlog.Event {
	evs = j.Line(line, now, evs[:0])
	g.joined(evs, now, true)
	return evs
}

// journalMessage handles one journal message of sshd through the
// journal's joiner. Called only from the journal's goroutine.
func (g *loginGuard) journalMessage(j *authlog.Joiner, evs []authlog.Event, msg []byte, pid uint32, now time.Time) []authlog.Event {
	evs = j.Message(msg, pid, now, evs[:0])
	g.joined(evs, now, false)
	return evs
}

// joined hands a joiner's events to the guard: those with an address as
// the source's own lines (a file's through its trust checks), those with
// only a host name to use_dns.
func (g *loginGuard) joined(evs []authlog.Event, now time.Time, fromFile bool) {
	for i := range evs {
		ev := &evs[i]
		switch {
		case !ev.Addr.IsValid():
			g.hostName(ev, now, fromFile)
		case fromFile:
			g.sshdFromFile(ev, now)
		default:
			g.sshd(ev, now)
		}
	}
}

// hostName handles an event whose client sshd wrote as a host name. With
// use_dns "no" it is counted in status only; otherwise the name is looked
// up off this goroutine (resolve never blocks) and the event counts, as the
// source's own, for the one address login.NameAddr allows, if any.
func (g *loginGuard) hostName(ev *authlog.Event, now time.Time, fromFile bool) {
	if len(ev.Host) == 0 {
		return
	}
	if g.names == nil {
		g.mu.Lock()
		g.namesIgnored++
		g.mu.Unlock()
		g.log.Debug("login failure by host name not counted (use_dns = \"no\")", "host", string(ev.Host), "kind", ev.Kind)
		return
	}
	// The event may wait for a lookup: it must not alias the line.
	e := *ev
	e.User, e.Host = bytes.Clone(ev.User), nil
	host := string(ev.Host)
	if !g.names.resolve(host, func(addrs []netip.Addr, err error) { g.resolvedName(host, &e, addrs, err, now, fromFile) }) {
		g.log.Debug("login failure by host name dropped: too many names waiting for DNS", "host", host)
	}
}

// resolvedName counts a host-name event once its name is looked up.
func (g *loginGuard) resolvedName(host string, ev *authlog.Event, addrs []netip.Addr, err error, now time.Time, fromFile bool) {
	a, why := netip.Addr{}, ""
	if err != nil {
		why = "the name does not resolve: " + err.Error()
	} else {
		a, why = login.NameAddr(addrs, func(a netip.Addr) (string, bool) { return loginPolicy{g}.Exempt(a, now) })
	}
	g.mu.Lock()
	if why != "" {
		g.namesRefused++
	} else {
		g.namesCounted++
	}
	g.mu.Unlock()
	if why != "" {
		g.log.Info("login failure by host name not counted", "host", host, "kind", ev.Kind, "why", why)
		return
	}
	if g.cfg.UseDNS == "warn" {
		// fail2ban's "warn": the name counts, and the admin hears that the
		// client chose what it resolves to.
		g.log.Warn("counting a login failure by the address of a host name sshd wrote; the client controls its DNS (use_dns = \"warn\")", "host", host, "addr", a, "kind", ev.Kind)
	}
	e := *ev
	e.Addr = a
	if fromFile {
		g.sshdFromFile(&e, now)
	} else {
		g.sshd(&e, now)
	}
}

// loginPolicy answers the login guard's questions from the ban manager and
// the protected set.
type loginPolicy struct{ g *loginGuard }

var _ login.Policy = loginPolicy{}

func (p loginPolicy) Exempt(a netip.Addr, now time.Time) (string, bool) {
	if p.g.bans.IsAllowed(a, now) {
		return "in the allow list", true
	}
	if p.g.protected != nil {
		if e, ok := p.g.protected.Protected(netip.PrefixFrom(a, a.BitLen())); ok {
			return "protected: " + e.Why, true
		}
	}
	return "", false
}

func (p loginPolicy) Banned(a netip.Addr, now time.Time) bool { return p.g.bans.Active(a, now) }

func (p loginPolicy) BannedWithin(q netip.Prefix, now time.Time) int {
	return p.g.bans.CountWithin(q, OriginLogin, now)
}

// sshd handles one sshd event.
func (g *loginGuard) sshd(ev *authlog.Event, now time.Time) {
	if ev.Kind == authlog.Accepted && g.accepted != nil {
		g.accepted(ev.Addr, ev.Port)
	}
	g.observe(login.SSHD, ev, now)
}

// ruleLine takes a [[login.rule]]'s match: the guard's bookkeeping of
// connection ids says which failure, if any, it stands for.
func (g *loginGuard) ruleLine(m *login.RuleLine, now time.Time) {
	g.mu.Lock()
	ev, ok := g.det.Attribute(m, now)
	g.mu.Unlock()
	if ok {
		g.observe(m.Rule, &ev, now)
	}
}

func (g *loginGuard) observe(rule string, ev *authlog.Event, now time.Time) {
	var decs [2]login.Decision
	g.mu.Lock()
	n := copy(decs[:], g.det.Observe(rule, ev, now))
	g.mu.Unlock()
	if g.tried != nil && len(ev.User) > 0 && g.det.Counts(rule, ev) {
		g.tried.note(ev.Addr.Unmap(), ev.User)
	}
	// Applied without the lock: a ban waits for the kernel.
	g.apply(decs[:n], now)
}

// LoginStatus is the login guard's part of `moat status`.
type LoginStatus struct {
	Enabled  bool          `json:"enabled"`
	Sources  []string      `json:"sources"`
	Counting int           `json:"counting"` // addresses with failures being counted
	Banned   int           `json:"banned"`   // bans made since start
	Events   uint64        `json:"events"`   // failures counted since start
	TopUsers []UserAttempt `json:"top_users,omitempty"`

	// Names counts events whose client sshd wrote as a host name.
	Names NameStatus `json:"names"`

	// Unverified counts sshd lines from syslog files not counted: the
	// kernel saw no handshake behind them (or, for Accepted, no connection
	// held by a logged-in sshd process).
	Unverified uint64 `json:"unverified_lines"`
}

// NameStatus is what became of the host names sshd wrote ([login] use_dns).
type NameStatus struct {
	UseDNS      string `json:"use_dns"`
	NotResolved uint64 `json:"not_resolved"` // use_dns "no": names not resolved, nothing counted
	NotCounted  uint64 `json:"not_counted"`  // resolved to none, several or a protected address, or failed
	Counted     uint64 `json:"counted"`      // resolved to the one address counted
	NameStats
}

// UserAttempt is a user name and how often it was tried.
type UserAttempt = login.UserAttempt

func (g *loginGuard) status(sources []string) LoginStatus {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.det.Status()
	ns := NameStatus{UseDNS: g.cfg.UseDNS, NotResolved: g.namesIgnored, NotCounted: g.namesRefused, Counted: g.namesCounted}
	if g.names != nil {
		ns.NameStats = g.names.statsNow()
	}
	return LoginStatus{Enabled: true, Sources: sources, Counting: s.Counting, Banned: g.banned, Events: s.Events,
		TopUsers: s.TopUsers, Unverified: g.trust.unverified, Names: ns}
}

// sshdLoggingTimeout bounds the sshd -T that loginSources runs: the daemon
// starts (and reloads) behind it, and a hung sshd must not hold it up. A
// variable so that a test need not wait the 5 s out.
var sshdLoggingTimeout = 5 * time.Second

// loginSources resolves [login] sources with what sshd -T says about
// sshd's logging; see planLoginSources. When the guard does not watch sshd
// (sources = []) sshd is not asked.
func loginSources(ctx context.Context, cfg config.Login) login.SourcePlan {
	if len(cfg.Sources) == 0 {
		return login.SourcePlan{}
	}
	return login.PlanSources(cfg.Sources, readSSHDLogging(ctx, sshd.Server{}), journalAvailable(), fileExists)
}

// readSSHDLogging runs sshd -T for SyslogFacility and LogLevel. A failure
// is kept in Err rather than returned: the login guard runs without them.
func readSSHDLogging(ctx context.Context, srv sshd.Server) login.SSHDLogging {
	ctx, cancel := context.WithTimeout(ctx, sshdLoggingTimeout)
	defer cancel()
	e, err := srv.Effective(ctx, "")
	if err != nil {
		return login.SSHDLogging{Err: err}
	}
	return login.SSHDLogging{Facility: e.Get("syslogfacility"), Level: e.Get("loglevel")}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func journalAvailable() bool {
	if _, err := os.Stat("/run/systemd/journal/socket"); err != nil {
		return false
	}
	_, err := exec.LookPath("journalctl")
	return err == nil
}

// Store keys for where each login source was read up to.
func metaPosKey(path string) string { return "login.pos:" + path }

const metaJournalCursor = "login.journal_cursor"

// follow runs the followers of every source until ctx ends, restarting one
// that fails after a pause. Positions are saved as lines are handled so a
// restart neither repeats nor misses lines.
func (d *Daemon) followLogin(ctx context.Context, g *loginGuard, sources []string, rules *login.RuleSet) error {
	var wg sync.WaitGroup
	run := func(name string, fn func(context.Context) error) {
		wg.Go(func() {
			for ctx.Err() == nil {
				if err := fn(ctx); err != nil && ctx.Err() == nil {
					d.log.Warn("login source failed; retrying in 5s", "source", name, "err", err)
					select {
					case <-ctx.Done():
					case <-time.After(5 * time.Second):
					}
				}
			}
		})
	}
	d.mu.Lock()
	ports := d.sshPorts
	d.mu.Unlock()
	g.trust.peers = &d.peers
	g.trust.conns = func() map[connKey]bool { return sshdConns(ports) }
	g.sshPorts = ports
	if g.names != nil {
		wg.Go(func() { g.names.run(ctx, nameWorkers) })
	}
	rechecking := false
	for _, src := range sources {
		if src == "journal" {
			run(src, func(ctx context.Context) error { return d.followJournal(ctx, g) })
			continue
		}
		d.log.Warn(fileSourceWarning(src))
		if !rechecking {
			rechecking = true
			wg.Go(func() { g.recheckAccepts(ctx, d.now) })
		}
		// One joiner per file, kept across restarts of its follower,
		// used only by its goroutine: files do not share PIDs.
		j := newJoiner()
		var evs []authlog.Event
		run(src, func(ctx context.Context) error {
			return d.followFile(ctx, src, func(line []byte, now time.Time) {
				evs = g.fileLine(j, evs, line, now)
			})
		})
	}
	// One follower per rule file, whose lines go through every rule that
	// reads it, in the file's order: a jail's connection ids (fail2ban's
	// <F-MLFID>) are recorded by one line and used by a later one.
	for _, src := range rules.Sources() {
		var ms []login.RuleLine
		run(src, func(ctx context.Context) error {
			return d.followFile(ctx, src, func(line []byte, now time.Time) {
				ms = rules.Match(src, line, false, ms[:0])
				for i := range ms {
					g.ruleLine(&ms[i], now)
				}
			})
		})
	}
	wg.Wait()
	return nil
}

// positionSaveEvery bounds how many lines a crash can replay.
const positionSaveEvery = time.Second

// saveLatest keeps the latest value set saved with save, every
// positionSaveEvery and once more when ctx ends, from its own goroutine: a
// save is an fsync, which has no place on the per-line path. wait returns
// once the last save is done.
func saveLatest[T comparable](ctx context.Context, save func(T)) (set func(T), wait func()) {
	var mu sync.Mutex
	var latest, saved T
	flush := func() {
		mu.Lock()
		v := latest
		mu.Unlock()
		if v != saved {
			save(v)
			saved = v
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(positionSaveEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				flush()
				return
			case <-t.C:
				flush()
			}
		}
	}()
	return func(v T) {
			mu.Lock()
			latest = v
			mu.Unlock()
		}, func() {
			<-done
		}
}

func (d *Daemon) followFile(ctx context.Context, path string, handle func(line []byte, now time.Time)) error {
	var start authlog.Position
	if raw, err := d.st.Meta(metaPosKey(path)); err == nil && raw != nil {
		if err := json.Unmarshal(raw, &start); err != nil {
			d.log.Warn("ignoring a corrupt saved log position", "source", path, "err", err)
		}
	}
	sctx, cancel := context.WithCancel(ctx)
	set, wait := saveLatest(sctx, func(p authlog.Position) {
		raw, _ := json.Marshal(p)
		if err := d.st.SetMeta(metaPosKey(path), raw); err != nil {
			d.log.Warn("cannot save the log position", "source", path, "err", err)
		}
	})
	defer func() { cancel(); wait() }()
	return authlog.NewFileFollower(path, start).Run(ctx, func(line []byte, pos authlog.Position) error {
		handle(line, d.now())
		set(pos)
		return nil
	})
}

func (d *Daemon) followJournal(ctx context.Context, g *loginGuard) error {
	cursor := ""
	if raw, err := d.st.Meta(metaJournalCursor); err == nil {
		cursor = string(raw)
	}
	sctx, cancel := context.WithCancel(ctx)
	set, wait := saveLatest(sctx, func(cur string) {
		if err := d.st.SetMeta(metaJournalCursor, []byte(cur)); err != nil {
			d.log.Warn("cannot save the journal cursor", "err", err)
		}
	})
	defer func() { cancel(); wait() }()
	f := authlog.NewJournalFollower(cursor, func(err error) { d.log.Warn("journal", "err", err) })
	j := newJoiner()
	var evs []authlog.Event
	return f.RunPID(ctx, func(msg []byte, pid uint32, cur string) error {
		evs = g.journalMessage(j, evs, msg, pid, d.now())
		set(cur)
		return nil
	})
}

// Store keys of the counters saved at a clean stop, so failures counted
// before a restart still count after it.
func metaCounterKey(name string) string { return "login.counter:" + name }

func (d *Daemon) saveCounters(g *loginGuard) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, name := range g.det.Rules() {
		if err := d.st.SetMeta(metaCounterKey(name), g.det.AppendSnapshot(name, nil)); err != nil {
			d.log.Warn("cannot save login counters; failures in progress restart from zero", "err", err)
			return
		}
	}
}

func (d *Daemon) loadCounters(g *loginGuard) {
	now := d.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, name := range g.det.Rules() {
		raw, err := d.st.Meta(metaCounterKey(name))
		if err != nil || raw == nil {
			continue
		}
		if err := g.det.LoadSnapshot(name, raw, now); err != nil {
			d.log.Info("login counters not restored", "counter", name, "why", err)
		}
	}
}

package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/moat-fw/moat/internal/authlog"
	"github.com/moat-fw/moat/internal/ban"
	"github.com/moat-fw/moat/internal/config"
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

	trust fileTrust // what vouches for lines from syslog files (see sshpeers.go)
}

func newLoginGuard(cfg config.Login, log *slog.Logger, bans loginBans) *loginGuard {
	g := &loginGuard{cfg: cfg, log: log, bans: bans}
	g.det = login.New(cfg, loginPolicy{g})
	return g
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

// rule handles a line that [[login.rule]] name matched, naming a.
func (g *loginGuard) rule(name string, a netip.Addr, now time.Time) {
	ev := authlog.Event{Addr: a, Count: 1}
	g.observe(name, &ev, now)
}

func (g *loginGuard) observe(rule string, ev *authlog.Event, now time.Time) {
	var decs [2]login.Decision
	g.mu.Lock()
	n := copy(decs[:], g.det.Observe(rule, ev, now))
	g.mu.Unlock()
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

	// Unverified counts sshd lines from syslog files not counted: the
	// kernel saw no handshake behind them (or, for Accepted, no connection
	// held by a logged-in sshd process).
	Unverified uint64 `json:"unverified_lines"`
}

// UserAttempt is a user name and how often it was tried.
type UserAttempt = login.UserAttempt

func (g *loginGuard) status(sources []string) LoginStatus {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.det.Status()
	return LoginStatus{Enabled: true, Sources: sources, Counting: s.Counting, Banned: g.banned, Events: s.Events,
		TopUsers: s.TopUsers, Unverified: g.trust.unverified}
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
func (d *Daemon) followLogin(ctx context.Context, g *loginGuard, sources []string, rules []compiledRule) error {
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
		run(src, func(ctx context.Context) error {
			return d.followFile(ctx, src, func(line []byte, now time.Time) {
				var ev authlog.Event
				if authlog.ParseSSHD(line, &ev) {
					g.sshdFromFile(&ev, now)
				}
			})
		})
	}
	for _, r := range rules {
		run(r.name, func(ctx context.Context) error {
			return d.followFile(ctx, r.source, func(line []byte, now time.Time) {
				if a, ok := r.rule.Match(line); ok {
					g.rule(r.name, a, now)
				}
			})
		})
	}
	wg.Wait()
	return nil
}

type compiledRule struct {
	name, source string
	rule         *authlog.Rule
}

func compileRules(cfg config.Login) ([]compiledRule, error) {
	var out []compiledRule
	for _, r := range cfg.Rules {
		cr, err := authlog.CompileRule(r.Pattern)
		if err != nil {
			return nil, fmt.Errorf("config: [[login.rule]] %q: %w", r.Name, err)
		}
		out = append(out, compiledRule{name: r.Name, source: r.Source, rule: cr})
	}
	return out, nil
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
	j := authlog.NewJournalFollower(cursor, func(err error) { d.log.Warn("journal", "err", err) })
	return j.Run(ctx, func(msg []byte, cur string) error {
		var ev authlog.Event
		if authlog.ParseSSHDMessage(msg, &ev) {
			g.sshd(&ev, d.now())
		}
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

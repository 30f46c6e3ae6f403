package daemon

import (
	"net/netip"
	"time"

	"github.com/moat-fw/moat/internal/ban"
	"github.com/moat-fw/moat/internal/login"
	"github.com/moat-fw/moat/internal/store"
)

// loginBans is what the login path needs of the ban policy: the ban
// manager, or a fake in tests.
type loginBans interface {
	Add(r ban.Request, now time.Time) (store.Entry, error)
	IsAllowed(a netip.Addr, now time.Time) bool
	Active(a netip.Addr, now time.Time) bool
	CountWithin(p netip.Prefix, origin string, now time.Time) int
}

var _ loginBans = (*ban.Manager)(nil)

// apply applies the login guard's decisions: bans go through the ban
// policy with the config's backoff, a /64 escalation only after its
// address's ban took.
func (g *loginGuard) apply(decs []login.Decision, now time.Time) {
	took := false
	for _, dec := range decs {
		switch {
		case dec.Action == login.Skip:
			g.log.Debug("login failure not counted", "addr", dec.Addr(), "why", dec.Why)
		case dec.Action != login.Ban:
		case dec.Escalation:
			// A port-limited rule bans single addresses only.
			if took && len(login.RulePorts(g.cfg, dec.Rule)) == 0 {
				g.escalate(dec, now)
			}
		default:
			took = g.ban(dec, now)
		}
	}
}

// backoff is the ban length policy of rule's bans: its own ban_time (a
// [[login.rule]] may set one, as a fail2ban jail does) growing with
// repeats up to max_ban_time, never below the rule's own first ban.
func (g *loginGuard) backoff(rule string) *ban.Backoff {
	base := login.RuleBanTime(g.cfg, rule)
	return &ban.Backoff{Base: base, Multiplier: g.cfg.BanTimeMultiplier, Max: max(g.cfg.MaxBanTime, base)}
}

// ban bans an address and says whether it is banned now.
func (g *loginGuard) ban(dec login.Decision, now time.Time) bool {
	a := dec.Addr()
	// A rule with ports (a fail2ban jail's port = http,https) bans only
	// those; ports that cannot be expanded ban the whole host.
	ports, perr := banPorts(login.RulePorts(g.cfg, dec.Rule), g.sshPorts)
	if perr != nil {
		g.log.Warn("banning on every port", "rule", dec.Rule, "err", perr)
	}
	e, err := g.bans.Add(ban.Request{Prefix: dec.Prefix, Origin: OriginLogin, Reason: dec.Reason, Backoff: g.backoff(dec.Rule), NoWait: true, Ports: ports}, now)
	if err != nil {
		g.log.Error("login guard could not ban", "addr", a, "err", err)
		if !e.Prefix.IsValid() {
			return false
		}
	}
	g.mu.Lock()
	g.banned++
	g.mu.Unlock()
	g.log.Info("banned", "addr", a, "origin", OriginLogin, "reason", dec.Reason, "until", e.Expires, "count", e.Count, "ports", banPortStrings(e.Ports))
	g.bus.Publish(banEvent(e, now))
	return true
}

// escalate bans the /64 of addresses just banned.
func (g *loginGuard) escalate(dec login.Decision, now time.Time) {
	e, err := g.bans.Add(ban.Request{Prefix: dec.Prefix, Origin: OriginLogin, Reason: dec.Reason, NoWait: true, Backoff: g.backoff(dec.Rule)}, now)
	if err != nil {
		g.log.Warn("login guard could not ban the /64", "prefix", dec.Prefix, "err", err)
		return
	}
	g.log.Info("banned", "addr", dec.Prefix, "origin", OriginLogin, "reason", dec.Reason, "until", e.Expires)
	g.bus.Publish(banEvent(e, now))
}

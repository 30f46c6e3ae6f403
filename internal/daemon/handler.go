package daemon

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/moat-fw/moat/internal/ban"
	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/control"
	"github.com/moat-fw/moat/internal/events"
	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/store"
)

func (d *Daemon) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+RouteStatus, d.status)
	mux.HandleFunc("GET "+RouteAddr, d.addrStatus)
	mux.HandleFunc("GET "+RouteFleet, d.serveFleet)
	mux.HandleFunc("GET "+RouteBans, func(w http.ResponseWriter, r *http.Request) {
		out := []EntryJSON{}
		for _, e := range d.bans.List(d.now()) {
			out = append(out, ToJSON(e))
		}
		control.WriteJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("POST "+RouteBans, d.banAdd)
	d.blocklistRoutes(mux)
	mux.HandleFunc("POST "+RouteBansFlush, d.banFlush)
	mux.HandleFunc("POST "+RouteBansDel, func(w http.ResponseWriter, r *http.Request) {
		var req DelRequest
		p, ok := decodeAddr(w, r, &req, &req.Addr)
		if !ok {
			return
		}
		found, err := d.bans.Del(p, d.now())
		if err != nil {
			control.WriteError(w, http.StatusInternalServerError, err)
			return
		}
		if found {
			d.log.Info("unbanned", "addr", ban.PrefixString(p))
			d.events.Publish(events.Event{Time: d.now(), Kind: events.Unban, Prefix: p, Origin: ban.OriginManual})
		}
		control.WriteJSON(w, http.StatusOK, DelResponse{Found: found})
	})
	mux.HandleFunc("GET "+RouteAllows, func(w http.ResponseWriter, r *http.Request) {
		out := []EntryJSON{}
		for _, e := range d.bans.Allows(d.now()) {
			out = append(out, ToJSON(e))
		}
		control.WriteJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("POST "+RouteAllows, d.allowAdd)
	mux.HandleFunc("POST "+RouteAllowDel, func(w http.ResponseWriter, r *http.Request) {
		var req DelRequest
		p, ok := decodeAddr(w, r, &req, &req.Addr)
		if !ok {
			return
		}
		found, err := d.bans.Disallow(p, d.now())
		if err != nil {
			control.WriteError(w, statusFor(err), err)
			return
		}
		control.WriteJSON(w, http.StatusOK, DelResponse{Found: found})
	})
	mux.HandleFunc("POST "+RouteApply, d.apply)
	mux.HandleFunc("GET "+RouteDoors, func(w http.ResponseWriter, r *http.Request) {
		control.WriteJSON(w, http.StatusOK, d.doorsList())
	})
	mux.HandleFunc("GET "+RouteDoorLog, func(w http.ResponseWriter, r *http.Request) {
		control.WriteJSON(w, http.StatusOK, d.grants.events(0))
	})
	mux.HandleFunc("GET "+RouteGrants, func(w http.ResponseWriter, r *http.Request) {
		gs, err := d.grantsList()
		if err != nil {
			control.WriteError(w, http.StatusInternalServerError, err)
			return
		}
		control.WriteJSON(w, http.StatusOK, gs)
	})
	mux.HandleFunc("POST "+RouteConfirm, func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		had := d.pending != nil
		d.pending = nil
		d.mu.Unlock()
		if !had {
			control.WriteError(w, http.StatusConflict, errors.New("nothing to confirm: no apply is waiting for confirmation"))
			return
		}
		d.log.Info("apply confirmed")
		control.WriteJSON(w, http.StatusOK, struct{}{})
	})
	mux.HandleFunc("POST "+RouteOff, func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		d.enforcing, d.pending = false, nil
		d.mu.Unlock()
		existed, err := d.fw.Remove()
		if err != nil {
			control.WriteError(w, http.StatusInternalServerError, err)
			return
		}
		d.log.Warn("firewall turned off: table inet moat removed; `moat firewall apply` puts it back", "existed", existed)
		control.WriteJSON(w, http.StatusOK, DelResponse{Found: existed})
	})
	return mux
}

func statusFor(err error) int {
	if errors.Is(err, ban.ErrRefused) {
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

// ParsePrefix accepts an address or a CIDR as the config's allow list
// does: host bits set, zones and bad syntax are refused with the reason.
func ParsePrefix(s string) (netip.Prefix, error) {
	p, err := config.ParseAddrOrPrefix(strings.TrimSpace(s))
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q: %w", s, err)
	}
	return p, nil
}

func decodeAddr(w http.ResponseWriter, r *http.Request, req any, addr *string) (netip.Prefix, bool) {
	if err := control.DecodeJSON(r, req); err != nil {
		control.WriteError(w, http.StatusBadRequest, err)
		return netip.Prefix{}, false
	}
	p, err := ParsePrefix(*addr)
	if err != nil {
		control.WriteError(w, http.StatusBadRequest, err)
		return netip.Prefix{}, false
	}
	return p, true
}

func (d *Daemon) banAdd(w http.ResponseWriter, r *http.Request) {
	var req AddRequest
	p, ok := decodeAddr(w, r, &req, &req.Addr)
	if !ok {
		return
	}
	s, _ := firewall.ParseSSHConnection(req.Session)
	d.mu.Lock()
	sshPorts := d.sshPorts
	d.mu.Unlock()
	ports, err := parseBanPorts(req.Ports, sshPorts)
	if err != nil {
		control.WriteError(w, http.StatusBadRequest, err)
		return
	}
	e, err := d.bans.Add(ban.Request{Prefix: p, For: req.For, Origin: ban.OriginManual, Reason: req.Reason,
		Session: s.Client, Force: req.Force, Ports: ports}, d.now())
	if err != nil {
		control.WriteError(w, statusFor(err), err)
		return
	}
	d.log.Info("banned", "addr", ban.PrefixString(e.Prefix), "origin", e.Origin, "reason", e.Reason,
		"expires", e.Expires, "count", e.Count)
	ev := banEvent(e, d.now())
	ev.Fleet = req.Fleet // `moat ban add --fleet`: shared with the fleet
	d.events.Publish(ev)
	d.poke()
	control.WriteJSON(w, http.StatusOK, ToJSON(e))
}

func (d *Daemon) allowAdd(w http.ResponseWriter, r *http.Request) {
	var req AddRequest
	p, ok := decodeAddr(w, r, &req, &req.Addr)
	if !ok {
		return
	}
	e, lifted, err := d.bans.Allow(ban.AllowRequest{Prefix: p, For: req.For, Reason: req.Reason}, d.now())
	if err != nil {
		control.WriteError(w, statusFor(err), err)
		return
	}
	resp := AllowResponse{Entry: ToJSON(e)}
	for _, q := range lifted {
		resp.Lifted = append(resp.Lifted, ban.PrefixString(q))
	}
	d.log.Info("allowed", "addr", ban.PrefixString(e.Prefix), "lifted_bans", resp.Lifted)
	d.poke()
	control.WriteJSON(w, http.StatusOK, resp)
}

func (d *Daemon) apply(w http.ResponseWriter, r *http.Request) {
	var req ApplyRequest
	if err := control.DecodeJSON(r, &req); err != nil {
		control.WriteError(w, http.StatusBadRequest, err)
		return
	}
	ld, err := LoadConfig(d.opts.ConfigPath, d.opts.Explicit)
	if err == nil {
		_, err = CheckInterfaces(ld)
	}
	if err != nil {
		control.WriteError(w, http.StatusBadRequest, err)
		return
	}
	if err := d.switchTo(ld, req.Session, req.Force, req.Confirm); err != nil {
		control.WriteError(w, statusFor(err), err)
		return
	}
	resp := ApplyResponse{Source: ld.Source}
	d.mu.Lock()
	if d.pending != nil {
		resp.Pending, resp.Deadline = true, d.deadline
	}
	d.mu.Unlock()
	control.WriteJSON(w, http.StatusOK, resp)
}

func (d *Daemon) status(w http.ResponseWriter, r *http.Request) {
	control.WriteJSON(w, http.StatusOK, d.snapshot())
}

// snapshot gathers what `moat status` and the metrics report.
func (d *Daemon) snapshot() Status {
	now := d.now()
	d.mu.Lock()
	st := Status{PID: os.Getpid(), Started: d.started, ConfigSource: d.cur.Source, Enforcing: d.enforcing,
		Open: openList(d.cur.Cfg, d.sshPorts), ClosedResponse: d.cur.Cfg.Firewall.ClosedResponse,
		LastReconcile: d.lastRec, Reasserted: d.reasserted, BansByOrigin: map[string]int{}}
	st.RulesRepaired = d.repaired
	st.ConfigPath = d.opts.ConfigPath
	if abs, err := filepath.Abs(st.ConfigPath); err == nil {
		st.ConfigPath = abs // the CLI runs in another directory
	}
	cur := d.cur
	if d.pending != nil {
		t := d.deadline
		st.PendingConfirm = &t
	}
	lg, srcs := d.login, d.loginSrcs
	d.mu.Unlock()
	if lg != nil {
		ls := lg.status(srcs)
		st.Login = &ls
	}
	if sg := d.scan.Load(); sg != nil {
		ss := sg.statusTop(now, d.reportTop())
		d.mu.Lock()
		if d.nflog != nil {
			s := d.nflog.Stats()
			ss.Lost = s.Lost + s.Overruns
		}
		d.mu.Unlock()
		st.Scan = &ss
	}
	// Counted in place: listing a million bans to count them took 120 MB.
	st.BansByOrigin = d.bans.CountByOrigin(now)
	for _, n := range st.BansByOrigin {
		st.Bans += n
	}
	st.Allows = len(d.bans.Allows(now))
	st.Protected = protectedJSON(d.prot.snapshot())
	st.LiftedBans = d.prot.lifted.Load()
	st.StoreWriteFailures = d.bans.Unsaved()
	st.ConfigFileDiffers = d.configFileDiffers(cur)
	st.Intake = d.intakeStatus()
	st.SPA = d.spa.Load().status()
	st.KnockGrantLatency, st.KnockReadLatency = d.knockLat.summary(), d.knockLat.readSummary()
	st.Fleet = d.fleetStatus()
	var err error
	if st.TablePresent, err = d.fw.Exists(); err == nil && st.TablePresent {
		st.Counters, err = d.fw.Counters()
	}
	if err != nil {
		d.log.Warn("status: reading the kernel", "err", err)
	}
	st.Report = d.reportStatus(&st, func(fn func(store.Entry)) { d.bans.Each(now, fn) }, now)
	st.Alerts = d.alertStatus()
	st.Version = buildVersion()
	st.Blocklists = d.blocks.status(st.Counters)
	return st
}

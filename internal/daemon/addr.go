package daemon

import (
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/control"
	"github.com/moat-fw/moat/internal/lookup"
	"github.com/moat-fw/moat/internal/portscan"
)

// RouteAddr is one address's story: GET /v1/addr?addr=ADDR.
const RouteAddr = "/v1/addr"

// AddrStatus is what moat knows and did about one address: `moat status
// ADDR`, psad's per-address detail and fail2ban's "is it banned" in one.
type AddrStatus struct {
	Addr      string                 `json:"addr"`
	Bans      []EntryJSON            `json:"bans"`                // bans covering it (host or prefix)
	Allowed   []string               `json:"allowed,omitempty"`   // allow entries covering it
	Protected string                 `json:"protected,omitempty"` // why no guard bans it, if it is protected
	Login     map[string]int         `json:"login_failures"`      // failures being counted, by rule
	Scan      *portscan.SourceReport `json:"scan,omitempty"`      // the scan guard's window of it
	Grants    []GrantJSON            `json:"grants"`              // doors and SPA grants open for it
	Events    []DoorEvent            `json:"door_events"`         // its door openings and closings still in memory
	// Users counts the user names it tried at login (failures counted
	// since start; at most 16 names kept).
	Users map[string]int `json:"login_users"`
	// Info is what the [report] look-ups know of it: name, country, network.
	Info lookup.Info `json:"info,omitzero"`
	// Danger is its fixed level under [[scan.danger]], if one covers it.
	Danger *int `json:"danger_override,omitempty"`
}

func (d *Daemon) addrStatus(w http.ResponseWriter, r *http.Request) {
	a, err := netip.ParseAddr(r.URL.Query().Get("addr"))
	if err != nil {
		control.WriteError(w, http.StatusBadRequest, errors.New("want ?addr=ADDRESS, like 203.0.113.7 or 2001:db8::7"))
		return
	}
	a = a.Unmap().WithZone("")
	now := d.now()
	st := AddrStatus{Addr: a.String(), Bans: []EntryJSON{}, Login: map[string]int{}, Grants: []GrantJSON{}, Events: []DoorEvent{}}
	for _, e := range d.bans.Covering(a, now) {
		st.Bans = append(st.Bans, ToJSON(e))
	}
	for _, e := range d.bans.Allows(now) {
		if e.Prefix.Contains(a) {
			st.Allowed = append(st.Allowed, e.Prefix.String())
		}
	}
	if d.prot != nil {
		if e, ok := d.prot.Protected(netip.PrefixFrom(a, a.BitLen())); ok {
			st.Protected = e.Why
		}
	}
	d.mu.Lock()
	lg := d.login
	d.mu.Unlock()
	if lg != nil {
		lg.mu.Lock()
		st.Login = lg.det.Failures(a, now)
		lg.mu.Unlock()
	}
	if sg := d.scan.Load(); sg != nil {
		sg.mu.Lock()
		if sr, ok := sg.det.Source(a, now); ok {
			st.Scan = &sr
		}
		sg.mu.Unlock()
	}
	for _, g := range d.grants.list() {
		if g.Addr == a {
			for _, p := range portStrings(g.Ports) {
				st.Grants = append(st.Grants, GrantJSON{Door: g.Door, Addr: a.String(), Port: p,
					Seconds: g.Expires.Sub(now).Seconds(), Opened: g.Opened, Until: g.Expires})
			}
		}
	}
	for _, e := range d.grants.events(0) {
		if strings.EqualFold(e.Addr, a.String()) {
			st.Events = append(st.Events, e)
		}
	}
	st.Users = d.report.tried.of(a)
	st.Info = d.addrInfo(r.Context(), a, 2*time.Second)
	d.mu.Lock()
	var scanCfg config.Scan
	if d.cur != nil {
		scanCfg = d.cur.Cfg.Scan
	}
	d.mu.Unlock()
	if lv, ok := scanCfg.DangerFor(a); ok {
		st.Danger = &lv
	}
	control.WriteJSON(w, http.StatusOK, st)
}

package daemon

import (
	"time"

	"github.com/moat-fw/moat/internal/ban"
	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/fleet"
	"github.com/moat-fw/moat/internal/latency"
	"github.com/moat-fw/moat/internal/store"
)

// Routes of the control API.
const (
	RouteStatus   = "/v1/status"
	RouteBans     = "/v1/bans"
	RouteBansDel  = "/v1/bans/delete"
	RouteAllows   = "/v1/allows"
	RouteAllowDel = "/v1/allows/delete"
	RouteApply    = "/v1/firewall/apply"
	RouteConfirm  = "/v1/firewall/confirm"
	RouteOff      = "/v1/firewall/off"
	RouteDoors    = "/v1/doors"
	RouteGrants   = "/v1/grants"
	RouteDoorLog  = "/v1/doors/log"
)

// EntryJSON is a ban or allow as the CLI and `--json` show it.
type EntryJSON struct {
	Addr    string     `json:"addr"`
	Origin  string     `json:"origin"`
	Reason  string     `json:"reason"`
	Created time.Time  `json:"created"`
	Expires *time.Time `json:"expires"` // null: until removed
	Count   int        `json:"count"`
	Ports   []string   `json:"ports,omitempty"` // a port-limited ban's ports ("tcp/80"); absent: every port
	Host    string     `json:"host,omitempty"`  // the fleet host a remote ban came from
}

// ToJSON converts a store entry; host prefixes print as bare addresses.
func ToJSON(e store.Entry) EntryJSON {
	j := EntryJSON{Addr: ban.PrefixString(e.Prefix), Origin: e.Origin, Reason: e.Reason, Created: e.Created, Count: e.Count,
		Ports: banPortStrings(e.Ports), Host: e.Host}
	if !e.Expires.IsZero() {
		t := e.Expires
		j.Expires = &t
	}
	return j
}

// AddRequest asks to ban or allow an address or prefix.
type AddRequest struct {
	Addr    string        `json:"addr"`
	For     time.Duration `json:"for,omitempty"`
	Reason  string        `json:"reason,omitempty"`
	Session string        `json:"session,omitempty"` // the caller's SSH_CONNECTION
	Force   bool          `json:"force,omitempty"`
	Ports   []string      `json:"ports,omitempty"` // bans: only these ports (port specs); empty: every port
	Fleet   bool          `json:"fleet,omitempty"` // share the ban with the fleet (bans only)
}

// DelRequest asks to lift a ban or allow.
type DelRequest struct {
	Addr string `json:"addr"`
}

// DelResponse says whether there was anything to lift.
type DelResponse struct {
	Found bool `json:"found"`
}

// AllowResponse is the new allow entry and the bans it lifted.
type AllowResponse struct {
	Entry  EntryJSON `json:"entry"`
	Lifted []string  `json:"lifted,omitempty"`
}

// ApplyRequest asks the daemon to reload its config file and install it.
type ApplyRequest struct {
	Confirm time.Duration `json:"confirm,omitempty"` // roll back unless confirmed within this
	Session string        `json:"session,omitempty"`
	Force   bool          `json:"force,omitempty"`
}

// ApplyResponse describes the applied ruleset.
type ApplyResponse struct {
	Source   string    `json:"source"`
	Pending  bool      `json:"pending"` // awaiting confirmation
	Deadline time.Time `json:"deadline,omitzero"`
}

// Status is what `moat status` shows.
type Status struct {
	PID          int       `json:"pid"`
	Started      time.Time `json:"started"`
	ConfigSource string    `json:"config_source"`
	// ConfigPath is the file the daemon reads on apply and SIGHUP, as an
	// absolute path. It differs from ConfigSource while the daemon runs
	// the embedded default because that file is missing.
	ConfigPath     string                      `json:"config_path"`
	Enforcing      bool                        `json:"enforcing"` // false after `moat firewall off`
	TablePresent   bool                        `json:"table_present"`
	Bans           int                         `json:"bans"`
	Allows         int                         `json:"allows"`
	BansByOrigin   map[string]int              `json:"bans_by_origin"`
	Counters       map[string]firewall.Counter `json:"counters"`
	Open           []string                    `json:"open"`
	ClosedResponse string                      `json:"closed_response"`
	PendingConfirm *time.Time                  `json:"pending_confirm,omitempty"`
	LastReconcile  time.Time                   `json:"last_reconcile,omitzero"`
	Reasserted     int                         `json:"reasserted"`       // elements re-added by reconcile since start
	Protected      []ProtectedJSON             `json:"protected"`        // never banned, and why
	LiftedBans     int64                       `json:"lifted_protected"` // guard bans lifted since start for covering a protected address
	Login          *LoginStatus                `json:"login,omitempty"`
	Scan           *ScanStatus                 `json:"scan,omitempty"`

	// StoreWriteFailures counts store writes that failed since start (a
	// full disk): the store may lack bans the kernel holds, so the stop
	// leaves it marked unclean and the next start reads the kernel back.
	StoreWriteFailures int64 `json:"store_write_failures,omitempty"`
	// RulesRepaired counts reinstalls since start after moat's chains or
	// rules in the kernel drifted from what it installed.
	RulesRepaired int `json:"rules_repaired"`
	// ConfigFileDiffers says the config file on disk is not the config in
	// force (after a rollback, or an edit not yet applied): the next
	// SIGHUP or apply loads it.
	ConfigFileDiffers bool `json:"config_file_differs"`
	// Intake is the NFLOG receiver the scan guard and daemon-mode doors
	// read packets from.
	Intake *IntakeStatus `json:"intake,omitempty"`
	// SPA counts single packet authorization datagrams; nil while it is off.
	SPA *SPAStatus `json:"spa,omitempty"`
	// KnockGrantLatency is a daemon-mode door's last knock to its grant
	// in the kernel (package latency); nil before the first.
	KnockGrantLatency *latency.Summary `json:"knock_grant_latency,omitempty"`
	// KnockReadLatency is the part of KnockGrantLatency before moat read
	// the last knock from the kernel.
	KnockReadLatency *latency.Summary `json:"knock_read_latency,omitempty"`
	// Report is what psad -S and fail2ban-client status show, gathered
	// (report.go; docs/status.md).
	Report *ReportStatus `json:"report,omitempty"`
	// Alerts counts what became of the alerts; nil while none is set.
	Alerts *AlertStatus `json:"alerts,omitempty"`
	// Version is the daemon's build: its module version and VCS revision.
	Version string `json:"version,omitempty"`
	// Blocklists are the [[blocklist]] entries.
	Blocklists []BlocklistStatus `json:"blocklists,omitempty"`
	// Fleet is the ban sharing with other hosts; nil while it is off.
	Fleet *fleet.Status `json:"fleet,omitempty"`
}

// IntakeStatus says whether moat receives the packets its ruleset logs.
type IntakeStatus struct {
	Group    uint16 `json:"group"`           // the NFLOG group ([firewall] log_group)
	Bound    bool   `json:"bound"`           // moat holds the group
	Error    string `json:"error,omitempty"` // why it does not
	Received uint64 `json:"received"`
	Lost     uint64 `json:"lost"`     // logged packets the kernel could not deliver
	Overruns uint64 `json:"overruns"` // receive buffer overruns (each one or more lost)
	// Datagrams counts the netlink datagrams the packets came in: the
	// kernel batches first knocks and closed-port packets, not the rest.
	Datagrams uint64 `json:"datagrams"`
	// Foreign counts logged packets on the group whose prefix is not
	// moat's: another ruleset logging to the same group. They are not
	// scored.
	Foreign uint64 `json:"foreign"`
}

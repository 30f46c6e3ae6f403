package cli

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/moat-fw/moat/internal/control"
	"github.com/moat-fw/moat/internal/daemon"
	"github.com/moat-fw/moat/internal/fleet"
)

// scriptFleetDaemon is `fakefleet SOCK`: a daemon in a fleet, serving its
// fleet status and a ban from another host on SOCK until the script ends.
// A ban added with --fleet comes back as ban #7, so a script sees that the
// flag reached the daemon.
func scriptFleetDaemon(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: fakefleet SOCK")
	}
	ln, err := control.Listen(ts.MkAbs(args[0]))
	ts.Check(err)
	at := time.Date(2026, 12, 6, 18, 0, 0, 0, time.UTC)
	mux := http.NewServeMux()
	reply := func(v any) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) { json.NewEncoder(w).Encode(v) }
	}
	mux.HandleFunc("GET "+daemon.RouteFleet, reply(fleet.Status{
		Enabled: true, Connected: true, Host: "a", Bucket: "moat-bans", Servers: []string{"nats://10.210.0.1:4222"},
		Server: "nats://10.210.0.1:4222", ServerVersion: "2.15.3", Sent: 12, Received: 30, Removed: 2,
		Refused: map[string]uint64{"protected": 1, "origin": 3},
		Hosts:   []fleet.HostSeen{{Name: "b", Last: at, Received: 30}},
		Lag:     &fleet.Lag{Samples: 30, P50: fleet.Duration(2 * time.Millisecond), P99: fleet.Duration(9 * time.Millisecond), Max: fleet.Duration(12 * time.Millisecond)},
	}))
	mux.HandleFunc("GET "+daemon.RouteBans, reply([]daemon.EntryJSON{{Addr: "192.0.2.7", Origin: "fleet", Host: "b", Count: 1, Reason: "login at b: 5 failed logins"}}))
	mux.HandleFunc("POST "+daemon.RouteBans, func(w http.ResponseWriter, r *http.Request) {
		var req daemon.AddRequest
		if err := control.DecodeJSON(r, &req); err != nil {
			control.WriteError(w, http.StatusBadRequest, err)
			return
		}
		e := daemon.EntryJSON{Addr: req.Addr, Origin: "manual", Count: 1}
		if req.Fleet {
			e.Count = 7
		}
		json.NewEncoder(w).Encode(e)
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- control.Serve(ctx, ln, mux) }()
	ts.Defer(func() { cancel(); <-done })
}

package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/moat-fw/moat/internal/control"
	"github.com/moat-fw/moat/internal/daemon"
)

// TestMain lets the scripts run the real command line as a program named
// moat (this test binary, re-executed). A failing run adds "[exit N]" to
// stderr so the scripts can tell a usage error (2) from a failure (1):
// testscript's `! exec` only knows zero from non-zero.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"moat": func() {
			code := Run(context.Background(), os.Args[1:], os.Stdout, os.Stderr)
			if code != 0 {
				fmt.Fprintf(os.Stderr, "[exit %d]\n", code)
			}
			os.Exit(code)
		},
	})
}

// TestScripts runs testdata/script/*.txtar: the CLI's error paths as a
// user meets them.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"fakedaemon": scriptDaemon,
			"fakefleet":  scriptFleetDaemon,
		},
	})
}

// scriptDaemon is `fakedaemon SOCK`: it serves a daemon's status and ban list on SOCK until the
// script ends: enough for the commands that only talk to the daemon.
func scriptDaemon(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: fakedaemon SOCK")
	}
	ln, err := control.Listen(ts.MkAbs(args[0]))
	ts.Check(err)
	mux := http.NewServeMux()
	reply := func(v any) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) { json.NewEncoder(w).Encode(v) }
	}
	mux.HandleFunc("GET "+daemon.RouteStatus, reply(daemon.Status{
		PID: 4242, Started: time.Now(), ConfigSource: "/etc/moat/moat.toml", Enforcing: true, TablePresent: true,
		Open: []string{"tcp/22"}, ClosedResponse: "drop", Login: &daemon.LoginStatus{},
	}))
	mux.HandleFunc("GET "+daemon.RouteBans, reply([]daemon.EntryJSON{{Addr: "203.0.113.7", Origin: "manual", Count: 1, Reason: "test"}}))
	mux.HandleFunc("GET "+daemon.RouteGrants, reply([]any{}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- control.Serve(ctx, ln, mux) }()
	ts.Defer(func() { cancel(); <-done })
}

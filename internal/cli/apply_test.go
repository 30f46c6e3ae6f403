package cli

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/moat-fw/moat/internal/control"
	"github.com/moat-fw/moat/internal/daemon"
)

// fakeDaemon answers status (reading daemonFile) and apply on sock, and
// counts the applies it was asked for.
func fakeDaemon(t *testing.T, sock string, st daemon.Status) *atomic.Int32 {
	t.Helper()
	var applies atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+daemon.RouteStatus, func(w http.ResponseWriter, r *http.Request) {
		control.WriteJSON(w, http.StatusOK, st)
	})
	mux.HandleFunc("POST "+daemon.RouteApply, func(w http.ResponseWriter, r *http.Request) {
		applies.Add(1)
		control.WriteJSON(w, http.StatusOK, daemon.ApplyResponse{Source: st.ConfigPath})
	})
	serveFake(t, sock, mux)
	return &applies
}

// `moat firewall apply --config X` goes through the running daemon, which
// applies the file it reads, not X (security review L7). When X is another
// file the CLI must refuse, naming both files and the two ways to apply X,
// rather than apply the daemon's file and ignore --config.
func TestApplyRefusesAnotherConfigWhileDaemonRuns(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "moat.sock")
	cfg := "[daemon]\nsocket = \"" + sock + "\"\n"
	daemonFile := filepath.Join(dir, "moat.toml")
	other := filepath.Join(dir, "other.toml")
	link := filepath.Join(dir, "link.toml")
	for _, f := range []string{daemonFile, other} {
		if err := os.WriteFile(f, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(daemonFile, link); err != nil {
		t.Fatal(err)
	}
	applies := fakeDaemon(t, sock, daemon.Status{ConfigSource: daemonFile, ConfigPath: daemonFile})

	code, out, errs := run(t, "--config", other, "firewall", "apply")
	if code == 0 || applies.Load() != 0 {
		t.Fatalf("apply --config %s while the daemon reads %s: exit %d, %d applies, %q %q; want a refusal and no apply",
			other, daemonFile, code, applies.Load(), out, errs)
	}
	for _, want := range []string{daemonFile, other, "moat run --config " + other} {
		if !strings.Contains(errs, want) {
			t.Errorf("the refusal does not mention %q:\n%s", want, errs)
		}
	}

	// The daemon's own file, named directly or through a symlink, and no
	// --config at all, apply through the daemon as before.
	for i, args := range [][]string{
		{"--config", daemonFile, "firewall", "apply"},
		{"--config", link, "firewall", "apply"},
		{"--socket", sock, "firewall", "apply"},
	} {
		code, out, errs := run(t, args...)
		if code != 0 || applies.Load() != int32(i+1) || !strings.Contains(out, "applied "+daemonFile) {
			t.Fatalf("%v: exit %d, %d applies, %q %q; want it applied through the daemon", args, code, applies.Load(), out, errs)
		}
	}
}

// serveFake answers on sock with mux, as a daemon would, until the test ends.
func serveFake(t *testing.T, sock string, mux *http.ServeMux) {
	t.Helper()
	ln, err := control.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- control.Serve(ctx, ln, mux) }()
	t.Cleanup(func() { cancel(); <-done })
}

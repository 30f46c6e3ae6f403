package cli

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/control"
	"github.com/moat-fw/moat/internal/daemon"
)

func TestDoorLogAndGrantList(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "moat.sock")
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	evs := []daemon.DoorEvent{
		{At: at, Door: "ssh", Addr: "10.210.0.2", Ports: []string{"tcp/22"}, Until: at.Add(30 * time.Second), Mode: "kernel", Action: daemon.ActionOpened, Why: "knock verified by the kernel"},
		{At: at.Add(10 * time.Second), Door: "ssh", Addr: "10.210.0.2", Ports: []string{"tcp/22"}, Mode: "kernel", Action: daemon.ActionClosed, Why: "close sequence"},
		{At: at.Add(20 * time.Second), Door: "hook", Addr: "fd00:210::2", Ports: []string{"tcp/9000"}, Until: at.Add(50 * time.Second), Mode: "daemon", Action: daemon.ActionOpened},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+daemon.RouteDoorLog, func(w http.ResponseWriter, r *http.Request) {
		control.WriteJSON(w, http.StatusOK, evs)
	})
	mux.HandleFunc("GET "+daemon.RouteGrants, func(w http.ResponseWriter, r *http.Request) {
		control.WriteJSON(w, http.StatusOK, []daemon.GrantJSON{{Door: "hook", Addr: "fd00:210::2", Port: "tcp/9000", Seconds: 29.6, Mode: "daemon", Until: at.Add(50 * time.Second)}})
	})
	serveFake(t, sock, mux)

	code, out, errs := run(t, "--socket", sock, "door", "log", "--json")
	var got []daemon.DoorEvent
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || len(got) != 3 || got[1].Action != "closed" || got[0].Mode != "kernel" {
		t.Fatalf("door log --json: exit %d %q %q", code, out, errs)
	}
	code, out, _ = run(t, "--socket", sock, "door", "log", "-n", "2")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "TIME") ||
		!strings.Contains(lines[1], "closed") || !strings.Contains(lines[1], "close sequence") ||
		!strings.Contains(lines[2], "fd00:210::2") || !strings.Contains(lines[2], "daemon") {
		t.Fatalf("door log -n 2: exit %d\n%s", code, out)
	}
	code, out, _ = run(t, "--socket", sock, "grant", "list")
	if code != 0 || !strings.Contains(out, "MODE") || !strings.Contains(out, "30s") || !strings.Contains(out, "daemon") {
		t.Fatalf("grant list: exit %d\n%s", code, out)
	}
}

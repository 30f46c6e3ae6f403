package cli

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// `moat fleet server` runs moat-fleet-server (found on PATH here) with
// [fleet]'s settings: it serves NATS clients, keeps JetStream under
// state_dir, and ends when moat is stopped.
func TestFleetServerRunsTheHelper(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command to build moat-fleet-server")
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "moat-fleet-server"), "github.com/moat-fw/moat/cmd/moat-fleet-server")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building moat-fleet-server: %v\n%s", err, out)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	state := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "moat.toml")
	if err := os.WriteFile(cfg, []byte("[daemon]\nstate_dir = \""+state+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errs syncBuffer
	done := make(chan int, 1)
	go func() { done <- Run(ctx, []string{"--config", cfg, "fleet", "server", "--listen", addr}, &out, &errs) }()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(out.String(), "ready for clients at nats://"+addr) {
		select {
		case code := <-done:
			cancel()
			t.Fatalf("fleet server ended with %d before it was ready:\n%s\n%s", code, out.String(), errs.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("not ready within 60s:\n%s\n%s", out.String(), errs.String())
		}
	}
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("no NATS server at %s: %v", addr, err)
	}
	line := make([]byte, 4)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(line); err != nil || string(line) != "INFO" {
		t.Errorf("%s did not greet as NATS (%q, %v)", addr, line, err)
	}
	c.Close()
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("fleet server stopped with %d:\n%s", code, errs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("fleet server did not stop with moat")
	}
	if _, err := os.Stat(filepath.Join(state, "fleet-nats", "jetstream")); err != nil {
		t.Errorf("no JetStream storage under state_dir: %v", err)
	}
}

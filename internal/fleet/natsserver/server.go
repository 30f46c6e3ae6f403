// Package natsserver runs the embedded NATS server of `moat fleet server`
// (JetStream storage under state_dir), for fleets of two or three hosts
// with no other software. It lives in its own binary, moat-fleet-server:
// linked into moat, the NATS server's code cost every daemon about 4 MB of
// RSS and 13 MB of binary for a command few hosts run.
package natsserver

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options configure the embedded NATS server of `moat fleet server`.
type Options struct {
	Listen       netip.AddrPort // client address
	StoreDir     string         // JetStream storage (under state_dir)
	Name         string         // server name, shown to clients
	User         string         // with PasswordFile: clients must log in
	PasswordFile string
	Ready        func(url string) // called once clients can connect
}

// Serve runs an embedded NATS server with JetStream until ctx ends: enough
// for a small fleet (two or three hosts) with no other software. Bigger
// fleets point at a real NATS cluster.
func Serve(ctx context.Context, o Options) error {
	if !o.Listen.IsValid() {
		return errors.New("fleet server: no listen address")
	}
	if err := os.MkdirAll(o.StoreDir, 0o700); err != nil {
		return fmt.Errorf("fleet server: storage: %w", err)
	}
	opts := &server.Options{
		ServerName: o.Name,
		Host:       o.Listen.Addr().String(),
		Port:       int(o.Listen.Port()),
		JetStream:  true,
		StoreDir:   filepath.Clean(o.StoreDir),
		NoSigs:     true,
		Logtime:    true,
	}
	if o.User != "" {
		pw, err := os.ReadFile(o.PasswordFile)
		if err != nil {
			return fmt.Errorf("fleet server: password_file: %w", err)
		}
		opts.Username, opts.Password = o.User, strings.TrimRight(string(pw), "\r\n")
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("fleet server: %w", err)
	}
	s.ConfigureLogger()
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return fmt.Errorf("fleet server: not ready to accept clients on %s within 30s (is the port taken?)", o.Listen)
	}
	if o.Ready != nil {
		o.Ready(s.ClientURL())
	}
	<-ctx.Done()
	s.Shutdown()
	s.WaitForShutdown()
	return nil
}

package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/moat-fw/moat/internal/daemon"
	"github.com/moat-fw/moat/internal/fleet"
)

func (a *app) fleetCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "fleet", Short: "Share bans with other moat hosts through NATS JetStream ([fleet])"}
	var asJSON bool
	status := &cobra.Command{
		Use:   "status",
		Short: "Show the fleet connection, the hosts seen, bans sent, received and refused, and the delay",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var st fleet.Status
			if err := c.Call(cmd.Context(), http.MethodGet, daemon.RouteFleet, nil, &st); err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(a.out)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			printFleet(a.out, &st)
			return nil
		},
	}
	status.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")

	var listen string
	server := &cobra.Command{
		Use:   "server",
		Short: "Run an embedded NATS server (JetStream storage under state_dir) for a small fleet",
		Long: "Run an embedded NATS server with JetStream, storing under state_dir/fleet-nats, so that two or\n" +
			"three hosts can share bans with no other software. Point [fleet] servers of every host at it.\n" +
			"Bigger fleets should run a NATS cluster (2.11 or later). It listens on --listen, or [fleet]\n" +
			"server_listen; with [fleet] user and password_file set, clients must log in with them.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ld, err := daemon.LoadConfig(a.configPath, a.explicit)
			if err != nil {
				return err
			}
			f := ld.Cfg.Fleet
			if listen == "" {
				listen = f.ServerListen
			}
			ap, err := netip.ParseAddrPort(listen)
			if err != nil {
				return fmt.Errorf("--listen %q: want an IP address and port, like \"10.0.0.5:4222\"", listen)
			}
			host, _ := os.Hostname()
			bin, err := fleetServerBinary()
			if err != nil {
				return err
			}
			argv := []string{"-listen", ap.String(), "-store", filepath.Join(ld.Cfg.Daemon.StateDir, "fleet-nats"), "-name", f.HostOrDefault(host)}
			if f.User != "" {
				argv = append(argv, "-user", f.User, "-password-file", f.PasswordFile)
			}
			c := exec.CommandContext(cmd.Context(), bin, argv...)
			c.Stdout, c.Stderr = a.out, cmd.ErrOrStderr()
			// Ctrl-C reaches it too (same process group); a cancelled
			// context stops it with SIGTERM, which it ends on cleanly.
			c.Cancel = func() error { return c.Process.Signal(syscall.SIGTERM) }
			err = c.Run()
			if err != nil && cmd.Context().Err() != nil && c.ProcessState != nil && c.ProcessState.Success() {
				return nil // stopped as asked, and it shut down cleanly
			}
			return err
		},
	}
	server.Flags().StringVar(&listen, "listen", "", "address and port to listen on (default: [fleet] server_listen)")
	cmd.AddCommand(status, server)
	return cmd
}

// printFleet prints the fleet's status for people.
func printFleet(w io.Writer, st *fleet.Status) {
	if !st.Enabled {
		fmt.Fprintln(w, "fleet:     off (set [fleet] servers to share bans with other hosts)")
		return
	}
	switch {
	case st.Connected:
		fmt.Fprintf(w, "fleet:     connected to %s (NATS %s) as %q, bucket %s\n", st.Server, st.ServerVersion, st.Host, st.Bucket)
	default:
		fmt.Fprintf(w, "fleet:     NOT connected (%s) as %q, bucket %s; local protection goes on, remote bans are caught up on connect\n  error: %s\n",
			strings.Join(st.Servers, ", "), st.Host, st.Bucket, st.Error)
	}
	fmt.Fprintf(w, "  sent:     %d bans (%d not acknowledged, %d dropped from a full queue), %d unbans\n", st.Sent, st.SendFailed, st.Dropped, st.Unbans)
	fmt.Fprintf(w, "  received: %d bans applied, %d lifted by the fleet\n", st.Received, st.Removed)
	if len(st.Refused) > 0 {
		var rs []string
		for _, k := range slices.Sorted(maps.Keys(st.Refused)) {
			rs = append(rs, fmt.Sprintf("%s %d", k, st.Refused[k]))
		}
		fmt.Fprintf(w, "  not applied: %s\n", strings.Join(rs, ", "))
	}
	if l := st.Lag; l != nil {
		fmt.Fprintf(w, "  delay:    ban at its host to applied here, last %d: p50 %s, p99 %s, max %s\n", l.Samples, ms(l.P50), ms(l.P99), ms(l.Max))
	}
	if r := st.LastReplay; r != nil {
		saved := "saving"
		if r.Saved > 0 {
			saved = "saved in " + ms(r.Saved)
		}
		fmt.Fprintf(w, "  replay:   %d times; last at %s: %d keys, %d applied, %d lifted, %d of this host's bans published again, in the kernel in %s, %s\n",
			st.Replays, r.At.Local().Format(time.DateTime), r.Keys, r.Applied, r.Lifted, r.Republished, ms(r.Took), saved)
	}
	for _, h := range st.Hosts {
		fmt.Fprintf(w, "  host %-20s %d bans applied, last seen %s\n", h.Name, h.Received, h.Last.Local().Format(time.DateTime))
	}
}

func ms(d fleet.Duration) string { return time.Duration(d).Round(10 * time.Microsecond).String() }

// fleetServerBinary finds moat-fleet-server: beside moat's own binary (a
// checkout's build), in /usr/libexec/moat (the Debian package), else on
// PATH. The NATS
// server lives in its own binary so that every moat daemon does not carry
// its code (about 4 MB of RSS, 13 MB of binary).
func fleetServerBinary() (string, error) {
	const name = "moat-fleet-server"
	if self, err := os.Executable(); err == nil {
		if p := filepath.Join(filepath.Dir(self), name); isExecutable(p) {
			return p, nil
		}
	}
	if p := filepath.Join("/usr/libexec/moat", name); isExecutable(p) {
		return p, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("moat fleet server runs %s, which is neither beside moat, in /usr/libexec/moat nor on PATH: the Debian package installs it; from a checkout, go build -o DIR/%s ./cmd/%s with DIR the directory of moat", name, name, name)
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

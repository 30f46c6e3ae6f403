// Package cli is moat's command line: cobra commands that either work from
// the config alone or talk to the running daemon over its control socket.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/control"
	"github.com/moat-fw/moat/internal/daemon"
	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/latency"
	"github.com/moat-fw/moat/internal/portscan"
	"github.com/moat-fw/moat/internal/session"
	"github.com/moat-fw/moat/internal/sshd"
)

// Version is set at build time with -ldflags "-X ...cli.Version=...".
var Version = "dev"

type app struct {
	ctx        context.Context
	out, errw  io.Writer
	configPath string
	socket     string
	explicit   bool
}

// Run executes the command line args (without the program name) and
// returns the exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	a := &app{ctx: ctx, out: stdout, errw: stderr}
	root := a.root()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ec exitCode
	if errors.As(err, &ec) {
		return int(ec)
	}
	fmt.Fprintln(stderr, "moat:", err)
	if isUsage(err) {
		return exitUsage
	}
	return 1
}

// exitCode ends a command with a status and no further message.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// Command is moat's command tree, as Run runs it, for tools that
// describe it (cmd/moat-gendocs).
func Command() *cobra.Command {
	a := &app{ctx: context.Background(), out: os.Stdout, errw: os.Stderr}
	return a.root()
}

func (a *app) root() *cobra.Command {
	root := &cobra.Command{
		Use:           "moat",
		Short:         "moat makes a Linux host invisible and self-defending",
		Long:          "moat owns a default-deny nftables table (inet moat), keeps bans with kernel timeouts,\nand runs as a daemon controlled through a unix socket.",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       Version,
		PersistentPreRun: func(cmd *cobra.Command, args []string) {
			a.explicit = cmd.Flags().Changed("config")
		},
	}
	root.PersistentFlags().StringVar(&a.configPath, "config", config.DefaultPath, "config file (the embedded default is used when the default path is missing)")
	root.PersistentFlags().StringVar(&a.socket, "socket", "", "control socket (default: [daemon] socket from the config, or "+defaultSocket()+" when the config cannot be read)")
	root.AddCommand(a.runCmd(), a.configCmd(), a.firewallCmd(), a.listCmd("ban"), a.listCmd("allow"), a.statusCmd(), a.sshdCmd())
	root.AddCommand(a.explainCmd())
	root.AddCommand(a.doorCmd(), a.grantCmd())
	root.AddCommand(a.knockCmd(), a.importCmd())
	root.AddCommand(a.spaCmd())
	root.AddCommand(a.pageCmd(), a.demoCmd())
	root.AddCommand(a.blocklistCmd())
	root.AddCommand(a.fleetCmd())
	strict(root)
	return root
}

func (a *app) logger(level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(a.errw, &slog.HandlerOptions{Level: l}))
}

func (a *app) opts(force bool) daemon.Options {
	return daemon.Options{ConfigPath: a.configPath, Explicit: a.explicit, Session: callerSession(), Force: force}
}

// callerSession is the SSH session this command runs in, in the
// SSH_CONNECTION form the daemon's API takes, or "". It is found even when
// sudo's env_reset, su - or env -i dropped SSH_CONNECTION from the
// environment (see session.Proc.Caller), so the lockout guard holds there
// too.
func callerSession() string {
	if s, ok := (session.Proc{}).Caller(); ok {
		return s.SSHConnection()
	}
	return ""
}

func (a *app) runCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the daemon in the foreground",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ld, err := daemon.LoadConfig(a.configPath, a.explicit)
			if err != nil {
				return err
			}
			o := a.opts(force)
			o.Log = a.logger(ld.Cfg.Daemon.LogLevel)
			slog.SetDefault(o.Log)
			return daemon.Run(cmd.Context(), o)
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "start even if the config would cut off the SSH session this runs in")
	return cmd
}

func (a *app) configCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Print or check the configuration"}
	cmd.AddCommand(&cobra.Command{
		Use:   "default",
		Short: "Print the embedded default config",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := a.out.Write(config.Default())
			return err
		},
	}, &cobra.Command{
		Use:   "check [FILE]",
		Short: "Validate a config file (default: --config), and check it keeps the SSH session this runs in",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, explicit := a.configPath, a.explicit
			if len(args) == 1 {
				path, explicit = args[0], true
			}
			ld, err := daemon.LoadConfig(path, explicit)
			if err != nil {
				return err
			}
			absent, err := daemon.CheckInterfaces(ld)
			if err != nil {
				return err
			}
			for _, e := range absent {
				fmt.Fprintf(a.errw, "warning: [firewall] interfaces %q matches no interface here yet; it is guarded once it appears\n", e)
			}
			// The lockout guard, without applying anything: the Debian
			// package's postinst starts moat only when this passes, so an
			// admin installing over SSH keeps the session and the way back.
			if s, ok := firewall.ParseSSHConnection(callerSession()); ok {
				if why := firewall.CutsOff(ld.Cfg.Firewall, daemon.SSHPorts(cmd.Context(), nil), nil, s); why != "" {
					// CutsOff speaks to apply and ban add, which take --force;
					// config check has none to offer.
					why = strings.TrimSuffix(why, ", or use --force if you are sure")
					return fmt.Errorf("%s would cut off the SSH session this runs in: %s", ld.Source, why)
				}
				fmt.Fprintf(a.out, "%s: ok; the SSH session this runs in (from %s) keeps its access\n", ld.Source, s.Client)
			} else {
				fmt.Fprintf(a.out, "%s: ok\n", ld.Source)
			}
			a.warnSSHDUnreachable(cmd.Context(), ld.Cfg.Firewall, ld.Cfg.Doors)
			return nil
		},
	})
	return cmd
}

func (a *app) firewallCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "firewall", Short: "Show, apply, confirm or remove moat's nftables table"}
	show := &cobra.Command{
		Use:   "show",
		Short: "Print the ruleset moat would install, in nft syntax (needs no root)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ld, err := daemon.LoadConfig(a.configPath, a.explicit)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.out, "# from %s\n", ld.Source)
			ports, err := sshd.ListenPorts(cmd.Context())
			if err != nil || len(ports) == 0 {
				fmt.Fprintf(a.out, "# \"ssh\" means tcp/22 here: sshd -T could not say (%v)\n", err)
				ports = []uint16{22}
			} else {
				fmt.Fprintf(a.out, "# \"ssh\" means tcp %v (from sshd -T)\n", ports)
			}
			// Pre-shared keys may be unreadable here (not root): those
			// clients' rules are left out of what is shown.
			fw, _ := daemon.FirewallFor(ld.Cfg)
			fmt.Fprint(a.out, firewall.Build(fw, ports, ld.Cfg.Doors...).String())
			return nil
		},
	}
	var confirm time.Duration
	var force bool
	apply := &cobra.Command{
		Use:   "apply",
		Short: "Install the config's firewall (through the daemon when it runs)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := a.checkDaemonConfig(cmd.Context(), c); err != nil {
				return err
			}
			var resp daemon.ApplyResponse
			err = c.Call(cmd.Context(), http.MethodPost, daemon.RouteApply,
				daemon.ApplyRequest{Confirm: confirm, Session: callerSession(), Force: force}, &resp)
			if errors.Is(err, control.ErrNotRunning) {
				return daemon.ApplyStandalone(cmd.Context(), a.opts(force), confirm, a.out)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(a.out, "applied %s\n", resp.Source)
			if resp.Pending {
				fmt.Fprintf(a.out, "run `moat firewall confirm` before %s, or the previous firewall comes back\n",
					resp.Deadline.Local().Format(time.TimeOnly))
			}
			return nil
		},
	}
	apply.Flags().DurationVar(&confirm, "confirm", 0, "roll back unless \"moat firewall confirm\" comes within this time (e.g. 60s)")
	apply.Flags().BoolVar(&force, "force", false, "apply even if it would cut off the SSH session this runs in")
	confirmCmd := &cobra.Command{
		Use:   "confirm",
		Short: "Keep the firewall applied with --confirm",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.Call(cmd.Context(), http.MethodPost, daemon.RouteConfirm, nil, nil); err != nil {
				return err
			}
			fmt.Fprintln(a.out, "confirmed")
			return nil
		},
	}
	off := &cobra.Command{
		Use:   "off",
		Short: "Remove moat's table (and nothing else) from the kernel",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var resp daemon.DelResponse
			err = c.Call(cmd.Context(), http.MethodPost, daemon.RouteOff, nil, &resp)
			if errors.Is(err, control.ErrNotRunning) {
				resp.Found, err = firewall.NewApplier().Remove()
			}
			if err != nil {
				return err
			}
			if !resp.Found {
				fmt.Fprintln(a.out, "table inet moat was not installed")
				return nil
			}
			fmt.Fprintln(a.out, "removed table inet moat; bans stay in the store and come back with `moat firewall apply` or `moat run`")
			return nil
		},
	}
	cmd.AddCommand(show, apply, confirmCmd, off)
	return cmd
}

// checkDaemonConfig refuses an explicit --config that is not the file the
// running daemon reads: apply through the daemon loads the daemon's own
// file, so going ahead would apply something other than what was named
// and quietly ignore --config. With no daemon it says nothing: apply then
// works from --config itself.
func (a *app) checkDaemonConfig(ctx context.Context, c *control.Client) error {
	if !a.explicit {
		return nil
	}
	var st daemon.Status
	err := c.Call(ctx, http.MethodGet, daemon.RouteStatus, nil, &st)
	if errors.Is(err, control.ErrNotRunning) {
		return nil
	}
	if err != nil {
		return err
	}
	theirs := st.ConfigPath
	if theirs == "" {
		theirs = st.ConfigSource // a daemon from before config_path
	}
	if sameFile(a.configPath, theirs) {
		return nil
	}
	return fmt.Errorf("the running daemon reads %s, not %s, and `moat firewall apply` applies the daemon's file: "+
		"to apply %s, put its contents in %s and run `moat firewall apply`, or restart the daemon with `moat run --config %s`",
		theirs, a.configPath, a.configPath, theirs, a.configPath)
}

// sameFile reports whether paths x and y (x relative to this process's
// directory, y absolute, from the daemon) name the same file: the same
// path, or, when both exist, the same inode through a symlink or another
// spelling.
func sameFile(x, y string) bool {
	if ax, err := filepath.Abs(x); err == nil && ax == filepath.Clean(y) {
		return true
	}
	fx, err := os.Stat(x)
	if err != nil {
		return false
	}
	fy, err := os.Stat(y)
	return err == nil && os.SameFile(fx, fy)
}

// client connects to the daemon's socket: --socket, else the config's.
// A config that cannot be read does not stop a command that only talks to
// the daemon: the daemon runs on the config it loaded, and an admin with a
// typo in the file still needs `moat status` and `moat ban list`. The
// default socket is used then, and stderr says what was wrong with the
// file.
func (a *app) client() (*control.Client, error) {
	path := a.socket
	if path == "" {
		ld, err := daemon.LoadConfig(a.configPath, a.explicit)
		if err != nil {
			path = defaultSocket()
			fmt.Fprintf(a.errw, "moat: warning: %v\nmoat: using the default socket %s (set --socket to choose another)\n", err, path)
		} else {
			path = ld.Cfg.Daemon.Socket
		}
	}
	return control.NewClient(path), nil
}

// defaultSocket is the embedded default config's control socket.
func defaultSocket() string {
	if c, err := config.Parse(config.Default(), "embedded default"); err == nil {
		return c.Daemon.Socket
	}
	return "/run/moat/moat.sock"
}

// listCmd builds `moat ban ...` and `moat allow ...`, which share verbs.
func (a *app) listCmd(kind string) *cobra.Command {
	route, delRoute := daemon.RouteBans, daemon.RouteBansDel
	short := "Ban addresses and prefixes (kernel timeouts, kept across restarts)"
	if kind == "allow" {
		route, delRoute = daemon.RouteAllows, daemon.RouteAllowDel
		short = "Allow trusted addresses and prefixes: never banned, reach every port"
	}
	cmd := &cobra.Command{Use: kind, Short: short}
	var dur time.Duration
	var reason string
	var force, share bool
	var ports []string
	add := &cobra.Command{
		Use:   "add ADDR|CIDR",
		Short: "Add an entry",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := daemon.ParsePrefix(args[0]); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			req := daemon.AddRequest{Addr: args[0], For: dur, Reason: reason, Session: callerSession(), Force: force, Ports: ports, Fleet: share}
			if kind == "allow" {
				var resp daemon.AllowResponse
				if err := c.Call(cmd.Context(), http.MethodPost, route, req, &resp); err != nil {
					return err
				}
				fmt.Fprintf(a.out, "allowed %s%s\n", resp.Entry.Addr, until(resp.Entry.Expires))
				if len(resp.Lifted) > 0 {
					fmt.Fprintf(a.out, "lifted overlapping bans: %s\n", strings.Join(resp.Lifted, ", "))
				}
				return nil
			}
			var e daemon.EntryJSON
			if err := c.Call(cmd.Context(), http.MethodPost, route, req, &e); err != nil {
				return err
			}
			on := ""
			if len(e.Ports) > 0 {
				on = " on " + strings.Join(e.Ports, ",")
			}
			fmt.Fprintf(a.out, "banned %s%s%s (ban #%d for this address)\n", e.Addr, on, until(e.Expires), e.Count)
			return nil
		},
	}
	add.Flags().DurationVar(&dur, "for", 0, "how long (e.g. 1h, 30m); default: until removed")
	add.Flags().StringVar(&reason, "reason", "", "why, for the record")
	if kind == "ban" {
		add.Flags().BoolVar(&force, "force", false, "ban even the source of the SSH session this runs in")
		add.Flags().StringSliceVar(&ports, "port", nil, "ban only these ports (`PORTS`: tcp/80,tcp/443, udp/5060-5061 or ssh; repeatable), as a fail2ban jail with port = ...; the address keeps reaching the others")
		add.Flags().BoolVar(&share, "fleet", false, "share the ban with the fleet ([fleet]): every host bans the address")
	}
	del := &cobra.Command{
		Use:     "del ADDR|CIDR",
		Aliases: []string{"rm", "delete"},
		Short:   "Remove an entry",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := daemon.ParsePrefix(args[0]); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var resp daemon.DelResponse
			if err := c.Call(cmd.Context(), http.MethodPost, delRoute, daemon.DelRequest{Addr: args[0]}, &resp); err != nil {
				return err
			}
			if !resp.Found {
				return fmt.Errorf("%s was not in the %s list", args[0], kind)
			}
			fmt.Fprintf(a.out, "removed %s\n", args[0])
			return nil
		},
	}
	var asJSON bool
	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List live entries",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var es []daemon.EntryJSON
			if err := c.Call(cmd.Context(), http.MethodGet, route, nil, &es); err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(a.out)
				enc.SetIndent("", "  ")
				return enc.Encode(es)
			}
			tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ADDR\tPORTS\tORIGIN\tEXPIRES\tCOUNT\tREASON")
			for _, e := range es {
				exp := "never"
				if e.Expires != nil {
					exp = e.Expires.Local().Format(time.DateTime)
				}
				ports := "all"
				if len(e.Ports) > 0 {
					ports = strings.Join(e.Ports, ",")
				}
				origin := e.Origin
				if e.Host != "" {
					origin += "@" + e.Host // a fleet ban: the host it came from
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", e.Addr, ports, origin, exp, e.Count, e.Reason)
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print one JSON array")
	cmd.AddCommand(add, del, list)
	if kind == "ban" {
		cmd.AddCommand(a.banFlushCmd(), a.banImportCmd())
	}
	return cmd
}

func until(t *time.Time) string {
	if t == nil {
		return " until removed"
	}
	return " until " + t.Local().Format(time.DateTime)
}

func (a *app) statusCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [ADDR]",
		Short: "Show the daemon, the firewall and the bans; with ADDR, all moat knows and did about that address",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// The daemon's status, or one address's.
			route, v := daemon.RouteStatus, any(&daemon.Status{})
			text := func() { printStatus(a.out, *v.(*daemon.Status)) }
			if len(args) == 1 {
				ad, err := netip.ParseAddr(args[0])
				if err != nil {
					return usageError{fmt.Errorf("status %q: want an address like 203.0.113.7 or 2001:db8::7", args[0])}
				}
				route, v = daemon.RouteAddr+"?addr="+url.QueryEscape(ad.String()), &daemon.AddrStatus{}
				text = func() { printAddrStatus(a.out, *v.(*daemon.AddrStatus)) }
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.Call(cmd.Context(), http.MethodGet, route, nil, v); err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(a.out)
				enc.SetIndent("", "  ")
				return enc.Encode(v)
			}
			text()
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// printAddrStatus is one address's story, one section per guard.
func printAddrStatus(w io.Writer, st daemon.AddrStatus) {
	fmt.Fprintf(w, "address:   %s\n", st.Addr)
	if where := whereString(st.Info); where != "" {
		fmt.Fprintf(w, "known as:  %s\n", where)
	}
	switch {
	case len(st.Bans) == 0:
		fmt.Fprintln(w, "banned:    no")
	default:
		for _, b := range st.Bans {
			until := "until `moat ban del`"
			if b.Expires != nil {
				until = "until " + b.Expires.Local().Format("2006-01-02 15:04:05")
			}
			on := ""
			if len(b.Ports) > 0 {
				on = " on " + strings.Join(b.Ports, ",") + " only"
			}
			fmt.Fprintf(w, "banned:    %s%s by %s %s (ban number %d): %s\n", b.Addr, on, b.Origin, until, b.Count, b.Reason)
		}
	}
	for _, al := range st.Allowed {
		fmt.Fprintf(w, "allowed:   by %s (never banned, reaches every port)\n", al)
	}
	if st.Protected != "" {
		fmt.Fprintf(w, "protected: %s: no guard bans it\n", st.Protected)
	}
	if len(st.Login) == 0 {
		fmt.Fprintln(w, "login:     no failures being counted")
	}
	for _, rule := range slices.Sorted(maps.Keys(st.Login)) {
		fmt.Fprintf(w, "login:     %d failures being counted (%s)\n", st.Login[rule], rule)
	}
	if len(st.Users) > 0 {
		fmt.Fprintf(w, "users:     %s\n", usersString(st.Users))
	}
	if s := st.Scan; s != nil {
		state := "window ended"
		if s.Active {
			state = "in its window"
		}
		fmt.Fprintf(w, "scan:      danger level %d, %d probes to %d ports (%d-%d) on %d local addresses, %s; types %s; first %s, last %s (%s)\n",
			s.Level, s.Packets, s.Ports, s.PortLow, s.PortHigh, s.LocalAddrs, strings.Join(s.Protocols, "/"), strings.Join(s.Types, ", "),
			s.First.Local().Format("15:04:05"), s.Last.Local().Format("15:04:05"), state)
		if s.Fingerprint != "" {
			fmt.Fprintf(w, "os guess:  %s (SYN %s)\n", osString(s.OS), s.Fingerprint)
		}
	} else {
		fmt.Fprintln(w, "scan:      not tracked")
	}
	if st.Danger != nil {
		fmt.Fprintf(w, "danger:    fixed at level %d by [[scan.danger]]\n", *st.Danger)
	}
	for _, g := range st.Grants {
		fmt.Fprintf(w, "grant:     %s open through %s for %.0fs more\n", g.Port, g.Door, g.Seconds)
	}
	for _, e := range st.Events {
		fmt.Fprintf(w, "door:      %s %s %s (%s)\n", e.At.Local().Format("2006-01-02 15:04:05"), e.Door, e.Action, e.Why)
	}
}

func printStatus(w io.Writer, st daemon.Status) {
	fmt.Fprintf(w, "daemon:    running, pid %d, up %s (since %s)", st.PID, time.Since(st.Started).Round(time.Second), st.Started.Local().Format(time.DateTime))
	if st.Version != "" {
		fmt.Fprintf(w, ", moat %s", st.Version)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "config:    %s\n", st.ConfigSource)
	if st.ConfigPath != "" && st.ConfigPath != st.ConfigSource {
		fmt.Fprintf(w, "           reads %s on `moat firewall apply` and SIGHUP\n", st.ConfigPath)
	}
	if st.ConfigFileDiffers {
		fmt.Fprintln(w, "           the config file on disk DIFFERS from the config in force: the next SIGHUP or `moat firewall apply` loads it")
	}
	switch {
	case !st.Enforcing:
		fmt.Fprintln(w, "firewall:  OFF (moat firewall off); `moat firewall apply` turns it back on")
	case !st.TablePresent:
		fmt.Fprintln(w, "firewall:  table inet moat is MISSING from the kernel; the next reconcile reinstalls it")
	default:
		fmt.Fprintf(w, "firewall:  table inet moat installed; open %s; closed ports %s\n", strings.Join(st.Open, " "), st.ClosedResponse)
	}
	if st.PendingConfirm != nil {
		fmt.Fprintf(w, "pending:   rolls back at %s unless `moat firewall confirm`\n", st.PendingConfirm.Local().Format(time.TimeOnly))
	}
	fmt.Fprintf(w, "bans:      %d", st.Bans)
	for o, n := range st.BansByOrigin {
		fmt.Fprintf(w, " (%s %d)", o, n)
	}
	fmt.Fprintf(w, "\nallows:    %d\n", st.Allows)
	if len(st.Counters) > 0 {
		fmt.Fprint(w, "dropped:  ")
		for _, name := range append([]string{firewall.CounterBan, firewall.CounterClosed, firewall.CounterScanHold, firewall.CounterInvalid}, firewall.StealthReasons()...) {
			if c, ok := st.Counters[name]; ok {
				fmt.Fprintf(w, " %s %d", name, c.Packets)
			}
		}
		fmt.Fprintln(w)
	}
	if c, ok := st.Counters[firewall.CounterKnock]; ok {
		// Daemon-mode doors: what the kernel handed over, and what the
		// knock rate limits kept back (a flood, or a source over its limit).
		fmt.Fprintf(w, "knocks:    %d handed to daemon-mode doors, %d over the knock rate limits (knock_limited)\n",
			c.Packets, st.Counters[firewall.CounterKnockLimited].Packets)
	}
	if l := st.KnockGrantLatency; l != nil {
		fmt.Fprintf(w, "knock to grant: %s\n", latencyText(l))
		if r := st.KnockReadLatency; r != nil {
			fmt.Fprintf(w, "  of which before moat read the knock: %s\n", latencyText(r))
		}
	}
	if sp := st.SPA; sp != nil {
		var refused uint64
		for _, n := range sp.Refused {
			refused += n
		}
		fmt.Fprintf(w, "spa:       %d accepted, %d refused\n", sp.Accepted, refused)
		if l := sp.GrantLatency; l != nil {
			fmt.Fprintf(w, "spa to grant: %s\n", latencyText(l))
			if r := sp.ReadLatency; r != nil {
				fmt.Fprintf(w, "  of which before moat read the datagram: %s\n", latencyText(r))
			}
		}
	}
	if in := st.Intake; in != nil {
		switch {
		case in.Bound:
			fmt.Fprintf(w, "intake:    NFLOG group %d bound; %d packets received, %d lost, %d overruns\n", in.Group, in.Received, in.Lost, in.Overruns)
			if in.Foreign > 0 {
				fmt.Fprintf(w, "           %d of them logged by another ruleset on this group (prefix not \"moat:\"): not scored\n", in.Foreign)
			}
		case in.Error != "":
			fmt.Fprintf(w, "intake:    NFLOG group %d NOT bound: %s\n           the scan guard and daemon-mode doors are BLIND until moat restarts with the group free\n", in.Group, in.Error)
		default:
			fmt.Fprintf(w, "intake:    NFLOG group %d not bound yet\n", in.Group)
		}
	}
	if st.StoreWriteFailures > 0 {
		fmt.Fprintf(w, "store:     %d writes FAILED since start (disk full?); bans stay in the kernel, and the next start reads them back\n", st.StoreWriteFailures)
	}
	if st.RulesRepaired > 0 {
		fmt.Fprintf(w, "reconcile: %d reinstalls of the table after its rules were changed outside moat (see the log)\n", st.RulesRepaired)
	}
	if st.Reasserted > 0 {
		fmt.Fprintf(w, "reconcile: re-added %d elements the kernel had lost\n", st.Reasserted)
	}
	printProtected(w, st)
	if st.Fleet != nil {
		printFleet(w, st.Fleet)
	}
	if l := st.Login; l != nil {
		sources := "NO log sources (nothing is counted: see `[login] sources` and the start log)"
		if len(l.Sources) > 0 {
			sources = "sources " + strings.Join(l.Sources, " ")
		}
		fmt.Fprintf(w, "\nlogin guard: %s; %d failures counted, %d addresses being counted, %d bans made\n",
			sources, l.Events, l.Counting, l.Banned)
		if len(l.TopUsers) > 0 {
			var us []string
			for _, u := range l.TopUsers {
				us = append(us, fmt.Sprintf("%q %d", u.User, u.Attempts))
			}
			fmt.Fprintf(w, "  users tried most: %s\n", strings.Join(us, ", "))
		}
		if n := l.Names; n.NotResolved > 0 {
			fmt.Fprintf(w, "  %d failures by host names not resolved, not counted (use_dns = \"no\"; sshd's UseDNS is on)\n", n.NotResolved)
		}
		if n := l.Names; n.UseDNS == "warn" || n.UseDNS == "yes" {
			fmt.Fprintf(w, "  host names (use_dns = %q): %d counted, %d not counted; lookups %d answered, %d failed, %d from cache, %d DROPPED (too many waiting)\n",
				n.UseDNS, n.Counted, n.NotCounted, n.Resolved, n.Failed, n.Cached, n.Dropped)
		}
	}
	if sc := st.Scan; sc != nil {
		fmt.Fprintf(w, "\nscan guard: %d scanners banned since start", sc.Blocked)
		if sc.Lost > 0 {
			fmt.Fprintf(w, "; %d logged packets LOST (raise the receive buffer or lower the load)", sc.Lost)
		}
		fmt.Fprintln(w)
		if sc.Capped > 0 {
			fmt.Fprintf(w, "  %d scanners NOT banned: the cap of %d bans per minute was reached, last at %s (a flood of forged sources?)\n",
				sc.Capped, sc.MaxBansPerMinute, sc.LastCapped.Local().Format(time.DateTime))
		}
		if st.Report == nil {
			printScanReport(w, sc.Report)
		}
		if len(sc.Events) > 0 {
			fmt.Fprintln(w, "  recent events (kept across restarts):")
			for _, e := range sc.Events {
				b := ""
				switch {
				case e.Blocked:
					b = " BANNED"
				case e.Capped:
					b = " not banned (cap)"
				}
				fmt.Fprintf(w, "    %s  %-39s level %d  %s  %d probes, %d ports%s\n", e.At.Local().Format(time.DateTime), e.Addr, e.Level, e.Types, e.Packets, e.Ports, b)
			}
		}
	}
	printReport(w, st)
	printBlocklists(w, st)
}

// printProtected lists what no guard ever bans, grouped by why.
func printProtected(w io.Writer, st daemon.Status) {
	var order []string
	byWhy := map[string][]string{}
	for _, p := range st.Protected {
		if _, ok := byWhy[p.Why]; !ok {
			order = append(order, p.Why)
		}
		byWhy[p.Why] = append(byWhy[p.Why], p.Addr+p.Prefix)
	}
	fmt.Fprintf(w, "protected: %d addresses no guard bans (a manual ban needs --force)\n", len(st.Protected))
	for _, why := range order {
		as := byWhy[why]
		more := ""
		if len(as) > 8 {
			as, more = as[:8], fmt.Sprintf(" and %d more", len(as)-8)
		}
		fmt.Fprintf(w, "  %s: %s%s\n", why, strings.Join(as, " "), more)
	}
	if st.LiftedBans > 0 {
		fmt.Fprintf(w, "  %d guard bans lifted because they covered a protected address\n", st.LiftedBans)
	}
}

// printScanReport prints what `psad -S` shows: top sources, most scanned
// ports and counts per log prefix.
func printScanReport(w io.Writer, r portscan.Report) {
	if len(r.Sources) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  SOURCE\tLEVEL\tTYPES\tPROBES\tPORTS\tFIRST\tLAST")
		for _, s := range r.Sources {
			fmt.Fprintf(tw, "  %s\t%d\t%s\t%d\t%d\t%s\t%s\n", s.Addr, s.Level, strings.Join(s.Types, ","), s.Packets, s.Ports,
				s.First.Local().Format(time.TimeOnly), s.Last.Local().Format(time.TimeOnly))
		}
		tw.Flush()
	}
	if len(r.Ports) > 0 {
		var ps []string
		for _, p := range r.Ports {
			ps = append(ps, fmt.Sprintf("%s/%d (%d)", p.Proto, p.Port, p.Packets))
		}
		fmt.Fprintf(w, "  most scanned ports: %s\n", strings.Join(ps, ", "))
	}
	if len(r.Prefixes) > 0 {
		var ps []string
		for _, p := range r.Prefixes {
			ps = append(ps, fmt.Sprintf("%s %d", p.Prefix, p.Packets))
		}
		fmt.Fprintf(w, "  packets per log prefix: %s\n", strings.Join(ps, ", "))
	}
}

// latencyText is a packet-to-grant summary: from the packet's arrival in
// the kernel to the grant committed there.
func latencyText(l *latency.Summary) string {
	ms := func(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 2, 64) }
	return fmt.Sprintf("p50 %s ms, p90 %s ms, p99 %s ms, max %s ms (last %d of %d)", ms(l.P50), ms(l.P90), ms(l.P99), ms(l.Max), l.Of, l.Count)
}

package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/sshd"
)

// auditFailed is the exit status of `moat sshd audit` when a finding is at
// or above --fail-on, so a deploy can gate on it.
const auditFailed = exitCode(3)

// sshdCmd is `moat sshd`: audit and harden the OpenSSH server moat guards.
//
// Its flags are --sshd and --sshd-config rather than --config, which is
// moat's own config file on every command.
func (a *app) sshdCmd() *cobra.Command {
	var srv sshd.Server
	cmd := &cobra.Command{
		Use:   "sshd",
		Short: "Audit and harden the OpenSSH server moat guards",
	}
	cmd.PersistentFlags().StringVar(&srv.Binary, "sshd", "", "the sshd program (default: sshd in PATH, else /usr/sbin/sshd)")
	cmd.PersistentFlags().StringVar(&srv.Config, "sshd-config", sshd.DefaultConfig, "sshd's main config file (sshd -f)")
	cmd.AddCommand(a.sshdAuditCmd(&srv), a.sshdHardenCmd(&srv))
	return cmd
}

// invoker is the admin running moat: the user behind sudo, else the
// current user. Their authorized keys decide what harden may turn off.
func invoker() string {
	if u := os.Getenv("SUDO_USER"); u != "" {
		return u
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return ""
}

type auditReport struct {
	SSHD     sshdInfo       `json:"sshd"`
	Findings []sshd.Finding `json:"findings"`
	Summary  sshd.Summary   `json:"summary"`
}

type sshdInfo struct {
	Version    string `json:"version"`
	Binary     string `json:"binary"`
	Config     string `json:"config"`
	Connection string `json:"connection,omitempty"`
}

func (a *app) sshdAuditCmd(srv *sshd.Server) *cobra.Command {
	var asJSON bool
	var failOn, conn string
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Judge sshd's effective configuration and print the fix for each finding",
		Long: `Judge the configuration sshd really uses (sshd -T: defaults, Include files and,
with -C, the Match blocks a connection hits) and print each finding with its
severity, the reason, and the sshd_config line that fixes it.

Exits with status 3 when a finding is at or above --fail-on, so a deploy can
gate on it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			min, err := sshd.ParseSeverity(failOn)
			if err != nil {
				return fmt.Errorf("--fail-on: %w", err)
			}
			e, err := srv.Effective(cmd.Context(), conn)
			if err != nil {
				return asRoot(err)
			}
			files, err := sshd.ReadConfig(srv.ConfigPath())
			if err != nil {
				return err
			}
			findings := sshd.Audit(e, sshd.Gather(e, files, invoker(), conn, nil))
			if findings == nil {
				findings = []sshd.Finding{}
			}
			r := auditReport{
				SSHD:     sshdInfo{Version: srv.Version(cmd.Context()), Binary: srv.BinaryPath(), Config: srv.ConfigPath(), Connection: conn},
				Findings: findings,
				Summary:  sshd.Summarize(findings, min),
			}
			if asJSON {
				enc := json.NewEncoder(a.out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(r); err != nil {
					return err
				}
			} else {
				printAudit(a.out, r, min)
			}
			if r.Summary.Failed {
				return auditFailed
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON document")
	cmd.Flags().StringVar(&failOn, "fail-on", "high", "exit with status 3 when a finding is at or above this: low, medium, high or critical")
	cmd.Flags().StringVarP(&conn, "connection", "C", "", "evaluate Match blocks for a connection, as sshd -C does: user=NAME,host=HOST,addr=ADDR")
	return cmd
}

func printAudit(w io.Writer, r auditReport, failOn sshd.Severity) {
	version := r.SSHD.Version
	if version == "" {
		version = "sshd"
	}
	fmt.Fprintf(w, "%s (%s), effective config of %s", version, r.SSHD.Binary, r.SSHD.Config)
	if r.SSHD.Connection != "" {
		fmt.Fprintf(w, " for %s", r.SSHD.Connection)
	}
	fmt.Fprintln(w)
	for sev := sshd.Critical; sev >= sshd.Info; sev-- {
		first := true
		for _, f := range r.Findings {
			if f.Severity != sev {
				continue
			}
			if first {
				fmt.Fprintf(w, "\n%s\n", strings.ToUpper(sev.String()))
				first = false
			}
			value := f.Value
			if value == "" {
				value = "(not set)"
			}
			fmt.Fprintf(w, "  %s %s\n", f.Key, value)
			fmt.Fprintf(w, "      why: %s\n", f.Message)
			if f.Fix != "" {
				fmt.Fprintf(w, "      fix: %s\n", f.Fix)
			}
		}
	}
	s := r.Summary
	fmt.Fprintf(w, "\nsummary: %d critical, %d high, %d medium, %d low, %d info\n", s.Critical, s.High, s.Medium, s.Low, s.Info)
	if s.Failed {
		fmt.Fprintf(w, "FAIL: findings at %s or above (--fail-on %s); `moat sshd harden` writes the safe fixes\n", failOn, failOn)
	}
}

func (a *app) sshdHardenCmd(srv *sshd.Server) *cobra.Command {
	var write, reload, force, all bool
	cmd := &cobra.Command{
		Use:   "harden",
		Short: "Preview, then write (--write), the fixes for what audit finds, without locking anyone out",
		Long: `Show the sshd_config changes that fix what audit finds: a drop-in,
` + "sshd_config.d/" + sshd.DropInName + `, when sshd_config includes that directory before its own
settings (as Debian's does), else a block at the top of sshd_config, since sshd
keeps the first value it reads.

--write tests the result with sshd -t on a copy before it replaces anything,
keeps a backup (.moat-bak-<time>) of what it replaces, and tests again after.
--reload then makes sshd use it (systemctl reload ssh, or SIGHUP to its PidFile).

Passwords and root logins are turned off only if you (SUDO_USER, else the
current user) or root keep a key sshd accepts; --force overrides. Fixes that
depend on how the host is used (forwarding, weak-but-unbroken algorithms, ...)
are written only with --all.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if reload && !write {
				return errors.New("--reload reloads sshd after --write: add --write")
			}
			p, err := srv.PlanHarden(cmd.Context(), invoker(), sshd.HardenOptions{All: all, Force: force})
			if err != nil {
				return asRoot(err)
			}
			printPlan(a.out, p)
			if p.Empty() {
				fmt.Fprintln(a.out, "nothing to change")
				return nil
			}
			if !write {
				fmt.Fprintln(a.out, "\npreview only: --write applies it (tested with sshd -t first), --reload then makes sshd use it")
				return nil
			}
			return a.applyPlan(cmd.Context(), srv, p, reload)
		},
	}
	cmd.Flags().BoolVar(&write, "write", false, "write the changes (after sshd -t accepts them)")
	cmd.Flags().BoolVar(&reload, "reload", false, "reload sshd after writing")
	cmd.Flags().BoolVar(&force, "force", false, "turn passwords and root logins off even when no key is known to get you in")
	cmd.Flags().BoolVar(&all, "all", false, "also write the fixes that depend on how the host is used")
	return cmd
}

func printPlan(w io.Writer, p *sshd.Plan) {
	if p.ConfigChanges() {
		fmt.Fprintf(w, "%s (%s):\n%s", p.Target, p.Via, p.Diff())
	}
	for _, k := range p.KeyFixes {
		fmt.Fprintf(w, "host key: %s\n", k)
	}
	if len(p.Held) > 0 {
		fmt.Fprintln(w, "\nnot changed:")
		for _, h := range p.Held {
			fmt.Fprintf(w, "  %s (%s): %s\n", h.Finding.Key, h.Finding.Severity, h.Why)
		}
	}
	for _, n := range p.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

func (a *app) applyPlan(ctx context.Context, srv *sshd.Server, p *sshd.Plan, reload bool) error {
	res, err := srv.Apply(ctx, p, time.Now())
	if res != nil {
		if res.Written != "" {
			fmt.Fprintf(a.out, "\nwrote %s (sshd -t accepts it)\n", res.Written)
		}
		if res.Backup != "" {
			fmt.Fprintf(a.out, "backup: %s\n", res.Backup)
		}
		for _, k := range res.KeyFixes {
			fmt.Fprintf(a.out, "host key: ran %s\n", k)
		}
		for _, msg := range res.Ignored {
			fmt.Fprintln(a.errw, "warning:", msg)
		}
	}
	if err != nil {
		return err
	}
	if !reload {
		fmt.Fprintln(a.out, "sshd still runs its old config: reload it (systemctl reload ssh), or run again with --reload")
		return nil
	}
	msg, err := srv.Reload(ctx)
	if err != nil {
		return fmt.Errorf("the config is written, but reloading sshd failed: %w", err)
	}
	fmt.Fprintln(a.out, msg)
	fmt.Fprintln(a.out, "keep this session open and log in from a second terminal to check")
	return nil
}

// asRoot adds the likely cause when sshd fails for a user other than
// root: sshd -T loads the host keys, which only root can read.
func asRoot(err error) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w (run it as root: sshd reads its host keys, which only root can)", err)
	}
	return err
}

// warnSSHDUnreachable prints a warning for each port sshd listens on that
// the firewall config would close, and a note for each one only a door's
// knock opens: that is by design, but the admin must know to knock.
func (a *app) warnSSHDUnreachable(ctx context.Context, fw config.Firewall, doors []config.Door) {
	warnings, notes := sshd.CheckReachable(ctx, fw, doors, sshd.ListenPorts)
	for _, w := range warnings {
		fmt.Fprintln(a.errw, "warning:", w)
	}
	for _, n := range notes {
		fmt.Fprintln(a.errw, "note:", n)
	}
}

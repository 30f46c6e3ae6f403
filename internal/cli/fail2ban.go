package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/moat-fw/moat/internal/fail2ban"
)

// importFail2banCmd converts fail2ban's enabled jails into [[login.rule]]
// tables: TOML on stdout (or -o FILE), the per-filter account of what did
// not convert on stderr.
func (a *app) importFail2banCmd() *cobra.Command {
	var outFile, dovecotConfig string
	cmd := &cobra.Command{
		Use:   "fail2ban [DIR]",
		Short: "Print fail2ban's enabled jails as moat [[login.rule]] tables (default /etc/fail2ban)",
		Long: "import fail2ban reads a fail2ban configuration directory (jail.conf, jail.local, jail.d,\n" +
			"filter.d) as fail2ban does and prints each enabled jail's failregexes as [[login.rule]]\n" +
			"tables named after the jail, with its maxretry, findtime, bantime and ports.\n" +
			"A failregex that Go's RE2 cannot express, or that lets client text reach the address\n" +
			"(moat's shape check), is not imported; stderr says which and why, filter by filter.\n" +
			"Three of dovecot's failregexes are safe only with some of dovecot's settings: the import\n" +
			"asks doveconf (--dovecot-config names dovecot.conf) and refuses them if it cannot tell.\n" +
			"sshd's jail is not imported: moat reads sshd with its own parser. Check the result with\n" +
			"`moat config check`; see docs/fail2ban-import.md.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "/etc/fail2ban"
			if len(args) == 1 {
				dir = args[0]
			}
			res, err := fail2ban.Import(dir, "/etc/services", &fail2ban.Doveconf{Config: dovecotConfig})
			if err != nil {
				return fmt.Errorf("import fail2ban: %w", err)
			}
			out := a.out
			if outFile != "" {
				f, err := os.OpenFile(outFile, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
				if err != nil {
					return fmt.Errorf("import fail2ban: %w", err)
				}
				defer f.Close()
				out = f
			}
			if _, err := fmt.Fprint(out, res.TOML()); err != nil {
				return fmt.Errorf("import fail2ban: write: %w", err)
			}
			fmt.Fprint(a.errw, res.Report())
			return nil
		},
	}
	cmd.Flags().StringVarP(&outFile, "output", "o", "", "write the TOML to `FILE` instead of stdout")
	cmd.Flags().StringVar(&dovecotConfig, "dovecot-config", "", "dovecot's configuration `FILE` for doveconf -c (default: doveconf's own, /etc/dovecot/dovecot.conf)")
	return cmd
}

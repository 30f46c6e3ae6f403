package cli

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moat-fw/moat/internal/demo"
)

func (a *app) demoCmd() *cobra.Command {
	var o demo.Options
	var clean bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Try moat safely: a throwaway lab of network namespaces where moat meets real attacks",
		Long: "demo builds a lab of network namespaces on this machine: a server running moat (this binary,\n" +
			"with its own config and state in a temp directory) and a real OpenSSH behind a knock door,\n" +
			"a client that knows the knock, an attacker, and their gateway. It plays a port scan, a\n" +
			"password guesser, the client's knock and ssh login, a sweep over the knock ports and a scan\n" +
			"forged from the gateway's address, and says what moat saw and did. Then it removes the lab,\n" +
			"on Ctrl-C too. Nothing outside the lab is touched: namespaces moat-demo-*, addresses\n" +
			"10.210.99.0/24, no change to this host's firewall. Needs root, iproute2, openssh, nmap, hping3.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if clean {
				c, err := demo.Clean()
				if err != nil {
					return err
				}
				fmt.Fprintf(a.out, "removed %d namespaces (%s), stopped %d processes\n", len(c.Namespaces), strings.Join(c.Namespaces, " "), len(c.PIDs))
				return joinErrs(c.Errs)
			}
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("finding moat's own binary to run in the lab: %w", err)
			}
			o.Moat, o.Out = exe, a.out
			return demo.Run(cmd.Context(), o)
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&o.PagePort, "page-port", 9735, "offer the lab's live page on 127.0.0.1:PORT of this machine (0: not offered)")
	fl.BoolVar(&o.Keep, "keep", false, "keep the lab up after the scenarios, until Ctrl-C, to look at its live page")
	fl.BoolVar(&clean, "clean", false, "remove what a demo killed before it could clean up left behind (moat-demo-* namespaces)")
	return cmd
}

func joinErrs(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%d left behind: %v", len(errs), errs)
}

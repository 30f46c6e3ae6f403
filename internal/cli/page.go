package cli

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/spf13/cobra"

	"github.com/moat-fw/moat/internal/daemon"
	"github.com/moat-fw/moat/internal/page"
)

func (a *app) pageCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "page", Short: "The live page: bans, scans, login attempts and doors in a browser"}
	cmd.AddCommand(&cobra.Command{
		Use:   "url",
		Short: "Print the live page's address with its token ([page] listen)",
		Long: "Print the live page's address with its token. Open it in a browser; the page keeps the token\n" +
			"in a cookie and drops it from the address bar. The page listens on loopback: from another\n" +
			"machine, tunnel to it first: ssh -L 9734:127.0.0.1:9734 HOST.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ld, err := daemon.LoadConfig(a.configPath, a.explicit)
			if err != nil {
				return err
			}
			pc := ld.Cfg.Page
			if pc.Listen == "" {
				return errors.New(`the live page is off: set [page] listen = "127.0.0.1:9734" in ` + ld.Source + " and run `moat firewall apply`")
			}
			tok, err := page.Token(ld.Cfg.Daemon.StateDir)
			if err != nil {
				return fmt.Errorf("%w (run it as root)", err)
			}
			listen := pc.Listen
			// A page on every address is opened through one of them.
			if ap, err := netip.ParseAddrPort(listen); err == nil && ap.Addr().IsUnspecified() {
				listen = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ap.Port()).String()
			}
			fmt.Fprintln(a.out, page.URL(listen, tok))
			if ap, err := netip.ParseAddrPort(listen); err == nil && ap.Addr().IsLoopback() {
				fmt.Fprintf(a.errw, "from another machine: ssh -L %d:%s HOST, then open the address above there\n", ap.Port(), listen)
			}
			return nil
		},
	})
	return cmd
}

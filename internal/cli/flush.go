package cli

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/spf13/cobra"

	"github.com/moat-fw/moat/internal/control"
	"github.com/moat-fw/moat/internal/daemon"
)

// banFlushCmd is `moat ban flush`: the reference guide's flush script's
// "unblock all blocked IPs" (and psad -F). Every ban goes, the guards' and
// the admin's; the allow list stays. Without --yes it only says what it
// would lift.
func (a *app) banFlushCmd() *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "flush",
		Short: "Lift every ban (guard and manual; the allow list stays); needs --yes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			req := daemon.FlushRequest{DryRun: !yes}
			var resp daemon.FlushResponse
			err = c.Call(cmd.Context(), http.MethodPost, daemon.RouteBansFlush, req, &resp)
			if errors.Is(err, control.ErrNotRunning) {
				resp, err = daemon.FlushStandalone(a.opts(false), !yes, a.errw)
			}
			if err != nil {
				return err
			}
			if !yes {
				fmt.Fprintf(a.out, "would lift %d bans (nothing changed; run `moat ban flush --yes` to lift them):\n", len(resp.Bans))
			} else {
				fmt.Fprintf(a.out, "lifted %d bans\n", len(resp.Bans))
			}
			for _, e := range resp.Bans {
				fmt.Fprintf(a.out, "  %s\t%s\t%s\n", e.Addr, e.Origin, e.Reason)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "really lift every ban")
	return cmd
}

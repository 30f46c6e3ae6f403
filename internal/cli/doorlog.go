package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/moat-fw/moat/internal/daemon"
)

// doorLogCmd is `moat door log`: knockd's audit trail, who opened which
// door and when it closed, kernel-verified doors included.
func (a *app) doorLogCmd() *cobra.Command {
	var (
		asJSON bool
		last   int
	)
	cmd := &cobra.Command{
		Use:   "log",
		Short: "Show door openings and closings: who, which door, which ports, until when, kernel or daemon",
		Long: "Show door openings and closings, oldest first: who knocked, which door, which ports it opened, " +
			"until when, whether the kernel or the daemon verified the knock, and how each grant ended " +
			"(close sequence, expired, door removed by a reload). moat keeps the last 1000 across restarts; " +
			"[doors] log_file also writes them knockd-style.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var evs []daemon.DoorEvent
			if err := c.Call(cmd.Context(), http.MethodGet, daemon.RouteDoorLog, nil, &evs); err != nil {
				return err
			}
			if last > 0 && len(evs) > last {
				evs = evs[len(evs)-last:]
			}
			if asJSON {
				if evs == nil {
					evs = []daemon.DoorEvent{}
				}
				return json.NewEncoder(a.out).Encode(evs)
			}
			if len(evs) == 0 {
				fmt.Fprintln(a.out, "no door has opened yet")
				return nil
			}
			tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tDOOR\tADDR\tEVENT\tMODE\tPORTS\tUNTIL\tWHY")
			for _, e := range evs {
				until := "-"
				if !e.Until.IsZero() {
					until = e.Until.Local().Format(time.TimeOnly)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.At.Local().Format(time.DateTime), e.Door, e.Addr, e.Action, e.Mode,
					strings.Join(e.Ports, " "), until, e.Why)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().IntVarP(&last, "last", "n", 0, "show only the last `N` events")
	return cmd
}

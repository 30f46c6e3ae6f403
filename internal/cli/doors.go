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

func (a *app) doorCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "door", Short: "Show the knock doors"}
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List the doors, how each is verified, and knocks in progress",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var ds []daemon.DoorJSON
			if err := c.Call(cmd.Context(), http.MethodGet, daemon.RouteDoors, nil, &ds); err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(a.out).Encode(ds)
			}
			tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "DOOR\tMODE\tSEQUENCE\tOPENS\tFOR\tPENDING")
			for _, d := range ds {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", d.Name, d.Mode, strings.Join(d.Sequence, " "), strings.Join(d.Open, " "), d.OpenFor, d.Pending)
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(list, a.doorLogCmd())
	return cmd
}

func (a *app) grantCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "grant", Short: "Show what knock doors have opened, for whom"}
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List open grants with the time left",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var gs []daemon.GrantJSON
			if err := c.Call(cmd.Context(), http.MethodGet, daemon.RouteGrants, nil, &gs); err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(a.out).Encode(gs)
			}
			tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "DOOR\tADDR\tPORT\tLEFT\tMODE")
			for _, g := range gs {
				mode := g.Mode
				if mode == "" {
					mode = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", g.Door, g.Addr, g.Port, (time.Duration(g.Seconds * float64(time.Second))).Round(time.Second), mode)
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(list)
	return cmd
}

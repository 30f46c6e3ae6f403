package cli

import (
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/moat-fw/moat/internal/blocklist"
	"github.com/moat-fw/moat/internal/daemon"
)

// banImportCmd is `moat ban import FILE`: a one-off import of a list
// file, read with the blocklist parsers and sent to the daemon in
// batches; each prefix goes through the ban policy.
func (a *app) banImportCmd() *cobra.Command {
	var format, reason string
	var dur time.Duration
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Ban every address and prefix a list file names (formats as [[blocklist]]: plain, firehol, spamhaus, dshield, crowdsec)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			res, err := blocklist.Parse(f, blocklist.Format(format))
			f.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			// Entries as listed, not merged with their neighbours: each
			// goes through the ban policy on its own, so a protected
			// address in the file is refused without taking the entry
			// next to it along.
			var prefixes []string
			seen := map[netip.Prefix]bool{}
			for _, r := range res.Ranges {
				for _, p := range r.Prefixes() {
					if !seen[p] {
						seen[p] = true
						prefixes = append(prefixes, p.String())
					}
				}
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var banned int
			var refused []string
			for len(prefixes) > 0 {
				n := min(len(prefixes), daemon.ImportBatch)
				var resp daemon.ImportResponse
				req := daemon.ImportRequest{Prefixes: prefixes[:n], For: dur, Reason: reason}
				if err := c.Call(cmd.Context(), http.MethodPost, daemon.RouteBansImport, req, &resp); err != nil {
					return fmt.Errorf("after %d bans: %w", banned, err)
				}
				banned += resp.Banned
				refused = append(refused, resp.Refused...)
				prefixes = prefixes[n:]
			}
			fmt.Fprintf(a.out, "banned %d prefixes from %d entries of %s", banned, res.Entries, args[0])
			if res.Bad > 0 {
				fmt.Fprintf(a.out, " (%d lines skipped, the first line %d: %q)", res.Bad, res.FirstBad, res.FirstBadText)
			}
			fmt.Fprintln(a.out)
			if len(refused) > 0 {
				fmt.Fprintf(a.out, "refused %d:\n  %s\n", len(refused), strings.Join(refused[:min(len(refused), 20)], "\n  "))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", string(blocklist.Plain), "the file's format: plain, firehol, spamhaus, dshield or crowdsec")
	cmd.Flags().DurationVar(&dur, "for", 0, "ban duration (default: until removed)")
	cmd.Flags().StringVar(&reason, "reason", "", "reason recorded with each ban (default \"imported\")")
	return cmd
}

// blocklistCmd is `moat blocklist`: the [[blocklist]] entries.
func (a *app) blocklistCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "blocklist", Short: "Public blocklists ([[blocklist]]): refresh them now; `moat status` shows them"}
	cmd.AddCommand(&cobra.Command{
		Use:   "refresh",
		Short: "Read every blocklist's source again now, instead of at its next refresh",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.Call(cmd.Context(), http.MethodPost, daemon.RouteBlocklistRefresh, struct{}{}, nil); err != nil {
				return err
			}
			fmt.Fprintln(a.out, "refreshing the blocklists; `moat status` shows when each was read")
			return nil
		},
	})
	return cmd
}

// printBlocklists is the blocklists' part of `moat status`.
func printBlocklists(w io.Writer, st daemon.Status) {
	if len(st.Blocklists) == 0 {
		return
	}
	fmt.Fprintln(w, "\nblocklists:")
	for _, b := range st.Blocklists {
		read := "never read"
		if !b.LastRefresh.IsZero() {
			read = "read " + b.LastRefresh.Local().Format(time.DateTime)
		}
		fmt.Fprintf(w, "  %-20s %d entries in %d kernel ranges, %d protected holes, %d packets dropped; %s (%s, %s)\n",
			b.Name, b.Entries, b.Ranges, b.Protected, b.Packets, read, b.Format, b.Source)
		if b.LastError != "" {
			fmt.Fprintf(w, "    last refresh FAILED, the last good copy stays in force: %s\n", b.LastError)
		}
	}
}

package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// exitUsage is the exit status of a command line moat does not understand
// (an unknown command or flag, a wrong number of arguments), as getopt
// programs and the Go toolchain use: scripts can tell "you called it
// wrong" from "it ran and failed" (1).
const exitUsage = 2

// usageError is a command line moat does not understand.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// strict makes every command in the tree refuse what it does not know with
// a usage error (exit 2) and a suggestion. Cobra on its own prints a group
// command's help and exits 0 for `moat firewall bogus` and `moat import
// fail2ban` before that existed, so a typo in a script went unnoticed.
// It walks the finished tree, so commands added anywhere are covered.
func strict(root *cobra.Command) {
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w%s\nRun '%s --help' for usage", err, flagSuggestion(cmd, err), cmd.CommandPath())}
	})
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		// Each command's own distance counts for its subcommands.
		c.SuggestionsMinimumDistance = 2
		if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
			c.Args = cobra.ArbitraryArgs
			c.RunE = func(cmd *cobra.Command, args []string) error {
				if len(args) == 0 {
					return cmd.Help()
				}
				return unknownCommand(cmd, args[0])
			}
		} else if v := c.Args; v != nil {
			c.Args = func(cmd *cobra.Command, args []string) error {
				if err := v(cmd, args); err != nil {
					return usageError{fmt.Errorf("%w\nUsage: %s", err, cmd.UseLine())}
				}
				return nil
			}
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
}

// unknownCommand is the error for `moat GROUP WORD` when GROUP has no
// subcommand WORD, with cobra's own suggestions (Levenshtein distance and
// prefixes).
func unknownCommand(cmd *cobra.Command, word string) error {
	msg := fmt.Sprintf("unknown command %q for %q", word, cmd.CommandPath())
	if s := cmd.SuggestionsFor(word); len(s) > 0 {
		msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
	}
	return usageError{fmt.Errorf("%s\nRun '%s --help' for usage", msg, cmd.CommandPath())}
}

// flagSuggestion names the closest flag to an unknown one ("--forse" ->
// "--force"), which cobra does not do for flags.
func flagSuggestion(cmd *cobra.Command, err error) string {
	const prefix = "unknown flag: --"
	msg := err.Error()
	if !strings.HasPrefix(msg, prefix) {
		return ""
	}
	typed := strings.TrimPrefix(msg, prefix)
	best, bestD := "", 3
	seen := func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		if d := levenshtein(typed, f.Name); d < bestD || (strings.HasPrefix(f.Name, typed) && best == "") {
			best, bestD = f.Name, d
		}
	}
	cmd.Flags().VisitAll(seen)
	cmd.InheritedFlags().VisitAll(seen)
	if best == "" {
		return ""
	}
	return fmt.Sprintf("\n\nDid you mean this?\n\t--%s", best)
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// isUsage reports whether err is a command line moat did not understand,
// including the unknown-command errors cobra makes itself for the root.
func isUsage(err error) bool {
	var u usageError
	return errors.As(err, &u) || strings.HasPrefix(err.Error(), "unknown command ")
}

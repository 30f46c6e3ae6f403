// Command moat makes a Linux host invisible and self-defending: a
// default-deny nftables firewall with bans, knock doors, scan and login
// guards, in one binary.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/moat-fw/moat/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

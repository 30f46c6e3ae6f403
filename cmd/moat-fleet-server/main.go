// Command moat-fleet-server runs the embedded NATS server behind `moat
// fleet server` (package natsserver). moat execs it with the settings of
// [fleet]; it is a binary of its own so that every moat daemon does not
// carry the NATS server's code.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/moat-fw/moat/internal/fleet/natsserver"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:4222", "address and port for NATS clients")
	store := flag.String("store", "/var/lib/moat/fleet-nats", "JetStream storage directory")
	name := flag.String("name", "", "server name, shown to clients (default: the hostname)")
	user := flag.String("user", "", "clients must log in as this user (with -password-file)")
	passwordFile := flag.String("password-file", "", "a file holding the user's password")
	flag.Parse()
	if err := run(*listen, *store, *name, *user, *passwordFile); err != nil {
		fmt.Fprintln(os.Stderr, "moat-fleet-server:", err)
		os.Exit(1)
	}
}

func run(listen, store, name, user, passwordFile string) error {
	ap, err := netip.ParseAddrPort(listen)
	if err != nil {
		return fmt.Errorf("-listen %q: want an IP address and port, like \"10.0.0.5:4222\"", listen)
	}
	if name == "" {
		name, _ = os.Hostname()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return natsserver.Serve(ctx, natsserver.Options{Listen: ap, StoreDir: store, Name: name, User: user, PasswordFile: passwordFile,
		Ready: func(url string) {
			fmt.Printf("fleet server ready for clients at %s (JetStream storage %s)\n", url, store)
		}})
}

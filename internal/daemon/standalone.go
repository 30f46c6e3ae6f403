package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os/signal"
	"syscall"
	"time"

	"github.com/moat-fw/moat/internal/ban"
	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/control"
	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/store"
)

// ApplyStandalone installs the config when no daemon runs, with the bans and
// allows from the store so none is dropped. With confirm > 0 it waits for
// `moat firewall confirm` on the control socket and otherwise rolls back to
// the table that was in force before (or none).
func ApplyStandalone(ctx context.Context, opts Options, confirm time.Duration, out io.Writer) error {
	opts, ld, st, done, err := openStandalone(opts)
	if err != nil {
		return err
	}
	defer done()
	if _, err := CheckInterfaces(ld); err != nil {
		return err
	}
	d := &Daemon{opts: opts, log: opts.Log, now: opts.Now, fw: firewall.NewApplier(), cur: ld, st: st}
	defer d.fw.Close()
	d.sshPorts = SSHPorts(ctx, nil)
	if d.bans, err = ban.New(st, d.fw, ld.Cfg.Firewall.Allow, d.now(), d.warnCorrupt); err != nil {
		return err
	}
	// A daemon killed before it saved a ban left it only in the kernel;
	// the install below would drop it.
	d.adoptKernelBans()
	// Open door grants go back in with the table, as the daemon's do.
	d.grants = newGrantBook(ctx, d.log, st)
	defer d.grants.wait()
	defer d.grants.save()
	d.adoptKernelGrants()
	d.sessions = newSessionTable(d.log, nil)
	d.sessions.refresh(d.sshPorts, loginGrace(ctx), d.now())
	if err := d.guard(ld.Cfg, opts.Session, opts.Force, true); err != nil {
		return err
	}
	var prev *Loaded
	existed, err := d.fw.Exists()
	if err != nil {
		return err
	}
	if raw, _ := st.Meta(MetaApplied); existed && raw != nil {
		if cfg, err := config.Parse(raw, "previously applied config"); err == nil {
			prev = &Loaded{Cfg: cfg, Source: "previously applied config", Raw: raw}
		}
	}
	if err := d.install(ld); err != nil {
		return err
	}
	fmt.Fprintf(out, "applied %s\n", ld.Source)
	if confirm <= 0 {
		return nil
	}

	// Losing the SSH session must not kill the process that rolls back.
	signal.Ignore(syscall.SIGHUP)
	defer signal.Reset(syscall.SIGHUP)
	ln, err := control.Listen(ld.Cfg.Daemon.Socket)
	if err != nil {
		return errors.Join(err, d.rollback(prev))
	}
	confirmed := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+RouteConfirm, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-confirmed:
		default:
			close(confirmed)
		}
		control.WriteJSON(w, http.StatusOK, struct{}{})
	})
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- control.Serve(sctx, ln, mux) }()
	defer func() { cancel(); <-served }()
	fmt.Fprintf(out, "run `moat firewall confirm` within %s, or the previous firewall comes back\n", confirm)
	timer := time.NewTimer(confirm)
	defer timer.Stop()
	select {
	case <-confirmed:
		fmt.Fprintln(out, "confirmed")
		return nil
	case <-timer.C:
	case <-ctx.Done():
	}
	fmt.Fprintln(out, "not confirmed: rolling back")
	if err := d.rollback(prev); err != nil {
		return err
	}
	return errors.New("apply was not confirmed and has been rolled back")
}

func (d *Daemon) rollback(prev *Loaded) error {
	if prev == nil {
		_, err := d.fw.Remove()
		return err
	}
	d.bans.Reconfigure(prev.Cfg.Firewall.Allow)
	return d.install(prev)
}

// openStandalone is what a command working without the daemon does first:
// fill in opts' defaults, load the config, take the network namespace's
// lock (a daemon with another socket may guard it: changing the table or
// the bans behind its back would leave it enforcing what it no longer
// knows), and open the store. done releases both.
func openStandalone(opts Options) (Options, *Loaded, *store.Store, func(), error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	ld, err := LoadConfig(opts.ConfigPath, opts.Explicit)
	if err != nil {
		return opts, nil, nil, nil, err
	}
	lock, err := lockNetns(opts.Log, ld.Cfg.Daemon.StateDir, ld.Cfg.Daemon.Socket)
	if err != nil {
		return opts, nil, nil, nil, err
	}
	st, err := store.Open(ld.Cfg.Daemon.StateDir)
	if err != nil {
		lock.Close()
		return opts, nil, nil, nil, err
	}
	return opts, ld, st, func() { st.Close(); lock.Close() }, nil
}

package cli

import (
	"context"
	"errors"
	"fmt"
	"github.com/moat-fw/moat/internal/fwknop"
	"io"
	"net/netip"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/moat-fw/moat/internal/knock"
	"github.com/moat-fw/moat/internal/knockd"
)

// knockArgs is what `moat knock` was asked to do, once its flags and
// arguments are read.
type knockArgs struct {
	host        string
	steps       []knock.Step
	opt         knock.Options
	thenConnect uint16
	connectWait time.Duration
	connectTO   time.Duration
	dryRun      bool
	verbose     bool
}

// knockFlags are `moat knock`'s flags before they are checked.
type knockFlags struct {
	udp, ipv4, ipv6, verbose, dryRun bool
	delayMS                          int
	door, file                       string
	thenConnect                      int
	connectWait, connectTimeout      time.Duration
}

// knockCmd is the knock client: knockd's `knock`, plus doors from a file
// and an nc-like relay for ssh's ProxyCommand.
func (a *app) knockCmd() *cobra.Command {
	var f knockFlags
	cmd := &cobra.Command{
		Use:   "knock [flags] HOST PORT[:tcp|:udp]...  |  knock [HOST] --door NAME",
		Short: "Knock on a door: send the knock sequence (like knockd's knock client)",
		Long: "knock sends one packet per PORT to HOST, in order: one TCP SYN (default) or one UDP datagram.\n" +
			"It takes the arguments of knockd's knock client: moat knock host 7000 8000:udp 9000:tcp\n\n" +
			"With --door NAME the sequence (and host and delay, if there) come from the knock file:\n" +
			"$XDG_CONFIG_HOME/moat/knock.toml, else ~/.config/moat/knock.toml, or --file:\n\n" +
			"  [door.ssh]\n  host     = \"server.example.org\"\n  sequence = [\"tcp/7000\", \"tcp/8000\", \"udp/9000\"]\n  delay    = \"200ms\"\n\n" +
			"--then-connect PORT then connects to HOST:PORT and relays stdin and stdout, so in ~/.ssh/config\n" +
			"  ProxyCommand moat knock %h --door ssh --then-connect %p\n" +
			"knocks before every ssh connection. See docs/knock.md.",
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ka, err := parseKnock(cmd, f, args)
			if err != nil {
				return err
			}
			return a.knock(cmd.Context(), ka, cmd.InOrStdin())
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&f.udp, "udp", "u", false, "knock over UDP on ports given without :tcp or :udp (default TCP)")
	fl.IntVarP(&f.delayMS, "delay", "d", 0, "wait this many milliseconds between knocks (default: the door's delay, else 0)")
	fl.BoolVarP(&f.ipv4, "ipv4", "4", false, "use HOST's IPv4 address")
	fl.BoolVarP(&f.ipv6, "ipv6", "6", false, "use HOST's IPv6 address")
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "print each knock (to stderr with --then-connect)")
	fl.StringVar(&f.door, "door", "", "take the sequence from the knock file's [door.NAME]")
	fl.StringVar(&f.file, "file", "", "knock file (default $XDG_CONFIG_HOME/moat/knock.toml or ~/.config/moat/knock.toml)")
	fl.IntVar(&f.thenConnect, "then-connect", 0, "after knocking, connect to HOST:PORT and relay stdin/stdout (for ssh's ProxyCommand)")
	fl.DurationVar(&f.connectWait, "connect-wait", 200*time.Millisecond, "with --then-connect: pause after the last knock, for the server to open the door")
	fl.DurationVar(&f.connectTimeout, "connect-timeout", 10*time.Second, "with --then-connect: give up connecting after this long")
	fl.BoolVarP(&f.dryRun, "dry-run", "n", false, "print the knocks and send nothing")
	return cmd
}

// parseKnock checks the flags and arguments; it sends nothing.
func parseKnock(cmd *cobra.Command, f knockFlags, args []string) (knockArgs, error) {
	var ka knockArgs
	if f.ipv4 && f.ipv6 {
		return ka, errors.New("-4 and -6 together: pick one")
	}
	switch {
	case f.ipv4:
		ka.opt.Family = knock.IPv4
	case f.ipv6:
		ka.opt.Family = knock.IPv6
	}
	if f.delayMS < 0 {
		return ka, fmt.Errorf("--delay %d: want milliseconds, 0 or more", f.delayMS)
	}
	ka.opt.Delay = time.Duration(f.delayMS) * time.Millisecond
	if cmd.Flags().Changed("then-connect") {
		if f.thenConnect < 1 || f.thenConnect > 65535 {
			return ka, fmt.Errorf("--then-connect %d: want a port from 1 to 65535", f.thenConnect)
		}
		ka.thenConnect = uint16(f.thenConnect)
	}
	if f.connectWait < 0 || f.connectTimeout <= 0 {
		return ka, errors.New("--connect-wait must be 0 or more, --connect-timeout more than 0")
	}
	ka.connectWait, ka.connectTO = f.connectWait, f.connectTimeout
	ka.dryRun, ka.verbose = f.dryRun, f.verbose

	if f.door == "" {
		if f.file != "" {
			return ka, errors.New("--file needs --door NAME: which door of the file to knock on")
		}
		if len(args) < 2 {
			return ka, errors.New("want HOST and at least one PORT, like: moat knock server.example.org 7000 8000:udp 9000; or moat knock HOST --door NAME")
		}
		ka.host = args[0]
		def := "tcp"
		if f.udp {
			def = "udp"
		}
		for _, arg := range args[1:] {
			st, err := knock.ParseKnockArg(arg, def)
			if err != nil {
				return ka, err
			}
			ka.steps = append(ka.steps, st)
		}
		return ka, nil
	}

	if len(args) > 1 {
		return ka, fmt.Errorf("ports on the command line and --door %s: the door has the sequence; give only HOST", f.door)
	}
	if f.udp {
		return ka, errors.New("-u and --door: the door's sequence names each knock's protocol")
	}
	path := f.file
	if path == "" {
		var err error
		if path, err = knock.DefaultClientFile(); err != nil {
			return ka, err
		}
	}
	file, err := knock.LoadClientFile(path)
	if err != nil {
		return ka, err
	}
	door, err := file.Door(f.door)
	if err != nil {
		return ka, err
	}
	ka.host, ka.steps = door.Host, door.Sequence
	if len(args) == 1 {
		ka.host = args[0]
	}
	if ka.host == "" {
		return ka, fmt.Errorf("no host: give HOST, or host = \"...\" under [door.%s] in %s", f.door, path)
	}
	if !cmd.Flags().Changed("delay") {
		ka.opt.Delay = door.Delay
	}
	return ka, nil
}

// knock resolves, knocks and, with --then-connect, relays in and a.out.
func (a *app) knock(ctx context.Context, ka knockArgs, in io.Reader) error {
	// With --then-connect stdout carries the connection: nothing else may
	// be written there.
	info := a.out
	if ka.thenConnect != 0 {
		info = a.errw
	}
	addr, err := knock.Resolve(ctx, ka.host, ka.opt.Family)
	if err != nil {
		return err
	}
	if ka.dryRun {
		for _, s := range ka.steps {
			fmt.Fprintf(info, "would hit %s %s\n", s.Proto, netip.AddrPortFrom(addr, s.Port))
		}
		if ka.opt.Delay > 0 {
			fmt.Fprintf(info, "with %s between knocks\n", ka.opt.Delay)
		}
		if ka.thenConnect != 0 {
			fmt.Fprintf(info, "then connect to %s after %s\n", netip.AddrPortFrom(addr, ka.thenConnect), ka.connectWait)
		}
		return nil
	}
	if ka.verbose {
		ka.opt.Verbose = info
	}
	if err := knock.KnockAddr(ctx, addr, ka.steps, ka.opt); err != nil {
		return err
	}
	if ka.thenConnect == 0 {
		return nil
	}
	if ka.connectWait > 0 {
		t := time.NewTimer(ka.connectWait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	return knock.Relay(ctx, netip.AddrPortFrom(addr, ka.thenConnect), in, a.out, ka.connectTO)
}

// importCmd converts other tools' configs to moat's.
func (a *app) importCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "import", Short: "Convert another tool's config to moat's"}
	cmd.AddCommand(&cobra.Command{
		Use:   "knockd [FILE|-]",
		Short: "Print knockd.conf's doors as moat [[door]] tables (default /etc/knockd.conf)",
		Long: "import knockd reads knockd.conf and prints the equivalent moat [[door]] tables on stdout.\n" +
			"Whatever does not map is a \"# warning:\" line in the output and a line on stderr.\n" +
			"iptables commands opening a port for %IP% become open = [...]; other commands are kept\n" +
			"as argv, which moat runs without a shell. Check the result with `moat config check`.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := "/etc/knockd.conf"
			if len(args) == 1 {
				path = args[0]
			}
			in := cmd.InOrStdin()
			if path != "-" {
				f, err := os.Open(path)
				if err != nil {
					return fmt.Errorf("read knockd config: %w", err)
				}
				defer f.Close()
				in = f
			}
			conf, err := knockd.Parse(in)
			if err != nil {
				return err
			}
			out, warnings := knockd.Import(conf)
			if _, err := io.WriteString(a.out, out); err != nil {
				return err
			}
			for _, w := range warnings {
				fmt.Fprintln(a.errw, "moat: warning:", w)
			}
			if len(warnings) > 0 {
				fmt.Fprintf(a.errw, "moat: %d warnings: read them before using the doors (they are in the output too)\n", len(warnings))
			}
			return nil
		},
	})
	cmd.AddCommand(a.importFail2banCmd())
	cmd.AddCommand(a.importFwknopCmd())
	return cmd
}

// importFwknopCmd converts fwknopd's access.conf stanzas to [[spa.fwknop]].
func (a *app) importFwknopCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "fwknop [ACCESS.CONF [FWKNOPD.CONF]]",
		Short: "Print fwknopd's access.conf stanzas as moat [[spa.fwknop]] tables (default /etc/fwknop/access.conf)",
		Long: "import fwknop reads fwknopd's access.conf and prints the equivalent [spa] and [[spa.fwknop]] tables\n" +
			"on stdout; with fwknopd.conf, the port from UDPSERV_PORT or PCAP_FILTER too. Whatever does not convert\n" +
			"is a \"# warning:\" line in the output and a line on stderr; stanzas without HMAC, GPG stanzas and\n" +
			"modes other than CBC/HMAC-SHA256 are written as comments. The output holds the keys: keep it private.",
		Args: cobra.MaximumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := "/etc/fwknop/access.conf"
			if len(args) > 0 {
				path = args[0]
			}
			f, err := os.Open(path)
			if err != nil {
				return fmt.Errorf("read fwknop access.conf: %w", err)
			}
			defer f.Close()
			stanzas, orphans, err := fwknop.ParseAccess(f)
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if len(stanzas) == 0 {
				return fmt.Errorf("%s: no SOURCE line, so no access stanza", path)
			}
			port, note := 0, ""
			if len(args) > 1 {
				sf, err := os.Open(args[1])
				if err != nil {
					return fmt.Errorf("read fwknopd.conf: %w", err)
				}
				defer sf.Close()
				vars, err := fwknop.ParseVars(sf)
				if err != nil {
					return fmt.Errorf("%s: %w", args[1], err)
				}
				port, note = fwknop.ServerPort(vars)
			}
			out, warnings := fwknop.Import(stanzas, port, note)
			for _, o := range orphans {
				warnings = append(warnings, fmt.Sprintf("access.conf line %d: %s before the first SOURCE belongs to no stanza; ignored", o.Line, o.Key))
			}
			if _, err := io.WriteString(a.out, out); err != nil {
				return err
			}
			for _, w := range warnings {
				fmt.Fprintln(a.errw, "moat: warning:", w)
			}
			if len(warnings) > 0 {
				fmt.Fprintf(a.errw, "moat: %d warnings: read them before using the entries (they are in the output too)\n", len(warnings))
			}
			return nil
		},
	}
}

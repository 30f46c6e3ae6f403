package cli

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/spa"
)

// spaCmd is moat's SPA client: keys, and the datagram that opens a door.
func (a *app) spaCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "spa",
		Short: "Single packet authorization: make keys, send the datagram that opens a door",
		Long: "One sealed UDP datagram to a closed port of a moat server opens a door or ports for the\n" +
			"sender (docs/spa.md). `moat spa keygen` makes keys; `moat spa send` sends the datagram.",
	}
	cmd.AddCommand(a.spaKeygenCmd(), a.spaSendCmd(), a.spaProxyCmd(os.Stdin))
	return cmd
}

func (a *app) spaKeygenCmd() *cobra.Command {
	var out, serverKey string
	var hybrid, psk, qr, fwknopKeys bool
	cmd := &cobra.Command{
		Use:   "keygen --out FILE",
		Short: "Write a private key (or, with --psk, a shared key) to FILE and print what the server's config needs",
		Long: "keygen writes a new private key to FILE (mode 0600) and prints its public key line: paste that\n" +
			"line into the server's [[spa.client]] key (for a client's key) or give it to clients as the\n" +
			"server's key (for the server's key_file). --hybrid makes an ML-KEM-768+X25519 key; --psk a\n" +
			"pre-shared key, for psk_file on both sides. --qr also prints, as a QR code, what a phone needs:\n" +
			"the private (or shared) key and, with --server-key, the server's public key.\n" +
			"--fwknop prints a new fwknop key pair instead (KEY_BASE64, HMAC_KEY_BASE64, as `fwknop --key-gen`),\n" +
			"and with --qr the QR code the Fwknop2 Android app imports.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if fwknopKeys {
				if out != "" || psk || hybrid || serverKey != "" {
					return usageError{errors.New("spa keygen: --fwknop prints its keys and takes only --qr")}
				}
				return printFwknopKeys(a.out, a.errw, qr)
			}
			if out == "" {
				return usageError{errors.New("spa keygen: --out FILE is required: the private key is never printed")}
			}
			var priv, pub string
			var err error
			switch {
			case psk && hybrid:
				return usageError{errors.New("spa keygen: --psk and --hybrid exclude each other")}
			case psk:
				priv, err = spa.GeneratePSK()
			case hybrid:
				priv, pub, err = spa.GenerateHybridKey()
			default:
				priv, pub, err = spa.GenerateKey()
			}
			if err != nil {
				return fmt.Errorf("spa keygen: %w", err)
			}
			f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return fmt.Errorf("spa keygen: %w (an existing key is never overwritten)", err)
			}
			if _, err := f.WriteString(strings.TrimRight(priv, "\n") + "\n"); err != nil {
				f.Close()
				return fmt.Errorf("spa keygen: %w", err)
			}
			if err := f.Close(); err != nil {
				return fmt.Errorf("spa keygen: %w", err)
			}
			if psk {
				fmt.Fprintf(a.out, "wrote the shared key to %s: copy the file to the other side, as psk_file\n", out)
			} else {
				fmt.Fprintln(a.out, pub)
			}
			if !qr {
				return nil
			}
			line := serverKey
			if b, err := os.ReadFile(serverKey); serverKey != "" && err == nil {
				line = string(b)
			}
			if line != "" {
				if _, err := spa.ParsePublicKey(strings.TrimSpace(line)); err != nil {
					return fmt.Errorf("spa keygen: --server-key: %w", err)
				}
			}
			block, err := qrBlock(moatKeyText(priv, line))
			if err != nil {
				return fmt.Errorf("spa keygen: %w", err)
			}
			fmt.Fprint(a.out, block)
			fmt.Fprintln(a.errw, "the QR code holds the private key: show it only to the phone it is for, then clear the screen")
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "out", "o", "", "write the private key to `FILE` (created, mode 0600)")
	cmd.Flags().BoolVar(&hybrid, "hybrid", false, "an ML-KEM-768+X25519 key (post-quantum; datagrams up to 1.2 KB)")
	cmd.Flags().BoolVar(&psk, "psk", false, "a pre-shared key instead of a key pair")
	cmd.Flags().BoolVar(&qr, "qr", false, "also print the key for a phone as a QR code")
	cmd.Flags().StringVar(&serverKey, "server-key", "", "with --qr: put the server's public key (a line, or a `FILE` holding it) in the QR code too")
	cmd.Flags().BoolVar(&fwknopKeys, "fwknop", false, "make fwknop keys (Rijndael + HMAC) instead, for fwknop clients and [[spa.fwknop]]")
	return cmd
}

// spaFlags are the flags send and proxy share: who the client is, what it
// asks for.
type spaFlags struct {
	keyFile, pskFile, serverKey, door, forDur, addr string
	ports                                           []string
	fwknop                                          fwknopKeyFlags
}

func (f *spaFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.keyFile, "key", "", "this client's private key `FILE` (moat spa keygen)")
	fl.StringVar(&f.pskFile, "psk", "", "a pre-shared key `FILE` instead of --key and --server-key")
	fl.StringVar(&f.serverKey, "server-key", "", "the server's public key line, or a `FILE` holding it")
	fl.StringVar(&f.door, "door", "", "the door to open, by `NAME`")
	fl.StringArrayVar(&f.ports, "port", nil, "a port to open, `PROTO/PORT` (repeatable)")
	fl.StringVar(&f.forDur, "for", "", "how long (`DURATION`); default: the most the server allows")
	fl.StringVar(&f.addr, "addr", "", "open for this `ADDRESS` instead of the packet's source (NAT)")
	f.fwknop.register(cmd)
}

// seal builds the datagram the flags ask for. local is the address the
// datagram leaves from: a fwknop packet names the address to open, and
// without --addr that is this one.
func (f *spaFlags) seal(cmdName string, local netip.Addr) ([]byte, error) {
	if f.fwknop.on {
		return f.sealFwknop(cmdName, local)
	}
	if (f.door == "") == (len(f.ports) == 0) {
		return nil, usageError{fmt.Errorf("%s: ask for --door NAME or --port PROTO/PORT (one of them)", cmdName)}
	}
	req := spa.Request{Door: f.door}
	for _, p := range f.ports {
		sp, err := spa.ParsePort(p)
		if err != nil {
			return nil, usageError{fmt.Errorf("%s: --port %q: %w", cmdName, p, err)}
		}
		req.Ports = append(req.Ports, sp)
	}
	if f.forDur != "" {
		d, err := time.ParseDuration(f.forDur)
		if err != nil || d < time.Second {
			return nil, usageError{fmt.Errorf("%s: --for %q: want a duration like 10m", cmdName, f.forDur)}
		}
		req.Duration = d
	}
	if f.addr != "" {
		ad, err := netip.ParseAddr(f.addr)
		if err != nil {
			return nil, usageError{fmt.Errorf("%s: --addr: %w", cmdName, err)}
		}
		req.Addr = ad
	}
	switch {
	case f.pskFile != "":
		b, err := os.ReadFile(f.pskFile)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cmdName, err)
		}
		k, err := spa.ParsePSK(string(b))
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", cmdName, f.pskFile, err)
		}
		return spa.SealPSK(req, k, time.Now(), rand.Reader)
	case f.keyFile != "" && f.serverKey != "":
		b, err := os.ReadFile(f.keyFile)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cmdName, err)
		}
		priv, err := spa.ParsePrivateKey(string(b))
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", cmdName, f.keyFile, err)
		}
		line := f.serverKey
		if b, err := os.ReadFile(f.serverKey); err == nil {
			line = string(b)
		}
		pub, err := spa.ParsePublicKey(strings.TrimSpace(line))
		if err != nil {
			return nil, fmt.Errorf("%s: --server-key: %w", cmdName, err)
		}
		return spa.Seal(req, pub, priv, time.Now(), rand.Reader)
	}
	return nil, usageError{fmt.Errorf("%s: give --key FILE and --server-key, or --psk FILE", cmdName)}
}

// sendSealed seals what the flags ask for and sends it to host (a name or
// address, with or without a port; the SPA port by default) as one
// datagram from an unbound UDP socket. It returns the datagram and where
// it went.
func (f *spaFlags) sendSealed(cmdName, host string) ([]byte, net.Addr, error) {
	target := host
	if _, _, err := net.SplitHostPort(target); err != nil {
		target = net.JoinHostPort(strings.Trim(target, "[]"), strconv.Itoa(config.DefaultSPAPort))
	}
	conn, err := net.Dial("udp", target)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", cmdName, err)
	}
	defer conn.Close()
	local := conn.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	d, err := f.seal(cmdName, local)
	if err != nil {
		return nil, nil, err
	}
	if _, err := conn.Write(d); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", cmdName, err)
	}
	return d, conn.RemoteAddr(), nil
}

func (a *app) spaSendCmd() *cobra.Command {
	var f spaFlags
	var save string
	cmd := &cobra.Command{
		Use:   "send HOST[:PORT]",
		Short: "Send the datagram that asks HOST to open a door or ports for this address",
		Long: "send seals a request with this client's key (--key, or --psk) to the server's public key\n" +
			"(--server-key, a line or a file holding it) and sends it as one UDP datagram to HOST (port\n" +
			strconv.Itoa(config.DefaultSPAPort) + " unless given). Nothing answers: the port stays closed. The door opens\n" +
			"for the packet's source address unless --addr names another (the server must allow it).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			datagram, to, err := f.sendSealed("spa send", args[0])
			if err != nil {
				return err
			}
			if save != "" {
				if err := os.WriteFile(save, datagram, 0o600); err != nil {
					return fmt.Errorf("spa send: --save: %w", err)
				}
			}
			fmt.Fprintf(a.errw, "sent %d bytes to %s\n", len(datagram), to)
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&save, "save", "", "also write the datagram to `FILE` (tests, debugging)")
	return cmd
}

// spaProxyCmd is an SSH ProxyCommand: it knocks with one datagram, waits
// for the port to open, then carries the connection over stdin and
// stdout, so `ssh -o ProxyCommand='moat spa proxy ... %h %p' host` reaches
// a server whose sshd is hidden behind SPA in one command.
func (a *app) spaProxyCmd(stdin io.Reader) *cobra.Command {
	var f spaFlags
	var spaPort int
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "proxy HOST PORT",
		Short: "SSH ProxyCommand: open HOST's PORT with SPA, then carry the connection over stdin/stdout",
		Long: "proxy sends the SPA datagram (asking for tcp/PORT unless --door or --port say otherwise), waits\n" +
			"until PORT accepts a connection (--wait), then copies stdin to it and it to stdout. Use it as\n" +
			"  ssh -o ProxyCommand='moat spa proxy --key K --server-key S %h %p' HOST",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			host, port := args[0], args[1]
			if _, err := strconv.ParseUint(port, 10, 16); err != nil {
				return usageError{fmt.Errorf("spa proxy: port %q: want a number", port)}
			}
			if f.door == "" && len(f.ports) == 0 {
				f.ports = []string{"tcp/" + port}
			}
			if _, _, err := f.sendSealed("spa proxy", net.JoinHostPort(host, strconv.Itoa(spaPort))); err != nil {
				return err
			}
			// The grant is in the kernel within milliseconds; a connection
			// tried before it times out (drop) or is refused (reject), so
			// try briefly and often rather than once and long.
			deadline := time.Now().Add(wait)
			var conn net.Conn
			var err error
			for {
				conn, err = net.DialTimeout("tcp", net.JoinHostPort(host, port), 300*time.Millisecond)
				if err == nil || time.Now().After(deadline) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if err != nil {
				return fmt.Errorf("spa proxy: %s did not open within %v: %w", net.JoinHostPort(host, port), wait, err)
			}
			defer conn.Close()
			done := make(chan struct{})
			go func() {
				defer close(done)
				_, _ = io.Copy(a.out, conn)
			}()
			_, _ = io.Copy(conn, stdin)
			if tc, ok := conn.(*net.TCPConn); ok {
				_ = tc.CloseWrite() // ssh closed its side; let the server finish
			}
			<-done
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().IntVar(&spaPort, "spa-port", config.DefaultSPAPort, "the server's SPA `PORT`")
	cmd.Flags().DurationVar(&wait, "wait", 5*time.Second, "how long to wait for the port to open")
	return cmd
}

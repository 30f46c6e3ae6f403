package cli

import (
	"crypto/rand"
	"errors"
	"fmt"
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
	cmd.AddCommand(a.spaKeygenCmd(), a.spaSendCmd())
	return cmd
}

func (a *app) spaKeygenCmd() *cobra.Command {
	var out string
	var hybrid, psk bool
	cmd := &cobra.Command{
		Use:   "keygen --out FILE",
		Short: "Write a private key (or, with --psk, a shared key) to FILE and print what the server's config needs",
		Long: "keygen writes a new private key to FILE (mode 0600) and prints its public key line: paste that\n" +
			"line into the server's [[spa.client]] key (for a client's key) or give it to clients as the\n" +
			"server's key (for the server's key_file). --hybrid makes an ML-KEM-768+X25519 key; --psk a\n" +
			"pre-shared key, for psk_file on both sides.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
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
				return nil
			}
			fmt.Fprintln(a.out, pub)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "out", "o", "", "write the private key to `FILE` (created, mode 0600)")
	cmd.Flags().BoolVar(&hybrid, "hybrid", false, "an ML-KEM-768+X25519 key (post-quantum; datagrams up to 1.2 KB)")
	cmd.Flags().BoolVar(&psk, "psk", false, "a pre-shared key instead of a key pair")
	return cmd
}

func (a *app) spaSendCmd() *cobra.Command {
	var keyFile, pskFile, serverKey, door, forDur, addr, save string
	var ports []string
	cmd := &cobra.Command{
		Use:   "send HOST[:PORT]",
		Short: "Send the datagram that asks HOST to open a door or ports for this address",
		Long: "send seals a request with this client's key (--key, or --psk) to the server's public key\n" +
			"(--server-key, a line or a file holding it) and sends it as one UDP datagram to HOST (port\n" +
			strconv.Itoa(config.DefaultSPAPort) + " unless given). Nothing answers: the port stays closed. The door opens\n" +
			"for the packet's source address unless --addr names another (the server must allow it).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (door == "") == (len(ports) == 0) {
				return usageError{errors.New("spa send: ask for --door NAME or --port PROTO/PORT (one of them)")}
			}
			req := spa.Request{Door: door}
			for _, p := range ports {
				sp, err := spa.ParsePort(p)
				if err != nil {
					return usageError{fmt.Errorf("spa send: --port %q: %w", p, err)}
				}
				req.Ports = append(req.Ports, sp)
			}
			if forDur != "" {
				d, err := time.ParseDuration(forDur)
				if err != nil || d < time.Second {
					return usageError{fmt.Errorf("spa send: --for %q: want a duration like 10m", forDur)}
				}
				req.Duration = d
			}
			if addr != "" {
				ad, err := netip.ParseAddr(addr)
				if err != nil {
					return usageError{fmt.Errorf("spa send: --addr: %w", err)}
				}
				req.Addr = ad
			}
			var datagram []byte
			switch {
			case pskFile != "":
				b, err := os.ReadFile(pskFile)
				if err != nil {
					return fmt.Errorf("spa send: %w", err)
				}
				k, err := spa.ParsePSK(string(b))
				if err != nil {
					return fmt.Errorf("spa send: %s: %w", pskFile, err)
				}
				if datagram, err = spa.SealPSK(req, k, time.Now(), rand.Reader); err != nil {
					return fmt.Errorf("spa send: %w", err)
				}
			case keyFile != "" && serverKey != "":
				b, err := os.ReadFile(keyFile)
				if err != nil {
					return fmt.Errorf("spa send: %w", err)
				}
				priv, err := spa.ParsePrivateKey(string(b))
				if err != nil {
					return fmt.Errorf("spa send: %s: %w", keyFile, err)
				}
				line := serverKey
				if b, err := os.ReadFile(serverKey); err == nil {
					line = string(b)
				}
				pub, err := spa.ParsePublicKey(strings.TrimSpace(line))
				if err != nil {
					return fmt.Errorf("spa send: --server-key: %w", err)
				}
				if datagram, err = spa.Seal(req, pub, priv, time.Now(), rand.Reader); err != nil {
					return fmt.Errorf("spa send: %w", err)
				}
			default:
				return usageError{errors.New("spa send: give --key FILE and --server-key, or --psk FILE")}
			}
			target := args[0]
			if _, _, err := net.SplitHostPort(target); err != nil {
				target = net.JoinHostPort(strings.Trim(target, "[]"), strconv.Itoa(config.DefaultSPAPort))
			}
			conn, err := net.Dial("udp", target)
			if err != nil {
				return fmt.Errorf("spa send: %w", err)
			}
			defer conn.Close()
			if _, err := conn.Write(datagram); err != nil {
				return fmt.Errorf("spa send: %w", err)
			}
			if save != "" {
				if err := os.WriteFile(save, datagram, 0o600); err != nil {
					return fmt.Errorf("spa send: --save: %w", err)
				}
			}
			fmt.Fprintf(a.errw, "sent %d bytes to %s\n", len(datagram), conn.RemoteAddr())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&keyFile, "key", "", "this client's private key `FILE` (moat spa keygen)")
	f.StringVar(&pskFile, "psk", "", "a pre-shared key `FILE` instead of --key and --server-key")
	f.StringVar(&serverKey, "server-key", "", "the server's public key line, or a `FILE` holding it")
	f.StringVar(&door, "door", "", "the door to open, by `NAME`")
	f.StringArrayVar(&ports, "port", nil, "a port to open, `PROTO/PORT` (repeatable)")
	f.StringVar(&forDur, "for", "", "how long (`DURATION`); default: the most the server allows")
	f.StringVar(&addr, "addr", "", "open for this `ADDRESS` instead of the packet's source (NAT)")
	f.StringVar(&save, "save", "", "also write the datagram to `FILE` (tests, debugging)")
	return cmd
}

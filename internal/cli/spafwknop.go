package cli

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/netip"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/moat-fw/moat/internal/fwknop"
)

// fwknopKeyFlags are the fwknop client's key options, spelled as it spells
// them, so a command line or a ~/.fwknoprc stanza carries over: with
// --fwknop, `moat spa send` speaks fwknop's wire format (Rijndael +
// HMAC-SHA256) to a real fwknopd.
type fwknopKeyFlags struct {
	on                       bool
	keyB64, hmacB64          string
	keyText, hmacText, spoof string
}

func (f *fwknopKeyFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.BoolVar(&f.on, "fwknop", false, "send a fwknop-format packet (to a fwknopd server, or a moat [[spa.fwknop]] entry)")
	fl.StringVar(&f.keyB64, "key-base64-rijndael", "", "with --fwknop: the Rijndael key in `BASE64` (fwknopd's KEY_BASE64)")
	fl.StringVar(&f.hmacB64, "key-base64-hmac", "", "with --fwknop: the HMAC key in `BASE64` (fwknopd's HMAC_KEY_BASE64)")
	fl.StringVar(&f.keyText, "key-rijndael", "", "with --fwknop: the Rijndael key as a `PASSPHRASE` (fwknopd's KEY)")
	fl.StringVar(&f.hmacText, "key-hmac", "", "with --fwknop: the HMAC key as a `PASSPHRASE` (fwknopd's HMAC_KEY)")
	fl.StringVar(&f.spoof, "spoof-user", "", "with --fwknop: the user name in the packet (`USER`; default: this user), for REQUIRE_USERNAME")
}

// keys decodes the key options; each of the two keys is given once.
func (f *fwknopKeyFlags) keys() (fwknop.Keys, error) {
	one := func(what, b64Flag, b64Val, textFlag, textVal string) ([]byte, error) {
		switch {
		case b64Val != "" && textVal != "":
			return nil, fmt.Errorf("--%s and --%s exclude each other", b64Flag, textFlag)
		case textVal != "":
			return []byte(textVal), nil
		case b64Val != "":
			b, err := base64.StdEncoding.DecodeString(b64Val)
			if err != nil {
				return nil, fmt.Errorf("--%s: %w", b64Flag, err)
			}
			return b, nil
		}
		return nil, fmt.Errorf("the %s key is missing: give --%s or --%s (fwknopd refuses packets without HMAC in this mode)", what, b64Flag, textFlag)
	}
	enc, err := one("Rijndael", "key-base64-rijndael", f.keyB64, "key-rijndael", f.keyText)
	if err != nil {
		return fwknop.Keys{}, err
	}
	mac, err := one("HMAC", "key-base64-hmac", f.hmacB64, "key-hmac", f.hmacText)
	if err != nil {
		return fwknop.Keys{}, err
	}
	return fwknop.Keys{Enc: enc, HMAC: mac}, nil
}

// sealFwknop builds the fwknop packet for `fwknop -A PORTS -a ADDR [-f S]`:
// --port (repeatable or comma separated) is -A, --addr is -a (0.0.0.0 is
// fwknop's -s: the server opens for the packet's source) and defaults to
// the address the datagram leaves from, --for is -f.
func (f *spaFlags) sealFwknop(cmdName string, local netip.Addr) ([]byte, error) {
	if f.keyFile != "" || f.pskFile != "" || f.serverKey != "" || f.door != "" {
		return nil, usageError{fmt.Errorf("%s: --fwknop takes the fwknop key options, and --port, not --key, --psk, --server-key or --door", cmdName)}
	}
	keys, err := f.fwknop.keys()
	if err != nil {
		return nil, usageError{fmt.Errorf("%s: %w", cmdName, err)}
	}
	var ports []fwknop.Port
	for _, arg := range f.ports {
		for _, s := range strings.Split(arg, ",") {
			p, ok := fwknop.ParsePort(strings.TrimSpace(s))
			if !ok {
				return nil, usageError{fmt.Errorf("%s: --port %q: want PROTO/PORT like tcp/22", cmdName, s)}
			}
			ports = append(ports, p)
		}
	}
	if len(ports) == 0 {
		return nil, usageError{fmt.Errorf("%s: --fwknop needs --port PROTO/PORT (fwknop's -A)", cmdName)}
	}
	allow := local
	if f.addr != "" {
		if allow, err = netip.ParseAddr(f.addr); err != nil {
			return nil, usageError{fmt.Errorf("%s: --addr: %w", cmdName, err)}
		}
	}
	if !allow.Unmap().Is4() {
		return nil, usageError{fmt.Errorf("%s: --fwknop: fwknop's format carries IPv4 addresses only; %v is not one (give --addr)", cmdName, allow)}
	}
	timeout := 0
	if f.forDur != "" {
		d, err := time.ParseDuration(f.forDur)
		if err != nil || d < time.Second {
			return nil, usageError{fmt.Errorf("%s: --for %q: want a duration like 10m", cmdName, f.forDur)}
		}
		timeout = int(d / time.Second)
	}
	name := f.fwknop.spoof
	if name == "" {
		name = currentUser()
	}
	m := fwknop.Access(name, allow.Unmap().String(), ports, timeout, time.Now().Unix())
	p, err := fwknop.Encode(m, keys, rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cmdName, err)
	}
	return p, nil
}

// currentUser is the name the fwknop client would put in the packet.
func currentUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	if n := os.Getenv("USER"); n != "" {
		return n
	}
	return "moat"
}

package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moat-fw/moat/internal/spa"
)

// SPA configures single packet authorization (the [spa] table and its
// [[spa.client]] entries): one sealed UDP datagram to a closed port opens
// a door or ports for its sender. Off until a client is configured.
type SPA struct {
	Ports   []PortSpec    // ports: UDP ports the datagrams go to (fwknop's 62201 by default)
	KeyFile string        // key_file: the server's private key (moat spa keygen); needed by clients with a key
	Window  time.Duration // window: how far a datagram's timestamp may be from now
	Clients []SPAClient   // client: who may ask for what
	Fwknop  []SPAFwknop   // fwknop: fwknop clients, one entry per access.conf stanza
}

// SPAFwknop is one [[spa.fwknop]]: fwknop's access.conf stanza concepts,
// for the real fwknop clients in Rijndael + HMAC-SHA256 mode.
type SPAFwknop struct {
	Name                 string         // name: in logs, events and grants
	Sources              []netip.Prefix // source: SOURCE; ["any"] is ANY (stored as nil)
	OpenPorts            []PortSpec     // open_ports: OPEN_PORTS
	KeyBase64            string         // key_base64: KEY_BASE64; or
	KeyFile              string         // key_file: a file holding it
	HMACKeyBase64        string         // hmac_key_base64: HMAC_KEY_BASE64; or
	HMACKeyFile          string         // hmac_key_file: a file holding it
	MaxDuration          time.Duration  // max_duration: FW_ACCESS_TIMEOUT, and the cap on the client's -f
	RequireSourceAddress bool           // require_source_address: the packet's allow IP must be its source
	RequireUsername      string         // require_username: REQUIRE_USERNAME
}

// DefaultFwknopTimeout is fwknopd's FW_ACCESS_TIMEOUT default.
const DefaultFwknopTimeout = 30 * time.Second

// SPAClient is one [[spa.client]].
type SPAClient struct {
	Name          string         // name: in logs, events and grants
	Key           string         // key: the client's public key line ("moat-spa-x25519 ..."); or
	PSKFile       string         // psk_file: a file holding a pre-shared key (moat spa keygen --psk)
	Doors         []string       // doors: [[door]] names the client may open
	Ports         []PortSpec     // ports: ports the client may open directly
	MaxDuration   time.Duration  // max_duration: the longest grant (and what a request of 0 gets)
	Sources       []netip.Prefix // sources: where its datagrams may come from; empty: anywhere
	Embed         bool           // embed: the datagram may name another address to open for (NAT)
	RequireHybrid bool           // require_hybrid: refuse the X25519-only suite (post-quantum only)
}

// DefaultSPAPort is fwknop's port, so its clients need no flag.
const DefaultSPAPort = 62201

func defaultSPA() SPA {
	return SPA{Ports: []PortSpec{{Proto: UDP, From: DefaultSPAPort, To: DefaultSPAPort}}, Window: time.Minute}
}

var spaKeys = []key{
	{"ports", func(d *decoder, p string, v any) {
		d.portList(p, v, `a list like ["udp/62201"]`, portForms, false, &d.cfg.SPA.Ports)
	}},
	{"key_file", func(d *decoder, p string, v any) { d.absPath(p, v, &d.cfg.SPA.KeyFile) }},
	{"window", func(d *decoder, p string, v any) { d.duration(p, v, &d.cfg.SPA.Window) }},
	{"client", func(d *decoder, p string, v any) {
		d.cfg.SPA.Clients = nil
		d.tables(p, v, spaClientKeys, func() { d.cfg.SPA.Clients = append(d.cfg.SPA.Clients, SPAClient{MaxDuration: time.Hour}) })
	}},
	{"fwknop", func(d *decoder, p string, v any) {
		d.cfg.SPA.Fwknop = nil
		d.tables(p, v, spaFwknopKeys, func() { d.cfg.SPA.Fwknop = append(d.cfg.SPA.Fwknop, SPAFwknop{MaxDuration: DefaultFwknopTimeout}) })
	}},
}

func (d *decoder) lastFwknop() *SPAFwknop { return &d.cfg.SPA.Fwknop[len(d.cfg.SPA.Fwknop)-1] }

var spaFwknopKeys = []key{
	{"name", func(d *decoder, p string, v any) { d.str(p, v, &d.lastFwknop().Name) }},
	{"source", func(d *decoder, p string, v any) {
		// fwknop's SOURCE ANY is "any" here; it must be alone.
		if l, ok := v.([]any); ok && len(l) == 1 {
			if s, ok := l[0].(string); ok && strings.EqualFold(s, "any") {
				d.lastFwknop().Sources = nil
				return
			}
		}
		d.prefixes(p, v, &d.lastFwknop().Sources)
	}},
	{"open_ports", func(d *decoder, p string, v any) {
		d.portList(p, v, `a list like ["tcp/22"]`, portForms, true, &d.lastFwknop().OpenPorts)
	}},
	{"key_base64", func(d *decoder, p string, v any) { d.str(p, v, &d.lastFwknop().KeyBase64) }},
	{"key_file", func(d *decoder, p string, v any) { d.absPath(p, v, &d.lastFwknop().KeyFile) }},
	{"hmac_key_base64", func(d *decoder, p string, v any) { d.str(p, v, &d.lastFwknop().HMACKeyBase64) }},
	{"hmac_key_file", func(d *decoder, p string, v any) { d.absPath(p, v, &d.lastFwknop().HMACKeyFile) }},
	{"max_duration", func(d *decoder, p string, v any) { d.duration(p, v, &d.lastFwknop().MaxDuration) }},
	{"require_source_address", func(d *decoder, p string, v any) { d.bool(p, v, &d.lastFwknop().RequireSourceAddress) }},
	{"require_username", func(d *decoder, p string, v any) { d.str(p, v, &d.lastFwknop().RequireUsername) }},
}

// FwknopKey decodes a KEY_BASE64 or HMAC_KEY_BASE64 value (padded or not,
// as fwknop --key-gen prints it, or as read from a key file).
func FwknopKey(s string) ([]byte, error) {
	s = strings.TrimRight(strings.TrimSpace(s), "=")
	b, err := base64.RawStdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("not base64: %w", err)
	}
	if len(b) == 0 {
		return nil, errors.New("empty key")
	}
	return b, nil
}

func (d *decoder) lastSPAClient() *SPAClient { return &d.cfg.SPA.Clients[len(d.cfg.SPA.Clients)-1] }

var spaClientKeys = []key{
	{"name", func(d *decoder, p string, v any) { d.str(p, v, &d.lastSPAClient().Name) }},
	{"key", func(d *decoder, p string, v any) { d.str(p, v, &d.lastSPAClient().Key) }},
	{"psk_file", func(d *decoder, p string, v any) { d.absPath(p, v, &d.lastSPAClient().PSKFile) }},
	{"doors", func(d *decoder, p string, v any) { d.names(p, v, &d.lastSPAClient().Doors) }},
	{"ports", func(d *decoder, p string, v any) {
		d.portList(p, v, `a list like ["tcp/22"]`, portForms, true, &d.lastSPAClient().Ports)
	}},
	{"max_duration", func(d *decoder, p string, v any) { d.duration(p, v, &d.lastSPAClient().MaxDuration) }},
	{"sources", func(d *decoder, p string, v any) { d.prefixes(p, v, &d.lastSPAClient().Sources) }},
	{"embed", func(d *decoder, p string, v any) { d.bool(p, v, &d.lastSPAClient().Embed) }},
	{"require_hybrid", func(d *decoder, p string, v any) { d.bool(p, v, &d.lastSPAClient().RequireHybrid) }},
}

// Enabled reports whether SPA runs: it needs a client or an fwknop entry.
func (s SPA) Enabled() bool { return len(s.Clients) > 0 || len(s.Fwknop) > 0 }

func (c *Config) spaProblems() []problem {
	var out []problem
	bad := func(path, value, format string, args ...any) {
		out = append(out, problem{path: path, value: value, msg: fmt.Sprintf(format, args...)})
	}
	q := strconv.Quote
	s := c.SPA
	if s.Window < 5*time.Second || s.Window > time.Hour {
		bad("spa.window", q(s.Window.String()), "want between 5s and 1h (clocks must agree this closely; a replay is possible only within it)")
	}
	for i, p := range s.Ports {
		pp := joinIndex("spa.ports", i)
		if p.Proto != UDP {
			bad(pp, q(p.String()), "want a udp port: an SPA packet is one UDP datagram")
		}
		for _, o := range c.Firewall.Open {
			if o.Proto == p.Proto && o.From <= p.To && p.From <= o.To {
				bad(pp, q(p.String()), "is in [firewall] open (%s): an SPA port must stay closed, or it is answered and stands out", o)
			}
		}
	}
	if !s.Enabled() {
		return out
	}
	if len(s.Ports) == 0 {
		bad("spa.ports", "[]", "want at least one port when [[spa.client]] or [[spa.fwknop]] entries exist")
	}
	out = append(out, c.fwknopProblems()...)
	doors := map[string]bool{}
	for _, dr := range c.Doors {
		doors[dr.Name] = true
	}
	names := map[string]bool{}
	needKey := false
	for i, cl := range s.Clients {
		p := joinIndex("spa.client", i)
		switch {
		case cl.Name == "":
			bad(joinKey(p, "name"), "", "every client needs a name, shown in its grants and logs")
		case names[cl.Name]:
			bad(joinKey(p, "name"), q(cl.Name), "another [[spa.client]] has this name")
		}
		names[cl.Name] = true
		switch {
		case cl.Key != "" && cl.PSKFile != "":
			bad(joinKey(p, "psk_file"), q(cl.PSKFile), "a client has a key or a psk_file, not both")
		case cl.Key == "" && cl.PSKFile == "":
			bad(joinKey(p, "key"), "", `want the client's public key line (moat spa keygen prints it), or psk_file`)
		case cl.Key != "":
			needKey = true
			if _, err := spa.ParsePublicKey(cl.Key); err != nil {
				bad(joinKey(p, "key"), q(cl.Key), "%v", err)
			}
		}
		if len(cl.Doors) == 0 && len(cl.Ports) == 0 {
			bad(joinKey(p, "doors"), "[]", "the client may open nothing: give it doors or ports")
		}
		for j, dn := range cl.Doors {
			if !doors[dn] {
				bad(joinIndex(joinKey(p, "doors"), j), q(dn), "no [[door]] has this name")
			}
		}
		for j, port := range cl.Ports {
			if port.SSH {
				continue
			}
			if slices.ContainsFunc(s.Ports, func(sp PortSpec) bool { return sp.Proto == port.Proto && sp.From <= port.To && port.From <= sp.To }) {
				bad(joinIndex(joinKey(p, "ports"), j), q(port.String()), "is an SPA port itself")
			}
		}
		if cl.MaxDuration < time.Second || cl.MaxDuration > 24*time.Hour {
			bad(joinKey(p, "max_duration"), q(cl.MaxDuration.String()), "want between 1s and 24h")
		}
	}
	if needKey && s.KeyFile == "" {
		bad("spa.key_file", "", `want the server's private key file (moat spa keygen --out /etc/moat/spa.key) for clients with a key`)
	}
	return out
}

func (c *Config) fwknopProblems() []problem {
	var out []problem
	bad := func(path, value, format string, args ...any) {
		out = append(out, problem{path: path, value: value, msg: fmt.Sprintf(format, args...)})
	}
	q := strconv.Quote
	names := map[string]bool{}
	for _, cl := range c.SPA.Clients {
		names[cl.Name] = true
	}
	for i, f := range c.SPA.Fwknop {
		p := joinIndex("spa.fwknop", i)
		key := func(k string) string { return joinKey(p, k) }
		switch {
		case f.Name == "":
			bad(key("name"), "", "every entry needs a name, shown in its grants and logs")
		case names[f.Name]:
			bad(key("name"), q(f.Name), "another [[spa.client]] or [[spa.fwknop]] has this name")
		}
		names[f.Name] = true
		keyPair := func(inline, file, inlineKey, fileKey, what string) {
			switch {
			case inline != "" && file != "":
				bad(key(fileKey), q(file), "give %s or %s, not both", inlineKey, fileKey)
			case inline == "" && file == "" && fileKey == "hmac_key_file":
				bad(key("hmac_key_base64"), "", "moat takes fwknop packets only with HMAC (fwknop --use-hmac, HMAC_KEY_BASE64): without it a forged or altered packet is decrypted and parsed unauthenticated; run fwknop --key-gen and give the client --use-hmac")
			case inline == "" && file == "":
				bad(key(inlineKey), "", "want the stanza's %s (fwknop --key-gen prints it), or %s; GPG stanzas are not supported", what, fileKey)
			case inline != "":
				if _, err := FwknopKey(inline); err != nil {
					bad(key(inlineKey), q(inline), "%v", err)
				}
			}
		}
		keyPair(f.KeyBase64, f.KeyFile, "key_base64", "key_file", "KEY_BASE64")
		keyPair(f.HMACKeyBase64, f.HMACKeyFile, "hmac_key_base64", "hmac_key_file", "HMAC_KEY_BASE64")
		if len(f.OpenPorts) == 0 {
			bad(key("open_ports"), "[]", "the entry opens nothing: give it OPEN_PORTS, like [\"tcp/22\"]")
		}
		for j, port := range f.OpenPorts {
			if port.SSH {
				continue
			}
			if slices.ContainsFunc(c.SPA.Ports, func(sp PortSpec) bool { return sp.Proto == port.Proto && sp.From <= port.To && port.From <= sp.To }) {
				bad(joinIndex(key("open_ports"), j), q(port.String()), "is an SPA port itself")
			}
		}
		if f.MaxDuration < time.Second || f.MaxDuration > 24*time.Hour {
			bad(key("max_duration"), q(f.MaxDuration.String()), "want between 1s and 24h")
		}
	}
	return out
}

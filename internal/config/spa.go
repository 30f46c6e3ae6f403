package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
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
}

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

// Enabled reports whether SPA runs: it needs a client.
func (s SPA) Enabled() bool { return len(s.Clients) > 0 }

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
		bad("spa.ports", "[]", "want at least one port when [[spa.client]] entries exist")
	}
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

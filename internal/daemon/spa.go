package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/fwknop"
	"github.com/moat-fw/moat/internal/latency"
	"github.com/moat-fw/moat/internal/nflog"
	"github.com/moat-fw/moat/internal/packet"
	"github.com/moat-fw/moat/internal/spa"
	"github.com/moat-fw/moat/internal/store"
)

// metaSPAReplay is the store key of the SPA replay cache, saved right after
// every accepted datagram's grant, so a datagram accepted before a restart
// is still refused as a replay after it. The save (a store commit, an
// fsync: milliseconds) comes after the grant to keep it out of the
// datagram-to-grant time; a crash between the two could lose the record of
// a datagram, so a start after an unclean stop refuses every datagram
// stamped up to a window after the start (one window of refusals after a
// crash, never a replay).
const metaSPAReplay = "spa.replay"

// metaFwknopReplay is the same for fwknop packets: their digests.
const metaFwknopReplay = "spa.fwknop.replay"

// fwknopWindow is fwknopd's MAX_SPA_PACKET_AGE: fwknop clients are set up
// for it, so it is not [spa] window.
const fwknopWindow = 120 * time.Second

// SPAStatus is SPA's part of `moat status`.
type SPAStatus struct {
	Ports    []string          `json:"ports"`
	Clients  int               `json:"clients"`
	Fwknop   int               `json:"fwknop"` // [[spa.fwknop]] entries
	Accepted uint64            `json:"accepted"`
	Refused  map[string]uint64 `json:"refused"` // by reason
	// GrantLatency is datagram to grant in the kernel (package latency).
	GrantLatency *latency.Summary `json:"grant_latency,omitempty"`
	// ReadLatency is the part of GrantLatency before moat read the
	// datagram from the kernel.
	ReadLatency *latency.Summary `json:"read_latency,omitempty"`
}

// spaEngine verifies SPA datagrams (internal/spa) and opens what they ask
// for through the grant sets, recorded in the grant book like a door's.
type spaEngine struct {
	log   *slog.Logger
	fw    *firewall.Applier
	book  *grantBook
	st    *store.Store
	ports []string
	doors map[string]config.Door

	lat *grantLatency // the daemon's, set after construction; nil: not timed

	mu       sync.Mutex // the verifier serializes; this guards the rest
	v        *spa.Verifier
	fk       *fwknop.Verifier // nil without [[spa.fwknop]]
	fwknopN  int
	clients  int
	accepted uint64
	refused  map[string]uint64
	logs     logLimiter
}

// newSPAEngine builds the verifier for cfg, carrying the replay cache over
// from prev (a reload) or from the store (a start; unclean: the last run
// did not stop cleanly). nil when SPA is off.
func newSPAEngine(log *slog.Logger, fw *firewall.Applier, book *grantBook, st *store.Store, cfg *config.Config, sshPorts []uint16, prev *spaEngine, now time.Time, unclean bool) (*spaEngine, error) {
	if !cfg.SPA.Enabled() {
		return nil, nil
	}
	var server *spa.PrivateKey
	if cfg.SPA.KeyFile != "" {
		b, err := os.ReadFile(cfg.SPA.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("spa.key_file: %w", err)
		}
		if server, err = spa.ParsePrivateKey(string(b)); err != nil {
			return nil, fmt.Errorf("spa.key_file %s: %w", cfg.SPA.KeyFile, err)
		}
	}
	var clients []spa.Client
	for _, c := range cfg.SPA.Clients {
		sc := spa.Client{Name: c.Name, Doors: c.Doors, MaxDuration: c.MaxDuration, Sources: c.Sources, Embed: c.Embed, RequireHybrid: c.RequireHybrid}
		var err error
		if c.Key != "" {
			if sc.Key, err = spa.ParsePublicKey(c.Key); err != nil {
				return nil, fmt.Errorf("spa client %q: key: %w", c.Name, err)
			}
		} else {
			b, rerr := os.ReadFile(c.PSKFile)
			if rerr != nil {
				return nil, fmt.Errorf("spa client %q: psk_file: %w", c.Name, rerr)
			}
			if sc.PSK, err = spa.ParsePSK(string(b)); err != nil {
				return nil, fmt.Errorf("spa client %q: psk_file %s: %w", c.Name, c.PSKFile, err)
			}
		}
		for _, p := range config.ResolveSSH(c.Ports, sshPorts) {
			for port := int(p.From); port <= int(p.To); port++ {
				sc.Ports = append(sc.Ports, spa.Port{Proto: spa.Proto(p.Proto), Port: uint16(port)})
			}
		}
		clients = append(clients, sc)
	}
	v, err := spa.NewVerifier(server, clients, spa.Options{Window: cfg.SPA.Window})
	if err != nil {
		return nil, fmt.Errorf("spa: %w", err)
	}
	fk, err := newFwknop(cfg, sshPorts)
	if err != nil {
		return nil, err
	}
	e := &spaEngine{fk: fk, fwknopN: len(cfg.SPA.Fwknop), log: log, fw: fw, book: book, st: st, v: v, clients: len(clients), doors: map[string]config.Door{},
		refused: map[string]uint64{}, logs: logLimiter{every: time.Second / 5}}
	for _, p := range cfg.SPA.Ports {
		e.ports = append(e.ports, p.String())
	}
	for _, dr := range cfg.Doors {
		e.doors[dr.Name] = dr
	}
	var snap []byte
	if prev != nil {
		prev.mu.Lock()
		snap = prev.v.AppendSnapshot(nil, now)
		e.accepted, e.refused = prev.accepted, prev.refused
		prev.mu.Unlock()
	} else if snap, err = st.Meta(metaSPAReplay); err != nil {
		log.Warn("SPA replay cache unreadable; datagrams sent in the last window are refused", "err", err)
		v.RefuseUntil(now.Add(cfg.SPA.Window))
	}
	if len(snap) > 0 {
		if err := v.LoadSnapshot(snap, now); err != nil {
			log.Warn("SPA replay cache damaged; datagrams sent in the last window are refused", "err", err)
			v.RefuseUntil(now.Add(cfg.SPA.Window))
		}
	}
	if unclean && prev == nil {
		log.Warn("moat did not stop cleanly: SPA refuses datagrams for one window, in case one accepted just before was not recorded", "window", cfg.SPA.Window)
		v.RefuseUntil(now.Add(cfg.SPA.Window))
	}
	if fk != nil {
		var fsnap []byte
		if prev != nil && prev.fk != nil {
			prev.mu.Lock()
			fsnap = prev.fk.AppendSnapshot(nil, now)
			prev.mu.Unlock()
		} else if prev == nil {
			if fsnap, err = st.Meta(metaFwknopReplay); err != nil {
				log.Warn("fwknop replay cache unreadable; packets sent in the last 120s are refused", "err", err)
				fk.RefuseUntil(now.Add(fwknopWindow))
			}
		}
		if len(fsnap) > 0 {
			if err := fk.LoadSnapshot(fsnap, now); err != nil {
				log.Warn("fwknop replay cache damaged; packets sent in the last 120s are refused", "err", err)
				fk.RefuseUntil(now.Add(fwknopWindow))
			}
		}
		if unclean && prev == nil {
			fk.RefuseUntil(now.Add(fwknopWindow))
		}
	}
	return e, nil
}

// newFwknop builds the fwknop verifier from [[spa.fwknop]], reading the
// key files. nil without entries.
func newFwknop(cfg *config.Config, sshPorts []uint16) (*fwknop.Verifier, error) {
	if len(cfg.SPA.Fwknop) == 0 {
		return nil, nil
	}
	key := func(name, what, inline, file string) ([]byte, error) {
		if file != "" {
			b, err := os.ReadFile(file)
			if err != nil {
				return nil, fmt.Errorf("spa fwknop %q: %s: %w", name, what, err)
			}
			inline = string(b)
		}
		k, err := config.FwknopKey(inline)
		if err != nil {
			return nil, fmt.Errorf("spa fwknop %q: %s: %w", name, what, err)
		}
		return k, nil
	}
	var stanzas []fwknop.Stanza
	for _, f := range cfg.SPA.Fwknop {
		s := fwknop.Stanza{Name: f.Name, Sources: f.Sources, MaxDuration: f.MaxDuration,
			RequireSourceAddress: f.RequireSourceAddress, RequireUsername: f.RequireUsername}
		var err error
		if s.Keys.Enc, err = key(f.Name, "key", f.KeyBase64, f.KeyFile); err != nil {
			return nil, err
		}
		if s.Keys.HMAC, err = key(f.Name, "hmac key", f.HMACKeyBase64, f.HMACKeyFile); err != nil {
			return nil, err
		}
		for _, p := range config.ResolveSSH(f.OpenPorts, sshPorts) {
			for port := int(p.From); port <= int(p.To); port++ {
				s.Ports = append(s.Ports, fwknop.Port{Proto: uint8(p.Proto), Port: uint16(port)})
			}
		}
		stanzas = append(stanzas, s)
	}
	fk, err := fwknop.NewVerifier(stanzas, fwknop.Options{Window: fwknopWindow})
	if err != nil {
		return nil, fmt.Errorf("spa: %w", err)
	}
	return fk, nil
}

// packet verifies one logged datagram and opens what it asks for.
func (e *spaEngine) packet(m *nflog.Message, p *packet.Packet, now time.Time) {
	if e == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	payload, ok := udpPayload(m.Payload, p)
	if !ok {
		e.refuse(p.Src, "", "truncated", now)
		return
	}
	if e.fk != nil && fwknop.Plausible(payload) {
		e.fwknopPacket(payload, p.Src, now, m.Timestamp)
		return
	}
	g, err := e.v.Verify(payload, p.Src, now)
	if err != nil {
		label := err.Error()
		var r spa.Reason
		if errors.As(err, &r) {
			label = r.String() // the stable label, for status and metrics
		}
		e.refuse(p.Src, g.Client, label, now)
		return
	}
	var grants []firewall.Grant
	var ports []store.GrantPort
	name := "spa/" + g.Client + "/"
	if g.Door != "" {
		dr := e.doors[g.Door]
		grants = grantsFor(dr, g.Addr, false)
		ports = doorPorts(dr)
		name += g.Door
	} else {
		for _, sp := range g.Ports {
			grants = append(grants, firewall.Grant{Addr: g.Addr, Proto: uint8(sp.Proto), Port: sp.Port})
			ports = append(ports, store.GrantPort{Proto: uint8(sp.Proto), From: sp.Port, To: sp.Port})
		}
		name += "ports"
	}
	for i := range grants {
		grants[i].Timeout = g.Duration
	}
	err = e.fw.UpdateGrants(nil, grants)
	if err == nil {
		e.lat.since(m.Timestamp, now)
	}
	// Spent whether or not the grant took (see metaSPAReplay).
	if serr := e.st.SetMeta(metaSPAReplay, e.v.AppendSnapshot(nil, now)); serr != nil {
		e.log.Error("SPA replay cache not saved; a restart within the window would accept this datagram again", "err", serr)
	}
	if err != nil {
		e.log.Error("SPA grant could not open", "client", g.Client, "addr", g.Addr, "err", err)
		return
	}
	e.accepted++
	why := "SPA datagram from client " + g.Client
	if g.Embedded {
		why += fmt.Sprintf(" (sent from %s for this address)", p.Src)
	}
	e.book.opened(store.Grant{Door: name, Addr: g.Addr, Ports: ports, Opened: now, Expires: now.Add(g.Duration), SPA: g.Client}, why, now)
}

// fwknopPacket verifies an fwknop packet; a forged one costs at most one
// HMAC per [[spa.fwknop]] entry that takes its source.
func (e *spaEngine) fwknopPacket(payload []byte, src netip.Addr, now, at time.Time) {
	g, err := e.fk.Verify(payload, src, now)
	if err != nil {
		label := err.Error()
		var r fwknop.Reason
		if errors.As(err, &r) {
			label = r.String()
		}
		e.refuse(src, g.Stanza, label, now)
		return
	}
	var grants []firewall.Grant
	var ports []store.GrantPort
	for _, fp := range g.Ports {
		grants = append(grants, firewall.Grant{Addr: g.Addr, Proto: fp.Proto, Port: fp.Port, Timeout: g.Duration})
		ports = append(ports, store.GrantPort{Proto: fp.Proto, From: fp.Port, To: fp.Port})
	}
	err = e.fw.UpdateGrants(nil, grants)
	if err == nil {
		e.lat.since(at, now)
	}
	// Spent whether or not the grant took, after it as moat's datagrams
	// (see metaSPAReplay; a start after a crash refuses fwknop packets for
	// their window too).
	if serr := e.st.SetMeta(metaFwknopReplay, e.fk.AppendSnapshot(nil, now)); serr != nil {
		e.log.Error("fwknop replay cache not saved; a restart within 120s would accept this packet again", "err", serr)
	}
	if err != nil {
		e.log.Error("fwknop grant could not open", "stanza", g.Stanza, "addr", g.Addr, "err", err)
		return
	}
	e.accepted++
	why := fmt.Sprintf("fwknop packet for stanza %s (user %q)", g.Stanza, g.User)
	if g.Embedded {
		why += fmt.Sprintf(" (sent from %s for this address)", src)
	}
	e.book.opened(store.Grant{Door: "fwknop/" + g.Stanza + "/ports", Addr: g.Addr, Ports: ports, Opened: now, Expires: now.Add(g.Duration), SPA: g.Stanza}, why, now)
}

func (e *spaEngine) refuse(src netip.Addr, client, reason string, now time.Time) {
	e.refused[reason]++
	if e.logs.allow(now) {
		e.log.Info("SPA datagram refused", "addr", src, "client", client, "reason", reason)
	}
}

func (e *spaEngine) status() *SPAStatus {
	if e == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	st := &SPAStatus{Ports: e.ports, Clients: e.clients, Fwknop: e.fwknopN, Accepted: e.accepted, Refused: map[string]uint64{}}
	for k, v := range e.refused {
		st.Refused[k] = v
	}
	st.GrantLatency, st.ReadLatency = e.lat.summary(), e.lat.readSummary()
	return st
}

// udpPayload is the UDP payload of a logged packet, when the copy holds
// all of it (the SPA rule's snaplen takes the largest datagram whole).
func udpPayload(b []byte, p *packet.Packet) ([]byte, bool) {
	if p.Proto != 17 || p.Fragment || p.MoreFragments {
		return nil, false
	}
	total := int(p.Length)
	if p.Family == 6 {
		total += 40
	}
	n := int(p.PayloadLen)
	if total != len(b) || n > len(b) {
		return nil, false
	}
	return b[len(b)-n:], true
}

// FirewallFor is cfg's [firewall] with what the ruleset needs of [spa]
// filled in; the error names SPA clients whose keys do not load (their
// datagrams stay in the kernel), and the rest is still good to install.
func FirewallFor(cfg *config.Config) (config.Firewall, error) {
	fw := cfg.Firewall
	fw.Blocklists = blocklistNames(cfg)
	if cfg.Scan.Enabled && cfg.Scan.BlockLevel > 0 {
		fw.ScanHold, fw.ScanHoldIgnore = cfg.Scan.Hold, cfg.Scan.Ignore
	}
	if !cfg.SPA.Enabled() {
		return fw, nil
	}
	fw.SPAPorts, fw.SPAFwknop = cfg.SPA.Ports, len(cfg.SPA.Fwknop) > 0
	var err error
	fw.SPAClientIDs, err = SPAClientIDs(cfg)
	return fw, err
}

// SPAClientIDs are the wire ids of cfg's SPA clients, for the ruleset, which
// hands moat only datagrams carrying one: keys come from the config,
// pre-shared keys from their files. A client whose key does not load has no
// id (its datagrams stay in the kernel); the error says which.
func SPAClientIDs(cfg *config.Config) ([][8]byte, error) {
	var ids [][8]byte
	var errs []error
	for _, c := range cfg.SPA.Clients {
		if c.Key != "" {
			k, err := spa.ParsePublicKey(c.Key)
			if err != nil {
				errs = append(errs, fmt.Errorf("spa client %q: key: %w", c.Name, err))
				continue
			}
			ids = append(ids, [8]byte(k.ID()))
			continue
		}
		b, err := os.ReadFile(c.PSKFile)
		if err == nil {
			var k *spa.PSK
			if k, err = spa.ParsePSK(string(b)); err == nil {
				ids = append(ids, [8]byte(k.ID()))
				continue
			}
		}
		errs = append(errs, fmt.Errorf("spa client %q: psk_file: %w", c.Name, err))
	}
	return ids, errors.Join(errs...)
}

package spa

import (
	"crypto/cipher"
	"crypto/hmac"
	"crypto/hpke"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"net/netip"
	"sync"
	"time"
)

// Reason says why a datagram was refused. It is the error Verify returns
// (errors.As finds it under a wrapped error too), and its String is a
// stable label for logs and metrics. A Reason fits in a byte, so returning
// one as an error allocates nothing.
type Reason uint8

// The reasons, in the order Verify checks them.
const (
	ReasonTooShort      Reason = iota + 1 // shorter than the smallest datagram of its suite
	ReasonTooLong                         // longer than MaxDatagram
	ReasonVersion                         // version byte is not 1
	ReasonSuite                           // suite byte is unknown, or the server has no key for it
	ReasonUnknownClient                   // no client has this id
	ReasonWrongSuite                      // the client's entry does not take this suite
	ReasonSource                          // the packet's source is outside the client's networks
	ReasonSeal                            // the MAC (or the PSK suite's AEAD tag) is wrong
	ReasonTooOld                          // timestamp more than the window in the past
	ReasonFuture                          // timestamp more than the window in the future
	ReasonStale                           // at or below a replay floor (see replayCache)
	ReasonReplay                          // nonce already seen within the window
	ReasonDecrypt                         // authentic, but HPKE would not open it
	ReasonMalformed                       // the sealed request does not parse
	ReasonEmbedded                        // asks for another address, and the client may not
	ReasonDoor                            // a door the client may not open
	ReasonPort                            // a port the client may not open
	ReasonDuration                        // longer than the client's maximum
	numReasons
)

var reasonText = [numReasons][2]string{
	ReasonTooShort:      {"too_short", "datagram too short"},
	ReasonTooLong:       {"too_long", "datagram too long"},
	ReasonVersion:       {"version", "unknown protocol version"},
	ReasonSuite:         {"suite", "unknown suite, or no server key for it"},
	ReasonUnknownClient: {"unknown_client", "unknown client id"},
	ReasonWrongSuite:    {"wrong_suite", "suite not allowed for this client"},
	ReasonSource:        {"source", "source address outside the client's networks"},
	ReasonSeal:          {"seal", "bad seal (wrong key or altered packet)"},
	ReasonTooOld:        {"too_old", "timestamp too old (check the client's clock)"},
	ReasonFuture:        {"future", "timestamp in the future (check the client's clock)"},
	ReasonStale:         {"stale", "older than the replay cache remembers"},
	ReasonReplay:        {"replay", "replayed packet"},
	ReasonDecrypt:       {"decrypt", "authentic but undecryptable (client has an old server key?)"},
	ReasonMalformed:     {"malformed", "malformed request"},
	ReasonEmbedded:      {"embedded_address", "asks for another address, not allowed for this client"},
	ReasonDoor:          {"door", "door not allowed for this client"},
	ReasonPort:          {"port", "port not allowed for this client"},
	ReasonDuration:      {"duration", "duration over the client's maximum"},
}

// String is the reason's stable label, like "replay".
func (r Reason) String() string {
	if r == 0 || r >= numReasons {
		return "unknown"
	}
	return reasonText[r][0]
}

func (r Reason) Error() string {
	if r == 0 || r >= numReasons {
		return "spa: refused"
	}
	return "spa: refused: " + reasonText[r][1]
}

// Reasons lists every reason, for metrics that want all labels up front.
func Reasons() []Reason {
	out := make([]Reason, 0, numReasons-1)
	for r := Reason(1); r < numReasons; r++ {
		out = append(out, r)
	}
	return out
}

// Client is one [[spa.client]] entry: who may ask for what.
type Client struct {
	Name string // for logs and events

	// Key is the client's X25519 public key (suites 1 and 2), or
	// PSK its pre-shared secret (suite 3): exactly one.
	Key *PublicKey
	PSK *PSK

	Doors       []string       // doors the client may open by name
	Ports       []Port         // ports the client may open directly
	MaxDuration time.Duration  // longest grant; also what a request of 0 gets
	Sources     []netip.Prefix // packets must come from (and embedded addresses lie in) one of these; empty: anywhere

	// Embed lets the request name the address to grant instead of the
	// packet's source, for a client behind a NAT it knows the outside of.
	Embed bool

	// RequireHybrid refuses the X25519-only suite from this client.
	RequireHybrid bool
}

// Options tune a Verifier; the zero value gives the defaults.
type Options struct {
	// Window is how far a timestamp may be from now, either way
	// (default 60s, whole seconds).
	Window time.Duration
	// ReplayPerClient bounds each client's replay entries (default 4096:
	// far more packets in two windows than anyone sends by hand).
	ReplayPerClient int
}

// Grant is what an accepted datagram asks for, within the client's rights.
type Grant struct {
	Client   string        // the client entry's Name; also set on most rejects, for logs
	Addr     netip.Addr    // the address to grant
	Door     string        // the door, or "" when Ports are asked for
	Ports    []Port        // the ports, when no Door
	Duration time.Duration // how long, already capped
	Embedded bool          // Addr came from the request, not the packet's source
	Sent     time.Time     // the client's timestamp
}

type client struct {
	Client
	id   ID
	mac  hash.Hash   // HMAC-SHA256 with the client MAC key (suites 1 and 2)
	aead cipher.AEAD // PSK suite
}

// Verifier checks datagrams for the server. It is safe for concurrent use
// but serializes callers: the daemon reads one NFLOG queue anyway.
type Verifier struct {
	mu      sync.Mutex
	x       hpke.PrivateKey // DHKEM(X25519); nil when only PSK clients
	hybrid  hpke.PrivateKey // MLKEM768-X25519; nil when the key has no ML-KEM part
	window  int64
	clients map[ID]*client
	replay  *replayCache
	gen     uint64
	mac     [sha256.Size]byte
	pt      [MaxDatagram]byte
}

// NewVerifier builds a verifier for a server key (nil if every client uses
// a PSK) and its clients. Each client's MAC key is derived here, once, so
// a packet costs one X25519 operation only after its MAC checked out.
func NewVerifier(server *PrivateKey, clients []Client, opt Options) (*Verifier, error) {
	if opt.Window == 0 {
		opt.Window = 60 * time.Second
	}
	if opt.Window < time.Second || opt.Window%time.Second != 0 {
		return nil, fmt.Errorf("spa: window %v: want whole seconds, at least 1s", opt.Window)
	}
	if opt.ReplayPerClient == 0 {
		opt.ReplayPerClient = 4096
	}
	if opt.ReplayPerClient < 1 {
		return nil, fmt.Errorf("spa: replay cache of %d entries per client: want at least 1", opt.ReplayPerClient)
	}
	v := &Verifier{
		window:  int64(opt.Window / time.Second),
		clients: make(map[ID]*client, len(clients)),
		replay:  newReplayCache(int64(opt.Window/time.Second), opt.ReplayPerClient),
	}
	if server != nil {
		var err error
		if v.x, err = hpke.NewDHKEMPrivateKey(server.x); err != nil {
			return nil, fmt.Errorf("spa: server key: %w", err)
		}
		if server.pq != nil {
			if v.hybrid, err = hpke.NewHybridPrivateKey(server.pq, server.x); err != nil {
				return nil, fmt.Errorf("spa: server hybrid key: %w", err)
			}
		}
	}
	names := map[string]bool{}
	for _, c := range clients {
		e := &client{Client: c}
		switch {
		case c.Name == "":
			return nil, errors.New("spa: a client has no name")
		case names[c.Name]:
			return nil, fmt.Errorf("spa: client %q: the name is used twice", c.Name)
		case (c.Key == nil) == (c.PSK == nil):
			return nil, fmt.Errorf("spa: client %q: give either a public key or a pre-shared secret", c.Name)
		case c.MaxDuration < time.Second:
			return nil, fmt.Errorf("spa: client %q: max duration %v: want at least 1s", c.Name, c.MaxDuration)
		case len(c.Doors) == 0 && len(c.Ports) == 0:
			return nil, fmt.Errorf("spa: client %q: may open no door and no port", c.Name)
		case c.PSK != nil && c.RequireHybrid:
			return nil, fmt.Errorf("spa: client %q: a pre-shared secret cannot require the hybrid suite", c.Name)
		}
		names[c.Name] = true
		if c.Key != nil {
			if server == nil {
				return nil, fmt.Errorf("spa: client %q has a public key, but the server has no key", c.Name)
			}
			if c.RequireHybrid && server.pq == nil {
				return nil, fmt.Errorf("spa: client %q requires the hybrid suite, but the server key has no ML-KEM part", c.Name)
			}
			e.id = c.Key.ID()
			serverPub := server.x.PublicKey().Bytes()
			mk, err := macKey(server.x, c.Key.x, c.Key.x.Bytes(), serverPub)
			if err != nil {
				return nil, fmt.Errorf("spa: client %q: %w", c.Name, err)
			}
			e.mac = hmac.New(sha256.New, mk)
		} else {
			e.id = c.PSK.id
			e.aead = c.PSK.aead()
		}
		if o, dup := v.clients[e.id]; dup {
			return nil, fmt.Errorf("spa: clients %q and %q have the same key", o.Name, c.Name)
		}
		v.clients[e.id] = e
	}
	return v, nil
}

// Verify checks one datagram that came from src at now, cheapest check
// first (docs/spa.md, "What the server checks"), and returns the grant or
// the Reason it was refused. A refused datagram allocates nothing unless
// it carried a valid seal. On a refusal from a known client, Grant.Client
// names it, for the log.
func (v *Verifier) Verify(d []byte, src netip.Addr, now time.Time) (Grant, error) {
	if len(d) < MinDatagram {
		return Grant{}, ReasonTooShort
	}
	if len(d) > MaxDatagram {
		return Grant{}, ReasonTooLong
	}
	if d[0] != Version {
		return Grant{}, ReasonVersion
	}
	suite := Suite(d[1])
	switch {
	case suite == SuiteX25519 && v.x != nil:
	case suite == SuiteHybrid && v.hybrid != nil:
	case suite == SuitePSK:
	default:
		return Grant{}, ReasonSuite
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	c := v.clients[ID(d[2:10])]
	if c == nil {
		return Grant{}, ReasonUnknownClient
	}
	g := Grant{Client: c.Name}
	if (suite == SuitePSK) != (c.PSK != nil) || (suite == SuiteX25519 && c.RequireHybrid) {
		return g, ReasonWrongSuite
	}
	src = src.Unmap()
	if !src.IsValid() || !inAny(c.Sources, src) {
		return g, ReasonSource
	}
	if len(d) < HeaderLen+envelope(suite)+minPlaintext {
		return g, ReasonTooShort
	}
	hdr := d[:HeaderLen]
	var pt []byte
	if suite == SuitePSK {
		var err error
		pt, err = c.aead.Open(v.pt[:0], d[HeaderLen-NonceLen:HeaderLen-NonceLen+12], d[HeaderLen:], hdr)
		if err != nil {
			return g, ReasonSeal
		}
	} else {
		body := len(d) - MACLen
		c.mac.Reset()
		c.mac.Write(d[:body])
		if !hmac.Equal(c.mac.Sum(v.mac[:0])[:MACLen], d[body:]) {
			return g, ReasonSeal
		}
	}
	ts := int64(binary.BigEndian.Uint64(d[2+IDLen:]))
	g.Sent = time.Unix(ts, 0)
	switch t := now.Unix(); {
	case ts < t-v.window:
		return g, ReasonTooOld
	case ts > t+v.window:
		return g, ReasonFuture
	}
	if r := v.replay.check(c.id, (*[NonceLen]byte)(d[HeaderLen-NonceLen:HeaderLen]), ts, now.Unix()); r != 0 {
		return g, r
	}
	// From here on the datagram is spent, whatever follows.
	v.gen++
	if suite != SuitePSK {
		k, enclen := v.x, encX25519
		if suite == SuiteHybrid {
			k, enclen = v.hybrid, encHybrid
		}
		body := d[HeaderLen : len(d)-MACLen]
		r, err := hpke.NewRecipient(body[:enclen], k, hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), []byte(hpkeInfo))
		if err != nil {
			return g, fmt.Errorf("%w: %w", ReasonDecrypt, err)
		}
		if pt, err = r.Open(hdr, body[enclen:]); err != nil {
			return g, fmt.Errorf("%w: %w", ReasonDecrypt, err)
		}
	}
	req, ok := parsePlaintext(pt)
	if !ok {
		return g, ReasonMalformed
	}
	g.Addr = src
	if req.addr.IsValid() && req.addr != src {
		if !c.Embed || !inAny(c.Sources, req.addr) {
			return g, ReasonEmbedded
		}
		g.Addr, g.Embedded = req.addr, true
	}
	if len(req.door) > 0 {
		i := -1
		for j, name := range c.Doors {
			if name == string(req.door) {
				i = j
				break
			}
		}
		if i < 0 {
			return g, ReasonDoor
		}
		g.Door = c.Doors[i]
	} else {
		for i := 0; i < len(req.ports); i += 3 {
			p := Port{Proto(req.ports[i]), binary.BigEndian.Uint16(req.ports[i+1:])}
			if !containsPort(c.Ports, p) {
				return g, ReasonPort
			}
		}
	}
	g.Duration = c.MaxDuration
	if req.duration != 0 {
		g.Duration = time.Duration(req.duration) * time.Second
		if g.Duration > c.MaxDuration {
			return g, ReasonDuration
		}
	}
	for i := 0; i < len(req.ports); i += 3 {
		g.Ports = append(g.Ports, Port{Proto(req.ports[i]), binary.BigEndian.Uint16(req.ports[i+1:])})
	}
	return g, nil
}

func inAny(nets []netip.Prefix, a netip.Addr) bool {
	if len(nets) == 0 {
		return true
	}
	for _, n := range nets {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

func containsPort(ps []Port, p Port) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// Generation counts the datagrams that got past the replay check; when it
// changes, the replay cache changed and the daemon should save a snapshot
// before it acts on the grant, so a crash cannot forget a spent nonce.
func (v *Verifier) Generation() uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.gen
}

// AppendSnapshot appends the replay cache, as of now, to b.
func (v *Verifier) AppendSnapshot(b []byte, now time.Time) []byte {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.replay.appendSnapshot(b, now.Unix())
}

// LoadSnapshot merges a snapshot written by AppendSnapshot, dropping what
// the window already refuses at now and clients no longer configured. On
// error nothing is loaded; the daemon should then call RefuseUntil.
func (v *Verifier) LoadSnapshot(b []byte, now time.Time) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.replay.loadSnapshot(b, now.Unix(), func(id ID) bool { return v.clients[id] != nil })
}

// RefuseUntil refuses every datagram stamped at or before t. After a
// restart that lost the snapshot, t = start + window refuses every packet
// that could have been accepted before it (at the cost of one window of
// refusals), since they were stamped at most a window after the crash.
func (v *Verifier) RefuseUntil(t time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.replay.floor = max(v.replay.floor, t.Unix())
}

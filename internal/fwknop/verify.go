package fwknop

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Reason says why a packet was refused. It is the error Verify returns;
// its String is a stable label for status and metrics. A Reason fits in a
// byte, so returning one allocates nothing.
type Reason uint8

// The reasons, in the order Verify checks them (fwknopd's order,
// server/incoming_spa.c).
const (
	ReasonSize       Reason = iota + 1 // outside 140..1500 bytes
	ReasonPrefix                       // starts with U2FsdGVkX1: a replay with the prefix put back
	ReasonNotBase64                    // not base64 text
	ReasonGPG                          // 400 bytes or more: GPG, which moat does not take
	ReasonReplay                       // its digest was accepted before, within the window
	ReasonSource                       // no stanza takes packets from this source
	ReasonHMAC                         // no stanza's HMAC key matches (forged, altered, or no --use-hmac)
	ReasonDecrypt                      // authentic, but it does not decrypt (wrong Rijndael key)
	ReasonMalformed                    // authentic, but its fields do not parse
	ReasonTooOld                       // timestamp more than the window in the past
	ReasonFuture                       // timestamp more than the window in the future
	ReasonStale                        // at or below the replay cache's floor
	ReasonType                         // a command or NAT message: moat opens ports only
	ReasonSourceAddr                   // require_source_address: the allow IP is not the source
	ReasonUser                         // require_username: another user name
	ReasonPort                         // a port the stanza does not open
	numReasons
)

var reasonLabel = [numReasons]string{
	ReasonSize:       "fwknop_size",
	ReasonPrefix:     "fwknop_prefix",
	ReasonNotBase64:  "fwknop_not_base64",
	ReasonGPG:        "fwknop_gpg",
	ReasonReplay:     "fwknop_replay",
	ReasonSource:     "fwknop_source",
	ReasonHMAC:       "fwknop_hmac",
	ReasonDecrypt:    "fwknop_decrypt",
	ReasonMalformed:  "fwknop_malformed",
	ReasonTooOld:     "fwknop_too_old",
	ReasonFuture:     "fwknop_future",
	ReasonStale:      "fwknop_stale",
	ReasonType:       "fwknop_type",
	ReasonSourceAddr: "fwknop_source_address",
	ReasonUser:       "fwknop_user",
	ReasonPort:       "fwknop_port",
}

func (r Reason) String() string {
	if r > 0 && r < numReasons {
		return reasonLabel[r]
	}
	return "fwknop_unknown"
}

func (r Reason) Error() string { return "fwknop: refused: " + r.String() }

// Port is one protocol/port an access stanza opens.
type Port struct {
	Proto uint8 // 6 tcp, 17 udp
	Port  uint16
}

func (p Port) String() string {
	if p.Proto == 17 {
		return "udp/" + strconv.Itoa(int(p.Port))
	}
	return "tcp/" + strconv.Itoa(int(p.Port))
}

// Stanza is one access.conf stanza, as moat maps it ([[spa.fwknop]]).
type Stanza struct {
	Name                 string
	Sources              []netip.Prefix // SOURCE; empty is ANY
	Ports                []Port         // OPEN_PORTS
	Keys                 Keys           // KEY_BASE64, HMAC_KEY_BASE64
	MaxDuration          time.Duration  // FW_ACCESS_TIMEOUT: the grant, and the cap on the client's -f
	RequireSourceAddress bool           // the allow IP must be the packet's source
	RequireUsername      string         // REQUIRE_USERNAME; empty takes any
}

// Grant is what an accepted packet opens.
type Grant struct {
	Stanza   string
	Addr     netip.Addr // the allow IP, or the source for 0.0.0.0 (-s)
	Ports    []Port
	Duration time.Duration
	User     string
	Embedded bool // Addr is the packet's allow IP, not its source
}

// Options tune a Verifier; zero values take the defaults.
type Options struct {
	Window      time.Duration // MAX_SPA_PACKET_AGE; default 120s
	ReplayLimit int           // digests remembered; default 65536
}

// Verifier applies fwknopd's checks to packets, with a replay cache that
// remembers each accepted packet's digest for exactly as long as the
// window would let it in. Not safe for concurrent use.
type Verifier struct {
	stanzas []stanza
	window  int64
	limit   int
	floor   int64              // refuse ts <= floor: entries were dropped, or a snapshot lost
	seen    map[[32]byte]int64 // replay digest -> timestamp
}

type stanza struct {
	Stanza
	mac *mac
}

// NewVerifier checks the stanzas and builds a verifier.
func NewVerifier(stanzas []Stanza, opt Options) (*Verifier, error) {
	if opt.Window == 0 {
		opt.Window = 120 * time.Second
	}
	if opt.Window < time.Second || opt.Window%time.Second != 0 {
		return nil, fmt.Errorf("fwknop: window %v: want whole seconds, at least 1s", opt.Window)
	}
	if opt.ReplayLimit == 0 {
		opt.ReplayLimit = 1 << 16
	}
	v := &Verifier{window: int64(opt.Window / time.Second), limit: max(opt.ReplayLimit, 1), seen: map[[32]byte]int64{}}
	for _, s := range stanzas {
		switch {
		case s.Name == "":
			return nil, errors.New("fwknop: a stanza has no name")
		case len(s.Keys.HMAC) == 0:
			return nil, fmt.Errorf("fwknop: stanza %q: no HMAC key; moat refuses fwknop without HMAC (the packet would be decrypted unauthenticated)", s.Name)
		case len(s.Keys.Enc) == 0:
			return nil, fmt.Errorf("fwknop: stanza %q: no Rijndael key", s.Name)
		case len(s.Ports) == 0:
			return nil, fmt.Errorf("fwknop: stanza %q opens no port", s.Name)
		case s.MaxDuration < time.Second:
			return nil, fmt.Errorf("fwknop: stanza %q: max duration %v: want at least 1s", s.Name, s.MaxDuration)
		}
		v.stanzas = append(v.stanzas, stanza{Stanza: s, mac: newMAC(s.Keys.HMAC)})
	}
	return v, nil
}

// Stanzas is the number of stanzas: what one forged packet costs at most,
// in HMAC computations.
func (v *Verifier) Stanzas() int { return len(v.stanzas) }

// Verify checks one packet that came from src at now. On a refusal after
// a stanza's HMAC matched, Grant.Stanza names it, for the log.
func (v *Verifier) Verify(pkt []byte, src netip.Addr, now time.Time) (Grant, error) {
	if len(pkt) < MinPacket || len(pkt) > MaxPacket {
		return Grant{}, ReasonSize
	}
	if string(pkt[:len(saltedB64)]) == saltedB64 {
		return Grant{}, ReasonPrefix
	}
	for _, c := range pkt {
		if !isB64(c) {
			return Grant{}, ReasonNotBase64
		}
	}
	if len(pkt) >= gpgFrom {
		return Grant{}, ReasonGPG
	}
	// fwknopd looks the digest up before the HMAC: a replay costs one hash.
	digest := ReplayDigest(pkt)
	if _, ok := v.seen[digest]; ok {
		return Grant{}, ReasonReplay
	}
	src = src.Unmap()
	var st *stanza
	var m Message
	reason := ReasonSource
	for i := range v.stanzas {
		s := &v.stanzas[i]
		if len(s.Sources) > 0 && !inAny(s.Sources, src) {
			continue
		}
		if !s.mac.ok(pkt) {
			reason = ReasonHMAC
			continue
		}
		var err error
		if m, err = decrypt(pkt, s.Keys.Enc); err != nil {
			if errors.Is(err, ErrDecrypt) {
				return Grant{Stanza: s.Name}, ReasonDecrypt
			}
			return Grant{Stanza: s.Name}, ReasonMalformed
		}
		st = s
		break
	}
	if st == nil {
		return Grant{}, reason
	}
	g := Grant{Stanza: st.Name, User: m.User}
	t := now.Unix()
	switch {
	case m.Timestamp < t-v.window:
		return g, ReasonTooOld
	case m.Timestamp > t+v.window:
		return g, ReasonFuture
	case m.Timestamp <= v.floor:
		return g, ReasonStale
	}
	if m.Type != 1 && m.Type != 3 { // command and NAT messages: moat only opens ports
		return g, ReasonType
	}
	allow, ports, ok := parseAccess(m.Message)
	if !ok {
		return g, ReasonMalformed
	}
	switch {
	case allow.IsUnspecified(): // -s: "open for my source"
		if st.RequireSourceAddress {
			return g, ReasonSourceAddr
		}
		g.Addr = src
	case allow != src:
		if st.RequireSourceAddress {
			return g, ReasonSourceAddr
		}
		g.Addr, g.Embedded = allow, true
	default:
		g.Addr = src
	}
	if st.RequireUsername != "" && m.User != st.RequireUsername {
		return g, ReasonUser
	}
	for _, p := range ports {
		if !slices.Contains(st.Ports, p) {
			return g, ReasonPort
		}
	}
	g.Ports = ports
	g.Duration = st.MaxDuration
	if m.ClientTimeout > 0 && time.Duration(m.ClientTimeout)*time.Second < g.Duration {
		g.Duration = time.Duration(m.ClientTimeout) * time.Second
	}
	v.remember(digest, m.Timestamp, t)
	return g, nil
}

// parseAccess parses an access message, "allow_ip,proto/port[,...]".
func parseAccess(msg string) (netip.Addr, []Port, bool) {
	f := strings.Split(msg, ",")
	if len(f) < 2 {
		return netip.Addr{}, nil, false
	}
	a, err := netip.ParseAddr(f[0])
	if err != nil {
		return netip.Addr{}, nil, false
	}
	var ports []Port
	for _, s := range f[1:] {
		p, ok := ParsePort(s)
		if !ok {
			return netip.Addr{}, nil, false
		}
		ports = append(ports, p)
	}
	return a.Unmap(), ports, true
}

// ParsePort parses fwknop's "tcp/22" (case-insensitive protocol).
func ParsePort(s string) (Port, bool) {
	proto, num, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return Port{}, false
	}
	n, err := strconv.ParseUint(num, 10, 16)
	if err != nil || n == 0 {
		return Port{}, false
	}
	switch strings.ToLower(proto) {
	case "tcp":
		return Port{Proto: 6, Port: uint16(n)}, true
	case "udp":
		return Port{Proto: 17, Port: uint16(n)}, true
	}
	return Port{}, false
}

// remember records an accepted digest. When the cache is full, entries the
// window already refuses go first, then the oldest, raising the floor to
// its timestamp: a dropped digest can never come back in, at the price
// that a genuine packet older than the flood's oldest is refused as stale.
func (v *Verifier) remember(d [32]byte, ts, now int64) {
	if len(v.seen) >= v.limit {
		v.expire(now)
	}
	for len(v.seen) >= v.limit {
		var oldest [32]byte
		low, first := int64(0), true
		for k, t := range v.seen {
			if first || t < low {
				oldest, low, first = k, t, false
			}
		}
		delete(v.seen, oldest)
		v.floor = max(v.floor, low)
	}
	v.seen[d] = ts
}

// expire drops the digests whose packets the window refuses anyway.
func (v *Verifier) expire(now int64) {
	for k, t := range v.seen {
		if t+v.window < now {
			delete(v.seen, k)
		}
	}
}

// Replayed says how many digests the cache holds.
func (v *Verifier) Replayed() int { return len(v.seen) }

// RefuseUntil refuses every packet stamped before t: for when the saved
// cache was lost, so nothing accepted before it can come back.
func (v *Verifier) RefuseUntil(t time.Time) { v.floor = max(v.floor, t.Unix()) }

// Snapshot format (big-endian): magic [16] | floor int64 | count uint32 |
// count × (digest [32] | ts int64), digests sorted.
const snapshotMagic = "moat-fwknop-rc\x00\x01"

var errSnapshot = errors.New("fwknop: replay snapshot is damaged")

// AppendSnapshot writes the digests still inside the window at now.
func (v *Verifier) AppendSnapshot(b []byte, now time.Time) []byte {
	v.expire(now.Unix())
	keys := make([][32]byte, 0, len(v.seen))
	for k := range v.seen {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b [32]byte) int { return slices.Compare(a[:], b[:]) })
	b = append(b, snapshotMagic...)
	b = binary.BigEndian.AppendUint64(b, uint64(v.floor))
	b = binary.BigEndian.AppendUint32(b, uint32(len(keys)))
	for _, k := range keys {
		b = append(b, k[:]...)
		b = binary.BigEndian.AppendUint64(b, uint64(v.seen[k]))
	}
	return b
}

// LoadSnapshot merges a snapshot; a damaged one changes nothing.
func (v *Verifier) LoadSnapshot(b []byte, now time.Time) error {
	const entry = 32 + 8
	if len(b) < len(snapshotMagic)+12 || string(b[:len(snapshotMagic)]) != snapshotMagic {
		return errSnapshot
	}
	b = b[len(snapshotMagic):]
	floor := int64(binary.BigEndian.Uint64(b))
	n := int(binary.BigEndian.Uint32(b[8:]))
	b = b[12:]
	if n != len(b)/entry || len(b)%entry != 0 {
		return errSnapshot
	}
	v.floor = max(v.floor, floor)
	t := now.Unix()
	for ; len(b) > 0; b = b[entry:] {
		ts := int64(binary.BigEndian.Uint64(b[32:]))
		if ts+v.window < t || ts <= v.floor {
			continue
		}
		v.remember([32]byte(b), ts, t)
	}
	return nil
}

// Reasons lists every reason, for status and metrics.
func Reasons() []Reason {
	out := make([]Reason, 0, numReasons-1)
	for r := Reason(1); r < numReasons; r++ {
		out = append(out, r)
	}
	return out
}

func inAny(nets []netip.Prefix, a netip.Addr) bool {
	for _, n := range nets {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

// Plausible is the cheap discrimination from moat's own SPA datagrams:
// an fwknop packet is base64 text, while moat's starts with its version
// byte (1), which is not in the base64 alphabet.
func Plausible(b []byte) bool { return len(b) > 0 && isB64(b[0]) }

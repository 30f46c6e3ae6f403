// Package osfp guesses, passively, what sent a TCP SYN: an operating
// system's own stack (Linux, Windows, macOS/iOS, FreeBSD, OpenBSD) or a
// scanner's crafted probe (nmap, masscan, zmap, hping), from the fields
// p0f and psad read: the initial TTL (the TTL seen, rounded up to 32, 64,
// 128 or 255), the window, the MSS, the window scale, the order of the TCP
// options, and the don't-fragment bit.
//
// A fingerprint is a guess, not evidence: every field is the sender's to
// choose, and a scanner can copy an operating system's SYN. moat shows it
// to the administrator next to an attacker and never decides anything on
// it.
//
// The signatures are an embedded text table (signatures.txt, one line
// each, parsed at start by Parse, which the fuzz test feeds). The package
// is pure: no I/O, no state but the table.
package osfp

import (
	_ "embed"
	"fmt"
	"strconv"
	"strings"

	"github.com/moat-fw/moat/internal/packet"
)

// SYN is what a SYN tells of its sender: 16 bytes, so a scan detector can
// keep one per source.
type SYN struct {
	Layout uint64 // option kinds in order, as packet.Packet.TCPOptOrder
	Window uint16
	MSS    uint16 // 0: no MSS option
	IPID   uint16 // IPv4 identification (zmap writes 54321)
	TTL    uint8  // as seen, hops already taken off
	WScale uint8  // valid when HasWScale
	Bits   uint8  // BitDF, BitWScale, Bit6, BitSeen
	OptLen uint8  // option bytes the header claims
}

// SYN.Bits.
const (
	BitDF     = 1 << iota // don't fragment (IPv4)
	BitWScale             // a window scale option
	Bit6                  // IPv6
	BitSeen               // a SYN was recorded
)

// FromPacket takes the fingerprint of p, if p is a SYN without ACK whose
// options were read in full.
func FromPacket(p *packet.Packet) (SYN, bool) {
	if p.Proto != packet.ProtoTCP || p.TCPFlags&(packet.SYN|packet.ACK|packet.RST|packet.FIN) != packet.SYN ||
		p.TCPOpts&(packet.OptCut|packet.OptMalformed) != 0 || p.Fragment {
		return SYN{}, false
	}
	s := SYN{Layout: p.TCPOptOrder, Window: p.TCPWindow, MSS: p.MSS, IPID: p.IPID, TTL: p.TTL, OptLen: p.TCPOptLen, Bits: BitSeen}
	if p.DF {
		s.Bits |= BitDF
	}
	if p.TCPOpts&packet.OptWScale != 0 {
		s.Bits |= BitWScale
		s.WScale = p.WScale
	}
	if p.Family == 6 {
		s.Bits |= Bit6
	}
	return s, true
}

// Seen reports whether s holds a recorded SYN.
func (s SYN) Seen() bool { return s.Bits&BitSeen != 0 }

// InitialTTL rounds a TTL up to the initial TTL stacks use: 32, 64, 128 or
// 255.
func InitialTTL(ttl uint8) uint8 {
	switch {
	case ttl <= 32:
		return 32
	case ttl <= 64:
		return 64
	case ttl <= 128:
		return 128
	}
	return 255
}

// Guess is what a fingerprint matched.
type Guess struct {
	Name    string `json:"name"`    // "Linux 3.x-6.x", "nmap SYN scan"
	Class   string `json:"class"`   // "os" or "scanner"
	Hops    int    `json:"hops"`    // initial TTL minus the TTL seen
	Exact   bool   `json:"exact"`   // every field matched; false: the closest signature, some fields off
	Summary string `json:"summary"` // the fingerprint, p0f-like: "64:1460:65535:mss,nop,ws:ws6:df"
}

// Match finds the signature that fits s best; false when none fits well
// enough to name (fewer than the TTL and the option order agreeing).
func Match(s SYN) (Guess, bool) { return table.match(s) }

// Table is a parsed signature table.
type Table struct{ sigs []Signature }

// Signature is one line of the table.
type Signature struct {
	Name   string
	Class  string
	TTL    uint8     // initial TTL: 32, 64, 128 or 255; 0 any
	DF     int8      // 1 set, -1 clear, 0 either
	Window []winRule // any of them; empty: any window
	MSS    int       // -1 any, 0 none, else the value
	WScale int       // -1 any, -2 none, else the value
	Layout uint64    // option order; layoutAny matches every order
	IPID   int       // -1 any, else the value
}

const layoutAny = ^uint64(0)

// winRule is a window: a value (mul 0) or a multiple of the MSS.
type winRule struct{ val, mul int }

//go:embed signatures.txt
var signaturesTxt string

var table = mustParse(signaturesTxt)

func mustParse(s string) *Table {
	t, err := Parse(s)
	if err != nil {
		panic("osfp: embedded signatures.txt: " + err.Error())
	}
	return t
}

// Parse reads a signature table: one signature a line, '#' comments,
// fields separated by '|':
//
//	name | class | ttl | df | window | mss | wscale | layout | ipid
//
// ttl is 32, 64, 128, 255 or *; df is df, nodf or *; window is * or a
// comma-separated list of values and mss*N multiples; mss is a value,
// none or *; wscale a value, none or *; layout the options in order
// (mss, nop, ws, sok, sack, ts, eol, other), "-" for none, * for any;
// ipid a value or *.
func Parse(text string) (*Table, error) {
	t := &Table{}
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		sig, err := parseLine(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n+1, err)
		}
		t.sigs = append(t.sigs, sig)
	}
	return t, nil
}

func parseLine(line string) (Signature, error) {
	f := strings.Split(line, "|")
	if len(f) != 9 {
		return Signature{}, fmt.Errorf("want 9 fields separated by |, got %d", len(f))
	}
	for i := range f {
		f[i] = strings.TrimSpace(f[i])
	}
	sig := Signature{Name: f[0], Class: f[1]}
	if sig.Name == "" || (sig.Class != "os" && sig.Class != "scanner") {
		return sig, fmt.Errorf("want a name and a class \"os\" or \"scanner\", got %q, %q", f[0], f[1])
	}
	switch f[2] {
	case "*":
	case "32", "64", "128", "255":
		n, _ := strconv.Atoi(f[2])
		sig.TTL = uint8(n)
	default:
		return sig, fmt.Errorf("ttl %q: want 32, 64, 128, 255 or *", f[2])
	}
	switch f[3] {
	case "df":
		sig.DF = 1
	case "nodf":
		sig.DF = -1
	case "*":
	default:
		return sig, fmt.Errorf("df %q: want df, nodf or *", f[3])
	}
	if f[4] != "*" {
		for w := range strings.SplitSeq(f[4], ",") {
			w = strings.TrimSpace(w)
			if m, ok := strings.CutPrefix(w, "mss*"); ok {
				n, err := strconv.Atoi(m)
				if err != nil || n < 1 || n > 64 {
					return sig, fmt.Errorf("window %q: want mss*N with N from 1 to 64", w)
				}
				sig.Window = append(sig.Window, winRule{mul: n})
				continue
			}
			n, err := strconv.Atoi(w)
			if err != nil || n < 0 || n > 65535 {
				return sig, fmt.Errorf("window %q: want 0 to 65535 or mss*N", w)
			}
			sig.Window = append(sig.Window, winRule{val: n})
		}
	}
	var err error
	if sig.MSS, err = intField("mss", f[5], 65535, 0); err != nil {
		return sig, err
	}
	if sig.WScale, err = intField("wscale", f[6], 14, -2); err != nil {
		return sig, err
	}
	if sig.Layout, err = ParseLayout(f[7]); err != nil {
		return sig, err
	}
	if sig.IPID, err = intField("ipid", f[8], 65535, -3); err != nil {
		return sig, err
	}
	if sig.IPID == -3 {
		return sig, fmt.Errorf("ipid %q: want a value or *", f[8])
	}
	return sig, nil
}

// intField reads a value up to hi, * (-1) or none (none).
func intField(name, s string, hi, none int) (int, error) {
	switch s {
	case "*":
		return -1, nil
	case "none":
		return none, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > hi {
		return 0, fmt.Errorf("%s %q: want 0 to %d, none or *", name, s, hi)
	}
	return n, nil
}

var optNames = map[string]uint8{"eol": 0, "nop": 1, "mss": 2, "ws": 3, "sok": 4, "sack": 5, "ts": 8, "other": 15}

// ParseLayout reads an option order, "mss,nop,ws,sok,ts"; "-" is no
// options, "*" any order.
func ParseLayout(s string) (uint64, error) {
	switch s {
	case "*":
		return layoutAny, nil
	case "-":
		return 0, nil
	}
	var l uint64
	names := strings.Split(s, ",")
	if len(names) > 16 {
		return 0, fmt.Errorf("layout %q: at most 16 options", s)
	}
	for i, n := range names {
		k, ok := optNames[strings.TrimSpace(n)]
		if !ok {
			return 0, fmt.Errorf("layout %q: unknown option %q; want mss, nop, ws, sok, sack, ts, eol or other", s, n)
		}
		code := uint64(packet.OptCode(k))
		if k == 15 {
			code = 15
		}
		l |= code << (4 * uint(i))
	}
	return l, nil
}

// LayoutString writes an option order as ParseLayout reads it.
func LayoutString(l uint64) string {
	if l == 0 {
		return "-"
	}
	var b strings.Builder
	for i := 0; i < 16; i++ {
		c := uint8(l >> (4 * uint(i)) & 15)
		if c == 0 {
			break
		}
		if i > 0 {
			b.WriteByte(',')
		}
		name := "other"
		for n, k := range optNames {
			if k != 15 && packet.OptCode(k) == c {
				name = n
			}
		}
		b.WriteString(name)
	}
	return b.String()
}

// Summary writes s p0f-like: "ittl:mss:window:layout:wscale:df".
func (s SYN) Summary() string {
	ws, df := "-", "nodf"
	if s.Bits&BitWScale != 0 {
		ws = "ws" + strconv.Itoa(int(s.WScale))
	}
	if s.Bits&BitDF != 0 {
		df = "df"
	}
	return fmt.Sprintf("%d:%d:%d:%s:%s:%s", InitialTTL(s.TTL), s.MSS, s.Window, LayoutString(s.Layout), ws, df)
}

// score counts the fields of s the signature matches, and whether the
// ones that identify a stack (initial TTL and option order) do.
func (sig *Signature) score(s SYN) (n int, core bool) {
	ttlOK := sig.TTL == 0 || sig.TTL == InitialTTL(s.TTL)
	layoutOK := sig.Layout == layoutAny || sig.Layout == s.Layout
	add := func(ok bool) {
		if ok {
			n++
		}
	}
	add(ttlOK)
	add(layoutOK)
	add(sig.DF == 0 || (sig.DF == 1) == (s.Bits&BitDF != 0) || s.Bits&Bit6 != 0) // IPv6 has no DF bit
	add(sig.windowOK(s))
	add(sig.MSS == -1 || sig.MSS == int(s.MSS))
	add(sig.WScale == -1 || sig.WScale == -2 && s.Bits&BitWScale == 0 || s.Bits&BitWScale != 0 && sig.WScale == int(s.WScale))
	add(sig.IPID == -1 || s.Bits&Bit6 == 0 && sig.IPID == int(s.IPID))
	return n, ttlOK && layoutOK
}

const fields = 7

func (sig *Signature) windowOK(s SYN) bool {
	if len(sig.Window) == 0 {
		return true
	}
	for _, w := range sig.Window {
		if w.mul == 0 && w.val == int(s.Window) || w.mul > 0 && s.MSS > 0 && int(s.MSS)*w.mul == int(s.Window) {
			return true
		}
	}
	return false
}

func (t *Table) match(s SYN) (Guess, bool) {
	if !s.Seen() {
		return Guess{}, false
	}
	best, bestN := -1, 0
	for i := range t.sigs {
		n, core := t.sigs[i].score(s)
		// Without the TTL and the option order agreeing, a name is a
		// guess too far; a near miss needs all but one other field.
		if !core || n < fields-1 {
			continue
		}
		if n > bestN {
			best, bestN = i, n
		}
	}
	if best < 0 {
		return Guess{}, false
	}
	sig := &t.sigs[best]
	return Guess{Name: sig.Name, Class: sig.Class, Hops: int(InitialTTL(s.TTL)) - int(s.TTL), Exact: bestN == fields, Summary: s.Summary()}, true
}

// Match is Match against t rather than the embedded table.
func (t *Table) Match(s SYN) (Guess, bool) { return t.match(s) }

// Len is the number of signatures in t.
func (t *Table) Len() int { return len(t.sigs) }

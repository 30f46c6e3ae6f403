// Package blocklist reads public blocklists (plain address lists, FireHOL
// netsets, Spamhaus DROP/EDROP, DShield's block.txt, CrowdSec's blocklist
// exports) and turns them into the fewest address ranges, with any
// protected address cut out, and the difference between two versions.
//
// It is pure: no I/O beyond the reader it is given, no clock. The daemon
// fetches the lists, keeps the last good copy, and sends to the kernel
// only what Diff says changed.
package blocklist

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
)

// Format names a blocklist's file format.
type Format string

// The formats Parse reads.
const (
	// Plain: one address or CIDR prefix per line; "#" and ";" start a
	// comment, anywhere on a line.
	Plain Format = "plain"
	// FireHOL: netset files (firehol_level1.netset...): plain, with "#"
	// comment headers.
	FireHOL Format = "firehol"
	// Spamhaus: DROP/EDROP, "1.10.16.0/20 ; SBL256894", or the JSON-lines
	// form ({"cidr":"1.10.16.0/20","sblid":"SBL256894",...}) with its
	// trailing metadata line.
	Spamhaus Format = "spamhaus"
	// DShield: block.txt, tab-separated "start end netblock ..." with a
	// header line and "#" comments; the range is start to end.
	DShield Format = "dshield"
	// CrowdSec: a blocklist export (cs-blocklist-mirror's plain_text
	// format, a CAPI list in text): one address or prefix per line.
	CrowdSec Format = "crowdsec"
)

// Formats lists the formats, for messages.
var Formats = []Format{Plain, FireHOL, Spamhaus, DShield, CrowdSec}

// Known reports whether f is a format Parse reads.
func Known(f Format) bool {
	for _, k := range Formats {
		if f == k {
			return true
		}
	}
	return false
}

// MaxLine is the longest line read; a longer one is a bad line.
const MaxLine = 4096

// Result is what Parse read.
type Result struct {
	Ranges  []Range // as listed, unsorted, possibly overlapping
	Entries int     // lines that gave a range
	Bad     int     // lines that were neither an entry nor a comment
	// FirstBad is the first bad line's number and text (cut to 80 bytes),
	// for the message.
	FirstBad     int
	FirstBadText string
}

// ErrNoEntries is returned for input with lines but no entry: an error
// page, a captive portal, the wrong format.
var ErrNoEntries = errors.New("no address or prefix in it")

// Parse reads a list in format f. Lines it cannot read are counted in
// Bad, not fatal; input whose lines are mostly bad, or that has no entry
// at all while it has lines, is an error: it is not this list.
func Parse(r io.Reader, f Format) (Result, error) {
	return parse(r, f, nil)
}

// ParseBytes is Parse of a list in memory, with room for its entries
// made at once (one per line at most) rather than by a million appends,
// each growth copying the slice.
func ParseBytes(b []byte, f Format) (Result, error) {
	return parse(bytes.NewReader(b), f, make([]Range, 0, bytes.Count(b, []byte{'\n'})+1))
}

func parse(r io.Reader, f Format, ranges []Range) (Result, error) {
	if !Known(f) {
		return Result{}, fmt.Errorf("unknown format %q (want one of %v)", f, Formats)
	}
	res := Result{Ranges: ranges}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), MaxLine)
	n, content := 0, 0
	for {
		if !sc.Scan() {
			if err := sc.Err(); err != nil {
				if errors.Is(err, bufio.ErrTooLong) {
					return res, fmt.Errorf("line %d: longer than %d bytes: not a blocklist", n+1, MaxLine)
				}
				return res, fmt.Errorf("read: %w", err)
			}
			break
		}
		n++
		line := sc.Bytes()
		rg, ok, skip := parseLine(line, f)
		switch {
		case skip:
			continue
		case ok:
			content++
			res.Entries++
			res.Ranges = append(res.Ranges, rg)
		default:
			content++
			if res.Bad == 0 {
				res.FirstBad = n
				res.FirstBadText = string(line[:min(len(line), 80)])
			}
			res.Bad++
		}
	}
	if content > 0 && res.Entries == 0 {
		return res, fmt.Errorf("%w (line %d: %q)", ErrNoEntries, res.FirstBad, res.FirstBadText)
	}
	if res.Bad > res.Entries {
		return res, fmt.Errorf("%d of %d lines are not %s entries (line %d: %q): not a %s list", res.Bad, content, f, res.FirstBad, res.FirstBadText, f)
	}
	return res, nil
}

// parseLine reads one line: ok with a range, or skip for a blank line,
// a comment or a header, or neither for a bad line.
func parseLine(line []byte, f Format) (r Range, ok, skip bool) {
	if f == Spamhaus {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] == '{' {
			return spamhausJSON(t)
		}
	}
	if i := bytes.IndexAny(line, "#;"); i >= 0 && f != DShield {
		line = line[:i]
	} else if i := bytes.IndexByte(line, '#'); i >= 0 {
		line = line[:i]
	}
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return Range{}, false, true
	}
	fields := bytes.Fields(line)
	if f == DShield {
		return dshield(fields)
	}
	if len(fields) != 1 {
		return Range{}, false, false
	}
	r, ok = parseToken(fields[0])
	return r, ok, false
}

// parseToken reads an address or a prefix; host bits of a prefix are
// masked (lists write "1.2.3.4/24" for 1.2.3.0/24). IPv4-mapped IPv6
// addresses and zones are refused: a list names networks of one family.
func parseToken(b []byte) (Range, bool) {
	s := string(b)
	if bytes.IndexByte(b, '/') >= 0 {
		p, err := netip.ParsePrefix(s)
		if err != nil || p.Addr().Is4In6() {
			return Range{}, false
		}
		return FromPrefix(p), true
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" || a.Is4In6() {
		return Range{}, false
	}
	return Range{a, a}, true
}

// dshield reads "start end netblock [attacks name country email]"; the
// header line ("Start End Netblock ...") is skipped.
func dshield(fields [][]byte) (Range, bool, bool) {
	if len(fields) < 3 {
		return Range{}, false, false
	}
	if string(fields[0]) == "Start" {
		return Range{}, false, true
	}
	from, err1 := netip.ParseAddr(string(fields[0]))
	to, err2 := netip.ParseAddr(string(fields[1]))
	bits, err3 := strconv.Atoi(string(fields[2]))
	if err1 != nil || err2 != nil || err3 != nil || from.Is4() != to.Is4() || to.Less(from) ||
		from.Zone() != "" || to.Zone() != "" || from.Is4In6() || to.Is4In6() || bits < 0 || bits > from.BitLen() {
		return Range{}, false, false
	}
	return Range{from, to}, true, false
}

// spamhausJSON reads one line of Spamhaus's JSON form; the metadata line
// ({"type":"metadata",...}) is skipped.
func spamhausJSON(line []byte) (Range, bool, bool) {
	var v struct {
		CIDR string `json:"cidr"`
		Type string `json:"type"`
	}
	if err := json.Unmarshal(line, &v); err != nil {
		return Range{}, false, false
	}
	if v.CIDR == "" {
		return Range{}, false, v.Type == "metadata"
	}
	r, ok := parseToken([]byte(v.CIDR))
	return r, ok, false
}

package config

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Door is a knock door: a hidden service that opens, for one source and a
// while, when that source sends the right sequence of packets.
type Door struct {
	Name             string        // name: shown in logs; names the door's kernel sets
	Sequence         []PortSpec    // sequence: 1 to 32 single ports, tcp or udp
	SeqTimeout       time.Duration // seq_timeout: the whole sequence must arrive within this
	TCPFlags         TCPFlags      // tcpflags: flags a TCP knock must have set and clear
	Open             []PortSpec    // open: what a completed knock opens for the knocking source
	OpenFor          time.Duration // open_for: how long new connections are accepted
	CloseSequence    []PortSpec    // close_sequence: optional, ends the grant early
	StartCommand     []string      // start_command: optional argv run when the door opens
	StopCommand      []string      // stop_command: optional argv run when the grant ends
	OneTimeSequences string        // one_time_sequences: optional knockd-format file; a used line is consumed
	MaxPending       int           // max_pending: sources in the middle of a sequence tracked at once
	AllowWeak        bool          // allow_weak: accept a sequence a sweep can complete
}

// Daemon reports whether the door needs moat's daemon to verify knocks:
// commands and one-time sequences cannot run in the kernel.
func (d Door) Daemon() bool {
	return len(d.StartCommand) > 0 || len(d.StopCommand) > 0 || d.OneTimeSequences != ""
}

// TCPFlags are the TCP flags a knock must have set (Set) and clear (Clear),
// in knockd's syntax: "syn,!ack".
type TCPFlags struct {
	Set, Clear uint8
}

var tcpFlagBits = []struct {
	name string
	bit  uint8
}{{"fin", 0x01}, {"syn", 0x02}, {"rst", 0x04}, {"psh", 0x08}, {"ack", 0x10}, {"urg", 0x20}}

// ParseTCPFlags parses knockd's tcpflags syntax: comma-separated flag names,
// each optionally negated with "!".
func ParseTCPFlags(s string) (TCPFlags, error) {
	var f TCPFlags
	if strings.TrimSpace(s) == "" {
		return f, nil
	}
	for _, part := range strings.Split(s, ",") {
		part = strings.ToLower(strings.TrimSpace(part))
		neg := strings.HasPrefix(part, "!")
		part = strings.TrimPrefix(part, "!")
		i := -1
		for j, fb := range tcpFlagBits {
			if fb.name == part {
				i = j
			}
		}
		if i < 0 {
			return TCPFlags{}, fmt.Errorf("unknown TCP flag %q; want fin, syn, rst, psh, ack or urg, each optionally with ! as in \"syn,!ack\"", part)
		}
		if neg {
			f.Clear |= tcpFlagBits[i].bit
		} else {
			f.Set |= tcpFlagBits[i].bit
		}
	}
	if f.Set&f.Clear != 0 {
		return TCPFlags{}, fmt.Errorf("a flag is both required and forbidden in %q", s)
	}
	return f, nil
}

func (f TCPFlags) String() string {
	var parts []string
	for _, fb := range tcpFlagBits {
		if f.Set&fb.bit != 0 {
			parts = append(parts, fb.name)
		}
	}
	for _, fb := range tcpFlagBits {
		if f.Clear&fb.bit != 0 {
			parts = append(parts, "!"+fb.name)
		}
	}
	return strings.Join(parts, ",")
}

// Match reports whether TCP flags fl satisfy f.
func (f TCPFlags) Match(fl uint8) bool { return fl&f.Set == f.Set && fl&f.Clear == 0 }

func defaultDoor() Door {
	// max_pending bounds a kernel-mode door's memory under a flood of
	// forged first knocks: each pending source takes about 200 bytes of
	// unreclaimable kernel memory (two set elements of about 99 bytes,
	// measured: TestKnockSetsStayWithinMaxPending), so 2^18 is about 52 MB
	// per sequence and family. The price: kernel sets never evict, and an
	// element that timed out holds its place until the set's garbage
	// collection runs, so a flood that forges more than about max_pending
	// sources per seq_timeout refuses real first knocks while it lasts:
	// 2^16 (13 MB) already lost one real knock in 20 to the bench's 60,000
	// SYN/s flood from a /16, which 2^18 did not; daemon mode evicts
	// instead. 2^20, the old default, let one door take 207 MB.
	return Door{SeqTimeout: 10 * time.Second, TCPFlags: TCPFlags{Set: 0x02}, OpenFor: 30 * time.Second, MaxPending: 1 << 18}
}

var doorKeys = []key{
	{"name", func(d *decoder, p string, v any) { d.str(p, v, &d.lastDoor().Name) }},
	{"sequence", func(d *decoder, p string, v any) { d.doorPorts(p, v, &d.lastDoor().Sequence) }},
	{"seq_timeout", func(d *decoder, p string, v any) { d.duration(p, v, &d.lastDoor().SeqTimeout) }},
	{"tcpflags", func(d *decoder, p string, v any) {
		var s string
		d.str(p, v, &s)
		f, err := ParseTCPFlags(s)
		if err != nil {
			d.bad(p, v, "%v", err)
			return
		}
		d.lastDoor().TCPFlags = f
	}},
	{"open", func(d *decoder, p string, v any) { d.doorPorts(p, v, &d.lastDoor().Open) }},
	{"open_for", func(d *decoder, p string, v any) { d.duration(p, v, &d.lastDoor().OpenFor) }},
	{"close_sequence", func(d *decoder, p string, v any) { d.doorPorts(p, v, &d.lastDoor().CloseSequence) }},
	{"start_command", func(d *decoder, p string, v any) { d.argv(p, v, &d.lastDoor().StartCommand) }},
	{"stop_command", func(d *decoder, p string, v any) { d.argv(p, v, &d.lastDoor().StopCommand) }},
	{"one_time_sequences", func(d *decoder, p string, v any) { d.str(p, v, &d.lastDoor().OneTimeSequences) }},
	{"allow_weak", func(d *decoder, p string, v any) { d.bool(p, v, &d.lastDoor().AllowWeak) }},
	{"max_pending", func(d *decoder, p string, v any) {
		if n, ok := d.uint(p, v, 16, 1<<24); ok {
			d.lastDoor().MaxPending = int(n)
		}
	}},
}

func (d *decoder) lastDoor() *Door { return &d.cfg.Doors[len(d.cfg.Doors)-1] }

func (d *decoder) argv(path string, v any, dst *[]string) {
	var args []string
	ok := d.list(path, v, `a command as a list like ["/usr/local/bin/hook", "open", "%IP%"]`, func(p string, e any) {
		s, ok := e.(string)
		if !ok {
			d.badType(p, e, "a string")
			return
		}
		args = append(args, s)
	})
	if ok {
		*dst = args
	}
}

var doorNameRe = regexp.MustCompile(`^[a-z][a-z0-9_]{0,23}$`)

// doorProblems checks each door and the doors against the firewall.
func (c *Config) doorProblems() []problem {
	var out []problem
	bad := func(path, value, format string, args ...any) {
		out = append(out, problem{path: path, value: value, msg: fmt.Sprintf(format, args...)})
	}
	q := strconv.Quote
	names := map[string]int{}
	seqs := map[string]int{}
	openCovers := func(s PortSpec) (PortSpec, bool) {
		for _, o := range ResolveSSH(c.Firewall.Open, nil) {
			if o.Proto == s.Proto && s.From <= o.To && o.From <= s.To {
				return o, true
			}
		}
		return PortSpec{}, false
	}
	for i, dr := range c.Doors {
		p := joinIndex("door", i)
		key := func(k string) string { return joinKey(p, k) }
		switch {
		case !doorNameRe.MatchString(dr.Name):
			bad(key("name"), q(dr.Name), "want a short name of lowercase letters, digits and _ (at most 24), starting with a letter, like \"ssh\"")
		default:
			if j, dup := names[dr.Name]; dup {
				bad(key("name"), q(dr.Name), "door[%d] has the same name", j)
			}
			names[dr.Name] = i
		}
		checkSeq := func(k string, seq []PortSpec, required bool) {
			if len(seq) == 0 {
				if required {
					bad(key(k), "", "a door needs a sequence of 1 to 32 knocks, like [\"tcp/7000\", \"udp/8000\"]")
				}
				return
			}
			if len(seq) > 32 {
				bad(key(k), "", "%d knocks; at most 32", len(seq))
			}
			for j, s := range seq {
				sp := joinIndex(key(k), j)
				switch {
				case s.SSH || s.From != s.To:
					bad(sp, q(s.String()), "a knock is one port, like \"tcp/7000\"")
				case j > 0 && seq[j-1] == s:
					bad(sp, q(s.String()), "repeats the knock before it: a retransmitted packet would count as a step; choose another port")
				case j > 0 && seq[j-1].Proto == s.Proto && (s.From == seq[j-1].From+1 || s.From+1 == seq[j-1].From):
					bad(sp, q(s.String()), "is next to the knock before it: a port sweep in order sends exactly that; choose ports further apart")
				default:
					if o, ok := openCovers(s); ok {
						bad(sp, q(s.String()), "is in [firewall] open (%s), so it is answered and never reaches the door", o)
					}
				}
			}
			sk := fmt.Sprint(seq)
			if j, dup := seqs[sk]; dup {
				bad(key(k), "", "the same sequence as door[%d]", j)
			}
			seqs[sk] = i
		}
		// A one-time-sequences file supplies the sequence, as in knockd.
		checkSeq("sequence", dr.Sequence, dr.OneTimeSequences == "")
		if why := weakSequence(dr.Sequence); why != "" && !dr.AllowWeak {
			bad(key("sequence"), q(fmt.Sprint(dr.Sequence)), "%s; choose knocks a sweep does not send in a row, or set allow_weak = true on the door to accept the risk", why)
		}
		checkSeq("close_sequence", dr.CloseSequence, false)
		if len(dr.Open) == 0 {
			bad(key("open"), "", "a door must open something, like [\"tcp/22\"]")
		}
		for j, s := range dr.Open {
			sp := joinIndex(key("open"), j)
			if s.SSH {
				bad(sp, q(s.String()), "name the port, like \"tcp/22\": the ssh alias belongs to [firewall] open")
				continue
			}
			if o, ok := openCovers(s); ok {
				bad(sp, q(s.String()), "is also in [firewall] open (%s): a door's ports are closed to everyone who has not knocked; remove it from one of them", o)
			}
		}
		if dr.SeqTimeout < 100*time.Millisecond || dr.SeqTimeout > time.Hour {
			bad(key("seq_timeout"), q(dr.SeqTimeout.String()), `want between "100ms" and "1h"`)
		}
		if dr.OpenFor < time.Second {
			bad(key("open_for"), q(dr.OpenFor.String()), `too short; want at least "1s"`)
		}
		for _, k := range []struct {
			name string
			argv []string
		}{{"start_command", dr.StartCommand}, {"stop_command", dr.StopCommand}} {
			if len(k.argv) == 0 {
				continue
			}
			if !filepath.IsAbs(k.argv[0]) {
				bad(key(k.name), q(k.argv[0]), "the program must be an absolute path: commands run without a shell and without PATH")
			}
			for j, a := range k.argv {
				if strings.Contains(a, "%") && strings.Count(strings.ReplaceAll(strings.ReplaceAll(a, "%IP%", ""), "%DOOR%", ""), "%") > 0 {
					bad(joinIndex(key(k.name), j), q(a), "only %%IP%% and %%DOOR%% are substituted")
				}
			}
		}
		if dr.OneTimeSequences != "" && !filepath.IsAbs(dr.OneTimeSequences) {
			bad(key("one_time_sequences"), q(dr.OneTimeSequences), "want an absolute path")
		}
	}
	return out
}

// weakSequence says why an ordered port sweep can complete seq, or "".
// moat ends a sequence on any other closed-port packet, so a sweep
// completes it only when it sends the knocks back to back: a single
// knock, or knocks that are each the next probe of a sweeper that tries
// TCP and UDP of each port in turn (tcp/7000 then udp/7000, or udp/7000
// then tcp/7001). Equal or next ports of one protocol are refused on
// their own, with no way around.
func weakSequence(seq []PortSpec) string {
	if len(seq) == 1 {
		return "a single knock: any sweep of " + seq[0].String() + " opens the door (M6); use at least 2 knocks, better 3 or more"
	}
	if len(seq) == 0 {
		return ""
	}
	for j := 1; j < len(seq); j++ {
		a, b := seq[j-1], seq[j]
		if a.Proto == b.Proto || b.From > a.From+1 || a.From > b.From+1 {
			return ""
		}
	}
	return "every knock is the next probe of a sweeper that tries TCP and UDP of each port in turn, so such a sweep opens the door"
}

func (d *decoder) doorPorts(path string, v any, dst *[]PortSpec) {
	d.portList(path, v, `a list like ["tcp/7000", "udp/8000"]`, `a port like "tcp/7000"`, true, dst)
}

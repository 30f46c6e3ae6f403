package knockd

import (
	"github.com/moat-fw/moat/internal/knock"

	"bufio"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// knockd's defaults (knockd.c: SEQ_TIMEOUT, CMD_TIMEOUT).
const (
	SeqTimeout = 25 * time.Second
	CmdTimeout = 10 * time.Second
)

// Conf is a parsed knockd.conf: the [options] section and one door
// per other section, in file order.
type Conf struct {
	Options Options
	Doors   []Door
	// Notes are things knockd accepts that a reader should still hear
	// about: a directive given twice, text after a number, a key that
	// knockd 0.8 does not know.
	Notes []string
}

// Options is knockd's [options] section.
type Options struct {
	UseSyslog  bool
	LogFile    string
	PidFile    string
	Interface  string
	Directives []Directive // as written, with lines
}

// Directive is one "key = value" line. Key is knockd's name for it in
// lower case, aliases resolved ("command" is "start_command").
type Directive struct {
	Key, Value string
	Line       int
}

// Door is one knockd door (a section other than [options]).
type Door struct {
	Name             string
	Line             int          // of the [name] header
	Sequence         []knock.Step // ports without a protocol are TCP, as in knockd
	OneTimeSequences string
	SeqTimeout       time.Duration // SeqTimeout when not given
	CmdTimeout       time.Duration // CmdTimeout when not given
	TCPFlags         string        // normalized, like "syn,!ack"; "" matches any flags
	Target           string
	Start, Start6    Command
	Stop, Stop6      Command
	Directives       []Directive
}

// Command is a command knockd runs through /bin/sh -c, with %IP%
// replaced by the knocker's address.
type Command struct {
	Text string
	Set  bool // given; for the _6 commands an empty Text then means "do nothing"
	Line int
}

// tcpFlagNames in header bit order, as config.TCPFlags writes them.
var tcpFlagNames = []string{"fin", "syn", "rst", "psh", "ack", "urg"}

// cSpace is C's isspace in the C locale, what knockd's trim strips.
const cSpace = " \t\n\v\f\r"

// Parse parses knockd.conf as knockd 0.8 does (keys in any case,
// "#" comments only at the start of a line, "command" for
// "start_command"), and refuses what knockd refuses, with the line.
func Parse(r io.Reader) (*Conf, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	conf := &Conf{}
	var door *Door
	inSection, inOptions := false, false
	n := 0
	fail := func(format string, args ...any) error {
		return fmt.Errorf("knockd.conf: line %d: %s", n, fmt.Sprintf(format, args...))
	}
	note := func(format string, args ...any) {
		conf.Notes = append(conf.Notes, fmt.Sprintf("knockd.conf line %d: %s", n, fmt.Sprintf(format, args...)))
	}
	for sc.Scan() {
		n++
		line := strings.Trim(sc.Text(), cSpace)
		if line == "" || line[0] == '#' {
			continue
		}
		if len(line) >= 2 && line[0] == '[' && line[len(line)-1] == ']' {
			name := line[1 : len(line)-1]
			if strings.Trim(name, cSpace) == "" {
				return nil, fail("empty section name: want [options] or a door's name, like [openSSH]")
			}
			inSection = true
			inOptions = strings.EqualFold(name, "options")
			door = nil
			if !inOptions {
				conf.Doors = append(conf.Doors, Door{Name: name, Line: n, SeqTimeout: SeqTimeout, CmdTimeout: CmdTimeout})
				door = &conf.Doors[len(conf.Doors)-1]
			}
			continue
		}
		if !inSection {
			return nil, fail("%q comes before any section: put it under [options] or a door's [name]", clip(line))
		}
		rawKey, val, hasEq := strings.Cut(line, "=")
		key := strings.ToLower(strings.Trim(rawKey, cSpace))
		if !hasEq {
			if key == "usesyslog" {
				conf.Options.UseSyslog = true
				conf.Options.Directives = append(conf.Options.Directives, Directive{Key: key, Line: n})
				continue
			}
			return nil, fail("%q: want key = value", clip(line))
		}
		if key == "" {
			return nil, fail("no key before '='")
		}
		val = strings.Trim(val, cSpace)
		d := Directive{Key: key, Value: val, Line: n}
		if inOptions {
			o := &conf.Options
			switch key {
			case "logfile":
				o.LogFile = val
			case "pidfile":
				o.PidFile = val
			case "interface":
				o.Interface = val
			case "usesyslog":
				o.UseSyslog = true
			default:
				note("[options] %s: knockd 0.8 has no such option; ignored", rawKeyName(rawKey))
			}
			o.Directives = append(o.Directives, d)
			continue
		}
		switch key {
		case "command":
			d.Key = "start_command"
		case "command_6":
			d.Key = "start_command_6"
		case "timeout":
			d.Key = "seq_timeout"
		}
		for _, prev := range door.Directives {
			if prev.Key == d.Key {
				note("[%s] %s given again (first on line %d); the last one counts, as in knockd", door.Name, d.Key, prev.Line)
				break
			}
		}
		door.Directives = append(door.Directives, d)
		var err error
		switch d.Key {
		case "sequence":
			door.Sequence, err = parseKnockdSequence(val)
		case "one_time_sequences":
			door.OneTimeSequences = val
		case "seq_timeout":
			door.SeqTimeout, err = parseSeconds(val, func(junk string) {
				note("[%s] seq_timeout %q: knockd reads the number and ignores %q", door.Name, clip(val), clip(junk))
			})
		case "cmd_timeout":
			door.CmdTimeout, err = parseSeconds(val, func(junk string) {
				note("[%s] cmd_timeout %q: knockd reads the number and ignores %q", door.Name, clip(val), clip(junk))
			})
		case "tcpflags":
			door.TCPFlags, err = normalizeTCPFlags(val)
		case "target":
			door.Target = val
		case "start_command":
			door.Start = Command{Text: val, Set: true, Line: n}
		case "start_command_6":
			door.Start6 = Command{Text: val, Set: true, Line: n}
		case "stop_command":
			door.Stop = Command{Text: val, Set: true, Line: n}
		case "stop_command_6":
			door.Stop6 = Command{Text: val, Set: true, Line: n}
		default:
			note("[%s] %s: knockd 0.8 has no such directive; ignored", door.Name, rawKeyName(rawKey))
		}
		if err != nil {
			return nil, fail("[%s] %s: %v", door.Name, d.Key, err)
		}
	}
	if err := sc.Err(); err != nil {
		n++
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fail("longer than 1 MiB: is this a knockd.conf?")
		}
		return nil, fmt.Errorf("knockd.conf: read: %w", err)
	}
	for _, d := range conf.Doors {
		if len(d.Sequence) == 0 && d.OneTimeSequences == "" {
			n = d.Line
			return nil, fail("[%s] has no sequence (knockd refuses to start too): add sequence = 7000,8000,9000", d.Name)
		}
	}
	return conf, nil
}

// rawKeyName is a key for a message: as written, trimmed and clipped.
func rawKeyName(k string) string { return strconv.Quote(clip(strings.Trim(k, cSpace))) }

// clip shortens s for a one-line message.
func clip(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	i := max
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "..."
}

// parseKnockdSequence parses "7000,8000:udp,9000:tcp".
func parseKnockdSequence(s string) ([]knock.Step, error) {
	parts := strings.Split(s, ",")
	if len(parts) > knock.MaxSteps {
		return nil, fmt.Errorf("%d ports; knockd takes at most %d", len(parts), knock.MaxSteps)
	}
	steps := make([]knock.Step, 0, len(parts))
	for _, p := range parts {
		if strings.Trim(p, cSpace) == "" {
			return nil, fmt.Errorf("an empty port in %q (a stray comma?)", clip(s))
		}
		st, err := knock.ParseKnockArg(strings.Trim(p, cSpace), "tcp")
		if err != nil {
			return nil, err
		}
		steps = append(steps, st)
	}
	return steps, nil
}

// parseSeconds reads a number of seconds the way knockd's atoi does:
// digits, then whatever follows is ignored (and reported through junk).
func parseSeconds(s string, junk func(string)) (time.Duration, error) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("%q: want whole seconds, like 5", clip(s))
	}
	n, err := strconv.ParseUint(s[:i], 10, 31)
	if err != nil {
		return 0, fmt.Errorf("%q: too large; want whole seconds, like 5", clip(s))
	}
	if rest := strings.Trim(s[i:], cSpace); rest != "" {
		junk(rest)
	}
	return time.Duration(n) * time.Second, nil
}

// normalizeTCPFlags reads knockd's "syn,!ack" (any case; a later mention
// of a flag wins, as in knockd) and writes it in config.TCPFlags's order.
func normalizeTCPFlags(s string) (string, error) {
	state := make([]int8, len(tcpFlagNames)) // 0 any, 1 set, -1 clear
	for _, f := range strings.Split(s, ",") {
		f = strings.ToLower(strings.Trim(f, cSpace))
		want := int8(1)
		if strings.HasPrefix(f, "!") {
			want, f = -1, strings.Trim(f[1:], cSpace)
		}
		i := slices.Index(tcpFlagNames, f)
		if i < 0 {
			return "", fmt.Errorf("unknown flag %q: want fin, syn, rst, psh, ack or urg, each optionally with !, as in syn,!ack", clip(f))
		}
		state[i] = want
	}
	var set, clear []string
	for i, st := range state {
		switch st {
		case 1:
			set = append(set, tcpFlagNames[i])
		case -1:
			clear = append(clear, "!"+tcpFlagNames[i])
		}
	}
	return strings.Join(append(set, clear...), ","), nil
}

// importOpenFor is the open_for given to a door that knockd kept open
// until a close knock or forever: moat's grants always end.
const importOpenFor = time.Hour

// Bounds the config puts on a door (config.doorProblems).
const (
	minSeqTimeout = 100 * time.Millisecond
	maxSeqTimeout = time.Hour
	minOpenFor    = time.Second
)

// Import writes conf as moat [[door]] tables and says, in warnings
// (also written into the TOML as "# warning:" lines), what did not map.
//
// Commands that are the common iptables idioms (or knockd's knock_add
// helper) become open; a stop command undoing the start command becomes
// open_for (its cmd_timeout); knockd's two-door style, one door adding a
// rule and another deleting it, becomes one door with close_sequence. Any
// other command is kept as an argv, split like sh would, or run through
// /bin/sh -c when it needs a shell.
func Import(conf *Conf) (toml string, warnings []string) {
	if conf == nil {
		conf = &Conf{}
	}
	im := importer{conf: conf, names: map[string]bool{}}
	im.options()
	im.warns = append(im.warns, conf.Notes...)
	im.doors()

	var b strings.Builder
	b.WriteString("# moat knock doors, imported from knockd.conf by `moat import knockd`.\n")
	b.WriteString("# Add them to moat's config, take each door's open ports out of [firewall] open\n")
	b.WriteString("# (tcp/22 is there as \"ssh\"), then run `moat config check`.\n")
	for _, w := range im.warns {
		b.WriteString("# warning: " + commentText(w) + "\n")
	}
	warnings = append(warnings, im.warns...)
	for _, d := range im.out {
		b.WriteString("\n")
		for _, c := range d.comments {
			b.WriteString("# " + commentText(c) + "\n")
		}
		for _, w := range d.warns {
			b.WriteString("# warning: " + commentText(w) + "\n")
		}
		warnings = append(warnings, d.warns...)
		d.write(&b)
	}
	if len(im.out) == 0 {
		b.WriteString("\n# knockd.conf has no doors.\n")
	}
	return b.String(), warnings
}

type importer struct {
	conf  *Conf
	warns []string // not about one door
	out   []*outDoor
	names map[string]bool
}

type outDoor struct {
	name       string
	comments   []string
	warns      []string
	sequence   []knock.Step
	ots        string
	seqTimeout time.Duration
	tcpflags   string
	hasTCP     bool
	open       []string
	openFor    time.Duration
	hasOpenFor bool // even 0s: knockd ran the stop command at once
	closeSeq   []knock.Step
	start      []string
	stop       []string

	src *Door
}

func (im *importer) options() {
	o := im.conf.Options
	for _, d := range o.Directives {
		w := func(format string, args ...any) {
			im.warns = append(im.warns, fmt.Sprintf("knockd.conf line %d: [options] ", d.Line)+fmt.Sprintf(format, args...))
		}
		switch d.Key {
		case "usesyslog":
			w("UseSyslog: moat logs to stderr, which systemd's journal keeps and forwards to syslog; nothing to set")
		case "logfile":
			w("LogFile %q: moat has no log file of its own; its log is in the journal (journalctl -u moat)", clip(d.Value))
		case "pidfile":
			w("PidFile %q: not needed; systemd keeps track of moat", clip(d.Value))
		case "interface":
			w("Interface %q: moat sees knocks on every interface but loopback; to limit that, list interfaces in [firewall] interfaces (which also limits the rest of the firewall)", clip(d.Value))
		}
	}
}

func (im *importer) doors() {
	doors := im.conf.Doors
	// Classify every door first: a closing door may come before the door
	// it closes.
	type class struct {
		open    *fwRule // the start command adds this rule
		closes  *fwRule // the start command deletes this rule, and there is no stop command
		stopped bool    // the stop command deletes the rule the start command added
	}
	classes := make([]class, len(doors))
	for i := range doors {
		d := &doors[i]
		start, ok := parseFirewallCommand(d.Start.Text)
		if !d.Start.Set || !ok {
			continue
		}
		hasStop := d.Stop.Set && strings.Trim(d.Stop.Text, cSpace) != ""
		stop, stopOK := parseFirewallCommand(d.Stop.Text)
		switch {
		case start.add && !hasStop:
			classes[i].open = &start
		case start.add && stopOK && !stop.add && start.same(stop):
			classes[i].open, classes[i].stopped = &start, true
		case !start.add && !hasStop && len(d.Sequence) > 0 && d.OneTimeSequences == "":
			classes[i].closes = &start
		}
	}
	// Pair each closing door with the first door opening the same rule.
	closedBy := make([]int, len(doors))
	closer := make([]bool, len(doors))
	for i := range closedBy {
		closedBy[i] = -1
	}
	for c := range doors {
		if classes[c].closes == nil {
			continue
		}
		for o := range doors {
			if classes[o].open != nil && closedBy[o] < 0 && classes[o].open.same(*classes[c].closes) {
				closedBy[o], closer[c] = c, true
				break
			}
		}
	}
	for i := range doors {
		if closer[i] {
			continue
		}
		d := &doors[i]
		od := &outDoor{src: d, sequence: d.Sequence, ots: d.OneTimeSequences, seqTimeout: d.SeqTimeout, tcpflags: d.TCPFlags}
		od.comments = append(od.comments, fmt.Sprintf("from knockd [%s], line %d", d.Name, d.Line))
		name := d.Name
		if rule := classes[i].open; rule != nil {
			od.open = rule.open
			for _, n := range rule.notes {
				od.warnf("%s", n)
			}
			opened := strings.Join(rule.open, ", ")
			if c := closedBy[i]; c >= 0 {
				im.mergeCloser(od, &doors[c])
				name = mergedName(d.Name)
			}
			od.hasOpenFor = true
			switch {
			case classes[i].stopped:
				od.openFor = d.CmdTimeout
			case closedBy[i] >= 0:
				od.openFor = importOpenFor
				od.warnf("knockd kept %s open until [%s]'s knock; moat stops accepting new connections after open_for (%s chosen: shorten it if connections are made right after the knock), and the close sequence still ends it early", opened, doors[closedBy[i]].Name, durationString(importOpenFor))
			default:
				od.openFor = importOpenFor
				od.warnf("knockd never closed %s again (there is no stop_command, and no door deletes the rule); moat stops accepting new connections after open_for (%s chosen: shorten it if connections are made right after the knock)", opened, durationString(importOpenFor))
			}
			im.checkCommands6(od, classes[i].stopped)
		} else {
			im.keepCommands(od)
		}
		od.name = im.uniqueName(name)
		if od.name != strings.ToLower(name) {
			od.comments[0] += fmt.Sprintf("; named %q, as moat's door names are short, lower case letters, digits and _", od.name)
		}
		im.common(od)
		im.out = append(im.out, od)
	}
	im.checkSequences()
}

// mergeCloser makes knockd door c, which deletes the rule od adds, od's
// close sequence.
func (im *importer) mergeCloser(od *outDoor, c *Door) {
	d := od.src
	od.closeSeq = c.Sequence
	od.comments[0] = fmt.Sprintf("from knockd [%s], line %d, and [%s], line %d, which closes it", d.Name, d.Line, c.Name, c.Line)
	if c.SeqTimeout != d.SeqTimeout || c.TCPFlags != d.TCPFlags {
		od.warnf("[%s] had seq_timeout %s and tcpflags %q; moat uses [%s]'s (%s, %q) for the close sequence too", c.Name, durationString(c.SeqTimeout), c.TCPFlags, d.Name, durationString(d.SeqTimeout), d.TCPFlags)
	}
	if c.Target != "" {
		od.warnf("[%s] target %q: moat has no target; it matches knocks sent to this host", c.Name, clip(c.Target))
	}
}

func (od *outDoor) warnf(format string, args ...any) {
	od.warns = append(od.warns, fmt.Sprintf("door [%s] (line %d): ", od.src.Name, od.src.Line)+fmt.Sprintf(format, args...))
}

// line is where the door sets key, or its header's line.
func (d *Door) line(key string) int {
	for i := len(d.Directives) - 1; i >= 0; i-- {
		if d.Directives[i].Key == key {
			return d.Directives[i].Line
		}
	}
	return d.Line
}

// common handles what every door has, native or not.
func (im *importer) common(od *outDoor) {
	d := od.src
	if d.OneTimeSequences != "" {
		od.sequence = nil
		if len(d.Sequence) > 0 {
			od.warnf("has both sequence and one_time_sequences; knockd lets whichever comes last set the first sequence, moat uses the file")
		}
		if !strings.HasPrefix(d.OneTimeSequences, "/") {
			od.warnf("one_time_sequences %q: moat wants an absolute path", clip(d.OneTimeSequences))
		}
		od.warnf("one_time_sequences: moat marks a used line with '#' as knockd does; do not let knockd and moat share the file")
		od.hasTCP = true // the file may hold TCP knocks
	}
	for _, s := range append(slices.Clone(od.sequence), od.closeSeq...) {
		if s.Proto == "tcp" {
			od.hasTCP = true
		}
	}
	if od.seqTimeout < minSeqTimeout || od.seqTimeout > maxSeqTimeout {
		was := od.seqTimeout
		od.seqTimeout = min(max(od.seqTimeout, minSeqTimeout), maxSeqTimeout)
		od.warnf("seq_timeout %s is outside what moat takes (100ms to 1h); %s used", durationString(was), durationString(od.seqTimeout))
	}
	if od.hasOpenFor && od.openFor < minOpenFor {
		od.warnf("cmd_timeout %s: moat keeps a door open for at least 1s; 1s used", durationString(od.openFor))
		od.openFor = minOpenFor
	}
	if d.Target != "" {
		od.warnf("target %q (line %d): moat has no target; it matches knocks sent to this host", clip(d.Target), d.line("target"))
	}
}

// checkCommands6 compares a native door's IPv6 commands with what it opens.
func (im *importer) checkCommands6(od *outDoor, stopped bool) {
	d := od.src
	if d.Start6.Set {
		switch r, ok := parseFirewallCommand(d.Start6.Text); {
		case strings.Trim(d.Start6.Text, cSpace) == "":
			od.warnf("start_command_6 (line %d) is empty, so knockd did nothing for IPv6 knockers; moat opens %s for them too", d.Start6.Line, strings.Join(od.open, ", "))
		case !ok || !r.add || !slices.Equal(r.open, od.open):
			od.warnf("start_command_6 (line %d) does not open the same ports as start_command; moat opens %s for IPv6 knockers too and does not run it", d.Start6.Line, strings.Join(od.open, ", "))
		}
	}
	if d.Stop6.Set && stopped {
		if r, ok := parseFirewallCommand(d.Stop6.Text); !ok || r.add || !slices.Equal(r.open, od.open) {
			od.warnf("stop_command_6 (line %d) does not undo start_command_6 the way stop_command undoes start_command; moat ends IPv6 grants like IPv4 ones and does not run it", d.Stop6.Line)
		}
	}
}

// keepCommands turns a door whose commands do not map into moat's with
// the commands kept as argv.
func (im *importer) keepCommands(od *outDoor) {
	d := od.src
	od.start = im.argv(od, "start_command", d.Start)
	od.stop = im.argv(od, "stop_command", d.Stop)
	if len(od.stop) > 0 {
		od.openFor, od.hasOpenFor = d.CmdTimeout, true
	}
	for _, c := range []struct {
		name   string
		v6, v4 Command
	}{{"start_command_6", d.Start6, d.Start}, {"stop_command_6", d.Stop6, d.Stop}} {
		if c.v6.Set && strings.Trim(c.v6.Text, cSpace) != strings.Trim(c.v4.Text, cSpace) {
			od.warnf("%s (line %d) is dropped: moat runs the same command for IPv4 and IPv6 knockers, with %%IP%% the knocker's address", c.name, c.v6.Line)
		}
	}
	if words, _, _ := shellWords(d.Start.Text); len(words) > 1 && firewallTools[path.Base(words[0])] &&
		slices.ContainsFunc(words[1:], func(w string) bool { return w == "-D" || w == "--delete" || w == "-x" }) {
		od.warnf("deletes a firewall rule: if that closes what another door opens, put this door's sequence in that door's close_sequence and drop this door")
		return
	}
	what := "nothing"
	if len(od.start) > 0 {
		what = "only its commands"
	}
	od.warnf("opens %s in moat: set open to the ports it should let the knocker reach, like open = [\"tcp/22\"] (moat refuses a door that opens nothing)", what)
}

// argv converts one knockd command to a moat argv, warning how.
func (im *importer) argv(od *outDoor, key string, c Command) []string {
	text := strings.Trim(c.Text, cSpace)
	if !c.Set || text == "" {
		return nil
	}
	if !utf8.ValidString(text) {
		od.warnf("%s (line %d) is not valid UTF-8; the bad bytes became U+FFFD: fix it by hand", key, c.Line)
		text = strings.ToValidUTF8(text, "\uFFFD")
	}
	words, shellSyntax, err := shellWords(text)
	var argv []string
	switch {
	case err != nil:
		argv = []string{"/bin/sh", "-c", text}
		od.warnf("%s (line %d) is not valid shell (%v), so knockd never ran it; kept as /bin/sh -c: fix it", key, c.Line, err)
	case shellSyntax != "":
		argv = []string{"/bin/sh", "-c", text}
		od.warnf("%s (line %d) uses the shell (%s); moat runs commands without one, so it is kept as /bin/sh -c: better, move it into a script", key, c.Line, shellSyntax)
	default:
		argv = words
		od.warnf("%s (line %d) ran through /bin/sh -c; moat runs it without a shell, split into %d words: check the quoting", key, c.Line, len(words))
	}
	if len(words) > 0 && !strings.HasPrefix(words[0], "/") && shellSyntax == "" && err == nil {
		od.warnf("%s: %q is not an absolute path: moat runs commands without PATH; write the full path", key, clip(words[0]))
	}
	if len(words) > 0 && firewallTools[path.Base(words[0])] {
		od.warnf("%s changes the firewall outside moat's table, and moat's table drops what an iptables ACCEPT lets in: use open = [...] instead", key)
	}
	if strings.ContainsAny(text, "\u2010\u2011\u2012\u2013\u2014\u2212") {
		od.warnf("%s has a typographic dash where the command wants - or -- (copied from a web page or a book?)", key)
	}
	stripped := strings.ReplaceAll(strings.ReplaceAll(text, "%IP%", ""), "%DOOR%", "")
	if strings.Contains(stripped, "%") {
		od.warnf("%s has a %% that is not %%IP%% (moat substitutes only %%IP%% and %%DOOR%%, and refuses any other)", key)
	}
	return argv
}

// firewallTools change a firewall outside moat's own table.
var firewallTools = map[string]bool{
	"iptables": true, "ip6tables": true, "iptables-legacy": true, "ip6tables-legacy": true,
	"iptables-nft": true, "ip6tables-nft": true, "nft": true, "ufw": true, "firewall-cmd": true,
	"knock_add": true, "knock_helper_ipt.sh": true,
}

// uniqueName makes a knockd section name a valid moat door name,
// ^[a-z][a-z0-9_]{0,23}$, unused so far.
func (im *importer) uniqueName(raw string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(raw) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_':
			b.WriteRune(r)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "_"):
			b.WriteByte('_')
		}
	}
	name := strings.Trim(b.String(), "_")
	if name == "" || name[0] < 'a' || name[0] > 'z' {
		name = "door_" + name
	}
	name = strings.TrimRight(name[:min(len(name), 24)], "_")
	base := name
	for i := 2; im.names[name]; i++ {
		suffix := "_" + strconv.Itoa(i)
		name = base[:min(len(base), 24-len(suffix))] + suffix
	}
	im.names[name] = true
	return name
}

// mergedName names the door made of an open/close pair after what it
// opens: [openSSH] becomes "ssh", [unlockDNS] "dns".
func mergedName(open string) string {
	l := strings.ToLower(open)
	for _, affix := range []string{"open_", "open-", "open", "unlock_", "unlock-", "unlock"} {
		if rest, ok := strings.CutPrefix(l, affix); ok && rest != "" {
			return rest
		}
	}
	for _, affix := range []string{"_open", "-open", "open", "_unlock", "-unlock", "unlock"} {
		if rest, ok := strings.CutSuffix(l, affix); ok && rest != "" {
			return rest
		}
	}
	return open
}

// checkSequences warns about sequences moat refuses: a step repeating the
// one before it or on the port next to it, and two doors (or a door and
// its close) alike.
func (im *importer) checkSequences() {
	seen := map[string]string{}
	for _, od := range im.out {
		for _, s := range []struct {
			key string
			seq []knock.Step
		}{{"sequence", od.sequence}, {"close_sequence", od.closeSeq}} {
			for i := 1; i < len(s.seq); i++ {
				prev, cur := s.seq[i-1], s.seq[i]
				switch {
				case cur == prev:
					od.warnf("%s repeats %s: moat refuses a knock equal to the one before it (a resent packet would count twice); choose another port", s.key, cur)
				case cur.Proto == prev.Proto && (cur.Port == prev.Port+1 || cur.Port+1 == prev.Port):
					od.warnf("%s has %s right after %s: moat refuses a knock next to the one before it (an ordered port sweep sends exactly that); choose ports further apart", s.key, cur, prev)
				}
			}
			if len(s.seq) == 0 {
				continue
			}
			k := fmt.Sprint(s.seq)
			if other, dup := seen[k]; dup {
				od.warnf("%s is the same as %s; moat refuses that: change one", s.key, other)
			}
			seen[k] = fmt.Sprintf("door %q's %s", od.name, s.key)
		}
	}
}

func (od *outDoor) write(b *strings.Builder) {
	steps := func(ss []knock.Step) string {
		q := make([]string, len(ss))
		for i, s := range ss {
			q[i] = knock.QuoteTOML(s.String())
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	strs := func(ss []string) string {
		q := make([]string, len(ss))
		for i, s := range ss {
			q[i] = knock.QuoteTOML(s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	b.WriteString("[[door]]\n")
	fmt.Fprintf(b, "name = %s\n", knock.QuoteTOML(od.name))
	if len(od.sequence) > 0 {
		fmt.Fprintf(b, "sequence = %s\n", steps(od.sequence))
	}
	if od.ots != "" {
		fmt.Fprintf(b, "one_time_sequences = %s\n", knock.QuoteTOML(strings.ToValidUTF8(od.ots, "\uFFFD")))
	}
	fmt.Fprintf(b, "seq_timeout = %s\n", knock.QuoteTOML(durationString(od.seqTimeout)))
	if od.hasTCP {
		if od.tcpflags == "" {
			b.WriteString("# knockd took any TCP flags; moat's default is \"syn\", which knock clients send\n")
		}
		fmt.Fprintf(b, "tcpflags = %s\n", knock.QuoteTOML(od.tcpflags))
	}
	if len(od.open) > 0 {
		fmt.Fprintf(b, "open = %s\n", strs(od.open))
	}
	if od.hasOpenFor {
		fmt.Fprintf(b, "open_for = %s\n", knock.QuoteTOML(durationString(od.openFor)))
	}
	if len(od.closeSeq) > 0 {
		fmt.Fprintf(b, "close_sequence = %s\n", steps(od.closeSeq))
	}
	if len(od.start) > 0 {
		fmt.Fprintf(b, "start_command = %s\n", strs(od.start))
	}
	if len(od.stop) > 0 {
		fmt.Fprintf(b, "stop_command = %s\n", strs(od.stop))
	}
}

// durationString writes whole seconds without time.Duration.String's
// zero units: "25s", "1h", "1h30s".
func durationString(d time.Duration) string {
	if d <= 0 || d%time.Second != 0 {
		return d.String()
	}
	var b strings.Builder
	for _, u := range []struct {
		unit time.Duration
		name string
	}{{time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if n := d / u.unit; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.name)
			d -= n * u.unit
		}
	}
	return b.String()
}

// commentText makes s safe in a TOML comment: valid UTF-8 and no control
// characters but tab, so nothing in a knockd.conf can end the comment.
func commentText(s string) string {
	return strings.Map(func(r rune) rune {
		if r == utf8.RuneError || (r < 0x20 && r != '\t') || r == 0x7f {
			return '?'
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
}

// fwRule is a firewall command that moat's open can replace: accept new
// connections from %IP% to ports, added or deleted.
type fwRule struct {
	add   bool
	v6    bool
	open  []string // "tcp/22", "tcp/8000-8100": sorted, no duplicates
	notes []string // assumptions made in reading it
}

func (r fwRule) same(o fwRule) bool { return r.v6 == o.v6 && slices.Equal(r.open, o.open) }

// parseFirewallCommand recognizes `iptables -A|-I|-D INPUT -s %IP% -p tcp
// --dport 22 -j ACCEPT` and its spellings (ip6tables, long options,
// -m state/conntrack/multiport/comment, --syn, -w), and knockd's knock_add
// helper. ok is false for anything else.
func parseFirewallCommand(cmd string) (fwRule, bool) {
	words, shell, err := shellWords(strings.Trim(cmd, cSpace))
	if err != nil || shell != "" || len(words) == 0 {
		return fwRule{}, false
	}
	switch path.Base(words[0]) {
	case "iptables", "iptables-legacy", "iptables-nft":
		return parseIptables(words[1:], false)
	case "ip6tables", "ip6tables-legacy", "ip6tables-nft":
		return parseIptables(words[1:], true)
	case "knock_add", "knock_helper_ipt.sh":
		return parseKnockHelper(words[1:])
	}
	return fwRule{}, false
}

// splitOptions splits "--opt=value" and "-pvalue" so that every option and its
// value are separate words.
func splitOptions(args []string, withValue string) []string {
	var out []string
	for _, a := range args {
		switch {
		case strings.HasPrefix(a, "--") && strings.Contains(a, "="):
			k, v, _ := strings.Cut(a, "=")
			out = append(out, k, v)
		case len(a) > 2 && a[0] == '-' && a[1] != '-' && strings.IndexByte(withValue, a[1]) >= 0:
			out = append(out, a[:2], a[2:])
		default:
			out = append(out, a)
		}
	}
	return out
}

func parseIptables(args []string, v6 bool) (fwRule, bool) {
	args = splitOptions(args, "ADIspjmtw")
	r := fwRule{v6: v6}
	var op, chain, src, proto, target string
	var ports []string
	i := 0
	next := func() (string, bool) {
		if i+1 >= len(args) {
			return "", false
		}
		i++
		return args[i], true
	}
	isNum := func(s string) bool { _, err := strconv.ParseUint(s, 10, 32); return err == nil }
	for ; i < len(args); i++ {
		var ok bool
		switch a := args[i]; a {
		case "-A", "--append", "-I", "--insert", "-D", "--delete":
			if op != "" {
				return fwRule{}, false
			}
			op = a
			if chain, ok = next(); !ok {
				return fwRule{}, false
			}
			if i+1 < len(args) && isNum(args[i+1]) {
				if a == "-D" || a == "--delete" {
					return fwRule{}, false // a rule by number: which one is unknown
				}
				i++ // -I CHAIN RULENUM
			}
		case "-s", "--source", "--src":
			if src, ok = next(); !ok {
				return fwRule{}, false
			}
		case "-p", "--protocol":
			if proto, ok = next(); !ok {
				return fwRule{}, false
			}
			proto = strings.ToLower(proto)
		case "--dport", "--destination-port", "--dports", "--destination-ports":
			v, ok := next()
			if !ok {
				return fwRule{}, false
			}
			ports = append(ports, strings.Split(v, ",")...)
		case "-m", "--match":
			m, ok := next()
			if !ok || !slices.Contains([]string{"tcp", "udp", "multiport", "state", "conntrack", "comment"}, m) {
				return fwRule{}, false
			}
		case "--state", "--ctstate":
			v, ok := next()
			if !ok || !slices.Contains(strings.Split(v, ","), "NEW") {
				return fwRule{}, false
			}
		case "--comment":
			if _, ok := next(); !ok {
				return fwRule{}, false
			}
		case "--syn":
			// New connections only: what a grant is.
		case "-j", "--jump":
			if target, ok = next(); !ok {
				return fwRule{}, false
			}
		case "-w", "--wait":
			if i+1 < len(args) && isNum(args[i+1]) {
				i++
			}
		case "-W", "--wait-interval":
			if _, ok := next(); !ok {
				return fwRule{}, false
			}
		case "-t", "--table":
			if t, ok := next(); !ok || t != "filter" {
				return fwRule{}, false
			}
		default:
			return fwRule{}, false
		}
	}
	if op == "" || chain != "INPUT" || target != "ACCEPT" || !fromKnocker(src) || len(ports) == 0 {
		return fwRule{}, false
	}
	if proto == "" {
		// knockd's own man page writes `-s %IP% --dport 22` with no -p.
		proto = "tcp"
		r.notes = append(r.notes, "its iptables command has --dport without -p, which iptables refuses, so knockd opened nothing; read as -p tcp")
	}
	r.add = op != "-D" && op != "--delete"
	return r.withPorts(proto, ports)
}

// parseKnockHelper reads knockd's knock_helper_ipt.sh options (Debian's
// example config calls it as /usr/local/sbin/knock_add): -a|-i|-x, -f
// SRC, -d PORT, -p PROTO (tcp), -c CHAIN (INPUT).
func parseKnockHelper(args []string) (fwRule, bool) {
	args = splitOptions(args, "fdpc")
	var op, src, port string
	proto, chain := "tcp", "INPUT"
	for i := 0; i < len(args); i++ {
		val := func() (string, bool) {
			if i+1 >= len(args) {
				return "", false
			}
			i++
			return args[i], true
		}
		var ok = true
		switch args[i] {
		case "-a", "--append", "-i", "--insert":
			op = "add"
		case "-x", "--delete":
			op = "del"
		case "-f", "--srcaddr":
			src, ok = val()
		case "-d", "--dstport":
			port, ok = val()
		case "-p", "--proto":
			proto, ok = val()
		case "-c", "--chain":
			chain, ok = val()
		case "-v", "--verbose":
		default:
			if !strings.HasPrefix(args[i], "-m") && !strings.HasPrefix(args[i], "--comment") {
				return fwRule{}, false // -t (a dry run), -h, or unknown
			}
		}
		if !ok {
			return fwRule{}, false
		}
	}
	if op == "" || chain != "INPUT" || !fromKnocker(src) || port == "" {
		return fwRule{}, false
	}
	r := fwRule{add: op == "add"}
	return r.withPorts(strings.ToLower(proto), []string{port})
}

func fromKnocker(src string) bool {
	return src == "%IP%" || src == "%IP%/32" || src == "%IP%/128"
}

// servicePorts are the names iptables most often meets in /etc/services.
var servicePorts = map[string]uint16{
	"ssh": 22, "http": 80, "https": 443, "smtp": 25, "submission": 587, "smtps": 465,
	"imap": 143, "imaps": 993, "pop3": 110, "pop3s": 995, "domain": 53, "ftp": 21,
	"ms-wbt-server": 3389, "openvpn": 1194, "mysql": 3306, "postgresql": 5432,
}

func (r fwRule) withPorts(proto string, ports []string) (fwRule, bool) {
	if proto != "tcp" && proto != "udp" {
		return fwRule{}, false
	}
	port := func(s string) (uint16, bool) {
		if n, ok := servicePorts[s]; ok {
			return n, true
		}
		n, err := strconv.ParseUint(s, 10, 16)
		return uint16(n), err == nil && n > 0
	}
	for _, p := range ports {
		lo, hi, isRange := strings.Cut(p, ":")
		from, ok := port(lo)
		if !ok {
			return fwRule{}, false
		}
		to := from
		if isRange {
			if to, ok = port(hi); !ok || to < from {
				return fwRule{}, false
			}
		}
		s := fmt.Sprintf("%s/%d", proto, from)
		if to != from {
			s += fmt.Sprintf("-%d", to)
		}
		r.open = append(r.open, s)
	}
	slices.Sort(r.open)
	r.open = slices.Compact(r.open)
	return r, len(r.open) > 0
}

// shellWords splits s into words as sh would, for commands made of plain
// words, quotes and backslashes only. shell names the first thing that
// needs a real shell (an operator, a redirection, an expansion, a glob, a
// comment, a variable assignment); err is for unbalanced quotes.
func shellWords(s string) (words []string, shell string, err error) {
	var cur strings.Builder
	inWord := false
	end := func() {
		if inWord {
			words = append(words, cur.String())
			cur.Reset()
			inWord = false
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			end()
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, "", errors.New("a ' is not closed")
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			j := i + 1
			for ; j < len(s) && s[j] != '"'; j++ {
				switch s[j] {
				case '$', '`':
					return nil, fmt.Sprintf("%q inside double quotes", s[j]), nil
				case '\\':
					if j+1 < len(s) && strings.IndexByte("\\\"$`\n", s[j+1]) >= 0 {
						j++
						if s[j] != '\n' {
							cur.WriteByte(s[j])
						}
						continue
					}
				}
				cur.WriteByte(s[j])
			}
			if j >= len(s) {
				return nil, "", errors.New(`a " is not closed`)
			}
			i = j
			inWord = true
		case c == '\\':
			if i+1 >= len(s) {
				return nil, `a \ at the end`, nil
			}
			i++
			if s[i] != '\n' {
				cur.WriteByte(s[i])
				inWord = true
			}
		case strings.IndexByte("|&;<>()$`*?[]{}", c) >= 0:
			return nil, fmt.Sprintf("%q", c), nil
		case (c == '#' || c == '~') && !inWord:
			return nil, fmt.Sprintf("%q", c), nil
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	end()
	if len(words) > 0 && isAssignment(words[0]) {
		return nil, "a variable assignment before the command", nil
	}
	return words, "", nil
}

// isAssignment reports whether w is NAME=value, which sh takes as setting
// an environment variable, not as the command.
func isAssignment(w string) bool {
	name, _, ok := strings.Cut(w, "=")
	if !ok || name == "" || name[0] >= '0' && name[0] <= '9' {
		return false
	}
	for _, c := range name {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

package config

import (
	_ "embed"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/BurntSushi/toml"
)

// DefaultPath is where moat looks for its configuration.
const DefaultPath = "/etc/moat/moat.toml"

//go:embed default.toml
var defaultTOML []byte

// Default returns the embedded default configuration file, the one used when
// DefaultPath does not exist.
func Default() []byte {
	return append([]byte(nil), defaultTOML...)
}

// Error is one problem found in a configuration: where it is, which key, and
// what is wanted. Parse returns one or more of them (joined with errors.Join).
type Error struct {
	File  string // the name given to Parse; empty from Validate
	Line  int    // 1-based; 0 when not known
	Key   string // "firewall.open[1]"; empty for some syntax errors
	Value string // the offending value as written in TOML ("\"tcp/70000\""), may be empty
	Msg   string // what is wrong and what is wanted
	Err   error  // the underlying error, if any
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	if e.Line > 0 {
		b.WriteString("line ")
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		if e.Value != "" {
			b.WriteByte(' ')
			b.WriteString(e.Value)
		}
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return oneLine(b.String())
}

func (e *Error) Unwrap() error { return e.Err }

// Load reads and parses the configuration file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("config file %s does not exist: %w", path, err)
		}
		return nil, fmt.Errorf("read config file: %w", err)
	}
	return Parse(data, path)
}

// LoadOrDefault loads path. When path does not exist and was not asked for
// explicitly (the admin relies on DefaultPath), it parses the embedded default
// instead, so moat works out of the box. The string describes where the
// configuration came from, for logs and status.
func LoadOrDefault(path string, explicit bool) (*Config, string, error) {
	if !explicit {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			const src = "embedded default"
			c, err := Parse(defaultTOML, src)
			return c, src, err
		}
	}
	c, err := Load(path)
	return c, path, err
}

// Parse decodes and validates a configuration. name (usually the file's
// path) prefixes every error. All problems found are returned, ordered by
// line: decoding problems (wrong types, malformed ports or addresses, unknown
// keys) first; only when there are none are the values checked against each
// other (ranges, duplicates, overlaps).
func Parse(data []byte, name string) (*Config, error) {
	src := string(data)
	var root map[string]any
	if _, err := toml.Decode(src, &root); err != nil {
		return nil, syntaxError(name, src, err)
	}
	d := &decoder{cfg: defaults()}
	d.document(root)
	probs := d.problems
	if len(probs) == 0 {
		probs = d.cfg.problems()
	}
	if len(probs) > 0 {
		return nil, joinProblems(name, scanPositions(src), probs)
	}
	return &d.cfg, nil
}

// Validate checks a Config built in code the same way Parse checks a file.
// Errors name the key but, having no file, no line.
func (c *Config) Validate() error {
	probs := c.problems()
	if len(probs) == 0 {
		return nil
	}
	return joinProblems("", nil, probs)
}

func syntaxError(name, src string, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		msg := "invalid TOML: " + oneLine(pe.Message)
		if pe.LastKey != "" {
			msg = fmt.Sprintf("invalid TOML after key %s: %s", oneLine(pe.LastKey), oneLine(pe.Message))
		}
		line := pe.Position.Line
		if line <= 0 { // the decoder leaves it out for some errors at the end of input
			line = 1 + strings.Count(src[:min(max(pe.Position.Start, 0), len(src))], "\n")
		}
		return &Error{File: name, Line: line, Msg: msg, Err: err}
	}
	return &Error{File: name, Msg: "invalid TOML: " + oneLine(err.Error()), Err: err}
}

// oneLine escapes control characters (the decoder quotes input verbatim) so
// each problem stays on one line.
func oneLine(s string) string {
	if !strings.ContainsFunc(s, unicode.IsControl) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unicode.IsControl(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// problem is an error before it knows its file and line.
type problem struct {
	path  string // key path, as positions knows it
	value string // the value as TOML, or ""
	msg   string
}

func joinProblems(name string, pos positions, probs []problem) error {
	errs := make([]*Error, len(probs))
	for i, p := range probs {
		errs[i] = &Error{File: name, Line: pos.line(p.path), Key: p.path, Value: p.value, Msg: p.msg}
	}
	// Problems arrive in a fixed order (sorted keys, then array order);
	// a stable sort by line keeps it within a line.
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
	if len(errs) == 1 {
		return errs[0]
	}
	joined := make([]error, len(errs))
	for i, e := range errs {
		joined[i] = e
	}
	return errors.Join(joined...)
}

// defaults is the configuration with every key absent.
func defaults() Config {
	return Config{
		Daemon: Daemon{
			StateDir:       "/var/lib/moat",
			Socket:         "/run/moat/moat.sock",
			OnExit:         "keep",
			ReconcileEvery: 5 * time.Minute,
			LogLevel:       "info",
		},
		Firewall: Firewall{
			Interfaces:     nil,
			Open:           []PortSpec{{Proto: TCP, SSH: true}},
			Allow:          nil,
			ClosedResponse: "drop",
			Ping:           false,
			Stealth:        true,
			LogGroup:       7,
			LogRate:        1000,
			LogBurst:       2000,
			Forward:        "untouched",
			Output:         "accept",

			KnockRatePerSource: DefaultKnockRatePerSource,
			KnockRate:          DefaultKnockRate,
		},
		Login:   defaultLogin(),
		Scan:    defaultScan(),
		Metrics: defaultMetrics(),
		SPA:     defaultSPA(),
		Report:  defaultReport(),
		Alert:   defaultAlert(),
		Fleet:   defaultFleet(),
	}
}

// The accepted values of the enumerated keys, shared by decoding messages
// and Validate.
var (
	onExitValues         = []string{"keep", "remove"}
	logLevelValues       = []string{"debug", "info", "warn", "error"}
	closedResponseValues = []string{"drop", "reject"}
	forwardValues        = []string{"untouched", "ban", "drop"}
)

// schema is the one list of the tables and keys moat knows: decoding walks
// it, unknown-key errors and suggestions come from it, and the test that
// examples/moat.toml documents every key reads it.
var schema = []table{
	{"daemon", []key{
		{"state_dir", func(d *decoder, p string, v any) { d.absPath(p, v, &d.cfg.Daemon.StateDir) }},
		{"socket", func(d *decoder, p string, v any) { d.absPath(p, v, &d.cfg.Daemon.Socket) }},
		{"on_exit", func(d *decoder, p string, v any) { d.enum(p, v, onExitValues, &d.cfg.Daemon.OnExit) }},
		{"reconcile_every", func(d *decoder, p string, v any) { d.duration(p, v, &d.cfg.Daemon.ReconcileEvery) }},
		{"log_level", func(d *decoder, p string, v any) { d.enum(p, v, logLevelValues, &d.cfg.Daemon.LogLevel) }},
	}},
	{"firewall", append([]key{
		{"interfaces", func(d *decoder, p string, v any) { d.interfaces(p, v) }},
		{"open", func(d *decoder, p string, v any) {
			d.portList(p, v, `a list like ["ssh", "tcp/443", "udp/53"]`, portForms, true, &d.cfg.Firewall.Open)
		}},
		{"allow", func(d *decoder, p string, v any) { d.allow(p, v) }},
		{"closed_response", func(d *decoder, p string, v any) {
			d.enum(p, v, closedResponseValues, &d.cfg.Firewall.ClosedResponse)
		}},
		{"ping", func(d *decoder, p string, v any) { d.bool(p, v, &d.cfg.Firewall.Ping) }},
		{"stealth", func(d *decoder, p string, v any) { d.bool(p, v, &d.cfg.Firewall.Stealth) }},
		{"log_group", func(d *decoder, p string, v any) {
			if n, ok := d.uint(p, v, 0, math.MaxUint16); ok {
				d.cfg.Firewall.LogGroup = uint16(n)
			}
		}},
		{"log_rate", func(d *decoder, p string, v any) {
			if n, ok := d.uint(p, v, 1, math.MaxUint32); ok {
				d.cfg.Firewall.LogRate = uint32(n)
			}
		}},
		{"log_burst", func(d *decoder, p string, v any) {
			if n, ok := d.uint(p, v, 1, math.MaxUint32); ok {
				d.cfg.Firewall.LogBurst = uint32(n)
			}
		}},
		{"forward", func(d *decoder, p string, v any) { d.enum(p, v, forwardValues, &d.cfg.Firewall.Forward) }},
		{"knock_rate_per_source", func(d *decoder, p string, v any) {
			if n, ok := d.uint(p, v, 1, 1_000_000); ok {
				d.cfg.Firewall.KnockRatePerSource = uint32(n)
			}
		}},
		{"knock_rate", func(d *decoder, p string, v any) {
			if n, ok := d.uint(p, v, 1, 100_000_000); ok {
				d.cfg.Firewall.KnockRate = uint32(n)
			}
		}},
	}, scriptKeys...)},
	{"login", loginKeys},
	{"scan", scanKeys},
	{"doors", []key{
		{"log_file", func(d *decoder, p string, v any) { d.absPath(p, v, &d.cfg.DoorLog.LogFile) }},
	}},
	{"metrics", metricsKeys},
	{"spa", spaKeys},
	{"report", reportKeys},
	{"alert", alertKeys},
	{"page", pageKeys},
	{"fleet", fleetKeys},
}

type table struct {
	name string
	keys []key
}

type key struct {
	name string
	set  func(d *decoder, path string, v any)
}

// arrayTables lists the keys that are arrays of tables ([[login.rule]]),
// with the keys of each of their tables.
func arrayTables() map[string][]key {
	return map[string][]key{"login.rule": loginRuleKeys, "door": doorKeys, "spa.client": spaClientKeys,
		"scan.danger": scanDangerKeys, "alert.webhook": alertWebhookKeys}
}

// knownKeys lists every key as "table.key", in schema order.
func knownKeys() []string {
	var out []string
	for _, t := range schema {
		for _, k := range t.keys {
			sub, ok := arrayTables()[t.name+"."+k.name]
			if !ok {
				out = append(out, t.name+"."+k.name)
				continue
			}
			for _, sk := range sub {
				out = append(out, t.name+"."+k.name+"[0]."+sk.name)
			}
		}
	}
	for _, k := range doorKeys {
		out = append(out, "door[0]."+k.name)
	}
	for _, k := range blocklistKeys {
		out = append(out, "blocklist[0]."+k.name)
	}
	return out
}

// decoder turns the generic TOML tree into a Config, collecting problems
// instead of stopping at the first.
type decoder struct {
	cfg      Config
	problems []problem
}

func (d *decoder) bad(path string, v any, format string, args ...any) {
	d.problems = append(d.problems, problem{path: path, value: literal(v), msg: fmt.Sprintf(format, args...)})
}

// badType reports a value of the wrong TOML type; scalars are shown as
// written, arrays and tables are named.
func (d *decoder) badType(path string, v any, want string) {
	if literal(v) == "" {
		d.bad(path, nil, "want %s, not %s", want, typeName(v))
		return
	}
	d.bad(path, v, "want %s", want)
}

func (d *decoder) document(root map[string]any) {
	for _, name := range sortedKeys(root) {
		if name == "blocklist" {
			d.cfg.Blocklists = nil
			d.tables("blocklist", root[name], blocklistKeys, func() { d.cfg.Blocklists = append(d.cfg.Blocklists, defaultBlocklist()) })
			continue
		}
		if name == "door" {
			d.cfg.Doors = nil
			d.tables("door", root[name], doorKeys, func() { d.cfg.Doors = append(d.cfg.Doors, defaultDoor()) })
			continue
		}
		t := findTable(name)
		if t == nil {
			d.bad(quoteKey(name), nil, "unknown section%s; moat knows %s", suggest(name, append(tableNames(), "door", "blocklist")), listTables())
			continue
		}
		m, ok := root[name].(map[string]any)
		if _, list := root[name].([]map[string]any); name == "doors" && list {
			d.bad(name, nil, "a door is [[door]], singular; [doors] holds what every door shares, like log_file")
			continue
		}
		if !ok {
			d.badType(name, root[name], "a table: write ["+name+"] on a line of its own and its keys below it")
			continue
		}
		for _, k := range sortedKeys(m) {
			path := joinKey(name, k)
			kd := t.find(k)
			if kd == nil {
				d.bad(path, nil, "unknown key%s; [%s] has %s", suggest(k, t.keyNames()), name, strings.Join(t.keyNames(), ", "))
				continue
			}
			kd.set(d, path, m[k])
		}
	}
}

func findTable(name string) *table {
	for i := range schema {
		if schema[i].name == name {
			return &schema[i]
		}
	}
	return nil
}

func (t *table) find(name string) *key {
	for i := range t.keys {
		if t.keys[i].name == name {
			return &t.keys[i]
		}
	}
	return nil
}

func (t *table) keyNames() []string {
	out := make([]string, len(t.keys))
	for i, k := range t.keys {
		out[i] = k.name
	}
	return out
}

func tableNames() []string {
	out := make([]string, len(schema))
	for i, t := range schema {
		out[i] = t.name
	}
	return out
}

func listTables() string {
	names := tableNames()
	for i, n := range names {
		names[i] = "[" + n + "]"
	}
	names = append(names, "[[door]]", "[[blocklist]]")
	return orList(names, "and")
}

// suggest returns `; did you mean "x"?` for a near miss among names, else "".
func suggest(got string, names []string) string {
	best, bestDist := "", 3 // more than two edits is not a typo
	for _, n := range names {
		if strings.EqualFold(n, got) {
			return fmt.Sprintf(" (keys are case-sensitive: did you mean %q?)", n)
		}
		if dist := editDistance(strings.ToLower(got), n); dist < bestDist {
			best, bestDist = n, dist
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance, capped at a short input so a
// number decodes an integer or a float, such as a ban time multiplier.
func (d *decoder) number(path string, v any, dst *float64) {
	switch x := v.(type) {
	case int64:
		*dst = float64(x)
	case float64:
		*dst = x
	default:
		d.badType(path, v, "a number like 2 or 1.5")
	}
}

// fuzzed megabyte-long key costs nothing.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return math.MaxInt
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func sortedKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (d *decoder) absPath(path string, v any, dst *string) {
	s, ok := v.(string)
	if !ok {
		d.badType(path, v, `an absolute path like "/var/lib/moat"`)
		return
	}
	*dst = s // Validate checks it is absolute, so code-built configs get the same check
}

func (d *decoder) enum(path string, v any, values []string, dst *string) {
	s, ok := v.(string)
	if !ok {
		d.badType(path, v, quotedOr(values))
		return
	}
	*dst = s
}

func (d *decoder) duration(path string, v any, dst *time.Duration) {
	s, ok := v.(string)
	if !ok {
		d.badType(path, v, `a duration like "30s"`)
		return
	}
	dur, err := ParseDuration(s)
	if err != nil {
		d.bad(path, v, `want a duration like "30s" (units: ms, s, m, h, d, w)`)
		return
	}
	*dst = dur
}

func (d *decoder) bool(path string, v any, dst *bool) {
	b, ok := v.(bool)
	if !ok {
		d.badType(path, v, "true or false (no quotes)")
		return
	}
	*dst = b
}

func (d *decoder) uint(path string, v any, lo, hi int64) (int64, bool) {
	n, ok := v.(int64)
	if !ok {
		d.badType(path, v, fmt.Sprintf("a whole number from %d to %d", lo, hi))
		return 0, false
	}
	if n < lo || n > hi {
		d.bad(path, v, "out of range; want %d to %d", lo, hi)
		return 0, false
	}
	return n, true
}

// list checks v is an array and calls each for every element with its path.
func (d *decoder) list(path string, v any, want string, each func(path string, elem any)) bool {
	arr, ok := v.([]any)
	if !ok {
		if tables, isTables := v.([]map[string]any); isTables {
			// An array of tables where a list of strings belongs.
			for i, t := range tables {
				each(joinIndex(path, i), t)
			}
			return true
		}
		d.badType(path, v, want)
		return false
	}
	for i, e := range arr {
		each(joinIndex(path, i), e)
	}
	return true
}

func (d *decoder) interfaces(path string, v any) {
	var names []string
	ok := d.list(path, v, `a list of interface names like ["eth0", "wg*"]`, func(p string, e any) {
		s, ok := e.(string)
		if !ok {
			d.badType(p, e, `an interface name like "eth0" or a prefix like "eth*"`)
			return
		}
		names = append(names, s)
	})
	if ok {
		d.cfg.Firewall.Interfaces = names
	}
}

// portList decodes a list of port specs ("tcp/443", "udp/137-139", and
// "ssh" when ssh is true); example and form say what is wanted.
func (d *decoder) portList(path string, v any, example, form string, ssh bool, dst *[]PortSpec) {
	var specs []PortSpec
	ok := d.list(path, v, example, func(p string, e any) {
		s, ok := e.(string)
		if !ok || !ssh && s == "ssh" {
			d.badType(p, e, form)
			return
		}
		spec, err := ParsePortSpec(s)
		if err != nil {
			d.bad(p, e, "%v", err)
			return
		}
		specs = append(specs, spec)
	})
	if ok {
		*dst = specs
	}
}

func (d *decoder) allow(path string, v any) { d.prefixes(path, v, &d.cfg.Firewall.Allow) }

// literal renders a scalar TOML value as it would be written, shortened when
// long; "" for arrays, tables and nil.
func literal(v any) string {
	const max = 60
	var s string
	switch x := v.(type) {
	case string:
		if len(x) > max {
			x = x[:max] + "..."
		}
		s = strconv.Quote(x)
	case int64:
		s = strconv.FormatInt(x, 10)
	case float64:
		s = strconv.FormatFloat(x, 'g', -1, 64)
	case bool:
		s = strconv.FormatBool(x)
	case time.Time:
		s = x.Format(time.RFC3339Nano)
	}
	return s
}

func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case time.Time:
		return "a date"
	case []any:
		return "a list"
	case []map[string]any:
		return "a list of tables"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("a %T", v)
}

// quotedOr renders ["a", "b", "c"] as `"a", "b" or "c"`.
func quotedOr(values []string) string {
	q := make([]string, len(values))
	for i, v := range values {
		q[i] = strconv.Quote(v)
	}
	return orList(q, "or")
}

func orList(items []string, conj string) string {
	switch len(items) {
	case 0:
		return ""
	case 1:
		return items[0]
	}
	return strings.Join(items[:len(items)-1], ", ") + " " + conj + " " + items[len(items)-1]
}

// absPathOK reports whether p is usable as an absolute path.
func absPathOK(p string) bool {
	return filepath.IsAbs(p) && !strings.ContainsRune(p, 0)
}

package config

import (
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/moat-fw/moat/internal/blocklist"
)

// Blocklist is one [[blocklist]]: a public (or local) list of addresses
// and networks moat drops, kept in sets of its own (see docs/blocklist.md).
type Blocklist struct {
	// Name is name: lowercase letters, digits and _, at most 24 bytes; it
	// names the list's kernel sets and counter.
	Name string
	// Source is source: an absolute file path, or an https:// URL.
	Source string
	// Refresh is refresh: how often the source is read again. Default "1h".
	Refresh time.Duration
	// Format is format: plain, firehol, spamhaus, dshield or crowdsec.
	// Default "plain".
	Format string
	// CAFile is ca_file: PEM certificates to trust for an https source
	// instead of the system's (a private mirror, a test CA). Optional.
	CAFile string
	// MaxSize is max_size: the largest download or file, in bytes.
	// Default 64 MiB.
	MaxSize int64
}

// Blocklist defaults and limits.
const (
	DefaultBlocklistRefresh = time.Hour
	DefaultBlocklistMaxSize = 64 << 20
	minBlocklistRefresh     = time.Minute
)

func defaultBlocklist() Blocklist {
	return Blocklist{Refresh: DefaultBlocklistRefresh, Format: string(blocklist.Plain), MaxSize: DefaultBlocklistMaxSize}
}

// IsURL reports whether the source is downloaded rather than read.
func (b *Blocklist) IsURL() bool { return strings.HasPrefix(b.Source, "https://") }

func (d *decoder) lastBlocklist() *Blocklist { return &d.cfg.Blocklists[len(d.cfg.Blocklists)-1] }

var blocklistKeys = []key{
	{"name", func(d *decoder, p string, v any) { d.str(p, v, &d.lastBlocklist().Name) }},
	{"source", func(d *decoder, p string, v any) { d.str(p, v, &d.lastBlocklist().Source) }},
	{"refresh", func(d *decoder, p string, v any) { d.duration(p, v, &d.lastBlocklist().Refresh) }},
	{"format", func(d *decoder, p string, v any) { d.str(p, v, &d.lastBlocklist().Format) }},
	{"ca_file", func(d *decoder, p string, v any) { d.absPath(p, v, &d.lastBlocklist().CAFile) }},
	{"max_size", func(d *decoder, p string, v any) {
		if n, ok := d.uint(p, v, 1024, 1<<32); ok {
			d.lastBlocklist().MaxSize = n
		}
	}},
}

var blocklistName = regexp.MustCompile(`^[a-z0-9_]{1,24}$`)

func (c *Config) blocklistProblems() []problem {
	var out []problem
	bad := func(path, value, format string, args ...any) {
		out = append(out, problem{path: path, value: value, msg: fmt.Sprintf(format, args...)})
	}
	q := strconv.Quote
	seen := map[string]int{}
	for i := range c.Blocklists {
		b := &c.Blocklists[i]
		at := func(k string) string { return joinKey(joinIndex("blocklist", i), k) }
		switch {
		case !blocklistName.MatchString(b.Name):
			bad(at("name"), q(b.Name), "want 1 to 24 lowercase letters, digits and _, like \"firehol_level1\"")
		default:
			if j, dup := seen[b.Name]; dup {
				bad(at("name"), q(b.Name), "the name of blocklist[%d] too; names must differ", j)
			}
			seen[b.Name] = i
		}
		switch {
		case b.IsURL():
			if u, err := url.Parse(b.Source); err != nil || u.Host == "" {
				bad(at("source"), q(b.Source), "not a URL moat can fetch")
			}
		case strings.HasPrefix(b.Source, "http://"):
			bad(at("source"), q(b.Source), "want https://: a list fetched in clear can be altered on the way")
		case !absPathOK(b.Source):
			bad(at("source"), q(b.Source), `want an absolute file path like "/etc/moat/drop.txt" or an https:// URL`)
		}
		if b.Refresh < minBlocklistRefresh {
			bad(at("refresh"), q(b.Refresh.String()), `too short; want at least "1m" (default "1h")`)
		}
		if !blocklist.Known(blocklist.Format(b.Format)) {
			bad(at("format"), q(b.Format), "want %s", quotedOr(formatNames()))
		}
		if b.CAFile != "" && !absPathOK(b.CAFile) {
			bad(at("ca_file"), q(b.CAFile), `want an absolute path like "/etc/moat/mirror-ca.pem"`)
		}
		if b.MaxSize < 1024 {
			bad(at("max_size"), strconv.FormatInt(b.MaxSize, 10), "want at least 1024 bytes (default 64 MiB)")
		}
	}
	return out
}

func formatNames() []string {
	var out []string
	for _, f := range blocklist.Formats {
		out = append(out, string(f))
	}
	return out
}

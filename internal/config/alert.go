package config

import (
	"fmt"
	"net/mail"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Alert configures alerts (the [alert] table): webhooks, syslog and
// e-mail, told of bans, scans and doors. Off until a destination is set.
type Alert struct {
	// Queue is queue: events waiting to be sent at most; more are dropped
	// and counted, so that a slow destination never holds up a guard.
	Queue int
	// PerAddress is per_address: alerts about one address, "3/1h" (a
	// burst of 3, one more every 20 minutes); the rest are counted and
	// mentioned in the next alert.
	PerAddress Rate
	// Total is total: alerts in all, "60/1h".
	Total    Rate
	Webhooks []AlertWebhook // [[alert.webhook]]
	Syslog   *AlertSyslog   // [alert.syslog]; nil: none
	Email    *AlertEmail    // [alert.email]; nil: none
}

// Rate is a token bucket: N alerts at once, refilled at N per Per.
type Rate struct {
	N   int
	Per time.Duration
}

func (r Rate) String() string { return strconv.Itoa(r.N) + "/" + r.Per.String() }

// AlertFilter picks the events a destination is told of. Every key is
// optional; an event must pass all that are set.
type AlertFilter struct {
	Kinds       []string // kinds: "ban", "unban", "scan", "door" (default: ban, scan, door)
	MinLevel    int      // min_level: scan events below this danger level are left out (default 1)
	Origins     []string // origins: bans and unbans by these origins only ("scan", "login", "manual", "fleet"...)
	DoorActions []string // door_actions: door events with these actions only ("opened", "closed", "expired")
	Fleet       bool     // fleet: only bans that came from, or were shared with, the fleet
}

// AlertWebhook is one [[alert.webhook]]: a JSON POST of each event.
type AlertWebhook struct {
	URL       string        // url: http:// or https://
	TokenFile string        // token_file: a file holding a bearer token (sent as Authorization: Bearer)
	Timeout   time.Duration // timeout: one attempt's limit
	Retries   int           // retries: attempts after the first, with exponential backoff
	Filter    AlertFilter
}

// AlertSyslog is [alert.syslog]: one line per event to the local syslog
// socket.
type AlertSyslog struct {
	Socket   string // socket: the local syslog socket (default "/dev/log")
	Format   string // format: "rfc5424" (default) or "rfc3164"
	Facility string // facility: "auth" (default), "authpriv", "daemon", "local0".."local7"...
	Tag      string // tag: the app name (default "moat")
	Filter   AlertFilter
}

// AlertEmail is [alert.email]: a mail per event through an SMTP relay, as
// psad mails its alerts.
type AlertEmail struct {
	Host         string   // host: the relay
	Port         int      // port: 587 by default
	StartTLS     bool     // starttls: require STARTTLS (default true); false sends in clear, for a relay on localhost
	User         string   // user: for SMTP AUTH PLAIN; empty: no authentication
	PasswordFile string   // password_file: a file holding the password
	From         string   // from
	To           []string // to
	Filter       AlertFilter
}

// Enabled reports whether any destination is set.
func (a *Alert) Enabled() bool { return len(a.Webhooks) > 0 || a.Syslog != nil || a.Email != nil }

// AlertKinds are the event kinds a filter may name.
var AlertKinds = []string{"ban", "unban", "scan", "door"}

var (
	syslogFormats    = []string{"rfc5424", "rfc3164"}
	syslogFacilities = []string{"kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp",
		"local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7"}
)

// SyslogFacility is the facility's number, or -1.
func SyslogFacility(name string) int {
	if name == "authpriv" {
		return 10
	}
	i := slices.Index(syslogFacilities, name)
	switch {
	case i < 0:
		return -1
	case i < 10:
		return i
	case i == 11:
		return 11 // ftp
	}
	return 16 + i - 12 // local0..7
}

func defaultAlert() Alert {
	return Alert{Queue: 256, PerAddress: Rate{3, time.Hour}, Total: Rate{60, time.Hour}}
}

func defaultFilter() AlertFilter {
	return AlertFilter{Kinds: []string{"ban", "scan", "door"}, MinLevel: 1}
}

var alertKeys = []key{
	{"queue", func(d *decoder, p string, v any) {
		if n, ok := d.uint(p, v, 1, 100_000); ok {
			d.cfg.Alert.Queue = int(n)
		}
	}},
	{"per_address", func(d *decoder, p string, v any) { d.rate(p, v, &d.cfg.Alert.PerAddress) }},
	{"total", func(d *decoder, p string, v any) { d.rate(p, v, &d.cfg.Alert.Total) }},
	{"webhook", func(d *decoder, p string, v any) {
		d.cfg.Alert.Webhooks = nil
		d.tables(p, v, alertWebhookKeys, func() {
			d.cfg.Alert.Webhooks = append(d.cfg.Alert.Webhooks, AlertWebhook{Timeout: 10 * time.Second, Retries: 4, Filter: defaultFilter()})
		})
	}},
	{"syslog", func(d *decoder, p string, v any) {
		d.cfg.Alert.Syslog = &AlertSyslog{Socket: "/dev/log", Format: "rfc5424", Facility: "auth", Tag: "moat", Filter: defaultFilter()}
		d.subtable(p, v, alertSyslogKeys)
	}},
	{"email", func(d *decoder, p string, v any) {
		d.cfg.Alert.Email = &AlertEmail{Port: 587, StartTLS: true, Filter: defaultFilter()}
		d.subtable(p, v, alertEmailKeys)
	}},
}

func (d *decoder) lastWebhook() *AlertWebhook {
	return &d.cfg.Alert.Webhooks[len(d.cfg.Alert.Webhooks)-1]
}

var alertWebhookKeys = append([]key{
	{"url", func(d *decoder, p string, v any) { d.str(p, v, &d.lastWebhook().URL) }},
	{"token_file", func(d *decoder, p string, v any) { d.absPath(p, v, &d.lastWebhook().TokenFile) }},
	{"timeout", func(d *decoder, p string, v any) { d.duration(p, v, &d.lastWebhook().Timeout) }},
	{"retries", func(d *decoder, p string, v any) {
		if n, ok := d.uint(p, v, 0, 20); ok {
			d.lastWebhook().Retries = int(n)
		}
	}},
}, filterKeys(func(d *decoder) *AlertFilter { return &d.lastWebhook().Filter })...)

var alertSyslogKeys = append([]key{
	{"socket", func(d *decoder, p string, v any) { d.absPath(p, v, &d.cfg.Alert.Syslog.Socket) }},
	{"format", func(d *decoder, p string, v any) { d.enum(p, v, syslogFormats, &d.cfg.Alert.Syslog.Format) }},
	{"facility", func(d *decoder, p string, v any) { d.enum(p, v, syslogFacilities, &d.cfg.Alert.Syslog.Facility) }},
	{"tag", func(d *decoder, p string, v any) { d.str(p, v, &d.cfg.Alert.Syslog.Tag) }},
}, filterKeys(func(d *decoder) *AlertFilter { return &d.cfg.Alert.Syslog.Filter })...)

var alertEmailKeys = append([]key{
	{"host", func(d *decoder, p string, v any) { d.str(p, v, &d.cfg.Alert.Email.Host) }},
	{"port", func(d *decoder, p string, v any) {
		if n, ok := d.uint(p, v, 1, 65535); ok {
			d.cfg.Alert.Email.Port = int(n)
		}
	}},
	{"starttls", func(d *decoder, p string, v any) { d.bool(p, v, &d.cfg.Alert.Email.StartTLS) }},
	{"user", func(d *decoder, p string, v any) { d.str(p, v, &d.cfg.Alert.Email.User) }},
	{"password_file", func(d *decoder, p string, v any) { d.absPath(p, v, &d.cfg.Alert.Email.PasswordFile) }},
	{"from", func(d *decoder, p string, v any) { d.str(p, v, &d.cfg.Alert.Email.From) }},
	{"to", func(d *decoder, p string, v any) {
		d.strs(p, v, `a list like ["admin@example.org"]`, &d.cfg.Alert.Email.To)
	}},
}, filterKeys(func(d *decoder) *AlertFilter { return &d.cfg.Alert.Email.Filter })...)

// filterKeys are the filter's keys in every destination's table.
func filterKeys(f func(d *decoder) *AlertFilter) []key {
	return []key{
		{"kinds", func(d *decoder, p string, v any) { d.strs(p, v, `a list like ["ban", "scan"]`, &f(d).Kinds) }},
		{"min_level", func(d *decoder, p string, v any) {
			if n, ok := d.uint(p, v, 1, 5); ok {
				f(d).MinLevel = int(n)
			}
		}},
		{"origins", func(d *decoder, p string, v any) {
			d.strs(p, v, `a list like ["scan", "login", "fleet"]`, &f(d).Origins)
		}},
		{"door_actions", func(d *decoder, p string, v any) { d.strs(p, v, `a list like ["opened"]`, &f(d).DoorActions) }},
		{"fleet", func(d *decoder, p string, v any) { d.bool(p, v, &f(d).Fleet) }},
	}
}

// subtable decodes a table ([alert.syslog]) against keys.
func (d *decoder) subtable(path string, v any, keys []key) {
	m, ok := v.(map[string]any)
	if !ok {
		d.badType(path, v, "a table: write ["+path+"] on a line of its own and its keys below it")
		return
	}
	t := table{name: path, keys: keys}
	for _, k := range sortedKeys(m) {
		kp := joinKey(path, k)
		kd := t.find(k)
		if kd == nil {
			d.bad(kp, nil, "unknown key%s; [%s] has %s", suggest(k, t.keyNames()), path, strings.Join(t.keyNames(), ", "))
			continue
		}
		kd.set(d, kp, m[k])
	}
}

// rate decodes "N/duration": "3/1h", "60/1h", "10/1m".
func (d *decoder) rate(path string, v any, dst *Rate) {
	s, ok := v.(string)
	if !ok {
		d.badType(path, v, `a rate in quotes like "3/1h" (a burst of 3, refilled over an hour)`)
		return
	}
	r, err := ParseRate(s)
	if err != nil {
		d.bad(path, v, "%v", err)
		return
	}
	*dst = r
}

// ParseRate reads "N/duration".
func ParseRate(s string) (Rate, error) {
	n, per, ok := strings.Cut(s, "/")
	count, err := strconv.Atoi(strings.TrimSpace(n))
	if !ok || err != nil || count < 1 || count > 1_000_000 {
		return Rate{}, fmt.Errorf(`want a rate like "3/1h": a count from 1 to 1000000, a slash, a duration`)
	}
	dur, err := ParseDuration(strings.TrimSpace(per))
	if err != nil || dur < time.Second {
		return Rate{}, fmt.Errorf(`want a rate like "3/1h": the duration after the slash must be at least "1s"`)
	}
	return Rate{count, dur}, nil
}

func (a *Alert) problems() []problem {
	var out []problem
	bad := func(path, value, format string, args ...any) {
		out = append(out, problem{path: path, value: value, msg: fmt.Sprintf(format, args...)})
	}
	q := strconv.Quote
	for i, w := range a.Webhooks {
		p := joinIndex("alert.webhook", i)
		u, err := url.Parse(w.URL)
		switch {
		case w.URL == "":
			bad(p+".url", "", `missing; want an http:// or https:// URL like "https://hooks.example.org/moat"`)
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			bad(p+".url", q(w.URL), `want an http:// or https:// URL like "https://hooks.example.org/moat"`)
		case u.User != nil:
			// A password in the URL would be printed with the config.
			bad(p+".url", "", "holds a user or password; put a bearer token in token_file instead")
		}
		if w.TokenFile != "" && !absPathOK(w.TokenFile) {
			bad(p+".token_file", q(w.TokenFile), `want an absolute path like "/etc/moat/webhook.token"`)
		}
		if w.Timeout < 100*time.Millisecond {
			bad(p+".timeout", q(w.Timeout.String()), `too short; want at least "100ms"`)
		}
		out = append(out, w.Filter.problems(p)...)
	}
	if s := a.Syslog; s != nil {
		if !absPathOK(s.Socket) {
			bad("alert.syslog.socket", q(s.Socket), `want an absolute path like "/dev/log"`)
		}
		if !slices.Contains(syslogFormats, s.Format) {
			bad("alert.syslog.format", q(s.Format), "want %s", quotedOr(syslogFormats))
		}
		if SyslogFacility(s.Facility) < 0 {
			bad("alert.syslog.facility", q(s.Facility), "want %s", quotedOr(syslogFacilities))
		}
		if s.Tag == "" || len(s.Tag) > 48 || strings.ContainsFunc(s.Tag, func(r rune) bool { return r <= ' ' || r > '~' }) {
			bad("alert.syslog.tag", q(s.Tag), "want 1 to 48 printable ASCII characters without spaces")
		}
		out = append(out, s.Filter.problems("alert.syslog")...)
	}
	if e := a.Email; e != nil {
		if e.Host == "" || strings.ContainsAny(e.Host, " /:") {
			bad("alert.email.host", q(e.Host), `want the relay's host name or address, like "smtp.example.org"`)
		}
		if e.From == "" {
			bad("alert.email.from", "", `missing; want an address like "moat@example.org"`)
		} else if _, err := mail.ParseAddress(e.From); err != nil {
			bad("alert.email.from", q(e.From), `want an address like "moat@example.org"`)
		}
		if len(e.To) == 0 {
			bad("alert.email.to", "", `missing; want a list like ["admin@example.org"]`)
		}
		for i, t := range e.To {
			if _, err := mail.ParseAddress(t); err != nil {
				bad(joinIndex("alert.email.to", i), q(t), `want an address like "admin@example.org"`)
			}
		}
		if e.PasswordFile != "" && !absPathOK(e.PasswordFile) {
			bad("alert.email.password_file", q(e.PasswordFile), `want an absolute path like "/etc/moat/smtp.password"`)
		}
		if (e.User == "") != (e.PasswordFile == "") {
			bad("alert.email.user", q(e.User), "user and password_file go together: set both to authenticate, or neither")
		}
		out = append(out, e.Filter.problems("alert.email")...)
	}
	return out
}

func (f *AlertFilter) problems(path string) []problem {
	var out []problem
	for i, k := range f.Kinds {
		if !slices.Contains(AlertKinds, k) {
			out = append(out, problem{joinIndex(path+".kinds", i), strconv.Quote(k), "want " + quotedOr(AlertKinds)})
		}
	}
	for i, a := range f.DoorActions {
		if !slices.Contains([]string{"opened", "closed", "expired"}, a) {
			out = append(out, problem{joinIndex(path+".door_actions", i), strconv.Quote(a), `want "opened", "closed" or "expired"`})
		}
	}
	return out
}

// strs decodes a list of strings; want says what is wanted.
func (d *decoder) strs(path string, v any, want string, dst *[]string) {
	var out []string
	ok := d.list(path, v, want, func(p string, e any) {
		s, ok := e.(string)
		if !ok {
			d.badType(p, e, "a string in quotes")
			return
		}
		out = append(out, s)
	})
	if ok {
		*dst = out
	}
}

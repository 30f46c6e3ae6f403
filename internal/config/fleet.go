package config

import (
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Fleet configures ban sharing between hosts through a NATS JetStream
// key-value bucket (the [fleet] table). It is off unless servers is set.
type Fleet struct {
	Servers []string // servers: NATS URLs, "nats://10.0.0.5:4222" or "tls://..."; empty: fleet off
	Host    string   // host: this host's name in the fleet; "" means the hostname
	Bucket  string   // bucket: the key-value bucket shared by the fleet
	// Replicas is replicas: copies of the bucket a NATS cluster keeps when
	// moat creates it (an existing bucket is used as it is).
	Replicas int

	// Credentials: at most one of a creds file, an nkey seed file, or a
	// user with a password file; the TLS files may go with any of them.
	CredsFile    string // creds_file: a NATS .creds file (JWT and nkey seed)
	NKeyFile     string // nkey_file: a file holding an nkey seed ("SU...")
	User         string // user
	PasswordFile string // password_file: a file holding user's password
	TLSCA        string // tls_ca: CA certificate(s) to verify the servers with
	TLSCert      string // tls_cert: client certificate, with tls_key
	TLSKey       string // tls_key

	// Publish is publish: the origins of this host's bans that are shared.
	// "manual" shares only the bans added with `moat ban add --fleet`.
	Publish []string
	// Accept is accept: the origins (at the publishing host) of remote
	// bans this host applies.
	Accept      []string
	AcceptHosts []string // accept_hosts: the hosts whose bans are applied; empty: every host
	// MinCount is min_count: a remote ban is applied only if its source
	// had banned the address at least this many times (its evidence).
	MinCount int
	// Queue is queue: how many local bans may wait to be published; more
	// are dropped and counted, so a slow NATS never slows a ban here.
	Queue int

	// ServerListen is server_listen: where `moat fleet server` listens.
	ServerListen string
}

// The origins a host may share: the guards' and the administrator's.
var fleetOrigins = []string{"login", "scan", "manual"}

func defaultFleet() Fleet {
	return Fleet{
		Bucket:       "moat-bans",
		Replicas:     1,
		Publish:      []string{"login", "scan", "manual"},
		Accept:       []string{"login", "scan", "manual"},
		MinCount:     1,
		Queue:        10_000,
		ServerListen: "127.0.0.1:4222",
	}
}

// Enabled reports whether the host takes part in a fleet.
func (f *Fleet) Enabled() bool { return len(f.Servers) > 0 }

var fleetKeys = []key{
	{"servers", func(d *decoder, p string, v any) {
		d.strs(p, v, `a list like ["nats://10.0.0.5:4222"]`, &d.cfg.Fleet.Servers)
	}},
	{"host", func(d *decoder, p string, v any) { d.str(p, v, &d.cfg.Fleet.Host) }},
	{"bucket", func(d *decoder, p string, v any) { d.str(p, v, &d.cfg.Fleet.Bucket) }},
	{"replicas", func(d *decoder, p string, v any) {
		if n, ok := d.uint(p, v, 1, 5); ok {
			d.cfg.Fleet.Replicas = int(n)
		}
	}},
	{"creds_file", func(d *decoder, p string, v any) { d.absPath(p, v, &d.cfg.Fleet.CredsFile) }},
	{"nkey_file", func(d *decoder, p string, v any) { d.absPath(p, v, &d.cfg.Fleet.NKeyFile) }},
	{"user", func(d *decoder, p string, v any) { d.str(p, v, &d.cfg.Fleet.User) }},
	{"password_file", func(d *decoder, p string, v any) { d.absPath(p, v, &d.cfg.Fleet.PasswordFile) }},
	{"tls_ca", func(d *decoder, p string, v any) { d.absPath(p, v, &d.cfg.Fleet.TLSCA) }},
	{"tls_cert", func(d *decoder, p string, v any) { d.absPath(p, v, &d.cfg.Fleet.TLSCert) }},
	{"tls_key", func(d *decoder, p string, v any) { d.absPath(p, v, &d.cfg.Fleet.TLSKey) }},
	{"publish", func(d *decoder, p string, v any) {
		d.strs(p, v, `a list like ["login", "scan"]`, &d.cfg.Fleet.Publish)
	}},
	{"accept", func(d *decoder, p string, v any) {
		d.strs(p, v, `a list like ["login", "scan"]`, &d.cfg.Fleet.Accept)
	}},
	{"accept_hosts", func(d *decoder, p string, v any) {
		d.strs(p, v, `a list of host names like ["web-1", "web-2"]`, &d.cfg.Fleet.AcceptHosts)
	}},
	{"min_count", func(d *decoder, p string, v any) {
		if n, ok := d.uint(p, v, 1, 1_000_000); ok {
			d.cfg.Fleet.MinCount = int(n)
		}
	}},
	{"queue", func(d *decoder, p string, v any) {
		if n, ok := d.uint(p, v, 1, 10_000_000); ok {
			d.cfg.Fleet.Queue = int(n)
		}
	}},
	{"server_listen", func(d *decoder, p string, v any) { d.str(p, v, &d.cfg.Fleet.ServerListen) }},
}

// ValidHostName reports whether s may name a host in the fleet: what a
// hostname holds, so that status and ban lists print it as it is.
func ValidHostName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// validBucket is the bucket-name rule of NATS key-value stores.
func validBucket(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func (f *Fleet) problems() []problem {
	var out []problem
	bad := func(path, value, msg string) { out = append(out, problem{path, value, msg}) }
	q := strconv.Quote
	for i, s := range f.Servers {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" || !slices.Contains([]string{"nats", "tls", "ws", "wss"}, u.Scheme) {
			bad(joinIndex("fleet.servers", i), q(s), `want a NATS URL like "nats://10.0.0.5:4222" or "tls://nats.example.net:4222"`)
		}
		if u != nil && u.User != nil {
			bad(joinIndex("fleet.servers", i), q(s), "credentials do not belong in the URL, which status and logs print: use user and password_file")
		}
	}
	if f.Host != "" && !ValidHostName(f.Host) {
		bad("fleet.host", q(f.Host), "want a host name of up to 64 letters, digits, '-', '_' and '.'")
	}
	if !validBucket(f.Bucket) {
		bad("fleet.bucket", q(f.Bucket), `want a bucket name of up to 64 letters, digits, '-' and '_', like "moat-bans"`)
	}
	n := 0
	for _, s := range []string{f.CredsFile, f.NKeyFile, f.User} {
		if s != "" {
			n++
		}
	}
	if n > 1 {
		bad("fleet", "", "set one of creds_file, nkey_file or user (with password_file), not several")
	}
	for _, c := range []struct{ key, v string }{{"creds_file", f.CredsFile}, {"nkey_file", f.NKeyFile},
		{"password_file", f.PasswordFile}, {"tls_ca", f.TLSCA}, {"tls_cert", f.TLSCert}, {"tls_key", f.TLSKey}} {
		if c.v != "" && !absPathOK(c.v) {
			bad("fleet."+c.key, q(c.v), `want an absolute path like "/etc/moat/fleet.creds"`)
		}
	}
	if (f.User == "") != (f.PasswordFile == "") {
		bad("fleet.user", q(f.User), "user and password_file go together")
	}
	if (f.TLSCert == "") != (f.TLSKey == "") {
		bad("fleet.tls_cert", q(f.TLSCert), "tls_cert and tls_key go together")
	}
	for _, c := range []struct {
		key  string
		list []string
	}{{"publish", f.Publish}, {"accept", f.Accept}} {
		for i, o := range c.list {
			if !slices.Contains(fleetOrigins, o) {
				bad(joinIndex("fleet."+c.key, i), q(o), "want "+quotedOr(fleetOrigins))
			}
		}
	}
	for i, h := range f.AcceptHosts {
		if !ValidHostName(h) {
			bad(joinIndex("fleet.accept_hosts", i), q(h), "want a host name of up to 64 letters, digits, '-', '_' and '.'")
		}
	}
	if f.ServerListen != "" {
		if _, err := netip.ParseAddrPort(f.ServerListen); err != nil {
			bad("fleet.server_listen", q(f.ServerListen), `want an IP address and port, like "10.0.0.5:4222" or "[::]:4222"`)
		}
	}
	return out
}

// HostOrDefault is the host name, or fallback (the hostname) when unset;
// the hostname is cut at its first character a fleet name cannot hold.
func (f *Fleet) HostOrDefault(fallback string) string {
	if f.Host != "" {
		return f.Host
	}
	if i := strings.IndexFunc(fallback, func(r rune) bool { return !ValidHostName(string(r)) }); i >= 0 {
		fallback = fallback[:i]
	}
	if len(fallback) > 64 {
		fallback = fallback[:64]
	}
	if fallback == "" {
		return "moat"
	}
	return fallback
}

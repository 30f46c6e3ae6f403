package config

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

// renderReport writes the keys of report.go and alert.go for the fuzz
// test's round trip; called right after [scan]'s keys.
func renderReport(b *strings.Builder, c *Config) {
	q := tomlQuote
	strs := func(ss []string) string {
		var out []string
		for _, x := range ss {
			out = append(out, q(x))
		}
		return "[" + strings.Join(out, ", ") + "]"
	}
	var ports []string
	for _, p := range c.Scan.IgnorePorts {
		ports = append(ports, p.String())
	}
	fmt.Fprintf(b, "ignore_ports = %s\n", strs(ports))
	for _, d := range c.Scan.Danger {
		fmt.Fprintf(b, "[[scan.danger]]\naddr = %s\nlevel = %d\n", q(d.Addr.String()), d.Level)
	}
	r := c.Report
	fmt.Fprintf(b, "[report]\ntop = %d\nmin_level = %d\nreverse_dns = %t\n", r.Top, r.MinLevel, r.ReverseDNS)
	if r.GeoIP != "" {
		fmt.Fprintf(b, "geoip = %s\n", q(r.GeoIP))
	}
	if r.ASN != "" {
		fmt.Fprintf(b, "asn = %s\n", q(r.ASN))
	}
	a := c.Alert
	fmt.Fprintf(b, "[alert]\nqueue = %d\nper_address = %s\ntotal = %s\n", a.Queue, q(a.PerAddress.String()), q(a.Total.String()))
	filter := func(f AlertFilter) {
		fmt.Fprintf(b, "kinds = %s\nmin_level = %d\norigins = %s\ndoor_actions = %s\nfleet = %t\n",
			strs(f.Kinds), f.MinLevel, strs(f.Origins), strs(f.DoorActions), f.Fleet)
	}
	for _, w := range a.Webhooks {
		fmt.Fprintf(b, "[[alert.webhook]]\nurl = %s\ntimeout = %s\nretries = %d\n", q(w.URL), q(w.Timeout.String()), w.Retries)
		if w.TokenFile != "" {
			fmt.Fprintf(b, "token_file = %s\n", q(w.TokenFile))
		}
		filter(w.Filter)
	}
	if s := a.Syslog; s != nil {
		fmt.Fprintf(b, "[alert.syslog]\nsocket = %s\nformat = %s\nfacility = %s\ntag = %s\n", q(s.Socket), q(s.Format), q(s.Facility), q(s.Tag))
		filter(s.Filter)
	}
	if e := a.Email; e != nil {
		fmt.Fprintf(b, "[alert.email]\nhost = %s\nport = %d\nstarttls = %t\nuser = %s\nfrom = %s\nto = %s\n",
			q(e.Host), e.Port, e.StartTLS, q(e.User), q(e.From), strs(e.To))
		if e.PasswordFile != "" {
			fmt.Fprintf(b, "password_file = %s\n", q(e.PasswordFile))
		}
		filter(e.Filter)
	}
}

func TestParseReportAndAlert(t *testing.T) {
	c := mustParse(t, `
[scan]
ignore_ports = ["tcp/443", "udp/5353"]
[[scan.danger]]
addr = "203.0.113.0/24"
level = 5
[[scan.danger]]
addr = "203.0.113.7"
level = 0
[report]
top = 25
min_level = 2
reverse_dns = true
geoip = "/var/lib/GeoIP/c.mmdb"
[alert]
per_address = "2/10m"
[[alert.webhook]]
url = "https://hooks.example.org/x"
token_file = "/etc/moat/t"
min_level = 4
kinds = ["scan", "door"]
door_actions = ["opened"]
[alert.syslog]
format = "rfc3164"
[alert.email]
host = "127.0.0.1"
port = 2525
starttls = false
from = "moat@example.org"
to = ["a@example.org", "Admin <b@example.org>"]
`)
	if got := c.Scan.IgnorePorts; len(got) != 2 || got[0].String() != "tcp/443" {
		t.Errorf("ignore_ports %v", got)
	}
	for a, want := range map[string]int{"203.0.113.7": 0, "203.0.113.9": 5} {
		if lv, ok := c.Scan.DangerFor(netip.MustParseAddr(a)); !ok || lv != want {
			t.Errorf("DangerFor(%s) = %d %v, want %d", a, lv, ok, want)
		}
	}
	if _, ok := c.Scan.DangerFor(netip.MustParseAddr("198.51.100.1")); ok {
		t.Error("DangerFor outside every network")
	}
	if c.Report != (Report{Top: 25, MinLevel: 2, ReverseDNS: true, GeoIP: "/var/lib/GeoIP/c.mmdb"}) {
		t.Errorf("report %+v", c.Report)
	}
	a := c.Alert
	if a.PerAddress != (Rate{2, 10 * time.Minute}) || a.Total != (Rate{60, time.Hour}) || a.Queue != 256 {
		t.Errorf("alert %+v", a)
	}
	wantHook := AlertWebhook{URL: "https://hooks.example.org/x", TokenFile: "/etc/moat/t", Timeout: 10 * time.Second, Retries: 4,
		Filter: AlertFilter{Kinds: []string{"scan", "door"}, MinLevel: 4, DoorActions: []string{"opened"}}}
	if len(a.Webhooks) != 1 || !reflect.DeepEqual(a.Webhooks[0], wantHook) {
		t.Errorf("webhooks %+v", a.Webhooks)
	}
	if a.Syslog == nil || a.Syslog.Format != "rfc3164" || a.Syslog.Socket != "/dev/log" || a.Syslog.Facility != "auth" {
		t.Errorf("syslog %+v", a.Syslog)
	}
	if e := a.Email; e == nil || e.Port != 2525 || e.StartTLS || len(e.To) != 2 || !reflect.DeepEqual(e.Filter, defaultFilter()) {
		t.Errorf("email %+v", e)
	}
	if !a.Enabled() || mustParse(t, "").Alert.Enabled() {
		t.Error("Enabled")
	}
}

func TestReportAndAlertErrorsNameKeyAndLine(t *testing.T) {
	for _, tt := range []struct{ src, want string }{
		{"[report]\ntop = 0\n", "line 2: report.top 0: out of range"},
		{"[report]\ngeoip = \"GeoLite2.mmdb\"\n", `line 2: report.geoip "GeoLite2.mmdb": want an absolute path`},
		{"[scan]\n[[scan.danger]]\naddr = \"10.0.0.0/33\"\nlevel = 2\n", "line 3: scan.danger[0].addr"},
		{"[scan]\n[[scan.danger]]\naddr = \"10.0.0.1\"\n", "scan.danger[0].level: missing"},
		{"[scan]\n[[scan.danger]]\naddr = \"10.0.0.1\"\nlevel = 6\n", "line 4: scan.danger[0].level 6: out of range"},
		{"[scan]\nignore_ports = [\"ssh\"]\n", "line 2: scan.ignore_ports[0]"},
		{"[alert]\nper_address = \"3 per hour\"\n", `line 2: alert.per_address "3 per hour": want a rate like "3/1h"`},
		{"[alert]\n[[alert.webhook]]\nurl = \"ftp://x\"\n", `line 3: alert.webhook[0].url "ftp://x": want an http:// or https:// URL`},
		{"[alert]\n[[alert.webhook]]\n", "alert.webhook[0].url: missing"},
		{"[alert]\n[[alert.webhook]]\nurl = \"https://u:secret@h/\"\n", "line 3: alert.webhook[0].url: holds a user or password"},
		{"[alert]\n[[alert.webhook]]\nurl = \"https://h/\"\nkinds = [\"bans\"]\n", `line 4: alert.webhook[0].kinds[0] "bans": want "ban"`},
		{"[alert]\n[[alert.webhook]]\nurl = \"https://h/\"\nmin_levle = 3\n", `line 4: alert.webhook[0].min_levle: unknown key (did you mean "min_level"?)`},
		{"[alert.syslog]\nformat = \"json\"\n", `line 2: alert.syslog.format "json": want "rfc5424" or "rfc3164"`},
		{"[alert.syslog]\nfacility = \"local9\"\n", `line 2: alert.syslog.facility "local9"`},
		{"[alert.email]\nhost = \"smtp.example.org\"\nfrom = \"moat\"\nto = [\"a@example.org\"]\n", `line 3: alert.email.from "moat": want an address`},
		{"[alert.email]\nhost = \"smtp.example.org\"\nfrom = \"m@example.org\"\nto = [\"a@example.org\"]\nuser = \"u\"\n", "line 5: alert.email.user \"u\": user and password_file go together"},
		{"[alert.email]\nhost = \"smtp.example.org\"\nfrom = \"m@example.org\"\n", "alert.email.to: missing"},
		{"[alert.email]\nhots = \"x\"\n", `line 2: alert.email.hots: unknown key (did you mean "host"?)`},
	} {
		_, err := Parse([]byte(tt.src), "m.toml")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q:\n got %v\nwant %s", tt.src, err, tt.want)
		}
	}
}

func TestSyslogFacility(t *testing.T) {
	for name, want := range map[string]int{"kern": 0, "auth": 4, "daemon": 3, "authpriv": 10, "ftp": 11, "local0": 16, "local7": 23, "x": -1} {
		if got := SyslogFacility(name); got != want {
			t.Errorf("%s: %d, want %d", name, got, want)
		}
	}
}

func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"3/1h", "60/1h", "1/1s", "0/1h", "3/0s", "x/y", "3/1d12h", "1000000/1w"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRate(s)
		if err != nil {
			return
		}
		if r.N < 1 || r.Per < time.Second {
			t.Fatalf("%q accepted as %+v", s, r)
		}
		again, err := ParseRate(r.String())
		if err != nil || again != r {
			t.Fatalf("%q -> %v -> %+v %v", s, r, again, err)
		}
	})
}

package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

const examplePath = "../../examples/moat.toml"

func mustParse(t *testing.T, src string) *Config {
	t.Helper()
	c, err := Parse([]byte(src), "moat.toml")
	if err != nil {
		t.Fatalf("Parse:\n%s\nerror: %v", src, err)
	}
	return c
}

func TestDefaults(t *testing.T) {
	want := &Config{
		Daemon: Daemon{
			StateDir:       "/var/lib/moat",
			Socket:         "/run/moat/moat.sock",
			OnExit:         "keep",
			ReconcileEvery: 5 * time.Minute,
			LogLevel:       "info",
		},
		Firewall: Firewall{
			Open:           []PortSpec{{Proto: TCP, SSH: true}},
			ClosedResponse: "drop",
			Stealth:        true,
			LogGroup:       7,
			LogRate:        1000,
			LogBurst:       2000,
			Forward:        "untouched",
			Output:         "accept",

			KnockRatePerSource: 32,
			KnockRate:          100000,
		},
		Scan:    defaultScan(),
		Metrics: defaultMetrics(),
		SPA:     defaultSPA(),
		Report:  Report{Top: 10, MinLevel: 1},
		Alert:   Alert{Queue: 256, PerAddress: Rate{3, time.Hour}, Total: Rate{60, time.Hour}},
		Fleet:   defaultFleet(),
		Login: Login{
			Enabled: true, Sources: []string{"auto"}, Mode: "normal", MaxRetry: 5,
			FindTime: 10 * time.Minute, BanTime: time.Hour, BanTimeMultiplier: 2, MaxBanTime: 7 * 24 * time.Hour,
			ForgetOnSuccess: true, MaxTracked: 1_000_000, UseDNS: "no",
		},
	}
	if got := mustParse(t, ""); !reflect.DeepEqual(got, want) {
		t.Errorf("empty file:\n got %+v\nwant %+v", got, want)
	}
	// The embedded file must say what the code does when keys are absent.
	if got := mustParse(t, string(Default())); !reflect.DeepEqual(got, want) {
		t.Errorf("embedded default:\n got %+v\nwant %+v", got, want)
	}
	// Empty tables are the same as absent ones.
	if got := mustParse(t, "[daemon]\n[firewall]\n"); !reflect.DeepEqual(got, want) {
		t.Errorf("empty tables:\n got %+v\nwant %+v", got, want)
	}
	if err := want.Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
}

func TestExampleDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(data, examplePath); err != nil {
		t.Fatalf("example does not parse: %v", err)
	}
	var m map[string]any
	md, err := toml.Decode(string(data), &m)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	pos := scanPositions(string(data))
	for _, k := range knownKeys() {
		defined := md.IsDefined(strings.Split(k, ".")...)
		at := k
		if strings.Contains(k, "[0]") { // keys of an array of tables: in any of its tables
			defined = false
			for i := range 10 {
				if ki := strings.Replace(k, "[0]", "["+strconv.Itoa(i)+"]", 1); pos[ki] > 0 {
					defined, at = true, ki
					break
				}
			}
		}
		if !defined {
			t.Errorf("%s does not set %s: document every key there", examplePath, k)
			continue
		}
		// The line above each key is its comment.
		if n := pos[at]; n < 2 || !strings.HasPrefix(lines[n-2], "#") {
			t.Errorf("%s: line %d: %s has no comment on the line above", examplePath, n, k)
		}
	}
}

func TestParseValues(t *testing.T) {
	src := `
[daemon]
state_dir = "/srv/moat"
socket = "/run/m.sock"
on_exit = "remove"
reconcile_every = "1m30s"
log_level = "debug"

[firewall]
interfaces = ["eth0", "wg*"]
open = [
  "ssh",         # the sshd ports
  "tcp/443",
  "udp/53",
  "tcp/8000-8100",
  "udp/60000-60000",
]
allow = ["192.0.2.7", "2001:db8::1", "192.0.2.128/25", "::ffff:198.51.100.9", "::ffff:203.0.113.0/120", "2001:db8::/32"]
closed_response = "reject"
ping = true
stealth = false
log_group = 0
log_rate = 1
log_burst = 4294967295
forward = "drop"
knock_rate_per_source = 5
knock_rate = 600
`
	want := &Config{
		Daemon: Daemon{StateDir: "/srv/moat", Socket: "/run/m.sock", OnExit: "remove",
			ReconcileEvery: 90 * time.Second, LogLevel: "debug"},
		Firewall: Firewall{
			Interfaces: []string{"eth0", "wg*"},
			Open: []PortSpec{
				{Proto: TCP, SSH: true},
				{Proto: TCP, From: 443, To: 443},
				{Proto: UDP, From: 53, To: 53},
				{Proto: TCP, From: 8000, To: 8100},
				{Proto: UDP, From: 60000, To: 60000},
			},
			Allow: []netip.Prefix{
				netip.MustParsePrefix("192.0.2.7/32"),
				netip.MustParsePrefix("2001:db8::1/128"),
				netip.MustParsePrefix("192.0.2.128/25"),
				netip.MustParsePrefix("198.51.100.9/32"),
				netip.MustParsePrefix("203.0.113.0/24"),
				netip.MustParsePrefix("2001:db8::/32"),
			},
			ClosedResponse: "reject",
			Ping:           true,
			Stealth:        false,
			LogGroup:       0,
			LogRate:        1,
			LogBurst:       4294967295,
			Forward:        "drop",
			Output:         "accept",

			KnockRatePerSource: 5,
			KnockRate:          600,
		},
		Login:   defaultLogin(),
		Scan:    defaultScan(),
		Metrics: defaultMetrics(),
		SPA:     defaultSPA(),
		Report:  defaultReport(),
		Alert:   defaultAlert(),
		Fleet:   defaultFleet(),
	}
	// 2001:db8::1 lies inside 2001:db8::/32: expect exactly that complaint.
	_, err := Parse([]byte(src), "moat.toml")
	if err == nil || !strings.Contains(err.Error(), `line 18: firewall.allow[5] "2001:db8::/32": covers allow[1] "2001:db8::1"`) {
		t.Fatalf("want the overlap reported, got %v", err)
	}
	src = strings.Replace(src, `, "2001:db8::/32"]`, "]", 1)
	want.Firewall.Allow = want.Firewall.Allow[:5]
	got := mustParse(t, src)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("\n got %+v\nwant %+v", got, want)
	}
	if mustParse(t, "[firewall]\nopen = []\n").Firewall.Open != nil {
		t.Error("open = [] should leave nothing open")
	}
	// Dotted keys and inline tables are TOML too.
	c := mustParse(t, "firewall.ping = true\ndaemon = { log_level = \"warn\" }\n")
	if !c.Firewall.Ping || c.Daemon.LogLevel != "warn" {
		t.Errorf("dotted/inline: %+v", c)
	}
}

// TestParseErrors checks every kind of error names the file, the line and
// the key, and says what is wanted.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want string // must appear in the error, after "moat.toml: "
	}{
		// Syntax.
		{"syntax", "[daemon]\nsocket = \n", `line 2: invalid TOML after key daemon.socket: expected value`},
		{"duplicate key", "[daemon]\nsocket = \"/a\"\nsocket = \"/b\"\n", `line 3: invalid TOML after key daemon.socket`},
		{"unterminated string", "[firewall]\nopen = [\"ssh]\n", `line 2: invalid TOML`},

		// Unknown keys and tables.
		{"unknown key", "[firewall]\nping = true\nopne = [\"ssh\"]\n", `line 3: firewall.opne: unknown key (did you mean "open"?)`},
		{"unknown key no suggestion", "[daemon]\n\nzzzzzzzz = 1\n", `line 3: daemon.zzzzzzzz: unknown key; [daemon] has state_dir, socket`},
		{"key case", "[daemon]\nSocket = \"/x\"\n", `line 2: daemon.Socket: unknown key (keys are case-sensitive: did you mean "socket"?)`},
		{"unknown table", "[daemon]\n\n[nonsense]\nmax_tries = 3\n", `line 3: nonsense: unknown section; moat knows [daemon], [firewall], [login], [scan], [doors], [metrics], [spa], [report], [alert], [page], [fleet], [[door]] and [[blocklist]]`},
		{"unknown login key", "[login]\nmax_retyr = 3\n", `line 2: login.max_retyr: unknown key (did you mean "max_retry"?)`},
		{"week duration", "[login]\nmax_ban_time = \"1x\"\n", `line 2: login.max_ban_time "1x": want a duration like "30s" (units: ms, s, m, h, d, w)`},
		{"unanchored rule", "[login]\n[[login.rule]]\nname = \"x\"\nsource = \"/var/log/x.log\"\npattern = \"failed from <HOST>\"\n", `line 5: login.rule[0].pattern "failed from <HOST>": must start with ^ and end with $`},
		// The review's M7: config check ran only the anchoring test, and
		// bounded repetitions slipped past the daemon's shape check.
		{"rule open on both sides", "[[login.rule]]\nname = \"x\"\nsource = \"/var/log/x.log\"\npattern = '^.* from <HOST>.*$'\n", `line 4: login.rule[0].pattern "^.* from <HOST>.*$": open text`},
		{"rule bounded repetition", "[[login.rule]]\nname = \"x\"\nsource = \"/var/log/x.log\"\npattern = '^.* myapp: login failed from <HOST>(?: \\S+){0,3}$'\n", `line 4: login.rule[0].pattern "^.* myapp: login failed from <HOST>(?: \\S+){0,3}$": open text`},
		{"rule backreference before its group", "[[login.rule]]\nname = \"x\"\nsource = \"/var/log/x.log\"\npattern = '^(?P=a) (?P<a>\\w+) <HOST>$'\n", `line 4: login.rule[0].pattern "^(?P=a) (?P<a>\\w+) <HOST>$": backreference (?P=a) before the group it names`},
		{"rule find_time", "[[login.rule]]\nname = \"x\"\nsource = \"/var/log/x.log\"\npattern = '^x <HOST>$'\nfind_time = \"10\"\n", `line 5: login.rule[0].find_time "10": want a duration`},
		{"rule ban_time too short", "[[login.rule]]\nname = \"x\"\nsource = \"/var/log/x.log\"\npattern = '^x <HOST>$'\nban_time = \"10ms\"\n", `line 5: login.rule[0].ban_time "10ms": too short`},
		{"rule ports", "[[login.rule]]\nname = \"x\"\nsource = \"/var/log/x.log\"\npattern = '^x <HOST>$'\nports = [\"tcp/80\", \"http\"]\n", `line 5: login.rule[0].ports[1] "http": want "ssh", "tcp/22"`},
		{"rule named sshd", "[[login.rule]]\nname = \"sshd\"\nsource = \"/var/log/x.log\"\npattern = '^x <HOST>$'\n", `line 2: login.rule[0].name "sshd": "sshd" names the built-in sshd parser`},
		{"rules of one name that disagree", "[[login.rule]]\nname = \"x\"\nsource = \"/var/log/x.log\"\npattern = '^x <HOST>$'\n[[login.rule]]\nname = \"x\"\nsource = \"/var/log/y.log\"\npattern = '^y <HOST>$'\nmax_retry = 9\n", `line 6: login.rule[1].name "x": another [[login.rule]] of this name has other max_retry, find_time, ban_time or ports`},
		{"rule unknown key", "[[login.rule]]\nname = \"x\"\npatern = \"^<HOST>$\"\n", `line 3: login.rule[0].patern: unknown key (did you mean "pattern"?)`},
		{"rule kind", "[[login.rule]]\nname = \"x\"\nsource = \"/var/log/x.log\"\npattern = '^x <HOST>$'\nkind = \"nofail\"\n", `line 5: login.rule[0].kind "nofail": want "failure", "note" or "success"`},
		{"rule note without id", "[[login.rule]]\nname = \"x\"\nsource = \"/var/log/x.log\"\npattern = '^x <HOST>$'\nkind = \"note\"\n", `line 5: login.rule[0].kind "note": a note rule records or clears what a connection id stands for`},
		{"rule note without host", "[[login.rule]]\nname = \"x\"\nsource = \"/var/log/x.log\"\npattern = '^x\\[(?P<id>\\d+)\\]: hello$'\nkind = \"note\"\n", `line 5: login.rule[0].kind "note": a note records the address of a connection id: its pattern needs <HOST>`},
		{"rule forget without id", "[[login.rule]]\nname = \"x\"\nsource = \"/var/log/x.log\"\npattern = '^x <HOST>$'\nforget = true\n", `line 5: login.rule[0].forget true: forget clears a connection id`},
		{"rule without host or id", "[[login.rule]]\nname = \"x\"\nsource = \"/var/log/x.log\"\npattern = '^x failed$'\n", `line 4: login.rule[0].pattern "^x failed$": want exactly one <HOST>`},
		{"rule id open text", "[[login.rule]]\nname = \"x\"\nsource = \"/var/log/x.log\"\npattern = '^x\\[(?P<id>[^]]+)\\]: failed$'\n", `line 4: login.rule[0].pattern "^x\\[(?P<id>[^]]+)\\]: failed$": the connection id (?P<id>...) holds open text`},
		{"use_dns value", "[login]\nmode = \"normal\"\nuse_dns = \"maybe\"\n", `line 3: login.use_dns "maybe": want "no", "warn" or "yes"`},
		{"use_dns type", "[login]\nuse_dns = false\n", `line 2: login.use_dns`},
		{"multiplier below 1", "[login]\nban_time_multiplier = 0.5\n", `line 2: login.ban_time_multiplier 0.5: want a number of at least 1`},
		{"scan hold too short", "[scan]\nenabled = true\nhold = \"500ms\"\n", `line 3: scan.hold "500ms": want "0s" (no hold) or "1s" to "1h"`},
		{"relative door log file", "\n[doors]\nlog_file = \"knock.log\"\n", `line 3: doors.log_file "knock.log": want an absolute path like "/var/log/moat-knock.log"`},
		{"metrics on a host name", "\n[metrics]\nlisten = \"localhost:9733\"\n", `line 3: metrics.listen "localhost:9733": want an IP address and port`},
		{"metrics on every address unasked", "\n[metrics]\nlisten = \":9733\"\n", `line 3: metrics.listen ":9733": want an IP address and port`},
		{"spa port not udp", "\n[spa]\nports = [\"tcp/62201\"]\n", `line 3: spa.ports[0] "tcp/62201": want a udp port`},
		{"spa client unknown door", "\n[spa]\nkey_file = \"/etc/moat/spa.key\"\n[[spa.client]]\nname = \"a\"\nkey = \"moat-spa-x25519 GxIUVBc5IeEXfUCr17KD6t5EWYoTEsuv5QMuPaniIgE=\"\ndoors = [\"nope\"]\n", `line 7: spa.client[0].doors[0] "nope": no [[door]] has this name`},
		{"spa client bad key", "\n[spa]\nkey_file = \"/etc/moat/spa.key\"\n[[spa.client]]\nname = \"a\"\nkey = \"ssh-ed25519 AAAA\"\nports = [\"tcp/22\"]\n", `line 6: spa.client[0].key "ssh-ed25519 AAAA": `},
		{"fwknop without hmac", "\n[spa]\n[[spa.fwknop]]\nname = \"a\"\nkey_base64 = \"AAAA\"\nopen_ports = [\"tcp/22\"]\n", `line 3: spa.fwknop[0].hmac_key_base64: moat takes fwknop packets only with HMAC`},
		{"fwknop bad key", "\n[spa]\n[[spa.fwknop]]\nname = \"a\"\nkey_base64 = \"!!\"\nhmac_key_base64 = \"AAAA\"\nopen_ports = [\"tcp/22\"]\n", `line 5: spa.fwknop[0].key_base64 "!!": not base64`},
		{"fwknop both keys", "\n[spa]\n[[spa.fwknop]]\nname = \"a\"\nkey_base64 = \"AAAA\"\nkey_file = \"/k\"\nhmac_key_base64 = \"AAAA\"\nopen_ports = [\"tcp/22\"]\n", `line 6: spa.fwknop[0].key_file "/k": give key_base64 or key_file, not both`},
		{"fwknop no ports", "\n[spa]\n[[spa.fwknop]]\nname = \"a\"\nkey_base64 = \"AAAA\"\nhmac_key_base64 = \"AAAA\"\n", `line 3: spa.fwknop[0].open_ports []: the entry opens nothing`},
		{"fwknop source any mixed", "\n[spa]\n[[spa.fwknop]]\nsource = [\"any\", \"10.0.0.0/8\"]\n", `line 4: spa.fwknop[0].source[0] "any": `},
		{"fwknop unknown key", "\n[spa]\n[[spa.fwknop]]\ngpg_home_dir = \"/root/.gnupg\"\n", `line 4: spa.fwknop[0].gpg_home_dir: unknown key`},
		{"spa client without server key", "\n[spa]\n[[spa.client]]\nname = \"a\"\nkey = \"moat-spa-x25519 GxIUVBc5IeEXfUCr17KD6t5EWYoTEsuv5QMuPaniIgE=\"\nports = [\"tcp/22\"]\n", `line 2: spa.key_file: want the server's private key file`},
		{"metrics path", "\n[metrics]\npath = \"metrics\"\n", `line 3: metrics.path "metrics": want an absolute URL path`},
		{"unknown array of tables", "\n[[doors]]\nname = \"x\"\n", `line 2: doors: a door is [[door]], singular`},
		{"blocklist bad name", "[[blocklist]]\nname = \"Fire-HOL\"\nsource = \"/etc/moat/x.txt\"\n", `line 2: blocklist[0].name "Fire-HOL": want 1 to 24 lowercase letters`},
		{"blocklist http", "[[blocklist]]\nname = \"x\"\nsource = \"http://example.org/x\"\n", `line 3: blocklist[0].source "http://example.org/x": want https://`},
		{"blocklist format", "[[blocklist]]\nname = \"x\"\nsource = \"/x\"\nformat = \"csv\"\n", `line 4: blocklist[0].format "csv": want "plain", "firehol", "spamhaus", "dshield" or "crowdsec"`},
		{"blocklist duplicate", "[[blocklist]]\nname = \"x\"\nsource = \"/x\"\n[[blocklist]]\nname = \"x\"\nsource = \"/y\"\n", `line 5: blocklist[1].name "x": the name of blocklist[0] too`},
		{"blocklist refresh", "[[blocklist]]\nname = \"x\"\nsource = \"/x\"\nrefresh = \"5s\"\n", `line 4: blocklist[0].refresh "5s": too short`},
		{"door without sequence", "\n[[door]]\nname = \"x\"\nopen = [\"tcp/22\"]\n", `line 2: door[0].sequence: a door needs a sequence`},
		{"door port also open", "[firewall]\nopen = [\"tcp/22\"]\n[[door]]\nname = \"x\"\nsequence = [\"tcp/1\"]\nopen = [\"tcp/22\"]\n", `line 6: door[0].open[0] "tcp/22": is also in [firewall] open`},
		{"door repeated step", "[[door]]\nname = \"x\"\nsequence = [\"tcp/1\", \"tcp/1\"]\nopen = [\"tcp/2222\"]\n", `line 3: door[0].sequence[1] "tcp/1": repeats the knock before it`},
		{"door adjacent steps", "[[door]]\nname = \"x\"\nsequence = [\"tcp/7000\", \"tcp/7001\"]\nopen = [\"tcp/2222\"]\n", `line 3: door[0].sequence[1] "tcp/7001": is next to the knock before it`},
		{"door bad flags", "[[door]]\nname = \"x\"\nsequence = [\"tcp/1\"]\nopen = [\"tcp/22\"]\ntcpflags = \"syn,!bogus\"\n", `line 5: door[0].tcpflags "syn,!bogus": unknown TCP flag "bogus"`},
		{"door relative command", "[[door]]\nname = \"x\"\nsequence = [\"tcp/1\"]\nopen = [\"tcp/2222\"]\nstart_command = [\"hook\"]\n", `line 5: door[0].start_command "hook": the program must be an absolute path`},
		{"unknown top-level key", "\n\nverbose = true\n", `line 3: verbose: unknown section`},
		{"unknown dotted key", "\nfirewall.stelth = true\n", `line 2: firewall.stelth: unknown key (did you mean "stealth"?)`},
		{"unknown key in inline table", "daemon = {\n  log_level = \"info\", colour = 1 }\n", `line 2: daemon.colour: unknown key`},
		{"quoted unknown key", "[firewall]\n\"open port\" = 1\n", `line 2: firewall."open port": unknown key`},
		{"table not a table", "\ndaemon = \"x\"\n", `line 2: daemon "x": want a table`},

		// Types.
		{"bool as string", "[firewall]\n\nping = \"yes\"\n", `line 3: firewall.ping "yes": want true or false`},
		{"string as int", "[daemon]\nsocket = 5\n", `line 2: daemon.socket 5: want an absolute path`},
		{"list as string", "[daemon]\nstate_dir = [\"/a\"]\n", `line 2: daemon.state_dir: want an absolute path like "/var/lib/moat", not a list`},
		{"int as float", "[firewall]\nlog_rate = 2.5\n", `line 2: firewall.log_rate 2.5: want a whole number from 1 to 4294967295`},
		{"open not a list", "[firewall]\nopen = \"ssh\"\n", `line 2: firewall.open "ssh": want a list like ["ssh", "tcp/443", "udp/53"]`},
		{"open element type", "[firewall]\nopen = [\n\"ssh\",\n22]\n", `line 4: firewall.open[1] 22: want "ssh", "tcp/22"`},
		{"interfaces element type", "[firewall]\ninterfaces = [true]\n", `line 2: firewall.interfaces[0] true: want an interface name`},
		{"allow element type", "[firewall]\nallow = [{a = 1}]\n", `line 2: firewall.allow[0]: want an address like "192.0.2.7" or a network like "2001:db8::/32", not a table`},
		{"enum type", "[daemon]\non_exit = false\n", `line 2: daemon.on_exit false: want "keep" or "remove"`},
		{"date", "[daemon]\nlog_level = 2024-01-01\n", `line 2: daemon.log_level 2024-01-01T00:00:00Z: want "debug", "info", "warn" or "error"`},

		// Ports.
		{"port out of range", "[firewall]\nopen = [\n  \"ssh\",\n  \"tcp/70000\",\n]\n", `line 4: firewall.open[1] "tcp/70000": port 70000 out of range 1-65535`},
		{"port zero", "[firewall]\nopen = [\"udp/0\"]\n", `line 2: firewall.open[0] "udp/0": port 0 out of range 1-65535`},
		{"port not a number", "[firewall]\nopen = [\"tcp/http\"]\n", `line 2: firewall.open[0] "tcp/http": port "http" is not a number`},
		{"port no proto", "[firewall]\nopen = [\"22\"]\n", `line 2: firewall.open[0] "22": no protocol; did you mean "tcp/22"?`},
		{"port bad proto", "[firewall]\nopen = [\"sctp/22\"]\n", `line 2: firewall.open[0] "sctp/22": protocol "sctp": want tcp or udp`},
		{"port upper case", "[firewall]\nopen = [\"TCP/22\"]\n", `line 2: firewall.open[0] "TCP/22": protocol "TCP": want tcp or udp`},
		{"port garbage", "[firewall]\nopen = [\"https\"]\n", `line 2: firewall.open[0] "https": want "ssh", "tcp/22", "udp/53" or a range like "tcp/8000-8100"`},
		{"port range backwards", "[firewall]\nopen = [\"tcp/8100-8000\"]\n", `line 2: firewall.open[0] "tcp/8100-8000": range 8100-8000 is backwards; did you mean "tcp/8000-8100"?`},
		{"port range open end", "[firewall]\nopen = [\"tcp/8000-\"]\n", `line 2: firewall.open[0] "tcp/8000-": port "" is not a number`},
		{"port duplicate", "[firewall]\nopen = [\"tcp/22\", \"udp/22\",\n \"tcp/22\"]\n", `line 3: firewall.open[2] "tcp/22": duplicate of open[0] "tcp/22"`},
		{"port overlap", "[firewall]\nopen = [\"tcp/8000-8100\",\n \"tcp/8080\"]\n", `line 3: firewall.open[1] "tcp/8080": overlaps open[0] "tcp/8000-8100"`},
		{"ssh duplicate", "[firewall]\nopen = [\"ssh\",\n\"ssh\"]\n", `line 3: firewall.open[1] "ssh": duplicate of open[0]`},

		// Addresses.
		{"allow host bits", "[firewall]\nallow = [\"192.0.2.7/24\"]\n", `line 2: firewall.allow[0] "192.0.2.7/24": host bits are set; did you mean 192.0.2.0/24?`},
		{"allow host bits v6", "[firewall]\nallow = [\"2001:db8::1/32\"]\n", `line 2: firewall.allow[0] "2001:db8::1/32": host bits are set; did you mean 2001:db8::/32?`},
		{"allow zone", "[firewall]\nallow = [\"fe80::1%eth0\"]\n", `line 2: firewall.allow[0] "fe80::1%eth0": zones (the %interface suffix) are not allowed`},
		{"allow garbage", "[firewall]\nallow = [\"192.0.2.256\"]\n", `line 2: firewall.allow[0] "192.0.2.256": want an address like "192.0.2.7"`},
		{"allow bad cidr", "[firewall]\nallow = [\"192.0.2.0/33\"]\n", `line 2: firewall.allow[0] "192.0.2.0/33": want a network like "192.0.2.0/24"`},
		{"allow hostname", "[firewall]\nallow = [\"example.com\"]\n", `line 2: firewall.allow[0] "example.com": want an address`},
		{"allow inside", "[firewall]\nallow = [\n\"192.0.2.0/24\",\n\"192.0.2.9\",\n]\n", `line 4: firewall.allow[1] "192.0.2.9": is inside allow[0] "192.0.2.0/24"`},
		{"allow mapped duplicate", "[firewall]\nallow = [\"192.0.2.9\", \"::ffff:192.0.2.9\"]\n", `line 2: firewall.allow[1] "192.0.2.9": duplicate of allow[0] "192.0.2.9"`},

		// Interfaces.
		{"interface lo", "[firewall]\ninterfaces = [\"eth0\", \"lo\"]\n", `line 2: firewall.interfaces[1] "lo": loopback is always accepted`},
		{"interface long", "[firewall]\ninterfaces = [\"abcdefghijklmnop\"]\n", `line 2: firewall.interfaces[0] "abcdefghijklmnop": interface names are at most 15 bytes`},
		{"interface slash", "[firewall]\ninterfaces = [\"eth/0\"]\n", `line 2: firewall.interfaces[0] "eth/0": interface names cannot contain "/"`},
		{"interface space", "[firewall]\ninterfaces = [\"eth 0\"]\n", `line 2: firewall.interfaces[0] "eth 0": interface names cannot contain`},
		{"interface nul", "[firewall]\ninterfaces = [\"eth\\u0000\"]\n", `line 2: firewall.interfaces[0] "eth\x00": interface names cannot contain`},
		{"interface empty", "[firewall]\ninterfaces = [\"\"]\n", `line 2: firewall.interfaces[0] "": want an interface name`},
		{"interface star", "[firewall]\ninterfaces = [\"*\"]\n", `line 2: firewall.interfaces[0] "*": to match every interface leave interfaces empty`},
		{"interface inner star", "[firewall]\ninterfaces = [\"e*h0\"]\n", `line 2: firewall.interfaces[0] "e*h0": "*" may only end a name`},
		{"interface double star", "[firewall]\ninterfaces = [\"eth**\"]\n", `line 2: firewall.interfaces[0] "eth**": "*" may only end a name`},
		{"interface optional ok but lo", "[firewall]\ninterfaces = [\"wg0?\", \"lo?\"]\n", `line 2: firewall.interfaces[1] "lo?": loopback is always accepted`},
		{"trusted and guarded", "[firewall]\ninterfaces = [\"eth0\"]\ntrusted_interfaces = [\"eth0\"]\n", `line 3: firewall.trusted_interfaces[0] "eth0": also in interfaces[0]`},
		{"output enum", "[firewall]\noutput = \"drop\"\n", `line 2: firewall.output "drop": want "accept" or "deny"`},
		{"output_allow bad", "[firewall]\noutput = \"deny\"\noutput_allow = [\"tcp/443\",\n \"tcp/22@192.0.2.1/24\"]\n", `line 4: firewall.output_allow[1] "tcp/22@192.0.2.1/24": after @: host bits are set; did you mean 192.0.2.0/24?`},
		{"output_allow ssh", "[firewall]\noutput = \"deny\"\noutput_allow = [\"ssh\"]\n", `line 3: firewall.output_allow[0] "ssh": "ssh" means this host's sshd`},
		{"output_allow without deny", "[firewall]\noutput_allow = [\"tcp/443\"]\n", `line 2: firewall.output_allow: has no effect unless output = "deny"`},
		{"reject open", "[firewall]\nopen = [\"tcp/139\"]\nreject = [\"tcp/137-139\"]\n", `line 3: firewall.reject[0] "tcp/137-139": overlaps open "tcp/139"`},
		{"reject overlap", "[firewall]\nreject = [\"udp/137-139\", \"udp/139\"]\n", `line 2: firewall.reject[1] "udp/139": overlaps reject[0] "udp/137-139"`},
		{"reject ssh", "[firewall]\nreject = [\"ssh\"]\n", `line 2: firewall.reject[0] "ssh": want "tcp/139"`},
		{"interface duplicate", "[firewall]\ninterfaces = [\"eth0\",\n\"eth0\"]\n", `line 3: firewall.interfaces[1] "eth0": duplicate of interfaces[0]`},

		// Enumerations.
		{"closed_response", "[firewall]\nclosed_response = \"deny\"\n", `line 2: firewall.closed_response "deny": want "drop" or "reject"`},
		{"on_exit", "[daemon]\non_exit = \"flush\"\n", `line 2: daemon.on_exit "flush": want "keep" or "remove"`},
		{"forward", "[firewall]\nforward = \"accept\"\n", `line 2: firewall.forward "accept": want "untouched", "ban" or "drop"`},
		{"log_level", "[daemon]\nlog_level = \"trace\"\n", `line 2: daemon.log_level "trace": want "debug", "info", "warn" or "error"`},

		// Durations.
		{"duration bad", "[daemon]\nreconcile_every = \"3x\"\n", `line 2: daemon.reconcile_every "3x": want a duration like "30s"`},
		{"duration int", "[daemon]\nreconcile_every = 60\n", `line 2: daemon.reconcile_every 60: want a duration like "30s"`},
		{"duration short", "[daemon]\nreconcile_every = \"500ms\"\n", `line 2: daemon.reconcile_every "500ms": too short; want at least "1s"`},
		{"duration negative", "[daemon]\nreconcile_every = \"-1m\"\n", `line 2: daemon.reconcile_every "-1m0s": too short`},

		// Numbers.
		{"log_group range", "[firewall]\nlog_group = 65536\n", `line 2: firewall.log_group 65536: out of range; want 0 to 65535`},
		{"log_group negative", "[firewall]\nlog_group = -1\n", `line 2: firewall.log_group -1: out of range`},
		{"log_rate zero", "[firewall]\nlog_rate = 0\n", `line 2: firewall.log_rate 0: out of range; want 1 to 4294967295`},
		{"log_burst zero", "[firewall]\n\nlog_burst = 0\n", `line 3: firewall.log_burst 0: out of range; want 1 to`},
		{"knock_rate zero", "[firewall]\nknock_rate = 0\n", `line 2: firewall.knock_rate 0: out of range; want 1 to`},
		{"knock_rate_per_source zero", "[firewall]\n\nknock_rate_per_source = 0\n", `line 3: firewall.knock_rate_per_source 0: out of range; want 1 to`},

		// Paths.
		{"state_dir relative", "[daemon]\nstate_dir = \"var/lib/moat\"\n", `line 2: daemon.state_dir "var/lib/moat": want an absolute path`},
		{"socket empty", "[daemon]\nsocket = \"\"\n", `line 2: daemon.socket "": want an absolute path like "/run/moat/moat.sock"`},
		{"socket too long", "[daemon]\nstate_dir = \"/var/lib/moat\"\nsocket = \"/run/" + strings.Repeat("s", 103) + "\"\n",
			`line 3: daemon.socket "/run/` + strings.Repeat("s", 103) + `": 108 bytes; a unix socket path is at most 107 bytes on Linux`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.src), "moat.toml")
			if err == nil {
				t.Fatalf("no error for:\n%s", tt.src)
			}
			if !strings.Contains(err.Error(), "moat.toml: "+tt.want) {
				t.Errorf("error:\n  %v\nwant it to contain:\n  moat.toml: %s", err, tt.want)
			}
			var ce *Error
			if !errors.As(err, &ce) || ce.File != "moat.toml" || ce.Line == 0 {
				t.Errorf("want a *config.Error with file and line, got %#v", err)
			}
			if ce != nil && ce.Key == "" && !strings.HasPrefix(ce.Msg, "invalid TOML after key") {
				t.Errorf("error names no key: %v", err)
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if line != strings.TrimSpace(line) || line == "" {
					t.Errorf("untidy line %q", line)
				}
			}
		})
	}
}

func TestParseReportsAllInLineOrder(t *testing.T) {
	src := "[firewall]\nping = \"no\"\nopen = [\"tcp/1\", \"x\"]\n[daemon]\nlog_level = 1\n[psad]\n"
	_, err := Parse([]byte(src), "f.toml")
	want := `f.toml: line 2: firewall.ping "no": want true or false (no quotes)
f.toml: line 3: firewall.open[1] "x": want "ssh", "tcp/22", "udp/53" or a range like "tcp/8000-8100"
f.toml: line 5: daemon.log_level 1: want "debug", "info", "warn" or "error"
f.toml: line 6: psad: unknown section; moat knows [daemon], [firewall], [login], [scan], [doors], [metrics], [spa], [report], [alert], [page], [fleet], [[door]] and [[blocklist]]`
	if err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
	for range 5 {
		if _, err2 := Parse([]byte(src), "f.toml"); err2 == nil || err2.Error() != err.Error() {
			t.Fatalf("not deterministic:\n%v\n%v", err, err2)
		}
	}
}

func TestValidate(t *testing.T) {
	base := func() *Config { c := defaults(); return &c }
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"ssh with port", func(c *Config) { c.Firewall.Open = []PortSpec{{Proto: TCP, SSH: true, From: 22, To: 22}} }, `firewall.open[0] "ssh": the ssh alias is TCP`},
		{"bad proto", func(c *Config) { c.Firewall.Open = []PortSpec{{Proto: 1, From: 1, To: 1}} }, `firewall.open[0] "proto-1/1": want tcp or udp`},
		{"port zero", func(c *Config) { c.Firewall.Open = []PortSpec{{Proto: UDP}} }, `firewall.open[0] "udp/0": port 0 out of range`},
		{"backwards", func(c *Config) { c.Firewall.Open = []PortSpec{{Proto: TCP, From: 9, To: 8}} }, `firewall.open[0] "tcp/9-8": range 9-8 is backwards`},
		{"invalid prefix", func(c *Config) { c.Firewall.Allow = []netip.Prefix{{}} }, `firewall.allow[0] "invalid Prefix": want an address`},
		{"mapped prefix", func(c *Config) { c.Firewall.Allow = []netip.Prefix{netip.MustParsePrefix("::ffff:192.0.2.0/120")} }, `firewall.allow[0] "::ffff:192.0.2.0/120": IPv4-mapped; write it as 192.0.2.0/24`},
		{"host bits", func(c *Config) { c.Firewall.Allow = []netip.Prefix{netip.MustParsePrefix("192.0.2.1/24")} }, `firewall.allow[0] "192.0.2.1/24": host bits are set; did you mean 192.0.2.0/24?`},
		{"covers", func(c *Config) {
			c.Firewall.Allow = []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32"), netip.MustParsePrefix("192.0.2.0/24")}
		}, `firewall.allow[1] "192.0.2.0/24": covers allow[0] "192.0.2.1"`},
		{"reconcile", func(c *Config) { c.Daemon.ReconcileEvery = 0 }, `daemon.reconcile_every "0s": too short`},
		{"log_rate", func(c *Config) { c.Firewall.LogRate = 0 }, `firewall.log_rate 0: want at least 1`},
		{"log_burst", func(c *Config) { c.Firewall.LogBurst = 0 }, `firewall.log_burst 0: want at least 1`},
		{"socket", func(c *Config) { c.Daemon.Socket = "moat.sock" }, `daemon.socket "moat.sock": want an absolute path`},
		{"socket nul", func(c *Config) { c.Daemon.Socket = "/run/\x00" }, `daemon.socket "/run/\x00": want an absolute path`},
		{"enum", func(c *Config) { c.Firewall.Forward = "" }, `firewall.forward "": want "untouched", "ban" or "drop"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			tt.mod(c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v\nwant it to contain %s", err, tt.want)
			}
		})
	}
}

func TestParsePortSpecRoundTrip(t *testing.T) {
	for _, s := range []string{"ssh", "tcp/22", "udp/53", "tcp/8000-8100", "udp/1", "tcp/65535", "tcp/1-65535"} {
		p, err := ParsePortSpec(s)
		if err != nil {
			t.Errorf("%s: %v", s, err)
			continue
		}
		if p.String() != s {
			t.Errorf("%s: round trip gave %s", s, p)
		}
	}
	if p, err := ParsePortSpec("tcp/22-22"); err != nil || p != (PortSpec{Proto: TCP, From: 22, To: 22}) {
		t.Errorf("tcp/22-22: %v %v", p, err)
	}
}

func TestParseAddrOrPrefix(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":              "192.0.2.7/32",
		"2001:db8::1":            "2001:db8::1/128",
		"2001:DB8::/32":          "2001:db8::/32",
		"::ffff:192.0.2.7":       "192.0.2.7/32",
		"::ffff:192.0.2.0/120":   "192.0.2.0/24",
		"::ffff:0:0/96":          "0.0.0.0/0",
		"::/0":                   "::/0",
		"0.0.0.0/0":              "0.0.0.0/0",
		"::ffff:0:0/95":          "::fffe:0:0/95",
		"2001:db8:42::/48":       "2001:db8:42::/48",
		"192.0.2.128/25":         "192.0.2.128/25",
		"::ffff:192.0.2.128/121": "192.0.2.128/25",
	} {
		if in == "::ffff:0:0/95" {
			continue // host bits set: checked below
		}
		got, err := ParseAddrOrPrefix(in)
		if err != nil || got.String() != want {
			t.Errorf("%s: got %v, %v; want %s", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"::ffff:192.0.2.7/120": "did you mean 192.0.2.0/24?",
		"fe80::1%eth0":         "zones",
		"fe80::%eth0/64":       "zones",
		"":                     "want an address",
		"192.0.2.0/":           "want a network",
		" 192.0.2.1":           "want an address",
	} {
		_, err := ParseAddrOrPrefix(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", in, err, want)
		}
	}
}

// positionsSrc exercises the position scanner; TestPositions knows its lines.
const positionsSrc = `# comment with [brackets] and key = "value"
title = """
[firewall]
open = "not a key"
""" # still a comment
lit = '''
[daemon]'''
s = 'a#b' # x
"quoted.key" = { a = 1, b.c = [
  2,
  { d = 3 },
] }

[ firewall ]
open = [ # comment
  "ssh", # [x]
  [1, 2],

  "tcp/443"
]
'dotted'.key = 2024-01-01 07:00:00
[[door]]
name = "a"
[[door]]
name = "b"
ports = ["tcp/1",
  "tcp/2"]
[door.knock]
seq = 1
`

func TestPositions(t *testing.T) {
	src := positionsSrc
	got := scanPositions(src)
	for path, line := range map[string]int{
		"title":                    2,
		"lit":                      6,
		"s":                        8,
		`"quoted.key"`:             9,
		`"quoted.key".a`:           9,
		`"quoted.key".b.c`:         9,
		`"quoted.key".b.c[0]`:      10,
		`"quoted.key".b.c[1].d`:    11,
		"firewall":                 14,
		"firewall.open":            15,
		"firewall.open[0]":         16,
		"firewall.open[1]":         17,
		"firewall.open[1][1]":      17,
		"firewall.open[2]":         19,
		"firewall.dotted.key":      21,
		"door":                     22,
		"door[0]":                  22,
		"door[0].name":             23,
		"door[1]":                  24,
		"door[1].name":             25,
		"door[1].ports[1]":         27,
		"door[1].knock":            28,
		"door[1].knock.seq":        29,
		"door[1].knock.seq[4]":     29, // falls back to the enclosing key
		"firewall.open[2].nothing": 19,
	} {
		if n := got.line(path); n != line {
			t.Errorf("%s: line %d, want %d", path, n, line)
		}
	}
	if _, ok := got["firewall.open[3]"]; ok {
		t.Error("firewall.open has only three elements")
	}
	if n := got.line("nowhere"); n != 0 {
		t.Errorf("unknown path: line %d", n)
	}
	// The scanner finds every key and element the decoder sees.
	var m map[string]any
	if _, err := toml.Decode(src, &m); err != nil {
		t.Fatal(err)
	}
	walkPaths("", m, func(path string) {
		if _, ok := got[path]; !ok {
			t.Errorf("no position for %s", path)
		}
	})
}

// TestPositionsFindEveryKey feeds the scanner TOML's odder corners.
func TestPositionsFindEveryKey(t *testing.T) {
	for _, src := range []string{
		"a = \"\"\"\"x\"\"\"\"\nb = 1\n",
		"a = '''x'''''\nb = 1\n",
		"a = \"\"\"\\\n  \\\"\"\" \"\"\"\nb = 1\n",
		"t = {\n  a = 1, # comment\n  b = { c = [1,\n 2] },\n}\n",
		"[ \"x y\" . 'z' ]\nk = 1\n[x]\n",
		"\"\" = 1\n'b' . a = 2\n",
		"\"\\u00e9t\u00e9\" = 1\n[\"\\\"q\\\"\"]\nr = 1\n",
		"a = [[1, [2]], [], {x = []}]\n",
		"[[a]]\n[[a.b]]\nc = 1\n[[a.b]]\n[[a]]\n[a.d]\n[[a.b]]\ne = 2\n",
		"d = 1979-05-27 07:32:00Z\ne = 07:32\nf = 1979-05-27T00:32:00.999-07:00 # c\n",
		"n = [+inf, -nan, 0xff_ff, 1_000, 6.626e-34]\n",
		"a.b.c = 1\na.d = 2\n[e.f]\n[e]\ng = 3\n",
		"a = 1\r\nb = [\r\n  2,\r\n]\r\n",
	} {
		var m map[string]any
		if _, err := toml.Decode(src, &m); err != nil {
			t.Errorf("%q: %v", src, err)
			continue
		}
		pos := scanPositions(src)
		walkPaths("", m, func(path string) {
			if _, ok := pos[path]; !ok {
				t.Errorf("%q: no position for %s (have %v)", src, path, pos)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.toml")

	c, src, err := LoadOrDefault(missing, false)
	if err != nil || src != "embedded default" || c.Daemon.StateDir != "/var/lib/moat" {
		t.Errorf("missing, not explicit: %v %q %v", c, src, err)
	}
	if _, _, err := LoadOrDefault(missing, true); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing, explicit: %v", err)
	}
	if _, err := Load(missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("Load missing: %v", err)
	}

	path := filepath.Join(dir, "moat.toml")
	if err := os.WriteFile(path, []byte("[firewall]\nping = true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, explicit := range []bool{false, true} {
		c, src, err := LoadOrDefault(path, explicit)
		if err != nil || src != path || !c.Firewall.Ping {
			t.Errorf("explicit=%v: %v %q %v", explicit, c, src, err)
		}
	}
	if err := os.WriteFile(path, []byte("[firewall]\nping = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrDefault(path, false); err == nil || !strings.HasPrefix(err.Error(), path+": line 2: firewall.ping 1:") {
		t.Errorf("bad file: %v", err)
	}
}

func TestDefaultIsACopy(t *testing.T) {
	Default()[0] = 'X'
	if Default()[0] == 'X' {
		t.Error("Default returned the embedded bytes themselves")
	}
}

func FuzzParse(f *testing.F) {
	f.Add(Default())
	if data, err := os.ReadFile(examplePath); err == nil {
		f.Add(data)
	}
	for _, s := range []string{
		"[firewall]\nopen = [\"tcp/1-65535\", \"udp/53\"]\nallow = [\"::ffff:1.2.3.0/120\"]\n",
		"daemon = { log_level = \"warn\" }\nfirewall.interfaces = [\"eth*\"]\n",
		"[[door]]\nname = \"x\"\n[door.knock]\nseq = [1, 2]\n",
		"a = \"\"\"\n[b]\n\"\"\"\n",
		"[firewall]\nopen = [\"tcp/8100-8000\", 22, \"ssh\", \"ssh\"]\n",
	} {
		f.Add([]byte(s))
	}
	f.Add([]byte(positionsSrc))
	f.Fuzz(func(t *testing.T, data []byte) {
		// The scanner finds every key and element the decoder sees.
		var m map[string]any
		if _, err := toml.Decode(string(data), &m); err == nil {
			pos := scanPositions(string(data))
			walkPaths("", m, func(path string) {
				if _, ok := pos[path]; !ok {
					t.Fatalf("no position for %s", path)
				}
			})
		}

		c, err := Parse(data, "f.toml")
		if err != nil {
			if c != nil {
				t.Fatal("config returned with an error")
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !lineRE.MatchString(line) {
					t.Fatalf("error line without the file name and line: %q", line)
				}
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("parsed config does not validate: %v", err)
		}
		// Every value survives being written out and read back.
		again, err := Parse([]byte(render(c)), "again.toml")
		if err != nil {
			t.Fatalf("re-parse of\n%s\nfailed: %v", render(c), err)
		}
		if !reflect.DeepEqual(c, again) {
			t.Fatalf("round trip changed the config:\n%+v\n%+v", c, again)
		}
	})
}

var lineRE = regexp.MustCompile(`^f\.toml: line [1-9][0-9]*: `)

// walkPaths calls fn with the path of every key and array element in v.
func walkPaths(path string, v any, fn func(string)) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			p := joinKey(path, k)
			fn(p)
			walkPaths(p, e, fn)
		}
	case []any:
		for i, e := range x {
			p := joinIndex(path, i)
			fn(p)
			walkPaths(p, e, fn)
		}
	case []map[string]any:
		for i, e := range x {
			p := joinIndex(path, i)
			fn(p)
			walkPaths(p, e, fn)
		}
	}
}

// render writes c back as TOML, for the fuzz round trip.
func render(c *Config) string {
	var b strings.Builder
	q := tomlQuote
	list := func(items []string) string { return "[" + strings.Join(items, ", ") + "]" }
	fmt.Fprintf(&b, "[daemon]\nstate_dir = %s\nsocket = %s\non_exit = %s\nreconcile_every = %s\nlog_level = %s\n",
		q(c.Daemon.StateDir), q(c.Daemon.Socket), q(c.Daemon.OnExit), q(c.Daemon.ReconcileEvery.String()), q(c.Daemon.LogLevel))
	var ifs, open, allow []string
	for _, s := range c.Firewall.Interfaces {
		ifs = append(ifs, q(s))
	}
	for _, s := range c.Firewall.Open {
		open = append(open, q(s.String()))
	}
	for _, p := range c.Firewall.Allow {
		allow = append(allow, q(p.String()))
	}
	f := c.Firewall
	fmt.Fprintf(&b, "[firewall]\ninterfaces = %s\nopen = %s\nallow = %s\nclosed_response = %s\nping = %t\nstealth = %t\nlog_group = %d\nlog_rate = %d\nlog_burst = %d\nforward = %s\n",
		list(ifs), list(open), list(allow), q(f.ClosedResponse), f.Ping, f.Stealth, f.LogGroup, f.LogRate, f.LogBurst, q(f.Forward))
	var trusted, oa, rej []string
	for _, s := range f.TrustedInterfaces {
		trusted = append(trusted, q(s))
	}
	for _, r := range f.OutputAllow {
		oa = append(oa, q(r.String()))
	}
	for _, s := range f.Reject {
		rej = append(rej, q(s.String()))
	}
	fmt.Fprintf(&b, "trusted_interfaces = %s\noutput = %s\noutput_allow = %s\nreject = %s\n", list(trusted), q(f.Output), list(oa), list(rej))
	fmt.Fprintf(&b, "knock_rate_per_source = %d\nknock_rate = %d\n", f.KnockRatePerSource, f.KnockRate)
	l := c.Login
	var srcs, ign []string
	for _, s := range l.Sources {
		srcs = append(srcs, q(s))
	}
	for _, p := range l.Ignore {
		ign = append(ign, q(p.String()))
	}
	fmt.Fprintf(&b, "[login]\nenabled = %t\nsources = %s\nmode = %s\nmax_retry = %d\nfind_time = %s\nban_time = %s\nban_time_multiplier = %s\nmax_ban_time = %s\nignore = %s\nipv6_prefix_after = %d\nforget_on_success = %t\nmax_tracked = %d\nuse_dns = %s\n",
		l.Enabled, list(srcs), q(l.Mode), l.MaxRetry, q(l.FindTime.String()), q(l.BanTime.String()),
		strconv.FormatFloat(l.BanTimeMultiplier, 'g', -1, 64), q(l.MaxBanTime.String()), list(ign), l.IPv6PrefixAfter, l.ForgetOnSuccess, l.MaxTracked, q(l.UseDNS))
	for _, r := range l.Rules {
		fmt.Fprintf(&b, "[[login.rule]]\nname = %s\nsource = %s\npattern = %s\n", q(r.Name), q(r.Source), q(r.Pattern))
		if r.MaxRetry > 0 {
			fmt.Fprintf(&b, "max_retry = %d\n", r.MaxRetry)
		}
		if r.FindTime > 0 {
			fmt.Fprintf(&b, "find_time = %s\n", q(r.FindTime.String()))
		}
		if r.BanTime > 0 {
			fmt.Fprintf(&b, "ban_time = %s\n", q(r.BanTime.String()))
		}
		if len(r.Ports) > 0 {
			var ps []string
			for _, p := range r.Ports {
				ps = append(ps, q(p.String()))
			}
			fmt.Fprintf(&b, "ports = %s\n", list(ps))
		}
		if r.Kind != "" {
			fmt.Fprintf(&b, "kind = %s\n", q(r.Kind))
		}
		if r.Forget {
			b.WriteString("forget = true\n")
		}
	}
	sc := c.Scan
	var sign, bf []string
	for _, p := range sc.Ignore {
		sign = append(sign, q(p.String()))
	}
	for _, d := range sc.BlockFor {
		bf = append(bf, q(d.String()))
	}
	ints := func(a [5]int) string { return strings.ReplaceAll(fmt.Sprint(a), " ", ", ") }
	fmt.Fprintf(&b, "[scan]\nenabled = %t\nwindow = %s\nblock_level = %d\nblock_for = %s\nignore = %s\nmax_sources = %d\npacket_tiers = %s\nsweep_tiers = %s\nretention = %d\n",
		sc.Enabled, q(sc.Window.String()), sc.BlockLevel, list(bf), list(sign), sc.MaxSources, ints(sc.PacketTiers), ints(sc.SweepTiers), sc.Retention)
	renderReport(&b, c)
	fmt.Fprintf(&b, "[doors]\nlog_file = %s\n", q(c.DoorLog.LogFile))
	fmt.Fprintf(&b, "[metrics]\nlisten = %s\npath = %s\n", q(c.Metrics.Listen), q(c.Metrics.Path))
	fmt.Fprintf(&b, "[page]\nlisten = %s\nallow_remote = %t\n", q(c.Page.Listen), c.Page.AllowRemote)
	{
		ports := func(ps []PortSpec) string {
			var out []string
			for _, p := range ps {
				out = append(out, q(p.String()))
			}
			return "[" + strings.Join(out, ", ") + "]"
		}
		strs := func(ss []string) string {
			var out []string
			for _, x := range ss {
				out = append(out, q(x))
			}
			return "[" + strings.Join(out, ", ") + "]"
		}
		pfx := func(ps []netip.Prefix) string {
			var out []string
			for _, p := range ps {
				out = append(out, q(p.String()))
			}
			return "[" + strings.Join(out, ", ") + "]"
		}
		fmt.Fprintf(&b, "[spa]\nports = %s\nwindow = %s\n", ports(c.SPA.Ports), q(c.SPA.Window.String()))
		if c.SPA.KeyFile != "" {
			fmt.Fprintf(&b, "key_file = %s\n", q(c.SPA.KeyFile))
		}
		for _, cl := range c.SPA.Clients {
			fmt.Fprintf(&b, "[[spa.client]]\nname = %s\ndoors = %s\nports = %s\nmax_duration = %s\nsources = %s\nembed = %t\nrequire_hybrid = %t\n",
				q(cl.Name), strs(cl.Doors), ports(cl.Ports), q(cl.MaxDuration.String()), pfx(cl.Sources), cl.Embed, cl.RequireHybrid)
			if cl.Key != "" {
				fmt.Fprintf(&b, "key = %s\n", q(cl.Key))
			}
			if cl.PSKFile != "" {
				fmt.Fprintf(&b, "psk_file = %s\n", q(cl.PSKFile))
			}
		}
		for _, f := range c.SPA.Fwknop {
			src := pfx(f.Sources)
			if len(f.Sources) == 0 {
				src = `["any"]`
			}
			fmt.Fprintf(&b, "[[spa.fwknop]]\nname = %s\nsource = %s\nopen_ports = %s\nmax_duration = %s\nrequire_source_address = %t\nrequire_username = %s\n",
				q(f.Name), src, ports(f.OpenPorts), q(f.MaxDuration.String()), f.RequireSourceAddress, q(f.RequireUsername))
			for k, v := range map[string]string{"key_base64": f.KeyBase64, "key_file": f.KeyFile, "hmac_key_base64": f.HMACKeyBase64, "hmac_key_file": f.HMACKeyFile} {
				if v != "" {
					fmt.Fprintf(&b, "%s = %s\n", k, q(v))
				}
			}
		}
	}
	for _, dr := range c.Doors {
		ports := func(ps []PortSpec) string {
			var out []string
			for _, p := range ps {
				out = append(out, q(p.String()))
			}
			return list(out)
		}
		argv := func(a []string) string {
			var out []string
			for _, s := range a {
				out = append(out, q(s))
			}
			return list(out)
		}
		fmt.Fprintf(&b, "[[door]]\nname = %s\nsequence = %s\nseq_timeout = %s\ntcpflags = %s\nopen = %s\nopen_for = %s\nclose_sequence = %s\nstart_command = %s\nstop_command = %s\none_time_sequences = %s\nmax_pending = %d\n",
			q(dr.Name), ports(dr.Sequence), q(dr.SeqTimeout.String()), q(dr.TCPFlags.String()), ports(dr.Open), q(dr.OpenFor.String()),
			ports(dr.CloseSequence), argv(dr.StartCommand), argv(dr.StopCommand), q(dr.OneTimeSequences), dr.MaxPending)
	}
	for _, bl := range c.Blocklists {
		fmt.Fprintf(&b, "[[blocklist]]\nname = %s\nsource = %s\nrefresh = %s\nformat = %s\nmax_size = %d\n",
			q(bl.Name), q(bl.Source), q(bl.Refresh.String()), q(bl.Format), bl.MaxSize)
		if bl.CAFile != "" {
			fmt.Fprintf(&b, "ca_file = %s\n", q(bl.CAFile))
		}
	}
	b.WriteString(renderFleet(c.Fleet))
	return b.String()
}

// tomlQuote writes s as a TOML basic string (Go's %q uses escapes TOML lacks).
func tomlQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// The longest socket path the kernel takes is accepted (sun_path is 108
// bytes with its NUL); one byte more is refused by config check, not left
// to fail at start (security review L7).
func TestSocketPathLimit(t *testing.T) {
	src := func(n int) []byte {
		return []byte("[daemon]\nsocket = \"/" + strings.Repeat("s", n-1) + "\"\n")
	}
	if _, err := Parse(src(107), "moat.toml"); err != nil {
		t.Fatalf("107-byte socket path: %v", err)
	}
	_, err := Parse(src(108), "moat.toml")
	var ce *Error
	if !errors.As(err, &ce) || ce.Key != "daemon.socket" || ce.Line != 2 {
		t.Fatalf("108-byte socket path: got %#v, want a *config.Error for daemon.socket on line 2", err)
	}
	if !strings.Contains(err.Error(), "at most 107 bytes") {
		t.Fatalf("108-byte socket path: %v; want it to name the limit", err)
	}
}

// A note that forgets may stand without <HOST>: it ends a connection
// (fail2ban's <F-NOFAIL><F-MLFFORGET> lines, imported so). Without
// forget, a note without an address is refused (the table above).
func TestForgetNoteWithoutHost(t *testing.T) {
	src := "[[login.rule]]\nname = \"x\"\nsource = \"/var/log/x.log\"\npattern = '^x\\[(?P<id>\\d+)\\]: bye$'\nkind = \"note\"\nforget = true\n"
	c, err := Parse([]byte(src), "moat.toml")
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Login.Rules; len(r) != 1 || !r[0].Forget || r[0].RuleKind() != RuleNote {
		t.Fatalf("rules %+v", r)
	}
}

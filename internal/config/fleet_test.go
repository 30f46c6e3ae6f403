package config

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func renderFleet(f Fleet) string {
	strs := func(ss []string) string {
		var out []string
		for _, s := range ss {
			out = append(out, tomlQuote(s))
		}
		return "[" + strings.Join(out, ", ") + "]"
	}
	q := tomlQuote
	return fmt.Sprintf("[fleet]\nservers = %s\nhost = %s\nbucket = %s\nreplicas = %d\ncreds_file = %s\nnkey_file = %s\nuser = %s\npassword_file = %s\ntls_ca = %s\ntls_cert = %s\ntls_key = %s\npublish = %s\naccept = %s\naccept_hosts = %s\nmin_count = %d\nqueue = %d\nserver_listen = %s\n",
		strs(f.Servers), q(f.Host), q(f.Bucket), f.Replicas, q(f.CredsFile), q(f.NKeyFile), q(f.User), q(f.PasswordFile),
		q(f.TLSCA), q(f.TLSCert), q(f.TLSKey), strs(f.Publish), strs(f.Accept), strs(f.AcceptHosts), f.MinCount, f.Queue, q(f.ServerListen))
}

func TestFleetConfig(t *testing.T) {
	c := mustParse(t, `
[fleet]
servers = ["nats://10.210.0.1:4222", "tls://nats.example.net:4222"]
host = "web-1"
user = "moat"
password_file = "/etc/moat/nats.pw"
tls_ca = "/etc/moat/ca.pem"
publish = ["login"]
accept = ["login", "scan"]
accept_hosts = ["web-2"]
min_count = 2
`)
	want := defaultFleet()
	want.Servers = []string{"nats://10.210.0.1:4222", "tls://nats.example.net:4222"}
	want.Host, want.User, want.PasswordFile, want.TLSCA = "web-1", "moat", "/etc/moat/nats.pw", "/etc/moat/ca.pem"
	want.Publish, want.Accept, want.AcceptHosts, want.MinCount = []string{"login"}, []string{"login", "scan"}, []string{"web-2"}, 2
	if !reflect.DeepEqual(c.Fleet, want) {
		t.Fatalf("got %+v\nwant %+v", c.Fleet, want)
	}
	if !c.Fleet.Enabled() || mustParse(t, "").Fleet.Enabled() {
		t.Error("Enabled: fleet is on with servers, off without")
	}
	if got := (&Fleet{}).HostOrDefault("db 1.example"); got != "db" {
		t.Errorf("HostOrDefault = %q", got)
	}
}

func TestFleetConfigErrors(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{"[fleet]\nservers = [\"10.0.0.1:4222\"]\n", `line 2: fleet.servers[0] "10.0.0.1:4222": want a NATS URL like`},
		{"[fleet]\nservers = [\"nats://u:p@10.0.0.1:4222\"]\n", `line 2: fleet.servers[0] "nats://u:p@10.0.0.1:4222": credentials do not belong in the URL`},
		{"[fleet]\n\nbucket = \"moat.bans\"\n", `line 3: fleet.bucket "moat.bans": want a bucket name`},
		{"[fleet]\nhost = \"web 1\"\n", `line 2: fleet.host "web 1": want a host name`},
		{"[fleet]\npublish = [\"login\", \"fleet\"]\n", `line 2: fleet.publish[1] "fleet": want "login", "scan" or "manual"`},
		{"[fleet]\nuser = \"moat\"\n", `line 2: fleet.user "moat": user and password_file go together`},
		{"[fleet]\ntls_cert = \"/c.pem\"\n", `line 2: fleet.tls_cert "/c.pem": tls_cert and tls_key go together`},
		{"[fleet]\ncreds_file = \"fleet.creds\"\n", `line 2: fleet.creds_file "fleet.creds": want an absolute path`},
		{"[fleet]\nmin_count = 0\n", `line 2: fleet.min_count 0: out of range`},
		{"[fleet]\nserver_listen = \"nats:4222\"\n", `line 2: fleet.server_listen "nats:4222": want an IP address and port`},
		{"[fleet]\nserverz = []\n", `line 2: fleet.serverz: unknown key (did you mean "servers"?)`},
	} {
		_, err := Parse([]byte(c.src), "moat.toml")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %q", c.src, err, c.want)
		}
	}
}

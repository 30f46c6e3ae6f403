package sshd

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
)

// keyed is the facts of a host where alice runs moat and has a key.
func keyed() Facts {
	return Facts{Invoker: "alice", Accounts: map[string]Account{"alice": {Name: "alice", Keys: 1}, "root": {Name: "root"}}}
}

func keyless() Facts {
	return Facts{Invoker: "alice", Accounts: map[string]Account{"alice": {Name: "alice"}, "root": {Name: "root"}}}
}

func severities(fs []Finding) map[string]Severity {
	m := map[string]Severity{}
	for _, f := range fs {
		m[f.ID] = f.Severity
	}
	return m
}

func TestAuditTestdata(t *testing.T) {
	tests := []struct {
		file  string
		facts Facts
		want  map[string]Severity
	}{
		{"weak.txt", keyed(), map[string]Severity{
			"permit-empty-passwords":          Critical,
			"permit-root-login":               High,
			"kexalgorithms-broken":            High,
			"ciphers-broken":                  High,
			"macs-broken":                     High,
			"hostkeyalgorithms-broken":        High,
			"pubkeyacceptedalgorithms-broken": High,
			"password-authentication":         Medium,
			"kbd-interactive-authentication":  Medium,
			"login-grace-time":                Medium,
			"gateway-ports":                   Medium,
			"permit-user-environment":         Medium,
			"log-level":                       Medium,
			"strict-modes":                    Medium,
			"max-auth-tries":                  Low,
			"max-startups":                    Low,
			"permit-tunnel":                   Low,
			"x11-forwarding":                  Low,
			"allow-tcp-forwarding":            Low,
			"allow-agent-forwarding":          Low,
			"allow-streamlocal-forwarding":    Low,
			"allow-users":                     Low,
			"kexalgorithms-weak":              Low,
			"ciphers-weak":                    Low,
			"macs-weak":                       Low,
			"port":                            Info,
		}},
		// Without a key, passwords are a lesser finding: they cannot go yet.
		{"weak.txt", keyless(), map[string]Severity{"password-authentication": Low, "kbd-interactive-authentication": Low}},
		{"strong.txt", keyed(), map[string]Severity{"port": Info}},
		{"debian12-default.txt", keyless(), map[string]Severity{
			"macs-broken":                  High, // hmac-sha1 and hmac-sha1-etm
			"permit-root-login":            Medium,
			"password-authentication":      Low,
			"max-auth-tries":               Low,
			"login-grace-time":             Low,
			"x11-forwarding":               Low,
			"allow-tcp-forwarding":         Low,
			"allow-agent-forwarding":       Low,
			"allow-streamlocal-forwarding": Low,
			"allow-users":                  Low,
			"kexalgorithms-weak":           Low,
			"macs-weak":                    Low,
			"hostkeyalgorithms-weak":       Low,
			"port":                         Info,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got := Audit(ParseEffective(readTestdata(t, tt.file)), tt.facts)
			sev := severities(got)
			full := len(tt.want) > 2
			for id, want := range tt.want {
				if sev[id] != want || !slices.ContainsFunc(got, func(f Finding) bool { return f.ID == id }) {
					t.Errorf("%s: severity %v, want %v", id, sev[id], want)
				}
			}
			if full {
				for id := range sev {
					if _, ok := tt.want[id]; !ok {
						t.Errorf("unexpected finding %s (%v)", id, sev[id])
					}
				}
			}
			if !slices.IsSortedFunc(got, func(a, b Finding) int { return int(b.Severity - a.Severity) }) {
				t.Error("findings are not most severe first")
			}
			for _, f := range got {
				if f.Message == "" || f.Key == "" || f.Severity > Info && f.Fix == "" {
					t.Errorf("%s: incomplete finding %+v", f.ID, f)
				}
			}
		})
	}
}

func find(t *testing.T, fs []Finding, id string) Finding {
	t.Helper()
	for _, f := range fs {
		if f.ID == id {
			return f
		}
	}
	t.Fatalf("no finding %s in %v", id, slices.Collect(maps.Keys(severities(fs))))
	return Finding{}
}

func TestAuditFixLines(t *testing.T) {
	fs := Audit(ParseEffective(readTestdata(t, "weak.txt")), keyed())
	for id, fix := range map[string]string{
		"permit-root-login":               "PermitRootLogin no",
		"permit-empty-passwords":          "PermitEmptyPasswords no",
		"password-authentication":         "PasswordAuthentication no",
		"max-startups":                    "MaxStartups 10:30:100",
		"login-grace-time":                "LoginGraceTime 30",
		"log-level":                       "LogLevel VERBOSE",
		"allow-users":                     "AllowUsers alice",
		"kexalgorithms-broken":            "KexAlgorithms ecdh-sha2-nistp256,curve25519-sha256",
		"kexalgorithms-weak":              "KexAlgorithms curve25519-sha256",
		"ciphers-broken":                  "Ciphers aes128-cbc,aes256-ctr,chacha20-poly1305@openssh.com",
		"ciphers-weak":                    "Ciphers aes256-ctr,chacha20-poly1305@openssh.com",
		"macs-broken":                     "MACs umac-64@openssh.com,hmac-sha2-256-etm@openssh.com",
		"hostkeyalgorithms-broken":        "HostKeyAlgorithms rsa-sha2-512,ssh-ed25519",
		"pubkeyacceptedalgorithms-broken": "PubkeyAcceptedAlgorithms ssh-ed25519,rsa-sha2-512,ecdsa-sha2-nistp256",
	} {
		if got := find(t, fs, id).Fix; got != fix {
			t.Errorf("%s: fix %q, want %q", id, got, fix)
		}
	}
	f := find(t, fs, "macs-broken")
	if f.Value != "hmac-md5,hmac-sha1,hmac-sha1-96" || !strings.Contains(f.Message, "hmac-sha1, hmac-sha1-96: SHA-1") {
		t.Errorf("macs-broken names each algorithm and groups reasons: %q %q", f.Value, f.Message)
	}
	if f := find(t, fs, "kbd-interactive-authentication"); !strings.Contains(f.Message, "PAM") {
		t.Errorf("kbd-interactive with UsePAM must say passwords go through PAM: %q", f.Message)
	}
	if f := find(t, fs, "port"); !strings.Contains(f.Message, "obscurity, not security") || !strings.Contains(f.Message, "443") || f.Value != "22,2222" {
		t.Errorf("port: %+v", f)
	}
}

func TestAuditAllWeak(t *testing.T) {
	// Every algorithm weak: the fix is a strong list, never an empty one.
	e := ParseEffective([]byte("ciphers 3des-cbc,arcfour\nmacs hmac-md5\nkexalgorithms diffie-hellman-group1-sha1\n"))
	fs := Audit(e, keyed())
	if got := find(t, fs, "ciphers-broken").Fix; got != "Ciphers chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-gcm@openssh.com,aes256-ctr,aes192-ctr,aes128-ctr" {
		t.Errorf("fix %q", got)
	}
	if got := find(t, fs, "kexalgorithms-broken").Fix; !strings.HasPrefix(got, "KexAlgorithms sntrup761x25519-sha512@openssh.com,curve25519-sha256") {
		t.Errorf("fix %q", got)
	}
}

func TestAuditSettings(t *testing.T) {
	tests := []struct {
		name, out string
		facts     Facts
		id        string
		want      Severity // -1: no finding
		msg       string
	}{
		{"prohibit-password", "permitrootlogin without-password", keyed(), "permit-root-login", Medium, "key"},
		{"forced commands", "permitrootlogin forced-commands-only", keyed(), "permit-root-login", Low, "forced"},
		{"root no", "permitrootlogin no", keyed(), "permit-root-login", -1, ""},
		{"old kbd keyword", "challengeresponseauthentication yes\nusepam no", keyed(), "kbd-interactive-authentication", Medium, "keyboard-interactive"},
		{"pubkey off", "pubkeyauthentication no", keyed(), "pubkey-authentication", Medium, "only way in"},
		{"max auth 4 ok", "maxauthtries 4", keyed(), "max-auth-tries", -1, ""},
		{"grace 60 ok", "logingracetime 60", keyed(), "login-grace-time", -1, ""},
		{"grace 61", "logingracetime 61", keyed(), "login-grace-time", Low, "61s"},
		{"grace 0", "logingracetime 0", keyed(), "login-grace-time", Medium, "CVE-2024-6387"},
		{"startups default", "maxstartups 10:30:100", keyed(), "max-startups", -1, ""},
		{"startups no drop", "maxstartups 10:30:10", keyed(), "max-startups", Low, "random early drop"},
		{"startups rate 100", "maxstartups 5:100:20", keyed(), "max-startups", Low, "random early drop"},
		{"startups wide", "maxstartups 50:30:500", keyed(), "max-startups", Low, "500"},
		{"startups garbage", "maxstartups x:y", keyed(), "max-startups", -1, ""},
		{"disable forwarding", "disableforwarding yes\nx11forwarding yes\nallowtcpforwarding yes\nallowagentforwarding yes", keyed(), "x11-forwarding", -1, ""},
		{"tunnel point-to-point", "permittunnel point-to-point", keyed(), "permit-tunnel", Low, "ssh -w"},
		{"gateway clientspecified", "gatewayports clientspecified", keyed(), "gateway-ports", Medium, "every address"},
		{"user env pattern", "permituserenvironment LANG,LC_*", keyed(), "permit-user-environment", Medium, "LD_PRELOAD"},
		{"allow groups set", "allowgroups ssh-users", keyed(), "allow-users", -1, ""},
		{"allow users as root", "port 22", Facts{Invoker: "root"}, "allow-users", Low, "name who may"},
		{"log quiet", "loglevel QUIET", keyed(), "log-level", Medium, "login guard"},
		{"log debug", "loglevel DEBUG3", keyed(), "log-level", Low, "privacy"},
		{"log info ok", "loglevel INFO", keyed(), "log-level", -1, ""},
		{"hostbased", "hostbasedauthentication yes\nhostbasedacceptedalgorithms ssh-rsa", keyed(), "hostbasedacceptedalgorithms-broken", High, "SHA-1"},
		{"hostbased off ignores its list", "hostbasedauthentication no\nhostbasedacceptedalgorithms ssh-rsa", keyed(), "hostbasedacceptedalgorithms-broken", -1, ""},
		{"ignore rhosts", "ignorerhosts no", keyed(), "ignore-rhosts", Medium, "rhosts"},
		{"gss kex", "gssapikeyexchange yes\ngssapikexalgorithms gss-group14-sha256-,gss-gex-sha1-,gss-curve25519-sha256-", keyed(), "gssapikexalgorithms-broken", High, "gss-gex-sha1-"},
		{"gss kex off", "gssapikeyexchange no\ngssapikexalgorithms gss-gex-sha1-", keyed(), "gssapikexalgorithms-broken", -1, ""},
		{"user keys keep nist", "pubkeyacceptedalgorithms ecdsa-sha2-nistp256,sk-ecdsa-sha2-nistp256@openssh.com", keyed(), "pubkeyacceptedalgorithms-weak", -1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := Audit(ParseEffective([]byte(tt.out+"\n")), tt.facts)
			i := slices.IndexFunc(fs, func(f Finding) bool { return f.ID == tt.id })
			if tt.want < 0 {
				if i >= 0 {
					t.Fatalf("unexpected %+v", fs[i])
				}
				return
			}
			if i < 0 {
				t.Fatalf("no %s in %v", tt.id, severities(fs))
			}
			if fs[i].Severity != tt.want || !strings.Contains(fs[i].Message, tt.msg) {
				t.Errorf("got %v %q, want %v and %q", fs[i].Severity, fs[i].Message, tt.want, tt.msg)
			}
		})
	}
}

func TestAuditHostKeys(t *testing.T) {
	e := ParseEffective([]byte("hostkeyalgorithms ssh-rsa,ssh-ed25519\n"))
	f := keyed()
	f.HostKeys = []HostKey{
		{Path: "/k/ok", Mode: 0o600, Key: PublicKey{"ssh-ed25519", 256}},
		{Path: "/k/group", Mode: 0o640, Key: PublicKey{"ssh-ed25519", 256}},
		{Path: "/k/owner", Mode: 0o600, UID: 1000},
		{Path: "/k/dsa", Mode: 0o600, Key: PublicKey{"ssh-dss", 1024}},
		{Path: "/k/rsa1024", Mode: 0o600, Key: PublicKey{"ssh-rsa", 1024}},
		{Path: "/k/rsa2048", Mode: 0o600, Key: PublicKey{"ssh-rsa", 2048}},
		{Path: "/k/rsa3072", Mode: 0o600, Key: PublicKey{"ssh-rsa", 3072}},
		{Path: "/k/gone", Err: errTest},
	}
	got := map[string]string{}
	for _, x := range Audit(e, f) {
		if strings.HasPrefix(x.ID, "host-key") {
			got[strings.Fields(x.Value)[0]] += x.ID + ":" + x.Severity.String() + " " + x.Fix + ";"
		}
	}
	want := map[string]string{
		"/k/group":   "host-key-permissions:high chmod 600 /k/group;",
		"/k/owner":   "host-key-permissions:high chown root:root /k/owner;",
		"/k/dsa":     "host-key-strength:high ssh-keygen -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key (if missing), then remove HostKey /k/dsa; clients will see a new host key;",
		"/k/rsa1024": "host-key-strength:high ssh-keygen -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key (if missing), then remove HostKey /k/rsa1024; clients will see a new host key;",
		"/k/rsa2048": "host-key-strength:low ssh-keygen -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key (if missing), then remove HostKey /k/rsa2048; clients will see a new host key;",
	}
	if !maps.Equal(got, want) {
		t.Errorf("host key findings\n got %v\nwant %v", got, want)
	}
}

type testErr string

func (e testErr) Error() string { return string(e) }

const errTest = testErr("stat failed")

// A HostKeyAlgorithms fix that no host key could serve passes sshd -t and
// then fails every client: harden must never write it.
func TestAuditHostKeyAlgsGuard(t *testing.T) {
	e := ParseEffective([]byte("hostkeyalgorithms ssh-dss,ecdsa-sha2-nistp256\n"))
	f := keyed()
	f.HostKeys = []HostKey{{Path: "/k/dsa", Mode: 0o600, Key: PublicKey{"ssh-dss", 1024}}}
	x := find(t, Audit(e, f), "hostkeyalgorithms-broken")
	if x.apply != never || !strings.Contains(x.Message, "ed25519 host key first") {
		t.Errorf("%+v", x)
	}
	f.HostKeys = []HostKey{{Path: "/k/ecdsa", Mode: 0o600, Key: PublicKey{"ecdsa-sha2-nistp256", 256}}}
	if x := find(t, Audit(e, f), "hostkeyalgorithms-broken"); x.apply != always {
		t.Errorf("an ECDSA key serves what remains: %+v", x)
	}
}

func TestAuditRawConfig(t *testing.T) {
	f := keyed()
	f.Config = &Files{Directives: []Directive{
		{File: "/etc/ssh/sshd_config", Line: 3, Key: "protocol", Args: []string{"2"}},
		{File: "/etc/ssh/sshd_config", Line: 9, Key: "match", Args: []string{"User", "bob"}, InMatch: true},
	}}
	fs := Audit(ParseEffective([]byte("port 22\n")), f)
	if p := find(t, fs, "protocol"); p.Severity != Info || p.Fix != "delete line 3 of /etc/ssh/sshd_config" || !strings.Contains(p.Message, "7.4") {
		t.Errorf("%+v", p)
	}
	if m := find(t, fs, "match-blocks"); !strings.Contains(m.Value, "sshd_config:9 (Match User bob)") || !strings.Contains(m.Fix, "-C user=") {
		t.Errorf("%+v", m)
	}
	f.Connection = "user=bob"
	if slices.ContainsFunc(Audit(ParseEffective([]byte("port 22\n")), f), func(x Finding) bool { return x.ID == "match-blocks" }) {
		t.Error("with -C the Match blocks are evaluated: no note")
	}
}

func TestSeverity(t *testing.T) {
	for i, name := range []string{"info", "low", "medium", "high", "critical"} {
		s, err := ParseSeverity(strings.ToUpper(name))
		if err != nil || s != Severity(i) || s.String() != name {
			t.Errorf("%s: %v %v", name, s, err)
		}
	}
	if _, err := ParseSeverity("severe"); err == nil || !strings.Contains(err.Error(), "low, medium, high or critical") {
		t.Errorf("bad severity: %v", err)
	}
	b, _ := json.Marshal(Finding{ID: "x", Severity: High, set: "hidden"})
	if string(b) != `{"id":"x","key":"","value":"","severity":"high","message":"","fix":""}` {
		t.Errorf("json %s", b)
	}
	var f Finding
	if err := json.Unmarshal([]byte(`{"severity":"critical"}`), &f); err != nil || f.Severity != Critical {
		t.Errorf("unmarshal %v %v", f.Severity, err)
	}
	s := Summarize([]Finding{{Severity: Critical}, {Severity: Low}, {Severity: Info}}, High)
	if s.Critical != 1 || s.Low != 1 || s.Info != 1 || s.Total != 3 || !s.Failed || s.FailOn != "high" {
		t.Errorf("summary %+v", s)
	}
	if Summarize([]Finding{{Severity: Medium}}, High).Failed {
		t.Error("medium does not fail --fail-on high")
	}
}

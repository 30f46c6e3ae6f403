package cli

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"testing"
)

// FuzzExplainLineJSON: the hand-written encoder writes what
// encoding/json writes, byte for byte, for any field values (user names
// and host names come from log lines anyone can write).
func FuzzExplainLineJSON(f *testing.F) {
	f.Add(1, "sshd", "invalid-user", "10.210.0.1", "root", true, "", "", "")
	f.Add(42, "nginx", "", "", "a\"b\\c\n\t<script>&\u2028\x01", false, "fd00:210::/64", "allowed", "host.example")
	f.Add(0, "", "", "", "\xff\xfe bad utf8 \xc3", false, "", "", "\u2029")
	f.Add(7, "r", "", "fe80::1%a\"<b", "", false, "", "", "")
	f.Add(8, "r", "", "::ffff:10.210.0.1", "\u00e9\u2028", false, "", "", "")
	f.Fuzz(func(t *testing.T, n int, rule, kind, ip, user string, ban bool, prefix, ignored, host string) {
		a, _ := netip.ParseAddr(ip) // the zero Addr where ip is none
		l := explainLine{Line: n, Rule: rule, Kind: kind, IP: a, User: jsonText(user), WouldBan: ban, Prefix: prefix, Ignored: ignored, Host: host}
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(l); err != nil {
			t.Fatal(err)
		}
		if got := l.appendJSON(nil); !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("appendJSON\n got %q\nwant %q", got, want.Bytes())
		}
	})
}

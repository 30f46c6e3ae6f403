package fwknop_test

import (
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/fwknop"
)

const accessConf = `# fwknopd access.conf
SOURCE              ANY
OPEN_PORTS          tcp/22, udp/53
KEY_BASE64          wQSGIx0s2lcCbmwRq2D2sf7CZ0O7vbQDp5YgFLXEP5E=
HMAC_KEY_BASE64     Zx6K1r7dQmHbzIPV5xYkqg8mNhq3Z0CZLkK6R0T3kMcTBH2nMLh4x0oY3XuLYRW1p3oIH+vN3y0gaE2b1v7eFQ==
FW_ACCESS_TIMEOUT   60
REQUIRE_SOURCE_ADDRESS Y
REQUIRE_USERNAME    alice
ENABLE_CMD_EXEC     Y

SOURCE  10.210.0.0/16, 10.211.1.2
OPEN_PORTS tcp/2222
KEY     passphrase
HMAC_KEY	hmacpass

SOURCE ANY
KEY_BASE64 wQSGIx0s2lcCbmwRq2D2sf7CZ0O7vbQDp5YgFLXEP5E=
OPEN_PORTS tcp/22

SOURCE ANY
GPG_REMOTE_ID 1234ABCD
GPG_DECRYPT_ID ABCD1234
`

func TestImport(t *testing.T) {
	stanzas, orphans, err := fwknop.ParseAccess(strings.NewReader("PCAP_INTF eth0\n" + accessConf))
	if err != nil {
		t.Fatal(err)
	}
	if len(stanzas) != 4 || len(orphans) != 1 {
		t.Fatalf("%d stanzas, %d orphans", len(stanzas), len(orphans))
	}
	srv, _ := fwknop.ParseVars(strings.NewReader("PCAP_FILTER   udp port 62301\n"))
	port, note := fwknop.ServerPort(srv)
	out, warnings := fwknop.Import(stanzas, port, note)
	cfg, err := config.Parse([]byte(out), "imported")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(cfg.SPA.Fwknop) != 2 || cfg.SPA.Ports[0].From != 62301 {
		t.Fatalf("%+v\n%s", cfg.SPA, out)
	}
	a, b := cfg.SPA.Fwknop[0], cfg.SPA.Fwknop[1]
	if a.Sources != nil || len(a.OpenPorts) != 2 || a.MaxDuration.Seconds() != 60 || !a.RequireSourceAddress || a.RequireUsername != "alice" {
		t.Errorf("first stanza %+v", a)
	}
	if k, _ := config.FwknopKey(b.KeyBase64); string(k) != "passphrase" || len(b.Sources) != 2 {
		t.Errorf("second stanza %+v", b)
	}
	for _, w := range []string{"ENABLE_CMD_EXEC not converted", "fwknop-3 (access.conf line 17) not converted: no HMAC_KEY_BASE64", "fwknop-4 (access.conf line 21) not converted: a GPG stanza"} {
		if !strings.Contains(strings.Join(warnings, "\n"), w) || !strings.Contains(out, w) {
			t.Errorf("no warning %q in\n%s", w, out)
		}
	}
}

func FuzzParseAccess(f *testing.F) {
	f.Add(accessConf)
	f.Add("SOURCE ANY\nOPEN_PORTS tcp/0,\x00/1\nKEY_BASE64 \"\nHMAC_KEY \\\n\xff FW_ACCESS_TIMEOUT -1\n")
	f.Fuzz(func(t *testing.T, in string) {
		stanzas, _, err := fwknop.ParseAccess(strings.NewReader(in))
		if err != nil {
			return
		}
		out, _ := fwknop.Import(stanzas, 62201, "from\nUDPSERV_PORT")
		var v map[string]any
		if _, err := toml.Decode(out, &v); err != nil {
			t.Fatalf("import wrote invalid TOML: %v\n%s", err, out)
		}
		spa, _ := v["spa"].(map[string]any)
		got, _ := spa["fwknop"].([]map[string]any)
		if len(got) > len(stanzas) {
			t.Fatalf("%d stanzas became %d entries", len(stanzas), len(got))
		}
	})
}

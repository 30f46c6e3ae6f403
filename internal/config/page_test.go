package config

import (
	"strings"
	"testing"
)

func TestPageListen(t *testing.T) {
	for _, c := range []struct {
		toml, err string
		want      Page
	}{
		{"", "", Page{}},
		{"[page]\nlisten = \"127.0.0.1:9734\"\n", "", Page{Listen: "127.0.0.1:9734"}},
		{"[page]\nlisten = \"[::1]:9734\"\n", "", Page{Listen: "[::1]:9734"}},
		{"[page]\nlisten = \"10.0.0.1:9734\"\n", `line 2: page.listen "10.0.0.1:9734": not a loopback address`, Page{}},
		{"[page]\nlisten = \"0.0.0.0:9734\"\n", `ssh -L 9734:127.0.0.1:9734`, Page{}},
		{"[page]\nlisten = \"0.0.0.0:9734\"\nallow_remote = true\n", "", Page{Listen: "0.0.0.0:9734", AllowRemote: true}},
		{"[page]\nlisten = \"localhost:9734\"\n", `page.listen "localhost:9734": want an IP address and port`, Page{}},
		{"[page]\nlisten = 9734\n", `page.listen 9734: want an address and port in quotes`, Page{}},
		{"[page]\nallow_remote = \"yes\"\n", `page.allow_remote "yes": want true or false`, Page{}},
	} {
		cfg, err := Parse([]byte(c.toml), "moat.toml")
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: error %v, want it to contain %q", c.toml, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", c.toml, err)
			continue
		}
		if cfg.Page != c.want {
			t.Errorf("%q: %+v, want %+v", c.toml, cfg.Page, c.want)
		}
	}
}

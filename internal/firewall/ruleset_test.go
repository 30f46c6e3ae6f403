package firewall

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/spa"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

// TestBuildGolden pins the ruleset of the default and example configs. The
// kernel test proves the text is what nft lists; this one makes any change
// to the rules show up in review.
func TestBuildGolden(t *testing.T) {
	for _, c := range []struct{ name, file string }{
		{"default", ""},
		{"example", "../../examples/moat.toml"},
	} {
		t.Run(c.name, func(t *testing.T) {
			data := config.Default()
			if c.file != "" {
				var err error
				if data, err = os.ReadFile(c.file); err != nil {
					t.Fatal(err)
				}
			}
			cfg, err := config.Parse(data, c.name)
			if err != nil {
				t.Fatal(err)
			}
			// The daemon fills in what the ruleset needs of [spa]
			// (daemon.FirewallFor, which this package cannot import): the
			// example's clients with a key line have their ids here.
			if cfg.SPA.Enabled() {
				cfg.Firewall.SPAPorts, cfg.Firewall.SPAFwknop = cfg.SPA.Ports, len(cfg.SPA.Fwknop) > 0
			}
			for _, cl := range cfg.SPA.Clients {
				if k, err := spa.ParsePublicKey(cl.Key); err == nil {
					cfg.Firewall.SPAClientIDs = append(cfg.Firewall.SPAClientIDs, [8]byte(k.ID()))
				}
			}
			got := Build(cfg.Firewall, []uint16{22}).String()
			golden := filepath.Join("testdata", c.name+".nft")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Fatalf("ruleset changed; if intended, run go test ./internal/firewall -run Golden -update\n%s", got)
			}
		})
	}
}

// The interval helpers the set encoding and read-back rest on.
func TestLastAddrAndRanges(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.0/8":       "10.255.255.255",
		"10.1.2.3/32":      "10.1.2.3",
		"fd00:210::/32":    "fd00:210:ffff:ffff:ffff:ffff:ffff:ffff",
		"255.255.255.0/24": "255.255.255.255",
	} {
		if got := lastAddr(mustPrefix(in)).String(); got != want {
			t.Errorf("lastAddr(%s) = %s, want %s", in, got, want)
		}
	}
	ps := rangeToPrefixes(mustAddr("10.0.0.1"), mustAddr("10.0.0.6"))
	var s []string
	for _, p := range ps {
		s = append(s, p.String())
	}
	if got := fmtList(s); got != "10.0.0.1/32 10.0.0.2/31 10.0.0.4/31 10.0.0.6/32" {
		t.Errorf("rangeToPrefixes: %s", got)
	}
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func mustAddr(s string) netip.Addr     { return netip.MustParseAddr(s) }
func fmtList(s []string) string        { return strings.Join(s, " ") }

// The daemon's NFLOG intake scores only prefixes starting "moat:" (another
// ruleset may log to the same group), so every rule moat logs with must use
// one, doors included.
func TestEveryLogPrefixIsMoats(t *testing.T) {
	data, err := os.ReadFile("../../examples/moat.toml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(data, "example")
	if err != nil {
		t.Fatal(err)
	}
	text := Build(cfg.Firewall, []uint16{22}, cfg.Doors...).String()
	n := 0
	for rest := text; ; n++ {
		i := strings.Index(rest, `log prefix "`)
		if i < 0 {
			break
		}
		rest = rest[i+len(`log prefix "`):]
		if !strings.HasPrefix(rest, LogPrefix("")) {
			t.Errorf("a rule logs with a prefix not starting %q: log prefix %q...", LogPrefix(""), rest[:min(len(rest), 20)])
		}
	}
	if n < 3 {
		t.Fatalf("found %d log prefixes in the example ruleset; the test no longer sees them", n)
	}
}

func TestKernelDoorLogsItsGrants(t *testing.T) {
	door := config.Door{Name: "ssh", Sequence: []config.PortSpec{{Proto: config.TCP, From: 7000, To: 7000}, {Proto: config.UDP, From: 7200, To: 7200}},
		CloseSequence: []config.PortSpec{{Proto: config.UDP, From: 7400, To: 7400}, {Proto: config.UDP, From: 7600, To: 7600}},
		Open:          []config.PortSpec{{Proto: config.TCP, From: 22, To: 22}}, OpenFor: 30 * time.Second, SeqTimeout: 5 * time.Second, MaxPending: 64}
	text := Build(config.Firewall{LogGroup: 7, LogRate: 1, LogBurst: 1}, nil, door).String()
	for _, want := range []string{
		`add @grant4 { ip saddr . tcp . 22 timeout 30s } log prefix "moat:grant:ssh" group 7`,
		`delete @grant6 { ip6 saddr . tcp . 22 } log prefix "moat:revoke:ssh" group 7`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, text)
		}
	}
	for _, c := range []struct {
		prefix  string
		door    string
		closing bool
		ok      bool
	}{
		{GrantLogPrefix("ssh", false), "ssh", false, true},
		{GrantLogPrefix("web_2", true), "web_2", true, true},
		{LogPrefix("closed"), "", false, false},
		{LogPrefix("grant:"), "", false, false},
		{"grant:ssh", "", false, false},
	} {
		door, closing, ok := ParseGrantLog([]byte(c.prefix))
		if door != c.door || closing != c.closing || ok != c.ok {
			t.Errorf("ParseGrantLog(%q) = %q %v %v", c.prefix, door, closing, ok)
		}
	}
}

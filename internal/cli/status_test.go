package cli

import (
	"bufio"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/alert"
	"github.com/moat-fw/moat/internal/daemon"
	"github.com/moat-fw/moat/internal/lookup"
	"github.com/moat-fw/moat/internal/osfp"
	"github.com/moat-fw/moat/internal/portscan"
)

// psadSections maps each section of `psad -S` (the reference guide's
// output, testdata/psad-S.txt) to the heading of its counterpart in
// `moat status` (or `moat status ADDR`). docs/status.md is the same table
// for people.
var psadSections = []struct{ psad, moat string }{
	{"[+] psad (pid:", "daemon:    running, pid"},
	{"Running since:", "(since "},
	{"Command line arguments:", "config:"},
	{"Alert email address(es):", "alerts:"},
	{"[+] Version:", ", moat "},
	{"[+] Top 50 signature matches:", "scan types (sources that sent each):"},
	{"[+] Top 25 attackers:", "top attackers (danger level"},
	{"[+] Top 20 scanned ports:", "most scanned ports:"},
	{"[+] iptables log prefix counters:", "packets per log prefix:"},
	{"iptables auto-blocked IPs:", "auto-blocked (scan bans in force):"},
	{"Total packet counters:", "packets seen: tcp"},
	{"[+] IP Status Detail:", "the whole story: moat status ADDR"},
	{"Total scan sources:", "scan sources:"},
	{"Total scan destinations:", "scan destinations:"},
	{"[+] These results are available in:", "all of this as JSON: moat status --json"},
}

// What psad prints under IP Status Detail, and its counterpart in
// `moat status ADDR`.
var psadDetail = []struct{ psad, moat string }{
	{"SRC:", "address:"},
	{"DL:", "scan:      danger level"},
	{"Scanned ports:", "probes to"},
	{"Signature match:", "types "},
	{"Email alerts:", "banned:"},
}

func sampleStatus() daemon.Status {
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	until := t0.Add(time.Hour)
	src := portscan.SourceReport{Addr: mustAddr("203.0.113.7"), Level: 4, Types: []string{"syn", "noopts"}, Packets: 418, Ports: 200, PortLow: 1, PortHigh: 1024,
		LocalAddrs: 1, Protocols: []string{"tcp"}, First: t0, Last: t0.Add(time.Minute), Active: true,
		Fingerprint: "255:0:1024:-:-:nodf", OS: &osfp.Guess{Name: "masscan", Class: "scanner", Hops: 5, Exact: true}}
	return daemon.Status{PID: 4242, Started: t0, ConfigSource: "/etc/moat/moat.toml", Enforcing: true, TablePresent: true,
		Version: "v1.2.3", BansByOrigin: map[string]int{"scan": 1},
		Scan: &daemon.ScanStatus{Report: portscan.Report{Sources: []portscan.SourceReport{src}}},
		Report: &daemon.ReportStatus{MinLevel: 1,
			Attackers: []daemon.Attacker{{SourceReport: src, Banned: true, BannedUntil: &until, BanOrigin: "scan",
				Info: lookup.Info{Name: "scanner.example.net", Country: "NL", ASN: 64500, ASOrg: "Example Net"}}},
			Types:    []daemon.TypeCount{{Type: "syn", Sources: 1}, {Type: "null", Sources: 1}},
			Ports:    []portscan.PortReport{{Proto: "tcp", Port: 443, Packets: 10}, {Proto: "udp", Port: 5353, Packets: 1032}},
			Prefixes: []daemon.PrefixCount{{Prefix: "moat:null", Kind: "stealth", Packets: 17}, {Prefix: "moat:closed", Kind: "closed", Packets: 3751}},
			Packets:  daemon.PacketCounts{TCP: 17, UDP: 3751}, Sources: 2, Destinations: 3,
			Blocked: []daemon.BlockedJSON{{Addr: "203.0.113.7", Until: &until}}, BlockedTotal: 1,
			Guards: []daemon.GuardCount{{Guard: "scan", Active: 1, Made: 1, Events: 418}, {Guard: "login", Made: 0, Events: 3}},
			Jails:  []daemon.JailCount{{Name: "sshd", Counting: 1}, {Name: "nginx-auth", Counting: 2, Banned: 1}}},
		Alerts: &daemon.AlertStatus{Stats: alert.Stats{Received: 5, Destinations: []alert.DestStats{{Name: "email via smtp.example.org:587", Sent: 2}}}},
	}
}

func TestStatusHasEveryPsadSection(t *testing.T) {
	var out strings.Builder
	st := sampleStatus()
	printStatus(&out, st)
	text := out.String()
	var detail strings.Builder
	printAddrStatus(&detail, daemon.AddrStatus{Addr: "203.0.113.7", Bans: []daemon.EntryJSON{{Addr: "203.0.113.7", Origin: "scan", Reason: "port scan"}},
		Scan: &st.Report.Attackers[0].SourceReport, Users: map[string]int{"root": 3}, Info: st.Report.Attackers[0].Info})
	docs, err := os.ReadFile("../../docs/status.md")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("testdata/psad-S.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[string]bool{}
	inDetail := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "[+] IP Status Detail") {
			inDetail = true
		}
		if inDetail && strings.HasPrefix(line, "SRC:") {
			for _, d := range psadDetail {
				if !strings.Contains(line, d.psad) && !strings.HasPrefix(line, d.psad) {
					continue
				}
				if !strings.Contains(detail.String(), d.moat) {
					t.Errorf("psad's detail %q: no %q in moat status ADDR:\n%s", d.psad, d.moat, detail.String())
				}
			}
		}
		// A section: psad's [+] headings, its counters' lines, the
		// auto-blocked list; and the header's lines.
		if !strings.HasPrefix(line, "[+]") && !strings.HasPrefix(line, "Total ") && !strings.Contains(line, "auto-blocked") &&
			!strings.HasPrefix(line, "Running since") && !strings.HasPrefix(line, "Command line") && !strings.HasPrefix(line, "Alert email") {
			continue
		}
		found := false
		for _, s := range psadSections {
			if !strings.HasPrefix(line, s.psad) {
				continue
			}
			found, seen[s.psad] = true, true
			if !strings.Contains(text, s.moat) {
				t.Errorf("psad's %q: no %q in moat status", s.psad, s.moat)
			}
			if !strings.Contains(string(docs), strings.TrimSuffix(s.psad, ":")) {
				t.Errorf("docs/status.md does not map psad's %q", s.psad)
			}
		}
		if !found {
			t.Errorf("psad's section %q has no counterpart in psadSections", line)
		}
	}
	if len(seen) != len(psadSections) {
		t.Errorf("only %d of %d sections found in testdata/psad-S.txt", len(seen), len(psadSections))
	}
	// The details only moat has, shown per attacker.
	for _, want := range []string{"masscan, 5 hops", "scanner.example.net NL AS64500 Example Net", "until ", "nginx-auth: 2 being counted, 1 banned",
		"moat:null (stealth) 17", "email via smtp.example.org:587: 2 sent"} {
		if !strings.Contains(text, want) {
			t.Errorf("no %q in:\n%s", want, text)
		}
	}
	for _, want := range []string{`users:     "root" 3`, "os guess:  masscan, 5 hops (SYN 255:0:1024:-:-:nodf)", "known as:  scanner.example.net NL"} {
		if !strings.Contains(detail.String(), want) {
			t.Errorf("no %q in:\n%s", want, detail.String())
		}
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

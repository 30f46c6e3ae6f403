package firewall

import (
	"strings"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/config"
)

func stealthDoors() []config.Door {
	tcp := func(p uint16) config.PortSpec { return config.PortSpec{Proto: config.TCP, From: p, To: p} }
	udp := func(p uint16) config.PortSpec { return config.PortSpec{Proto: config.UDP, From: p, To: p} }
	return []config.Door{
		{Name: "kern", Sequence: []config.PortSpec{tcp(7000), tcp(7100), udp(7200)}, CloseSequence: []config.PortSpec{udp(7400), tcp(7500)},
			SeqTimeout: 5 * time.Second, TCPFlags: config.TCPFlags{Set: 0x02}, Open: []config.PortSpec{tcp(2222)}, OpenFor: time.Minute, MaxPending: 64},
		{Name: "one", Sequence: []config.PortSpec{udp(4000)}, SeqTimeout: time.Second, Open: []config.PortSpec{udp(5000)}, OpenFor: time.Minute, MaxPending: 16},
		{Name: "hook", Sequence: []config.PortSpec{tcp(6000), udp(6001)}, SeqTimeout: 3 * time.Second, Open: []config.PortSpec{tcp(6022)},
			OpenFor: time.Minute, StartCommand: []string{"/bin/true"}, MaxPending: 100},
	}
}

// H4: every knock-chain rule that ends a packet's way through the ruleset
// (first step, steps, repeats, the daemon-mode handoff) answers exactly as
// the closed-port rules do: drop in drop mode; with reject, a TCP reset for
// TCP and an ICMP port unreachable for UDP. A silent knock port among RSTs
// would give the sequence away.
func TestKnockRulesAnswerAsClosedPorts(t *testing.T) {
	for _, resp := range []string{"drop", "reject"} {
		t.Run(resp, func(t *testing.T) {
			fw := config.Firewall{ClosedResponse: resp, LogGroup: 7, LogRate: 10, LogBurst: 10, Forward: "untouched"}
			rs := Build(fw, []uint16{22}, stealthDoors()...)
			var knock *Chain
			for i := range rs.Chains {
				if rs.Chains[i].Name == "knock" {
					knock = &rs.Chains[i]
				}
			}
			if knock == nil {
				t.Fatal("no knock chain")
			}
			ended := 0
			for _, r := range knock.Rules {
				text := r.Text()
				last := r.stmts[len(r.stmts)-1].text
				if !strings.HasPrefix(last, "drop") && !strings.HasPrefix(last, "reject") {
					continue // a reset or the pending-source log: the packet goes on
				}
				ended++
				tcp := strings.Contains(text, "tcp dport") || strings.Contains(text, "{ tcp . ")
				udp := strings.Contains(text, "udp dport") || strings.Contains(text, "{ udp . ")
				if tcp == udp {
					t.Fatalf("rule matches both or neither protocol, so it cannot answer as a closed port of one: %s", text)
				}
				want := "drop"
				if resp == "reject" {
					want = "reject"
					if tcp {
						want = "reject with tcp reset"
					}
				}
				if last != want {
					t.Errorf("closed_response %s: knock rule ends %q, want %q (as a closed port): %s", resp, last, want, text)
				}
			}
			if ended < 8 {
				t.Fatalf("only %d knock rules end a packet's way", ended)
			}
		})
	}
}

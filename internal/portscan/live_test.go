package portscan

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/netnstest"
	"github.com/moat-fw/moat/internal/nflog"
	"github.com/moat-fw/moat/internal/packet"
)

// goldenExtra holds the real packets of the scans internal/packet's golden
// file lacks (connect scan, host discovery, a sweep of two addresses),
// written by MOAT_UPDATE_GOLDEN=1 go test ./internal/portscan -run Live.
const goldenExtra = "testdata/nmap_extra.txt"

type logged struct {
	prefix string
	raw    []byte
	p      packet.Packet
	ts     time.Time
}

type liveRecorder struct {
	mu   sync.Mutex
	msgs []logged
}

func (r *liveRecorder) handle(m *nflog.Message) {
	l := logged{prefix: string(m.Prefix), raw: append([]byte(nil), m.Payload...), ts: m.Timestamp}
	if packet.Decode(m.Family, m.Payload, &l.p) != nil {
		return
	}
	r.mu.Lock()
	r.msgs = append(r.msgs, l)
	r.mu.Unlock()
}

// settle waits until no packet has arrived for 300 ms, and returns those
// after the first skip.
func (r *liveRecorder) settle(skip int) []logged {
	last, since := -1, time.Now()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		r.mu.Lock()
		n := len(r.msgs)
		r.mu.Unlock()
		if n != last {
			last, since = n, time.Now()
		} else if time.Since(since) > 300*time.Millisecond {
			break
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.msgs[skip:])
}

// TestLiveNmap runs real nmap scans from a client namespace at a server
// namespace holding moat's own ruleset (stealth on, port 22 open), reads
// what it logs over NFLOG, and scores it.
func TestLiveNmap(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommands(t, "nft", "nmap")
	srv, cli := netnstest.New(t), netnstest.New(t)
	link := netnstest.Connect(t, srv, cli)
	second := link.Host4(3)
	srv.AddAddr(t, link.AIf, netip.PrefixFrom(second, 24))

	cfg, err := config.Parse(config.Default(), "default")
	if err != nil {
		t.Fatal(err)
	}
	fw := cfg.Firewall
	fw.Allow, fw.Ping, fw.Stealth, fw.ClosedResponse = nil, false, true, "drop"
	fw.LogGroup, fw.LogRate, fw.LogBurst = 11, 100000, 100000 // see everything nmap sends
	if err := firewall.NewApplier(nftables.WithNetNSFd(srv.Fd())).Apply(firewall.Build(fw, nil), nil, nil); err != nil {
		t.Fatal(err)
	}
	conn, err := nflog.Open(fw.LogGroup, nflog.WithNetNS(srv.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	var rec liveRecorder
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- conn.Receive(ctx, rec.handle) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Receive: %v", err)
		}
		conn.Close()
	})

	host := link.A4
	fast := []string{"-n", "--max-retries", "0", "--initial-rtt-timeout", "20ms", "--max-rtt-timeout", "20ms"}
	scans := []struct {
		name     string
		args     []string
		dsts     []netip.Addr
		types    string // the source's types, exactly
		level    int
		prefixes []string // log prefixes the ruleset gave, all of them
		golden   bool
	}{
		{"-sT", []string{"-sT", "-Pn", "-p", "9001,9002"}, nil, "connect", 0, []string{"moat:closed"}, true},
		{"-sS 200 ports", []string{"-sS", "-Pn", "-p", "1-200"}, nil, "syn", 3, []string{"moat:closed"}, false},
		{"-sX 20 ports", []string{"-sX", "-Pn", "-p", "1-20"}, nil, "xmas", 3, []string{"moat:xmas"}, false},
		{"-sN 20 ports", []string{"-sN", "-Pn", "-p", "1-20"}, nil, "null", 3, []string{"moat:null"}, false},
		{"-sF 20 ports", []string{"-sF", "-Pn", "-p", "1-20"}, nil, "fin", 3, []string{"moat:finnoack"}, false},
		{"-sA 20 ports", []string{"-sA", "-Pn", "-p", "1-20"}, nil, "ack/window", 2, []string{"moat:nosyn"}, false},
		{"-sM 20 ports", []string{"-sM", "-Pn", "-p", "1-20"}, nil, "maimon", 3, []string{"moat:invalid"}, false}, // conntrack calls a lone FIN+ACK invalid
		{"-sU 10 ports", []string{"-sU", "-Pn", "-p", "9001-9010"}, nil, "udp", 1, []string{"moat:closed"}, false},
		{"-sn -PE two addresses", []string{"-sn", "-PE", "--disable-arp-ping"}, []netip.Addr{host, second}, "ping,sweep", 1, []string{"moat:closed"}, true},
		{"-sn host discovery", []string{"-sn", "--disable-arp-ping"}, nil, "syn,ack/window,ping,icmp-probe", 2, []string{"moat:closed", "moat:nosyn"}, true},
	}
	var golden strings.Builder
	golden.WriteString("# Packets real nmap 7.93 scans sent, as moat's ruleset logged them over NFLOG,\n" +
		"# written by MOAT_UPDATE_GOLDEN=1 go test ./internal/portscan -run Live.\n" +
		"# Each line: the IP packet in hex, a tab, its decoding (%+v).\n")
	for _, sc := range scans {
		t.Run(sc.name, func(t *testing.T) {
			skip := len(rec.settle(0))
			dsts := sc.dsts
			if dsts == nil {
				dsts = []netip.Addr{host}
			}
			args := append(append([]string{"nmap"}, sc.args...), fast...)
			for _, a := range dsts {
				args = append(args, a.String())
			}
			if out, err := cli.RunErr(args...); err != nil {
				t.Fatalf("%v: %v\n%s", args, err, out)
			}
			got := rec.settle(skip)
			if len(got) == 0 {
				t.Fatal("nothing logged")
			}
			d := New(Config{})
			var decs []Decision
			prefixes := map[string]bool{}
			for _, l := range got {
				prefixes[l.prefix] = true
				if dec, ok := d.Observe(&l.p, []byte(l.prefix), l.ts); ok {
					decs = append(decs, dec)
				}
			}
			r := d.Report(got[len(got)-1].ts, 5)
			if len(r.Sources) != 1 || r.Sources[0].Addr != link.B4 {
				t.Fatalf("sources %+v", r.Sources)
			}
			s := r.Sources[0]
			if strings.Join(s.Types, ",") != sc.types || s.Level != sc.level {
				t.Errorf("%d packets: types %v level %d, want %s level %d", len(got), s.Types, s.Level, sc.types, sc.level)
			}
			if sc.level > 0 && (len(decs) == 0 || decs[len(decs)-1].Level != sc.level) {
				t.Errorf("decisions %+v", decs)
			}
			var ps []string
			for p := range prefixes {
				ps = append(ps, p)
			}
			slices.Sort(ps)
			if !slices.Equal(ps, sc.prefixes) {
				t.Errorf("prefixes %v, want %v", ps, sc.prefixes)
			}
			t.Logf("%d packets logged: level %d, %v, %d ports, first %v", len(got), s.Level, s.Types, s.Ports, &got[0].p)
			if sc.golden {
				fmt.Fprintf(&golden, "# nmap %s\n", strings.Join(sc.args, " "))
				for _, l := range got {
					fmt.Fprintf(&golden, "%s\t%+v\n", hex.EncodeToString(l.raw), l.p)
				}
			}
		})
	}
	if os.Getenv("MOAT_UPDATE_GOLDEN") != "" && !t.Failed() {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenExtra, []byte(golden.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", goldenExtra)
	}
}

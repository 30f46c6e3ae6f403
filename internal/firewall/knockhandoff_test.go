package firewall_test

import (
	"context"
	"errors"
	"net/netip"
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

// The daemon-mode handoff batches only what cannot complete a sequence: a
// flood of forged first knocks reaches the daemon many packets to a
// datagram (it cost the daemon 38% of a core at 60,000/s when each came
// alone), a knock that may complete one comes at once, and a source's first
// knock, waiting in the batch, still reaches the daemon before its next.
func TestDaemonKnockHandoffBatchesOnlyFirstKnocks(t *testing.T) {
	netnstest.RequireRoot(t)
	server, client := netnstest.New(t), netnstest.New(t)
	link := netnstest.Connect(t, server, client)
	server.IP(t, "route", "add", "default", "via", link.B4.String())
	tcp := func(p uint16) config.PortSpec { return config.PortSpec{Proto: config.TCP, From: p, To: p} }
	door := config.Door{Name: "hook", SeqTimeout: time.Minute, Sequence: []config.PortSpec{tcp(7000), tcp(7100)},
		Open: []config.PortSpec{tcp(2222)}, OpenFor: time.Minute, StartCommand: []string{"/bin/true"}, MaxPending: 4096}
	fw := config.Firewall{ClosedResponse: "drop", LogGroup: 7, LogRate: 1, LogBurst: 1, Forward: "untouched"}
	a := firewall.NewApplier(nftables.WithNetNSFd(server.Fd()))
	defer a.Close()
	if err := a.Apply(firewall.Build(fw, nil, door), nil, nil); err != nil {
		t.Fatal(err)
	}
	c, err := nflog.Open(fw.LogGroup, nflog.WithNetNS(server.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	type knock struct {
		src  netip.Addr
		port uint16
	}
	var mu sync.Mutex
	var got []knock
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		var p packet.Packet
		done <- c.Receive(ctx, func(m *nflog.Message) {
			if packet.Decode(m.Family, m.Payload, &p) == nil {
				mu.Lock()
				got = append(got, knock{p.Src, p.DstPort})
				mu.Unlock()
			}
		})
	}()
	defer func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Receive: %v", err)
		}
	}()
	received := func(n int) []knock {
		t.Helper()
		netnstest.Eventually(t, 5*time.Second, "the logged knocks", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(got) >= n
		})
		mu.Lock()
		defer mu.Unlock()
		return append([]knock(nil), got...)
	}
	forged := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 210, 250, byte(1 + i)}) }

	// 40 forged first knocks, then the real knocker's first and second.
	var probes []netnstest.Probe
	for i := range 40 {
		probes = append(probes, netnstest.Probe{Src: forged(i), Dst: link.A4, Port: 7000})
	}
	probes = append(probes, netnstest.Probe{Src: link.B4, Dst: link.A4, Port: 7000}, netnstest.Probe{Src: link.B4, Dst: link.A4, Port: 7100})
	client.SpoofSYNs(t, 0, probes)
	ks := received(len(probes))
	if len(ks) != len(probes) || ks[40] != (knock{link.B4, 7000}) || ks[41] != (knock{link.B4, 7100}) {
		t.Fatalf("the daemon got %v, want the 40 forged knocks, then %s's 7000 before its 7100", ks, link.B4)
	}
	s := c.Stats()
	if s.Datagrams > s.Received/4 {
		t.Fatalf("%d first knocks came in %d datagrams: the kernel did not batch them", s.Received, s.Datagrams)
	}

	// Knocks on a later step's port may complete a sequence: one datagram
	// each, at once.
	probes = probes[:0]
	for i := range 3 {
		probes = append(probes, netnstest.Probe{Src: forged(100 + i), Dst: link.A4, Port: 7100})
	}
	client.SpoofSYNs(t, 0, probes)
	received(len(ks) + 3)
	if s2 := c.Stats(); s2.Received-s.Received != 3 || s2.Datagrams-s.Datagrams != 3 {
		t.Fatalf("3 knocks on a later step's port came in %d datagrams (%d packets), want one each",
			s2.Datagrams-s.Datagrams, s2.Received-s.Received)
	}
}

package firewall_test

import (
	"bytes"
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

// The SPA handoff gives moat only datagrams with moat's version byte and a
// configured client's id (random floods stay in the kernel), and those at
// most 4 a second per source (bursts of 8); with [[spa.fwknop]] entries,
// datagrams of fwknop's sizes go too. Each rule is the reason one count
// below is what it is.
func TestSPAHandoffTakesOnlyKnownClients(t *testing.T) {
	netnstest.RequireRoot(t)
	server, client := netnstest.New(t), netnstest.New(t)
	link := netnstest.Connect(t, server, client)
	server.IP(t, "route", "add", "default", "via", link.B4.String())
	id := [8]byte{1, 2, 3, 4, 5, 6, 7, 8}
	spaPort := config.PortSpec{Proto: config.UDP, From: 62201, To: 62201}
	fw := config.Firewall{ClosedResponse: "drop", LogGroup: 7, LogRate: 1, LogBurst: 1, Forward: "untouched",
		SPAPorts: []config.PortSpec{spaPort}, SPAClientIDs: [][8]byte{id}}
	a := firewall.NewApplier(nftables.WithNetNSFd(server.Fd()))
	defer a.Close()
	c, err := nflog.Open(fw.LogGroup, nflog.WithNetNS(server.Fd()), nflog.WithCopyRange(1500))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var mu sync.Mutex
	got := map[netip.Addr]int{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		var p packet.Packet
		done <- c.Receive(ctx, func(m *nflog.Message) {
			if string(m.Prefix) == firewall.SPAPrefix && packet.Decode(m.Family, m.Payload, &p) == nil {
				mu.Lock()
				got[p.Src]++
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
	src := func(i byte) netip.Addr { return netip.AddrFrom4([4]byte{10, 210, 251, i}) }
	datagram := func(s netip.Addr, payload []byte) []byte {
		return netnstest.IP(s, link.A4, 17, 1, netnstest.UDP(s, link.A4, 40000, spaPort.From, payload))
	}
	known := append([]byte{1, 1}, id[:]...)
	known = append(known, bytes.Repeat([]byte{0x55}, 100)...)
	random := bytes.Repeat([]byte{0x7a}, 200) // 200 bytes of base64-looking text
	count := func(s netip.Addr) int {
		mu.Lock()
		defer mu.Unlock()
		return got[s]
	}
	send := func(pkts ...[]byte) {
		t.Helper()
		client.SendRaw(t, link.BIf, pkts...)
		time.Sleep(300 * time.Millisecond) // NFLOG delivers at once (queue-threshold 1)
	}

	if err := a.Apply(firewall.Build(fw, nil), nil, nil); err != nil {
		t.Fatal(err)
	}
	// Unknown ids and random bytes stay in the kernel; a known id passes.
	wrongID := append([]byte{1, 1, 9, 9, 9, 9, 9, 9, 9, 9}, bytes.Repeat([]byte{0x55}, 100)...)
	send(datagram(src(1), random), datagram(src(2), wrongID), datagram(src(3), known))
	if count(src(1)) != 0 || count(src(2)) != 0 || count(src(3)) != 1 {
		t.Fatalf("handed to moat: random %d, unknown id %d, known id %d; want 0, 0, 1", count(src(1)), count(src(2)), count(src(3)))
	}
	// One source, 20 datagrams at once: the meter lets its burst through.
	var burst [][]byte
	for range 20 {
		burst = append(burst, datagram(src(4), known))
	}
	send(burst...)
	if n := count(src(4)); n < 1 || n > 10 {
		t.Fatalf("20 datagrams from one source at once: %d handed to moat, want the meter's burst (8)", n)
	}
	// fwknop's packets carry no id: with [[spa.fwknop]] entries, those of
	// its sizes are handed over too.
	fw.SPAFwknop = true
	if err := a.Apply(firewall.Build(fw, nil), nil, nil); err != nil {
		t.Fatal(err)
	}
	send(datagram(src(5), random), datagram(src(6), random[:100]))
	if count(src(5)) != 1 || count(src(6)) != 0 {
		t.Fatalf("with fwknop entries: a 200-byte datagram handed over %d times, a 100-byte one %d; want 1 and 0", count(src(5)), count(src(6)))
	}
}

package daemon

import (
	"encoding/binary"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/nflog"
	"github.com/moat-fw/moat/internal/packet"
)

// synPayload is an IPv4 TCP SYN from src to dst port, as NFLOG copies it.
func synPayload(src, dst netip.Addr, port uint16) []byte {
	b := make([]byte, 40)
	b[0], b[8], b[9] = 0x45, 64, 6 // version 4, IHL 5; TTL; TCP
	binary.BigEndian.PutUint16(b[2:], 40)
	s, d := src.As4(), dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	binary.BigEndian.PutUint16(b[20:], 40000)
	binary.BigEndian.PutUint16(b[22:], port)
	b[32] = 5 << 4 // data offset
	b[33] = 0x02   // SYN
	binary.BigEndian.PutUint16(b[34:], 64240)
	return b
}

// The scan guard scores only what moat's own ruleset logged (security
// review L7): another table logging to the same NFLOG group, with a prefix
// of its own, must not feed it. Those messages are counted as foreign in
// the intake status instead.
func TestIntakeScoresOnlyMoatPrefixes(t *testing.T) {
	g, m := testScanGuard(t, defaultScan(t), nil)
	d := &Daemon{log: slog.New(slog.NewTextHandler(io.Discard, nil)), now: func() time.Time { return t0 }}
	d.scan.Store(g)
	dst := netip.MustParseAddr("10.210.0.1")
	foreign := netip.MustParseAddr("10.210.7.7")
	var p packet.Packet
	for i := range 200 { // far past any danger level
		for _, prefix := range []string{"other:closed", "moat", "", "MOAT:closed"} {
			msg := nflog.Message{Family: 4, Prefix: []byte(prefix), Payload: synPayload(foreign, dst, uint16(1000+i))}
			d.dispatch(&msg, &p)
		}
	}
	if st := g.status(t0); st.Report.Totals.Packets != 0 || len(st.Events) != 0 {
		t.Fatalf("the scan guard scored packets another ruleset logged: %d packets, events %+v", st.Report.Totals.Packets, st.Events)
	}
	if es := m.List(t0); len(es) != 0 {
		t.Fatalf("packets another ruleset logged made bans: %v", es)
	}
	if got := d.intakeStatus().Foreign; got != 800 {
		t.Fatalf("intake status: %d foreign, want 800", got)
	}

	// moat's own prefix is still scored.
	scanner := netip.MustParseAddr("10.210.7.8")
	for i := range 60 {
		msg := nflog.Message{Family: 4, Prefix: []byte(firewall.LogPrefix(firewall.CounterClosed)), Payload: synPayload(scanner, dst, uint16(1000+i))}
		d.dispatch(&msg, &p)
	}
	if st := g.status(t0); st.Report.Totals.Packets != 60 {
		t.Fatalf("the scan guard saw %d of moat's 60 packets", st.Report.Totals.Packets)
	}
	if !m.Active(scanner, t0) {
		t.Fatal("a scan logged by moat's ruleset did not ban")
	}
	if got := d.intakeStatus().Foreign; got != 800 {
		t.Fatalf("moat's own packets counted as foreign: %d, want 800", got)
	}
}

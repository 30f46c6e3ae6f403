package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/daemon"
	"github.com/moat-fw/moat/internal/netnstest"
)

func addrStatus(t *testing.T, h *host, addr string) daemon.AddrStatus {
	t.Helper()
	var st daemon.AddrStatus
	if err := json.Unmarshal([]byte(h.moat("status", addr, "--json")), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// moat status ADDR tells one address's story: a scanner's ban and its scan
// window, the host's own address as protected, a stranger as nothing.
func TestStatusOfOneAddress(t *testing.T) {
	h := newHost(t, "open = [\"tcp/22\"]")
	h.start()
	scanner := h.link.Host4(40)
	// Crafted SYNs: banned at the third, to a third port.
	h.client.SpoofSYNs(t, 2000, netnstest.PortScan(scanner, h.link.A4, 3000, 200))
	netnstest.Eventually(t, 10*time.Second, "the scanner's ban", func() bool {
		return len(addrStatus(t, h, scanner.String()).Bans) > 0
	})
	st := addrStatus(t, h, scanner.String())
	if st.Bans[0].Origin != "scan" || st.Scan == nil || st.Scan.Level < 3 || st.Scan.Packets < 3 || st.Protected != "" {
		t.Fatalf("the scanner's story: %+v (scan %+v)", st, st.Scan)
	}
	if own := addrStatus(t, h, h.link.A4.String()); own.Protected == "" || len(own.Bans) != 0 {
		t.Fatalf("this host's own address: %+v", own)
	}
	if none := addrStatus(t, h, h.link.Host4(41).String()); len(none.Bans) != 0 || none.Scan != nil || none.Protected != "" {
		t.Fatalf("a stranger: %+v", none)
	}
	text := h.moat("status", scanner.String())
	for _, want := range []string{"banned:    " + scanner.String() + " by scan", "scan:      danger level"} {
		if !strings.Contains(text, want) {
			t.Fatalf("status %s:\n%s\nwant %q", scanner, text, want)
		}
	}
	if out, err := h.moatErr("status", "not-an-address"); err == nil || !strings.Contains(out, "want an address") {
		t.Fatalf("status with a bad address: %v\n%s", err, out)
	}
}

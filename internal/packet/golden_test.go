package packet

import (
	"fmt"
	"strings"
	"testing"

	"github.com/moat-fw/moat/internal/packet/packettest"
)

func TestDecodeRealNmap(t *testing.T) {
	pkts := packettest.ReadGolden(t, "testdata/nmap.txt")
	if len(pkts) < 20 {
		t.Fatalf("only %d packets in testdata/nmap.txt", len(pkts))
	}
	for _, rp := range pkts {
		var p Packet
		if err := Decode(0, rp.Bytes, &p); err != nil {
			t.Errorf("line %d (%s): %v", rp.Line, rp.Tool, err)
			continue
		}
		if got := fmt.Sprintf("%+v", p); got != rp.Want {
			t.Errorf("line %d (%s):\n got %s\nwant %s", rp.Line, rp.Tool, got, rp.Want)
		}
		// The SYN fingerprint the scan guard tells nmap by.
		if strings.Contains(rp.Tool, "-sS") && (p.TCPFlags != SYN || p.TCPOpts != OptMSS || p.MSS != 1460 || p.TCPOptLen != 4) {
			t.Errorf("line %d: nmap SYN without its fingerprint: %v", rp.Line, &p)
		}
	}
}

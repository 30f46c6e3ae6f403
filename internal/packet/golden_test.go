package packet

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
)

// realPacket is one packet a real tool sent, as NFLOG logged it.
type realPacket struct {
	line int
	tool string // the comment line above it: "nmap -sS -Pn -p 9001,9002"
	b    []byte
	want string // fmt's %+v of the decoded Packet
}

// readGolden reads testdata/nmap.txt, written from real nmap scans by
// TestNmapScans in internal/nflog (MOAT_UPDATE_GOLDEN=1).
func readGolden(t testing.TB, path string) []realPacket {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []realPacket
	tool := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if c, ok := strings.CutPrefix(line, "# "); ok {
			tool = c
			continue
		}
		hexb, want, ok := strings.Cut(line, "\t")
		b, err := hex.DecodeString(hexb)
		if !ok || err != nil {
			t.Fatalf("%s:%d: want hex, a tab and the decoding (%v)", path, n, err)
		}
		out = append(out, realPacket{n, tool, b, want})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDecodeRealNmap(t *testing.T) {
	pkts := readGolden(t, "testdata/nmap.txt")
	if len(pkts) < 20 {
		t.Fatalf("only %d packets in testdata/nmap.txt", len(pkts))
	}
	for _, rp := range pkts {
		var p Packet
		if err := Decode(0, rp.b, &p); err != nil {
			t.Errorf("line %d (%s): %v", rp.line, rp.tool, err)
			continue
		}
		if got := fmt.Sprintf("%+v", p); got != rp.want {
			t.Errorf("line %d (%s):\n got %s\nwant %s", rp.line, rp.tool, got, rp.want)
		}
		// The SYN fingerprint the scan guard tells nmap by.
		if strings.Contains(rp.tool, "-sS") && (p.TCPFlags != SYN || p.TCPOpts != OptMSS || p.MSS != 1460 || p.TCPOptLen != 4) {
			t.Errorf("line %d: nmap SYN without its fingerprint: %v", rp.line, &p)
		}
	}
}

// Package packettest reads the golden files of real packets that
// internal/nflog's TestNmapScans writes (MOAT_UPDATE_GOLDEN=1) and the
// packet decoder and the scan detector both test against.
package packettest

import (
	"bufio"
	"encoding/hex"
	"os"
	"strings"
	"testing"
)

// Golden is one packet a real tool sent, as NFLOG logged it.
type Golden struct {
	Line  int    // line number in the file, for messages
	Tool  string // the comment line above it: "nmap -sS -Pn -p 9001,9002"
	Bytes []byte // the packet from its IP header on
	Want  string // fmt's %+v of the decoded packet.Packet
}

// ReadGolden reads a golden file: "# " lines name the tool that sent the
// packets below them; every other line is a packet in hex, a tab and its
// decoding.
func ReadGolden(t testing.TB, path string) []Golden {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []Golden
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
		out = append(out, Golden{Line: n, Tool: tool, Bytes: b, Want: want})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

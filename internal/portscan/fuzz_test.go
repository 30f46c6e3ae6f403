package portscan

import (
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/packet"
)

// FuzzObserve feeds a few packets per input to a small detector (two
// sources, so eviction runs) and checks its invariants: no panic, levels
// 1 to 5 and only rising within a window, the table consistent, a report.
//
// Input: records of [length][prefix][time step][packet bytes].
func FuzzObserve(f *testing.F) {
	b, err := os.ReadFile("../packet/testdata/nmap.txt")
	if err != nil {
		f.Fatal(err)
	}
	var rec []byte
	for _, line := range strings.Split(string(b), "\n") {
		h, _, _ := strings.Cut(line, "\t")
		if p, err := hex.DecodeString(h); err == nil && len(p) > 0 && len(p) < 250 {
			f.Add(append([]byte{byte(len(p)), 0, 1}, p...))
			rec = append(append(rec, byte(len(p)), byte(len(rec)), 1), p...)
		}
	}
	f.Add(rec)
	f.Fuzz(func(t *testing.T, data []byte) {
		d := New(Config{MaxSources: 2, Window: time.Minute, PacketTiers: [5]int{1, 2, 3, 4, 5}})
		prefixes := append(knownPrefixes[:], "", "Drop Syn ")
		now := t0
		type window struct {
			src   [16]byte
			first int64
		}
		levels := map[window]int{} // per source and window
		var p packet.Packet
		for len(data) >= 3 {
			n, pre, step := int(data[0]), data[1], data[2]
			data = data[3:]
			n = min(n, len(data))
			err := packet.Decode(0, data[:n], &p)
			data = data[n:]
			if err != nil {
				continue
			}
			now = now.Add(time.Duration(step) * time.Second)
			dec, ok := d.Observe(&p, []byte(prefixes[int(pre)%len(prefixes)]), now)
			if d.Len() > 2 {
				t.Fatalf("%d sources", d.Len())
			}
			if !ok {
				continue
			}
			// A source evicted and back starts a new window too.
			k := window{dec.Src.As16(), dec.First.UnixNano()}
			if dec.Level < 1 || dec.Level > 5 || dec.Packets < 1 || dec.Types == 0 || dec.Src != p.Src ||
				dec.Last.Before(dec.First) || dec.Level <= levels[k] {
				t.Fatalf("decision %+v after level %d, packet %v", dec, levels[k], &p)
			}
			levels[k] = dec.Level
		}
		checkTable(t, &d.table)
		r := d.Report(now, 0)
		if r.Totals.Sources != d.Len() || len(r.Sources) != d.Len() {
			t.Fatalf("report %+v", r.Totals)
		}
	})
}

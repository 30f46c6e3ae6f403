package daemon

import (
	"net/netip"
	"testing"
)

func TestParseProcNetTCP(t *testing.T) {
	v4 := []byte(`  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 01D2D20A:0016 02D2D20A:C350 01 00000000:00000000 02:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1
`)
	v6 := []byte(`  sl  local_address                         remote_address                        st tx_queue rx_queue
   0: 100200FD000000000000000001000000:0016 100200FD000000000000000002000000:D431 01 00000000:00000000
   1: 0000000000000000FFFF000002D2D20A:0016 0000000000000000FFFF000003D2D20A:1F90 01 00000000:00000000
`)
	out := map[connKey]bool{}
	parseProcNetTCP(v4, out)
	parseProcNetTCP(v6, out)
	for _, want := range []connKey{
		{netip.MustParseAddr("10.210.210.2"), 50000},
		{netip.MustParseAddr("fd00:210::2"), 54321},
		{netip.MustParseAddr("10.210.210.3"), 8080},
	} {
		if !out[want] {
			t.Errorf("missing %v in %v", want, out)
		}
	}
	if len(out) != 3 {
		t.Errorf("listening sockets must not count: %v", out)
	}
}

func FuzzParseProcNetTCP(f *testing.F) {
	f.Add([]byte("h\n 1: 01D2D20A:0016 02D2D20A:C350 01 x\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		out := map[connKey]bool{}
		parseProcNetTCP(b, out)
		for k := range out {
			if !k.addr.IsValid() || k.addr.Is4In6() {
				t.Fatalf("bad key %v", k)
			}
		}
	})
}

package portscan

import "testing"

// Scan events keep the set and spell it when written: what is read back
// is the set written, and the text is String's.
func TestScanTypesTextRoundTrip(t *testing.T) {
	for _, ts := range []ScanTypes{0, TypeSYN | TypeNoOpts, 1<<numTypes - 1} {
		b, err := ts.MarshalText()
		if err != nil || string(b) != ts.String() {
			t.Fatalf("%v: MarshalText %q, %v", ts, b, err)
		}
		var back ScanTypes
		if err := back.UnmarshalText(b); err != nil || back != ts {
			t.Fatalf("%q read back as %v, want %v", b, back, ts)
		}
	}
}

func FuzzScanTypesText(f *testing.F) {
	f.Add("syn,noopts")
	f.Add("none")
	f.Add(",,ack/window,bogus")
	f.Fuzz(func(t *testing.T, s string) {
		var ts ScanTypes
		if err := ts.UnmarshalText([]byte(s)); err != nil {
			t.Fatal(err)
		}
		b, _ := ts.MarshalText()
		var again ScanTypes
		if again.UnmarshalText(b); again != ts {
			t.Fatalf("%q: %v, then %q read back as %v", s, ts, b, again)
		}
	})
}

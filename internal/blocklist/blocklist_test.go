package blocklist

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func rg(s string) Range {
	if from, to, ok := strings.Cut(s, "-"); ok {
		return Range{netip.MustParseAddr(from), netip.MustParseAddr(to)}
	}
	if strings.Contains(s, "/") {
		return FromPrefix(netip.MustParsePrefix(s))
	}
	a := netip.MustParseAddr(s)
	return Range{a, a}
}

func strs(rs []Range) string {
	var out []string
	for _, r := range rs {
		out = append(out, r.String())
	}
	return strings.Join(out, " ")
}

func TestParseFormats(t *testing.T) {
	for _, c := range []struct {
		name string
		f    Format
		in   string
		want string
		bad  int
	}{
		{"plain", Plain, "# a list\n192.0.2.1\n198.51.100.0/24 ; why\n\n2001:db8::/32 # v6\n10.0.0.7/8\n", "192.0.2.1 198.51.100.0/24 2001:db8::/32 10.0.0.0/8", 0},
		{"firehol", FireHOL, "#\n# firehol_level1\n#\n0.0.0.0/8\n1.10.16.0/20\n223.254.0.0/16\n", "0.0.0.0/8 1.10.16.0/20 223.254.0.0/16", 0},
		{"spamhaus drop", Spamhaus, "; Spamhaus DROP List 2026/12/06\n; Last-Modified: Sat, 06 Dec 2026\n1.10.16.0/20 ; SBL256894\n1.19.0.0/16 ; SBL434604\n", "1.10.16.0/20 1.19.0.0/16", 0},
		{"spamhaus json", Spamhaus, `{"cidr":"1.10.16.0/20","sblid":"SBL256894","rir":"apnic"}` + "\n" + `{"type":"metadata","timestamp":1765000000,"size":1,"records":1,"copyright":"(c) 2026 The Spamhaus Project SLU","terms":"https://www.spamhaus.org/drop/terms/"}` + "\n", "1.10.16.0/20", 0},
		{"dshield", DShield, "#   DShield.org Recommended Block List\n#\nStart\tEnd\tNetblock\tAttacks\tName\tCountry\temail\n45.148.10.0\t45.148.10.255\t24\t5863\tTECHOFF SRV LIMITED\tGB\tabuse@example.net\n80.94.95.0\t80.94.95.255\t24\t1234\n", "45.148.10.0/24 80.94.95.0/24", 0},
		{"crowdsec", CrowdSec, "1.2.3.4\n5.6.7.0/24\n2001:db8::1\n", "1.2.3.4 5.6.7.0/24 2001:db8::1", 0},
		{"bad lines counted", Plain, "1.2.3.4\nnot an address\n5.6.7.8\n", "1.2.3.4 5.6.7.8", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, err := Parse(strings.NewReader(c.in), c.f)
			if err != nil {
				t.Fatal(err)
			}
			if got := strs(res.Ranges); got != c.want || res.Bad != c.bad {
				t.Fatalf("got %q (bad %d), want %q (bad %d)", got, res.Bad, c.want, c.bad)
			}
		})
	}
}

func TestParseRefusesWhatIsNotAList(t *testing.T) {
	for _, in := range []string{
		"<html><body>502 Bad Gateway</body></html>\n",
		"1.2.3.4\nfoo\nbar\n",
		"::ffff:1.2.3.4\n",
		"fe80::1%eth0\n",
		strings.Repeat("1", MaxLine+10) + "\n",
	} {
		if res, err := Parse(strings.NewReader(in), Plain); err == nil {
			t.Errorf("%.40q: no error, %+v", in, res)
		}
	}
	if _, err := Parse(strings.NewReader("1.2.3.4\n"), "csv"); err == nil {
		t.Error("unknown format accepted")
	}
	// An empty list is a list.
	if res, err := Parse(strings.NewReader("# nothing listed today\n"), Plain); err != nil || len(res.Ranges) != 0 {
		t.Errorf("empty list: %v %+v", err, res)
	}
}

func TestAggregate(t *testing.T) {
	in := []Range{rg("10.0.0.0/25"), rg("10.0.0.128/25"), rg("10.0.1.0/24"), rg("10.0.0.5"), rg("2001:db8::/33"),
		rg("2001:db8:8000::/33"), rg("192.0.2.7"), rg("192.0.2.9"), rg("255.255.255.255"), rg("255.255.255.0/24"), rg("::/0")}
	got := strs(Aggregate(in))
	if want := "10.0.0.0/23 192.0.2.7 192.0.2.9 255.255.255.0/24 ::/0"; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

func TestSubtractSplitsAroundHoles(t *testing.T) {
	rs := Aggregate([]Range{rg("192.0.2.0/24"), rg("198.51.100.7"), rg("2001:db8::/32"), rg("10.0.0.0/8")})
	holes := Aggregate([]Range{rg("192.0.2.1"), rg("198.51.100.7"), rg("2001:db8::53"), rg("10.0.0.0/8"), rg("203.0.113.1")})
	got := strs(Subtract(rs, holes))
	want := "192.0.2.0 192.0.2.2-192.0.2.255 2001:db8::-2001:db8::52 2001:db8::54-2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"
	if got != want {
		t.Fatalf("got %s\nwant %s", got, want)
	}
}

func TestDiff(t *testing.T) {
	old := Aggregate([]Range{rg("1.1.1.1"), rg("2.2.2.0/24"), rg("3.3.3.3"), rg("2001:db8::1")})
	new := Aggregate([]Range{rg("1.1.1.1"), rg("2.2.2.0/23"), rg("4.4.4.4"), rg("2001:db8::1")})
	del, add := Diff(old, new)
	if strs(del) != "2.2.2.0/24 3.3.3.3" || strs(add) != "2.2.2.0/23 4.4.4.4" {
		t.Fatalf("del %s, add %s", strs(del), strs(add))
	}
}

// Random lists: aggregation, subtraction and diff agree with a per-address
// model on a small address space.
func TestRangesModel(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	addr := func(n int) netip.Addr { return netip.AddrFrom4([4]byte{10, 0, byte(n >> 8), byte(n)}) }
	pick := func(k int) ([]Range, map[int]bool) {
		m := map[int]bool{}
		var rs []Range
		for range k {
			a := r.IntN(1000)
			b := a + r.IntN(5)
			rs = append(rs, Range{addr(a), addr(b)})
			for i := a; i <= b; i++ {
				m[i] = true
			}
		}
		return rs, m
	}
	for range 200 {
		ars, am := pick(30)
		hrs, hm := pick(10)
		got := Subtract(Aggregate(ars), Aggregate(hrs))
		for i := range 1010 {
			in := slices.ContainsFunc(got, func(x Range) bool { return x.Contains(addr(i)) })
			if in != (am[i] && !hm[i]) {
				t.Fatalf("address %d: in result %v, listed %v, hole %v", i, in, am[i], hm[i])
			}
		}
		for k := 1; k < len(got); k++ {
			if got[k].From.Compare(got[k-1].To.Next()) <= 0 {
				t.Fatalf("ranges %s and %s touch or overlap: not the fewest", got[k-1], got[k])
			}
		}
	}
}

func TestPrefixes(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.0-10.0.0.255":     "[10.0.0.0/24]",
		"10.0.0.1-10.0.0.6":       "[10.0.0.1/32 10.0.0.2/31 10.0.0.4/31 10.0.0.6/32]",
		"0.0.0.0-255.255.255.255": "[0.0.0.0/0]",
	} {
		if got := fmt.Sprint(rg(in).Prefixes()); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"1.2.3.4\n", "1.10.16.0/20 ; SBL256894\n", "45.148.10.0\t45.148.10.255\t24\t5863\n", `{"cidr":"1.0.0.0/8"}` + "\n", "2001:db8::/32 # x\n"} {
		f.Add(s, 0)
	}
	f.Fuzz(func(t *testing.T, in string, fi int) {
		format := Formats[uint(fi)%uint(len(Formats))]
		res, err := Parse(strings.NewReader(in), format)
		res2, err2 := ParseBytes([]byte(in), format)
		if (err == nil) != (err2 == nil) || !slices.Equal(res.Ranges, res2.Ranges) || res.Bad != res2.Bad {
			t.Fatalf("%q: Parse and ParseBytes disagree: %v %v / %v %v", in, res, err, res2, err2)
		}
		if err != nil {
			return
		}
		for _, r := range res.Ranges {
			if !r.IsValid() || r.From.Is4In6() || r.From.Zone() != "" {
				t.Fatalf("%q (%s): invalid range %v", in, format, r)
			}
		}
		agg := Aggregate(slices.Clone(res.Ranges))
		for _, r := range res.Ranges {
			if !slices.ContainsFunc(agg, func(x Range) bool { return x.Contains(r.From) && x.Contains(r.To) }) {
				t.Fatalf("%v lost by Aggregate", r)
			}
		}
	})
}

package lookup

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// writeDB writes a real MaxMind-format database with mmdbwriter, the
// writer MaxMind publishes.
func writeDB(t testing.TB, dbType string, nets map[string]mmdbtype.Map) string {
	t.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: dbType, RecordSize: 24, IncludeReservedNetworks: true})
	if err != nil {
		t.Fatal(err)
	}
	for cidr, rec := range nets {
		_, n, err := net.ParseCIDR(cidr)
		if err != nil {
			t.Fatal(err)
		}
		if err := tree.Insert(n, rec); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), dbType+".mmdb")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tree.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func country(code string) mmdbtype.Map {
	return mmdbtype.Map{"country": mmdbtype.Map{"iso_code": mmdbtype.String(code), "names": mmdbtype.Map{"en": mmdbtype.String("x")}}}
}

func testDBs(t testing.TB) (string, string) {
	c := writeDB(t, "GeoLite2-Country", map[string]mmdbtype.Map{
		"203.0.113.0/24":  country("NL"),
		"2001:db8::/32":   country("JP"),
		"198.51.100.0/24": {"registered_country": mmdbtype.Map{"iso_code": mmdbtype.String("DE")}},
	})
	a := writeDB(t, "GeoLite2-ASN", map[string]mmdbtype.Map{
		"203.0.113.0/25": {"autonomous_system_number": mmdbtype.Uint32(64500), "autonomous_system_organization": mmdbtype.String("Example Net")},
	})
	return c, a
}

func TestLookupCountryAndASN(t *testing.T) {
	c, a := testDBs(t)
	db, err := Open(c, a)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for addr, want := range map[string]Info{
		"203.0.113.7":        {Country: "NL", ASN: 64500, ASOrg: "Example Net"},
		"203.0.113.200":      {Country: "NL"},
		"::ffff:203.0.113.8": {Country: "NL", ASN: 64500, ASOrg: "Example Net"},
		"2001:db8::1":        {Country: "JP"},
		"198.51.100.1":       {Country: "DE"},
		"192.0.2.1":          {},
	} {
		if got := db.Lookup(netip.MustParseAddr(addr)); got != want {
			t.Errorf("%s: %+v, want %+v", addr, got, want)
		}
	}
	var none *DB
	if got := none.Lookup(netip.MustParseAddr("203.0.113.7")); got != (Info{}) {
		t.Errorf("nil DB: %+v", got)
	}
}

func TestOpenRefusesTheWrongFile(t *testing.T) {
	c, a := testDBs(t)
	if _, err := Open(a, ""); err == nil || !strings.Contains(err.Error(), `database type "GeoLite2-ASN" does not hold country data`) {
		t.Errorf("ASN as country: %v", err)
	}
	if _, err := Open("", c); err == nil || !strings.Contains(err.Error(), `database type "GeoLite2-Country" does not hold ASN data; want an ASN database`) {
		t.Errorf("country as ASN: %v", err)
	}
	junk := filepath.Join(t.TempDir(), "junk.mmdb")
	os.WriteFile(junk, []byte("not a database"), 0o600)
	if _, err := Open(junk, ""); err == nil || !strings.Contains(err.Error(), junk+": not a readable MaxMind-format database") {
		t.Errorf("junk: %v", err)
	}
}

type fakeResolver struct {
	calls   atomic.Int32
	release chan struct{}
	mu      sync.Mutex
	names   map[string]string
}

func (f *fakeResolver) LookupAddr(ctx context.Context, a string) ([]string, error) {
	f.calls.Add(1)
	if f.release != nil {
		select {
		case <-f.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if n, ok := f.names[a]; ok {
		return []string{n}, nil
	}
	return nil, errors.New("NXDOMAIN")
}

func TestNamesNeverWaitAndCache(t *testing.T) {
	r := &fakeResolver{release: make(chan struct{}), names: map[string]string{"203.0.113.7": "scanner.example.net."}}
	ctx, cancel := context.WithCancel(context.Background())
	n := NewNames(ctx, r, time.Now)
	a := netip.MustParseAddr("203.0.113.7")
	start := time.Now()
	if name, ok := n.Name(a); ok || name != "" {
		t.Fatalf("first ask: %q %v", name, ok)
	}
	if _, ok := n.Name(a); ok {
		t.Fatal("answered before the resolver")
	}
	if time.Since(start) > time.Second {
		t.Fatal("Name waited")
	}
	close(r.release)
	rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer rcancel()
	if got := n.Resolve(rctx, a); got != "scanner.example.net" {
		t.Fatalf("Resolve: %q", got)
	}
	if name, ok := n.Name(a); !ok || name != "scanner.example.net" {
		t.Fatalf("cached: %q %v", name, ok)
	}
	// A failure is cached too: no second query.
	b := netip.MustParseAddr("192.0.2.1")
	if got := n.Resolve(rctx, b); got != "" {
		t.Fatalf("unknown: %q", got)
	}
	n.Name(b)
	if c := r.calls.Load(); c != 2 {
		t.Fatalf("%d queries, want 2", c)
	}
	cancel()
	n.Wait()
}

func TestNamesBounded(t *testing.T) {
	r := &fakeResolver{release: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	n := NewNames(ctx, r, time.Now)
	for i := range 100 {
		n.Name(netip.AddrFrom4([4]byte{10, 210, 0, byte(i)}))
	}
	if c := r.calls.Load(); c > 4 {
		// give the goroutines a moment: at most 4 run at once
		t.Fatalf("%d look-ups running", c)
	}
	time.Sleep(50 * time.Millisecond)
	if c := r.calls.Load(); c > 4 {
		t.Fatalf("%d look-ups running, want at most 4", c)
	}
	cancel()
	n.Wait()
}

func BenchmarkLookup(b *testing.B) {
	c, a := testDBs(b)
	db, err := Open(c, a)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	addr := netip.MustParseAddr("203.0.113.7")
	b.ReportAllocs()
	for b.Loop() {
		db.Lookup(addr)
	}
}

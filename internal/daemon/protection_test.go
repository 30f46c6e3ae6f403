package daemon

import (
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/ban"
	"github.com/moat-fw/moat/internal/protect"
	"github.com/moat-fw/moat/internal/store"
)

// Each of the daemon's protection's sources answers, for a host and for a
// wide ban over it (the IPv6 /64 escalation, a manual CIDR): the refreshed
// snapshot, the caller's own session, and the live sessions and grants that
// changed since the snapshot.
func TestProtectionAnswersFromEverySource(t *testing.T) {
	router, caller := netip.MustParseAddr("10.210.0.254"), netip.MustParseAddr("10.210.1.2")
	sess, grant := netip.MustParseAddr("fd00:210::5"), netip.MustParseAddr("10.210.3.3")
	p := &protection{
		caller:  caller,
		session: func(a netip.Addr) bool { return a == sess },
		granted: func(a netip.Addr) bool { return a == grant },
		extra: func() []protect.Entry {
			return []protect.Entry{protect.Host(sess, protect.WhySession), protect.Host(grant, protect.WhyGrant)}
		},
	}
	p.set.Store(protect.New([]protect.Entry{protect.Host(router, protect.WhyRouter)}))
	for _, c := range []struct {
		prefix, why string
	}{
		{"10.210.0.254/32", protect.WhyRouter},
		{"10.210.0.0/24", protect.WhyRouter},
		{"10.210.1.2/32", protect.WhyCaller},
		{"10.210.1.0/24", protect.WhyCaller},
		{"fd00:210::5/128", protect.WhySession},
		{"fd00:210::/64", protect.WhySession},
		{"10.210.3.3/32", protect.WhyGrant},
		{"10.210.3.0/24", protect.WhyGrant},
		{"10.210.4.4/32", ""},
		{"fd00:211::/64", ""},
	} {
		e, ok := p.Protected(netip.MustParsePrefix(c.prefix))
		if ok != (c.why != "") || e.Why != c.why {
			t.Errorf("Protected(%s) = %q, %v; want %q", c.prefix, e.Why, ok, c.why)
		}
	}
}

// A guard's ban that comes to cover a protected address (a resolver
// changed by DHCP, a new default route, a ban kept from before) is lifted at
// the next refresh; an administrator's ban is not.
func TestRefreshLiftsGuardBansOfNewlyProtected(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "etc", "resolv.conf"), []byte("nameserver 10.210.9.9\nnameserver 10.210.9.10\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m, err := ban.New(st, nullKernel{}, nil, t0, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []ban.Request{
		{Prefix: netip.MustParsePrefix("10.210.9.9/32"), Origin: OriginScan, For: time.Hour},
		{Prefix: netip.MustParsePrefix("10.210.9.10/32"), Origin: ban.OriginManual, For: time.Hour},
	} {
		if _, err := m.Add(r, t0); err != nil {
			t.Fatal(err)
		}
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	d := &Daemon{log: log, bans: m, prot: &protection{log: log,
		system: protect.System{Root: dir, HostAddrs: func() ([]netip.Addr, error) { return nil, nil }}}}
	d.refreshProtection(t0)
	if m.Active(netip.MustParseAddr("10.210.9.9"), t0) || d.prot.lifted.Load() != 1 {
		t.Fatalf("the scan ban of a resolver was not lifted (lifted %d)", d.prot.lifted.Load())
	}
	if !m.Active(netip.MustParseAddr("10.210.9.10"), t0) {
		t.Fatal("the administrator's ban was lifted")
	}
}

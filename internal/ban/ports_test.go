package ban

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"net/netip"

	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/protect"
	"github.com/moat-fw/moat/internal/store"
)

// portKernel is a kernelEnforcer with port ban sets: a hash of elements,
// where deleting an absent one fails, as in nftables.
type portKernel struct {
	*kernelEnforcer
	ports map[firewall.PortBan]bool          // keyed without times
	left  map[firewall.PortBan]time.Duration // each element's timeout
}

func newPortKernel() *portKernel {
	return &portKernel{kernelEnforcer: newEnforcer(), ports: map[firewall.PortBan]bool{}, left: map[firewall.PortBan]time.Duration{}}
}

func portKey(p firewall.PortBan) firewall.PortBan {
	return firewall.PortBan{Addr: p.Addr, Proto: p.Proto, Port: p.Port}
}

func (k *portKernel) UpdatePortBans(del, add []firewall.PortBan) error {
	for _, p := range del {
		if !k.ports[portKey(p)] {
			return fmt.Errorf("delete %v: not in the set", portKey(p))
		}
	}
	for _, p := range del {
		delete(k.ports, portKey(p))
		delete(k.left, portKey(p))
	}
	for _, p := range add {
		k.ports[portKey(p)] = true
		k.left[portKey(p)] = p.Timeout
	}
	return nil
}

var (
	http  = store.Port{Proto: 6, Port: 80}
	https = store.Port{Proto: 6, Port: 443}
	imap  = store.Port{Proto: 6, Port: 143}
)

// A ban with ports goes to the port sets only, merges with another jail's
// ports for the same address, survives a restart through the store,
// expires, and is lifted by an unban; policy refuses it as any ban.
func TestPortBans(t *testing.T) {
	st, enf := newMemStore(), newPortKernel()
	m, err := New(st, enf, []netip.Prefix{mp("10.210.5.0/24")}, t0, func(error) {})
	if err != nil {
		t.Fatal(err)
	}
	a := mp("10.210.1.1/32")
	e, err := m.Add(Request{Prefix: a, For: time.Minute, Origin: "login", Reason: "nginx-http-auth", Ports: []store.Port{http, https}}, t0)
	if err != nil || e.Count != 1 || !slices.Equal(e.Ports, []store.Port{http, https}) {
		t.Fatalf("Add = %+v, %v", e, err)
	}
	if len(enf.k[firewall.Bans].els) != 0 || len(enf.ports) != 2 || enf.left[firewall.PortBan{Addr: a.Addr(), Proto: 6, Port: 443}] != time.Minute {
		t.Fatalf("kernel: bans %v, port bans %v", enf.k[firewall.Bans].els, enf.left)
	}
	if m.Active(a.Addr(), t0) {
		t.Fatal("a port-limited ban counts as a whole-host ban")
	}
	// Another jail, other ports, longer: one record with both.
	e, err = m.Add(Request{Prefix: a, For: time.Hour, Origin: "login", Reason: "dovecot", Ports: []store.Port{imap, http}}, t0.Add(time.Second))
	if err != nil || e.Count != 2 || !slices.Equal(e.Ports, []store.Port{http, https, imap}) || !e.Expires.Equal(t0.Add(time.Second+time.Hour)) {
		t.Fatalf("second Add = %+v, %v", e, err)
	}
	if len(enf.ports) != 3 {
		t.Fatalf("port bans %v", enf.ports)
	}
	list := m.List(t0)
	if len(list) != 1 || len(list[0].Ports) != 3 {
		t.Fatalf("List = %+v", list)
	}
	if got := st.bans[a]; !slices.Equal(got.Ports, e.Ports) {
		t.Fatalf("stored %+v", got)
	}
	// A restart takes it back from the store, for the next install.
	m2, _ := New(st, newPortKernel(), nil, t0.Add(2*time.Second), func(error) {})
	if els := m2.PortBanElements(t0.Add(2 * time.Second)); len(els) != 3 || els[0].Timeout != time.Hour-time.Second {
		t.Fatalf("after restart: %+v", els)
	}
	// Policy: allowed, wider than one address, already banned whole.
	for _, c := range []struct {
		req  Request
		want string
	}{
		{Request{Prefix: mp("10.210.5.7/32"), Ports: []store.Port{http}}, "allow list"},
		{Request{Prefix: mp("10.210.7.0/24"), Ports: []store.Port{http}}, "for one address"},
		{Request{Prefix: mp("127.0.0.1/32"), Ports: []store.Port{http}}, "loopback"},
	} {
		if _, err := m.Add(c.req, t0); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Add(%v): %v, want a refusal with %q", c.req.Prefix, err, c.want)
		}
	}
	if _, err := m.Add(Request{Prefix: mp("10.210.2.2/32"), For: time.Minute}, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Add(Request{Prefix: mp("10.210.2.2/32"), Ports: []store.Port{http}}, t0); !errors.Is(err, ErrRefused) {
		t.Errorf("a port ban of an address banned whole: %v", err)
	}
	// Expiry forgets it; the store record goes.
	if next := m.NextExpiry(); !next.Equal(t0.Add(time.Minute)) {
		t.Fatalf("NextExpiry %v", next)
	}
	if err := m.Expire(t0.Add(2 * time.Hour)); err != nil {
		t.Fatal(err)
	}
	if len(m.List(t0.Add(2*time.Hour))) != 0 || len(m.PortBanElements(t0.Add(2*time.Hour))) != 0 {
		t.Fatal("port ban outlived its expiry")
	}
	if _, ok := st.bans[a]; ok {
		t.Fatal("expired port ban still stored")
	}
	clear(enf.ports) // the kernel timed its elements out
	// Unban lifts it from the kernel.
	if _, err := m.Add(Request{Prefix: a, For: time.Minute, Ports: []store.Port{imap}}, t0.Add(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if found, err := m.Del(a, t0.Add(3*time.Hour)); !found || err != nil || len(enf.ports) != 0 {
		t.Fatalf("Del = %v, %v; kernel %v", found, err, enf.ports)
	}
}

// A flush lifts port-limited bans too.
func TestDelAllLiftsPortBans(t *testing.T) {
	st, enf := newMemStore(), newPortKernel()
	m, _ := New(st, enf, nil, t0, func(error) {})
	if _, err := m.Add(Request{Prefix: mp("10.210.1.1/32"), For: time.Minute, Ports: []store.Port{http}}, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Add(Request{Prefix: mp("fd00:210::1/128"), For: time.Minute, Ports: []store.Port{imap}}, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Add(Request{Prefix: mp("10.210.2.2/32"), For: time.Minute}, t0); err != nil {
		t.Fatal(err)
	}
	lifted, err := m.DelAll(t0)
	if err != nil || len(lifted) != 3 {
		t.Fatalf("DelAll = %+v, %v", lifted, err)
	}
	if len(enf.ports) != 0 || len(st.bans) != 0 || len(m.List(t0)) != 0 || len(m.PortBanElements(t0)) != 0 {
		t.Fatalf("after DelAll: kernel %v, store %v", enf.ports, st.bans)
	}
}

// A guard's port-limited ban of an address that becomes protected (a
// session, a grant) is lifted like a whole-host one; a manual one stays.
func TestLiftProtectedPortBans(t *testing.T) {
	st, enf := newMemStore(), newPortKernel()
	m, _ := New(st, enf, nil, t0, func(error) {})
	for _, r := range []Request{
		{Prefix: mp("10.210.0.9/32"), Origin: "login", For: time.Hour, Ports: []store.Port{http}},
		{Prefix: mp("10.210.0.10/32"), Origin: OriginManual, For: time.Hour, Ports: []store.Port{http}},
	} {
		if _, err := m.Add(r, t0); err != nil {
			t.Fatal(err)
		}
	}
	set := protect.New([]protect.Entry{
		protect.Host(netip.MustParseAddr("10.210.0.9"), protect.WhyRouter),
		protect.Host(netip.MustParseAddr("10.210.0.10"), protect.WhyRouter),
	})
	lifted, err := m.LiftProtected(set, t0)
	if err != nil || len(lifted) != 1 || lifted[0].Prefix != mp("10.210.0.9/32") || !strings.Contains(lifted[0].Reason, "lifted") {
		t.Fatalf("lifted %+v, %v", lifted, err)
	}
	if len(enf.ports) != 1 || len(m.List(t0)) != 1 {
		t.Fatalf("kernel %v, list %v", enf.ports, m.List(t0))
	}
}

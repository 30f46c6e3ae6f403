package firewall

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/netnstest"
)

// This kernel has NFT_MSG_DESTROYSETELEM (6.3 or later): the probe says
// so. Then, with the plain delete a 6.1 kernel gets forced, deletes of
// bans and grants go through, those already gone (a timeout took them)
// skipped, and the additions of the same change land.
func TestDeletesWithoutDestroy(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t)
	a := NewApplier(nftables.WithNetNSFd(ns.Fd()))
	door := config.Door{Name: "d", Sequence: []config.PortSpec{{Proto: config.TCP, From: 1, To: 1}}, SeqTimeout: time.Second,
		Open: []config.PortSpec{{Proto: config.TCP, From: 22, To: 22}}, OpenFor: time.Minute, MaxPending: 16}
	if err := a.Apply(Build(config.Firewall{ClosedResponse: "drop", LogRate: 1, LogBurst: 1}, nil, door), nil, nil); err != nil {
		t.Fatal(err)
	}
	// The install asked the kernel how deletes go.
	a.mu.Lock()
	op := a.delOp
	a.mu.Unlock()
	if op != msgDestroySetElem {
		t.Fatalf("after the install: delete op %#x, want destroy found on this kernel", op)
	}
	// Warm opens the socket bans and grants use and asks the kernel, so
	// the first ban pays neither.
	if err := a.Warm(); err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	raw := a.raw
	op = a.delOp
	a.mu.Unlock()
	if raw == nil || op != msgDestroySetElem {
		t.Fatalf("after Warm: raw socket %v, delete op %#x; want the raw socket open and destroy found on this kernel", raw != nil, op)
	}

	a.delOp = msgDelSetElem // as on Debian 12's stock kernel
	el := func(s string) Element { return Element{Prefix: netip.MustParsePrefix(s), Timeout: time.Hour} }
	if err := a.Update(Bans, nil, []Element{el("10.210.1.1/32"), el("10.210.2.0/24"), el("fd00:210::1/128")}); err != nil {
		t.Fatal(err)
	}
	// 10.210.9.9 was never there: a plain delete of it fails the batch.
	if err := a.Update(Bans, []Element{el("10.210.1.1/32"), el("10.210.9.9/32"), el("10.210.2.0/24")}, []Element{el("10.210.3.3/32")}); err != nil {
		t.Fatal(err)
	}
	// The kernel's ENOENT is an answer, read whole: the socket stays
	// (reopening it costs about half a millisecond, on every unban of
	// an element a timeout already took).
	a.mu.Lock()
	kept := a.raw == raw
	a.mu.Unlock()
	if !kept {
		t.Fatal("the fallback's ENOENT closed the raw socket")
	}
	got, err := a.Elements(Bans)
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.210.3.3/32"), netip.MustParsePrefix("fd00:210::1/128")}
	slices.SortFunc(got, func(x, y netip.Prefix) int { return x.Addr().Compare(y.Addr()) })
	if !slices.Equal(got, want) {
		t.Fatalf("bans %v, want %v", got, want)
	}

	g := Grant{Addr: netip.MustParseAddr("10.210.1.2"), Proto: 6, Port: 22, Timeout: time.Minute}
	gone := Grant{Addr: netip.MustParseAddr("fd00:210::2"), Proto: 6, Port: 22}
	next := Grant{Addr: netip.MustParseAddr("10.210.1.3"), Proto: 6, Port: 22, Timeout: time.Minute}
	if err := a.UpdateGrants(nil, []Grant{g}); err != nil {
		t.Fatal(err)
	}
	if err := a.UpdateGrants([]Grant{g, gone}, []Grant{next}); err != nil {
		t.Fatal(err)
	}
	gs, err := a.Grants()
	if err != nil || len(gs) != 1 || gs[0].Addr != next.Addr {
		t.Fatalf("grants %+v %v, want only %s", gs, err, next.Addr)
	}
}

// deleteOpFor reads the kernel's answer to the probe: the Debian 12 case
// (EINVAL: no destroy message) cannot happen on this test's kernel.
func TestDeleteOpFor(t *testing.T) {
	for _, c := range []struct {
		err   error
		op    uint16
		cache bool
	}{
		{nil, msgDestroySetElem, true},
		{replyError{unix.ENOENT}, msgDestroySetElem, true},
		{replyError{unix.EINVAL}, msgDelSetElem, true},
		{fmt.Errorf("netlink receive: %w", unix.EBADF), msgDestroySetElem, false},
		{replyError{unix.EPERM}, msgDestroySetElem, false},
	} {
		if op, cache := deleteOpFor(c.err); op != c.op || cache != c.cache {
			t.Errorf("%v: op %#x cache %v, want %#x %v", c.err, op, cache, c.op, c.cache)
		}
	}
}

package daemon

import (
	"net/netip"
	"strconv"
	"testing"

	"github.com/moat-fw/moat/internal/authlog"
)

// journalFailure parses a failure as the journal follower hands it on.
func journalFailure(t *testing.T, a netip.Addr, port int) *authlog.Event {
	t.Helper()
	var ev authlog.Event
	msg := "Failed password for root from " + a.String() + " port " + strconv.Itoa(port) + " ssh2"
	if !authlog.ParseSSHDMessage([]byte(msg), &ev) {
		t.Fatalf("not an sshd message: %s", msg)
	}
	return &ev
}

// A door-grant holder is never counted by the login guard, let alone
// banned (security review L2): whoever just knocked is the admin, and forged
// or mistyped failures must not lock them out. The guard is given the
// daemon's own protection type, with only its grant lookup filled in, so the
// test goes through the same path as the daemon: ignored → Protected →
// granted. The ban manager is left without a protector on purpose: it is
// the guard itself that must not count.
func TestLoginGuardNeverCountsGrantHolders(t *testing.T) {
	holder := netip.MustParseAddr("10.210.0.122")
	holder6 := netip.MustParseAddr("fd00:210::122")
	other := netip.MustParseAddr("10.210.0.123")
	grants := map[netip.Addr]bool{holder: true, holder6: true}
	g := trustGuard(t, &fakeHandshakes{down: true}, nil)
	g.protected = &protection{granted: func(a netip.Addr) bool { return grants[a] }}

	for i := range 10 {
		g.sshd(journalFailure(t, holder, 40000+i), t0)
		g.sshd(journalFailure(t, holder6, 40000+i), t0)
		// The same failure with the IPv4 address mapped, as an IPv6
		// listener logs it.
		g.sshd(journalFailure(t, netip.AddrFrom16(holder.As16()), 41000+i), t0)
	}
	for _, a := range []netip.Addr{holder, holder6} {
		if g.bans.Active(a, t0) {
			t.Fatalf("%s holds a door grant and was banned", a)
		}
	}
	if st := g.status(nil); st.Events != 0 || st.Counting != 0 || len(st.TopUsers) != 0 {
		t.Fatalf("grant holders were counted: events %d, counting %d, users %v", st.Events, st.Counting, st.TopUsers)
	}

	// The same failures from an address without a grant still ban: the
	// guard is not simply blind.
	for i := range 3 {
		g.sshd(journalFailure(t, other, 42000+i), t0)
	}
	if !g.bans.Active(other, t0) {
		t.Fatal("three failures from an address without a grant did not ban")
	}

	// Once the grant ends, the address counts again.
	delete(grants, holder)
	for i := range 3 {
		g.sshd(journalFailure(t, holder, 43000+i), t0)
	}
	if !g.bans.Active(holder, t0) {
		t.Fatal("three failures after the grant ended did not ban")
	}
}

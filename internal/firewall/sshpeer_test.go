package firewall_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/netnstest"
)

// SSHPeers reads back what the sshpeer sets hold, with the time left, and
// finds nothing (and no error) before moat's table exists.
func TestSSHPeersReadBack(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommands(t, "nft")
	ns := netnstest.New(t)
	a := firewall.NewApplier(nftables.WithNetNSFd(ns.Fd()))
	if got, err := a.SSHPeers(); err != nil || len(got) != 0 {
		t.Fatalf("no table: %v, %v", got, err)
	}
	fw := config.Firewall{ClosedResponse: "drop", LogGroup: 7, LogRate: 1, LogBurst: 1}
	if err := a.Apply(firewall.Build(fw, nil), nil, nil); err != nil {
		t.Fatal(err)
	}
	ns.Nft(t, "add element inet moat sshpeer4 { 10.210.0.9 timeout 5m }\nadd element inet moat sshpeer6 { fd00:210::9 }\n")
	got, err := a.SSHPeers()
	if err != nil {
		t.Fatal(err)
	}
	want := map[netip.Addr]time.Duration{
		netip.MustParseAddr("10.210.0.9"):  5 * time.Minute,
		netip.MustParseAddr("fd00:210::9"): firewall.SSHPeerTimeout,
	}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for _, p := range got {
		w, ok := want[p.Addr]
		if !ok || p.Left > w || p.Left < w-10*time.Second {
			t.Errorf("%v left %v, want about %v", p.Addr, p.Left, w)
		}
	}
}

package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/daemon"
	"github.com/moat-fw/moat/internal/fleet"
	"github.com/moat-fw/moat/internal/netnstest"
)

// natsVersion is the nats-server the fleet tests run: per-key TTL needs
// 2.11 or later, and Debian 12's is 2.9.
const natsVersion = "v2.15.3"

var natsOnce struct {
	sync.Once
	bin string
	err error
}

// natsServerBin returns a nats-server of natsVersion: $MOAT_NATS_SERVER,
// the one scripts/setup.sh builds, or one built now into the same cache.
func natsServerBin(t *testing.T) string {
	t.Helper()
	natsOnce.Do(func() {
		for _, p := range []string{os.Getenv("MOAT_NATS_SERVER"), "/var/cache/moat-bin/nats-server"} {
			if p == "" {
				continue
			}
			if out, err := exec.Command(p, "--version").Output(); err == nil && strings.Contains(string(out), natsVersion) {
				natsOnce.bin = p
				return
			}
		}
		dir := "/var/cache/moat-bin"
		if err := os.MkdirAll(dir, 0o755); err != nil {
			natsOnce.err = err
			return
		}
		cmd := exec.Command("go", "install", "github.com/nats-io/nats-server/v2@"+natsVersion)
		cmd.Env = append(os.Environ(), "GOBIN="+dir, "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			natsOnce.err = fmt.Errorf("building nats-server %s (scripts/setup.sh builds it): %v\n%s", natsVersion, err, out)
			return
		}
		natsOnce.bin = filepath.Join(dir, "nats-server")
	})
	if natsOnce.err != nil {
		t.Fatal(natsOnce.err)
	}
	return natsOnce.bin
}

// fleetLab is moat hosts sharing bans through nats-server processes in a
// namespace of their own, and one attacker namespace linked to every host,
// whose addresses (on its loopback, routed by each host through its link)
// are the same at every host, as a real attacker's are.
type fleetLab struct {
	t        *testing.T
	nats     *netnstest.NS
	attacker *netnstest.NS
	hosts    []*fleetHost
	nodes    []*natsNode
}

type fleetHost struct {
	*host
	name    string
	natsLnk *netnstest.Link // host (A) to the NATS namespace (B)
}

type natsNode struct {
	args []string
	proc *netnstest.Proc
	port int
}

// The attacker's addresses, and addresses banned without traffic: in
// fd00:210:ff00::/40, which no netnstest link uses (links take
// fd00:210:X::/64 and 10.210.X.0/24 for any X), so a ban never lands on a
// host's own address by chance.
var (
	attackerNet = netip.MustParsePrefix("fd00:210:ff00::/48")
	attackerX   = netip.MustParseAddr("fd00:210:ff00::7")
	attackerY   = netip.MustParseAddr("fd00:210:ff00::8")
	attackerZ   = netip.MustParseAddr("fd00:210:ff00::9")
)

// quiet is the i-th address of a block banned in tests but never used.
func quiet(block byte, i int) netip.Prefix {
	b := [16]byte{0xfd, 0x00, 0x02, 0x10, 0xff, block}
	b[12], b[13], b[14], b[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
	return netip.PrefixFrom(netip.AddrFrom16(b), 128)
}

func newFleetLab(t *testing.T, nodes int) *fleetLab {
	t.Helper()
	netnstest.RequireRoot(t)
	netnstest.RequireCommands(t, "nft")
	bin := natsServerBin(t)
	t.Parallel()
	l := &fleetLab{t: t, nats: netnstest.New(t), attacker: netnstest.New(t)}
	for _, a := range []netip.Addr{attackerX, attackerY, attackerZ} {
		l.attacker.AddAddr(t, "lo", netip.PrefixFrom(a, 128))
	}
	// A cluster of nodes (one: a plain server) on ports 4222, 4223...
	var routes []string
	for i := range nodes {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", 6222+i))
	}
	for i := range nodes {
		n := &natsNode{port: 4222 + i}
		n.args = []string{"-a", "0.0.0.0", "-p", fmt.Sprint(n.port), "-js", "-sd", filepath.Join(t.TempDir(), "js"),
			"-n", fmt.Sprintf("n%d", i+1)}
		if nodes > 1 {
			n.args = append(n.args, "--cluster_name", "moat", "--cluster", fmt.Sprintf("nats://127.0.0.1:%d", 6222+i),
				"--routes", strings.Join(routes, ","))
		}
		n.args = append([]string{bin}, n.args...)
		l.nodes = append(l.nodes, n)
		l.startNode(i)
	}
	return l
}

func (l *fleetLab) startNode(i int) {
	n := l.nodes[i]
	n.proc = l.nats.StartCmd(l.t, exec.Command(n.args[0], n.args[1:]...))
}

func (l *fleetLab) killNode(i int) {
	n := l.nodes[i]
	n.proc.Kill9()
	if err := n.proc.Wait(10 * time.Second); err != nil {
		l.t.Logf("nats node %d: %v", i+1, err)
	}
}

// addHost makes a moat host named name, linked to the attacker and to
// NATS, with extra config appended (after [firewall]).
func (l *fleetLab) addHost(name, extra string) *fleetHost {
	t := l.t
	h := &fleetHost{host: &host{t: t, server: netnstest.New(t), client: l.attacker, dir: t.TempDir()}, name: name}
	h.link = netnstest.Connect(t, h.server, l.attacker)
	h.natsLnk = netnstest.Connect(t, h.server, l.nats)
	h.server.IP(t, "-6", "route", "add", attackerNet.String(), "via", h.link.B6.String())
	h.server.ListenTCP(t, netip.AddrPortFrom(h.link.A6, openPort))
	var servers []string
	for _, n := range l.nodes {
		servers = append(servers, fmt.Sprintf("%q", fmt.Sprintf("nats://%s:%d", h.natsLnk.B4, n.port)))
	}
	h.writeConfig(fmt.Sprintf(`open = ["tcp/%d"]
log_rate = 100000
log_burst = 100000

[scan]
block_level = 1
window = "1m"

[fleet]
host = %q
servers = [%s]
%s`, openPort, name, strings.Join(servers, ", "), extra))
	l.hosts = append(l.hosts, h)
	return h
}

// startHosts adds hosts of the same extra config, starts them, and waits
// until each has joined the fleet.
func (l *fleetLab) startHosts(extra string, names ...string) []*fleetHost {
	var hs []*fleetHost
	for _, n := range names {
		h := l.addHost(n, extra)
		h.start()
		hs = append(hs, h)
	}
	for _, h := range hs {
		h.connected()
	}
	return hs
}

func (h *fleetHost) fleet() fleet.Status {
	h.t.Helper()
	var st fleet.Status
	if err := json.Unmarshal([]byte(h.moat("fleet", "status", "--json")), &st); err != nil {
		h.t.Fatal(err)
	}
	return st
}

func (h *fleetHost) connected() {
	h.t.Helper()
	netnstest.Eventually(h.t, 30*time.Second, h.name+" to join the fleet", func() bool {
		st := h.fleet()
		return st.Connected && st.Replays > 0
	})
}

func (h *fleetHost) bans() map[string]daemon.EntryJSON {
	h.t.Helper()
	var es []daemon.EntryJSON
	if err := json.Unmarshal([]byte(h.moat("ban", "list", "--json")), &es); err != nil {
		h.t.Fatal(err)
	}
	out := map[string]daemon.EntryJSON{}
	for _, e := range es {
		out[e.Addr] = e
	}
	return out
}

func (h *fleetHost) stop() {
	h.t.Helper()
	if err := h.proc.Signal(syscall.SIGTERM); err != nil {
		h.t.Fatal(err)
	}
	if err := h.proc.Wait(10 * time.Second); err != nil {
		h.t.Logf("moat %s stopped: %v", h.name, err)
	}
}

// Three hosts and one nats-server: a ban on A stops the attacker at B and
// C (real packets), an unban on A lifts it everywhere, a host restarted
// while NATS was down catches up, a NATS outage does not stop local bans,
// and C refuses a remote ban of its own address.
func TestFleetSharesBans(t *testing.T) {
	l := newFleetLab(t, 1)
	hs := l.startHosts("", "a", "b", "c")
	a, b, c := hs[0], hs[1], hs[2]
	for _, h := range hs {
		h.expect(attackerX, openPort, netnstest.Connected)
	}

	// A manual ban shared with --fleet.
	a.moat("ban", "add", attackerX.String(), "--fleet", "--for", "1h", "--reason", "seen on a")
	a.expect(attackerX, openPort, netnstest.TimedOut)
	b.eventually("b drops the attacker banned on a", attackerX, openPort, netnstest.TimedOut)
	c.eventually("c drops the attacker banned on a", attackerX, openPort, netnstest.TimedOut)
	if e := b.bans()[attackerX.String()]; e.Origin != "fleet" || e.Host != "a" || !strings.Contains(e.Reason, "seen on a") {
		t.Errorf("b's ban: %+v", e)
	}
	if out := b.moat("ban", "list"); !strings.Contains(out, "fleet@a") {
		t.Errorf("ban list does not say where the ban came from:\n%s", out)
	}

	// A scan guard ban on a: 30 SYNs to closed ports.
	b.expect(attackerY, openPort, netnstest.Connected)
	l.attacker.SpoofSYNs(t, 0, netnstest.PortScan(attackerY, a.link.A6, 1000, 30))
	a.eventually("a bans the scanner", attackerY, openPort, netnstest.TimedOut)
	b.eventually("b drops the scanner banned on a", attackerY, openPort, netnstest.TimedOut)
	c.eventually("c drops the scanner banned on a", attackerY, openPort, netnstest.TimedOut)
	if e := c.bans()[attackerY.String()]; e.Origin != "fleet" || e.Host != "a" || !strings.HasPrefix(e.Reason, "scan at a") {
		t.Errorf("c's ban of the scanner: %+v", e)
	}

	// An unban on a lifts the ban everywhere.
	a.moat("ban", "del", attackerX.String())
	for _, h := range []*fleetHost{a, b, c} {
		h.eventually(h.name+" lets the unbanned address in", attackerX, openPort, netnstest.Connected)
	}

	// A remote ban of c's own address is refused on c (b, to which it is
	// no one, applies it).
	own := c.link.A4
	a.moat("ban", "add", own.String(), "--fleet", "--for", "1h")
	netnstest.Eventually(t, 10*time.Second, "b applies the ban of c's address", func() bool { _, ok := b.bans()[own.String()]; return ok })
	netnstest.Eventually(t, 10*time.Second, "c refuses it", func() bool { return c.fleet().Refused["protected"] >= 1 })
	if _, ok := c.bans()[own.String()]; ok {
		t.Fatal("c banned its own address on a remote host's word")
	}
	c.expect(attackerX, openPort, netnstest.Connected) // c still answers

	// c stops; NATS goes down. A ban on a takes at once all the same.
	c.stop()
	l.killNode(0)
	netnstest.Eventually(t, 10*time.Second, "a sees NATS down", func() bool { return !a.fleet().Connected })
	a.moat("ban", "add", attackerZ.String(), "--fleet", "--for", "1h")
	a.expect(attackerZ, openPort, netnstest.TimedOut)
	b.expect(attackerZ, openPort, netnstest.Connected)
	// NATS comes back on its storage; c starts again and catches up.
	l.startNode(0)
	c.start()
	c.connected()
	c.eventually("c catches up with the ban made while it and NATS were down", attackerZ, openPort, netnstest.TimedOut)
	b.eventually("b gets it too", attackerZ, openPort, netnstest.TimedOut)
	c.eventually("the scanner's ban is still shared", attackerY, openPort, netnstest.TimedOut)
	if st := c.fleet(); st.LastReplay == nil || st.LastReplay.Keys < 2 {
		t.Errorf("c's replay: %+v", st.LastReplay)
	}
}

// Three nats-server processes in a cluster, the bucket replicated three
// times: one node is killed mid-test, and no ban is lost and propagation
// goes on.
func TestFleetSurvivesNATSNodeLoss(t *testing.T) {
	l := newFleetLab(t, 3)
	hs := l.startHosts("replicas = 3\n", "a", "b", "c")
	a, b, c := hs[0], hs[1], hs[2]
	ban := func(i int) string {
		addr := quiet(1, i).Addr().String()
		a.moat("ban", "add", addr, "--fleet", "--for", "1h")
		return addr
	}
	var want []string
	for i := 1; i <= 5; i++ {
		want = append(want, ban(i))
	}
	have := func(h *fleetHost, n int) func() bool {
		return func() bool {
			got := h.bans()
			for _, w := range want[:n] {
				if got[w].Host != "a" {
					return false
				}
			}
			return true
		}
	}
	for _, h := range []*fleetHost{b, c} {
		netnstest.Eventually(t, 10*time.Second, h.name+" has the first five bans", have(h, 5))
	}
	l.killNode(0)
	for i := 6; i <= 10; i++ {
		want = append(want, ban(i))
	}
	b.expect(attackerX, openPort, netnstest.Connected)
	a.moat("ban", "add", attackerX.String(), "--fleet", "--for", "1h")
	want = append(want, attackerX.String())
	for _, h := range []*fleetHost{b, c} {
		netnstest.Eventually(t, 20*time.Second, h.name+" has every ban, made before and after the node died", have(h, len(want)))
		h.eventually(h.name+" drops the attacker", attackerX, openPort, netnstest.TimedOut)
	}
	// The bucket lost nothing: c, restarted, replays every key from the
	// two nodes left.
	c.stop()
	c.start()
	c.connected()
	if st := c.fleet(); st.LastReplay == nil || st.LastReplay.Keys != len(want) {
		t.Errorf("c replayed %+v, want %d keys", st.LastReplay, len(want))
	}
}

package firewall

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Handshake evidence for sshd's log lines. Anyone on the host can write a
// line into a syslog file that looks like sshd's, naming any address; no one
// can make a remote address complete a TCP handshake with sshd. So the
// kernel reports each address that has an established connection to sshd's
// ports, and the login guard counts a line read from a syslog file only when
// its address did that recently.
//
// The rule, per family, ahead of everything in the guard chain but
// loopback (so that an interface moat does not guard still yields evidence):
//
//	tcp dport { sshd's ports } ct state established ip saddr != @sshpeer4
//	    limit rate 1000/second burst 1000 packets
//	    log prefix "moat:sshpeer" group G ... queue-threshold 1
//	    add @sshpeer4 { ip saddr }
//
// "established" means the kernel saw the three-way handshake finish: a
// spoofer never sees the SYN-ACK, so its ACK is invalid, not established.
// The set remembers each peer for SSHPeerTimeout, so only the first packet
// of a peer per SSHPeerTimeout reaches user space. The add does not refresh
// the timeout: a peer that stays active is reported again every
// SSHPeerTimeout, so the daemon's record of it is never older than that,
// and every auth attempt (itself established packets) finds a record at
// most SSHPeerTimeout old.
//
// The log comes before the add so that a packet the limit holds back is not
// added either: the peer's next packet tries again. The limit bounds what
// a full set costs: with the set full (65536 peers of one family that
// completed handshakes within 10 minutes) every established packet of a new
// peer would otherwise be logged.

// Names of the sets of addresses seen with established connections to sshd.
const (
	SetSSHPeer4 = "sshpeer4"
	SetSSHPeer6 = "sshpeer6"
)

// SSHPeerPrefix is the NFLOG prefix of the handshake reports.
var SSHPeerPrefix = LogPrefix("sshpeer")

// SSHPeerTimeout is how long the kernel remembers a peer before it reports
// the peer again.
const SSHPeerTimeout = 10 * time.Minute

// sshPeerSetSize caps each family's set.
const sshPeerSetSize = 65536

// sshPeerRate and sshPeerBurst bound the reports per second, which in
// normal operation are one per new peer.
const (
	sshPeerRate  = 1000
	sshPeerBurst = 1000
)

func sshPeerSet(v6 bool) string {
	if v6 {
		return SetSSHPeer6
	}
	return SetSSHPeer4
}

// sshPeerRules returns the sets and rules that report sshd's peers.
func sshPeerRules(sshPorts []uint16, logGroup uint16) (sets []SetDef, rules []Rule) {
	if len(sshPorts) == 0 {
		sshPorts = []uint16{22}
	}
	ranges := make([]portRange, 0, len(sshPorts))
	seen := map[uint16]bool{}
	for _, p := range sshPorts {
		if !seen[p] {
			seen[p] = true
			ranges = append(ranges, portRange{p, p})
		}
	}
	for _, v6 := range []bool{false, true} {
		set := sshPeerSet(v6)
		sets = append(sets, SetDef{Name: set, V6: v6, Type: SetSources, Size: sshPeerSetSize, Timeout: SSHPeerTimeout})
		rules = append(rules, rule(dports(protoTCP, ranges), ctState(expr.CtStateBitESTABLISHED, "established"),
			saddrNotIn(set, v6), limitRate(sshPeerRate, sshPeerBurst),
			nflogNow(SSHPeerPrefix, logGroup, logSnaplen), setUpdate(0, set, v6)))
	}
	return sets, rules
}

// saddrNotIn matches a source address that is not in the named set.
func saddrNotIn(setName string, v6 bool) stmt {
	s := saddrIn(setName, v6)
	s.exprs[len(s.exprs)-1].(*expr.Lookup).Invert = true
	kw := "ip"
	if v6 {
		kw = "ip6"
	}
	s.text = fmt.Sprintf("%s saddr != @%s", kw, setName)
	return s
}

// limitRate is a rule's own packet rate limit.
func limitRate(rate uint64, burst uint32) stmt {
	return stmt{text: fmt.Sprintf("limit rate %d/second burst %d packets", rate, burst), exprs: []expr.Any{
		&expr.Limit{Type: expr.LimitTypePkts, Rate: rate, Unit: expr.LimitTimeSecond, Burst: burst},
	}}
}

// SSHPeer is an address in the kernel's sshpeer sets: it had an
// established connection to sshd's ports SSHPeerTimeout-Left ago.
type SSHPeer struct {
	Addr netip.Addr
	Left time.Duration
}

// SSHPeers reads the sshpeer sets, so that a daemon that starts (or whose
// table is about to be replaced, which empties them) keeps the evidence.
// A table without the sets yields none and no error.
func (a *Applier) SSHPeers() ([]SSHPeer, error) {
	c, err := a.conn()
	if err != nil {
		return nil, err
	}
	var out []SSHPeer
	for _, v6 := range []bool{false, true} {
		s := namedSet(table(), sshPeerSet(v6), v6)
		s.Interval = false
		els, err := c.GetSetElements(s)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return nil, explain(fmt.Errorf("nftables: read set %s: %w", s.Name, err))
		}
		for _, e := range els {
			addr, ok := netip.AddrFromSlice(e.Key)
			if !ok {
				continue
			}
			out = append(out, SSHPeer{Addr: addr.Unmap(), Left: e.Expires})
		}
	}
	return out, nil
}

package main

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables"
)

// fwknopChain is the chain fwknopd (2.6, iptables-nft) adds its access
// rules to.
func fwknopChain() *nftables.Chain {
	return &nftables.Chain{Name: "FWKNOP_INPUT", Table: &nftables.Table{Name: "filter", Family: nftables.TableFamilyIPv4}}
}

// pollRules waits for fwknopd's access rule, polling its chain (which
// resetGrant empties): nftables' monitor does not report the rules
// iptables-nft adds (their xtables expressions do not decode), so, as for
// moat's kernel mode, the figure bounds the real delay from above by one
// rule dump.
func (p *probe) pollRules(deadline <-chan time.Time) (time.Time, bool) {
	ch := fwknopChain()
	for {
		if rs, err := p.nft.GetRules(ch.Table, ch); err == nil && len(rs) > 0 {
			return time.Now(), true
		}
		select {
		case <-deadline:
			return time.Time{}, false
		default:
			time.Sleep(100 * time.Microsecond)
		}
	}
}

// udpStats are the namespace's UDP counters (/proc/net/snmp): datagrams
// delivered to sockets, and dropped because a socket's queue was full.
type udpStats struct{ in, rcvbuf uint64 }

// They are read through /proc/thread-self on a locked thread:
// dialFromClient leaves threads in the client's namespace (the main thread
// among them, when the runtime wedges it), and /proc/net follows the main
// thread.
func udpCounters() udpStats {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b, err := os.ReadFile("/proc/thread-self/net/snmp")
	if err != nil {
		return udpStats{}
	}
	var names, vals []string
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Udp: "); ok {
			if names == nil {
				names = strings.Fields(rest)
			} else {
				vals = strings.Fields(rest)
			}
		}
	}
	var s udpStats
	for i, n := range names {
		if i >= len(vals) {
			break
		}
		v, _ := strconv.ParseUint(vals[i], 10, 64)
		switch n {
		case "InDatagrams":
			s.in = v
		case "RcvbufErrors":
			s.rcvbuf = v
		}
	}
	return s
}

// childTicks is the CPU time (clock ticks) of a process's reaped children:
// fwknopd runs iptables for every check and rule.
func childTicks(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 15 {
		return 0
	}
	u, _ := strconv.ParseUint(f[13], 10, 64)
	s, _ := strconv.ParseUint(f[14], 10, 64)
	return u + s
}

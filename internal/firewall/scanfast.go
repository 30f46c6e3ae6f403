package firewall

import (
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/moat-fw/moat/internal/config"
)

// craftedSYN matches a SYN without SACK-permitted: what nmap -sS (MSS 1460
// alone), masscan and zmap (no options) send, and what no current operating
// system's connect() sends (Linux, the BSDs, macOS and Windows all offer
// SACK). It only picks the log path: the scan guard reads the options
// itself and decides.
func craftedSYN() stmt {
	f := tcpFlags(flagSYN, flagSYN|flagFIN|flagRST|flagACK, false)
	return stmt{text: f.text + " tcp option sack-perm missing", exprs: cat(f.exprs, []expr.Any{
		&expr.Exthdr{DestRegister: 1, Type: 4 /* TCPOPT_SACK_PERMITTED */, Offset: 0, Len: 1,
			Flags: unix.NFT_EXTHDR_F_PRESENT, Op: expr.ExthdrOpTcpopt},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0}},
	})}
}

// craftedSYNRule logs a crafted SYN to a closed port with a queue
// threshold of 1, then drops (or resets) it as the closed-port rules
// below would. nmap -sS at its default timing sends its first ten probes
// within a millisecond and then waits a second: the kernel's NFLOG batch
// (32 packets or 10 ms) would hand all ten to the scan guard only after
// the burst. Sent at once, the guard can ban the scanner within that
// first burst. The log rate limit is the shared one, so a flood of
// crafted SYNs costs the daemon no more datagrams than log_rate allows.
func craftedSYNRule(fw config.Firewall) Rule {
	return rule(craftedSYN(), limitObj(LimitLog), nflogNow(LogPrefix(CounterClosed), fw.LogGroup, logSnaplen),
		counterObj(CounterClosed), closedReply(config.TCP, fw.ClosedResponse == "reject"))
}

// Warm opens the long-lived socket bans and grants go through (raw), if
// it is not open yet, and asks the kernel how deletes go (deleteOp).
// Opening it costs about half a millisecond, which the first ban after a
// start would otherwise pay: nmap's first burst of probes is over within
// a millisecond. (It opened google/nftables' socket, which bans stopped
// using when they moved to the raw one.)
func (a *Applier) Warm() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, err := a.rawWriter(); err != nil {
		return err
	}
	a.deleteOp()
	return nil
}

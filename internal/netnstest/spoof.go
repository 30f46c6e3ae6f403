package netnstest

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// linkLocal6 may be forged too: routers speak from there, and what a
// forged packet from a router's address does is what tests need to see.
// Such a packet never leaves the link it is sent on.
var linkLocal6 = mustPrefix("fe80::/10")

// Probe is one forged TCP SYN: from Src to Dst's port Port.
type Probe struct {
	Src, Dst netip.Addr
	Port     uint16
}

// SpoofSYNs sends, from inside the namespace, TCP SYNs with forged sources
// and no TCP options (as masscan and hping3 send them) through a raw
// socket, at most rate per second (0: as fast as it can). Every address
// must be a test address (or, as a source, link-local); the flood is
// bounded by len(probes). It returns once all are sent.
func (n *NS) SpoofSYNs(t testing.TB, rate int, probes []Probe) {
	t.Helper()
	n.SpoofSYNsFunc(t, rate, len(probes), func(i int) Probe { return probes[i] })
}

// SpoofSYNsFunc is SpoofSYNs for count probes made by probe(i), for floods
// too big to hold in a slice.
func (n *NS) SpoofSYNsFunc(t testing.TB, rate, count int, probe func(i int) Probe) {
	t.Helper()
	if err := n.SpoofSYNsErr(rate, count, probe); err != nil {
		t.Fatalf("netnstest: %v", err)
	}
}

// SpoofSYNsErr is SpoofSYNsFunc returning its error, for senders run side
// by side in goroutines (where a test must not call Fatal): one sender on
// a 2-core machine reaches fewer packets a second than some floods need.
func (n *NS) SpoofSYNsErr(rate, count int, probe func(i int) Probe) error {
	for i := range count {
		p := probe(i)
		err := checkRawAddrs(p.Src, p.Dst)
		if err == nil && p.Src.Is4() != p.Dst.Is4() {
			err = fmt.Errorf("%s and %s are of different families", p.Src, p.Dst)
		}
		if err != nil {
			return fmt.Errorf("SpoofSYNs: probe %d: %w", i, err)
		}
	}
	err := n.Do(func() error {
		rs, err := newRawSender("")
		if err != nil {
			return err
		}
		defer rs.close()
		start := time.Now()
		for i := range count {
			p := probe(i)
			// Bare SYNs, no options: what masscan and hping3 send.
			syn := TCP(p.Src, p.Dst, 40000+uint16(i%20000), p.Port, 0x02, uint32(i)*2654435761)
			if err := rs.send(IP(p.Src, p.Dst, unix.IPPROTO_TCP, uint16(i), syn), p.Dst); err != nil {
				return err
			}
			if rate > 0 {
				if ahead := time.Duration(i+1)*time.Second/time.Duration(rate) - time.Since(start); ahead > 0 {
					time.Sleep(ahead)
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("SpoofSYNs in %s: %w", n.Name, err)
	}
	return nil
}

// PortScan is n probes from src to dst's ports first, first+1, ...
func PortScan(src, dst netip.Addr, first uint16, n int) []Probe {
	out := make([]Probe, n)
	for i := range out {
		out[i] = Probe{Src: src, Dst: dst, Port: first + uint16(i)}
	}
	return out
}

// WriteResolvConf gives the namespace its own /etc/resolv.conf, as `ip
// netns exec` mounts it over the host's for the processes it starts
// (/etc/netns/NAME/resolv.conf). It is removed at cleanup.
func (n *NS) WriteResolvConf(t testing.TB, servers ...netip.Addr) {
	t.Helper()
	dir := "/etc/netns/" + n.Name
	var text string
	for _, s := range servers {
		if err := checkTestAddr(s); err != nil {
			t.Fatal(err)
		}
		text += "nameserver " + s.String() + "\n"
	}
	if err := writeFileMkdir(dir, "resolv.conf", text); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
}

func writeFileMkdir(dir, name, text string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644)
}

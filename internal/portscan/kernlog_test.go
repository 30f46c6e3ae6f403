package portscan

import (
	"fmt"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/kernlog"
	"github.com/moat-fw/moat/internal/packet"
)

// TestKernelLogReplay scores scans read back from iptables LOG lines, as
// moat explain --kernel-log does, with and without --log-tcp-options.
func TestKernelLogReplay(t *testing.T) {
	line := func(prefix string, port int, lenIP int, flags, opt string) string {
		return fmt.Sprintf("Mar  1 12:00:%02d web1 kernel: [ 1234.567890] %sIN=eth0 OUT= MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 "+
			"SRC=198.51.100.7 DST=203.0.113.1 LEN=%d TOS=0x00 PREC=0x00 TTL=48 ID=31557 PROTO=TCP SPT=58038 DPT=%d WINDOW=1024 RES=0x00 %s URGP=0 %s",
			port%60, prefix, lenIP, port, flags, opt)
	}
	for _, tt := range []struct {
		name   string
		lines  func(port int) string
		types  string
		level  int
		prefix string
	}{
		{"nmap -sS, options logged", func(p int) string { return line("Drop Syn ", p, 44, "SYN", "OPT (020405B4) ") }, "syn", 3, "Drop Syn"},
		{"nmap -sS, options not logged", func(p int) string { return line("Drop Syn ", p, 44, "SYN", "") }, "syn", 3, "Drop Syn"},
		{"masscan", func(p int) string { return line("Drop Syn ", p, 40, "SYN", "") }, "syn,noopts", 3, "Drop Syn"},
		{"nmap -sT, options not logged", func(p int) string { return line("", p, 60, "SYN", "") }, "connect", 3, ""},
		{"nmap -sX", func(p int) string { return line("XMAS ", p, 40, "URG PSH FIN", "") }, "xmas", 4, "XMAS"},
	} {
		d := New(Config{})
		var p packet.Packet
		var top Decision
		for port := 1; port <= 200; port++ {
			l := tt.lines(port)
			prefix, ok := kernlog.Parse([]byte(l), &p)
			if !ok {
				t.Fatalf("%s: refused %q", tt.name, l)
			}
			if dec, ok := d.Observe(&p, prefix, t0.Add(time.Duration(port)*time.Millisecond)); ok {
				top = dec
			}
		}
		if top.Types.String() != tt.types || top.Level != tt.level {
			t.Errorf("%s: %v level %d, want %s level %d", tt.name, top.Types, top.Level, tt.types, tt.level)
		}
		if r := d.Report(t0, 1); len(r.Prefixes) != 1 || r.Prefixes[0] != (PrefixReport{tt.prefix, 200}) {
			t.Errorf("%s: prefixes %+v", tt.name, r.Prefixes)
		}
	}
}

package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat-fw/moat/internal/netnstest"
)

// debianKnockdConf is /etc/knockd.conf as Debian's knockd 0.8-2 package
// ships it, byte for byte.
const debianKnockdConf = "[options]\n\tUseSyslog\n\n[openSSH]\n\tsequence    = 7000,8000,9000\n\tseq_timeout = 5\n\tcommand     = /sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n\ttcpflags    = syn\n\n[closeSSH]\n\tsequence    = 9000,8000,7000\n\tseq_timeout = 5\n\tcommand     = /sbin/iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n\ttcpflags    = syn\n\n[openHTTPS]\n\tsequence    = 12345,54321,24680,13579\n\tseq_timeout = 5\n\tcommand     = /usr/local/sbin/knock_add -i -c INPUT -p tcp -d 443 -f %IP%\n\ttcpflags    = syn\n"

// Acceptance for issue 11: Debian's stock knockd.conf, imported with
// `moat import knockd`, then knockd's own knock client opens the door,
// closes it with the reverse sequence, and opens it again, over IPv4 and
// IPv6, with the door verified by the kernel (as imported) and by the
// daemon (the same door with a start and stop command). Each step is
// checked with a real connection to port 22.
func TestDebianStockKnockdConf(t *testing.T) {
	for _, mode := range []string{"kernel", "daemon"} {
		t.Run(mode, func(t *testing.T) {
			netnstest.RequireCommands(t, "knock")
			h := newHost(t, "")
			conf := filepath.Join(h.dir, "knockd.conf")
			if err := os.WriteFile(conf, []byte(debianKnockdConf), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(moatBin, "import", "knockd", conf).Output()
			if err != nil {
				t.Fatalf("moat import knockd: %v", err)
			}
			doors := string(out)
			if mode == "daemon" {
				hook := filepath.Join(h.dir, "hook")
				os.WriteFile(hook, []byte("#!/bin/sh\nexit 0\n"), 0o755)
				i := strings.Index(doors, "close_sequence = ")
				if i < 0 {
					t.Fatalf("the import has no close sequence:\n%s", doors)
				}
				doors = doors[:i] + fmt.Sprintf("start_command = [%q, \"%%IP%%\"]\nstop_command = [%q, \"%%IP%%\"]\n", hook, hook) + doors[i:]
			}
			h.writeConfig(fmt.Sprintf("open = [\"tcp/%d\"]\n", openPort) + doors)
			if out, err := h.moatErr("config", "check"); err != nil {
				t.Fatalf("config check of the imported doors: %v\n%s", err, out)
			}
			for _, a := range []netip.Addr{h.link.A4, h.link.A6} {
				h.server.ListenTCP(t, netip.AddrPortFrom(a, 22))
			}
			h.start()
			if list := h.moat("door", "list"); !strings.Contains(list, mode) {
				t.Fatalf("want a %s-mode door:\n%s", mode, list)
			}
			for _, fam := range []struct {
				flag     []string
				src, dst netip.Addr
			}{{nil, h.link.B4, h.link.A4}, {[]string{"-6"}, h.link.B6, h.link.A6}} {
				knock := func(ports ...string) {
					h.knock(t, append(append(append([]string{}, fam.flag...), fam.dst.String()), ports...)...)
				}
				h.expect(fam.src, 22, netnstest.TimedOut)
				knock("7000", "8000", "9000")
				h.eventually("the door to open", fam.src, 22, netnstest.Connected)
				knock("9000", "8000", "7000")
				h.eventually("the reverse sequence to close the door", fam.src, 22, netnstest.TimedOut)
				knock("7000", "8000", "9000")
				h.eventually("the door to open again", fam.src, 22, netnstest.Connected)
			}
		})
	}
}

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// flooding reports whether the row runs under a flood.
func (p *probe) flooding() bool { return p.floodKind != "paced" || p.floodPPS > 0 }

// floodProcs are the running flood senders of one row.
type floodProcs struct {
	kind   string
	cmds   []*exec.Cmd
	outs   []*bytes.Buffer
	exited chan struct{} // closed when any sender has exited
	waited []chan struct{}
}

// startFlood starts the row's senders in the client namespace: one paced
// knockbench sender; or -flood-procs unpaced ones (the generator's
// maximum); or -flood-procs `hping3 --flood` processes, which the issue's
// bar names. hping3 can only forge random sources from the whole IPv4
// space (--rand-source), which would make the server answer addresses
// outside the test ranges, so each hping3 forges one fixed source from
// -flood-src instead: the rate is hping3's maximum, the source spread is
// the knockbench senders' job. It returns nil without a flood.
func (p *probe) startFlood() (*floodProcs, error) {
	if !p.flooding() {
		return nil, nil
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	fl := &floodProcs{kind: p.floodKind, exited: make(chan struct{})}
	var argvs [][]string
	b64 := []string{}
	if p.floodB64 {
		b64 = []string{"-b64"}
	}
	switch p.floodKind {
	case "paced":
		argvs = append(argvs, append([]string{self, "flood", "-dst", p.server.String(), "-port", strconv.Itoa(int(p.floodPort)),
			"-pps", strconv.FormatFloat(p.floodPPS, 'f', 0, 64), "-src", p.floodSrc, "-exclude", p.floodExclude, "-udp", strconv.Itoa(p.floodUDP)}, b64...))
	case "max":
		for range p.floodProcs {
			argvs = append(argvs, append([]string{self, "flood", "-dst", p.server.String(), "-port", strconv.Itoa(int(p.floodPort)),
				"-pps", "0", "-src", p.floodSrc, "-exclude", p.floodExclude, "-udp", strconv.Itoa(p.floodUDP)}, b64...))
		}
	case "hping3":
		if !p.server.Is4() {
			return nil, fmt.Errorf("-flood hping3: hping3 sends IPv4 only")
		}
		srcs, err := fixedSources(p.floodSrc, p.floodExclude, p.floodProcs)
		if err != nil {
			return nil, err
		}
		for _, src := range srcs {
			argvs = append(argvs, []string{"hping3", "--flood", "-q", "-S", "-p", strconv.Itoa(int(p.floodPort)), "-a", src.String(), p.server.String()})
		}
	default:
		return nil, fmt.Errorf("-flood %q: want paced, max or hping3", p.floodKind)
	}
	for _, argv := range argvs {
		argv = append([]string{"ip", "netns", "exec", p.clientNS}, argv...)
		if p.floodCPUs != "" {
			// taskset execs ip, which execs the sender: one PID throughout.
			argv = append([]string{"taskset", "-c", p.floodCPUs}, argv...)
		}
		cmd := exec.Command(argv[0], argv[1:]...)
		out := &bytes.Buffer{}
		cmd.Stdout, cmd.Stderr = out, os.Stderr
		if p.floodKind == "hping3" {
			cmd.Stderr = out // its statistics at SIGINT
		}
		if err := cmd.Start(); err != nil {
			fl.kill()
			return nil, err
		}
		w := make(chan struct{})
		go func() {
			_ = cmd.Wait()
			close(w)
			select {
			case <-fl.exited:
			default:
				close(fl.exited)
			}
		}()
		fl.cmds, fl.outs, fl.waited = append(fl.cmds, cmd), append(fl.outs, out), append(fl.waited, w)
	}
	return fl, nil
}

// fixedSources picks n addresses of prefix src outside exclude.
func fixedSources(src, exclude string, n int) ([]netip.Addr, error) {
	sp, err := netip.ParsePrefix(src)
	if err != nil {
		return nil, err
	}
	var ex netip.Prefix
	if exclude != "" {
		if ex, err = netip.ParsePrefix(exclude); err != nil {
			return nil, err
		}
	}
	var out []netip.Addr
	for a := sp.Masked().Addr().Next(); sp.Contains(a) && len(out) < n; a = a.Next() {
		if !ex.Contains(a) && inTestNets(netip.PrefixFrom(a, a.BitLen())) {
			out = append(out, a)
		}
	}
	if len(out) < n {
		return nil, fmt.Errorf("-flood-src %s: fewer than %d sources outside %s", src, n, exclude)
	}
	return out, nil
}

// output is what the senders printed, for an error message.
func (fl *floodProcs) output() string {
	var b strings.Builder
	for _, o := range fl.outs {
		b.Write(o.Bytes())
	}
	return b.String()
}

// stop ends the senders with SIGINT and adds up what knockbench senders
// report (hping3's own statistics are not parsed: the row's rate is the
// server's ingress counter either way).
func (fl *floodProcs) stop() (FloodResult, error) {
	var sum FloodResult
	if fl == nil {
		return sum, nil
	}
	for i, c := range fl.cmds {
		_ = c.Process.Signal(unix.SIGINT)
		<-fl.waited[i]
	}
	if fl.kind == "hping3" {
		return sum, nil
	}
	for _, o := range fl.outs {
		var fr FloodResult
		if err := json.Unmarshal(o.Bytes(), &fr); err != nil {
			return sum, fmt.Errorf("flood's result %q: %w", o.String(), err)
		}
		sum.Sent += fr.Sent
		sum.Errors += fr.Errors
		sum.PPS += fr.PPS
		sum.Seconds = max(sum.Seconds, fr.Seconds)
	}
	return sum, nil
}

// kill ends senders still running (an error path).
func (fl *floodProcs) kill() {
	if fl == nil {
		return
	}
	for i, c := range fl.cmds {
		select {
		case <-fl.waited[i]:
		default:
			_ = c.Process.Kill()
			<-fl.waited[i]
		}
	}
}

package session

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

const (
	stEstablished = 0x01
	stListen      = 0x0A
	stSynRecv     = 0x03
)

func TestParseTCPLine(t *testing.T) {
	// Lines as Linux 6.x prints them (the second and third from a
	// dual-stack listener).
	for _, tc := range []struct {
		line          string
		local, remote string
		state         uint8
		inode         uint64
	}{
		{"   1: 01D2D20A:0016 02D2D20A:C350 01 00000000:00000000 02:00000000 00000000     0        0 4242 1 0000000000000000 20 4 30 10 -1",
			"10.210.210.1:22", "10.210.210.2:50000", 1, 4242},
		{"   0: 100200FD000000000000000001000000:0016 100200FD000000000000000002000000:D431 01 00000000:00000000 02:00000B7F 00000000     0        0 99 2 0000000000000000 20 4 31 10 -1",
			"[fd00:210::1]:22", "[fd00:210::2]:54321", 1, 99},
		{"   1: 0000000000000000FFFF000001D2D20A:0016 0000000000000000FFFF000003D2D20A:1F90 01 00000000:00000000 00:00000000 00000000     0        0 7 1 0000000000000000 20 4 30 10 -1",
			"10.210.210.1:22", "10.210.210.3:8080", 1, 7},
		{"   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 18 1 0000000000000000 100 0 0 10 0",
			"0.0.0.0:22", "0.0.0.0:0", 0x0A, 18},
	} {
		e, ok := parseTCPLine([]byte(tc.line))
		want := TCPEntry{netip.MustParseAddrPort(tc.local), netip.MustParseAddrPort(tc.remote), tc.state, tc.inode}
		if !ok || e != want {
			t.Errorf("parseTCPLine(%q)\n = %+v, %v\nwant %+v", tc.line, e, ok, want)
		}
	}
	for _, bad := range []string{
		"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
		"   1: 01D2D20A:0016 02D2D20A:C350 01 00000000:00000000 02:00000000 00000000     0        0",    // no inode
		"   1: 01D2D20A:0016 02D2D20A:C350 01 00000000:00000000 02:00000000 00000000     0        0 x1", // bad inode
		"   1: 01D2D20A:0016 100200FD000000000000000002000000:D431 01 0:0 0:0 0 0 0 5",                  // families differ
		"   1: 01D2D20:0016 02D2D20A:C350 01 0:0 0:0 0 0 0 5",                                           // short address
		"   1: 01D2D20A:10016 02D2D20A:C350 01 0:0 0:0 0 0 0 5",                                         // port too long
		"   1: 01D2D20A:0016 02D2D20A:C350 1FF 0:0 0:0 0 0 0 5",                                         // state too long
		"",
	} {
		if e, ok := parseTCPLine([]byte(bad)); ok {
			t.Errorf("parseTCPLine(%q) = %+v, want no entry", bad, e)
		}
	}
}

func TestParseTCPDoesNotAllocate(t *testing.T) {
	data := []byte("  sl  local_address rem_address   st\n" + tcpLine(0, "10.210.0.1:22", "10.210.0.2:40000", 1, 5) + "\n")
	n := 0
	if a := testing.AllocsPerRun(100, func() { ParseTCP(data, func(TCPEntry) { n++ }) }); a != 0 {
		t.Fatalf("ParseTCP allocates %v times per table", a)
	}
	if n == 0 {
		t.Fatal("parsed nothing")
	}
}

func TestClassifyTitle(t *testing.T) {
	// Every title below is set by OpenSSH (see title.go for where).
	for _, tc := range []struct {
		title string
		kind  titleKind
		user  string
	}{
		{"sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups", titlePreAuth, ""},
		{"sshd: [accepted]", titlePreAuth, ""},
		{"sshd: [priv]", titlePreAuth, ""},
		{"sshd: [net]", titlePreAuth, ""},
		{"sshd: unknown [priv]", titlePreAuth, ""},
		{"sshd: unknown [net]", titlePreAuth, ""},
		{"sshd: root [priv]", titlePreAuth, ""},
		{"sshd: root [net]", titlePreAuth, ""},
		{"sshd: root [preauth]", titlePreAuth, ""},
		{"sshd-session: alice [priv]", titlePreAuth, ""},
		{"sshd: root@pts/0", titlePostAuth, "root"},
		{"sshd: alice@notty", titlePostAuth, "alice"},
		{"sshd: alice@pts/0,pts/3", titlePostAuth, "alice"},
		{"sshd: alice@internal-sftp", titlePostAuth, "alice"},
		{"sshd-session: alice@notty", titlePostAuth, "alice"},
		{"sshd: alice", titlePostAuth, "alice"}, // logged in, no session channel yet (ssh -N)
		{"sshd: alice@example.com", titlePostAuth, "alice@example.com"},
		{"sshd: alice@example.com@pts/1", titlePostAuth, "alice@example.com"},
		{"sshd: root@notty   ", titlePostAuth, "root"},
		// Before setproctitle (rexec'd child) and other programs.
		{"/usr/sbin/sshd\x00-D\x00-R", titleOther, ""},
		{"/usr/sbin/sshd -D -R", titleOther, ""},
		{"sshd:", titleOther, ""},
		{"sshd: ", titleOther, ""},
		{"bash", titleOther, ""},
		{"", titleOther, ""},
	} {
		kind, user := classifyTitle([]byte(tc.title + "\x00\x00\x00"))
		if kind != tc.kind || string(user) != tc.user {
			t.Errorf("classifyTitle(%q) = %v, %q; want %v, %q", tc.title, kind, user, tc.kind, tc.user)
		}
	}
}

// A fake host: sshd on 22 (both families), one admin logged in over IPv4,
// one over IPv6 through a dual-stack socket (so IPv4-mapped), and clients
// that only hold connections or are still authenticating.
func fakeHost(t testing.TB) *fakeProc {
	f := newFake(t)
	f.conn("0.0.0.0:22", "0.0.0.0:0", stListen, 10)
	f.conn("[::]:22", "[::]:0", stListen, 11)
	f.conn("10.210.0.1:22", "10.210.0.2:40000", stEstablished, 101)        // root, logged in
	f.conn("10.210.0.1:22", "10.210.0.66:40001", stEstablished, 102)       // attacker, [net] child
	f.conn("10.210.0.1:22", "10.210.0.67:40002", stEstablished, 103)       // attacker, [accepted]
	f.conn("10.210.0.1:22", "10.210.0.68:40003", stEstablished, 104)       // attacker, held by no one yet
	f.conn("10.210.0.1:22", "10.210.0.69:40004", stSynRecv, 0)             // half open
	f.conn("10.210.0.1:8080", "10.210.0.2:40005", stEstablished, 105)      // not sshd's port
	f.conn("[::ffff:10.210.0.1]:22", "[::ffff:10.210.0.3]:40006", 1, 106)  // alice, ssh -N, sshd-session
	f.conn("[fd00:210::1]:22", "[fd00:210::66]:40007", stEstablished, 107) // impostor's socket
	f.process(fakeProcess{pid: 1, comm: "systemd", cmdline: "/sbin/init"})
	f.process(fakeProcess{pid: 500, ppid: 1, comm: "sshd", cmdline: "sshd: /usr/sbin/sshd -D [listener] 2 of 10-100 startups", sockets: []uint64{10, 11}})
	f.process(fakeProcess{pid: 600, ppid: 500, comm: "sshd", cmdline: "sshd: root [priv]", sockets: []uint64{101}})
	f.process(fakeProcess{pid: 601, ppid: 600, comm: "sshd", cmdline: "sshd: root@pts/0", sockets: []uint64{101}})
	f.process(fakeProcess{pid: 610, ppid: 500, comm: "sshd", cmdline: "sshd: root [priv]", sockets: []uint64{102}})
	f.process(fakeProcess{pid: 611, ppid: 610, comm: "sshd", cmdline: "sshd: root [net]", sockets: []uint64{102}})
	f.process(fakeProcess{pid: 620, ppid: 500, comm: "sshd", cmdline: "sshd: [accepted]", sockets: []uint64{103}})
	f.process(fakeProcess{pid: 630, ppid: 500, comm: "sshd-session", cmdline: "sshd-session: alice [priv]", sockets: []uint64{106}})
	f.process(fakeProcess{pid: 631, ppid: 630, comm: "sshd-session", cmdline: "sshd-session: alice", sockets: []uint64{106, 105}})
	// A local user's program that names itself like a session: its comm
	// gives it away.
	f.process(fakeProcess{pid: 700, ppid: 1, comm: "python3", cmdline: "sshd: root@pts/9", sockets: []uint64{107}})
	return f
}

func TestLoggedIn(t *testing.T) {
	f := fakeHost(t)
	got, err := f.proc().LoggedIn([]uint16{22})
	if err != nil {
		t.Fatal(err)
	}
	want := []Session{
		{Client: netip.MustParseAddrPort("10.210.0.2:40000"), Server: netip.MustParseAddrPort("10.210.0.1:22"), PID: 601, User: "root", LoggedIn: true},
		{Client: netip.MustParseAddrPort("10.210.0.3:40006"), Server: netip.MustParseAddrPort("10.210.0.1:22"), PID: 631, User: "alice", LoggedIn: true},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("LoggedIn:\n got %+v\nwant %+v", got, want)
	}
	// sshd on another port sees none of them.
	if got, err := f.proc().LoggedIn([]uint16{2222}); err != nil || len(got) != 0 {
		t.Fatalf("LoggedIn(2222) = %+v, %v", got, err)
	}
}

// With no established connection to sshd's ports, no process is looked at.
func TestLoggedInSkipsProcessesWithoutConnections(t *testing.T) {
	f := newFake(t)
	f.conn("0.0.0.0:22", "0.0.0.0:0", stListen, 10)
	f.conn("10.210.0.1:8080", "10.210.0.2:40005", stEstablished, 101)
	f.process(fakeProcess{pid: 601, comm: "sshd", cmdline: "sshd: root@pts/0", sockets: []uint64{101}})
	p := f.proc()
	p.readlinkat = func(int, string, []byte) (int, error) {
		t.Error("read a process's files although no connection to sshd is established")
		return 0, syscall.EIO
	}
	if got, err := p.LoggedIn([]uint16{22}); err != nil || got != nil {
		t.Fatalf("LoggedIn = %+v, %v", got, err)
	}
}

// Without CAP_SYS_PTRACE a post-auth process's fds cannot be read: what it
// holds is flagged Unknown instead of guessed, and the error says why.
func TestLoggedInHiddenOwners(t *testing.T) {
	f := fakeHost(t)
	p := f.proc()
	denied := filepath.Join(f.root, "601", "fd")
	p.readlinkat = func(dirfd int, name string, buf []byte) (int, error) {
		if dir, _ := os.Readlink("/proc/self/fd/" + itoa(dirfd)); dir == denied {
			return 0, syscall.EACCES
		}
		return unixReadlinkat(dirfd, name, buf)
	}
	got, err := p.LoggedIn([]uint16{22})
	if !errors.Is(err, ErrOwnersHidden) || !errors.Is(err, syscall.EACCES) || !strings.Contains(err.Error(), "/601/fd/") {
		t.Fatalf("err = %v, want ErrOwnersHidden naming /proc/601/fd", err)
	}
	var alice, unknown []string
	for _, s := range got {
		switch {
		case s.LoggedIn && !s.Unknown:
			alice = append(alice, s.Client.String())
		case s.Unknown && !s.LoggedIn && s.PID == 0:
			unknown = append(unknown, s.Client.String())
		default:
			t.Errorf("session with contradictory flags: %+v", s)
		}
	}
	// alice's process was readable; everything else on 22 is unverified,
	// the pre-auth ones included: the caller decides what to do with them.
	if !slices.Equal(alice, []string{"10.210.0.3:40006"}) ||
		!slices.Equal(unknown, []string{"10.210.0.2:40000", "10.210.0.66:40001", "10.210.0.67:40002", "10.210.0.68:40003", "[fd00:210::66]:40007"}) {
		t.Fatalf("logged in %v, unknown %v", alice, unknown)
	}

	// With no post-auth process at all, nothing needs reading, so nothing
	// is unknown: every connection is still authenticating.
	f2 := newFake(t)
	f2.conn("10.210.0.1:22", "10.210.0.66:40001", stEstablished, 102)
	f2.process(fakeProcess{pid: 611, comm: "sshd", cmdline: "sshd: root [net]", sockets: []uint64{102}})
	p2 := f2.proc()
	p2.readlinkat = func(int, string, []byte) (int, error) { return 0, syscall.EACCES }
	if got, err := p2.LoggedIn([]uint16{22}); err != nil || len(got) != 0 {
		t.Fatalf("only pre-auth connections: LoggedIn = %+v, %v", got, err)
	}
}

func TestLoggedInWithoutTables(t *testing.T) {
	if _, err := (Proc{Root: t.TempDir()}).LoggedIn([]uint16{22}); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("no /proc/net/tcp: err = %v", err)
	}
}

func TestCallerFromEnvironment(t *testing.T) {
	f := newFake(t)
	s, ok := f.proc().caller("::ffff:10.210.0.2 40000 10.210.0.1 22")
	want := Session{Client: netip.MustParseAddrPort("10.210.0.2:40000"), Server: netip.MustParseAddrPort("10.210.0.1:22"), LoggedIn: true}
	if !ok || s != want {
		t.Fatalf("caller = %+v, %v", s, ok)
	}
	if got := s.SSHConnection(); got != "10.210.0.2 40000 10.210.0.1 22" {
		t.Fatalf("SSHConnection() = %q", got)
	}
	for _, bad := range []string{"", "10.210.0.2 40000 10.210.0.1", "10.210.0.2 40000 10.210.0.1 0", "x 1 10.210.0.1 22", "10.210.0.2 70000 10.210.0.1 22"} {
		if s, ok := parseSSHConnection(bad); ok {
			t.Errorf("parseSSHConnection(%q) = %+v", bad, s)
		}
	}
}

// sudo (env_reset) and su - strip SSH_CONNECTION from their child; the
// user's shell above them still has it in its environ.
func TestCallerFindsAncestorsEnvironment(t *testing.T) {
	f := newFake(t)
	f.conn("10.210.0.1:22", "10.210.0.2:40000", stEstablished, 101)
	f.process(fakeProcess{pid: 500, ppid: 1, comm: "sshd", cmdline: "sshd: /usr/sbin/sshd -D [listener] 1 of 10-100 startups"})
	f.process(fakeProcess{pid: 601, ppid: 600, comm: "sshd", cmdline: "sshd: alice@pts/0", sockets: []uint64{101}})
	f.netns(601, f)
	f.process(fakeProcess{pid: 602, ppid: 601, comm: "bash", environ: []string{"HOME=/home/alice", "SSH_CONNECTION=10.210.0.2 40000 10.210.0.1 22", "TERM=xterm"}})
	f.process(fakeProcess{pid: 700, ppid: 602, comm: "sudo", environ: []string{"SSH_CONNECTION=10.210.0.9 1 10.210.0.1 22"}}) // sudo itself: first found wins
	f.process(fakeProcess{pid: 701, ppid: 700, comm: "sudo", environ: []string{"PATH=/usr/bin", "SUDO_USER=alice"}})
	f.process(fakeProcess{pid: 0, ppid: 701, comm: "moat", environ: []string{"PATH=/usr/bin"}}) // /proc/self
	s, ok := f.proc().caller("")
	if !ok || s.Client != netip.MustParseAddrPort("10.210.0.9:1") {
		t.Fatalf("caller = %+v, %v; want the nearest ancestor's SSH_CONNECTION", s, ok)
	}
	// Without it in sudo's environ, the shell's.
	f.process(fakeProcess{pid: 710, ppid: 602, comm: "sudo", environ: []string{"PATH=/usr/bin"}})
	f.must(os.RemoveAll(filepath.Join(f.root, "701")))
	f.process(fakeProcess{pid: 701, ppid: 710, comm: "sudo"})
	s, ok = f.proc().caller("")
	want := Session{Client: netip.MustParseAddrPort("10.210.0.2:40000"), Server: netip.MustParseAddrPort("10.210.0.1:22"), LoggedIn: true}
	if !ok || s != want {
		t.Fatalf("caller = %+v, %v; want %+v from the grandparent's environ", s, ok, want)
	}
}

// When no ancestor's environment has it (env -i in a ForceCommand, or an
// environ root cannot read), the sshd process above holds the socket.
func TestCallerFindsSSHDAncestorsSocket(t *testing.T) {
	f := newFake(t)
	f.conn("0.0.0.0:22", "0.0.0.0:0", stListen, 10)
	f.conn("10.210.0.1:22", "10.210.0.5:40009", stEstablished, 100) // someone else's
	f.process(fakeProcess{pid: 500, ppid: 1, comm: "sshd", cmdline: "sshd: /usr/sbin/sshd -D [listener] 1 of 10-100 startups", sockets: []uint64{10}})
	f.process(fakeProcess{pid: 600, ppid: 500, comm: "sshd", cmdline: "sshd: alice [priv]", sockets: []uint64{101}})
	f.process(fakeProcess{pid: 601, ppid: 600, comm: "sshd", cmdline: "sshd: alice@notty", sockets: []uint64{101}})
	// sshd's own netns differs from the caller's (moat was started with
	// ip netns exec, say): its tables are read through /proc/601/net.
	other := newFake(t)
	other.conn("[fd00:210::1]:2222", "[fd00:210::2]:40010", stEstablished, 101)
	f.netns(601, other)
	f.process(fakeProcess{pid: 602, ppid: 601, comm: "env"})
	f.process(fakeProcess{pid: 0, ppid: 602, comm: "moat"})
	s, ok := f.proc().caller("")
	want := Session{Client: netip.MustParseAddrPort("[fd00:210::2]:40010"), Server: netip.MustParseAddrPort("[fd00:210::1]:2222"),
		PID: 601, User: "alice", LoggedIn: true}
	if !ok || s != want {
		t.Fatalf("caller = %+v, %v; want %+v", s, ok, want)
	}
}

func TestCallerOutsideSSH(t *testing.T) {
	f := newFake(t)
	f.process(fakeProcess{pid: 1, comm: "systemd"})
	f.process(fakeProcess{pid: 300, ppid: 1, comm: "bash"})
	f.process(fakeProcess{pid: 0, ppid: 300, comm: "moat"})
	if s, ok := f.proc().caller(""); ok {
		t.Fatalf("caller = %+v outside SSH", s)
	}
	// A loop in a corrupt tree ends.
	f.process(fakeProcess{pid: 7, ppid: 8, comm: "a"})
	f.process(fakeProcess{pid: 8, ppid: 7, comm: "b"})
	f.must(os.RemoveAll(filepath.Join(f.root, "self")))
	f.process(fakeProcess{pid: 0, ppid: 7, comm: "moat"})
	if s, ok := f.proc().caller(""); ok {
		t.Fatalf("caller = %+v in a loop", s)
	}
}

func FuzzParseTCPLine(f *testing.F) {
	f.Add([]byte("   1: 01D2D20A:0016 02D2D20A:C350 01 00000000:00000000 02:00000000 00000000     0        0 4242 1 0000000000000000 20 4 30 10 -1"))
	f.Add([]byte("   1: 0000000000000000FFFF000001D2D20A:0016 0000000000000000FFFF000003D2D20A:1F90 01 0:0 0:0 0 0 0 7 1"))
	f.Add([]byte("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode"))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, ok := parseTCPLine(b)
		if !ok {
			return
		}
		l, r := e.Local.Addr(), e.Remote.Addr()
		if !l.IsValid() || !r.IsValid() || l.Is4In6() || r.Is4In6() || l.Is4() != r.Is4() {
			t.Fatalf("bad entry %+v from %q", e, b)
		}
		// What parses round-trips through the kernel's format (mapped
		// addresses come back unmapped, so compare parsed with parsed).
		again, ok := parseTCPLine([]byte(tcpLine(0, e.Local.String(), e.Remote.String(), e.State, e.Inode)))
		if !ok || again != e {
			t.Fatalf("round trip of %+v: %+v, %v", e, again, ok)
		}
	})
}

func FuzzClassifyTitle(f *testing.F) {
	for _, s := range []string{"sshd: root@pts/0", "sshd: [accepted]", "sshd: root [priv]", "sshd-session: alice", "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups"} {
		f.Add([]byte(s), "root")
	}
	f.Fuzz(func(t *testing.T, title []byte, user string) {
		kind, u := classifyTitle(title)
		if kind == titlePostAuth {
			if len(u) == 0 || strings.ContainsAny(string(u), "[] \t\n\x00") || !strings.Contains(string(title), string(u)) {
				t.Fatalf("post-auth %q with user %q", title, u)
			}
		} else if u != nil {
			t.Fatalf("%v title %q has a user %q", kind, title, u)
		}
		// Whatever name a client picks, a pre-auth title with it is never
		// taken for a login. (sshd refuses names with a NUL: sshpkt_get_cstring.)
		if strings.ContainsRune(user, 0) {
			return
		}
		for _, role := range []string{" [priv]", " [net]", " [preauth]"} {
			for _, prog := range []string{"sshd: ", "sshd-session: "} {
				if k, _ := classifyTitle([]byte(prog + user + role)); k == titlePostAuth {
					t.Fatalf("pre-auth title %q classified as post-auth", prog+user+role)
				}
			}
		}
	})
}

func BenchmarkLoggedIn(b *testing.B) {
	// A busy host: 450 processes, 8 logged-in sessions, 40 connections
	// still authenticating (a brute-force run), 400 other connections.
	f := newFake(b)
	f.conn("0.0.0.0:22", "0.0.0.0:0", stListen, 10)
	ino := uint64(1000)
	pid := 1000
	for i := range 400 {
		f.process(fakeProcess{pid: pid, ppid: 1, comm: "worker", cmdline: "/usr/bin/worker", sockets: []uint64{ino}})
		f.conn("10.210.0.1:443", netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 210, 1, byte(i)}), 40000).String(), stEstablished, ino)
		ino++
		pid++
	}
	for i := range 48 {
		title := "sshd: root [net]"
		if i < 8 {
			title = "sshd: admin@pts/" + itoa(i)
		}
		f.process(fakeProcess{pid: pid, ppid: 500, comm: "sshd", cmdline: title, sockets: []uint64{ino}})
		f.conn("10.210.0.1:22", netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 210, 2, byte(i)}), 40000).String(), stEstablished, ino)
		ino++
		pid++
	}
	p := f.proc()
	b.ReportAllocs()
	for b.Loop() {
		s, err := p.LoggedIn([]uint16{22})
		if err != nil || len(s) != 8 {
			b.Fatalf("LoggedIn = %d sessions, %v", len(s), err)
		}
	}
}

func BenchmarkLoggedInIdle(b *testing.B) {
	f := newFake(b)
	f.conn("0.0.0.0:22", "0.0.0.0:0", stListen, 10)
	for i := range 200 {
		f.conn("10.210.0.1:443", netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 210, 1, byte(i)}), 40000).String(), stEstablished, uint64(1000+i))
	}
	p := f.proc()
	b.ReportAllocs()
	for b.Loop() {
		if s, err := p.LoggedIn([]uint16{22}); err != nil || len(s) != 0 {
			b.Fatalf("LoggedIn = %v, %v", s, err)
		}
	}
}

package session

import (
	"bytes"
	"os"
	"slices"
	"strconv"
)

// maxAncestors bounds the walk up the process tree; real chains (sshd,
// shell, sudo, su, a script or two) are far shorter, and a bound keeps a
// corrupt or hostile tree from looping.
const maxAncestors = 64

// Caller returns the SSH session the calling process runs in, even when
// sudo (env_reset), su - or env -i stripped SSH_CONNECTION from its
// environment. In order:
//
//  1. SSH_CONNECTION in its own environment;
//  2. walking up the parent chain, for each ancestor: SSH_CONNECTION in its
//     initial environment (/proc/PID/environ: sudo strips the variable only
//     from its child, the user's shell above still has it), then, if the
//     ancestor is an sshd process, the established TCP connection its
//     socket belongs to, looked up in that process's own network namespace.
//
// The first found wins. ok is false when the caller is not under SSH, or
// cannot read its ancestors (reading another user's environ needs root).
func (p Proc) Caller() (Session, bool) {
	return p.caller(os.Getenv("SSH_CONNECTION"))
}

func (p Proc) caller(env string) (Session, bool) {
	if s, ok := parseSSHConnection(env); ok {
		return s, true
	}
	sc := newScanner(p)
	pid, ok := sc.ppid("self")
	for range maxAncestors {
		if !ok || pid <= 0 {
			return Session{}, false
		}
		if s, ok := sc.environSession(pid); ok {
			return s, true
		}
		if s, ok := sc.sshdSession(pid); ok {
			return s, true
		}
		pid, ok = sc.ppid(strconv.Itoa(pid))
	}
	return Session{}, false
}

// ppid reads the parent of a process ("self" or a PID) from its stat:
// "PID (comm) STATE PPID ...", where comm may hold spaces and parentheses.
func (sc *scanner) ppid(proc string) (int, bool) {
	stat, ok := sc.readFile(sc.p.root() + "/" + proc + "/stat")
	if !ok {
		return 0, false
	}
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := bytes.Fields(stat[i+1:])
	if len(f) < 2 {
		return 0, false
	}
	ppid, ok := parseDec(f[1])
	if !ok || ppid >= 1<<31 {
		return 0, false
	}
	return int(ppid), true
}

// environSession looks for SSH_CONNECTION in a process's initial
// environment.
func (sc *scanner) environSession(pid int) (Session, bool) {
	data, err := os.ReadFile(sc.pidPath(pid, "environ")) // can exceed sc.file
	if err != nil {
		return Session{}, false
	}
	for kv := range bytes.SplitSeq(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("SSH_CONNECTION=")); ok {
			return parseSSHConnection(string(v))
		}
	}
	return Session{}, false
}

// sshdSession returns the established connection held by an sshd process,
// looked up in /proc/PID/net/tcp{,6}: the tables of that process's network
// namespace, which need not be the caller's.
func (sc *scanner) sshdSession(pid int) (Session, bool) {
	// Any sshd process will do, whatever its title: an ancestor of the
	// caller is the session's, and this only ever adds protection.
	sshd, _, user := sc.title(pid)
	if !sshd {
		return Session{}, false
	}
	name := string(user)
	var inodes []uint64
	if err := sc.socketInodes(pid, func(ino uint64) { inodes = append(inodes, ino) }); err != nil || len(inodes) == 0 {
		return Session{}, false
	}
	var found Session
	for _, table := range [2]string{"net/tcp", "net/tcp6"} {
		data, err := os.ReadFile(sc.pidPath(pid, table))
		if err != nil {
			continue
		}
		ParseTCP(data, func(e TCPEntry) {
			if !found.Client.IsValid() && e.State == tcpEstablished && slices.Contains(inodes, e.Inode) {
				found = Session{Client: e.Remote, Server: e.Local, PID: pid, User: name, LoggedIn: true}
			}
		})
		if found.Client.IsValid() {
			return found, true
		}
	}
	return Session{}, false
}

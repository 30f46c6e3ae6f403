package authlog

import (
	"net/netip"
	"time"
)

// A Joiner attributes the failures sshd spreads over several lines of one
// process. Older sshd releases (and OpenSSH 8's kex_exchange_identification
// errors today) write some failures without the client's address:
//
//	sshd[8148]: Disconnecting: Too many authentication failures for root [preauth]
//	sshd[8148]: Connection closed by 61.0.0.1 [preauth]
//
//	sshd[22440]: Connection from 192.0.2.3 port 39678 on 192.168.1.9 port 22
//	sshd[22440]: fatal: Unable to negotiate a key exchange method [preauth]
//
// A Joiner takes lines in log order and returns ordinary Events: every
// event ParseSSHD finds, plus each address-less failure once its process's
// address is known, from a line before it or from the line that ends the
// connection after it. The address always comes from a line of the same
// sshd PID, in the place sshd writes it; a process's state is dropped when
// its connection ends, when a new connection starts on its PID, and TTL
// after its last line, so a reused PID does not inherit an old address.
//
// It is pure and bounded: no goroutines, no I/O, the time is the caller's,
// and at most MaxProcs processes are remembered (the least recently seen
// is forgotten first). It is not safe for concurrent use.
type Joiner struct {
	cfg   JoinerConfig
	index pidIndex // PID to slot
	slots []proc
	// LRU list through the slots: head is the most recently seen.
	head, tail int32
	free       int32 // a list of unused slots, through next
}

// JoinerConfig bounds a Joiner; zero fields take their defaults.
type JoinerConfig struct {
	// MaxProcs is how many sshd processes are remembered (default 4096;
	// each takes about half a kilobyte).
	MaxProcs int
	// TTL is how long a process's address is kept after its last line
	// (default 2 minutes, sshd's default LoginGraceTime: the whole
	// pre-authentication phase, in which every address-less failure
	// falls, lasts no longer). Set it to sshd's LoginGraceTime if that
	// is longer.
	TTL time.Duration
	// PendingTTL is how long a failure waits for its address (default one
	// minute).
	PendingTTL time.Duration
	// Names makes the Joiner return events whose client sshd wrote as a
	// host name (UseDNS yes), with Event.Host set and Event.Addr invalid,
	// for a [login] use_dns setting to decide on. Without it they are
	// dropped, as ParseSSHD drops them.
	Names bool
}

const (
	maxPending = 4
	maxUser    = 100 // sshd prints user names with %.100s
	noSlot     = -1
)

// proc is what the Joiner knows of one sshd process.
type proc struct {
	pid        uint32
	prev, next int32
	seen       time.Time
	addr       netip.Addr
	port       uint16
	npend      uint8
	pend       [maxPending]pendingFailure
}

// pendingFailure is an address-less failure waiting for its process's
// address. The user name is copied: the line's buffer is the caller's.
type pendingFailure struct {
	kind    Kind
	invalid bool
	nuser   uint8
	at      time.Time // when the Joiner saw it
	t       time.Time // the line's own time
	user    [maxUser]byte
}

// NewJoiner returns an empty Joiner.
func NewJoiner(cfg JoinerConfig) *Joiner {
	if cfg.MaxProcs <= 0 {
		cfg.MaxProcs = 4096
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 2 * time.Minute
	}
	if cfg.PendingTTL <= 0 {
		cfg.PendingTTL = time.Minute
	}
	return &Joiner{cfg: cfg, index: newPIDIndex(cfg.MaxProcs), head: noSlot, tail: noSlot, free: noSlot}
}

// Line takes one syslog line (any format ParseSSHD reads) seen at now and
// appends the events it completes to out. Their User fields alias line or
// the Joiner's own storage: valid until the next call.
func (j *Joiner) Line(line []byte, now time.Time, out []Event) []Event {
	var ev Event
	res := parseLine(line, &ev)
	return j.join(res, &ev, now, out)
}

// Message takes one bare sshd message, as the journal's MESSAGE field holds
// it, with the journal's _PID (0 if unknown: the message is then taken
// alone, as ParseSSHDMessage takes it).
func (j *Joiner) Message(msg []byte, pid uint32, now time.Time, out []Event) []Event {
	var ev Event
	res := parseMessageResult(msg, &ev)
	if res != resNone {
		ev.PID = pid
	}
	return j.join(res, &ev, now, out)
}

// LineOrMessage takes a line that is either a syslog line or, failing
// that, a bare sshd message without a PID (a journal export's MESSAGE
// column): what `moat explain` reads, which does not know which it was
// given.
func (j *Joiner) LineOrMessage(line []byte, now time.Time, out []Event) []Event {
	var ev Event
	res := parseLine(line, &ev)
	if res == resNone {
		res = parseMessageResult(line, &ev)
	}
	return j.join(res, &ev, now, out)
}

// Len is how many processes the Joiner remembers.
func (j *Joiner) Len() int { return j.index.len() }

func (j *Joiner) join(res parseResult, ev *Event, now time.Time, out []Event) []Event {
	switch res {
	case resNone:
		return out
	case resHost:
		if j.cfg.Names {
			out = append(out, *ev)
		}
		return out
	}
	if ev.PID == 0 {
		if res == resEvent {
			out = append(out, *ev)
		}
		return out
	}
	switch res {
	case resConnStart:
		// A new connection: whatever the PID held was another process's.
		p := j.get(ev.PID, now, true)
		p.addr, p.port, p.npend = ev.Addr, ev.Port, 0
	case resConnInfo:
		p := j.get(ev.PID, now, true)
		p.addr = ev.Addr
	case resConnEnd:
		if p := j.get(ev.PID, now, false); p != nil {
			out = j.flush(p, ev.Addr, ev.Port, now, out)
			j.drop(ev.PID)
		}
	case resEvent:
		p := j.get(ev.PID, now, true)
		if p.addr != ev.Addr {
			p.addr, p.port = ev.Addr, 0
		}
		if ev.Port != 0 {
			p.port = ev.Port
		}
		ends := endsPreauth(ev.Kind)
		if ends && p.npend > 0 {
			out = j.flush(p, ev.Addr, ev.Port, now, out)
			// An unnamed close right after "Too many authentication
			// failures" is that failure's epilogue, not a second one.
			if ev.Kind == PreauthClosed {
				out = append(out, *ev)
			}
		} else {
			out = append(out, *ev)
		}
		if ends {
			j.drop(ev.PID)
		}
	case resNoAddr:
		p := j.get(ev.PID, now, true)
		if p.addr.IsValid() {
			e := *ev
			e.Addr, e.Port = p.addr, p.port
			out = append(out, e)
			break
		}
		if p.npend == maxPending {
			copy(p.pend[:], p.pend[1:])
			p.npend--
		}
		f := &p.pend[p.npend]
		p.npend++
		f.kind, f.invalid, f.at, f.t = ev.Kind, ev.Invalid, now, ev.Time
		f.nuser = uint8(copy(f.user[:], ev.User))
	}
	return out
}

// endsPreauth reports whether sshd writes an event of kind k when a
// connection's pre-authentication phase ends (the client left, was cut
// off, or logged in). Every address-less failure is a pre-authentication
// one, so after such an event the process's address is forgotten: a later
// address-less failure on the same PID belongs to a new process that
// reused it, not to this client.
func endsPreauth(k Kind) bool {
	switch k {
	case FailedPassword, FailedPublickey, FailedKbdInteractive, FailedOther,
		InvalidUser, NotAllowed, RootRefused, PAMFailure:
		return false
	}
	return true
}

// flush appends p's pending failures, still fresh, as events of a.
func (j *Joiner) flush(p *proc, a netip.Addr, port uint16, now time.Time, out []Event) []Event {
	for i := range p.pend[:p.npend] {
		f := &p.pend[i]
		if now.Sub(f.at) > j.cfg.PendingTTL {
			continue
		}
		out = append(out, Event{
			Kind: f.kind, Addr: a, Port: port, Invalid: f.invalid, Count: 1,
			User: f.user[:f.nuser:f.nuser], Time: f.t, PID: p.pid,
		})
	}
	p.npend = 0
	return out
}

// get returns pid's state, seen now, creating it if create (and forgetting
// the least recently seen process when full). State older than TTL is
// reset: the PID may have been reused.
func (j *Joiner) get(pid uint32, now time.Time, create bool) *proc {
	if i, ok := j.index.get(pid); ok {
		p := &j.slots[i]
		if now.Sub(p.seen) > j.cfg.TTL {
			p.addr, p.port, p.npend = netip.Addr{}, 0, 0
		}
		p.seen = now
		j.unlink(i)
		j.pushFront(i)
		return p
	}
	if !create {
		return nil
	}
	var i int32
	switch {
	case j.free != noSlot:
		i = j.free
		j.free = j.slots[i].next
	case len(j.slots) < j.cfg.MaxProcs:
		j.slots = append(j.slots, proc{})
		i = int32(len(j.slots) - 1)
	default:
		i = j.tail
		j.unlink(i)
		j.index.delete(j.slots[i].pid)
	}
	p := &j.slots[i]
	p.pid, p.seen, p.addr, p.port, p.npend = pid, now, netip.Addr{}, 0, 0
	j.index.set(pid, i)
	j.pushFront(i)
	return &j.slots[i]
}

// drop forgets pid: its connection ended.
func (j *Joiner) drop(pid uint32) {
	i, ok := j.index.get(pid)
	if !ok {
		return
	}
	j.unlink(i)
	j.index.delete(pid)
	// The pending failures' storage is left alone: events just flushed
	// alias it until the next call.
	p := &j.slots[i]
	p.pid, p.addr, p.port, p.npend, p.next = 0, netip.Addr{}, 0, 0, j.free
	j.free = i
}

func (j *Joiner) unlink(i int32) {
	p := &j.slots[i]
	if p.prev != noSlot {
		j.slots[p.prev].next = p.next
	} else {
		j.head = p.next
	}
	if p.next != noSlot {
		j.slots[p.next].prev = p.prev
	} else {
		j.tail = p.prev
	}
	p.prev, p.next = noSlot, noSlot
}

func (j *Joiner) pushFront(i int32) {
	p := &j.slots[i]
	p.prev, p.next = noSlot, j.head
	if j.head != noSlot {
		j.slots[j.head].prev = i
	} else {
		j.tail = i
	}
	j.head = i
}

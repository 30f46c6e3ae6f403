package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// capture timestamps the arrival of one kind of packet on an interface: a
// UDP datagram from one source to one port, the last knock of the
// sequence. A classic BPF filter keeps everything else (the flood) out of
// the socket, so the capture costs the flood one filter run per packet.
type capture struct {
	fd     int
	C      chan time.Time // kernel receive time of each matching packet
	closed atomic.Bool
}

// Classic BPF opcodes (linux/filter.h).
const (
	bpfLdB    = unix.BPF_LD | unix.BPF_B | unix.BPF_ABS
	bpfLdH    = unix.BPF_LD | unix.BPF_H | unix.BPF_ABS
	bpfLdW    = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
	bpfLdHInd = unix.BPF_LD | unix.BPF_H | unix.BPF_IND
	bpfLdxMsh = unix.BPF_LDX | unix.BPF_B | unix.BPF_MSH
	bpfJeq    = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
	bpfJset   = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
	bpfRet    = unix.BPF_RET | unix.BPF_K
)

// knockFilter matches UDP from src to port. On a SOCK_DGRAM packet socket
// the filter sees the packet from its IP header on.
func knockFilter(src netip.Addr, port uint16) []unix.SockFilter {
	var f []unix.SockFilter
	ins := func(code uint16, jt, jf uint8, k uint32) {
		f = append(f, unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k})
	}
	// Each test jumps to the final "drop" on failure; its offset is filled
	// in once the program's length is known.
	var fails []int
	test := func(code uint16, k uint32) {
		fails = append(fails, len(f))
		ins(code, 0, 0, k)
	}
	if src.Is4() {
		ins(bpfLdB, 0, 0, 9) // protocol
		test(bpfJeq, unix.IPPROTO_UDP)
		ins(bpfLdW, 0, 0, 12) // source address
		a := src.As4()
		test(bpfJeq, binary.BigEndian.Uint32(a[:]))
		ins(bpfLdH, 0, 0, 6) // fragment offset: a later fragment has no UDP header
		fails = append(fails, len(f))
		ins(bpfJset, 0, 0, 0x1fff) // jt is the failure here, swapped below
		ins(bpfLdxMsh, 0, 0, 0)    // X = IP header length
		ins(bpfLdHInd, 0, 0, 2)    // destination port
		test(bpfJeq, uint32(port))
	} else {
		ins(bpfLdB, 0, 0, 6) // next header: no extension headers expected
		test(bpfJeq, unix.IPPROTO_UDP)
		a := src.As16()
		for i := 0; i < 16; i += 4 {
			ins(bpfLdW, 0, 0, uint32(8+i))
			test(bpfJeq, binary.BigEndian.Uint32(a[i:]))
		}
		ins(bpfLdH, 0, 0, 42)
		test(bpfJeq, uint32(port))
	}
	ins(bpfRet, 0, 0, 0xffff) // accept
	ins(bpfRet, 0, 0, 0)      // drop
	drop := len(f) - 1
	for _, i := range fails {
		off := uint8(drop - i - 1)
		if f[i].Code == bpfJset {
			f[i].Jt = off
		} else {
			f[i].Jf = off
		}
	}
	return f
}

func newCapture(ifname string, src netip.Addr, port uint16) (*capture, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, err
	}
	proto := uint16(unix.ETH_P_IP)
	if src.Is6() {
		proto = unix.ETH_P_IPV6
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(proto)))
	if err != nil {
		return nil, fmt.Errorf("packet socket: %w", err)
	}
	c := &capture{fd: fd, C: make(chan time.Time, 16)}
	prog := knockFilter(src, port)
	// Attach the filter before binding, so no flood packet queues first.
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER,
		&unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("attach filter: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(proto), Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind to %s: %w", ifname, err)
	}
	// A read timeout lets the reader notice Close.
	tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, err
	}
	go c.read()
	return c, nil
}

// read owns the socket: it closes it when Close asks, so the descriptor
// is never closed under a running recvmsg.
func (c *capture) read() {
	defer unix.Close(c.fd)
	defer close(c.C)
	buf := make([]byte, 2048)
	oob := make([]byte, 256)
	for !c.closed.Load() {
		_, oobn, _, _, err := unix.Recvmsg(c.fd, buf, oob, 0)
		if err == unix.EAGAIN || err == unix.EINTR {
			continue
		}
		if err != nil {
			return
		}
		t := time.Now()
		if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, m := range msgs {
				if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= int(unsafe.Sizeof(unix.Timespec{})) {
					ts := (*unix.Timespec)(unsafe.Pointer(&m.Data[0]))
					t = time.Unix(ts.Unix())
				}
			}
		}
		select {
		case c.C <- t:
		default:
		}
	}
}

// Close stops the reader within its read timeout.
func (c *capture) Close() { c.closed.Store(true) }

func htons(v uint16) uint16 { return v<<8 | v>>8 }

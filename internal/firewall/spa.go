package firewall

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/google/nftables/expr"

	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/spa"
)

// SPA: datagrams to the [spa] ports are answered as any closed UDP port is,
// so an SPA port cannot be told from one (drop: nothing; reject: port
// unreachable). The kernel hands moat (NFLOG, whole, at once) only the
// datagrams that carry moat's protocol version and a configured client's
// id in clear (docs/spa.md, "The datagram"): a flood of random datagrams,
// from any number of forged sources, never reaches moat and so cannot
// crowd out a real one. Forged datagrams with a real id (someone who saw
// the client's traffic) are held to a per-source meter and a per-client
// limit; moat refuses them in about a microsecond each.
const (
	// SPAPrefix is the NFLOG prefix of SPA datagrams.
	SPAPrefix = "moat:spa"
	// CounterSPA counts datagrams handed to moat; CounterSPALimited those
	// over a rate limit; CounterSPAUnknown those with no configured
	// client's id (random floods, scanners, fwknop clients).
	CounterSPA        = "spa"
	CounterSPALimited = "spa_limited"
	CounterSPAUnknown = "spa_unknown"
	// SetSPARate4 and SetSPARate6 are the per-source meters.
	SetSPARate4 = "spa_rate4"
	SetSPARate6 = "spa_rate6"

	// A real client sends one datagram per door opening: 4 a second per
	// source (bursts of 8) is plenty, and 10,000 a second per client id
	// bounds what a sniffed id can make moat verify (a bad MAC costs it
	// about 0.6 µs).
	spaRatePerSource = 4
	spaRatePerClient = 10000
	// spaSnaplen holds the largest datagram (1232 bytes of UDP payload,
	// see internal/spa) with its IPv6 and UDP headers.
	spaSnaplen = 1280
	// spaIDOffset is where the client id starts in the UDP payload,
	// after the version and suite bytes; +8 skips the UDP header.
	spaIDOffset = 8 + 2
)

// thPayloadEq matches bytes of the transport header and what follows it,
// at offset: `@th,BITS,BITS 0x...`.
func thPayloadEq(offset uint32, data []byte) stmt {
	return stmt{text: fmt.Sprintf("@th,%d,%d 0x%s", offset*8, len(data)*8, hex.EncodeToString(data)), exprs: []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: offset, Len: uint32(len(data))},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: append([]byte(nil), data...)},
	}}
}

func spaRules(fw config.Firewall) (sets []SetDef, rules []Rule) {
	if len(fw.SPAPorts) == 0 {
		return nil, nil
	}
	reject := fw.ClosedResponse == "reject"
	meter := func(v6 bool) string {
		if v6 {
			return SetSPARate6
		}
		return SetSPARate4
	}
	for _, v6 := range []bool{false, true} {
		sets = append(sets, SetDef{Name: meter(v6), V6: v6, Type: SetSources, Size: knockRateSetSize, Timeout: knockRateTimeout})
	}
	for _, id := range fw.SPAClientIDs {
		known := []stmt{protoPortIn(fw.SPAPorts), thPayloadEq(8, []byte{spa.Version}), thPayloadEq(spaIDOffset, id[:])}
		for _, v6 := range []bool{false, true} {
			rules = append(rules, rule(append([]stmt{metaNfproto(v6)}, append(known,
				setLimitOver(meter(v6), v6, spaRatePerSource, 2*spaRatePerSource), counterObj(CounterSPALimited), closedReply(config.UDP, reject))...)...))
		}
		rules = append(rules, rule(append(known, limitRate(spaRatePerClient, spaRatePerClient),
			nflogNow(SPAPrefix, fw.LogGroup, spaSnaplen), counterObj(CounterSPA), closedReply(config.UDP, reject))...),
			rule(append(known, counterObj(CounterSPALimited), closedReply(config.UDP, reject))...))
	}
	if fw.SPAFwknop {
		// fwknop's packets carry no clear id (base64 text, 140 bytes at
		// least): they get the per-source meter and a total limit, so a
		// flood of datagrams of their size crowds them out in proportion,
		// which moat's own format does not suffer.
		fk := []stmt{protoPortIn(fw.SPAPorts), udpLength(8+fwknopMinPacket, 8+1500)}
		for _, v6 := range []bool{false, true} {
			rules = append(rules, rule(append([]stmt{metaNfproto(v6)}, append(fk,
				setLimitOver(meter(v6), v6, spaRatePerSource, 2*spaRatePerSource), counterObj(CounterSPALimited), closedReply(config.UDP, reject))...)...))
		}
		rules = append(rules, rule(append(fk, limitRate(fwknopRate, fwknopRate),
			nflogNow(SPAPrefix, fw.LogGroup, spaSnaplen), counterObj(CounterSPA), closedReply(config.UDP, reject))...),
			rule(append(fk, counterObj(CounterSPALimited), closedReply(config.UDP, reject))...))
	}
	rules = append(rules, rule(protoPortIn(fw.SPAPorts), counterObj(CounterSPAUnknown), closedReply(config.UDP, reject)))
	return sets, rules
}

const (
	// fwknopMinPacket is fwknopd's smallest SPA packet; fwknopRate bounds
	// the fwknop packets handed to moat (each costs it at most one HMAC per
	// [[spa.fwknop]] entry that takes its source, about 0.6 µs).
	fwknopMinPacket = 140
	fwknopRate      = 20000
)

// udpLength matches the UDP header's length field in [lo, hi].
func udpLength(lo, hi uint16) stmt {
	return stmt{text: fmt.Sprintf("udp length %d-%d", lo, hi), exprs: []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 4, Len: 2},
		&expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: binary.BigEndian.AppendUint16(nil, lo), ToData: binary.BigEndian.AppendUint16(nil, hi)},
	}}
}

package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/moat-fw/moat/internal/ban"
	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/events"
	"github.com/moat-fw/moat/internal/protect"
	"github.com/moat-fw/moat/internal/store"
)

// TestReplayCost times a replay of MOAT_BENCH_REPLAY keys (a real ban
// manager and store, a fake kernel); it runs only when that is set.
func TestReplayCost(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("MOAT_BENCH_REPLAY"))
	if n == 0 {
		t.Skip("set MOAT_BENCH_REPLAY=N")
	}
	s := natsServer(t, t.TempDir(), 0)
	cfg := fleetConfig(s)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(16384))
	if _, err := OpenBucket(context.Background(), js, cfg.Bucket, 1); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := range n {
		b := [16]byte{0xfd, 0, 2, 0x10, 0xff, 9}
		b[12], b[13], b[14], b[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
		v := Value{Origin: "scan", Host: "x", Count: 1, Created: now, Until: now.Add(time.Hour)}
		if js.PublishAsyncPending() > 8000 {
			<-js.PublishAsyncComplete()
		}
		if _, err := js.PublishAsync("$KV.moat-bans."+Key(netip.PrefixFrom(netip.AddrFrom16(b), 128)), v.Encode(), jetstream.WithMsgTTL(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	<-js.PublishAsyncComplete()
	c := newMember(t, "c", cfg)
	t0 := time.Now()
	c.start(t, cfg)
	eventually(t, "replay", 600*time.Second, func() bool { return c.fleet.Status().LastReplay != nil })
	r := c.fleet.Status().LastReplay
	fmt.Printf("replay of %d: read %s, total %s (wall %s), kernel transactions %d\n", r.Keys, time.Duration(r.Read), time.Duration(r.Took), time.Since(t0), c.kernel.calls)
	eventually(t, "saved", 600*time.Second, func() bool { return c.fleet.Status().LastReplay.Saved > 0 })
	fmt.Printf("saved %s after the replay began\n", time.Duration(c.fleet.Status().LastReplay.Saved))
}

// entry is a bucket entry as the KV watcher delivers it.
type entry struct {
	key string
	val []byte
	op  jetstream.KeyValueOp
}

func (e entry) Bucket() string                  { return "moat-bans" }
func (e entry) Key() string                     { return e.key }
func (e entry) Value() []byte                   { return e.val }
func (e entry) Revision() uint64                { return 1 }
func (e entry) Created() time.Time              { return time.Time{} }
func (e entry) Delta() uint64                   { return 0 }
func (e entry) Operation() jetstream.KeyValueOp { return e.op }

// entries returns n bans of host "x" as the bucket holds them, IPv4
// and IPv6 alternating.
func entries(n int, now time.Time) []entry {
	out := make([]entry, n)
	for i := range out {
		var p netip.Prefix
		if i%2 == 0 {
			p = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
		} else {
			b := [16]byte{0xfd, 0, 2, 0x10, 0xff, 9}
			b[12], b[13], b[14], b[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
			p = netip.PrefixFrom(netip.AddrFrom16(b), 128)
		}
		v := Value{Origin: "scan", Reason: "ports 22,80,443 in 2s", Host: "x", Count: 1, Created: now, Until: now.Add(time.Hour)}
		out[i] = entry{key: Key(p), val: v.Encode(), op: jetstream.KeyValuePut}
	}
	return out
}

// benchMember is a fleet member without NATS: a real ban manager and
// store, a fake kernel.
func benchMember(tb testing.TB) (*Fleet, *publisher, *ban.Manager) {
	return natslessMember(tb, &kernel{els: map[netip.Prefix]time.Duration{}})
}

func natslessMember(tb testing.TB, enf ban.Enforcer) (*Fleet, *publisher, *ban.Manager) {
	st, err := store.Open(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	m, err := ban.New(st, enf, nil, time.Now(), func(error) {})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(m.Flush)
	m.SetProtector(setProtector{protect.New(nil)})
	cfg := config.Fleet{Bucket: "moat-bans", Accept: []string{"login", "scan", "manual"}, Publish: []string{"login", "scan"}}
	f := New(cfg, "c", m, events.New(10), slog.New(slog.NewTextHandler(io.Discard, nil)), time.Now)
	return f, &publisher{f: f}, m
}

// BenchmarkReplay100k: what a joining host does with a bucket of 100,000
// bans once the watcher delivered them: decode each entry, hand it over
// in replay chunks, apply them (kernel transactions to a fake kernel)
// and write the store (bbolt, fsync). One op is the 100,000.
func BenchmarkReplay100k(b *testing.B) {
	const n = 100_000
	es := entries(n, time.Now())
	var cpu time.Duration
	for b.Loop() {
		b.StopTimer()
		f, pub, m := benchMember(b)
		c0 := cpuTime()
		b.StartTimer()
		rp := f.startReplay(pub)
		var d decoder
		chunk := make([]update, 0, replayChunk)
		for _, e := range es {
			u, ok := f.decode(&d, e)
			if !ok {
				b.Fatal("decode")
			}
			if chunk = append(chunk, u); len(chunk) == replayChunk {
				f.replayChunk(rp, chunk)
				chunk = chunk[:0]
			}
		}
		f.replayChunk(rp, chunk)
		f.finishReplay(rp, pub, 0)
		m.Flush()
		cpu += cpuTime() - c0
		if got := f.Status().LastReplay.Applied; got != n {
			b.Fatalf("applied %d of %d", got, n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/ban")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*n), "cpu-ns/ban")
}

// cpuTime is the process's CPU time (user and system, every thread: the
// store's writer and the collector included), which a loaded machine
// changes less than the wall clock.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkLive: remote bans arriving one batch of 16 at a time (a busy
// fleet) at a host that holds 100,000: decode, apply (one kernel
// transaction a batch), announce on the bus; the store write joins the
// one waiting. One op is one ban.
func BenchmarkLive(b *testing.B) {
	const batch = 16
	f, pub, m := benchMember(b)
	now := time.Now()
	rp := f.startReplay(pub)
	var d decoder
	var us []update
	for _, e := range entries(100_000, now) {
		u, _ := f.decode(&d, e)
		us = append(us, u)
	}
	f.replayChunk(rp, us)
	es := entries(200_000, now)
	for i := range es {
		es[i].key = Key(netip.PrefixFrom(netip.AddrFrom4([4]byte{11, byte(i >> 16), byte(i >> 8), byte(i)}), 32))
	}
	us = make([]update, 0, batch)
	i := 0
	m.Flush()
	c0 := cpuTime()
	for b.Loop() {
		u, ok := f.decode(&d, es[i%len(es)])
		if !ok {
			b.Fatal("decode")
		}
		if us = append(us, u); len(us) == batch {
			f.live(us)
			us = us[:0]
		}
		i++
	}
	m.Flush()
	b.ReportMetric(float64((cpuTime()-c0).Nanoseconds())/float64(b.N), "cpu-ns/ban")
}

func BenchmarkDecodeValue(b *testing.B) {
	now := time.Now()
	v := Value{Origin: "login", Reason: "sshd: 5 failures in 10m0s", Host: "web-1", Count: 3, Created: now, Until: now.Add(time.Hour)}.Encode()
	var d decoder
	for b.Loop() {
		if _, err := d.value(v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeValueJSON(b *testing.B) {
	now := time.Now()
	v := Value{Origin: "login", Reason: "sshd: 5 failures in 10m0s", Host: "web-1", Count: 3, Created: now, Until: now.Add(time.Hour)}.Encode()
	for b.Loop() {
		var out Value
		if err := json.Unmarshal(v, &out); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseKey(b *testing.B) {
	for _, k := range []string{"4_192-0-2-7_32", "6_2001-db8--1_128"} {
		b.Run(k[:1], func(b *testing.B) {
			for b.Loop() {
				if _, err := ParseKey(k); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

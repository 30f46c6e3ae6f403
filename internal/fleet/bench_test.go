package fleet

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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
}

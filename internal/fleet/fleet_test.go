package fleet

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/moat-fw/moat/internal/ban"
	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/events"
	"github.com/moat-fw/moat/internal/firewall"
	"github.com/moat-fw/moat/internal/fleet/natsserver"
	"github.com/moat-fw/moat/internal/protect"
	"github.com/moat-fw/moat/internal/store"
)

// natsServer runs an in-process nats-server with JetStream on dir, on
// port (0: any).
func natsServer(t *testing.T, dir string, port int) *server.Server {
	t.Helper()
	if port == 0 {
		port = -1
	}
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// kernel is a fake enforcer: the ban sets' elements, and how many
// transactions changed them.
type kernel struct {
	mu    sync.Mutex
	els   map[netip.Prefix]time.Duration
	calls int
}

func (k *kernel) Update(kind firewall.SetKind, del, add []firewall.Element) error {
	if kind != firewall.Bans {
		return nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls++
	for _, e := range del {
		delete(k.els, e.Prefix)
	}
	for _, e := range add {
		k.els[e.Prefix] = e.Timeout
	}
	return nil
}

func (k *kernel) has(p netip.Prefix) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.els[p]
	return ok
}

type setProtector struct{ s *protect.Set }

func (p setProtector) Protected(q netip.Prefix) (protect.Entry, bool) { return p.s.Overlaps(q) }

// member is one host of a test fleet.
type member struct {
	name   string
	bans   *ban.Manager
	kernel *kernel
	bus    *events.Bus
	fleet  *Fleet
	stop   func()
	store  *store.Store
	// replays records what OnReplay was told, when set before start.
	replays chan int
}

func newMember(t *testing.T, name string, cfg config.Fleet, protected ...netip.Addr) *member {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	k := &kernel{els: map[netip.Prefix]time.Duration{}}
	m, err := ban.New(st, k, nil, time.Now(), func(error) {})
	if err != nil {
		t.Fatal(err)
	}
	var es []protect.Entry
	for _, a := range protected {
		es = append(es, protect.Host(a, protect.WhyRouter))
	}
	m.SetProtector(setProtector{protect.New(es)})
	return &member{name: name, bans: m, kernel: k, bus: events.New(10), store: st}
}

func (h *member) start(t *testing.T, cfg config.Fleet) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(testWriter{t}, nil)).With("host", h.name)
	}
	h.fleet = New(cfg, h.name, h.bans, h.bus, log, time.Now)
	if h.replays != nil {
		h.fleet.OnReplay(func(keys int) { h.replays <- keys })
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.fleet.Run(ctx); close(done) }()
	h.stop = func() { cancel(); <-done; h.bans.Flush() }
	t.Cleanup(func() { h.stop() })
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// ban makes a local ban at h, as a guard does: in the manager, then on the bus.
func (h *member) ban(t *testing.T, addr, origin string, d time.Duration) netip.Prefix {
	t.Helper()
	p := netip.MustParsePrefix(addr)
	e, err := h.bans.Add(ban.Request{Prefix: p, For: d, Origin: origin, Reason: "test"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	h.bus.Publish(events.Event{Time: e.Created, Kind: events.Ban, Prefix: e.Prefix, Origin: e.Origin, Reason: e.Reason, Until: e.Expires, Count: e.Count})
	return p
}

func fleetConfig(s *server.Server) config.Fleet {
	cfg, err := config.Parse([]byte(`[fleet]
servers = ["`+s.ClientURL()+`"]
`), "test")
	if err != nil {
		panic(err)
	}
	return cfg.Fleet
}

func eventually(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func connected(h *member) func() bool {
	return func() bool { return h.fleet.Status().Connected && h.fleet.Status().Replays > 0 }
}

// members starts hosts of one config and waits until each has joined.
func members(t *testing.T, cfg config.Fleet, names ...string) []*member {
	t.Helper()
	var out []*member
	for _, n := range names {
		m := newMember(t, n, cfg)
		m.start(t, cfg)
		out = append(out, m)
	}
	for _, m := range out {
		eventually(t, m.name+" joins", 10*time.Second, connected(m))
	}
	return out
}

func TestPublishWatchUnban(t *testing.T) {
	s := natsServer(t, t.TempDir(), 0)
	cfg := fleetConfig(s)
	m := members(t, cfg, "a", "b")
	a, b := m[0], m[1]

	p := a.ban(t, "192.0.2.7/32", "login", time.Hour)
	eventually(t, "b applies a's ban", 5*time.Second, func() bool { return b.kernel.has(p) })
	e := b.bans.List(time.Now())[0]
	if e.Origin != ban.OriginFleet || e.Host != "a" || !strings.Contains(e.Reason, "login at a") {
		t.Errorf("b's ban: %+v", e)
	}
	if left := time.Until(e.Expires); left < 59*time.Minute || left > time.Hour {
		t.Errorf("b's ban ends in %s, want the hour a gave it", left)
	}
	eventually(t, "b counts it", 5*time.Second, func() bool { return b.fleet.Status().Received == 1 })
	st := b.fleet.Status()
	if st.Received != 1 || len(st.Hosts) != 1 || st.Hosts[0].Name != "a" || st.Lag == nil || st.Lag.Samples != 1 {
		t.Errorf("b's status: %+v", st)
	}
	if st.ServerVersion != server.VERSION {
		t.Errorf("server version %q", st.ServerVersion)
	}
	eventually(t, "a's ban acknowledged", 5*time.Second, func() bool { return a.fleet.Status().Sent == 1 })
	if a.fleet.Status().Received != 0 {
		t.Error("a applied its own ban")
	}

	// A manual ban is shared only when asked.
	q := netip.MustParsePrefix("192.0.2.8/32")
	a.bus.Publish(events.Event{Time: time.Now(), Kind: events.Ban, Prefix: q, Origin: ban.OriginManual, Until: time.Now().Add(time.Hour)})
	r := netip.MustParsePrefix("192.0.2.9/32")
	a.bus.Publish(events.Event{Time: time.Now(), Kind: events.Ban, Prefix: r, Origin: ban.OriginManual, Until: time.Now().Add(time.Hour), Fleet: true})
	eventually(t, "b applies a's --fleet ban", 5*time.Second, func() bool { return b.kernel.has(r) })
	if b.kernel.has(q) {
		t.Error("a manual ban without --fleet was shared")
	}

	// An unban at a lifts the ban at b.
	if _, err := a.bans.Del(p, time.Now()); err != nil {
		t.Fatal(err)
	}
	a.bus.Publish(events.Event{Time: time.Now(), Kind: events.Unban, Prefix: p, Origin: ban.OriginManual})
	eventually(t, "b lifts the ban", 5*time.Second, func() bool { return !b.kernel.has(p) && b.fleet.Status().Removed == 1 })
	if !b.kernel.has(r) {
		t.Error("the other ban went too")
	}
}

func TestKeyTTLEndsTheKey(t *testing.T) {
	s := natsServer(t, t.TempDir(), 0)
	cfg := fleetConfig(s)
	m := members(t, cfg, "a", "b")
	a, b := m[0], m[1]
	p := a.ban(t, "198.51.100.1/32", "scan", 1500*time.Millisecond)
	long := a.ban(t, "198.51.100.2/32", "scan", time.Hour)
	eventually(t, "b applies", 5*time.Second, func() bool { return b.kernel.has(p) && b.kernel.has(long) })

	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(context.Background(), cfg.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	// The short ban's key goes by itself (per-key TTL); the long one stays.
	eventually(t, "the short ban's key expires in the bucket", 10*time.Second, func() bool {
		_, err := kv.Get(context.Background(), Key(p))
		return errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted)
	})
	if _, err := kv.Get(context.Background(), Key(long)); err != nil {
		t.Errorf("the long ban's key: %v", err)
	}
	// The expiry marker is not an unban: b's copy ends on its own time.
	if b.fleet.Status().Removed != 0 {
		t.Error("an expiry was taken as an unban")
	}
}

func TestReplayOnJoinInOneTransactionAndOnReconnect(t *testing.T) {
	dir := t.TempDir()
	s := natsServer(t, dir, 0)
	cfg := fleetConfig(s)
	a := newMember(t, "a", cfg)
	a.start(t, cfg)
	eventually(t, "connect", 10*time.Second, connected(a))
	var ps []netip.Prefix
	for i := range 200 {
		ps = append(ps, a.ban(t, netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}).String()+"/32", "login", time.Hour))
	}
	eventually(t, "a's bans acknowledged", 10*time.Second, func() bool { return a.fleet.Status().Sent == 200 })

	// c joins: everything in one kernel transaction, the daemon told
	// first how many keys are coming.
	c := newMember(t, "c", cfg)
	c.replays = make(chan int, 10)
	c.start(t, cfg)
	eventually(t, "c replays", 10*time.Second, connected(c))
	for _, p := range ps {
		if !c.kernel.has(p) {
			t.Fatalf("%s missing at c after the replay", p)
		}
	}
	if c.kernel.calls != 1 {
		t.Errorf("c installed 200 bans in %d kernel transactions, want 1", c.kernel.calls)
	}
	if n := <-c.replays; n != 200 {
		t.Errorf("OnReplay told of %d keys, want 200", n)
	}

	// c stops; a's administrator unbans one address; then NATS goes away.
	// A local ban at a goes on regardless.
	port := s.Addr().(*net.TCPAddr).Port
	// The replay's store writes, held until it was in the kernel, follow
	// it on their own: a restart with NATS away keeps the bans.
	eventually(t, "c saves the replayed bans", 5*time.Second, func() bool {
		saved, err := c.store.Bans()
		return err == nil && len(saved) == len(ps)
	})
	c.stop()
	if _, err := a.bans.Del(ps[0], time.Now()); err != nil {
		t.Fatal(err)
	}
	a.bus.Publish(events.Event{Time: time.Now(), Kind: events.Unban, Prefix: ps[0], Origin: ban.OriginManual})
	eventually(t, "a shares the unban", 5*time.Second, func() bool { return a.fleet.Status().Unbans == 1 })
	s.Shutdown()
	s.WaitForShutdown()
	down := a.ban(t, "203.0.114.1/32", "scan", time.Hour)
	if !a.kernel.has(down) {
		t.Fatal("a local ban did not take with NATS down")
	}
	eventually(t, "a sees the outage", 5*time.Second, func() bool { return !a.fleet.Status().Connected })

	// NATS comes back on the same storage, and c restarts: it catches up
	// with the ban a made during the outage (published on reconnect) and
	// lifts the one unbanned while it was away.
	natsServer(t, dir, port)
	c.start(t, cfg)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("a: %+v\nc: %+v %+v", a.fleet.Status(), c.fleet.Status(), c.fleet.Status().LastReplay)
		}
	})
	eventually(t, "c catches up", 15*time.Second, func() bool { return c.kernel.has(down) && !c.kernel.has(ps[0]) })
	if !c.kernel.has(ps[1]) {
		t.Error("c lost a ban over the restart")
	}
	if n := <-c.replays; n > 2 {
		t.Errorf("OnReplay told of %d keys at the restart; c had all but the new ban and the unban", n)
	}
	eventually(t, "a replays after reconnecting", 5*time.Second, func() bool { return a.fleet.Status().Replays >= 2 })
}

func TestRemoteBanOfProtectedAddressRefused(t *testing.T) {
	s := natsServer(t, t.TempDir(), 0)
	cfg := fleetConfig(s)
	router := netip.MustParseAddr("10.210.0.254")
	a, c := newMember(t, "a", cfg), newMember(t, "c", cfg, router)
	a.start(t, cfg)
	c.start(t, cfg)
	eventually(t, "connect", 10*time.Second, func() bool { return connected(a)() && connected(c)() })
	p := a.ban(t, "10.210.0.254/32", "login", time.Hour) // c's router, not a's
	wide := a.ban(t, "10.210.0.0/24", "scan", time.Hour)
	other := a.ban(t, "10.210.1.1/32", "login", time.Hour)
	eventually(t, "c applies the other ban", 5*time.Second, func() bool { return c.kernel.has(other) })
	if c.kernel.has(p) || c.kernel.has(wide) {
		t.Fatal("a remote ban covering c's protected address reached c's kernel")
	}
	eventually(t, "c counts the refusals", 5*time.Second, func() bool { return c.fleet.Status().Refused[ban.SkipProtected] == 2 })
}

func TestAcceptFilters(t *testing.T) {
	s := natsServer(t, t.TempDir(), 0)
	cfg := fleetConfig(s)
	strict := cfg
	strict.Accept = []string{"login"}
	strict.MinCount = 2
	a, c := newMember(t, "a", cfg), newMember(t, "c", strict)
	a.start(t, cfg)
	c.start(t, strict)
	eventually(t, "connect", 10*time.Second, func() bool { return connected(a)() && connected(c)() })
	a.ban(t, "192.0.2.1/32", "scan", time.Hour)
	a.ban(t, "192.0.2.2/32", "login", time.Hour) // count 1
	a.ban(t, "192.0.2.3/32", "login", time.Hour)
	p := a.ban(t, "192.0.2.3/32", "login", time.Hour) // count 2
	eventually(t, "c applies the repeat offender", 5*time.Second, func() bool { return c.kernel.has(p) })
	eventually(t, "c counts it", 5*time.Second, func() bool { return c.fleet.Status().Received == 1 })
	st := c.fleet.Status()
	// A key holds one value: a watcher that falls behind sees only the last.
	if st.Refused[RefuseOrigin] != 1 || st.Refused[RefuseMinCount] < 1 || st.Received != 1 {
		t.Errorf("c's status: %+v", st)
	}
}

// fakeOldServer speaks just enough NATS to announce version v.
func fakeOldServer(t *testing.T, v string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.WriteString(c, `INFO {"server_id":"fake","version":"`+v+`","go":"go1.19","host":"127.0.0.1","port":4222,"headers":true,"max_payload":1048576,"proto":1}`+"\r\n")
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if strings.HasPrefix(line, "PING") {
						io.WriteString(c, "PONG\r\n")
					}
				}
			}()
		}
	}()
	return "nats://" + ln.Addr().String()
}

func TestOldServerRefused(t *testing.T) {
	url := fakeOldServer(t, "2.9.10")
	cfg := config.Fleet{Servers: []string{url}, Bucket: "moat-bans", Replicas: 1}
	_, _, err := Dial(context.Background(), cfg, "a", Handlers{})
	if !errors.Is(err, ErrOldServer) || !strings.Contains(err.Error(), "runs NATS 2.9.10; moat needs 2.11 or later") {
		t.Fatalf("Dial to a 2.9.10 server: %v", err)
	}
	t.Log(err)
	for v, ok := range map[string]bool{"2.11.0": true, "2.12.1": true, "3.0.0": true, "v2.11.3": true, "2.10.24": false, "1.99.0": false, "junk": false} {
		if err := CheckVersion(v); (err == nil) != ok {
			t.Errorf("CheckVersion(%q) = %v", v, err)
		}
	}
	// The member keeps trying, says why, and never blocks local bans.
	a := newMember(t, "a", cfg)
	cfg.Queue = 4
	a.start(t, cfg)
	eventually(t, "status says why", 5*time.Second, func() bool { return strings.Contains(a.fleet.Status().Error, "2.9.10") })
	t0 := time.Now()
	for i := range 100 {
		a.bus.Publish(events.Event{Time: time.Now(), Kind: events.Ban, Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), 32), Origin: "login"})
	}
	if time.Since(t0) > time.Second {
		t.Error("publishing blocked")
	}
	if st := a.fleet.Status(); st.Dropped != 96 || st.Connected {
		t.Errorf("status: dropped %d connected %v", st.Dropped, st.Connected)
	}
}

func TestEmbeddedServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ap := netip.MustParseAddrPort(ln.Addr().String())
	ln.Close()
	dir := t.TempDir() + "/fleet-nats"
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- natsserver.Serve(ctx, natsserver.Options{Listen: ap, StoreDir: dir, Name: "t", Ready: func(u string) { ready <- u }})
	}()
	var url string
	select {
	case url = <-ready:
	case err := <-done:
		t.Fatal(err)
	case <-time.After(30 * time.Second):
		t.Fatal("embedded server not ready")
	}
	cfg := config.Fleet{Servers: []string{url}, Bucket: "moat-bans", Replicas: 1}
	nc, kv, err := Dial(context.Background(), cfg, "t", Handlers{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), Key(netip.MustParsePrefix("192.0.2.1/32")), []byte("x")); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir + "/jetstream"); err != nil {
		t.Errorf("no JetStream storage under the state dir: %v", err)
	}
}

// A jail's port-limited ban is not shared: the fleet's values carry no
// ports, and the other hosts would ban the address everywhere.
func TestPortLimitedBansStayLocal(t *testing.T) {
	p := &publisher{f: &Fleet{cfg: config.Fleet{Publish: []string{"login", "scan", "manual"}}}}
	a := netip.MustParsePrefix("192.0.2.7/32")
	whole := events.Event{Kind: events.Ban, Prefix: a, Origin: "login"}
	if !p.shared(whole) {
		t.Fatal("a whole-host login ban is not shared")
	}
	jail := whole
	jail.Ports = []string{"tcp/80", "tcp/443"}
	if p.shared(jail) {
		t.Fatal("a ban on tcp/80 and tcp/443 only would be shared as a whole-host ban")
	}
}

// A publication the bucket did not acknowledge is queued again, backing
// off, at most maxRetries times; an unban drops the retries of its key.
func TestUnacknowledgedBansAreRetriedAndUnbansWin(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	p := &publisher{f: &Fleet{now: func() time.Time { return now }}, prefix: "$KV.moat-bans.", retry: make(chan retryMsg, 16)}
	m := &nats.Msg{Subject: "$KV.moat-bans." + Key(netip.MustParsePrefix("192.0.2.7/32")), Data: []byte("v"), Header: nats.Header{"Nats-TTL": []string{"3600s"}}}
	for n := 1; n <= maxRetries; n++ {
		p.again(m)
		r := <-p.retry
		if r.attempts != n || r.msg.Header.Get("Nats-TTL") != "3600s" || !r.at.Equal(now.Add(time.Second<<(n-1))) {
			t.Fatalf("retry %d: %+v (header %v)", n, r, r.msg.Header)
		}
		m = r.msg
	}
	p.again(m)
	if len(p.retry) != 0 {
		t.Fatalf("a publication tried %d times queued again", maxRetries+1)
	}
	other := &nats.Msg{Subject: "$KV.moat-bans." + Key(netip.MustParsePrefix("192.0.2.8/32")), Header: nats.Header{}}
	p.again(other)
	p.again(&nats.Msg{Subject: m.Subject, Header: nats.Header{}})
	left := p.forget(nil, m.Subject)
	if len(left) != 1 || left[0].msg.Subject != other.Subject {
		t.Fatalf("after the unban: %+v", left)
	}
}

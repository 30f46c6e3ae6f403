package alert

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/events"
)

const (
	secretToken    = "tok-3f9a8c1e-never-print-me"
	secretPassword = "pw-77d2b4-never-print-me"
)

var t0 = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

func host(a string) netip.Prefix {
	ad := netip.MustParseAddr(a)
	return netip.PrefixFrom(ad, ad.BitLen())
}

func banEvent(a string) events.Event {
	return events.Event{Time: t0, Kind: events.Ban, Prefix: host(a), Origin: "scan", Reason: "port scan: danger level 4 (syn), 60 probes to 60 ports",
		Until: t0.Add(10 * time.Minute), Count: 1}
}

func writeSecret(t *testing.T, name, s string) string {
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(s+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// run starts d on a bus and returns the bus and a stop function that
// waits for d to end.
func run(t *testing.T, d *Dispatcher) (*events.Bus, func()) {
	bus := events.New(10)
	ctx, cancel := context.WithCancel(context.Background())
	sub := bus.Subscribe(ctx, 64)
	done := make(chan struct{})
	go func() { d.Run(ctx, sub); close(done) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return bus, stop
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// A webhook fails twice with 500, then takes the alert: it arrives once,
// as JSON, with the bearer token; the token is never in the logs or the
// stats.
func TestWebhookRetriesAfterFailures(t *testing.T) {
	var calls atomic.Int32
	got := make(chan []byte, 4)
	var auth atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "want a JSON POST", http.StatusBadRequest)
			return
		}
		if calls.Add(1) <= 2 {
			http.Error(w, "induced failure", http.StatusInternalServerError)
			return
		}
		auth.Store(r.Header.Get("Authorization"))
		b, _ := io.ReadAll(r.Body)
		got <- b
	}))
	defer srv.Close()

	var logs bytes.Buffer
	var logMu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&logs, &logMu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := config.Alert{Queue: 8, PerAddress: config.Rate{N: 10, Per: time.Hour}, Total: config.Rate{N: 10, Per: time.Hour},
		Webhooks: []config.AlertWebhook{{URL: srv.URL + "/hooks/secret-path", TokenFile: writeSecret(t, "token", secretToken),
			Timeout: 5 * time.Second, Retries: 4, Filter: config.AlertFilter{Kinds: []string{"ban"}}}}}
	d, err := New(cfg, Options{Log: log, Hostname: "web1", Backoff: 10 * time.Millisecond,
		Lookup: func(ctx context.Context, a netip.Addr) Info {
			return Info{Country: "NL", ASN: 64500, ASOrg: "Example Net"}
		}})
	if err != nil {
		t.Fatal(err)
	}
	bus, stop := run(t, d)
	bus.Publish(events.Event{Time: t0, Kind: events.Scan, Prefix: host("203.0.113.7"), Level: 4}) // filtered out: kinds = ban
	bus.Publish(banEvent("203.0.113.7"))

	var body []byte
	select {
	case body = <-got:
	case <-time.After(10 * time.Second):
		t.Fatalf("no webhook after %d calls", calls.Load())
	}
	var a map[string]any
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	if a["kind"] != "ban" || a["addr"] != "203.0.113.7" || a["origin"] != "scan" || a["moat_host"] != "web1" ||
		!strings.Contains(a["text"].(string), "banned 203.0.113.7 (NL, AS64500 Example Net)") {
		t.Errorf("body %s", body)
	}
	if auth.Load() != "Bearer "+secretToken {
		t.Errorf("Authorization %q", auth.Load())
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("%d calls, want 3 (two failures, then the alert)", n)
	}
	eventually(t, "the sent count", func() bool { return d.Stats().Destinations[0].Sent == 1 })
	st := d.Stats()
	if st.Destinations[0].Retried != 2 || st.Destinations[0].Failed != 0 || st.Received != 2 {
		t.Errorf("stats %+v", st)
	}
	stop()
	sj, _ := json.Marshal(st)
	logMu.Lock()
	defer logMu.Unlock()
	for what, s := range map[string]string{"logs": logs.String(), "stats": string(sj)} {
		if strings.Contains(s, secretToken) || strings.Contains(s, "secret-path") {
			t.Errorf("%s hold a secret: %s", what, s)
		}
	}
	if !strings.Contains(logs.String(), "retrying") {
		t.Errorf("the retries were not logged: %s", logs.String())
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// A 400 is the receiver refusing the alert: retrying will not help.
func TestWebhookDoesNotRetryARefusal(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Error(w, "no", http.StatusBadRequest)
	}))
	defer srv.Close()
	d, err := New(config.Alert{Queue: 8, PerAddress: config.Rate{N: 10, Per: time.Hour}, Total: config.Rate{N: 10, Per: time.Hour},
		Webhooks: []config.AlertWebhook{{URL: srv.URL, Timeout: time.Second, Retries: 5}}}, Options{Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	bus, _ := run(t, d)
	bus.Publish(banEvent("203.0.113.8"))
	eventually(t, "the failure", func() bool { return d.Stats().Destinations[0].Failed == 1 })
	if calls.Load() != 1 || !strings.Contains(d.Stats().Destinations[0].LastErr, "400") {
		t.Fatalf("%d calls, stats %+v", calls.Load(), d.Stats())
	}
}

func TestMissingSecretFileFailsNew(t *testing.T) {
	_, err := New(config.Alert{Webhooks: []config.AlertWebhook{{URL: "https://h/", TokenFile: "/nonexistent/token"}}}, Options{})
	if err == nil || !strings.Contains(err.Error(), "alert.webhook[0]: token_file: cannot read /nonexistent/token") {
		t.Fatalf("err %v", err)
	}
	_, err = New(config.Alert{Email: &config.AlertEmail{Host: "h", User: "u", PasswordFile: writeSecret(t, "pw", "")}}, Options{})
	if err == nil || !strings.Contains(err.Error(), "alert.email: password_file:") || !strings.Contains(err.Error(), "is empty") {
		t.Fatalf("err %v", err)
	}
}

// smtpServer is a minimal SMTP server (RFC 5321 over net/textproto)
// that takes mails and hands them over.
type smtpServer struct {
	tls   *tls.Config // offer STARTTLS with it; nil: none
	ln    net.Listener
	mails chan smtpMail
	fails atomic.Int32 // answer the next DATA with 451 this many times
}

type smtpMail struct {
	from, auth string
	to         []string
	data       string
}

func newSMTPServer(t *testing.T) *smtpServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &smtpServer{ln: ln, mails: make(chan smtpMail, 4)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return s
}

func (s *smtpServer) port() int { return s.ln.Addr().(*net.TCPAddr).Port }

func (s *smtpServer) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	tp := textproto.NewConn(c)
	_ = tp.PrintfLine("220 test ESMTP")
	var m smtpMail
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO", "HELO":
			if s.tls != nil {
				if _, isTLS := c.(*tls.Conn); !isTLS {
					_ = tp.PrintfLine("250-test\r\n250-STARTTLS\r\n250 8BITMIME")
					continue
				}
			}
			_ = tp.PrintfLine("250-test\r\n250-AUTH PLAIN\r\n250 8BITMIME")
		case "STARTTLS":
			_ = tp.PrintfLine("220 go ahead")
			tc := tls.Server(c, s.tls)
			if tc.Handshake() != nil {
				return
			}
			c, tp = tc, textproto.NewConn(tc)
		case "AUTH":
			m.auth = arg
			_ = tp.PrintfLine("235 ok")
		case "MAIL":
			m.from = arg
			_ = tp.PrintfLine("250 ok")
		case "RCPT":
			m.to = append(m.to, arg)
			_ = tp.PrintfLine("250 ok")
		case "DATA":
			_ = tp.PrintfLine("354 go on")
			b, err := tp.ReadDotBytes()
			if err != nil {
				return
			}
			if s.fails.Add(-1) >= 0 {
				_ = tp.PrintfLine("451 induced failure")
				continue
			}
			m.data = string(b)
			_ = tp.PrintfLine("250 queued")
			s.mails <- m
			m = smtpMail{}
		case "QUIT":
			_ = tp.PrintfLine("221 bye")
			return
		default:
			_ = tp.PrintfLine("502 unknown")
		}
	}
}

// An e-mail reaches a local SMTP server, after a temporary failure, with
// AUTH PLAIN, and neither the password nor the token shows anywhere.
func TestEmailReachesTheRelay(t *testing.T) {
	srv := newSMTPServer(t)
	srv.fails.Store(1)
	var logs bytes.Buffer
	var logMu sync.Mutex
	cfg := config.Alert{Queue: 8, PerAddress: config.Rate{N: 10, Per: time.Hour}, Total: config.Rate{N: 10, Per: time.Hour},
		Email: &config.AlertEmail{Host: "127.0.0.1", Port: srv.port(), User: "moat", PasswordFile: writeSecret(t, "pw", secretPassword),
			From: "Moat <moat@example.org>", To: []string{"admin@example.org", "b@example.org"},
			Filter: config.AlertFilter{Kinds: []string{"ban", "door"}, DoorActions: []string{"opened"}}}}
	d, err := New(cfg, Options{Hostname: "web1", Backoff: 10 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(lockedWriter{&logs, &logMu}, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	bus, stop := run(t, d)
	bus.Publish(events.Event{Time: t0, Kind: events.Door, Prefix: host("10.210.0.2"), Door: "ssh", Action: "closed"}) // filtered out
	ev := banEvent("203.0.113.9")
	ev.Reason = "login: 5 failures\r\nBcc: victim@example.org" // an attempt at header injection
	bus.Publish(ev)
	var m smtpMail
	select {
	case m = <-srv.mails:
	case <-time.After(10 * time.Second):
		t.Fatal("no mail")
	}
	if !strings.HasPrefix(m.from, "FROM:<moat@example.org>") || len(m.to) != 2 || m.to[0] != "TO:<admin@example.org>" {
		t.Errorf("envelope %q %q", m.from, m.to)
	}
	plain, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(m.auth, "PLAIN "))
	if string(plain) != "\x00moat\x00"+secretPassword {
		t.Errorf("AUTH %q", m.auth)
	}
	hdr, body, _ := strings.Cut(m.data, "\n\n") // ReadDotBytes turned CRLF into LF
	if !strings.Contains(hdr, "Subject: moat on web1: banned 203.0.113.9") || !strings.Contains(hdr, "To: <admin@example.org>, <b@example.org>") {
		t.Errorf("headers:\n%s", hdr)
	}
	if strings.Contains("\n"+m.data, "\nBcc") {
		t.Errorf("header injected:\n%s", m.data)
	}
	if !strings.Contains(body, "Address:     203.0.113.9") || !strings.Contains(body, "moat status 203.0.113.9") {
		t.Errorf("body:\n%s", body)
	}
	eventually(t, "the sent count", func() bool { return d.Stats().Destinations[0].Sent == 1 })
	stop()
	if st := d.Stats(); st.Destinations[0].Retried != 1 {
		t.Errorf("stats %+v", st)
	}
	sj, _ := json.Marshal(d.Stats())
	logMu.Lock()
	defer logMu.Unlock()
	if strings.Contains(logs.String()+string(sj)+m.data, secretPassword) {
		t.Error("the SMTP password leaked into logs, stats or the mail")
	}
}

// The syslog line arrives on a unixgram socket, in both formats.
func TestSyslogLine(t *testing.T) {
	for _, format := range []string{"rfc5424", "rfc3164"} {
		sock := filepath.Join(t.TempDir(), "log")
		pc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		d, err := New(config.Alert{Queue: 8, PerAddress: config.Rate{N: 10, Per: time.Hour}, Total: config.Rate{N: 10, Per: time.Hour},
			Syslog: &config.AlertSyslog{Socket: sock, Format: format, Facility: "authpriv", Tag: "moat", Filter: config.AlertFilter{MinLevel: 3}}},
			Options{Hostname: "web1"})
		if err != nil {
			t.Fatal(err)
		}
		bus, stop := run(t, d)
		bus.Publish(events.Event{Time: t0, Kind: events.Scan, Prefix: host("203.0.113.10"), Level: 2}) // below min_level
		bus.Publish(events.Event{Time: t0, Kind: events.Scan, Prefix: host("2001:db8::10"), Level: 4, Types: "syn,noopts", Probes: 40, NPorts: 40})
		_ = pc.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 4096)
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		line := string(buf[:n])
		// authpriv (10) * 8 + warning (4) = 84
		want := map[string][]string{
			"rfc5424": {"<84>1 2026-12-06T12:00:00Z web1 moat ", ` scan [moat@32473 kind="scan" addr="2001:db8::10" level="4"] moat on web1: scan from 2001:db8::10: danger level 4 (syn,noopts), 40 probes to 40 ports`},
			"rfc3164": {"<84>Dec  6 12:00:00 web1 moat[", "]: moat on web1: scan from 2001:db8::10: danger level 4"},
		}[format]
		if !strings.HasPrefix(line, want[0]) || !strings.Contains(line, want[1]) {
			t.Errorf("%s: %q", format, line)
		}
		stop()
		if st := d.Stats(); st.Destinations[0].Sent != 1 {
			t.Errorf("%s: stats %+v", format, st)
		}
	}
}

// A stream syslog socket gets newline-framed lines.
func TestSyslogStreamSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "log")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s := newSyslog(config.AlertSyslog{Socket: sock, Format: "rfc3164", Facility: "daemon", Tag: "moat"}, "web1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, who := range []string{"203.0.113.50", "203.0.113.51"} {
		if err := s.Send(ctx, &Alert{Event: banEvent(who), Addr: who, Text: "moat: banned " + who}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	for _, who := range []string{"203.0.113.50", "203.0.113.51"} {
		line, err := r.ReadString('\n')
		// daemon (3) * 8 + warning (4) = 28
		if err != nil || !strings.HasPrefix(line, "<28>") || !strings.HasSuffix(line, "moat: banned "+who+"\n") {
			t.Fatalf("line %q, %v", line, err)
		}
	}
}

// recorder is a Sender that keeps what it was sent, and can hang.
type recorder struct {
	mu   sync.Mutex
	got  []Alert
	hold chan struct{} // when set, Send waits for it
}

func (r *recorder) Send(ctx context.Context, a *Alert) error {
	if r.hold != nil {
		select {
		case <-r.hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, *a)
	return nil
}

func (r *recorder) alerts() []Alert {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Alert(nil), r.got...)
}

// Throttling: per address, then in total; what is held back is counted
// and mentioned in the next alert that goes out.
func TestThrottle(t *testing.T) {
	now := t0
	var nowMu sync.Mutex
	clock := func() time.Time { nowMu.Lock(); defer nowMu.Unlock(); return now }
	rec := &recorder{}
	d, err := New(config.Alert{Queue: 64, PerAddress: config.Rate{N: 2, Per: time.Hour}, Total: config.Rate{N: 3, Per: time.Hour}},
		Options{Now: clock, senders: []namedSender{{name: "rec", s: rec}}})
	if err != nil {
		t.Fatal(err)
	}
	bus, _ := run(t, d)
	for range 5 {
		bus.Publish(banEvent("203.0.113.20"))
	}
	bus.Publish(banEvent("203.0.113.21")) // its own bucket; the total's third token
	bus.Publish(banEvent("203.0.113.22")) // the total is spent
	eventually(t, "three alerts", func() bool { return len(rec.alerts()) == 3 })
	eventually(t, "the throttle count", func() bool { return d.Stats().Throttled == 4 })
	nowMu.Lock()
	now = now.Add(30 * time.Minute) // the total refills 1.5 tokens, .20's bucket 1
	nowMu.Unlock()
	bus.Publish(banEvent("203.0.113.20"))
	eventually(t, "the fourth alert", func() bool { return len(rec.alerts()) == 4 })
	got := rec.alerts()
	if got[0].Addr != "203.0.113.20" || got[1].Addr != "203.0.113.20" || got[2].Addr != "203.0.113.21" || got[2].Suppressed != 3 {
		t.Errorf("first alerts %+v", got[:3])
	}
	if got[3].Suppressed != 1 || !strings.Contains(got[3].Text, "[1 earlier alerts held back by the throttle]") {
		t.Errorf("fourth alert %+v", got[3])
	}
}

// A destination that hangs fills its queue; Handle never blocks, and the
// drops are counted while another destination goes on.
func TestFullQueueDropsAndCounts(t *testing.T) {
	slow := &recorder{hold: make(chan struct{})}
	fast := &recorder{}
	d, err := New(config.Alert{Queue: 2, PerAddress: config.Rate{N: 1000, Per: time.Hour}, Total: config.Rate{N: 1000, Per: time.Hour}},
		Options{senders: []namedSender{{name: "slow", s: slow}, {name: "fast", s: fast}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	sub := events.New(1).Subscribe(ctx, 1)
	go func() { d.Run(ctx, sub); close(done) }()
	start := time.Now()
	for i := range 50 {
		d.Handle(banEvent(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}).String()))
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("Handle blocked for %v", el)
	}
	eventually(t, "the fast destination", func() bool { return len(fast.alerts())+int(d.Stats().Destinations[1].Dropped) == 50 })
	st := d.Stats()
	if st.Destinations[0].Dropped < 45 || st.Destinations[0].Name != "slow" {
		t.Errorf("slow destination: %+v", st.Destinations[0])
	}
	close(slow.hold)
	cancel()
	<-done
}

// [report] min_level leaves out low scan events for every destination.
func TestMinLevelForAll(t *testing.T) {
	rec := &recorder{}
	d, _ := New(config.Alert{Queue: 8, PerAddress: config.Rate{N: 10, Per: time.Hour}, Total: config.Rate{N: 10, Per: time.Hour}},
		Options{MinLevel: 3, senders: []namedSender{{name: "rec", s: rec}}})
	bus, _ := run(t, d)
	bus.Publish(events.Event{Kind: events.Scan, Prefix: host("203.0.113.40"), Level: 2})
	bus.Publish(events.Event{Kind: events.Scan, Prefix: host("203.0.113.41"), Level: 3})
	eventually(t, "the level-3 alert", func() bool { return len(rec.alerts()) == 1 })
	if a := rec.alerts()[0]; a.Addr != "203.0.113.41" {
		t.Fatalf("%+v", a)
	}
}

func TestMatch(t *testing.T) {
	scan4 := events.Event{Kind: events.Scan, Level: 4}
	fleetBan := events.Event{Kind: events.Ban, Origin: "fleet", Host: "web2"}
	opened := events.Event{Kind: events.Door, Action: "opened"}
	for _, tt := range []struct {
		f    config.AlertFilter
		e    events.Event
		want bool
	}{
		{config.AlertFilter{}, scan4, true},
		{config.AlertFilter{MinLevel: 5}, scan4, false},
		{config.AlertFilter{MinLevel: 4}, scan4, true},
		{config.AlertFilter{Kinds: []string{"ban"}}, scan4, false},
		{config.AlertFilter{Origins: []string{"login"}}, fleetBan, false},
		{config.AlertFilter{Origins: []string{"fleet"}}, fleetBan, true},
		{config.AlertFilter{Fleet: true}, fleetBan, true},
		{config.AlertFilter{Fleet: true}, events.Event{Kind: events.Ban, Origin: "scan"}, false},
		{config.AlertFilter{Fleet: true}, events.Event{Kind: events.Ban, Origin: "manual", Fleet: true}, true},
		{config.AlertFilter{DoorActions: []string{"opened"}}, opened, true},
		{config.AlertFilter{DoorActions: []string{"opened"}}, events.Event{Kind: events.Door, Action: "expired"}, false},
		{config.AlertFilter{MinLevel: 5}, fleetBan, true}, // min_level is for scan events
	} {
		if got := Match(tt.f, &tt.e); got != tt.want {
			t.Errorf("%+v on %+v: %v", tt.f, tt.e, got)
		}
	}
}

// The per-address buckets stay bounded under a flood of forged sources.
func TestPerAddressBucketsBounded(t *testing.T) {
	d, _ := New(config.Alert{Queue: 1, PerAddress: config.Rate{N: 1, Per: time.Hour}, Total: config.Rate{N: 1_000_000, Per: time.Hour}},
		Options{Now: func() time.Time { return t0 }, senders: []namedSender{{name: "x", s: &recorder{}}}})
	for i := range 3 * maxTracked {
		d.Handle(banEvent(netip.AddrFrom4([4]byte{10, 210, byte(i >> 8), byte(i)}).String()))
	}
	if n := len(d.perAddr); n > maxTracked {
		t.Fatalf("%d buckets", n)
	}
}

// selfSigned is a certificate for 127.0.0.1 and a pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "relay"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

// With starttls (the default) the mail and the password go only over
// TLS; a relay that offers no STARTTLS gets neither.
func TestEmailSTARTTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	srv := newSMTPServer(t)
	srv.tls = &tls.Config{Certificates: []tls.Certificate{cert}}
	cfg := config.AlertEmail{Host: "127.0.0.1", Port: srv.port(), StartTLS: true, User: "moat", PasswordFile: writeSecret(t, "pw", secretPassword),
		From: "moat@example.org", To: []string{"admin@example.org"}}
	e, err := newEmail(cfg, "web1")
	if err != nil {
		t.Fatal(err)
	}
	e.tls.RootCAs = pool
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a := &Alert{Event: banEvent("203.0.113.30"), Addr: "203.0.113.30", Text: "moat: banned 203.0.113.30"}
	if err := e.Send(ctx, a); err != nil {
		t.Fatal(err)
	}
	m := <-srv.mails
	if plain, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(m.auth, "PLAIN ")); string(plain) != "\x00moat\x00"+secretPassword {
		t.Errorf("AUTH over TLS: %q", m.auth)
	}

	plainSrv := newSMTPServer(t) // no STARTTLS offered
	cfg.Port = plainSrv.port()
	e, _ = newEmail(cfg, "web1")
	err = e.Send(ctx, a)
	var perm *Permanent
	if !errors.As(err, &perm) || !strings.Contains(err.Error(), "offers no STARTTLS") {
		t.Fatalf("relay without STARTTLS: %v", err)
	}
	select {
	case m := <-plainSrv.mails:
		t.Fatalf("mail sent in clear: %+v", m)
	default:
	}
}

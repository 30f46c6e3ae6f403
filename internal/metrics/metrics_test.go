package metrics

import (
	"context"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

func snapshot() Snapshot {
	return Snapshot{Enforcing: true, TablePresent: true,
		Kernel:       map[string]Counter{"ban": {Packets: 7, Bytes: 420}, "closed": {Packets: 3, Bytes: 180}},
		BansByOrigin: map[string]int{"login": 2, "scan": 1}, Allows: 1, Protected: 4,
		Login:  &Login{Failures: 9, Bans: 2, Counting: 1},
		Scan:   &Scan{Probes: 40, SourcesByLevel: [6]int{0, 1, 0, 1}, Bans: 1},
		SPA:    &SPA{Accepted: 2, Refused: map[string]uint64{"replay": 3}},
		NFLOG:  &NFLOG{Bound: true, Received: 50, Datagrams: 5},
		Alerts: &Alerts{Events: 6, Sent: 4, Throttled: 2},
		SPAGrant: &Latency{Count: 3, Sum: 1500 * time.Microsecond, Bounds: []time.Duration{100 * time.Microsecond, time.Millisecond},
			Buckets: []uint64{1, 1, 1}},
		KnockGrant: &Latency{Count: 1, Sum: 700 * time.Microsecond, Bounds: []time.Duration{time.Millisecond}, Buckets: []uint64{1, 0}}}
}

// serve runs the endpoint on a free loopback port and returns its URL.
func serve(t *testing.T, snap func(context.Context) Snapshot) string {
	t.Helper()
	h, err := Handler(NewCollector(snap))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := Serve(ctx, ln, "/metrics", h, func(err error) { t.Error(err) })
	t.Cleanup(func() { cancel(); <-done })
	return "http://" + ln.Addr().String() + "/metrics"
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestMetricsFromSnapshot(t *testing.T) {
	scrapes := 0
	url := serve(t, func(context.Context) Snapshot { scrapes++; return snapshot() })
	code, body := get(t, url)
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d\n%s", code, body)
	}
	for _, want := range []string{
		`moat_kernel_packets_total{counter="ban"} 7`,
		`moat_kernel_bytes_total{counter="closed"} 180`,
		`moat_bans{origin="login"} 2`,
		`moat_bans{origin="scan"} 1`,
		`moat_login_failures_total 9`,
		`moat_scan_sources{level="3"} 1`,
		`moat_scan_packets_total{kind="probe"} 40`,
		`moat_nflog_datagrams_total 5`,
		`moat_spa_datagrams_total{reason="replay",result="refused"} 3`,
		`moat_spa_datagrams_total{reason="",result="accepted"} 2`,
		`moat_enforcing 1`,
		`moat_alerts_total{result="sent"} 4`,
		`moat_alert_events_total{result="read"} 6`,
		`moat_spa_grant_seconds_bucket{le="0.0001"} 1`,
		`moat_spa_grant_seconds_bucket{le="0.001"} 2`,
		`moat_spa_grant_seconds_bucket{le="+Inf"} 3`,
		`moat_spa_grant_seconds_sum 0.0015`,
		`moat_spa_grant_seconds_count 3`,
		"process_resident_memory_bytes",
		"go_goroutines",
	} {
		if !strings.Contains(body, want+"\n") && !strings.Contains(body, want+" ") {
			t.Errorf("no %q in\n%s", want, body)
		}
	}
	if scrapes != 1 {
		t.Errorf("one scrape took %d snapshots", scrapes)
	}
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	if code, _ := get(t, strings.TrimSuffix(url, "/metrics")+"/"); code != http.StatusNotFound {
		t.Errorf("GET /: %d, want 404: only the metrics path is served", code)
	}
}

// A guard that is off has no metrics, rather than zeros that say it
// looked and found nothing.
func TestMetricsLeaveOutGuardsThatAreOff(t *testing.T) {
	_, body := get(t, serve(t, func(context.Context) Snapshot { return Snapshot{} }))
	for _, absent := range []string{"moat_login_", "moat_scan_", "moat_nflog_", "moat_spa_", "moat_alert"} {
		if strings.Contains(body, absent) {
			t.Errorf("%s* present with the guard off:\n%s", absent, body)
		}
	}
}

// promtool, Prometheus's own checker, accepts what moat serves.
func TestPromtoolChecksMetrics(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus; scripts/setup.sh installs it)")
	}
	_, body := get(t, serve(t, func(context.Context) Snapshot { return snapshot() }))
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

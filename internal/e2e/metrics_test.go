package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/netnstest"
)

// A real Prometheus server scrapes moat's endpoint inside the server's
// namespace, and promtool asks it what it stored: moat's own metrics, a
// ban made after the start, and the scrape's health. A reload moves the
// endpoint, and the old address stops answering.
func TestPrometheusScrapesMetrics(t *testing.T) {
	netnstest.RequireCommands(t, "prometheus", "promtool")
	h := newHost(t, "")
	h.writeConfig(fmt.Sprintf("open = [\"tcp/%d\"]\n\n[login]\nenabled = false\n\n[metrics]\nlisten = \"127.0.0.1:9733\"\n", openPort))
	h.start()

	dir := filepath.Join(h.dir, "prometheus")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(conf, []byte(`global:
  scrape_interval: 1s
scrape_configs:
  - job_name: moat
    static_configs:
      - targets: ["127.0.0.1:9733"]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	h.server.Start(t, "prometheus", "--config.file="+conf, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address=127.0.0.1:9090", "--log.level=warn")
	query := func(q string) string {
		out, _ := h.server.RunErr("promtool", "query", "instant", "http://127.0.0.1:9090", q)
		return out
	}
	eventually := func(what, q, want string) {
		t.Helper()
		var out string
		netnstest.Eventually(t, 20*time.Second, what, func() bool {
			out = query(q)
			return strings.Contains(out, want)
		})
	}
	eventually("Prometheus to scrape moat", `up{job="moat"}`, "=> 1 @")
	eventually("moat's metrics in Prometheus", `moat_enforcing`, "=> 1 @")
	eventually("the process metrics", `process_resident_memory_bytes{job="moat"} > 0`, "=> ")

	victim := h.link.Host4(77)
	h.moat("ban", "add", victim.String(), "--for", "1h")
	eventually("the manual ban in Prometheus", `moat_bans{origin="manual"}`, "=> 1 @")

	// A reload moves the endpoint; the old port stops answering.
	h.writeConfig(fmt.Sprintf("open = [\"tcp/%d\"]\n\n[login]\nenabled = false\n\n[metrics]\nlisten = \"127.0.0.1:9734\"\n", openPort))
	h.moat("firewall", "apply")
	eventually("Prometheus to lose the old endpoint", `up{job="moat"}`, "=> 0 @")
	if _, err := h.server.RunErr("bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9733"); err == nil {
		t.Fatal("the old metrics address still answers after the reload moved it")
	}
	out, err := h.server.RunErr("bash", "-c", `exec 3<>/dev/tcp/127.0.0.1/9734 && printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3 && cat <&3`)
	if err != nil || !strings.Contains(out, "moat_enforcing 1") {
		t.Fatalf("the moved endpoint: %v\n%s", err, out)
	}
}

package cli

import (
	"bytes"
	"io"
	"os"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/config"
)

// BenchmarkExplainJSON is `moat explain --json` in process on an auth.log
// (MOAT_AUTHLOG, e.g. bench/authlog's generated one), without the
// process start and the file read: where explain's time per line goes.
func BenchmarkExplainJSON(b *testing.B) {
	path := os.Getenv("MOAT_AUTHLOG")
	if path == "" {
		b.Skip("MOAT_AUTHLOG not set: point it at an auth.log (python3 ../shared/bench/gen_authlog.py 100000 1)")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := config.Parse(config.Default(), "embedded default")
	if err != nil {
		b.Fatal(err)
	}
	lines := bytes.Count(data, []byte("\n"))
	now := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	for b.Loop() {
		o := explainOptions{login: cfg.Login, allow: cfg.Firewall.Allow, json: true}
		if err := explain(bytes.NewReader(data), io.Discard, o, now); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*lines), "ns/line")
}

package authlog

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// genAuthlog runs the shared generator (seed 1) for n lines. The script is
// ../shared/bench/gen_authlog.py beside the repository, or $MOAT_GEN_AUTHLOG.
func genAuthlog(b *testing.B, n string) [][]byte {
	b.Helper()
	script := os.Getenv("MOAT_GEN_AUTHLOG")
	if script == "" {
		script = filepath.Join("..", "..", "..", "shared", "bench", "gen_authlog.py")
	}
	if _, err := os.Stat(script); err != nil {
		b.Skipf("generator not found (set MOAT_GEN_AUTHLOG): %v", err)
	}
	out, err := exec.Command("python3", script, n, "1").Output()
	if err != nil {
		b.Skipf("generator: %v", err)
	}
	return bytes.Split(bytes.TrimSuffix(out, []byte("\n")), []byte("\n"))
}

// BenchmarkParseSSHD parses the shared generated auth.log (200,000 lines,
// seed 1); one op is one line.
func BenchmarkParseSSHD(b *testing.B) {
	lines := genAuthlog(b, "200000")
	var ev Event
	events := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if ParseSSHD(lines[i%len(lines)], &ev) {
			events++
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
	if events == 0 {
		b.Fatal("no events")
	}
}

// BenchmarkParseSSHDHostile parses lines whose user names carry forged
// endings, the slow path of the auth_log parser.
func BenchmarkParseSSHDHostile(b *testing.B) {
	var lines [][]byte
	for _, u := range hostileUsers {
		for _, tm := range templates {
			lines = append(lines, syslogLine(tm.make(u, u, "198.51.100.7")))
		}
	}
	var ev Event
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ParseSSHD(lines[i%len(lines)], &ev)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}

// BenchmarkJoiner runs the shared generated auth.log through a Joiner, as
// the login guard would with the joiner in front; one op is one line.
func BenchmarkJoiner(b *testing.B) {
	lines := genAuthlog(b, "200000")
	j := NewJoiner(JoinerConfig{})
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var out []Event
	events := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out = j.Line(lines[i%len(lines)], now, out[:0])
		events += len(out)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
	if events == 0 {
		b.Fatal("no events")
	}
}

package authlog

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the CPU time (user and system) the process has used so far.
// Benchmarks report it per op beside ns/op: on a machine shared with other
// work a core is not always the benchmark's, and the wall time per op
// then counts the time others ran; the CPU time does not.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the CPU time since start per op ("cpu-ns/op") and the
// lines per second of CPU time it makes ("cpu-lines/s"): run with
// -test.cpu 1 (GOMAXPROCS=1) so that the process's time is the loop's.
func reportCPU(b *testing.B, start time.Duration) {
	d := cpuTime() - start
	if d <= 0 || b.N == 0 {
		return
	}
	b.ReportMetric(float64(d.Nanoseconds())/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(b.N)/d.Seconds(), "cpu-lines/s")
}

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
	cpu := cpuTime()
	for i := 0; i < b.N; i++ {
		if ParseSSHD(lines[i%len(lines)], &ev) {
			events++
		}
	}
	b.StopTimer()
	reportCPU(b, cpu)
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
	cpu := cpuTime()
	for i := 0; i < b.N; i++ {
		out = j.Line(lines[i%len(lines)], now, out[:0])
		events += len(out)
	}
	b.StopTimer()
	reportCPU(b, cpu)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
	if events == 0 {
		b.Fatal("no events")
	}
}

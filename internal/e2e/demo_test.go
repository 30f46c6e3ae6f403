package e2e

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/netnstest"
)

// demoRun is one `moat demo` under test, its output read as it comes.
type demoRun struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	out   strings.Builder
	lines chan string
	done  chan struct{}
	err   error
	took  time.Duration
}

func startDemo(t *testing.T, args ...string) *demoRun {
	t.Helper()
	netnstest.RequireRoot(t)
	netnstest.RequireCommands(t, "nmap", "hping3", "sshd", "ssh", "ssh-keygen")
	d := &demoRun{cmd: exec.Command(moatBin, append([]string{"demo"}, args...)...), lines: make(chan string, 1000), done: make(chan struct{})}
	pr, pw := io.Pipe()
	d.cmd.Stdout, d.cmd.Stderr = pw, pw
	start := time.Now()
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			d.mu.Lock()
			d.out.WriteString(sc.Text() + "\n")
			d.mu.Unlock()
			select {
			case d.lines <- sc.Text():
			default:
			}
		}
	}()
	go func() {
		d.err = d.cmd.Wait()
		d.took = time.Since(start)
		pw.Close()
		close(d.done)
	}()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			_ = d.cmd.Process.Kill()
			<-d.done
		}
	})
	return d
}

func (d *demoRun) output() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.out.String()
}

// waitLine returns the first line (from now on) matching re.
func (d *demoRun) waitLine(t *testing.T, re *regexp.Regexp, limit time.Duration) []string {
	t.Helper()
	deadline := time.After(limit)
	for {
		select {
		case l := <-d.lines:
			if m := re.FindStringSubmatch(l); m != nil {
				return m
			}
		case <-deadline:
			t.Fatalf("no line matching %s within %s:\n%s", re, limit, d.output())
		}
	}
}

func (d *demoRun) wait(t *testing.T, limit time.Duration) {
	t.Helper()
	select {
	case <-d.done:
	case <-time.After(limit):
		t.Fatalf("moat demo still runs after %s:\n%s", limit, d.output())
	}
}

// checkCleanedUp reads the demo's last line and checks that what it made
// is gone: its namespaces, its processes, its files; and that the host's
// own firewall is as it was.
func checkCleanedUp(t *testing.T, out, tablesBefore string) {
	t.Helper()
	m := regexp.MustCompile(`(?m)^cleaned up: namespaces ([^;]*); processes ([^;]*); (\S+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no cleanup line:\n%s", out)
	}
	nss := strings.Fields(m[1])
	if len(nss) != 4 {
		t.Fatalf("cleaned up namespaces %q, want the lab's four", m[1])
	}
	for _, ns := range nss {
		if !strings.HasPrefix(ns, "moat-demo-") {
			t.Fatalf("the demo removed a namespace not its own: %s", ns)
		}
		if _, err := os.Stat(filepath.Join("/run/netns", ns)); err == nil {
			t.Errorf("namespace %s is left behind", ns)
		}
	}
	for _, f := range strings.Fields(m[2]) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		// Gone, or a zombie, or the PID reused by something else.
		if b, err := os.ReadFile("/proc/" + f + "/cmdline"); err == nil && (strings.Contains(string(b), "moat-demo") || strings.Contains(string(b), "sshd")) {
			st, _ := os.ReadFile("/proc/" + f + "/stat")
			if !strings.Contains(string(st), ") Z ") {
				t.Errorf("process %d is left behind: %q", pid, b)
			}
		}
	}
	if _, err := os.Stat(m[3]); err == nil {
		t.Errorf("temp directory %s is left behind", m[3])
	}
	if after := hostTables(t); after != tablesBefore {
		t.Errorf("the host's nftables tables changed:\nbefore:\n%s\nafter:\n%s", tablesBefore, after)
	}
}

func hostTables(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("nft", "list", "tables").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list tables: %v\n%s", err, out)
	}
	return string(out)
}

// `moat demo` plays its five scenarios with every check passing, offers
// the lab's live page, and leaves no namespace, process, file or table
// behind.
func TestDemo(t *testing.T) {
	t.Parallel()
	before := hostTables(t)
	d := startDemo(t, "--page-port", "19735")
	// The page is offered on this machine's loopback while the demo runs.
	m := d.waitLine(t, regexp.MustCompile(`the lab's live page: (http://127\.0\.0\.1:19735/\?token=(\S+))$`), 30*time.Second)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(m[1])
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 {
		t.Fatalf("the offered page: %s, cookies %v", resp.Status, resp.Cookies())
	}
	req, _ := http.NewRequest("GET", "http://127.0.0.1:19735/api/state", nil)
	req.Header.Set("Authorization", "Bearer "+m[2])
	if resp, err = client.Do(req); err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"table_present":true`) {
		t.Fatalf("the lab's page state: %s %s", resp.Status, body)
	}

	d.wait(t, 3*time.Minute)
	out := d.output()
	t.Logf("moat demo took %s:\n%s", d.took.Round(100*time.Millisecond), out)
	if d.err != nil {
		t.Fatalf("moat demo: %v", d.err)
	}
	for i := 1; i <= 5; i++ {
		if !strings.Contains(out, "["+strconv.Itoa(i)+"/5] ") {
			t.Errorf("scenario %d/5 not played", i)
		}
	}
	if strings.Contains(out, "✗") || !strings.Contains(out, "every check passed") || strings.Count(out, "✓") < 14 {
		t.Errorf("not every check passed")
	}
	for _, want := range []string{"moat ▸ banned 10.210.99.4", "moat ▸ banned 10.210.99.5", "moat ▸ door ssh opened for 10.210.99.3", "logged in as root"} {
		if !strings.Contains(out, want) {
			t.Errorf("the narration lacks %q", want)
		}
	}
	checkCleanedUp(t, out, before)
	// The page's port on this machine is closed again.
	if _, err := http.Get("http://127.0.0.1:19735/"); err == nil {
		t.Error("the page is still offered after the demo")
	}
}

// Ctrl-C in the middle of a scenario still removes the whole lab.
func TestDemoInterrupted(t *testing.T) {
	t.Parallel()
	before := hostTables(t)
	d := startDemo(t, "--page-port", "0")
	d.waitLine(t, regexp.MustCompile(`^\[1/5\] `), 30*time.Second)
	time.Sleep(300 * time.Millisecond) // into the scan
	if err := d.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	d.wait(t, 30*time.Second)
	out := d.output()
	if d.err == nil {
		t.Fatalf("an interrupted demo exited 0:\n%s", out)
	}
	checkCleanedUp(t, out, before)
}

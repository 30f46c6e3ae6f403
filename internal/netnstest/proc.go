package netnstest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// termGrace is how long cleanup waits after SIGTERM before SIGKILL.
const termGrace = 5 * time.Second

// ErrStillRunning is returned (wrapped) by Proc.Wait when the process has
// not exited in time.
var ErrStillRunning = errors.New("process still running")

// Proc is a process started inside a namespace. Its stdout and stderr are
// captured together; cleanup stops it by PID.
type Proc struct {
	Cmd *exec.Cmd

	out  lockedBuffer
	done chan struct{}
	err  error // from Cmd.Wait; read only after done is closed
}

// Start starts a long-running program inside the namespace. When the test
// ends it gets SIGTERM, then SIGKILL (with its whole process group) after
// 5s. Its output is logged if the test failed.
func (n *NS) Start(t testing.TB, name string, args ...string) *Proc {
	t.Helper()
	return n.StartCmd(t, exec.Command(name, args...))
}

// StartCmd is Start for a prepared command, to set Env, Dir or Stdin. Its
// Path and Args are rewritten to run through `ip netns exec`, which execs
// the program in place, so the PID is the program's own. Stdout and
// Stderr, if set, still receive the output.
func (n *NS) StartCmd(t testing.TB, cmd *exec.Cmd) *Proc {
	t.Helper()
	if cmd.Process != nil {
		t.Fatal("netnstest: StartCmd: command already started")
	}
	prog := cmd.Path
	if cmd.Err != nil || !isAbs(prog) {
		p, err := lookTool(cmd.Args[0])
		if err != nil {
			t.Fatal(err)
		}
		prog, cmd.Err = p, nil
	}
	label := cmd.Args[0]
	cmd.Path = n.ip
	cmd.Args = append([]string{n.ip, "netns", "exec", n.Name, prog}, cmd.Args[1:]...)

	p := &Proc{Cmd: cmd, done: make(chan struct{})}
	cmd.Stdout = teeTo(cmd.Stdout, &p.out)
	cmd.Stderr = teeTo(cmd.Stderr, &p.out)
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	// Its own process group, so cleanup can also reach children a daemon
	// forked; parent-death signal, so it dies with a test binary that
	// panics or times out before cleanup runs.
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	// A forked child that inherited the output pipe must not block Wait.
	cmd.WaitDelay = 2 * time.Second

	if err := spawn(cmd); err != nil {
		t.Fatalf("netnstest: start %s in %s: %v", label, n.Name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()

	pid := cmd.Process.Pid
	t.Cleanup(func() {
		if !p.Exited() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(termGrace):
				t.Logf("netnstest: %s (pid %d) ignored SIGTERM for %v: SIGKILL", label, pid, termGrace)
				_ = syscall.Kill(-pid, syscall.SIGKILL)
				<-p.done
			}
		}
		// Children of a daemon outlive its main process; the group id is
		// the one we created, and the kernel keeps it reserved while any
		// member lives.
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		if t.Failed() {
			t.Logf("netnstest: output of %s (pid %d) in %s:\n%s", label, pid, n.Name, p.Output())
		}
	})
	return p
}

// spawner is one OS thread that lives as long as the test binary and
// forks every process. Pdeathsig fires when the forking thread exits, not
// the process: forking from an ordinary goroutine's thread could kill the
// child whenever the runtime retires that thread (NS.Do retires threads).
var spawner struct {
	once sync.Once
	reqs chan spawnReq
}

type spawnReq struct {
	cmd *exec.Cmd
	err chan error
}

func spawn(cmd *exec.Cmd) error {
	spawner.once.Do(func() {
		spawner.reqs = make(chan spawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked: this thread must not exit
			for r := range spawner.reqs {
				r.err <- r.cmd.Start()
			}
		}()
	})
	errc := make(chan error, 1)
	spawner.reqs <- spawnReq{cmd, errc}
	return <-errc
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

// Output returns everything the process wrote to stdout and stderr so far.
func (p *Proc) Output() string { return p.out.String() }

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) error { return p.Cmd.Process.Signal(sig) }

// Kill9 sends SIGKILL to the process alone (not its children), as a crash
// would end it.
func (p *Proc) Kill9() { _ = p.Cmd.Process.Kill() }

// Exited reports whether the process has exited and been reaped.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Wait waits up to timeout for the process to exit and returns its exit
// error (nil for status 0), or an error wrapping ErrStillRunning.
func (p *Proc) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("netnstest: pid %d after %v: %w", p.Pid(), timeout, ErrStillRunning)
	}
}

func isAbs(path string) bool { return len(path) > 0 && path[0] == '/' }

func teeTo(user io.Writer, buf *lockedBuffer) io.Writer {
	if user == nil {
		return buf
	}
	return io.MultiWriter(user, buf)
}

// lockedBuffer is written by exec's copying goroutines and read by tests.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

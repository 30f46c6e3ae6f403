package authlog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// collector records what a follower emits.
type collector struct {
	mu    sync.Mutex
	lines []string
	pos   []Position
}

func (c *collector) emit(line []byte, pos Position) error {
	c.mu.Lock()
	c.lines = append(c.lines, string(line))
	c.pos = append(c.pos, pos)
	c.mu.Unlock()
	return nil
}

func (c *collector) snapshot() ([]string, []Position) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.lines...), append([]Position(nil), c.pos...)
}

func (c *collector) waitFor(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if l, _ := c.snapshot(); len(l) >= n {
			return l
		}
		time.Sleep(5 * time.Millisecond)
	}
	l, _ := c.snapshot()
	t.Fatalf("got %d lines, want %d; last: %q", len(l), n, tail(l))
	return nil
}

func tail(l []string) []string {
	if len(l) > 5 {
		return l[len(l)-5:]
	}
	return l
}

// follow runs a fast-polling follower in the background; stop cancels it
// and returns Run's error.
func follow(t *testing.T, path string, start Position, c *collector) (f *FileFollower, stop func() error) {
	t.Helper()
	f = NewFileFollower(path, start)
	f.poll = 20 * time.Millisecond
	f.rotateWait = 300 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx, c.emit) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-done
			if errors.Is(err, context.Canceled) {
				err = nil
			}
		})
		return err
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	})
	return f, stop
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	fd, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fd.WriteString(s); err != nil {
		t.Fatal(err)
	}
	if err := fd.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestFollowPartialLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.log")
	appendFile(t, path, "old line\nold partial")
	var c collector
	f, _ := follow(t, path, Position{}, &c)
	time.Sleep(50 * time.Millisecond)
	appendFile(t, path, " rest\nfirst\nsec")
	c.waitFor(t, 1)
	time.Sleep(100 * time.Millisecond)
	if l, _ := c.snapshot(); len(l) != 1 || l[0] != "first" {
		t.Fatalf("got %q, want only [first]: the old partial line's rest and the new partial line must not come", l)
	}
	appendFile(t, path, "ond\n")
	l := c.waitFor(t, 2)
	if l[1] != "second" {
		t.Fatalf("got %q", l)
	}
	_, pos := c.snapshot()
	fi, _ := os.Stat(path)
	if pos[1].Offset != fi.Size() {
		t.Errorf("position %d, file size %d", pos[1].Offset, fi.Size())
	}
	if s := f.Stats(); s.Lines != 2 {
		t.Errorf("stats %+v", s)
	}
}

func TestFollowNotYetThere(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "later.log")
	var c collector
	follow(t, path, Position{}, &c)
	time.Sleep(50 * time.Millisecond)
	appendFile(t, path, "a\nb\n")
	if l := c.waitFor(t, 2); l[0] != "a" || l[1] != "b" {
		t.Fatalf("got %q", l)
	}
}

func TestFollowMissingDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "not", "yet")
	path := filepath.Join(dir, "x.log")
	var c collector
	follow(t, path, Position{}, &c)
	time.Sleep(50 * time.Millisecond)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, "a\n")
	c.waitFor(t, 1)
}

func TestFollowLongLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.log")
	appendFile(t, path, "")
	var c collector
	f, _ := follow(t, path, Position{}, &c)
	time.Sleep(50 * time.Millisecond)
	appendFile(t, path, "before\n"+strings.Repeat("x", 3*MaxLine)+"\n"+strings.Repeat("y", MaxLine)+"\nafter\n")
	l := c.waitFor(t, 3)
	if len(l) != 3 || l[0] != "before" || len(l[1]) != MaxLine || l[2] != "after" {
		t.Fatalf("got %d lines: %.20q", len(l), l)
	}
	if s := f.Stats(); s.Dropped != 1 {
		t.Errorf("stats %+v", s)
	}
}

// writer writes numbered lines the way a syslog daemon does.
type writer struct {
	t    *testing.T
	path string
	fd   *os.File
	next int
}

func newWriter(t *testing.T, path string) *writer {
	w := &writer{t: t, path: path}
	w.reopen()
	return w
}

func (w *writer) reopen() {
	if w.fd != nil {
		w.fd.Close()
	}
	fd, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		w.t.Error(err)
		return
	}
	w.fd = fd
}

func (w *writer) write(n int) {
	var b strings.Builder
	for range n {
		fmt.Fprintf(&b, "line %08d\n", w.next)
		w.next++
	}
	if _, err := w.fd.WriteString(b.String()); err != nil {
		w.t.Error(err)
	}
}

// checkSeq checks that lines are "line 00000000" to n-1, each once. With
// ordered, also in order.
func checkSeq(t *testing.T, lines []string, n int, ordered bool) {
	t.Helper()
	checkRange(t, lines, 0, n, ordered)
}

// checkRange checks that lines are from to n-1, each once.
func checkRange(t *testing.T, lines []string, from, n int, ordered bool) {
	t.Helper()
	seen := make([]int, n)
	for i := range from {
		seen[i] = 1
	}
	prev := from - 1
	for _, l := range lines {
		i, err := strconv.Atoi(strings.TrimPrefix(l, "line "))
		if err != nil || i < from || i >= n || len(l) != 13 {
			t.Fatalf("garbage line %q", l)
		}
		seen[i]++
		if ordered && i != prev+1 {
			t.Errorf("line %d after %d", i, prev)
		}
		prev = i
	}
	lost, dup := 0, 0
	for i, s := range seen {
		if s == 0 {
			if lost < 5 {
				t.Errorf("line %d lost", i)
			}
			lost++
		}
		if s > 1 {
			if dup < 5 {
				t.Errorf("line %d seen %d times", i, s)
			}
			dup++
		}
	}
	if lost+dup > 0 {
		t.Fatalf("%d lost, %d duplicated of %d", lost, dup, n)
	}
}

// TestRenameRotationUnderLoad: logrotate renames the file while the writer
// writes as fast as it can; the writer goes on writing to the renamed file
// for a moment (until it is told to reopen), then creates the new one.
func TestRenameRotationUnderLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "auth.log")
	w := newWriter(t, path)
	var c collector
	f, _ := follow(t, path, Position{}, &c)
	time.Sleep(50 * time.Millisecond)

	const total, per = 200000, 25000
	for w.next < total {
		w.write(50)
		if w.next%per == 0 {
			os.Rename(path+".1", path+".2")
			if err := os.Rename(path, path+".1"); err != nil {
				t.Fatal(err)
			}
			w.write(100) // still to the old file: the line just before the rename and after
			if w.next%(2*per) == 100 {
				time.Sleep(time.Millisecond)
			}
			w.reopen()
			// Rotations a day apart, not microseconds: a file created and
			// rotated away before anyone looked is lost to every reader.
			// The follower may still be behind in the old file, though.
			w.write(50)
			c.waitFor(t, w.next)
		}
	}
	w.fd.Close()
	c.waitFor(t, w.next)
	time.Sleep(100 * time.Millisecond)
	lines, _ := c.snapshot()
	checkSeq(t, lines, w.next, false)
	if s := f.Stats(); s.Rotations < total/per-1 {
		t.Errorf("stats %+v", s)
	}
}

// TestRemoveRotation: the file is removed and created again.
func TestRemoveRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.log")
	w := newWriter(t, path)
	var c collector
	follow(t, path, Position{}, &c)
	time.Sleep(50 * time.Millisecond)
	for round := 0; round < 5; round++ {
		w.write(1000)
		os.Remove(path)
		w.write(10)
		w.reopen()
		w.write(1)
		c.waitFor(t, w.next)
	}
	w.write(10)
	c.waitFor(t, w.next)
	lines, _ := c.snapshot()
	checkSeq(t, lines, w.next, false)
}

// TestCopyTruncate: logrotate copies the file and truncates it; the writer
// (O_APPEND) goes on at the new end.
func TestCopyTruncate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.log")
	w := newWriter(t, path)
	var c collector
	f, _ := follow(t, path, Position{}, &c)
	time.Sleep(50 * time.Millisecond)
	for round := 0; round < 5; round++ {
		w.write(5000)
		c.waitFor(t, w.next) // copytruncate loses what was not read: wait for it
		if err := os.Truncate(path, 0); err != nil {
			t.Fatal(err)
		}
		if round%2 == 0 {
			// Write past the old offset at once: shrinking is then
			// seen only from the bytes.
			w.write(6000)
		}
	}
	w.write(10)
	c.waitFor(t, w.next)
	time.Sleep(100 * time.Millisecond)
	lines, _ := c.snapshot()
	checkSeq(t, lines, w.next, true)
	if s := f.Stats(); s.Truncated < 3 {
		t.Errorf("stats %+v", s)
	}
}

// TestCopyTruncateRacy truncates while the writer writes: lines written
// between the copy and the truncation are lost (to every reader of a
// copytruncate'd file), but none may come twice or cut.
func TestCopyTruncateRacy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.log")
	w := newWriter(t, path)
	var c collector
	follow(t, path, Position{}, &c)
	time.Sleep(50 * time.Millisecond)
	for w.next < 100000 {
		w.write(100)
		if w.next%20000 == 0 {
			os.Truncate(path, 0)
		}
	}
	w.write(1)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if l, _ := c.snapshot(); len(l) > 0 && l[len(l)-1] == fmt.Sprintf("line %08d", w.next-1) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	lines, _ := c.snapshot()
	seen := map[string]bool{}
	for _, l := range lines {
		if len(l) != 13 || !strings.HasPrefix(l, "line ") {
			t.Fatalf("cut line %q", l)
		}
		if seen[l] {
			t.Fatalf("%q twice", l)
		}
		seen[l] = true
	}
	if last := fmt.Sprintf("line %08d", w.next-1); !seen[last] {
		t.Errorf("%s never seen", last)
	}
	t.Logf("%d of %d lines read (the rest was truncated away before it was read)", len(lines), w.next)
}

// TestResume stops a follower, writes, and starts another at the stored
// position: it must see exactly the lines written in between.
func TestResume(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.log")
	w := newWriter(t, path)
	w.write(10)
	var c1 collector
	_, stop := follow(t, path, Position{}, &c1)
	time.Sleep(50 * time.Millisecond)
	w.write(100)
	c1.waitFor(t, 100)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	_, pos := c1.snapshot()
	last := pos[len(pos)-1]

	w.write(100)
	var c2 collector
	_, stop2 := follow(t, path, last, &c2)
	c2.waitFor(t, 100)
	time.Sleep(50 * time.Millisecond)
	l, pos2 := c2.snapshot()
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
	// The 10 lines there before the first start are not new: skipped.
	checkRange(t, append(c1.lines, l...), 10, 210, true)

	// Rotated while stopped: the rest of the old file comes from auth.log.1.
	w.write(50)
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	w.write(5)
	w.reopen()
	w.write(20)
	var c3 collector
	follow(t, path, pos2[len(pos2)-1], &c3)
	l3 := c3.waitFor(t, 75)
	all := append(append(c1.lines, l...), l3...)
	checkRange(t, all, 10, w.next, true)

	// A stored position whose file is gone: read the current file from
	// its start.
	var c4 collector
	follow(t, path, Position{Dev: 1, Inode: 1, Offset: 5}, &c4)
	if l4 := c4.waitFor(t, 20); l4[0] != fmt.Sprintf("line %08d", w.next-20) {
		t.Errorf("got %q", l4[0])
	}
}

// TestResumeTruncated: the stored offset is past the end of the same file,
// or not at the start of a line in it (the inode was reused): read it from
// its start.
func TestResumeTruncated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.log")
	w := newWriter(t, path)
	w.write(3)
	fi, _ := os.Stat(path)
	for _, off := range []int64{1 << 20, 20} {
		st := Position{Offset: off}
		st.Dev, st.Inode = identity(fi)
		var c collector
		_, stop := follow(t, path, st, &c)
		if l := c.waitFor(t, 3); l[0] != "line 00000000" {
			t.Errorf("offset %d: got %q", off, l)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestEmitError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.log")
	appendFile(t, path, "")
	f := NewFileFollower(path, Position{})
	f.poll = 10 * time.Millisecond
	boom := errors.New("boom")
	done := make(chan error, 1)
	go func() {
		done <- f.Run(context.Background(), func([]byte, Position) error { return boom })
	}()
	time.Sleep(50 * time.Millisecond)
	appendFile(t, path, "x\n")
	select {
	case err := <-done:
		if !errors.Is(err, boom) {
			t.Fatalf("got %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
}

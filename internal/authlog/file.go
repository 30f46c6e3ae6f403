package authlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// MaxLine is the longest line the followers pass on. Longer lines are
// dropped whole and counted, not cut: the end of a cut line would be
// whatever text happened to fall there, and rules anchor on the end.
const MaxLine = 64 << 10

// Position is where a follower stands in a file: the file's identity and
// the offset just after the last line handed on. Store it to resume.
type Position struct {
	Dev, Inode uint64
	Offset     int64
}

// FileStats counts what a FileFollower did.
type FileStats struct {
	Lines     uint64 // lines handed on
	Dropped   uint64 // lines longer than MaxLine, dropped
	Rotations uint64 // times the path was renamed, removed or replaced
	Truncated uint64 // times the file shrank under us (copytruncate)
}

// FileFollower follows a log file the way logrotate and syslog daemons
// treat it: it survives rename-and-create rotation (reading the old file to
// its end first, and for a while after, as the writer may still be writing
// to it), copytruncate, the file not existing yet, and restarts.
type FileFollower struct {
	path  string
	start Position

	// poll is how often the follower looks even without a notification
	// (inotify can overflow, and some filesystems do not notify).
	poll time.Duration
	// rotateWait is how long a rotated file is still read after it was
	// last seen growing: the writer reopens the path only when told to.
	rotateWait time.Duration

	lines, dropped, rotations, truncated atomic.Uint64
}

// NewFileFollower returns a follower of path. A zero start means no stored
// position: follow from the current end of the file (or from the start of a
// file created later). Otherwise, if path is still the same file, resume at
// start.Offset; if it is another file, read it from its start, after
// reading the rest of the old file if it was rotated to path.1.
func NewFileFollower(path string, start Position) *FileFollower {
	return &FileFollower{path: filepath.Clean(path), start: start, poll: time.Second, rotateWait: 5 * time.Second}
}

// Stats returns counters; safe to call while Run runs.
func (f *FileFollower) Stats() FileStats {
	return FileStats{Lines: f.lines.Load(), Dropped: f.dropped.Load(),
		Rotations: f.rotations.Load(), Truncated: f.truncated.Load()}
}

// reader is one open file and the bytes read from it but not yet handed on.
type reader struct {
	file     *os.File
	pos      Position // just after the last complete line
	buf      []byte   // buf[:n] holds bytes from pos.Offset on
	n        int
	skipping bool      // inside an overlong line: drop up to its newline
	grown    time.Time // when it last grew (rotated files)
	// tail holds the last bytes before pos.Offset: if the file no longer
	// has them there, it was truncated and written again.
	tail    [64]byte
	tailLen int
}

// consumed records b, the bytes just before pos.Offset, into the tail.
func (r *reader) consumed(b []byte) {
	if len(b) >= len(r.tail) {
		r.tailLen = copy(r.tail[:], b[len(b)-len(r.tail):])
		return
	}
	if keep := len(r.tail) - len(b); r.tailLen > keep {
		copy(r.tail[:], r.tail[r.tailLen-keep:r.tailLen])
		r.tailLen = keep
	}
	r.tailLen += copy(r.tail[r.tailLen:], b)
}

// loadTail reads the tail from the file, for a reader placed at an offset.
func (r *reader) loadTail() error {
	n := min(r.pos.Offset, int64(len(r.tail)))
	k, err := r.file.ReadAt(r.tail[:n], r.pos.Offset-n)
	r.tailLen = k
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return err
}

// Run follows the file and calls emit for each complete line (without its
// newline; the slice is valid only during the call) and the position just
// after it. It returns when ctx is done (with ctx's error) or when emit
// fails (with emit's error), after closing everything it opened.
func (f *FileFollower) Run(ctx context.Context, emit func(line []byte, pos Position) error) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("following %s: watching for changes: %w", f.path, err)
	}
	defer w.Close()
	// The directory, not the file: rotation replaces the file.
	watching := w.Add(filepath.Dir(f.path)) == nil

	var cur *reader
	var old []*reader
	defer func() {
		if cur != nil {
			cur.file.Close()
		}
		for _, r := range old {
			r.file.Close()
		}
	}()

	cur, old, err = f.open(old)
	if err != nil {
		return err
	}
	tick := time.NewTicker(f.poll)
	defer tick.Stop()
	for {
		// Rotated files first: their lines were written earlier.
		keep := old[:0]
		for _, r := range old {
			grew, err := f.drain(r, emit)
			if err != nil {
				return err
			}
			now := time.Now()
			if grew {
				r.grown = now
			}
			if now.Sub(r.grown) < f.rotateWait {
				keep = append(keep, r)
				continue
			}
			// Done with it; a last line without its newline is as
			// complete as it will ever be.
			if err := f.flush(r, emit); err != nil {
				return err
			}
			r.file.Close()
		}
		old = keep

		// Look before reading: after a truncation the old offset may
		// point into the middle of a new line.
		if cur, old, err = f.check(cur, old, emit); err != nil {
			return err
		}
		if cur != nil {
			if _, err := f.drain(cur, emit); err != nil {
				return err
			}
		}
		if err := f.wait(ctx, w, tick, &watching, len(old) > 0); err != nil {
			return err
		}
	}
}

// wait returns when there may be something new to read: a change to the
// path (or to anything in its directory while a rotated file is still
// read: it has another name now), a watcher error (an overflow), or a tick.
func (f *FileFollower) wait(ctx context.Context, w *fsnotify.Watcher, tick *time.Ticker, watching *bool, anyName bool) error {
	for wake := false; !wake; {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-w.Events:
			if !ok {
				return fmt.Errorf("following %s: the file watcher stopped", f.path)
			}
			wake = anyName || ev.Name == f.path
		case _, ok := <-w.Errors:
			if !ok {
				return fmt.Errorf("following %s: the file watcher stopped", f.path)
			}
			wake = true
		case <-tick.C:
			if !*watching {
				*watching = w.Add(filepath.Dir(f.path)) == nil
			}
			wake = true
		}
	}
	// Coalesce a burst of notifications into one look.
	for {
		select {
		case <-w.Events:
		case <-w.Errors:
		default:
			return nil
		}
	}
}

// identity returns the device and inode of fi.
func identity(fi fs.FileInfo) (dev, ino uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), st.Ino
	}
	return 0, 0
}

// open opens the path at the start position.
func (f *FileFollower) open(old []*reader) (*reader, []*reader, error) {
	s := f.start
	stored := s.Dev != 0 || s.Inode != 0
	file, err := os.Open(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		if stored {
			old = f.openRotated(old)
		}
		return nil, old, nil // check() opens it when it appears
	}
	if err != nil {
		return nil, old, fmt.Errorf("following %s: %w", f.path, err)
	}
	fi, err := file.Stat()
	if err != nil {
		file.Close()
		return nil, old, fmt.Errorf("following %s: %w", f.path, err)
	}
	dev, ino := identity(fi)
	r := newReader(file, dev, ino)
	switch {
	case !stored:
		// Only new lines: start at the end, after the last newline.
		if err := r.seekEnd(fi.Size()); err != nil {
			file.Close()
			return nil, old, fmt.Errorf("following %s: %w", f.path, err)
		}
	case dev == s.Dev && ino == s.Inode:
		off := s.Offset
		if off > fi.Size() || off < 0 || !afterNewline(file, off) {
			// Truncated, or the inode now holds another file.
			f.truncated.Add(1)
			off = 0
		}
		r.pos.Offset = off
		if err := r.loadTail(); err != nil {
			file.Close()
			return nil, old, fmt.Errorf("following %s: %w", f.path, err)
		}
	default:
		old = f.openRotated(old)
	}
	return r, old, nil
}

// openRotated looks for the stored file at path.1 (where rename rotation
// puts it) and queues the rest of it.
func (f *FileFollower) openRotated(old []*reader) []*reader {
	file, err := os.Open(f.path + ".1")
	if err != nil {
		return old
	}
	fi, err := file.Stat()
	if err == nil {
		if dev, ino := identity(fi); dev == f.start.Dev && ino == f.start.Inode && f.start.Offset <= fi.Size() && f.start.Offset >= 0 {
			r := newReader(file, dev, ino)
			r.pos.Offset = f.start.Offset
			r.grown = time.Now()
			if r.loadTail() == nil {
				return append(old, r)
			}
		}
	}
	file.Close()
	return old
}

// afterNewline reports whether off is at the start of a line: every
// position handed to emit is.
func afterNewline(file *os.File, off int64) bool {
	if off == 0 {
		return true
	}
	var b [1]byte
	_, err := file.ReadAt(b[:], off-1)
	return err == nil && b[0] == '\n'
}

func newReader(file *os.File, dev, ino uint64) *reader {
	return &reader{file: file, pos: Position{Dev: dev, Inode: ino}, buf: make([]byte, 32<<10)}
}

// seekEnd positions r at the end of the file, skipping a partial last line.
func (r *reader) seekEnd(size int64) error {
	if size == 0 {
		return nil
	}
	var b [1]byte
	if _, err := r.file.ReadAt(b[:], size-1); err != nil {
		return err
	}
	r.pos.Offset = size
	if b[0] != '\n' {
		r.skipping = true // the rest of that line is not ours
	}
	return r.loadTail()
}

// check compares the path with what cur has open: a new file at the path
// means rotation (cur is read to its end, then becomes old and is read on
// for rotateWait), a shorter file means truncation.
func (f *FileFollower) check(cur *reader, old []*reader, emit func([]byte, Position) error) (*reader, []*reader, error) {
	fi, err := os.Stat(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		if cur != nil {
			if _, err := f.drain(cur, emit); err != nil {
				return cur, old, err
			}
			// Renamed or removed: keep reading the old file until the
			// writer has moved on.
			f.rotations.Add(1)
			cur.grown = time.Now()
			old = append(old, cur)
		}
		return nil, old, nil
	}
	if err != nil {
		return cur, old, fmt.Errorf("following %s: %w", f.path, err)
	}
	dev, ino := identity(fi)
	if cur != nil && dev == cur.pos.Dev && ino == cur.pos.Inode {
		if f.shrunk(cur, fi.Size()) {
			f.truncated.Add(1)
			cur.pos.Offset, cur.n, cur.skipping, cur.tailLen = 0, 0, false, 0
		}
		return cur, old, nil
	}
	file, err := os.Open(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return cur, old, nil // gone again; next time
	}
	if err != nil {
		return cur, old, fmt.Errorf("following %s: %w", f.path, err)
	}
	if fi, err = file.Stat(); err != nil {
		file.Close()
		return cur, old, fmt.Errorf("following %s: %w", f.path, err)
	}
	dev, ino = identity(fi)
	if cur != nil {
		// The old file's last lines come before the new file's first.
		if _, err := f.drain(cur, emit); err != nil {
			file.Close()
			return cur, old, err
		}
		f.rotations.Add(1)
		cur.grown = time.Now()
		old = append(old, cur)
	}
	return newReader(file, dev, ino), old, nil
}

// shrunk reports whether the file was truncated since r read it: it is
// shorter than what r has read, or (if the writer already wrote past r's
// offset again) the bytes before r's offset are no longer the ones r read.
func (f *FileFollower) shrunk(r *reader, size int64) bool {
	if size < r.pos.Offset+int64(r.n) {
		return true
	}
	if r.tailLen == 0 {
		return false
	}
	var b [len(reader{}.tail)]byte
	k, _ := r.file.ReadAt(b[:r.tailLen], r.pos.Offset-int64(r.tailLen))
	return k != r.tailLen || !bytes.Equal(b[:k], r.tail[:r.tailLen])
}

// drain reads r to its current end and hands on complete lines. It
// reports whether anything was read.
func (f *FileFollower) drain(r *reader, emit func([]byte, Position) error) (bool, error) {
	grew := false
	for {
		if r.n == len(r.buf) {
			if len(r.buf) < MaxLine+1 {
				nb := make([]byte, min(2*len(r.buf), MaxLine+1))
				copy(nb, r.buf[:r.n])
				r.buf = nb
			} else {
				// No newline in MaxLine+1 bytes: drop the line.
				r.consumed(r.buf[:r.n])
				r.pos.Offset += int64(r.n)
				r.n = 0
				if !r.skipping {
					f.dropped.Add(1)
				}
				r.skipping = true
			}
		}
		k, err := r.file.ReadAt(r.buf[r.n:], r.pos.Offset+int64(r.n))
		if k > 0 {
			grew = true
			r.n += k
			if err := f.split(r, emit); err != nil {
				return grew, err
			}
		}
		if errors.Is(err, io.EOF) || k == 0 && err == nil {
			return grew, nil
		}
		if err != nil {
			return grew, fmt.Errorf("following %s: reading: %w", f.path, err)
		}
	}
}

// split hands on the complete lines in r.buf[:r.n] and keeps the rest.
func (f *FileFollower) split(r *reader, emit func([]byte, Position) error) error {
	start := 0
	for {
		i := bytes.IndexByte(r.buf[start:r.n], '\n')
		if i < 0 {
			break
		}
		line := r.buf[start : start+i]
		start += i + 1
		r.pos.Offset += int64(i + 1)
		if r.skipping {
			r.skipping = false
			continue
		}
		if len(line) > MaxLine {
			f.dropped.Add(1)
			continue
		}
		f.lines.Add(1)
		if err := emit(line, r.pos); err != nil {
			r.consumed(r.buf[:start])
			r.n = copy(r.buf, r.buf[start:r.n])
			return err
		}
	}
	r.consumed(r.buf[:start])
	r.n = copy(r.buf, r.buf[start:r.n])
	return nil
}

// flush hands on a last line without a newline, when r's file is done.
func (f *FileFollower) flush(r *reader, emit func([]byte, Position) error) error {
	if r.n == 0 || r.skipping {
		return nil
	}
	line := r.buf[:r.n]
	r.consumed(line)
	r.pos.Offset += int64(r.n)
	r.n = 0
	if len(line) > MaxLine {
		f.dropped.Add(1)
		return nil
	}
	f.lines.Add(1)
	return emit(line, r.pos)
}

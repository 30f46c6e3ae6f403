package store

import (
	"os"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// Release drops the database file's pages from the process's memory: a
// start that read a million bans touched every page of a 200 MB file,
// which then counts in the daemon's resident memory though it is only the
// kernel's page cache. The pages stay cached by the kernel and come back
// on the next read that needs them. It is a hint: failures are ignored.
func (s *Store) Release() {
	fi, err := os.Stat(s.path)
	if err != nil || fi.Size() == 0 {
		return
	}
	// Inside a read transaction, which holds off a remap of the file
	// (bbolt remaps only under its write lock of the mapping): the range
	// stays the file's for the whole call.
	_ = s.db.View(func(*bolt.Tx) error {
		info := s.db.Info()
		page := uintptr(os.Getpagesize())
		size := (uintptr(fi.Size()) + page - 1) &^ (page - 1)
		_, _, _ = unix.Syscall(unix.SYS_MADVISE, info.Data, size, unix.MADV_DONTNEED)
		return nil
	})
}

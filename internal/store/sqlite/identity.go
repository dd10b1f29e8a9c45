package sqlite

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

	"github.com/dispatchd/dispatch/internal/store"
)

// fileID is a file's identity: device and inode.
type fileID struct{ dev, ino uint64 }

func statID(path string) (fileID, int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileID{}, 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, fi.Size(), nil
	}
	return fileID{uint64(st.Dev), uint64(st.Ino)}, fi.Size(), nil
}

// identity is what the store knows of the files it opened.
type identity struct {
	path string

	mu     sync.Mutex
	db     fileID
	wal    fileID // zero until the WAL is first seen
	walMax int64  // the WAL never shrinks while the store holds it open
	lost   error  // sticky once set
}

func (id *identity) init(path string) error {
	id.path = path
	db, _, err := statID(path)
	if err != nil {
		return err
	}
	id.db = db
	if w, size, err := statID(path + "-wal"); err == nil {
		id.wal, id.walMax = w, size
	}
	return nil
}

// CheckIdentity is a cheap integrity probe (two stat calls): the database
// file at the store's path is still the one it opened (device and inode),
// and its write-ahead log is still there, the same file, and not shorter
// than it has been (SQLite never shrinks it while the database is open).
// A failure is sticky — the data written meanwhile may be gone — and wraps
// store.ErrLost and ErrIO.
func (s *DB) CheckIdentity() error {
	id := &s.ident
	id.mu.Lock()
	defer id.mu.Unlock()
	if id.lost != nil || id.path == "" {
		return id.lost
	}
	lost := func(format string, args ...any) error {
		id.lost = store.Classify(store.ErrIO, fmt.Errorf("%w: %s", store.ErrLost, fmt.Sprintf(format, args...)))
		return id.lost
	}
	db, _, err := statID(id.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return lost("%s was removed", id.path)
	case err != nil:
		return store.Classify(store.ErrIO, err) // not sticky: it may pass
	case db != id.db:
		return lost("%s was replaced by another file", id.path)
	}
	wal, size, err := statID(id.path + "-wal")
	switch {
	case errors.Is(err, os.ErrNotExist):
		if id.wal != (fileID{}) {
			return lost("%s-wal was removed", id.path)
		}
	case err != nil:
		return store.Classify(store.ErrIO, err)
	case id.wal == fileID{}:
		id.wal, id.walMax = wal, size
	case wal != id.wal:
		return lost("%s-wal was replaced by another file", id.path)
	case size < id.walMax:
		return lost("%s-wal was truncated (%d bytes, was %d)", id.path, size, id.walMax)
	default:
		id.walMax = size
	}
	return nil
}

package store

import (
	"errors"
	"syscall"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Storage failures, classified where they arise so that callers can tell a
// full disk from a broken one without reading error texts. A write that
// fails with either changed nothing; it may succeed when tried again.
var (
	// ErrNoSpace: the file system holding the database is full.
	ErrNoSpace = errors.New("no space left on the state directory's disk")
	// ErrIO: the database file could not be read or written.
	ErrIO = errors.New("database I/O error")
)

// ErrConflict is returned by Accept when a chat reuses a client_id for
// another text.
var ErrConflict = errors.New("store: conflict")

// storageError is a driver error together with its class.
type storageError struct {
	class error
	err   error
}

func (e *storageError) Error() string   { return e.class.Error() + ": " + e.err.Error() }
func (e *storageError) Unwrap() []error { return []error{e.class, e.err} }

// classify marks err with ErrNoSpace or ErrIO when the driver or the OS
// says the disk is full or failed; anything else comes back unchanged.
func classify(err error) error {
	if err == nil || errors.Is(err, ErrNoSpace) || errors.Is(err, ErrIO) {
		return err
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return &storageError{ErrNoSpace, err}
	}
	if errors.Is(err, syscall.EIO) || errors.Is(err, syscall.EROFS) {
		return &storageError{ErrIO, err}
	}
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	switch se.Code() & 0xff { // the primary code of an extended one
	case sqlite3.SQLITE_FULL:
		return &storageError{ErrNoSpace, err}
	case sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY,
		sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB:
		return &storageError{ErrIO, err}
	}
	return err
}

// IsStorage reports whether err is a storage failure (disk full or I/O):
// the kind a caller retries with backoff rather than gives up on.
func IsStorage(err error) bool {
	return errors.Is(err, ErrNoSpace) || errors.Is(err, ErrIO)
}

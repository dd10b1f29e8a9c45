package store

import (
	"errors"
	"syscall"
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

// ErrLost means the database file the store opened is no longer the one at
// its path: removed, replaced, or its write-ahead log removed or truncated
// from outside. Writes may still "succeed" into an unlinked file and vanish
// at the next start, so nothing must be accepted: it is classified as ErrIO
// too (a 503 on accept).
var ErrLost = errors.New("the database file was removed, replaced or truncated under the daemon")

// ErrConflict is returned by Accept when a chat reuses a client_id for
// another text.
var ErrConflict = errors.New("store: conflict")

// ErrFenced: the write is for a chat this node no longer owns (its lease
// expired or was taken over); nothing was written.
var ErrFenced = errors.New("not the chat's lease holder (fenced)")

// IsFenced reports whether err is a write refused by the fence.
func IsFenced(err error) bool { return errors.Is(err, ErrFenced) }

// storageError is a driver error together with its class.
type storageError struct {
	class error
	err   error
}

func (e *storageError) Error() string   { return e.class.Error() + ": " + e.err.Error() }
func (e *storageError) Unwrap() []error { return []error{e.class, e.err} }

// Classify marks err as a storage failure of class (ErrNoSpace or ErrIO),
// for drivers that report such failures in their own terms. A nil class
// classifies by the operating system's error alone: ENOSPC and EDQUOT are
// ErrNoSpace, EIO and EROFS ErrIO, anything else comes back unchanged.
func Classify(class, err error) error {
	if err == nil || IsStorage(err) {
		return err
	}
	if class == nil {
		switch {
		case errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT):
			class = ErrNoSpace
		case errors.Is(err, syscall.EIO) || errors.Is(err, syscall.EROFS):
			class = ErrIO
		default:
			return err
		}
	}
	return &storageError{class, err}
}

// IsStorage reports whether err is a storage failure (disk full or I/O):
// the kind a caller retries with backoff rather than gives up on.
func IsStorage(err error) bool {
	return errors.Is(err, ErrNoSpace) || errors.Is(err, ErrIO)
}

package sqlite

import (
	"errors"

	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/dispatchd/dispatch/internal/store"
)

// classify marks err with store.ErrNoSpace or store.ErrIO when SQLite or
// the OS says the disk is full or failed; anything else comes back
// unchanged.
func classify(err error) error {
	if err == nil || store.IsStorage(err) {
		return err
	}
	var se *msqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff { // the primary code of an extended one
		case sqlite3.SQLITE_FULL:
			return store.Classify(store.ErrNoSpace, err)
		case sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY,
			sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB:
			return store.Classify(store.ErrIO, err)
		}
	}
	return store.Classify(nil, err)
}

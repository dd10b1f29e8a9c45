package postgres

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dispatchd/dispatch/internal/store"
)

// classify marks err with store.ErrNoSpace or store.ErrIO when it means
// the database cannot take writes now — the failures a caller retries
// with backoff and a client is told to retry (503, or 507 for a full
// disk) — and leaves any other error as it is:
//
//   - out of disk: ENOSPC, EDQUOT, SQLSTATE 53100 → ErrNoSpace;
//   - the server cannot be reached or does not let us in: any failure to
//     connect (refused, unreachable, timed out, the server's own refusal
//     such as pg_hba's 28000 or too many connections), a connection that
//     broke or was closed (EOF, reset, pgx's "conn closed"), a timeout;
//   - the server is going away or out of resources: SQLSTATE classes 08
//     (connection exception), 28 (invalid authorization), 53
//     (insufficient resources), 57 (operator intervention: shutdown,
//     crash, terminated backend), 58 (system error), 25006 (a
//     read-only standby) and 25P03 (the server ended a transaction left
//     idle past idle_in_transaction_session_timeout — this node was
//     paused — and closed the connection: nothing of it was committed);
//   - EIO, EROFS.
//
// Anything else — a constraint, a syntax error, a wrong schema — is a
// fault of its own, answered 500.
func classify(err error) error {
	if err == nil || store.IsStorage(err) {
		return err
	}
	switch {
	case errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT):
		return store.Classify(store.ErrNoSpace, err)
	case errors.Is(err, syscall.EIO) || errors.Is(err, syscall.EROFS):
		return store.Classify(store.ErrIO, err)
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		// Whatever refused the connection (the network, the server's
		// authentication, its connection limit), nothing was written.
		return store.Classify(store.ErrIO, err)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch code := pe.Code; {
		case code == "53100": // disk_full
			return store.Classify(store.ErrNoSpace, err)
		case len(code) == 5 && unavailableClass[code[:2]], code == "25006", code == "25P03":
			// 25006: read_only_sql_transaction (a standby);
			// 25P03: idle_in_transaction_session_timeout
			return store.Classify(store.ErrIO, err)
		}
		return err
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, pgconn.ErrConnClosed) ||
		errors.Is(err, pgx.ErrTxClosed) || pgconn.Timeout(err) || pgconn.SafeToRetry(err) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return store.Classify(store.ErrIO, err)
	}
	return err
}

// unavailableClass are the SQLSTATE classes that say the server cannot
// serve us now, whatever the statement.
var unavailableClass = map[string]bool{
	"08": true, // connection exception
	"28": true, // invalid authorization specification (pg_hba, a role that may not log in)
	"53": true, // insufficient resources
	"57": true, // operator intervention (admin/crash/immediate shutdown, cannot connect now)
	"58": true, // system error
}

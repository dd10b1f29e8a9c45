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
// the database cannot take writes now (unreachable, shutting down, out of
// disk or resources): the failures a caller retries with backoff.
func classify(err error) error {
	if err == nil || store.IsStorage(err) {
		return err
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return store.Classify(store.ErrNoSpace, err)
	}
	if errors.Is(err, syscall.EIO) || errors.Is(err, syscall.EROFS) {
		return store.Classify(store.ErrIO, err)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		code := pe.Code
		switch {
		case code == "53100": // disk_full
			return store.Classify(store.ErrNoSpace, err)
		case len(code) == 5 && (code[:2] == "08" || code[:2] == "53" || code[:2] == "57" || code[:2] == "58"),
			code == "25006": // read_only_sql_transaction: a standby
			return store.Classify(store.ErrIO, err)
		}
		return err
	}
	var ne net.Error
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) || errors.As(err, &ne) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, pgx.ErrTxClosed) || pgconn.Timeout(err) || pgconn.SafeToRetry(err) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) {
		return store.Classify(store.ErrIO, err)
	}
	return err
}

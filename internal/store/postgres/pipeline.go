package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// A write transaction's statements each cost a round trip to the server.
// The chat locks a write takes (LockChat) need no answer of their own, so
// Tx sends them pipelined with the statement that follows: Exec, Query
// and QueryRow here shadow pgx.Tx's for every statement the store's
// operations and the cluster's fence run in a write.

const lockSQL = `SELECT pg_advisory_xact_lock(hashtextextended($1, 7))`

// lockBatch returns a batch holding the pending locks, which are then no
// longer pending.
func (t *Tx) lockBatch() *pgx.Batch {
	b := &pgx.Batch{}
	for _, chat := range t.locks {
		b.Queue(lockSQL, chat)
	}
	t.locks = t.locks[:0]
	return b
}

// send sends the pending locks with sql and reads the locks' results; the
// caller reads sql's and closes the results.
func (t *Tx) send(ctx context.Context, sql string, args []any) (pgx.BatchResults, error) {
	b := t.lockBatch()
	n := b.Len()
	b.Queue(sql, args...)
	br := t.Tx.SendBatch(ctx, b)
	for range n {
		if _, err := br.Exec(); err != nil {
			return nil, errors.Join(err, br.Close())
		}
	}
	return br, nil
}

// Exec runs sql after the pending locks, in one round trip.
func (t *Tx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if len(t.locks) == 0 {
		return t.Tx.Exec(ctx, sql, args...)
	}
	br, err := t.send(ctx, sql, args)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	tag, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return tag, err
}

// Query runs sql after the pending locks, in one round trip.
func (t *Tx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if len(t.locks) == 0 {
		return t.Tx.Query(ctx, sql, args...)
	}
	br, err := t.send(ctx, sql, args)
	if err != nil {
		return nil, err
	}
	rows, err := br.Query()
	if err != nil {
		return nil, errors.Join(err, br.Close())
	}
	return &batchRows{Rows: rows, br: br}, nil
}

// QueryRow runs sql after the pending locks, in one round trip.
func (t *Tx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if len(t.locks) == 0 {
		return t.Tx.QueryRow(ctx, sql, args...)
	}
	br, err := t.send(ctx, sql, args)
	if err != nil {
		return errRow{err}
	}
	return batchRow{row: br.QueryRow(), br: br}
}

// batchRows are a pipelined query's rows; closing them closes the batch.
type batchRows struct {
	pgx.Rows
	br     pgx.BatchResults
	closed bool
	err    error
}

func (r *batchRows) Close() {
	if r.closed {
		return
	}
	r.closed = true
	r.Rows.Close()
	r.err = r.br.Close()
}

func (r *batchRows) Err() error {
	if err := r.Rows.Err(); err != nil {
		return err
	}
	return r.err
}

type batchRow struct {
	row pgx.Row
	br  pgx.BatchResults
}

func (r batchRow) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	if cerr := r.br.Close(); err == nil {
		err = cerr
	}
	return err
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

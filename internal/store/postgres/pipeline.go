package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// A write transaction's statements each cost a round trip to the server.
// Its BEGIN and the chat locks it takes (LockChat) need no answer of their
// own, so Tx sends them pipelined with the statement that follows, and
// its last statement with the COMMIT (Write): Exec, Query and QueryRow
// here are what the store's operations and the cluster's fence run in a
// write. A transaction that ran no statement has nothing to commit.

const lockSQL = `SELECT pg_advisory_xact_lock(hashtextextended($1, 7))`

var (
	beginSQL     = []string{"BEGIN"}
	beginLazySQL = []string{"BEGIN", "SET LOCAL synchronous_commit = off"}
)

// pending returns a batch holding the statements waiting to go with the
// next one, which are then no longer waiting.
func (t *Tx) pending() *pgx.Batch {
	b := &pgx.Batch{}
	for _, q := range t.begin {
		b.Queue(q)
	}
	for _, chat := range t.locks {
		b.Queue(lockSQL, chat)
	}
	t.begin, t.locks = nil, t.locks[:0]
	return b
}

func (t *Tx) hasPending() bool { return len(t.begin) > 0 || len(t.locks) > 0 }

// commitAlone commits a transaction whose statements have all been sent.
func (t *Tx) commitAlone(ctx context.Context) error {
	if len(t.begin) > 0 { // nothing ran
		t.done = true
		return nil
	}
	tag, err := t.conn.Exec(ctx, "COMMIT")
	if err != nil {
		return err
	}
	t.done = true
	if tag.String() != "COMMIT" {
		return pgx.ErrTxCommitRollback
	}
	return nil
}

// rollback ends the transaction unless it has ended or never began.
func (t *Tx) rollback(ctx context.Context) {
	if t.done || len(t.begin) > 0 {
		return
	}
	t.done = true
	_, _ = t.conn.Exec(ctx, "ROLLBACK")
}

// send sends the pending statements with sql and reads their results; the
// caller reads sql's and closes the results.
func (t *Tx) send(ctx context.Context, sql string, args []any) (pgx.BatchResults, error) {
	b := t.pending()
	n := b.Len()
	b.Queue(sql, args...)
	br := t.conn.SendBatch(ctx, b)
	for range n {
		if _, err := br.Exec(); err != nil {
			return nil, errors.Join(err, br.Close())
		}
	}
	return br, nil
}

// Exec runs sql after the pending statements, in one round trip.
func (t *Tx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if !t.hasPending() {
		return t.conn.Exec(ctx, sql, args...)
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

// Query runs sql after the pending statements, in one round trip.
func (t *Tx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if !t.hasPending() {
		return t.conn.Query(ctx, sql, args...)
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

// QueryRow runs sql after the pending statements, in one round trip.
func (t *Tx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if !t.hasPending() {
		return t.conn.QueryRow(ctx, sql, args...)
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

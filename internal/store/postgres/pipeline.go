package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// A write transaction's statements each cost a round trip to the server.
// Its BEGIN, the chat locks it takes (LockChat) and the statements whose
// answer the store does not wait for (execLater: updates whose only
// result is success) go pipelined with the statement that follows, and
// the last ones with the COMMIT (Write). An error of a statement sent
// later fails the write at that point instead: the same outcome, as a
// failed statement fails its whole write anyway. Exec, Query and QueryRow
// here are what the store's operations and the cluster's fence run in a
// write. A transaction that ran no statement has nothing to commit.

// The chat's line is kept with two advisory locks per chat (ops.go,
// LockChat). lineSQL is the one accepts take, shared: accepts of one chat
// never wait for each other, and a claim waits for those under way.
// claimSQL is held by the writes that read or renumber the line (claims,
// retries) until their commit.
const (
	lineSQL  = `SELECT pg_advisory_xact_lock_shared(hashtextextended($1, 7))`
	claimSQL = `SELECT pg_advisory_xact_lock(hashtextextended($1, 8))`
	// waitLineSQL waits until no accept of the chat is under way: the
	// line's lock, taken exclusively in a savepoint that is then rolled
	// back, which releases it at once.
	waitLineSQL = `SELECT pg_advisory_xact_lock(hashtextextended($1, 7))`
)

// stmt is a statement waiting to be sent.
type stmt struct {
	sql  string
	args []any
}

// queue makes sql wait for the next statement sent; work: it changes
// something, so the transaction must be committed.
func (t *Tx) queue(work bool, sql string, args ...any) {
	t.pend = append(t.pend, stmt{sql, args})
	t.work = t.work || work
}

// execLater runs sql with the transaction's next statement (or its
// COMMIT); its error fails the write there.
func (t *Tx) execLater(sql string, args ...any) { t.queue(true, sql, args...) }

// batch returns a batch holding the waiting statements, which are then
// no longer waiting.
func (t *Tx) batch() *pgx.Batch {
	b := &pgx.Batch{}
	for _, q := range t.pend {
		b.Queue(q.sql, q.args...)
	}
	t.pend = t.pend[:0]
	t.begun = true
	return b
}

// send sends the waiting statements with sql and reads their results; the
// caller reads sql's and closes the results.
func (t *Tx) send(ctx context.Context, sql string, args []any) (pgx.BatchResults, error) {
	b := t.batch()
	n := b.Len()
	t.work = true
	b.Queue(sql, args...)
	br := t.conn.SendBatch(ctx, b)
	for range n {
		if _, err := br.Exec(); err != nil {
			return nil, errors.Join(err, br.Close())
		}
	}
	return br, nil
}

// commitBatch sends b, the transaction's last statements, with COMMIT.
func (t *Tx) commitBatch(ctx context.Context, b *pgx.Batch) error {
	var committed bool
	b.Queue(`COMMIT`).Exec(func(tag pgconn.CommandTag) error {
		committed = tag.String() == "COMMIT"
		return nil
	})
	err := t.conn.SendBatch(ctx, b).Close()
	t.done = committed
	if err != nil {
		return err
	}
	if !committed {
		return pgx.ErrTxCommitRollback
	}
	return nil
}

// rollback ends the transaction unless it has ended or never began.
func (t *Tx) rollback(ctx context.Context) {
	if t.done || !t.begun {
		return
	}
	t.done = true
	_, _ = t.conn.Exec(ctx, "ROLLBACK")
}

// Exec runs sql after the pending statements, in one round trip.
func (t *Tx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if len(t.pend) == 0 {
		t.work = true
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
	if len(t.pend) == 0 {
		t.work = true
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
	if len(t.pend) == 0 {
		t.work = true
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

package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"runtime"

	"github.com/dispatchd/dispatch/internal/store"
)

// maxBatch caps how many write operations share one transaction, so one
// commit never holds callers back for long.
const maxBatch = 256

// maxCachedStmts bounds the writer's prepared-statement cache. Statements
// with IN lists vary with the number of ids; past the cap they simply run
// unprepared.
const maxCachedStmts = 64

// writeOp is one queued write. fn runs inside the batch's transaction (in
// a savepoint of its own when another op of the batch failed, see
// commit), possibly twice; its results reach the caller through variables
// it captures and sets on every run, published by done.
type writeOp struct {
	ctx context.Context
	fn  func(ctx context.Context, tx *Tx) error
	// lazy: the change need not be on disk when the caller is answered
	// (see Write).
	lazy bool
	done chan error // buffered, so the writer never blocks on a caller
}

// Tx is the writer's connection as a write transaction sees it (the
// store's one-query write operations are its methods, in ops.go): inside
// the batch transaction (see commit), with statements
// prepared once and reused, because parsing is a large share of a small
// write's cost in the transpiled SQLite. Only the writer goroutine uses it.
type Tx struct {
	c     *sql.Conn
	stmts map[string]*sql.Stmt
	// opEvent is the largest event seq the running op inserted (0: none);
	// see noteEvent.
	opEvent int64
}

// noteEvent records that the running op inserted event seq: once the
// batch commits (and only if this op was not rolled back), the feed's
// visible mark moves up to it.
func (t *Tx) noteEvent(seq int64) { t.opEvent = max(t.opEvent, seq) }

func (t *Tx) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := t.stmts[query]; ok {
		return st, nil
	}
	if len(t.stmts) >= maxCachedStmts {
		return nil, nil
	}
	st, err := t.c.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	t.stmts[query] = st
	return st, nil
}

// ExecContext runs a statement that returns no rows.
func (t *Tx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, err := t.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return t.c.ExecContext(ctx, query, args...)
	}
	return st.ExecContext(ctx, args...)
}

// QueryContext runs a statement that returns rows.
func (t *Tx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := t.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return t.c.QueryContext(ctx, query, args...)
	}
	return st.QueryContext(ctx, args...)
}

// QueryRowContext runs a statement that returns at most one row.
func (t *Tx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := t.stmt(ctx, query)
	if err != nil || st == nil {
		// Unprepared, this reports the same error through the Row.
		return t.c.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

func (t *Tx) close() {
	for _, st := range t.stmts {
		_ = st.Close()
	}
	clear(t.stmts)
}

// Write queues fn for the writer and waits for its group's commit, which is
// fsync'd (synchronous=FULL) unless every op in the group is lazy: a change
// whose loss in a power failure (not a crash of the process: the change is
// in the WAL either way) is harmless; the next durable commit's fsync
// covers it, since the WAL is one file written in order. If ctx ends
// before the writer picks fn up, fn never runs and ctx's error is
// returned; once fn has run, Write waits for the commit regardless of ctx,
// so a caller never mistakes a committed change for a failed one.
func (s *DB) Write(ctx context.Context, lazy bool, fn func(ctx context.Context, tx *Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	op := &writeOp{ctx: ctx, fn: fn, lazy: lazy, done: make(chan error, 1)}
	s.sending.Add(1)
	select {
	case s.ops <- op:
		s.sending.Add(-1)
	case <-s.closing:
		s.sending.Add(-1)
		return store.ErrClosed
	case <-ctx.Done():
		s.sending.Add(-1)
		return ctx.Err()
	}
	return classify(<-op.done)
}

// run is the writer goroutine: it gathers whatever ops are waiting into one
// batch, commits it, answers, and repeats until Close.
func (s *DB) run() {
	defer close(s.stopped)
	tx := &Tx{c: s.wc, stmts: make(map[string]*sql.Stmt)}
	defer tx.close()
	batch := make([]*writeOp, 0, maxBatch)
	errs := make([]error, maxBatch)
	durable := true // the connection's synchronous setting: FULL, or NORMAL
	for {
		select {
		case <-s.closing:
			return
		case op := <-s.ops:
			batch = append(batch[:0], op)
		}
		// The callers answered at the end of the previous commit are
		// runnable but may not have queued their next write yet; yielding
		// once lets them join this batch instead of waiting a whole
		// commit for the next one. It roughly doubles the batch size with
		// a few concurrent clients, at no cost when idle.
		runtime.Gosched()
	fill:
		for len(batch) < maxBatch {
			select {
			case op := <-s.ops:
				batch = append(batch, op)
			default:
				break fill
			}
		}
		res := errs[:len(batch)]
		clear(res)
		// SQLite takes the synchronous setting only outside a
		// transaction, so it is switched between groups, and only when a
		// group's need differs from the last one's.
		err := setDurable(tx, &durable, needsDurable(batch))
		var lastEvent int64
		if err == nil {
			lastEvent, err = commit(tx, batch, res)
		}
		if err != nil {
			for i := range res {
				if res[i] == nil {
					res[i] = err
				}
			}
		} else {
			s.commits.Add(1)
			// After the commit, before anyone is answered: a reader
			// told of an event can read it.
			s.feed.Advance(lastEvent)
		}
		for i, op := range batch {
			op.done <- res[i]
		}
		clear(batch) // drop references to finished ops
	}
}

func needsDurable(batch []*writeOp) bool {
	for _, op := range batch {
		if !op.lazy {
			return true
		}
	}
	return false
}

// setDurable switches the writer's connection between synchronous=FULL
// (COMMIT fsyncs the WAL) and NORMAL (it does not).
func setDurable(tx *Tx, cur *bool, want bool) error {
	if *cur == want {
		return nil
	}
	q := "PRAGMA synchronous = NORMAL"
	if want {
		q = "PRAGMA synchronous = FULL"
	}
	if _, err := tx.ExecContext(context.Background(), q); err != nil {
		return fmt.Errorf("store: %s: %w", q, err)
	}
	*cur = want
	return nil
}

// commit runs batch in one transaction; per-op errors land in errs. A
// failing op is rolled back alone: the others in the batch are stored. A
// non-nil result means the transaction as a whole failed (nothing was
// stored) and applies to every op without an error of its own. lastEvent
// is the largest event seq the committed ops inserted (0: none).
//
// Ops rarely fail, so the batch first runs without a savepoint per op
// (two statements fewer per op);
// only if an op fails is the whole transaction rolled back and the batch
// run again, each op in its own savepoint. The ops' functions can run
// twice because a write's function publishes its results only through
// variables it sets on every run, and its effects on the database of the
// first run are gone with the rollback.
//
// Statements run without the callers' cancellation: interrupting a write
// inside an explicit transaction makes SQLite roll back the whole
// transaction, which would fail every other op in the batch.
func commit(tx *Tx, batch []*writeOp, errs []error) (lastEvent int64, err error) {
	lastEvent, failed, err := runBatch(tx, batch, errs, false)
	if err != nil || !failed {
		return lastEvent, err
	}
	// Fails harmlessly if the op's error (disk full, I/O error) made
	// SQLite roll the transaction back already.
	_, _ = tx.ExecContext(context.Background(), "ROLLBACK")
	clear(errs)
	lastEvent, _, err = runBatch(tx, batch, errs, true)
	return lastEvent, err
}

// runBatch runs batch in one transaction and commits it. Without
// savepoints it stops at the first op that fails and returns failed with
// the transaction still open (the caller rolls it back); with them, each
// op runs in its own savepoint, a failing one is rolled back alone, and
// the rest are committed.
func runBatch(tx *Tx, batch []*writeOp, errs []error, savepoints bool) (lastEvent int64, failed bool, err error) {
	ctx := context.Background()
	exec := func(q string) error {
		_, err := tx.ExecContext(ctx, q)
		return err
	}
	abort := func(what string, err error) error {
		_ = exec("ROLLBACK") // fails harmlessly if SQLite already rolled back
		return fmt.Errorf("store: %s: %w", what, err)
	}
	if err := exec("BEGIN IMMEDIATE"); err != nil {
		return 0, false, abort("begin", err)
	}
	for i, op := range batch {
		if err := op.ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		if savepoints {
			if err := exec("SAVEPOINT op"); err != nil {
				return 0, false, abort("savepoint", err)
			}
		}
		tx.opEvent = 0
		if err := op.fn(context.WithoutCancel(op.ctx), tx); err != nil {
			errs[i] = err
			if !savepoints {
				return 0, true, nil
			}
			// If SQLite rolled the whole transaction back (disk full,
			// I/O error), the savepoint is gone and this fails, so the
			// batch is aborted rather than continued in autocommit.
			if err := exec("ROLLBACK TO op"); err != nil {
				return 0, false, abort("rollback to savepoint", err)
			}
		} else {
			lastEvent = max(lastEvent, tx.opEvent)
		}
		if savepoints {
			if err := exec("RELEASE op"); err != nil {
				return 0, false, abort("release savepoint", err)
			}
		}
	}
	if err := exec("COMMIT"); err != nil {
		return 0, false, abort("commit", err)
	}
	return lastEvent, false, nil
}

// Accept stores m in the writer's next group commit (the writer runs one
// transaction at a time, so the chat's line needs no lock).
func (s *DB) Accept(ctx context.Context, m store.NewMessage) (ok bool, err error) {
	err = s.Write(ctx, false, func(ctx context.Context, tx *Tx) (err error) {
		ok, err = tx.InsertMessage(ctx, m)
		return err
	})
	return ok, err
}

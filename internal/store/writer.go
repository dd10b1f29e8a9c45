package store

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"runtime"
	"sort"
	"time"
)

// maxBatch caps how many write operations share one transaction, so one
// commit never holds callers back for long.
const maxBatch = 256

// maxCachedStmts bounds the writer's prepared-statement cache. Statements
// with IN lists vary with the number of ids; past the cap they simply run
// unprepared.
const maxCachedStmts = 64

// writeOp is one queued write. fn runs inside its own savepoint; its results
// reach the caller through variables it captures, published by done.
type writeOp struct {
	ctx  context.Context
	fn   func(ctx context.Context, tx *wtx) error
	done chan error // buffered, so the writer never blocks on a caller
}

// wtx is the writer's connection as a write op sees it: inside the batch
// transaction, with statements prepared once and reused, because parsing is
// a large share of a small write's cost in the transpiled SQLite. Only the
// writer goroutine uses it.
type wtx struct {
	c     *sql.Conn
	stmts map[string]*sql.Stmt
}

func (t *wtx) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
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
func (t *wtx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
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
func (t *wtx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
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
func (t *wtx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := t.stmt(ctx, query)
	if err != nil || st == nil {
		// Unprepared, this reports the same error through the Row.
		return t.c.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

func (t *wtx) close() {
	for _, st := range t.stmts {
		_ = st.Close()
	}
	clear(t.stmts)
}

// write queues fn for the writer and waits for its group's commit. If ctx
// ends before the writer picks fn up, fn never runs and ctx's error is
// returned; once fn has run, write waits for the commit regardless of ctx,
// so a caller never mistakes a committed change for a failed one.
func (s *Store) write(ctx context.Context, fn func(ctx context.Context, tx *wtx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	op := &writeOp{ctx: ctx, fn: fn, done: make(chan error, 1)}
	select {
	case s.ops <- op:
	case <-s.closing:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-op.done
}

// run is the writer goroutine: it gathers whatever ops are waiting into one
// batch, commits it, answers, and repeats until Close.
func (s *Store) run() {
	defer close(s.stopped)
	defer dbgDump()
	tx := &wtx{c: s.wc, stmts: make(map[string]*sql.Stmt)}
	defer tx.close()
	batch := make([]*writeOp, 0, maxBatch)
	errs := make([]error, maxBatch)
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
		if os.Getenv("STORE_DEBUG") != "" {
			var v int
			_ = s.wc.QueryRowContext(context.Background(), "PRAGMA synchronous").Scan(&v)
			if v != 2 {
				fmt.Fprintln(os.Stderr, "STORE: synchronous is", v)
			}
		}
		t0 := time.Now()
		err := commit(tx, batch, res)
		dbgRecord(len(batch), time.Since(t0))
		if err != nil {
			for i := range res {
				if res[i] == nil {
					res[i] = err
				}
			}
		} else {
			s.commits.Add(1)
		}
		for i, op := range batch {
			op.done <- res[i]
		}
		clear(batch) // drop references to finished ops
	}
}

// commit runs batch in one transaction, each op in its own savepoint so a
// failing op is rolled back alone; per-op errors land in errs. A non-nil
// result means the transaction as a whole failed (nothing was stored) and
// applies to every op without an error of its own.
//
// Statements run without the callers' cancellation: interrupting a write
// inside an explicit transaction makes SQLite roll back the whole
// transaction, which would fail every other op in the batch.
func commit(tx *wtx, batch []*writeOp, errs []error) error {
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
		return abort("begin", err)
	}
	for i, op := range batch {
		if err := op.ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		if err := exec("SAVEPOINT op"); err != nil {
			return abort("savepoint", err)
		}
		if err := op.fn(context.WithoutCancel(op.ctx), tx); err != nil {
			errs[i] = err
			// If SQLite rolled the whole transaction back (disk full,
			// I/O error), the savepoint is gone and this fails, so the
			// batch is aborted rather than continued in autocommit.
			if err := exec("ROLLBACK TO op"); err != nil {
				return abort("rollback to savepoint", err)
			}
		}
		if err := exec("RELEASE op"); err != nil {
			return abort("release savepoint", err)
		}
	}
	tc := time.Now()
	defer func() { dbgCommit = append(dbgCommit, time.Since(tc)) }()
	if err := exec("COMMIT"); err != nil {
		return abort("commit", err)
	}
	return nil
}

var dbgSizes []int
var dbgDur []time.Duration
var dbgCommit []time.Duration

func dbgRecord(n int, d time.Duration) { dbgSizes = append(dbgSizes, n); dbgDur = append(dbgDur, d) }

func dbgDump() {
	if os.Getenv("STORE_DEBUG") == "" || len(dbgSizes) == 0 {
		return
	}
	tot := 0
	hist := map[int]int{}
	for _, n := range dbgSizes {
		tot += n
		hist[n]++
	}
	ds := append([]time.Duration(nil), dbgDur...)
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	fmt.Fprintf(os.Stderr, "STORE: %d commits, %d ops, avg batch %.2f, commit p50 %v p90 %v p99 %v\n", len(dbgSizes), tot, float64(tot)/float64(len(dbgSizes)), ds[len(ds)/2], ds[len(ds)*9/10], ds[len(ds)*99/100])
	cs := append([]time.Duration(nil), dbgCommit...)
	sort.Slice(cs, func(i, j int) bool { return cs[i] < cs[j] })
	fmt.Fprintf(os.Stderr, "STORE: COMMIT stmt p50 %v p90 %v p99 %v\n", cs[len(cs)/2], cs[len(cs)*9/10], cs[len(cs)*99/100])
	for k := 1; k <= 40; k++ {
		if hist[k] > 0 {
			fmt.Fprintf(os.Stderr, " %d:%d", k, hist[k])
		}
	}
	fmt.Fprintln(os.Stderr)
}

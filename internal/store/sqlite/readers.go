package sqlite

import (
	"context"
	"database/sql"
	"sync"
)

// readers is the read pool as queries see it: each query text is prepared
// once and the statement reused (database/sql prepares it again on each
// pooled connection as needed). Parsing is a large share of a small read's
// cost in the transpiled SQLite: a prepared GET /v1/messages/{id} costs
// about 40% less than an unprepared one, and a client polling for its
// reply, or status, asks the same few queries over and over.
type readers struct {
	db *sql.DB

	mu     sync.Mutex
	stmts  map[string]*sql.Stmt
	closed bool
}

func (r *readers) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if st, ok := r.stmts[query]; ok {
		return st, nil
	}
	if r.closed || len(r.stmts) >= maxCachedStmts {
		return nil, nil
	}
	st, err := r.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if r.stmts == nil {
		r.stmts = make(map[string]*sql.Stmt)
	}
	r.stmts[query] = st
	return st, nil
}

// QueryContext runs a query that returns rows.
func (r *readers) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := r.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return r.db.QueryContext(ctx, query, args...)
	}
	return st.QueryContext(ctx, args...)
}

// QueryRowContext runs a query that returns at most one row.
func (r *readers) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := r.stmt(ctx, query)
	if err != nil || st == nil {
		// Unprepared, this reports the same error through the Row.
		return r.db.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

// close closes the prepared statements; later queries run unprepared.
func (r *readers) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for _, st := range r.stmts {
		_ = st.Close()
	}
	clear(r.stmts)
}

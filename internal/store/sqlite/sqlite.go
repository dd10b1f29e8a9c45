// Package sqlite is the store's SQLite dialect (modernc.org/sqlite, pure
// Go): the embedded database of a single node. It holds the SQL and how
// this database is driven; the queue's policy is internal/store's, over
// it (Open returns the two together).
//
// Every write goes through a single writer goroutine that group-commits: it
// takes all queued write transactions (up to maxBatch), runs them in one
// transaction (again with a SAVEPOINT each, should one fail: see commit),
// commits once — one fsync for the whole group — and only then answers
// the callers. That keeps "accepted means
// fsync'd" while letting throughput scale with the number of
// concurrent writers instead of being capped at one fsync per message. A
// group made only of lazy writes (a claim, the outbox's bookkeeping)
// commits without its own fsync (the next durable commit's covers it).
// Reads use a separate pool of connections, which WAL lets run beside the
// writer.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/store"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// busyTimeoutMS bounds how long a connection waits for a lock. Only the
// writer writes, so waits are short (checkpoints, WAL recovery).
const busyTimeoutMS = 5000

// Store is the store on SQLite: the store's policy over this dialect.
type Store = store.Store[*Tx]

// DB is the SQLite dialect: the database, its writer and its read pool.
// It is safe for concurrent use.
type DB struct {
	wdb *sql.DB   // the writer pool: exactly one connection
	wc  *sql.Conn // that connection, owned by the writer goroutine
	rdb *sql.DB   // read-only pool for queries
	r   readers   // rdb with prepared statements

	ident identity // the files opened, for CheckIdentity

	ops chan *writeOp // unbuffered: a sent op is always answered
	// sending counts the ops waiting to be handed to the writer: what a
	// test waits on to know that writes queued up behind a held one.
	sending   atomic.Int64
	closing   chan struct{}
	stopped   chan struct{}
	closeOnce sync.Once
	closeErr  error

	commits atomic.Int64 // transactions committed by the writer, for tests and benchmarks

	feed    events.Mark  // the event feed's visible mark (events.go)
	horizon atomic.Int64 // events up to this seq were purged
}

var _ store.Driver[*Tx] = (*DB)(nil)

// Open opens (creating if needed, parent directory included) the database
// at path, brings its schema up to date and starts the writer, under the
// store's policy for a single node.
func Open(path string, clk clock.Clock) (*Store, error) {
	d, err := OpenDB(path)
	if err != nil {
		return nil, err
	}
	return store.New(d, clk, store.Options[*Tx]{}), nil
}

// OpenDB opens the dialect alone: the database at path (created if needed,
// parent directory included), its schema brought up to date, the writer
// started.
func OpenDB(path string) (*DB, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}

	s := &DB{
		ops:     make(chan *writeOp),
		closing: make(chan struct{}),
		stopped: make(chan struct{}),
	}
	if err := s.open(abs); err != nil {
		s.closeDBs()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if err := s.ident.init(abs); err != nil {
		s.closeDBs()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	go s.run()
	return s, nil
}

func (s *DB) open(abs string) error {
	ctx := context.Background()
	var err error
	s.wdb, err = sql.Open("sqlite", dsn(abs,
		fmt.Sprintf("busy_timeout(%d)", busyTimeoutMS),
		"journal_mode(WAL)",
		"synchronous(FULL)",
	))
	if err != nil {
		return err
	}
	s.wdb.SetMaxOpenConns(1)
	s.wdb.SetMaxIdleConns(1)
	s.wdb.SetConnMaxLifetime(0)
	s.wdb.SetConnMaxIdleTime(0)
	if s.wc, err = s.wdb.Conn(ctx); err != nil {
		return err
	}
	// journal_mode is the one setting that can fail silently (it reports
	// the mode actually in force), so check it.
	var mode string
	if err := s.wc.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return err
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal_mode is %q, want wal", mode)
	}
	if err := migrate(ctx, s.wc); err != nil {
		return err
	}
	if err := s.loadFeed(ctx); err != nil {
		return err
	}

	s.rdb, err = sql.Open("sqlite", dsn(abs,
		fmt.Sprintf("busy_timeout(%d)", busyTimeoutMS),
		"query_only(1)",
	))
	if err != nil {
		return err
	}
	s.r.db = s.rdb
	s.rdb.SetMaxOpenConns(max(4, runtime.GOMAXPROCS(0)))
	s.rdb.SetMaxIdleConns(max(4, runtime.GOMAXPROCS(0)))
	return s.rdb.PingContext(ctx)
}

// dsn builds a "file:" URI for path with the given pragmas. The URI form
// (with the path escaped) matters: the driver cuts a plain file name at its
// first '?', so a state dir containing one would otherwise misparse.
func dsn(abs string, pragmas ...string) string {
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs)}
	q := make([]string, len(pragmas))
	for i, p := range pragmas {
		q[i] = "_pragma=" + url.QueryEscape(p)
	}
	return u.String() + "?" + strings.Join(q, "&")
}

// Close stops the writer (writes still queued get ErrClosed) and closes the
// database. It is safe to call more than once.
func (s *DB) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		<-s.stopped
		s.closeErr = s.closeDBs()
	})
	return s.closeErr
}

func (s *DB) closeDBs() error {
	// Readers first, so that the last connection to close (the one that
	// checkpoints the WAL into the database and removes it) is the writer.
	var errs []error
	if s.rdb != nil {
		s.r.close()
		errs = append(errs, s.rdb.Close())
	}
	if s.wc != nil {
		errs = append(errs, s.wc.Close())
	}
	if s.wdb != nil {
		errs = append(errs, s.wdb.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// Check runs PRAGMA quick_check through the read pool: it proves the
// database readable and structurally sound.
func (s *DB) Check(ctx context.Context) error {
	rows, err := s.rdb.QueryContext(ctx, "PRAGMA quick_check")
	if err != nil {
		return err
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return err
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

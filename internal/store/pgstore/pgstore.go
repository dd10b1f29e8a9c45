// Package pgstore is the store on PostgreSQL (github.com/jackc/pgx/v5),
// for several dispatch nodes sharing one database. It keeps the contract
// of store.Backend (internal/store/storetest runs the same suite against
// it and against the embedded SQLite store).
//
// Writes are ordinary transactions on a connection pool; PostgreSQL's own
// group commit batches the WAL flushes of concurrent commits. Every
// connection runs with synchronous_commit on, so a write that returns nil
// (an accepted message above all) is flushed to the server's WAL. The few
// writes whose loss in a crash of the database server is harmless (Claim,
// the outbox's delivery bookkeeping) commit with synchronous_commit off,
// as the SQLite store's lazy writes do.
//
// The event feed: a reader that has been given the events up to seq N
// must never later find a new event with seq ≤ N. PostgreSQL sequences
// hand out numbers at insert time and transactions commit in any order, so
// a sequence alone would break that. Here an event's seq is taken at the
// very end of its transaction, from a one-row counter (feed.last) updated
// as the transaction's last statement: the row lock that UPDATE takes is
// held until commit, so the transactions that write events commit one at a
// time in seq order, and any snapshot of the events table is a prefix of
// the feed. A reader needs no visible mark to be safe; the mark kept in
// memory (EventsVisible) only tells waiting readers when to look again,
// moved by this node's own commits and, for other nodes' commits, by a
// NOTIFY sent in the same transaction. The cost is that event-writing
// commits are serialized (one WAL flush each); accepts write no event and
// are not.
//
// A commit whose outcome is unknown (the connection broke during COMMIT)
// is reported as a storage error although it may have succeeded; clients
// resend with their client_id, which is idempotent.
package pgstore

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/store"
)

// writeTimeout bounds a write once it has started: past the caller's
// cancellation (a caller must not mistake a committed change for a failed
// one), but not forever when the database stops answering.
const writeTimeout = 30 * time.Second

// eventsChannel is the NOTIFY channel on which a commit that wrote events
// announces its largest seq.
const eventsChannel = "dispatch_events"

// Options tune a Store; zero values take the defaults.
type Options struct {
	// MaxConns is the pool's size (default 16).
	MaxConns int32
	// AppName is the connections' application_name (default "dispatch").
	AppName string
}

// Store is the durable store on PostgreSQL. It is safe for concurrent use.
type Store struct {
	clk  clock.Clock
	pool *pgxpool.Pool
	cfg  *pgxpool.Config

	fault  atomic.Pointer[store.FaultFunc]
	fanout atomic.Pointer[func(events.Type) []string]
	fencer atomic.Pointer[Fence]
	feed   events.Mark

	closed    atomic.Bool
	closeOnce sync.Once
	stop      context.CancelFunc
	bg        sync.WaitGroup
}

var _ store.Backend = (*Store)(nil)

// Open connects to the database at dsn, brings its schema up to date
// (several nodes starting at once apply each migration once) and starts
// listening for other nodes' events.
func Open(ctx context.Context, dsn string, clk clock.Clock, opt Options) (*Store, error) {
	if clk == nil {
		clk = clock.Real{}
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	cfg.MaxConns = opt.MaxConns
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 16
	}
	app := opt.AppName
	if app == "" {
		app = "dispatch"
	}
	rp := cfg.ConnConfig.RuntimeParams
	rp["application_name"] = app
	// Accepted means flushed to the server's WAL, whatever the server's
	// default.
	rp["synchronous_commit"] = "on"
	rp["timezone"] = "UTC"
	if _, ok := rp["statement_timeout"]; !ok {
		rp["statement_timeout"] = strconv.Itoa(int(writeTimeout / time.Millisecond))
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	s := &Store{clk: clk, pool: pool, cfg: cfg}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgstore: %w", classify(err))
	}
	var last int64
	if err := pool.QueryRow(ctx, `SELECT last FROM feed`).Scan(&last); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgstore: read event feed: %w", classify(err))
	}
	s.feed.Init(last)
	lctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	s.bg.Add(1)
	go s.listen(lctx)
	return s, nil
}

// Pool is the store's connection pool, for the cluster's own tables
// (leases, nodes) kept beside the store's.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// ConnConfig is a copy of the store's connection settings, for a
// connection of the caller's own (the cluster's wake-up listener).
func (s *Store) ConnConfig() *pgx.ConnConfig { return s.cfg.ConnConfig.Copy() }

// Close stops the listener and closes the pool. Writes after Close fail
// with store.ErrClosed. It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.stop()
		s.bg.Wait()
		s.pool.Close()
	})
	return nil
}

// InjectWriteFault makes every write call f first and fail with its error
// (classified), without reaching the database; nil removes the fault.
func (s *Store) InjectWriteFault(f store.FaultFunc) {
	if f == nil {
		s.fault.Store(nil)
		return
	}
	s.fault.Store(&f)
}

// SetWebhookFanout sets which webhook endpoints each new event is queued
// for; see store.Store.SetWebhookFanout.
func (s *Store) SetWebhookFanout(f func(events.Type) []string) {
	if f == nil {
		s.fanout.Store(nil)
		return
	}
	s.fanout.Store(&f)
}

// CheckIdentity is the SQLite store's probe that its file is still the one
// it opened; a server database has no such file, so it always passes.
func (s *Store) CheckIdentity() error { return nil }

// Ping proves the database takes durable writes.
func (s *Store) Ping(ctx context.Context) error {
	now := store.Nanos(s.clk.Now())
	err := s.write(ctx, false, func(ctx context.Context, tx *wtx) error {
		_, err := tx.Exec(ctx, `INSERT INTO meta (k, v) VALUES ('ping', $1)
			ON CONFLICT (k) DO UPDATE SET v = excluded.v`, now)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

// Check proves the database readable and its schema the one this build
// knows.
func (s *Store) Check(ctx context.Context) error {
	var v int
	if err := s.pool.QueryRow(ctx, `SELECT version FROM dispatch_schema`).Scan(&v); err != nil {
		return fmt.Errorf("store: check: %w", classify(err))
	}
	if v != len(migrations) {
		return fmt.Errorf("store: check: schema version %d, this build's is %d", v, len(migrations))
	}
	return nil
}

// wtx is a write transaction as a write op sees it: the events it appends
// are numbered and inserted at its end (see the package comment).
type wtx struct {
	pgx.Tx
	events []*events.Event
}

// appendEvent queues ev (numbered at commit) and returns where its number
// will be.
func (s *Store) appendEvent(tx *wtx, ev events.Event) (*events.Event, error) {
	if !ev.Type.Valid() {
		return nil, fmt.Errorf("unknown event type %q", ev.Type)
	}
	if ev.At.IsZero() {
		ev.At = s.clk.Now()
	}
	e := &ev
	tx.events = append(tx.events, e)
	return e, nil
}

// flushEvents numbers the transaction's events, inserts them with their
// webhook deliveries and announces them: the last statements before
// COMMIT, so that the feed's row lock is held as briefly as possible.
func (s *Store) flushEvents(ctx context.Context, tx *wtx) (int64, error) {
	n := len(tx.events)
	if n == 0 {
		return 0, nil
	}
	var last int64
	if err := tx.QueryRow(ctx, `UPDATE feed SET last = last + $1 RETURNING last`, n).Scan(&last); err != nil {
		return 0, fmt.Errorf("number events: %w", err)
	}
	var (
		seqs     = make([]int64, n)
		types    = make([]string, n)
		chats    = make([]string, n)
		ats      = make([]int64, n)
		payloads = make([]string, n)
		oEPs     []string
		oSeqs    []int64
		oChats   []string
		oAts     []int64
	)
	var fan func(events.Type) []string
	if f := s.fanout.Load(); f != nil {
		fan = *f
	}
	for i, e := range tx.events {
		seq := last - int64(n) + int64(i) + 1
		p, err := e.Payload()
		if err != nil {
			return 0, err
		}
		*e = e.WithSeq(seq)
		seqs[i], types[i], chats[i], ats[i], payloads[i] = seq, string(e.Type), e.ChatID, store.Nanos(e.At), string(p)
		if fan != nil {
			for _, ep := range fan(e.Type) {
				oEPs, oSeqs, oChats, oAts = append(oEPs, ep), append(oSeqs, seq), append(oChats, e.ChatID), append(oAts, store.Nanos(e.At))
			}
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO events (seq, type, chat_id, at, payload)
		SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[])`,
		seqs, types, chats, ats, payloads); err != nil {
		return 0, fmt.Errorf("append events: %w", err)
	}
	if len(oEPs) > 0 {
		if _, err := tx.Exec(ctx, `INSERT INTO webhook_outbox (endpoint, seq, chat_id, event_at, updated_at)
			SELECT e, q, c, a, a FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[]) AS t(e, q, c, a)`,
			oEPs, oSeqs, oChats, oAts); err != nil {
			return 0, fmt.Errorf("queue events for webhooks: %w", err)
		}
	}
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, eventsChannel, strconv.FormatInt(last, 10)); err != nil {
		return 0, err
	}
	return last, nil
}

// write runs fn in a transaction and commits it. lazy: the commit need not
// be flushed before the caller is answered (synchronous_commit off for
// this transaction). The caller's ctx bounds the wait for a connection;
// once the transaction has begun it runs to its end (bounded by
// writeTimeout), so that a cancelled caller is never told "failed" about a
// change that committed.
func (s *Store) write(ctx context.Context, lazy bool, fn func(ctx context.Context, tx *wtx) error) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if f := s.fault.Load(); f != nil {
		if err := (*f)(); err != nil {
			return classify(err)
		}
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if s.closed.Load() {
			return store.ErrClosed
		}
		return classify(err)
	}
	defer conn.Release()
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	defer cancel()
	ptx, err := conn.Begin(wctx)
	if err != nil {
		return classify(err)
	}
	tx := &wtx{Tx: ptx}
	defer func() { _ = ptx.Rollback(context.WithoutCancel(wctx)) }()
	if lazy {
		if _, err := tx.Exec(wctx, `SET LOCAL synchronous_commit = off`); err != nil {
			return classify(err)
		}
	}
	if err := fn(wctx, tx); err != nil {
		return classify(err)
	}
	last, err := s.flushEvents(wctx, tx)
	if err != nil {
		return classify(err)
	}
	if err := ptx.Commit(wctx); err != nil {
		return classify(err)
	}
	s.feed.Advance(last)
	return nil
}

// listen keeps a connection LISTENing for other nodes' events and moves
// the visible mark with them. After a lost connection it reads the feed's
// counter again, so notifications missed meanwhile are made up for.
func (s *Store) listen(ctx context.Context) {
	defer s.bg.Done()
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		_ = err
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (s *Store) listenOnce(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, s.cfg.ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `LISTEN `+eventsChannel); err != nil {
		return err
	}
	var last int64
	if err := conn.QueryRow(ctx, `SELECT last FROM feed`).Scan(&last); err != nil {
		return err
	}
	s.feed.Advance(last)
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if seq, err := strconv.ParseInt(n.Payload, 10, 64); err == nil {
			s.feed.Advance(seq)
		}
	}
}

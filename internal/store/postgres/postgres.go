// Package postgres is the store's PostgreSQL dialect
// (github.com/jackc/pgx/v5), for several dispatch nodes sharing one
// database. It holds the SQL and how this database is driven; the queue's
// policy is internal/store's, over it, and the cluster's (leases, fence,
// wake-ups) internal/cluster's, whose queries are in leases.go.
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
// NOTIFY sent after the commit (notify.go: never in the commit itself,
// where PostgreSQL's notification queue lock would serialize it with
// every other notifying commit) and by a poll of the counter every
// second. The cost is that event-writing commits are serialized (one WAL
// flush each); accepts write no event and are not.
//
// A commit whose outcome is unknown (the connection broke during COMMIT)
// is reported as a storage error although it may have succeeded; clients
// resend with their client_id, which is idempotent.
package postgres

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

// Options tune a DB; zero values take the defaults.
type Options struct {
	// MaxConns is the pool's size (default 16).
	MaxConns int32
	// AppName is the connections' application_name (default "dispatch").
	AppName string
	// LeaseTTL is the cluster's node.lease_ttl. A connection left idle
	// inside a transaction for half of it is ended by the server (see
	// idleInTransaction); zero: for as long as a write may take.
	LeaseTTL time.Duration
}

// idleInTransaction is the idle_in_transaction_session_timeout every
// connection runs with: how long the server lets a transaction sit with
// no statement running before it ends the session, rolling back and
// releasing its locks. A node paused (SIGSTOP, a frozen VM) between two
// statements of a transaction would otherwise keep its row and advisory
// locks for as long as the pause lasts, and the node that takes over its
// chats or roles would wait on them until its own statements time out.
//
// Half the lease ttl: leases are renewed every third of a ttl, so a node
// paused at time P renewed them no earlier than P - ttl/3 and they are
// free to another node from P + 2/3 ttl on; its transaction went idle no
// later than P, so the server has ended it by P + ttl/2, before anyone can
// take the leases. A running node's transactions never wait between
// statements on anything but this process (no network calls, no agents),
// so the limit only ends transactions of a process that stopped running;
// if a stall of a busy machine trips it, the write fails as a storage
// error and is retried. Without a ttl (a single node), writeTimeout.
func idleInTransaction(leaseTTL time.Duration) time.Duration {
	if leaseTTL <= 0 {
		return writeTimeout
	}
	return leaseTTL / 2
}

// Store is the store on PostgreSQL: the store's policy over this dialect.
type Store = store.Store[*Tx]

// DB is the PostgreSQL dialect: the connection pool and the feed's
// listener. It is safe for concurrent use.
type DB struct {
	pool  *pgxpool.Pool
	cfg   *pgxpool.Config
	feed  events.Mark
	notes notifier // notify.go

	closed    atomic.Bool
	closeOnce sync.Once
	stop      context.CancelFunc
	bgctx     context.Context // the background work's, ended by stop
	bg        sync.WaitGroup
}

var _ store.Driver[*Tx] = (*DB)(nil)

// OpenStore opens the database at dsn (see Open) under the store's policy
// for a single node; a cluster node builds its store with store.New and
// the cluster's fence instead.
func OpenStore(ctx context.Context, dsn string, clk clock.Clock, opt Options) (*Store, error) {
	d, err := Open(ctx, dsn, opt)
	if err != nil {
		return nil, err
	}
	return store.New(d, clk, store.Options[*Tx]{}), nil
}

// Open connects to the database at dsn, brings its schema up to date
// (several nodes starting at once apply each migration once) and starts
// listening for other nodes' events.
func Open(ctx context.Context, dsn string, opt Options) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
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
	// Always ours, whatever the dsn says: a longer one would let a paused
	// node stall the others (see idleInTransaction).
	rp["idle_in_transaction_session_timeout"] = strconv.Itoa(int(idleInTransaction(opt.LeaseTTL) / time.Millisecond))
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	s := &DB{pool: pool, cfg: cfg}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: %w", classify(err))
	}
	var last int64
	if err := pool.QueryRow(ctx, `SELECT last FROM feed`).Scan(&last); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: read event feed: %w", classify(err))
	}
	s.feed.Init(last)
	lctx, cancel := context.WithCancel(context.Background())
	s.stop, s.bgctx = cancel, lctx
	s.bg.Add(1)
	go s.listen(lctx)
	return s, nil
}

// Close stops the listener and closes the pool. Writes after Close fail
// with store.ErrClosed. It is safe to call more than once.
func (s *DB) Close() error {
	s.closeOnce.Do(func() {
		s.closeNotes()
		s.stop()
		s.bg.Wait()
		s.pool.Close()
	})
	return nil
}

// CheckIdentity is the SQLite store's probe that its file is still the one
// it opened; a server database has no such file, so it always passes.
func (s *DB) CheckIdentity() error { return nil }

// Check proves the database readable and its schema the one this build
// knows.
func (s *DB) Check(ctx context.Context) error {
	var v int
	if err := s.pool.QueryRow(ctx, `SELECT version FROM dispatch_schema`).Scan(&v); err != nil {
		return classify(err)
	}
	if v != len(migrations) {
		return fmt.Errorf("schema version %d, this build's is %d", v, len(migrations))
	}
	return nil
}

// Tx is a write transaction as the store's policy sees it (its one-query
// operations are its methods, in ops.go): the events it appends are
// numbered and inserted at its end (see the package comment).
type Tx struct {
	conn   *pgx.Conn
	events []queuedEvent
	// pend are the statements waiting to go with the next one, in the
	// same round trip (pipeline.go): the BEGIN until it is sent, the
	// chats' locks, and the statements whose answer nobody waits for.
	pend []stmt
	// begun: the BEGIN was sent; work: a statement other than BEGIN and
	// the locks was queued or sent (without one, there is nothing to
	// commit); done: committed or rolled back.
	begun, work, done bool
}

// queuedEvent is an event waiting for its number, with the endpoints it is
// queued for.
type queuedEvent struct {
	ev        *events.Event
	endpoints []string
}

// InsertEvent queues *ev, numbered and inserted with its webhook
// deliveries as the transaction's last statements.
func (t *Tx) InsertEvent(_ context.Context, ev *events.Event, endpoints []string) error {
	t.events = append(t.events, queuedEvent{ev, endpoints})
	return nil
}

// commit numbers the transaction's queued events, stores them with their
// webhook deliveries and commits, all in one round trip: one statement and
// COMMIT, pipelined. The feed counter's row lock, which orders every
// event-writing commit of every node behind the one before, is so held
// only for the server's own work and the commit's flush, never across a
// round trip. The other nodes' feeds are told after the commit (Write,
// notify.go). It returns the last seq numbered (0: none).
func (s *DB) commit(ctx context.Context, tx *Tx) (int64, error) {
	n := len(tx.events)
	if n == 0 && !tx.work {
		tx.done = true // nothing ran: nothing to commit
		return 0, nil
	}
	b := tx.batch()
	if n == 0 {
		return 0, tx.commitBatch(ctx, b)
	}
	var (
		types    = make([]string, n)
		chats    = make([]string, n)
		ats      = make([]int64, n)
		payloads = make([]string, n)
		oEPs     []string
		oIdx     []int64 // the event's place in this commit, from 1
		oChats   []string
		oAts     []int64
	)
	for i, q := range tx.events {
		e := q.ev
		p, err := e.Payload()
		if err != nil {
			return 0, err
		}
		types[i], chats[i], ats[i], payloads[i] = string(e.Type), e.ChatID, store.Nanos(e.At), string(p)
		for _, ep := range q.endpoints {
			oEPs, oIdx, oChats, oAts = append(oEPs, ep), append(oIdx, int64(i+1)), append(oChats, e.ChatID), append(oAts, store.Nanos(e.At))
		}
	}
	var last int64
	b.Queue(`WITH c AS (UPDATE feed SET last = last + $1 RETURNING last),
		e AS (INSERT INTO events (seq, type, chat_id, at, payload)
			SELECT c.last - $1 + t.i, t.ty, t.ch, t.at, t.p FROM c,
				unnest($2::text[], $3::text[], $4::bigint[], $5::text[]) WITH ORDINALITY AS t(ty, ch, at, p, i)),
		o AS (INSERT INTO webhook_outbox (endpoint, seq, chat_id, event_at, updated_at)
			SELECT u.ep, c.last - $1 + u.i, u.ch, u.a, u.a FROM c,
				unnest($6::text[], $7::bigint[], $8::text[], $9::bigint[]) AS u(ep, i, ch, a))
		SELECT c.last FROM c`,
		n, types, chats, ats, payloads, oEPs, oIdx, oChats, oAts).
		QueryRow(func(row pgx.Row) error {
			if err := row.Scan(&last); err != nil {
				return fmt.Errorf("append events: %w", err)
			}
			return nil
		})
	if err := tx.commitBatch(ctx, b); err != nil {
		return 0, err
	}
	for i, q := range tx.events {
		*q.ev = q.ev.WithSeq(last - int64(n) + int64(i) + 1)
	}
	return last, nil
}

// Write runs fn in a transaction and commits it. lazy: the commit need not
// be flushed before the caller is answered (synchronous_commit off for
// this transaction). The caller's ctx bounds the wait for a connection;
// once the transaction has begun it runs to its end (bounded by
// writeTimeout), so that a cancelled caller is never told "failed" about a
// change that committed.
func (s *DB) Write(ctx context.Context, lazy bool, fn func(ctx context.Context, tx *Tx) error) error {
	conn, err := s.acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	defer cancel()
	// The BEGIN goes with the transaction's first statement; a lazy write
	// also switches its commit to asynchronous there.
	tx := &Tx{conn: conn.Conn()}
	tx.queue(false, "BEGIN")
	if lazy {
		tx.queue(false, "SET LOCAL synchronous_commit = off")
	}
	defer tx.rollback(context.WithoutCancel(wctx))
	if err := fn(wctx, tx); err != nil {
		return classify(err)
	}
	last, err := s.commit(wctx, tx)
	if err != nil {
		return classify(err)
	}
	s.feed.Advance(last)
	if last > 0 {
		s.notifyFeed(last)
	}
	return nil
}

// acquire takes a pool connection for a write; ctx bounds the wait.
func (s *DB) acquire(ctx context.Context) (*pgxpool.Conn, error) {
	if s.closed.Load() {
		return nil, store.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if s.closed.Load() {
			return nil, store.ErrClosed
		}
		return nil, classify(err)
	}
	return conn, nil
}

// listen keeps a connection LISTENing for other nodes' events and moves
// the visible mark with them. After a lost connection it reads the feed's
// counter again, so notifications missed meanwhile are made up for, and
// it reads it every feedPoll as well, for a notification that was never
// sent (notify.go).
func (s *DB) listen(ctx context.Context) {
	defer s.bg.Done()
	s.bg.Add(1)
	go s.pollFeed(ctx)
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, eventsChannel, func(conn *pgx.Conn) error {
			var last int64
			if err := conn.QueryRow(ctx, `SELECT last FROM feed`).Scan(&last); err != nil {
				return err
			}
			s.feed.Advance(last)
			return nil
		}, func(payload string) {
			if seq, err := strconv.ParseInt(payload, 10, 64); err == nil {
				s.feed.Advance(seq)
			}
		})
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

// pollFeed reads the feed's counter every feedPoll until ctx ends.
func (s *DB) pollFeed(ctx context.Context) {
	defer s.bg.Done()
	t := time.NewTicker(feedPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var last int64
		if err := s.pool.QueryRow(ctx, `SELECT last FROM feed`).Scan(&last); err == nil {
			s.feed.Advance(last)
		}
	}
}

// listenOnce opens a connection of its own, LISTENs on channel, runs
// ready (if any) and hands every notification's payload to fn until the
// connection fails or ctx ends.
func (s *DB) listenOnce(ctx context.Context, channel string, ready func(*pgx.Conn) error, fn func(payload string)) error {
	conn, err := pgx.ConnectConfig(ctx, s.cfg.ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `LISTEN `+channel); err != nil {
		return err
	}
	if ready != nil {
		if err := ready(conn); err != nil {
			return err
		}
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		fn(n.Payload)
	}
}

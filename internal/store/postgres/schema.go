package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// migrations[i] brings the schema from version i to i+1 (dispatch_schema).
// Append only: a shipped migration never changes.
//
// Times are unix nanoseconds in bigint columns, as in the SQLite store.
var migrations = []string{
	// 1: the store's tables. A chat's pending messages in seq order
	// (Claim) come from (chat_id, state, seq); the per-state scans
	// (counts, chats with pending, purge) from (state, seq). The feed's
	// counter is one row (see the package comment); events take their seq
	// from it, not from a sequence.
	`
CREATE TABLE messages (
	seq        bigserial PRIMARY KEY,
	id         text    NOT NULL UNIQUE,
	chat_id    text    NOT NULL,
	text       text    NOT NULL,
	state      text    NOT NULL,
	attempts   integer NOT NULL DEFAULT 0,
	failures   integer NOT NULL DEFAULT 0,
	error      text    NOT NULL DEFAULT '',
	reply      text    NOT NULL DEFAULT '',
	created_at bigint  NOT NULL,
	updated_at bigint  NOT NULL,
	kept_in    text    NOT NULL DEFAULT '',
	client_id  text,
	turn_id    text    NOT NULL DEFAULT ''
);
CREATE INDEX messages_chat_state ON messages (chat_id, state, seq);
CREATE INDEX messages_state ON messages (state, seq);
CREATE UNIQUE INDEX messages_chat_client ON messages (chat_id, client_id) WHERE client_id IS NOT NULL;

CREATE TABLE sessions (
	chat_id       text    PRIMARY KEY,
	session_id    text    NOT NULL DEFAULT '',
	exempt        boolean NOT NULL DEFAULT false,
	live          boolean NOT NULL DEFAULT false,
	failed        boolean NOT NULL DEFAULT false,
	fail_reason   text    NOT NULL DEFAULT '',
	turns         bigint  NOT NULL DEFAULT 0,
	restarts      bigint  NOT NULL DEFAULT 0,
	created_at    bigint  NOT NULL,
	last_activity bigint  NOT NULL,
	paused        boolean NOT NULL DEFAULT false
);

CREATE TABLE meta (k text PRIMARY KEY, v bigint NOT NULL);

CREATE TABLE feed (
	one  boolean PRIMARY KEY DEFAULT true CHECK (one),
	last bigint  NOT NULL
);
INSERT INTO feed (one, last) VALUES (true, 0);

CREATE TABLE events (
	seq     bigint PRIMARY KEY,
	type    text   NOT NULL,
	chat_id text   NOT NULL DEFAULT '',
	at      bigint NOT NULL,
	payload text   NOT NULL
);
CREATE INDEX events_chat ON events (chat_id, seq);

CREATE TABLE webhook_outbox (
	endpoint   text    NOT NULL,
	seq        bigint  NOT NULL,
	chat_id    text    NOT NULL,
	event_at   bigint  NOT NULL,
	state      text    NOT NULL DEFAULT 'pending',
	attempts   integer NOT NULL DEFAULT 0,
	first_at   bigint  NOT NULL DEFAULT 0,
	next_at    bigint  NOT NULL DEFAULT 0,
	error      text    NOT NULL DEFAULT '',
	updated_at bigint  NOT NULL,
	PRIMARY KEY (endpoint, seq)
);
`,
	// 2: the cluster's tables. A node's row is its heartbeat; a lease
	// names a chat's owner node with a fencing token that only grows (see
	// fence.go). roles are leases on work only one node does at a time
	// (webhook delivery). Expiry is the database's clock, never a node's.
	`
CREATE TABLE nodes (
	id           text        PRIMARY KEY,
	incarnation  text        NOT NULL,
	max_live     integer     NOT NULL DEFAULT 0,
	started_at   timestamptz NOT NULL,
	heartbeat_at timestamptz NOT NULL,
	stopped      boolean     NOT NULL DEFAULT false
);

CREATE TABLE leases (
	chat_id     text        PRIMARY KEY,
	owner       text        NOT NULL,
	token       bigint      NOT NULL,
	expires_at  timestamptz NOT NULL,
	acquired_at timestamptz NOT NULL
);
CREATE INDEX leases_owner ON leases (owner);

CREATE TABLE roles (
	name        text        PRIMARY KEY,
	owner       text        NOT NULL,
	token       bigint      NOT NULL,
	expires_at  timestamptz NOT NULL,
	acquired_at timestamptz NOT NULL
);
`,
	// 3: agents' conversation files, so that a chat's conversation moves
	// with the chat to another node. A file is the concatenation of its
	// chunks in offset order; a save appends a chunk for what was added.
	`
CREATE TABLE conversation_files (
	chat_id text   NOT NULL,
	path    text   NOT NULL,
	size    bigint NOT NULL,
	hash    bytea  NOT NULL,
	PRIMARY KEY (chat_id, path)
);
CREATE TABLE conversation_chunks (
	chat_id text   NOT NULL,
	path    text   NOT NULL,
	off     bigint NOT NULL,
	data    bytea  NOT NULL,
	PRIMARY KEY (chat_id, path, off)
);
`,
	// Permission requests (open while decision is empty) and the
	// allow_always rules, one per chat and tool; progress events are
	// found by type to be dropped when their turn ends.
	`
CREATE TABLE permission_requests (
	id          text   PRIMARY KEY,
	chat_id     text   NOT NULL,
	agent_id    text   NOT NULL DEFAULT '',
	tool_use_id text   NOT NULL DEFAULT '',
	tool        text   NOT NULL,
	summary     text   NOT NULL DEFAULT '',
	input       text   NOT NULL DEFAULT '',
	created_at  bigint NOT NULL,
	expires_at  bigint NOT NULL,
	decision    text   NOT NULL DEFAULT '',
	decided_by  text   NOT NULL DEFAULT '',
	decided_at  bigint NOT NULL DEFAULT 0,
	reason      text   NOT NULL DEFAULT ''
);
CREATE INDEX permission_requests_open ON permission_requests (chat_id) WHERE decision = '';
CREATE TABLE permission_rules (
	chat_id    text   NOT NULL,
	tool       text   NOT NULL,
	created_at bigint NOT NULL,
	created_by text   NOT NULL DEFAULT '',
	PRIMARY KEY (chat_id, tool)
);
CREATE INDEX events_progress ON events (chat_id) WHERE type = 'progress';
`,
	// 5: channels' cursors and deliveries (channels.go).
	channelsSchema,
	// 6: schedules (schedules.go).
	schedulesSchema,
}

// migrateLock is the session-level advisory lock key under which a node
// migrates, so that nodes starting together apply each migration once.
const migrateLock int64 = 0x64697370_00000001

// migrate applies the migrations the database has not seen yet, each in
// its own transaction together with its version bump. A database newer
// than this build is refused rather than guessed at.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrateLock); err != nil {
		return fmt.Errorf("lock for migration: %w", err)
	}
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, migrateLock) }()
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS dispatch_schema (
		one boolean PRIMARY KEY DEFAULT true CHECK (one), version integer NOT NULL)`); err != nil {
		return fmt.Errorf("create schema table: %w", err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO dispatch_schema (one, version) VALUES (true, 0) ON CONFLICT DO NOTHING`); err != nil {
		return fmt.Errorf("create schema table: %w", err)
	}
	var v int
	if err := conn.QueryRow(ctx, `SELECT version FROM dispatch_schema`).Scan(&v); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if v > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this build's %d", v, len(migrations))
	}
	for ; v < len(migrations); v++ {
		tx, err := conn.Begin(ctx)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, migrations[v])
		if err == nil {
			_, err = tx.Exec(ctx, `UPDATE dispatch_schema SET version = $1`, v+1)
		}
		if err == nil {
			err = tx.Commit(ctx)
		}
		if err != nil {
			_ = tx.Rollback(ctx)
			return fmt.Errorf("migrate schema to version %d: %w", v+1, err)
		}
	}
	return nil
}

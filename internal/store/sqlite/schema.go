package sqlite

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations[i] brings the schema from version i to i+1 (PRAGMA
// user_version). Append only: a shipped migration never changes.
var migrations = []string{
	// 1: messages and sessions.
	//
	// seq is the rowid; AUTOINCREMENT keeps it from ever being reused, so
	// it is a true global arrival order even after the newest message is
	// dropped. An index entry ends with the rowid, so the one index
	// (state, chat_id) serves "this chat's pending messages in seq order"
	// (Claim), per-chat pending counts and per-state counts without
	// touching the table. Each extra index costs every write a page, so
	// there is no (chat_id, state) twin.
	`
CREATE TABLE messages (
	seq        INTEGER PRIMARY KEY AUTOINCREMENT,
	id         TEXT    NOT NULL UNIQUE,
	chat_id    TEXT    NOT NULL,
	text       TEXT    NOT NULL,
	state      TEXT    NOT NULL,
	attempts   INTEGER NOT NULL DEFAULT 0,
	failures   INTEGER NOT NULL DEFAULT 0,
	error      TEXT    NOT NULL DEFAULT '',
	reply      TEXT    NOT NULL DEFAULT '',
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL
);
CREATE INDEX messages_state_chat ON messages (state, chat_id);

CREATE TABLE sessions (
	chat_id       TEXT    PRIMARY KEY,
	session_id    TEXT    NOT NULL DEFAULT '',
	exempt        INTEGER NOT NULL DEFAULT 0,
	live          INTEGER NOT NULL DEFAULT 0,
	failed        INTEGER NOT NULL DEFAULT 0,
	fail_reason   TEXT    NOT NULL DEFAULT '',
	turns         INTEGER NOT NULL DEFAULT 0,
	restarts      INTEGER NOT NULL DEFAULT 0,
	created_at    INTEGER NOT NULL,
	last_activity INTEGER NOT NULL
) WITHOUT ROWID;
`,
	// 2: a key/value table for the daemon's own bookkeeping (the readiness
	// probe's write).
	`CREATE TABLE meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID;`,
	// 3: the agent conversation that already holds a message from a turn
	// the API failed (agents that keep such turns): a retry skips its text.
	`ALTER TABLE messages ADD COLUMN kept_in TEXT NOT NULL DEFAULT '';`,
	// 4: a client's own key for a message is scoped to its chat; message
	// ids are always dispatch's. Before this version a client could choose
	// the message id itself, so every existing id becomes its message's
	// client_id: a front-end that resends an old id after the upgrade is
	// still answered as a duplicate, and only within its own chat. Sessions
	// gain the operator's hold (paused).
	`
ALTER TABLE messages ADD COLUMN client_id TEXT;
UPDATE messages SET client_id = id;
CREATE UNIQUE INDEX messages_chat_client ON messages (chat_id, client_id) WHERE client_id IS NOT NULL;
ALTER TABLE sessions ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
`,
	// 5: the event feed and the webhook outbox. An event's seq is its
	// rowid; AUTOINCREMENT keeps a purged seq from ever coming back, so a
	// reader's cursor stays meaningful across purges. Its type-specific
	// fields are kept as JSON (payload). Each answered message records the
	// turn that answered it (turn_id); the turn's reply event names it too.
	// webhook_outbox holds, for each endpoint, the events it still has to
	// deliver (pending) or gave up on (failed); a row is written in the
	// same commit as its event and deleted once delivered.
	`
CREATE TABLE events (
	seq     INTEGER PRIMARY KEY AUTOINCREMENT,
	type    TEXT    NOT NULL,
	chat_id TEXT    NOT NULL DEFAULT '',
	at      INTEGER NOT NULL,
	payload TEXT    NOT NULL
);
CREATE INDEX events_chat ON events (chat_id);
ALTER TABLE messages ADD COLUMN turn_id TEXT NOT NULL DEFAULT '';
CREATE TABLE webhook_outbox (
	endpoint   TEXT    NOT NULL,
	seq        INTEGER NOT NULL,
	chat_id    TEXT    NOT NULL,
	event_at   INTEGER NOT NULL,
	state      TEXT    NOT NULL DEFAULT 'pending',
	attempts   INTEGER NOT NULL DEFAULT 0,
	first_at   INTEGER NOT NULL DEFAULT 0,
	next_at    INTEGER NOT NULL DEFAULT 0,
	error      TEXT    NOT NULL DEFAULT '',
	updated_at INTEGER NOT NULL,
	PRIMARY KEY (endpoint, seq)
) WITHOUT ROWID;
`,
	// 6: agents' conversation files (the same tables as PostgreSQL's). A
	// file is the concatenation of its chunks in offset order; a save
	// appends a chunk for what was added.
	`
CREATE TABLE conversation_files (
	chat_id TEXT    NOT NULL,
	path    TEXT    NOT NULL,
	size    INTEGER NOT NULL,
	hash    BLOB    NOT NULL,
	PRIMARY KEY (chat_id, path)
) WITHOUT ROWID;
CREATE TABLE conversation_chunks (
	chat_id TEXT    NOT NULL,
	path    TEXT    NOT NULL,
	off     INTEGER NOT NULL,
	data    BLOB    NOT NULL,
	PRIMARY KEY (chat_id, path, off)
) WITHOUT ROWID;
`,
	// 7: permission requests (open while decision is empty) and the
	// allow_always rules, one per chat and tool; progress events are
	// found by type to be dropped when their turn ends.
	`
CREATE TABLE permission_requests (
	id          TEXT    PRIMARY KEY,
	chat_id     TEXT    NOT NULL,
	agent_id    TEXT    NOT NULL DEFAULT '',
	tool_use_id TEXT    NOT NULL DEFAULT '',
	tool        TEXT    NOT NULL,
	summary     TEXT    NOT NULL DEFAULT '',
	input       TEXT    NOT NULL DEFAULT '',
	created_at  INTEGER NOT NULL,
	expires_at  INTEGER NOT NULL,
	decision    TEXT    NOT NULL DEFAULT '',
	decided_by  TEXT    NOT NULL DEFAULT '',
	decided_at  INTEGER NOT NULL DEFAULT 0,
	reason      TEXT    NOT NULL DEFAULT ''
) WITHOUT ROWID;
CREATE INDEX permission_requests_open ON permission_requests (decision, chat_id);
CREATE TABLE permission_rules (
	chat_id    TEXT    NOT NULL,
	tool       TEXT    NOT NULL,
	created_at INTEGER NOT NULL,
	created_by TEXT    NOT NULL DEFAULT '',
	PRIMARY KEY (chat_id, tool)
) WITHOUT ROWID;
CREATE INDEX events_type ON events (type) WHERE type = 'progress';
`,
	// 8: channels' cursors and deliveries (channels.go).
	channelsSchema,
	// 9: schedules (schedules.go).
	schedulesSchema,
}

// migrate applies the migrations the database has not seen yet, each in its
// own transaction together with its user_version bump. A database newer
// than this build is refused rather than guessed at.
func migrate(ctx context.Context, c *sql.Conn) error {
	var v int
	if err := c.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if v > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this build's %d", v, len(migrations))
	}
	for ; v < len(migrations); v++ {
		if err := migrateOne(ctx, c, v); err != nil {
			return fmt.Errorf("migrate schema to version %d: %w", v+1, err)
		}
	}
	return nil
}

func migrateOne(ctx context.Context, c *sql.Conn, from int) error {
	if _, err := c.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	_, err := c.ExecContext(ctx, migrations[from])
	if err == nil {
		// PRAGMA takes no bound parameters; from+1 is our own integer.
		_, err = c.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", from+1))
	}
	if err == nil {
		_, err = c.ExecContext(ctx, "COMMIT")
	}
	if err != nil {
		_, _ = c.ExecContext(ctx, "ROLLBACK")
	}
	return err
}

package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"strings"

	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/store"
)

// The store's one-query operations in SQLite's SQL: the write ones on
// Tx, the reads on DB.

const msgCols = store.MessageColumns

// LockChat: the single writer already runs one transaction at a time.
func (t *Tx) LockChat(context.Context, string) error { return nil }

func (t *Tx) ChatsOf(ctx context.Context, ids []string) ([]string, error) {
	rows, err := t.QueryContext(ctx, `SELECT DISTINCT chat_id FROM messages WHERE id IN (`+placeholders(len(ids))+`)`, withIDs(nil, ids)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return store.ScanAll(rows, store.ScanString)
}

func (t *Tx) InsertMessage(ctx context.Context, m store.NewMessage) (bool, error) {
	var client any // NULL: no client key
	if m.ClientID != "" {
		client = m.ClientID
	}
	res, err := t.ExecContext(ctx, `INSERT INTO messages
		(id, chat_id, text, state, created_at, updated_at, client_id)
		VALUES (?, ?, ?, 'pending', ?, ?, ?)
		ON CONFLICT DO NOTHING`,
		m.ID, m.ChatID, m.Text, m.At, m.At, client)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

func (t *Tx) MessageByClient(ctx context.Context, chat, client string) (id, text string, err error) {
	err = t.QueryRowContext(ctx, `SELECT id, text FROM messages
		WHERE chat_id = ? AND client_id = ?`, chat, client).Scan(&id, &text)
	return id, text, err
}

func (t *Tx) PendingMessages(ctx context.Context, chat string, n int) ([]store.Message, error) {
	rows, err := t.QueryContext(ctx, `SELECT `+msgCols+` FROM messages
		WHERE chat_id = ? AND state = 'pending' ORDER BY seq LIMIT ?`, chat, n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return store.ScanAll(rows, store.ScanMessage)
}

func (t *Tx) MarkInflight(ctx context.Context, msgs []store.Message, now int64) error {
	args := make([]any, 1, 1+len(msgs))
	args[0] = now
	for _, m := range msgs {
		args = append(args, m.Seq)
	}
	_, err := t.ExecContext(ctx, `UPDATE messages
		SET state = 'inflight', attempts = attempts + 1, updated_at = ?
		WHERE seq IN (`+placeholders(len(msgs))+`)`, args...)
	return err
}

func (t *Tx) MarkDone(ctx context.Context, ids []string, reply, turn string, now int64) ([]store.Answered, error) {
	rows, err := t.QueryContext(ctx, `UPDATE messages
		SET state = 'done', reply = ?, error = '', updated_at = ?, turn_id = ?
		WHERE state = 'inflight' AND id IN (`+placeholders(len(ids))+`)
		RETURNING seq, id, chat_id`,
		withIDs([]any{reply, now, turn}, ids)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return store.ScanAll(rows, store.ScanAnswered)
}

func (t *Tx) MarkPending(ctx context.Context, ids []string, errText, keptIn string, now int64) error {
	_, err := t.ExecContext(ctx, `UPDATE messages
		SET state = 'pending', error = ?, updated_at = ?,
			kept_in = CASE WHEN ? = '' THEN kept_in ELSE ? END
		WHERE state = 'inflight' AND id IN (`+placeholders(len(ids))+`)`,
		withIDs([]any{errText, now, keptIn, keptIn}, ids)...)
	return err
}

func (t *Tx) MarkFailed(ctx context.Context, ids []string, errText string, maxAttempts int, now int64) ([]store.Failed, error) {
	rows, err := t.QueryContext(ctx, `UPDATE messages
		SET failures = failures + 1, error = ?, updated_at = ?,
			state = CASE WHEN failures + 1 >= ? THEN 'dead' ELSE 'pending' END
		WHERE state = 'inflight' AND id IN (`+placeholders(len(ids))+`)
		RETURNING seq, id, chat_id, state`,
		withIDs([]any{errText, now, maxAttempts}, ids)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return store.ScanAll(rows, store.ScanFailed)
}

func (t *Tx) ResetInflight(ctx context.Context, now int64) (int64, error) {
	res, err := t.ExecContext(ctx, `UPDATE messages
		SET state = 'pending', updated_at = ? WHERE state = 'inflight'`, now)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (t *Tx) DeadChat(ctx context.Context, id string) (string, error) {
	var chat string
	err := t.QueryRowContext(ctx, `SELECT chat_id FROM messages WHERE id = ? AND state = 'dead'`, id).Scan(&chat)
	if errors.Is(err, sql.ErrNoRows) {
		return "", store.ErrNotFound
	}
	return chat, err
}

// RequeueDead gives the message a new rowid, which is its new Seq:
// AUTOINCREMENT only advances on INSERT, hence delete and re-insert rather
// than UPDATE seq.
func (t *Tx) RequeueDead(ctx context.Context, id string, now int64) (bool, error) {
	m, err := store.ScanMessage(t.QueryRowContext(ctx, `SELECT `+msgCols+` FROM messages WHERE id = ? AND state = 'dead'`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if _, err := t.ExecContext(ctx, `DELETE FROM messages WHERE seq = ?`, m.Seq); err != nil {
		return false, err
	}
	var client any
	if m.ClientID != "" {
		client = m.ClientID
	}
	_, err = t.ExecContext(ctx, `INSERT INTO messages
		(id, chat_id, text, state, attempts, failures, error, reply, created_at, updated_at, client_id)
		VALUES (?, ?, ?, 'pending', ?, 0, ?, ?, ?, ?, ?)`,
		m.ID, m.ChatID, m.Text, m.Attempts, m.Error, m.Reply, store.Nanos(m.CreatedAt), now, client)
	return err == nil, err
}

func (t *Tx) DeleteDead(ctx context.Context, id string) (bool, error) {
	res, err := t.ExecContext(ctx, `DELETE FROM messages WHERE id = ? AND state = 'dead'`, id)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

func (t *Tx) DeleteDone(ctx context.Context, before int64, n int) (int64, error) {
	res, err := t.ExecContext(ctx, `DELETE FROM messages WHERE seq IN (
		SELECT seq FROM messages WHERE state = 'done' AND updated_at < ? LIMIT ?)`, before, n)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (t *Tx) SessionFailed(ctx context.Context, chat string) (bool, error) {
	var failed bool
	err := t.QueryRowContext(ctx, `SELECT failed FROM sessions WHERE chat_id = ?`, chat).Scan(&failed)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return failed, err
}

func (t *Tx) UpsertSession(ctx context.Context, r store.SessionRecord, created, given int64) error {
	_, err := t.ExecContext(ctx, `INSERT INTO sessions
			(chat_id, session_id, exempt, live, failed, fail_reason, turns, restarts, created_at, last_activity, paused)
			VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?12)
			ON CONFLICT (chat_id) DO UPDATE SET
				session_id = excluded.session_id,
				exempt = excluded.exempt,
				live = excluded.live,
				failed = excluded.failed,
				fail_reason = excluded.fail_reason,
				turns = excluded.turns,
				restarts = excluded.restarts,
				created_at = CASE WHEN ?11 = 0 THEN sessions.created_at ELSE excluded.created_at END,
				last_activity = excluded.last_activity,
				paused = excluded.paused`,
		r.ChatID, r.SessionID, r.Exempt, r.Live, r.Failed, r.FailReason,
		r.Turns, r.Restarts, created, store.Nanos(r.LastActivity), given, r.Paused)
	return err
}

// InsertEvent numbers the event by its AUTOINCREMENT rowid at once; the
// writer moves the feed's visible mark past it after the commit.
func (t *Tx) InsertEvent(ctx context.Context, ev *events.Event, endpoints []string) error {
	payload, err := ev.Payload()
	if err != nil {
		return err
	}
	at := store.Nanos(ev.At)
	var seq int64
	if err := t.QueryRowContext(ctx, `INSERT INTO events (type, chat_id, at, payload)
		VALUES (?, ?, ?, ?) RETURNING seq`, string(ev.Type), ev.ChatID, at, string(payload)).Scan(&seq); err != nil {
		return err
	}
	for _, ep := range endpoints {
		if _, err := t.ExecContext(ctx, `INSERT INTO webhook_outbox (endpoint, seq, chat_id, event_at, updated_at)
			VALUES (?, ?, ?, ?, ?)`, ep, seq, ev.ChatID, at, at); err != nil {
			return err
		}
	}
	t.noteEvent(seq)
	*ev = ev.WithSeq(seq)
	return nil
}

func (t *Tx) OutboxDelete(ctx context.Context, endpoint string, seqs []int64) error {
	args := []any{endpoint}
	for _, q := range seqs {
		args = append(args, q)
	}
	_, err := t.ExecContext(ctx, `DELETE FROM webhook_outbox
		WHERE endpoint = ? AND seq IN (`+placeholders(len(seqs))+`)`, args...)
	return err
}

func (t *Tx) OutboxAttempt(ctx context.Context, r store.OutboxRow, now int64) error {
	_, err := t.ExecContext(ctx, `UPDATE webhook_outbox
		SET attempts = ?, first_at = ?, next_at = ?, error = ?, updated_at = ?
		WHERE endpoint = ? AND seq = ? AND state = 'pending'`,
		r.Attempts, store.Nanos(r.FirstAt), store.Nanos(r.NextAt), r.Error, now, r.Endpoint, r.Seq)
	return err
}

func (t *Tx) OutboxGiveUp(ctx context.Context, r store.OutboxRow, now int64) error {
	_, err := t.ExecContext(ctx, `UPDATE webhook_outbox
		SET state = 'failed', attempts = ?, first_at = ?, next_at = 0, error = ?, updated_at = ?
		WHERE endpoint = ? AND seq = ? AND state = 'pending'`,
		r.Attempts, store.Nanos(r.FirstAt), r.Error, now, r.Endpoint, r.Seq)
	return err
}

func (t *Tx) OutboxRetry(ctx context.Context, endpoint string, now int64) ([]store.OutboxRow, error) {
	rows, err := t.QueryContext(ctx, `UPDATE webhook_outbox
		SET state = 'pending', attempts = 0, first_at = 0, next_at = 0, updated_at = ?
		WHERE endpoint = ? AND state = 'failed'
		RETURNING `+store.OutboxColumns, now, endpoint)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return store.ScanAll(rows, store.ScanOutbox)
}

func (t *Tx) SaveConversationFile(ctx context.Context, chat string, c store.ConvChange) error {
	if c.Replace {
		if _, err := t.ExecContext(ctx, `DELETE FROM conversation_chunks WHERE chat_id = ? AND path = ?`, chat, c.Path); err != nil {
			return err
		}
	}
	if len(c.Data) > 0 {
		if _, err := t.ExecContext(ctx, `INSERT INTO conversation_chunks (chat_id, path, off, data) VALUES (?, ?, ?, ?)
			ON CONFLICT (chat_id, path, off) DO UPDATE SET data = excluded.data`, chat, c.Path, c.Offset, c.Data); err != nil {
			return err
		}
	}
	_, err := t.ExecContext(ctx, `INSERT INTO conversation_files (chat_id, path, size, hash) VALUES (?, ?, ?, ?)
		ON CONFLICT (chat_id, path) DO UPDATE SET size = excluded.size, hash = excluded.hash`, chat, c.Path, c.Size, c.Hash)
	return err
}

func (t *Tx) SetMeta(ctx context.Context, k string, v int64) error {
	_, err := t.ExecContext(ctx, `INSERT INTO meta (k, v) VALUES (?, ?)
		ON CONFLICT (k) DO UPDATE SET v = excluded.v`, k, v)
	return err
}

// Reads.

func (s *DB) Message(ctx context.Context, id string) (store.Message, error) {
	m, err := store.ScanMessage(s.r.QueryRowContext(ctx, `SELECT `+msgCols+` FROM messages WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Message{}, store.ErrNotFound
	}
	return m, err
}

// filterWhere is the WHERE clause of a message filter.
func filterWhere(f store.Filter, where []string, args []any) ([]string, []any) {
	if f.ChatID != "" {
		where = append(where, "chat_id = ?")
		args = append(args, f.ChatID)
	}
	if f.State == "" {
		where = append(where, "state IN ('pending', 'inflight', 'dead')")
	} else {
		where = append(where, "state = ?")
		args = append(args, string(f.State))
	}
	return where, args
}

func (s *DB) Messages(ctx context.Context, f store.Filter, limit int) ([]store.Message, error) {
	where, args := filterWhere(f, nil, nil)
	rows, err := s.r.QueryContext(ctx, `SELECT `+msgCols+` FROM messages
		WHERE `+strings.Join(where, " AND ")+` ORDER BY seq LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return store.ScanAll(rows, store.ScanMessage)
}

func (s *DB) MessagePage(ctx context.Context, f store.Filter, after int64, limit, clip int) ([]store.Listed, error) {
	where, args := filterWhere(f, []string{"seq > ?"}, []any{clip, clip, clip, after})
	rows, err := s.r.QueryContext(ctx, `SELECT seq, id, chat_id,
			substr(text, 1, ?), length(CAST(text AS BLOB)),
			substr(reply, 1, ?), length(CAST(reply AS BLOB)),
			substr(error, 1, ?), length(CAST(error AS BLOB)),
			state, attempts, failures, created_at, updated_at, kept_in, coalesce(client_id, ''), turn_id
		FROM messages WHERE `+strings.Join(where, " AND ")+` ORDER BY seq LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return store.ScanAll(rows, store.ScanListed)
}

func (s *DB) Counts(ctx context.Context) (store.Counts, error) {
	var c store.Counts
	rows, err := s.r.QueryContext(ctx, `SELECT state, count(*) FROM messages GROUP BY state`)
	if err != nil {
		return c, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			st store.State
			n  int
		)
		if err := rows.Scan(&st, &n); err != nil {
			return c, err
		}
		switch st {
		case store.Pending:
			c.Pending = n
		case store.Inflight:
			c.Inflight = n
		case store.Done:
			c.Done = n
		case store.Dead:
			c.Dead = n
		}
	}
	return c, rows.Err()
}

func (s *DB) ChatsWithPending(ctx context.Context) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT chat_id FROM messages
		WHERE state = 'pending' GROUP BY chat_id ORDER BY min(seq)`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return store.ScanAll(rows, store.ScanString)
}

func (s *DB) OldestPending(ctx context.Context, chat string) (int64, error) {
	var oldest sql.NullInt64
	err := s.r.QueryRowContext(ctx, `SELECT min(created_at) FROM messages
		WHERE chat_id = ? AND state = 'pending'`, chat).Scan(&oldest)
	return oldest.Int64, err
}

func (s *DB) PendingStats(ctx context.Context) (map[string]store.PendingStat, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT chat_id, count(*), min(updated_at) FROM messages
		WHERE state = 'pending' GROUP BY chat_id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[string]store.PendingStat)
	for rows.Next() {
		var (
			chat   string
			n      int
			oldest int64
		)
		if err := rows.Scan(&chat, &n, &oldest); err != nil {
			return nil, err
		}
		out[chat] = store.PendingStat{Count: n, Oldest: store.FromNanos(oldest)}
	}
	return out, rows.Err()
}

func (s *DB) HasPending(ctx context.Context, chat string) (bool, error) {
	var one int
	err := s.r.QueryRowContext(ctx, `SELECT EXISTS(SELECT 1 FROM messages
		WHERE chat_id = ? AND state = 'pending')`, chat).Scan(&one)
	return one == 1, err
}

func (s *DB) RecentTurns(ctx context.Context, chat string, n int) ([]store.TurnMessage, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT turn_id, text, reply FROM messages
		WHERE state = 'done' AND chat_id = ? AND turn_id IN (
			SELECT turn_id FROM messages WHERE state = 'done' AND chat_id = ? AND turn_id != ''
			GROUP BY turn_id ORDER BY max(seq) DESC LIMIT ?)
		ORDER BY seq`, chat, chat, n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return store.ScanAll(rows, store.ScanTurn)
}

func (s *DB) Sessions(ctx context.Context) ([]store.SessionRecord, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+store.SessionColumns+` FROM sessions ORDER BY chat_id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return store.ScanAll(rows, store.ScanSession)
}

func (s *DB) Session(ctx context.Context, chat string) (store.SessionRecord, bool, error) {
	r, err := store.ScanSession(s.r.QueryRowContext(ctx, `SELECT `+store.SessionColumns+` FROM sessions WHERE chat_id = ?`, chat))
	if errors.Is(err, sql.ErrNoRows) {
		return r, false, nil
	}
	return r, err == nil, err
}

func (s *DB) OutboxPending(ctx context.Context, endpoint string, after int64, limit int) ([]store.OutboxRow, error) {
	visible, _ := s.feed.State()
	rows, err := s.r.QueryContext(ctx, `SELECT `+store.OutboxColumns+` FROM webhook_outbox
		WHERE endpoint = ? AND seq > ? AND seq <= ? AND state = 'pending' ORDER BY seq LIMIT ?`,
		endpoint, after, visible, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return store.ScanAll(rows, store.ScanOutbox)
}

func (s *DB) OutboxFailed(ctx context.Context, endpoint string, limit int) ([]store.OutboxRow, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+store.OutboxColumns+` FROM webhook_outbox
		WHERE endpoint = ? AND state = 'failed' ORDER BY seq LIMIT ?`, endpoint, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return store.ScanAll(rows, store.ScanOutbox)
}

func (s *DB) OutboxCounts(ctx context.Context) ([]store.OutboxCount, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT endpoint, state, count(*) FROM webhook_outbox GROUP BY endpoint, state`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return store.ScanAll(rows, store.ScanOutboxCount)
}

func (s *DB) ConversationFiles(ctx context.Context, chat string) ([]store.ConvFile, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT path, size, hash FROM conversation_files
		WHERE chat_id = ? ORDER BY path`, chat)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return store.ScanAll(rows, store.ScanConvFile)
}

func (s *DB) ConversationChunks(ctx context.Context, chat string) ([]store.ConvChunk, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT c.path, c.data FROM conversation_chunks c
		JOIN conversation_files f ON f.chat_id = c.chat_id AND f.path = c.path
		WHERE c.chat_id = ? AND c.off < f.size ORDER BY c.path, c.off`, chat)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return store.ScanAll(rows, store.ScanConvChunk)
}

// placeholders returns "?, ?, …" with n marks, for an IN list.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// withIDs appends ids to args as bind values.
func withIDs(args []any, ids []string) []any {
	for _, id := range ids {
		args = append(args, id)
	}
	return args
}

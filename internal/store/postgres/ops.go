package postgres

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/dispatchd/dispatch/internal/store"
)

// The store's one-query operations in PostgreSQL's SQL: the write ones on
// Tx, the reads on DB.

const msgCols = store.MessageColumns

// LockChat orders this write with the chat's accepts and its other claims
// and retries, so that a chat's seq order is its commit order, even with
// several nodes accepting for it at once: an accept takes the chat's line
// lock shared (accept.go), so accepts never wait for each other; LockChat
// waits for the accepts under way (it takes the line lock exclusively in
// a savepoint it rolls back, which releases the lock at once: accepts
// that come after it are not held up by the rest of this write, and their
// seqs come after whatever it reads) and then holds the chat's claim lock
// until the commit. The statements go to the server with the
// transaction's next statement, in the same round trip (pipeline.go): a
// lock no statement follows orders nothing.
func (t *Tx) LockChat(_ context.Context, chat string) error {
	t.queue(false, "SAVEPOINT line")
	t.queue(false, waitLineSQL, chat)
	t.queue(false, "ROLLBACK TO SAVEPOINT line")
	t.queue(false, claimSQL, chat)
	return nil
}

func (t *Tx) ChatsOf(ctx context.Context, ids []string) ([]string, error) {
	rows, err := t.Query(ctx, `SELECT DISTINCT chat_id FROM messages WHERE id = ANY($1)`, ids)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

func (t *Tx) InsertMessage(ctx context.Context, m store.NewMessage) (bool, error) {
	var client any
	if m.ClientID != "" {
		client = m.ClientID
	}
	tag, err := t.Exec(ctx, `INSERT INTO messages
		(id, chat_id, text, state, created_at, updated_at, client_id)
		VALUES ($1, $2, $3, 'pending', $4, $4, $5)
		ON CONFLICT DO NOTHING`, m.ID, m.ChatID, m.Text, m.At, client)
	return err == nil && tag.RowsAffected() == 1, err
}

func (t *Tx) MessageByClient(ctx context.Context, chat, client string) (id, text string, err error) {
	err = t.QueryRow(ctx, `SELECT id, text FROM messages
		WHERE chat_id = $1 AND client_id = $2`, chat, client).Scan(&id, &text)
	return id, text, err
}

func (t *Tx) PendingMessages(ctx context.Context, chat string, n int) ([]store.Message, error) {
	rows, err := t.Query(ctx, `SELECT `+msgCols+` FROM messages
		WHERE chat_id = $1 AND state = 'pending' ORDER BY seq LIMIT $2`, chat, n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return store.ScanAll(rows, store.ScanMessage)
}

func (t *Tx) MarkInflight(ctx context.Context, msgs []store.Message, now int64) error {
	seqs := make([]int64, len(msgs))
	for i, m := range msgs {
		seqs[i] = m.Seq
	}
	t.execLater(`UPDATE messages
		SET state = 'inflight', attempts = attempts + 1, updated_at = $1
		WHERE seq = ANY($2)`, now, seqs)
	return nil
}

func (t *Tx) MarkDone(ctx context.Context, ids []string, reply, turn string, now int64) ([]store.Answered, error) {
	rows, err := t.Query(ctx, `UPDATE messages
		SET state = 'done', reply = $1, error = '', updated_at = $2, turn_id = $3
		WHERE state = 'inflight' AND id = ANY($4)
		RETURNING seq, id, chat_id`, reply, now, turn, ids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return store.ScanAll(rows, store.ScanAnswered)
}

func (t *Tx) MarkPending(ctx context.Context, ids []string, errText, keptIn string, now int64) error {
	t.execLater(`UPDATE messages
		SET state = 'pending', error = $1, updated_at = $2,
			kept_in = CASE WHEN $3 = '' THEN kept_in ELSE $3 END
		WHERE state = 'inflight' AND id = ANY($4)`, errText, now, keptIn, ids)
	return nil
}

func (t *Tx) MarkFailed(ctx context.Context, ids []string, errText string, maxAttempts int, now int64) ([]store.Failed, error) {
	rows, err := t.Query(ctx, `UPDATE messages
		SET failures = failures + 1, error = $1, updated_at = $2,
			state = CASE WHEN failures + 1 >= $3 THEN 'dead' ELSE 'pending' END
		WHERE state = 'inflight' AND id = ANY($4)
		RETURNING seq, id, chat_id, state`, errText, now, maxAttempts, ids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return store.ScanAll(rows, store.ScanFailed)
}

func (t *Tx) ResetInflight(ctx context.Context, now int64) (int64, error) {
	tag, err := t.Exec(ctx, `UPDATE messages SET state = 'pending', updated_at = $1 WHERE state = 'inflight'`, now)
	return tag.RowsAffected(), err
}

func (t *Tx) DeadChat(ctx context.Context, id string) (string, error) {
	var chat string
	err := t.QueryRow(ctx, `SELECT chat_id FROM messages WHERE id = $1 AND state = 'dead'`, id).Scan(&chat)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", store.ErrNotFound
	}
	return chat, err
}

// RequeueDead takes the message's new Seq from the column's sequence.
func (t *Tx) RequeueDead(ctx context.Context, id string, now int64) (bool, error) {
	tag, err := t.Exec(ctx, `UPDATE messages
		SET seq = nextval(pg_get_serial_sequence('messages', 'seq')), state = 'pending', failures = 0,
			kept_in = '', turn_id = '', updated_at = $2
		WHERE id = $1 AND state = 'dead'`, id, now)
	return err == nil && tag.RowsAffected() > 0, err
}

func (t *Tx) DeleteDead(ctx context.Context, id string) (bool, error) {
	tag, err := t.Exec(ctx, `DELETE FROM messages WHERE id = $1 AND state = 'dead'`, id)
	return err == nil && tag.RowsAffected() > 0, err
}

func (t *Tx) DeleteDone(ctx context.Context, before int64, n int) (int64, error) {
	tag, err := t.Exec(ctx, `DELETE FROM messages WHERE seq IN (
		SELECT seq FROM messages WHERE state = 'done' AND updated_at < $1 LIMIT $2)`, before, n)
	return tag.RowsAffected(), err
}

func (t *Tx) SessionFailed(ctx context.Context, chat string) (bool, error) {
	var failed bool
	err := t.QueryRow(ctx, `SELECT failed FROM sessions WHERE chat_id = $1 FOR UPDATE`, chat).Scan(&failed)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return failed, err
}

func (t *Tx) UpsertSession(ctx context.Context, r store.SessionRecord, created, given int64) error {
	t.execLater(`INSERT INTO sessions
			(chat_id, session_id, exempt, live, failed, fail_reason, turns, restarts, created_at, last_activity, paused)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $12)
			ON CONFLICT (chat_id) DO UPDATE SET
				session_id = excluded.session_id,
				exempt = excluded.exempt,
				live = excluded.live,
				failed = excluded.failed,
				fail_reason = excluded.fail_reason,
				turns = excluded.turns,
				restarts = excluded.restarts,
				created_at = CASE WHEN $11::bigint = 0 THEN sessions.created_at ELSE excluded.created_at END,
				last_activity = excluded.last_activity,
				paused = excluded.paused`,
		r.ChatID, r.SessionID, r.Exempt, r.Live, r.Failed, r.FailReason,
		r.Turns, r.Restarts, created, store.Nanos(r.LastActivity), given, r.Paused)
	return nil
}

func (t *Tx) OutboxDelete(ctx context.Context, endpoint string, seqs []int64) error {
	_, err := t.Exec(ctx, `DELETE FROM webhook_outbox WHERE endpoint = $1 AND seq = ANY($2)`, endpoint, seqs)
	return err
}

func (t *Tx) OutboxAttempt(ctx context.Context, r store.OutboxRow, now int64) error {
	_, err := t.Exec(ctx, `UPDATE webhook_outbox
		SET attempts = $1, first_at = $2, next_at = $3, error = $4, updated_at = $5
		WHERE endpoint = $6 AND seq = $7 AND state = 'pending'`,
		r.Attempts, store.Nanos(r.FirstAt), store.Nanos(r.NextAt), r.Error, now, r.Endpoint, r.Seq)
	return err
}

func (t *Tx) OutboxGiveUp(ctx context.Context, r store.OutboxRow, now int64) error {
	_, err := t.Exec(ctx, `UPDATE webhook_outbox
		SET state = 'failed', attempts = $1, first_at = $2, next_at = 0, error = $3, updated_at = $4
		WHERE endpoint = $5 AND seq = $6 AND state = 'pending'`,
		r.Attempts, store.Nanos(r.FirstAt), r.Error, now, r.Endpoint, r.Seq)
	return err
}

func (t *Tx) OutboxRetry(ctx context.Context, endpoint string, now int64) ([]store.OutboxRow, error) {
	rows, err := t.Query(ctx, `UPDATE webhook_outbox
		SET state = 'pending', attempts = 0, first_at = 0, next_at = 0, updated_at = $1
		WHERE endpoint = $2 AND state = 'failed'
		RETURNING `+store.OutboxColumns, now, endpoint)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return store.ScanAll(rows, store.ScanOutbox)
}

func (t *Tx) SaveConversationFile(ctx context.Context, chat string, c store.ConvChange) error {
	if c.Replace {
		if _, err := t.Exec(ctx, `DELETE FROM conversation_chunks WHERE chat_id = $1 AND path = $2`, chat, c.Path); err != nil {
			return err
		}
	}
	if len(c.Data) > 0 {
		if _, err := t.Exec(ctx, `INSERT INTO conversation_chunks (chat_id, path, off, data) VALUES ($1, $2, $3, $4)
			ON CONFLICT (chat_id, path, off) DO UPDATE SET data = excluded.data`, chat, c.Path, c.Offset, c.Data); err != nil {
			return err
		}
	}
	_, err := t.Exec(ctx, `INSERT INTO conversation_files (chat_id, path, size, hash) VALUES ($1, $2, $3, $4)
		ON CONFLICT (chat_id, path) DO UPDATE SET size = excluded.size, hash = excluded.hash`, chat, c.Path, c.Size, c.Hash)
	return err
}

func (t *Tx) SetMeta(ctx context.Context, k string, v int64) error {
	t.execLater(`INSERT INTO meta (k, v) VALUES ($1, $2)
		ON CONFLICT (k) DO UPDATE SET v = excluded.v`, k, v)
	return nil
}

// Reads. Their errors are classified here: outside a write nothing else
// does.

// query runs a read and scans every row.
func query[R any](ctx context.Context, s *DB, scan func(store.Scanner) (R, error), sql string, args ...any) ([]R, error) {
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, classify(err)
	}
	defer rows.Close()
	out, err := store.ScanAll(rows, scan)
	return out, classify(err)
}

func (s *DB) Message(ctx context.Context, id string) (store.Message, error) {
	m, err := store.ScanMessage(s.pool.QueryRow(ctx, `SELECT `+msgCols+` FROM messages WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Message{}, store.ErrNotFound
	}
	return m, classify(err)
}

// filterWhere builds the WHERE clause of a message filter; args continue
// from the given ones.
func filterWhere(f store.Filter, where []string, args []any) ([]string, []any) {
	if f.ChatID != "" {
		args = append(args, f.ChatID)
		where = append(where, "chat_id = $"+strconv.Itoa(len(args)))
	}
	if f.State == "" {
		where = append(where, "state IN ('pending', 'inflight', 'dead')")
	} else {
		args = append(args, string(f.State))
		where = append(where, "state = $"+strconv.Itoa(len(args)))
	}
	return where, args
}

func (s *DB) Messages(ctx context.Context, f store.Filter, limit int) ([]store.Message, error) {
	where, args := filterWhere(f, nil, nil)
	args = append(args, limit)
	return query(ctx, s, store.ScanMessage, `SELECT `+msgCols+` FROM messages
		WHERE `+strings.Join(where, " AND ")+` ORDER BY seq LIMIT $`+strconv.Itoa(len(args)), args...)
}

func (s *DB) MessagePage(ctx context.Context, f store.Filter, after int64, limit, clip int) ([]store.Listed, error) {
	where, args := filterWhere(f, []string{"seq > $2"}, []any{clip, after})
	args = append(args, limit)
	return query(ctx, s, store.ScanListed, `SELECT seq, id, chat_id,
			substr(text, 1, $1), octet_length(text),
			substr(reply, 1, $1), octet_length(reply),
			substr(error, 1, $1), octet_length(error),
			state, attempts, failures, created_at, updated_at, kept_in, coalesce(client_id, ''), turn_id
		FROM messages WHERE `+strings.Join(where, " AND ")+` ORDER BY seq LIMIT $`+strconv.Itoa(len(args)), args...)
}

func (s *DB) Counts(ctx context.Context) (store.Counts, error) {
	var c store.Counts
	err := s.pool.QueryRow(ctx, `SELECT
		count(*) FILTER (WHERE state = 'pending'),
		count(*) FILTER (WHERE state = 'inflight'),
		count(*) FILTER (WHERE state = 'done'),
		count(*) FILTER (WHERE state = 'dead')
		FROM messages`).Scan(&c.Pending, &c.Inflight, &c.Done, &c.Dead)
	return c, classify(err)
}

func (s *DB) ChatsWithPending(ctx context.Context) ([]string, error) {
	return query(ctx, s, store.ScanString, `SELECT chat_id FROM messages
		WHERE state = 'pending' GROUP BY chat_id ORDER BY min(seq)`)
}

func (s *DB) OldestPending(ctx context.Context, chat string) (int64, error) {
	var oldest *int64
	err := s.pool.QueryRow(ctx, `SELECT min(created_at) FROM messages
		WHERE chat_id = $1 AND state = 'pending'`, chat).Scan(&oldest)
	if err != nil || oldest == nil {
		return 0, classify(err)
	}
	return *oldest, nil
}

func (s *DB) PendingStats(ctx context.Context) (map[string]store.PendingStat, error) {
	type row struct {
		chat string
		st   store.PendingStat
	}
	rows, err := query(ctx, s, func(r store.Scanner) (row, error) {
		var (
			x      row
			oldest int64
		)
		err := r.Scan(&x.chat, &x.st.Count, &oldest)
		x.st.Oldest = store.FromNanos(oldest)
		return x, err
	}, `SELECT chat_id, count(*), min(updated_at) FROM messages WHERE state = 'pending' GROUP BY chat_id`)
	if err != nil {
		return nil, err
	}
	out := make(map[string]store.PendingStat, len(rows))
	for _, x := range rows {
		out[x.chat] = x.st
	}
	return out, nil
}

func (s *DB) HasPending(ctx context.Context, chat string) (bool, error) {
	var has bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS(SELECT 1 FROM messages
		WHERE chat_id = $1 AND state = 'pending')`, chat).Scan(&has)
	return has, classify(err)
}

func (s *DB) RecentTurns(ctx context.Context, chat string, n int) ([]store.TurnMessage, error) {
	return query(ctx, s, store.ScanTurn, `SELECT turn_id, text, reply FROM messages
		WHERE state = 'done' AND chat_id = $1 AND turn_id IN (
			SELECT turn_id FROM messages WHERE state = 'done' AND chat_id = $1 AND turn_id != ''
			GROUP BY turn_id ORDER BY max(seq) DESC LIMIT $2)
		ORDER BY seq`, chat, n)
}

func (s *DB) Sessions(ctx context.Context) ([]store.SessionRecord, error) {
	return query(ctx, s, store.ScanSession, `SELECT `+store.SessionColumns+` FROM sessions ORDER BY chat_id COLLATE "C"`)
}

func (s *DB) Session(ctx context.Context, chat string) (store.SessionRecord, bool, error) {
	r, err := store.ScanSession(s.pool.QueryRow(ctx, `SELECT `+store.SessionColumns+` FROM sessions WHERE chat_id = $1`, chat))
	if errors.Is(err, pgx.ErrNoRows) {
		return r, false, nil
	}
	return r, err == nil, classify(err)
}

// OutboxPending needs no visible mark: any snapshot of the events (and
// their deliveries) is a prefix of the feed.
func (s *DB) OutboxPending(ctx context.Context, endpoint string, after int64, limit int) ([]store.OutboxRow, error) {
	return query(ctx, s, store.ScanOutbox, `SELECT `+store.OutboxColumns+` FROM webhook_outbox
		WHERE endpoint = $1 AND seq > $2 AND state = 'pending' ORDER BY seq LIMIT $3`, endpoint, after, limit)
}

func (s *DB) OutboxFailed(ctx context.Context, endpoint string, limit int) ([]store.OutboxRow, error) {
	return query(ctx, s, store.ScanOutbox, `SELECT `+store.OutboxColumns+` FROM webhook_outbox
		WHERE endpoint = $1 AND state = 'failed' ORDER BY seq LIMIT $2`, endpoint, limit)
}

func (s *DB) OutboxCounts(ctx context.Context) ([]store.OutboxCount, error) {
	return query(ctx, s, store.ScanOutboxCount, `SELECT endpoint, state, count(*) FROM webhook_outbox GROUP BY endpoint, state`)
}

func (s *DB) ConversationFiles(ctx context.Context, chat string) ([]store.ConvFile, error) {
	return query(ctx, s, store.ScanConvFile, `SELECT path, size, hash FROM conversation_files
		WHERE chat_id = $1 ORDER BY path`, chat)
}

func (s *DB) ConversationChunks(ctx context.Context, chat string) ([]store.ConvChunk, error) {
	return query(ctx, s, store.ScanConvChunk, `SELECT c.path, c.data FROM conversation_chunks c
		JOIN conversation_files f ON f.chat_id = c.chat_id AND f.path = c.path
		WHERE c.chat_id = $1 AND c.off < f.size ORDER BY c.path, c.off`, chat)
}

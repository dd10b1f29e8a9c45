package pgstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/store"
)

const msgCols = `seq, id, chat_id, text, state, attempts, failures, error, reply, created_at, updated_at, kept_in, coalesce(client_id, ''), turn_id`

// lockChat takes chat's transaction-level advisory lock: the writes that
// take a place in a chat's line (Accept, Claim, Retry) run one at a time
// per chat, so a chat's seq order is its commit order even with several
// nodes accepting for it at once.
func lockChat(ctx context.Context, tx pgx.Tx, chat string) error {
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 7))`, chat)
	return err
}

// Accept stores a new pending message; see store.Store.Accept.
func (s *Store) Accept(ctx context.Context, chatID, text, clientID string) (id string, dup bool, err error) {
	if chatID == "" {
		return "", false, errors.New("store: accept: empty chat id")
	}
	var client any
	if clientID != "" {
		client = clientID
	}
	now := store.Nanos(s.clk.Now())
	newID := uuid.NewString()
	err = s.write(ctx, false, func(ctx context.Context, tx *wtx) error {
		id, dup = newID, false
		if err := lockChat(ctx, tx, chatID); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO messages
			(id, chat_id, text, state, created_at, updated_at, client_id)
			VALUES ($1, $2, $3, 'pending', $4, $4, $5)
			ON CONFLICT DO NOTHING`, newID, chatID, text, now, client)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 1 {
			return nil
		}
		if clientID == "" {
			return errors.New("message id collision")
		}
		var oldText string
		if err := tx.QueryRow(ctx, `SELECT id, text FROM messages
			WHERE chat_id = $1 AND client_id = $2`, chatID, clientID).Scan(&id, &oldText); err != nil {
			return err
		}
		if oldText != text {
			return fmt.Errorf("%w: chat %q already has client_id %q (message %s) with another text", store.ErrConflict, chatID, clientID, id)
		}
		dup = true
		return nil
	})
	if err != nil {
		return "", false, fmt.Errorf("store: accept: %w", err)
	}
	if !dup {
		s.wake(ctx, chatID)
	}
	return id, dup, nil
}

// Claim takes the next batch of chatID's pending messages; see
// store.Store.Claim. Its commit is not waited for (synchronous_commit
// off): startup and takeover put in-flight messages back to pending.
func (s *Store) Claim(ctx context.Context, chatID string, limit int) (batch []store.Message, more bool, err error) {
	limit = max(limit, 1)
	now := store.Nanos(s.clk.Now())
	err = s.write(ctx, true, func(ctx context.Context, tx *wtx) error {
		batch, more = nil, false
		if err := lockChat(ctx, tx, chatID); err != nil {
			return err
		}
		if err := s.fenceChats(ctx, tx, chatID); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT `+msgCols+` FROM messages
			WHERE chat_id = $1 AND state = 'pending' ORDER BY seq LIMIT $2`, chatID, limit+1)
		if err != nil {
			return err
		}
		pending, err := scanMessages(rows)
		if err != nil {
			return err
		}
		claimed := store.Claimable(pending[:min(len(pending), limit)])
		if len(claimed) == 0 {
			return nil
		}
		seqs := make([]int64, len(claimed))
		for i, m := range claimed {
			seqs[i] = m.Seq
		}
		if _, err := tx.Exec(ctx, `UPDATE messages
			SET state = 'inflight', attempts = attempts + 1, updated_at = $1
			WHERE seq = ANY($2)`, now, seqs); err != nil {
			return err
		}
		for i := range claimed {
			claimed[i].State = store.Inflight
			claimed[i].Attempts++
			claimed[i].UpdatedAt = store.FromNanos(now)
		}
		batch, more = claimed, len(pending) > len(claimed)
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("store: claim for chat %q: %w", chatID, err)
	}
	return batch, more, nil
}

// Complete marks inflight messages done as one turn; see
// store.Store.Complete.
func (s *Store) Complete(ctx context.Context, ids []string, reply string) error {
	if len(ids) == 0 {
		return nil
	}
	now := s.clk.Now()
	turn := store.NewTurnID()
	err := s.write(ctx, false, func(ctx context.Context, tx *wtx) error {
		if err := s.fenceIDs(ctx, tx, ids); err != nil {
			return err
		}
		return s.completeMessages(ctx, tx, ids, reply, turn, now)
	})
	if err != nil {
		return fmt.Errorf("store: complete %d messages: %w", len(ids), err)
	}
	return nil
}

// completeMessages marks the inflight ones of ids done and queues the
// turn's reply event, in the same transaction.
func (s *Store) completeMessages(ctx context.Context, tx *wtx, ids []string, reply, turnID string, at time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	rows, err := tx.Query(ctx, `UPDATE messages
		SET state = 'done', reply = $1, error = '', updated_at = $2, turn_id = $3
		WHERE state = 'inflight' AND id = ANY($4)
		RETURNING seq, id, chat_id`, reply, store.Nanos(at), turnID, ids)
	if err != nil {
		return err
	}
	var got []store.Answered
	for rows.Next() {
		var d store.Answered
		if err := rows.Scan(&d.Seq, &d.ID, &d.ChatID); err != nil {
			rows.Close()
			return err
		}
		got = append(got, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, ev := range store.ReplyEvents(got, reply, turnID, at) {
		if _, err := s.appendEvent(tx, ev); err != nil {
			return err
		}
	}
	return nil
}

// Requeue puts inflight messages back to pending; see store.Store.Requeue.
func (s *Store) Requeue(ctx context.Context, ids []string, errText string) error {
	return s.RequeueKept(ctx, ids, errText, "")
}

// RequeueKept is Requeue recording the conversation that holds the
// messages; see store.Store.RequeueKept.
func (s *Store) RequeueKept(ctx context.Context, ids []string, errText, keptIn string) error {
	if len(ids) == 0 {
		return nil
	}
	now := store.Nanos(s.clk.Now())
	err := s.write(ctx, false, func(ctx context.Context, tx *wtx) error {
		if err := s.fenceIDs(ctx, tx, ids); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE messages
			SET state = 'pending', error = $1, updated_at = $2,
				kept_in = CASE WHEN $3 = '' THEN kept_in ELSE $3 END
			WHERE state = 'inflight' AND id = ANY($4)`, errText, now, keptIn, ids)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: requeue %d messages: %w", len(ids), err)
	}
	return nil
}

// Fail records a failed attempt that is the messages' own fault; see
// store.Store.Fail.
func (s *Store) Fail(ctx context.Context, ids []string, errText string, maxAttempts int) (dead []string, err error) {
	if len(ids) == 0 {
		return nil, nil
	}
	now := store.Nanos(s.clk.Now())
	err = s.write(ctx, false, func(ctx context.Context, tx *wtx) error {
		if err := s.fenceIDs(ctx, tx, ids); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `UPDATE messages
			SET failures = failures + 1, error = $1, updated_at = $2,
				state = CASE WHEN failures + 1 >= $3 THEN 'dead' ELSE 'pending' END
			WHERE state = 'inflight' AND id = ANY($4)
			RETURNING seq, id, state, chat_id`, errText, now, maxAttempts, ids)
		if err != nil {
			return err
		}
		type seqID struct {
			seq      int64
			id, chat string
		}
		var died []seqID
		for rows.Next() {
			var (
				r  seqID
				st string
			)
			if err := rows.Scan(&r.seq, &r.id, &st, &r.chat); err != nil {
				rows.Close()
				return err
			}
			if store.State(st) == store.Dead {
				died = append(died, r)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		slices.SortFunc(died, func(a, b seqID) int { return cmp.Compare(a.seq, b.seq) })
		dead = nil
		for _, r := range died {
			dead = append(dead, r.id)
			if _, err := s.appendEvent(tx, events.Event{
				Type: events.DeadLetter, At: store.FromNanos(now), ChatID: r.chat, MessageID: r.id, Error: errText,
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: fail %d messages: %w", len(ids), err)
	}
	return dead, nil
}

// ResetInflight returns every inflight message to pending; see
// store.Store.ResetInflight. With several nodes it must only be used for
// chats no live node owns.
func (s *Store) ResetInflight(ctx context.Context) (int, error) {
	now := store.Nanos(s.clk.Now())
	var n int64
	err := s.write(ctx, false, func(ctx context.Context, tx *wtx) error {
		tag, err := tx.Exec(ctx, `UPDATE messages SET state = 'pending', updated_at = $1 WHERE state = 'inflight'`, now)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store: reset inflight: %w", err)
	}
	return int(n), nil
}

// Retry gives a dead message another chance at the back of its chat's
// line; see store.Store.Retry.
func (s *Store) Retry(ctx context.Context, id string) error {
	now := store.Nanos(s.clk.Now())
	var woken string
	err := s.write(ctx, false, func(ctx context.Context, tx *wtx) error {
		var chat string
		if err := tx.QueryRow(ctx, `SELECT chat_id FROM messages WHERE id = $1 AND state = 'dead'`, id).Scan(&chat); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return store.ErrNotFound
			}
			return err
		}
		if err := lockChat(ctx, tx, chat); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE messages
			SET seq = nextval(pg_get_serial_sequence('messages', 'seq')), state = 'pending', failures = 0,
				kept_in = '', turn_id = '', updated_at = $2
			WHERE id = $1 AND state = 'dead'`, id, now)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		woken = chat
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: retry %q: %w", id, err)
	}
	s.wake(ctx, woken)
	return nil
}

// Drop deletes a dead message; see store.Store.Drop.
func (s *Store) Drop(ctx context.Context, id string) error {
	err := s.write(ctx, false, func(ctx context.Context, tx *wtx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM messages WHERE id = $1 AND state = 'dead'`, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: drop %q: %w", id, err)
	}
	return nil
}

// Get returns the message with id, or store.ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (store.Message, error) {
	m, err := scanMessage(s.pool.QueryRow(ctx, `SELECT `+msgCols+` FROM messages WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.Message{}, fmt.Errorf("store: get %q: %w", id, classify(err))
	}
	return m, nil
}

// where builds the WHERE clause of a message filter; args continue from
// the given ones.
func filterWhere(f store.Filter, args []any) ([]string, []any, error) {
	var where []string
	if f.ChatID != "" {
		args = append(args, f.ChatID)
		where = append(where, "chat_id = $"+strconv.Itoa(len(args)))
	}
	switch {
	case f.State == "":
		where = append(where, "state IN ('pending', 'inflight', 'dead')")
	case store.ValidState(f.State):
		args = append(args, string(f.State))
		where = append(where, "state = $"+strconv.Itoa(len(args)))
	default:
		return nil, nil, fmt.Errorf("unknown state %q", f.State)
	}
	return where, args, nil
}

// List returns the messages matching f in Seq order.
func (s *Store) List(ctx context.Context, f store.Filter) ([]store.Message, error) {
	where, args, err := filterWhere(f, nil)
	if err != nil {
		return nil, fmt.Errorf("store: list: %w", err)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = store.DefaultListLimit
	}
	args = append(args, limit)
	rows, err := s.pool.Query(ctx, `SELECT `+msgCols+` FROM messages
		WHERE `+strings.Join(where, " AND ")+` ORDER BY seq LIMIT $`+strconv.Itoa(len(args)), args...)
	if err != nil {
		return nil, fmt.Errorf("store: list: %w", classify(err))
	}
	msgs, err := scanMessages(rows)
	if err != nil {
		return nil, fmt.Errorf("store: list: %w", classify(err))
	}
	return msgs, nil
}

// ListPage returns one page of a listing with clipped texts; see
// store.Store.ListPage.
func (s *Store) ListPage(ctx context.Context, f store.Filter, after int64, limit, clip int) (page []store.Listed, more bool, err error) {
	where, args, err := filterWhere(f, []any{clip, after})
	if err != nil {
		return nil, false, fmt.Errorf("store: list page: %w", err)
	}
	where = append(where, "seq > $2")
	limit = min(max(limit, 1), store.MaxPage)
	args = append(args, limit+1)
	rows, err := s.pool.Query(ctx, `SELECT seq, id, chat_id,
			substr(text, 1, $1), octet_length(text),
			substr(reply, 1, $1), octet_length(reply),
			substr(error, 1, $1), octet_length(error),
			state, attempts, failures, created_at, updated_at, kept_in, coalesce(client_id, ''), turn_id
		FROM messages WHERE `+strings.Join(where, " AND ")+` ORDER BY seq LIMIT $`+strconv.Itoa(len(args)), args...)
	if err != nil {
		return nil, false, fmt.Errorf("store: list page: %w", classify(err))
	}
	defer rows.Close()
	for rows.Next() {
		var (
			l                store.Listed
			st               string
			created, updated int64
		)
		if err := rows.Scan(&l.Seq, &l.ID, &l.ChatID, &l.Text, &l.TextBytes, &l.Reply, &l.ReplyBytes,
			&l.Error, &l.ErrorBytes, &st, &l.Attempts, &l.Failures, &created, &updated, &l.KeptIn, &l.ClientID, &l.TurnID); err != nil {
			return nil, false, fmt.Errorf("store: list page: %w", err)
		}
		l.State = store.State(st)
		l.CreatedAt, l.UpdatedAt = store.FromNanos(created), store.FromNanos(updated)
		page = append(page, l)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("store: list page: %w", classify(err))
	}
	if len(page) > limit {
		return page[:limit], true, nil
	}
	return page, false, nil
}

// Counts returns how many messages are in each state.
func (s *Store) Counts(ctx context.Context) (store.Counts, error) {
	var c store.Counts
	err := s.pool.QueryRow(ctx, `SELECT
		count(*) FILTER (WHERE state = 'pending'),
		count(*) FILTER (WHERE state = 'inflight'),
		count(*) FILTER (WHERE state = 'done'),
		count(*) FILTER (WHERE state = 'dead')
		FROM messages`).Scan(&c.Pending, &c.Inflight, &c.Done, &c.Dead)
	if err != nil {
		return c, fmt.Errorf("store: counts: %w", classify(err))
	}
	return c, nil
}

// ChatsWithPending returns the chats with pending messages, the one
// waiting longest first.
func (s *Store) ChatsWithPending(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT chat_id FROM messages
		WHERE state = 'pending' GROUP BY chat_id ORDER BY min(seq)`)
	if err != nil {
		return nil, fmt.Errorf("store: chats with pending: %w", classify(err))
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("store: chats with pending: %w", classify(err))
	}
	return out, nil
}

// OldestPending is when chat's oldest waiting message was accepted (zero
// when none waits).
func (s *Store) OldestPending(ctx context.Context, chatID string) (time.Time, error) {
	var oldest *int64
	err := s.pool.QueryRow(ctx, `SELECT min(created_at) FROM messages
		WHERE chat_id = $1 AND state = 'pending'`, chatID).Scan(&oldest)
	if err != nil {
		return time.Time{}, fmt.Errorf("store: oldest pending: %w", classify(err))
	}
	if oldest == nil {
		return time.Time{}, nil
	}
	return store.FromNanos(*oldest), nil
}

// PendingStats returns, for every chat with pending messages, how many
// wait and since when.
func (s *Store) PendingStats(ctx context.Context) (map[string]store.PendingStat, error) {
	rows, err := s.pool.Query(ctx, `SELECT chat_id, count(*), min(updated_at) FROM messages
		WHERE state = 'pending' GROUP BY chat_id`)
	if err != nil {
		return nil, fmt.Errorf("store: pending stats: %w", classify(err))
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
			return nil, fmt.Errorf("store: pending stats: %w", err)
		}
		out[chat] = store.PendingStat{Count: n, Oldest: store.FromNanos(oldest)}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: pending stats: %w", classify(err))
	}
	return out, nil
}

// HasPending reports whether chat has a message waiting.
func (s *Store) HasPending(ctx context.Context, chatID string) (bool, error) {
	var has bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS(SELECT 1 FROM messages
		WHERE chat_id = $1 AND state = 'pending')`, chatID).Scan(&has)
	if err != nil {
		return false, fmt.Errorf("store: has pending: %w", classify(err))
	}
	return has, nil
}

// PurgeDone deletes done messages last updated before cutoff, at most
// limit of them, a chunk at a time.
func (s *Store) PurgeDone(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	total := 0
	for total < limit {
		n := min(store.PurgeChunk, limit-total)
		var got int64
		err := s.write(ctx, false, func(ctx context.Context, tx *wtx) error {
			tag, err := tx.Exec(ctx, `DELETE FROM messages WHERE seq IN (
				SELECT seq FROM messages WHERE state = 'done' AND updated_at < $1 LIMIT $2)`, store.Nanos(cutoff), n)
			got = tag.RowsAffected()
			return err
		})
		if err != nil {
			return total, fmt.Errorf("store: purge done messages: %w", err)
		}
		total += int(got)
		if int(got) < n {
			break
		}
	}
	return total, nil
}

func scanMessage(row pgx.Row) (store.Message, error) {
	var (
		m                store.Message
		st               string
		created, updated int64
	)
	err := row.Scan(&m.Seq, &m.ID, &m.ChatID, &m.Text, &st, &m.Attempts,
		&m.Failures, &m.Error, &m.Reply, &created, &updated, &m.KeptIn, &m.ClientID, &m.TurnID)
	m.State = store.State(st)
	m.CreatedAt, m.UpdatedAt = store.FromNanos(created), store.FromNanos(updated)
	return m, err
}

// scanMessages reads and closes rows.
func scanMessages(rows pgx.Rows) ([]store.Message, error) {
	defer rows.Close()
	var out []store.Message
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

package pgstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/store"
)

// SaveSession inserts or replaces the record for r.ChatID; see
// store.Store.SaveSession.
func (s *Store) SaveSession(ctx context.Context, r store.SessionRecord) error {
	if r.ChatID == "" {
		return errors.New("store: save session: empty chat id")
	}
	given := store.Nanos(r.CreatedAt)
	created := given
	if created == 0 {
		created = store.Nanos(s.clk.Now())
	}
	err := s.write(ctx, false, func(ctx context.Context, tx *wtx) error {
		if err := s.fenceChats(ctx, tx, r.ChatID); err != nil {
			return err
		}
		return s.saveSession(ctx, tx, r, created, given)
	})
	if err != nil {
		return fmt.Errorf("store: save session %q: %w", r.ChatID, err)
	}
	return nil
}

// CompleteTurn records a successful turn in one commit: its messages done,
// the reply event, the session record; see store.Store.CompleteTurn.
func (s *Store) CompleteTurn(ctx context.Context, ids []string, reply string, r store.SessionRecord) error {
	if r.ChatID == "" {
		return errors.New("store: complete turn: empty chat id")
	}
	now := s.clk.Now()
	created := store.Nanos(r.CreatedAt)
	if created == 0 {
		created = store.Nanos(now)
	}
	turn := store.NewTurnID()
	err := s.write(ctx, false, func(ctx context.Context, tx *wtx) error {
		if err := s.fenceIDs(ctx, tx, ids, r.ChatID); err != nil {
			return err
		}
		if err := s.completeMessages(ctx, tx, ids, reply, turn, now); err != nil {
			return err
		}
		return s.saveSession(ctx, tx, r, created, store.Nanos(r.CreatedAt))
	})
	if err != nil {
		return fmt.Errorf("store: complete turn of %d messages: %w", len(ids), err)
	}
	return nil
}

// saveSession upserts r, with its session_failed or session_recovered
// event when its failed flag changes.
func (s *Store) saveSession(ctx context.Context, tx *wtx, r store.SessionRecord, created, given int64) error {
	var wasFailed bool
	err := tx.QueryRow(ctx, `SELECT failed FROM sessions WHERE chat_id = $1 FOR UPDATE`, r.ChatID).Scan(&wasFailed)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO sessions
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
	if err != nil {
		return err
	}
	switch {
	case r.Failed && !wasFailed:
		_, err = s.appendEvent(tx, events.Event{Type: events.SessionFailed, ChatID: r.ChatID, Reason: r.FailReason})
	case !r.Failed && wasFailed:
		_, err = s.appendEvent(tx, events.Event{Type: events.SessionRecovered, ChatID: r.ChatID, Reason: "restarted"})
	}
	return err
}

// Sessions returns every saved session, ordered by chat id.
func (s *Store) Sessions(ctx context.Context) ([]store.SessionRecord, error) {
	rows, err := s.pool.Query(ctx, `SELECT chat_id, session_id, exempt, live, failed,
		fail_reason, turns, restarts, created_at, last_activity, paused
		FROM sessions ORDER BY chat_id COLLATE "C"`)
	if err != nil {
		return nil, fmt.Errorf("store: sessions: %w", classify(err))
	}
	defer rows.Close()
	var out []store.SessionRecord
	for rows.Next() {
		var (
			r                 store.SessionRecord
			created, activity int64
		)
		if err := rows.Scan(&r.ChatID, &r.SessionID, &r.Exempt, &r.Live, &r.Failed,
			&r.FailReason, &r.Turns, &r.Restarts, &created, &activity, &r.Paused); err != nil {
			return nil, fmt.Errorf("store: sessions: %w", err)
		}
		r.CreatedAt, r.LastActivity = store.FromNanos(created), store.FromNanos(activity)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: sessions: %w", classify(err))
	}
	return out, nil
}

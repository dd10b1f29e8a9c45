package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/dispatchd/dispatch/internal/events"
)

// SessionRecord is the durable part of a session: what a restarted daemon
// needs to resume it after a restart of the daemon and the counters status reports.
type SessionRecord struct {
	ChatID, SessionID    string
	Exempt, Live, Failed bool
	// Paused: an operator holds the chat's messages (sessions pause).
	Paused          bool
	FailReason      string
	Turns, Restarts int64
	CreatedAt       time.Time
	LastActivity    time.Time
}

// SaveSession inserts or replaces the record for r.ChatID, committed
// through the writer like every other write. A zero CreatedAt means "now"
// for a new record and "unchanged" for an existing one.
func (s *Store) SaveSession(ctx context.Context, r SessionRecord) error {
	if r.ChatID == "" {
		return errors.New("store: save session: empty chat id")
	}
	given := nanos(r.CreatedAt)
	created := given
	if created == 0 {
		created = nanos(s.clk.Now())
	}
	err := s.write(ctx, func(ctx context.Context, tx *wtx) error { return s.saveSession(ctx, tx, r, created, given) })
	if err != nil {
		return fmt.Errorf("store: save session %q: %w", r.ChatID, err)
	}
	return nil
}

// CompleteTurn records a successful turn in one write: its inflight
// messages become done with the reply, the turn's reply event is written
// (one per turn, naming its messages in order, with the turn id each
// message records), and the session record is saved.
func (s *Store) CompleteTurn(ctx context.Context, ids []string, reply string, r SessionRecord) error {
	if r.ChatID == "" {
		return errors.New("store: complete turn: empty chat id")
	}
	now := s.clk.Now()
	created := nanos(r.CreatedAt)
	if created == 0 {
		created = nanos(now)
	}
	turn := newTurnID()
	err := s.write(ctx, func(ctx context.Context, tx *wtx) error {
		if err := s.completeMessages(ctx, tx, ids, reply, turn, now); err != nil {
			return err
		}
		return s.saveSession(ctx, tx, r, created, nanos(r.CreatedAt))
	})
	if err != nil {
		return fmt.Errorf("store: complete turn of %d messages: %w", len(ids), err)
	}
	return nil
}

// saveSession upserts r. A session that becomes failed, or stops being
// failed, gets its session_failed or session_recovered event in the same
// commit.
func (s *Store) saveSession(ctx context.Context, tx *wtx, r SessionRecord, created, given int64) error {
	var wasFailed bool
	err := tx.QueryRowContext(ctx, `SELECT failed FROM sessions WHERE chat_id = ?`, r.ChatID).Scan(&wasFailed)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	if err := upsertSession(ctx, tx, r, created, given); err != nil {
		return err
	}
	err = nil
	switch {
	case r.Failed && !wasFailed:
		_, err = s.appendEvent(ctx, tx, events.Event{Type: events.SessionFailed, ChatID: r.ChatID, Reason: r.FailReason})
	case !r.Failed && wasFailed:
		_, err = s.appendEvent(ctx, tx, events.Event{Type: events.SessionRecovered, ChatID: r.ChatID, Reason: "restarted"})
	}
	return err
}

func upsertSession(ctx context.Context, tx *wtx, r SessionRecord, created, given int64) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO sessions
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
		r.Turns, r.Restarts, created, nanos(r.LastActivity), given, r.Paused)
	return err
}

// SessionRecord returns chat's saved session; found is false (and the
// record empty but for its ChatID) when there is none.
func (s *Store) SessionRecord(ctx context.Context, chat string) (SessionRecord, bool, error) {
	var (
		r                 SessionRecord
		created, activity int64
	)
	err := s.r.QueryRowContext(ctx, `SELECT chat_id, session_id, exempt, live, failed,
		fail_reason, turns, restarts, created_at, last_activity, paused
		FROM sessions WHERE chat_id = ?`, chat).Scan(&r.ChatID, &r.SessionID, &r.Exempt, &r.Live, &r.Failed,
		&r.FailReason, &r.Turns, &r.Restarts, &created, &activity, &r.Paused)
	if errors.Is(err, sql.ErrNoRows) {
		return SessionRecord{ChatID: chat}, false, nil
	}
	if err != nil {
		return SessionRecord{}, false, fmt.Errorf("store: session %q: %w", chat, err)
	}
	r.CreatedAt, r.LastActivity = fromNanos(created), fromNanos(activity)
	return r, true, nil
}

// Sessions returns every saved session, ordered by chat id.
func (s *Store) Sessions(ctx context.Context) ([]SessionRecord, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT chat_id, session_id, exempt, live, failed,
		fail_reason, turns, restarts, created_at, last_activity, paused
		FROM sessions ORDER BY chat_id`)
	if err != nil {
		return nil, fmt.Errorf("store: sessions: %w", err)
	}
	defer rows.Close()
	var out []SessionRecord
	for rows.Next() {
		var (
			r                 SessionRecord
			created, activity int64
		)
		if err := rows.Scan(&r.ChatID, &r.SessionID, &r.Exempt, &r.Live, &r.Failed,
			&r.FailReason, &r.Turns, &r.Restarts, &created, &activity, &r.Paused); err != nil {
			return nil, fmt.Errorf("store: sessions: %w", err)
		}
		r.CreatedAt, r.LastActivity = fromNanos(created), fromNanos(activity)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: sessions: %w", err)
	}
	return out, nil
}

package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"
)

// The webhook outbox: for each endpoint, the events it still has to
// deliver. A row is written in the same commit as its event (see
// SetWebhookFanout), so an event is never committed without its
// deliveries; it is deleted once delivered, and marked failed when its
// endpoint gave up on it.

// Outbox row states.
const (
	OutboxPending = "pending"
	OutboxFailed  = "failed"
)

// OutboxRow is one delivery of one event to one endpoint.
type OutboxRow struct {
	Endpoint string
	Seq      int64
	ChatID   string
	EventAt  time.Time // when the event happened
	State    string
	Attempts int
	FirstAt  time.Time // first attempt (zero: not tried yet)
	NextAt   time.Time // not before (zero: at once)
	Error    string    // the last attempt's error
	Updated  time.Time
}

const outboxCols = `endpoint, seq, chat_id, event_at, state, attempts, first_at, next_at, error, updated_at`

// OutboxPending returns endpoint's pending deliveries with seq > after, in
// seq order, at most limit, never past the feed's visible mark.
func (s *Store) OutboxPending(ctx context.Context, endpoint string, after int64, limit int) ([]OutboxRow, error) {
	visible, _ := s.feed.State()
	rows, err := s.r.QueryContext(ctx, `SELECT `+outboxCols+` FROM webhook_outbox
		WHERE endpoint = ? AND seq > ? AND seq <= ? AND state = 'pending' ORDER BY seq LIMIT ?`,
		endpoint, after, visible, limit)
	if err != nil {
		return nil, fmt.Errorf("store: outbox: %w", err)
	}
	return scanOutbox(rows)
}

// OutboxFailed returns endpoint's failed deliveries in seq order (at most
// limit).
func (s *Store) OutboxFailed(ctx context.Context, endpoint string, limit int) ([]OutboxRow, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+outboxCols+` FROM webhook_outbox
		WHERE endpoint = ? AND state = 'failed' ORDER BY seq LIMIT ?`, endpoint, limit)
	if err != nil {
		return nil, fmt.Errorf("store: outbox failed: %w", err)
	}
	return scanOutbox(rows)
}

// OutboxCounts returns, per endpoint, how many deliveries are pending and
// how many failed.
func (s *Store) OutboxCounts(ctx context.Context) (map[string][2]int, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT endpoint, state, count(*) FROM webhook_outbox GROUP BY endpoint, state`)
	if err != nil {
		return nil, fmt.Errorf("store: outbox counts: %w", err)
	}
	defer rows.Close()
	out := map[string][2]int{}
	for rows.Next() {
		var (
			ep, st string
			n      int
		)
		if err := rows.Scan(&ep, &st, &n); err != nil {
			return nil, fmt.Errorf("store: outbox counts: %w", err)
		}
		c := out[ep]
		if st == OutboxFailed {
			c[1] = n
		} else {
			c[0] = n
		}
		out[ep] = c
	}
	return out, rows.Err()
}

// OutboxDelivered deletes delivered rows. Losing this write in a power
// failure only means sending those events again (receivers dedupe on the
// event id), so it does not wait for its own fsync.
func (s *Store) OutboxDelivered(ctx context.Context, endpoint string, seqs []int64) error {
	if len(seqs) == 0 {
		return nil
	}
	err := s.writeLazy(ctx, func(ctx context.Context, tx *wtx) error {
		for len(seqs) > 0 {
			n := min(len(seqs), 500)
			args := []any{endpoint}
			for _, q := range seqs[:n] {
				args = append(args, q)
			}
			seqs = seqs[n:]
			if _, err := tx.ExecContext(ctx, `DELETE FROM webhook_outbox
				WHERE endpoint = ? AND seq IN (`+placeholders(n)+`)`, args...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: outbox delivered: %w", err)
	}
	return nil
}

// OutboxAttempt records a failed attempt that will be retried at r.NextAt.
// Like OutboxDelivered it does not wait for its own fsync: losing it means
// an earlier retry, never a lost delivery.
func (s *Store) OutboxAttempt(ctx context.Context, r OutboxRow) error {
	now := nanos(s.clk.Now())
	err := s.writeLazy(ctx, func(ctx context.Context, tx *wtx) error {
		_, err := tx.ExecContext(ctx, `UPDATE webhook_outbox
			SET attempts = ?, first_at = ?, next_at = ?, error = ?, updated_at = ?
			WHERE endpoint = ? AND seq = ? AND state = 'pending'`,
			r.Attempts, nanos(r.FirstAt), nanos(r.NextAt), r.Error, now, r.Endpoint, r.Seq)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: outbox attempt: %w", err)
	}
	return nil
}

// OutboxGiveUp marks a delivery failed, durably: a refused or expired
// delivery is not tried again on the next start, only when an operator
// asks (OutboxRetry).
func (s *Store) OutboxGiveUp(ctx context.Context, r OutboxRow) error {
	now := nanos(s.clk.Now())
	err := s.write(ctx, func(ctx context.Context, tx *wtx) error {
		_, err := tx.ExecContext(ctx, `UPDATE webhook_outbox
			SET state = 'failed', attempts = ?, first_at = ?, next_at = 0, error = ?, updated_at = ?
			WHERE endpoint = ? AND seq = ? AND state = 'pending'`,
			r.Attempts, nanos(r.FirstAt), r.Error, now, r.Endpoint, r.Seq)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: outbox give up: %w", err)
	}
	return nil
}

// OutboxRetry puts endpoint's failed deliveries back to pending, with a
// fresh retry budget, and returns them in seq order.
func (s *Store) OutboxRetry(ctx context.Context, endpoint string) ([]OutboxRow, error) {
	now := nanos(s.clk.Now())
	var out []OutboxRow
	err := s.write(ctx, func(ctx context.Context, tx *wtx) error {
		rows, err := tx.QueryContext(ctx, `UPDATE webhook_outbox
			SET state = 'pending', attempts = 0, first_at = 0, next_at = 0, updated_at = ?
			WHERE endpoint = ? AND state = 'failed'
			RETURNING `+outboxCols, now, endpoint)
		if err != nil {
			return err
		}
		out, err = scanOutbox(rows)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: outbox retry: %w", err)
	}
	sortOutbox(out)
	return out, nil
}

func sortOutbox(rows []OutboxRow) {
	slices.SortFunc(rows, func(a, b OutboxRow) int { return cmp.Compare(a.Seq, b.Seq) })
}

// scanOutbox reads and closes rows of outboxCols.
func scanOutbox(rows interface {
	Next() bool
	Scan(...any) error
	Err() error
	Close() error
}) ([]OutboxRow, error) {
	defer rows.Close()
	var out []OutboxRow
	for rows.Next() {
		var (
			r                          OutboxRow
			evAt, first, next, updated int64
		)
		if err := rows.Scan(&r.Endpoint, &r.Seq, &r.ChatID, &evAt, &r.State, &r.Attempts, &first, &next, &r.Error, &updated); err != nil {
			return nil, err
		}
		r.EventAt, r.FirstAt, r.NextAt, r.Updated = fromNanos(evAt), fromNanos(first), fromNanos(next), fromNanos(updated)
		out = append(out, r)
	}
	return out, rows.Err()
}

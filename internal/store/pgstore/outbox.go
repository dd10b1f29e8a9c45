package pgstore

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/dispatchd/dispatch/internal/store"
)

const outboxCols = `endpoint, seq, chat_id, event_at, state, attempts, first_at, next_at, error, updated_at`

// OutboxPending returns endpoint's pending deliveries with seq > after, in
// seq order, at most limit.
func (s *Store) OutboxPending(ctx context.Context, endpoint string, after int64, limit int) ([]store.OutboxRow, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+outboxCols+` FROM webhook_outbox
		WHERE endpoint = $1 AND seq > $2 AND state = 'pending' ORDER BY seq LIMIT $3`, endpoint, after, limit)
	if err != nil {
		return nil, fmt.Errorf("store: outbox: %w", classify(err))
	}
	return scanOutbox(rows)
}

// OutboxFailed returns endpoint's failed deliveries in seq order.
func (s *Store) OutboxFailed(ctx context.Context, endpoint string, limit int) ([]store.OutboxRow, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+outboxCols+` FROM webhook_outbox
		WHERE endpoint = $1 AND state = 'failed' ORDER BY seq LIMIT $2`, endpoint, limit)
	if err != nil {
		return nil, fmt.Errorf("store: outbox failed: %w", classify(err))
	}
	return scanOutbox(rows)
}

// OutboxCounts returns, per endpoint, how many deliveries are pending and
// how many failed.
func (s *Store) OutboxCounts(ctx context.Context) (map[string][2]int, error) {
	rows, err := s.pool.Query(ctx, `SELECT endpoint, state, count(*) FROM webhook_outbox GROUP BY endpoint, state`)
	if err != nil {
		return nil, fmt.Errorf("store: outbox counts: %w", classify(err))
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
		if st == store.OutboxFailed {
			c[1] = n
		} else {
			c[0] = n
		}
		out[ep] = c
	}
	return out, classify(rows.Err())
}

// OutboxDelivered deletes delivered rows (not waiting for the flush).
func (s *Store) OutboxDelivered(ctx context.Context, endpoint string, seqs []int64) error {
	if len(seqs) == 0 {
		return nil
	}
	err := s.write(ctx, true, func(ctx context.Context, tx *wtx) error {
		_, err := tx.Exec(ctx, `DELETE FROM webhook_outbox WHERE endpoint = $1 AND seq = ANY($2)`, endpoint, seqs)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: outbox delivered: %w", err)
	}
	return nil
}

// OutboxAttempt records a failed attempt to be retried at r.NextAt (not
// waiting for the flush).
func (s *Store) OutboxAttempt(ctx context.Context, r store.OutboxRow) error {
	now := store.Nanos(s.clk.Now())
	err := s.write(ctx, true, func(ctx context.Context, tx *wtx) error {
		_, err := tx.Exec(ctx, `UPDATE webhook_outbox
			SET attempts = $1, first_at = $2, next_at = $3, error = $4, updated_at = $5
			WHERE endpoint = $6 AND seq = $7 AND state = 'pending'`,
			r.Attempts, store.Nanos(r.FirstAt), store.Nanos(r.NextAt), r.Error, now, r.Endpoint, r.Seq)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: outbox attempt: %w", err)
	}
	return nil
}

// OutboxGiveUp marks a delivery failed, durably.
func (s *Store) OutboxGiveUp(ctx context.Context, r store.OutboxRow) error {
	now := store.Nanos(s.clk.Now())
	err := s.write(ctx, false, func(ctx context.Context, tx *wtx) error {
		_, err := tx.Exec(ctx, `UPDATE webhook_outbox
			SET state = 'failed', attempts = $1, first_at = $2, next_at = 0, error = $3, updated_at = $4
			WHERE endpoint = $5 AND seq = $6 AND state = 'pending'`,
			r.Attempts, store.Nanos(r.FirstAt), r.Error, now, r.Endpoint, r.Seq)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: outbox give up: %w", err)
	}
	return nil
}

// OutboxRetry puts endpoint's failed deliveries back to pending with a
// fresh retry budget and returns them in seq order.
func (s *Store) OutboxRetry(ctx context.Context, endpoint string) ([]store.OutboxRow, error) {
	now := store.Nanos(s.clk.Now())
	var out []store.OutboxRow
	err := s.write(ctx, false, func(ctx context.Context, tx *wtx) error {
		rows, err := tx.Query(ctx, `UPDATE webhook_outbox
			SET state = 'pending', attempts = 0, first_at = 0, next_at = 0, updated_at = $1
			WHERE endpoint = $2 AND state = 'failed'
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
	slices.SortFunc(out, func(a, b store.OutboxRow) int { return cmp.Compare(a.Seq, b.Seq) })
	return out, nil
}

func scanOutbox(rows pgx.Rows) ([]store.OutboxRow, error) {
	defer rows.Close()
	var out []store.OutboxRow
	for rows.Next() {
		var (
			r                          store.OutboxRow
			evAt, first, next, updated int64
		)
		if err := rows.Scan(&r.Endpoint, &r.Seq, &r.ChatID, &evAt, &r.State, &r.Attempts, &first, &next, &r.Error, &updated); err != nil {
			return nil, err
		}
		r.EventAt, r.FirstAt, r.NextAt, r.Updated = store.FromNanos(evAt), store.FromNanos(first), store.FromNanos(next), store.FromNanos(updated)
		out = append(out, r)
	}
	return out, classify(rows.Err())
}

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

// OutboxPending returns endpoint's pending deliveries with seq > after, in
// seq order, at most limit, never past the feed's visible mark.
func (s *Store[T]) OutboxPending(ctx context.Context, endpoint string, after int64, limit int) ([]OutboxRow, error) {
	out, err := s.d.OutboxPending(ctx, endpoint, after, limit)
	if err != nil {
		return nil, fmt.Errorf("store: outbox: %w", err)
	}
	return out, nil
}

// OutboxFailed returns endpoint's failed deliveries in seq order (at most
// limit).
func (s *Store[T]) OutboxFailed(ctx context.Context, endpoint string, limit int) ([]OutboxRow, error) {
	out, err := s.d.OutboxFailed(ctx, endpoint, limit)
	if err != nil {
		return nil, fmt.Errorf("store: outbox failed: %w", err)
	}
	return out, nil
}

// OutboxCounts returns, per endpoint, how many deliveries are pending and
// how many failed.
func (s *Store[T]) OutboxCounts(ctx context.Context) (map[string][2]int, error) {
	counts, err := s.d.OutboxCounts(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: outbox counts: %w", err)
	}
	out := map[string][2]int{}
	for _, n := range counts {
		c := out[n.Endpoint]
		if n.State == OutboxFailed {
			c[1] = n.N
		} else {
			c[0] = n.N
		}
		out[n.Endpoint] = c
	}
	return out, nil
}

// OutboxDelivered deletes delivered rows. Losing this write in a power
// failure only means sending those events again (receivers dedupe on the
// event id), so it does not wait for its flush.
func (s *Store[T]) OutboxDelivered(ctx context.Context, endpoint string, seqs []int64) error {
	if len(seqs) == 0 {
		return nil
	}
	err := s.write(ctx, true, func(ctx context.Context, tx T) error {
		for len(seqs) > 0 {
			n := min(len(seqs), 500)
			if err := tx.OutboxDelete(ctx, endpoint, seqs[:n]); err != nil {
				return err
			}
			seqs = seqs[n:]
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: outbox delivered: %w", err)
	}
	return nil
}

// OutboxAttempt records a failed attempt that will be retried at r.NextAt.
// Like OutboxDelivered it does not wait for its flush: losing it means an
// earlier retry, never a lost delivery.
func (s *Store[T]) OutboxAttempt(ctx context.Context, r OutboxRow) error {
	now := Nanos(s.clk.Now())
	if err := s.write(ctx, true, func(ctx context.Context, tx T) error { return tx.OutboxAttempt(ctx, r, now) }); err != nil {
		return fmt.Errorf("store: outbox attempt: %w", err)
	}
	return nil
}

// OutboxGiveUp marks a delivery failed, durably: a refused or expired
// delivery is not tried again on the next start, only when an operator
// asks (OutboxRetry).
func (s *Store[T]) OutboxGiveUp(ctx context.Context, r OutboxRow) error {
	now := Nanos(s.clk.Now())
	if err := s.write(ctx, false, func(ctx context.Context, tx T) error { return tx.OutboxGiveUp(ctx, r, now) }); err != nil {
		return fmt.Errorf("store: outbox give up: %w", err)
	}
	return nil
}

// OutboxRetry puts endpoint's failed deliveries back to pending, with a
// fresh retry budget, and returns them in seq order.
func (s *Store[T]) OutboxRetry(ctx context.Context, endpoint string) ([]OutboxRow, error) {
	now := Nanos(s.clk.Now())
	var out []OutboxRow
	err := s.write(ctx, false, func(ctx context.Context, tx T) (err error) {
		out, err = tx.OutboxRetry(ctx, endpoint, now)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: outbox retry: %w", err)
	}
	slices.SortFunc(out, func(a, b OutboxRow) int { return cmp.Compare(a.Seq, b.Seq) })
	return out, nil
}

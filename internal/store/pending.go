package store

import (
	"context"
	"fmt"
	"time"
)

// PendingStat is one chat's waiting line.
type PendingStat struct {
	Count  int
	Oldest time.Time // when the longest-waiting message became pending
}

// PendingStats returns, for every chat with pending messages, how many wait
// and since when; one query, for health checks and status.
func (s *Store) PendingStats(ctx context.Context) (map[string]PendingStat, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT chat_id, count(*), min(updated_at) FROM messages
		WHERE state = 'pending' GROUP BY chat_id`)
	if err != nil {
		return nil, fmt.Errorf("store: pending stats: %w", err)
	}
	defer rows.Close()
	out := make(map[string]PendingStat)
	for rows.Next() {
		var (
			chat   string
			n      int
			oldest int64
		)
		if err := rows.Scan(&chat, &n, &oldest); err != nil {
			return nil, fmt.Errorf("store: pending stats: %w", err)
		}
		out[chat] = PendingStat{Count: n, Oldest: fromNanos(oldest)}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: pending stats: %w", err)
	}
	return out, nil
}

// HasPending reports whether chat has a message waiting.
func (s *Store) HasPending(ctx context.Context, chatID string) (bool, error) {
	var one int
	err := s.r.QueryRowContext(ctx, `SELECT EXISTS(SELECT 1 FROM messages
		WHERE chat_id = ? AND state = 'pending')`, chatID).Scan(&one)
	if err != nil {
		return false, fmt.Errorf("store: has pending: %w", err)
	}
	return one == 1, nil
}

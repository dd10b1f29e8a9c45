package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// OldestPending is when chat's oldest waiting message was accepted (zero
// when none waits): a session's place in line for a live slot.
func (s *Store) OldestPending(ctx context.Context, chatID string) (time.Time, error) {
	var oldest sql.NullInt64
	err := s.r.QueryRowContext(ctx, `SELECT min(created_at) FROM messages
		WHERE chat_id = ? AND state = 'pending'`, chatID).Scan(&oldest)
	if err != nil {
		return time.Time{}, fmt.Errorf("store: oldest pending: %w", err)
	}
	if !oldest.Valid {
		return time.Time{}, nil
	}
	return fromNanos(oldest.Int64), nil
}

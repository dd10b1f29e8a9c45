package store

import (
	"context"
	"fmt"
	"time"
)

// purgeChunk bounds one purge write, so a large backlog of old messages is
// removed in short transactions that never hold the writer for long.
const purgeChunk = 2000

// PurgeDone deletes done messages last updated before cutoff, at most limit
// of them (a chunk at a time), and reports how many went. Done messages are
// kept for a while so GET /v1/messages/{id} can report replies and a resent
// client id is recognised as a duplicate; past the retention they only grow
// the database. Pending, in-flight and dead messages are never purged.
func (s *Store) PurgeDone(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	total := 0
	for total < limit {
		n := min(purgeChunk, limit-total)
		var got int64
		err := s.write(ctx, func(ctx context.Context, tx *wtx) error {
			res, err := tx.ExecContext(ctx, `DELETE FROM messages WHERE seq IN (
				SELECT seq FROM messages WHERE state = 'done' AND updated_at < ? LIMIT ?)`, nanos(cutoff), n)
			if err != nil {
				return err
			}
			got, err = res.RowsAffected()
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

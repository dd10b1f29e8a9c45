package postgres

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/store"
)

// Visible returns the largest seq this node knows committed and a channel
// closed when it next moves up; see the package comment.
func (s *DB) Visible() (int64, <-chan struct{}) { return s.feed.State() }

// readTx runs fn in a read-only REPEATABLE READ transaction: one snapshot,
// so the retention horizon and the events read agree.
func (s *DB) readTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return classify(err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := fn(tx); err != nil {
		return err
	}
	return classify(tx.Commit(ctx))
}

// gone returns an *events.ErrGone if after is below the retention horizon,
// read in tx's snapshot.
func gone(ctx context.Context, tx pgx.Tx, after int64) error {
	var h, first *int64
	if err := tx.QueryRow(ctx, `SELECT (SELECT v FROM meta WHERE k = 'events_horizon'),
		(SELECT min(seq) FROM events)`).Scan(&h, &first); err != nil {
		return classify(err)
	}
	if h == nil || after >= *h {
		return nil
	}
	oldest := *h + 1
	if first != nil {
		oldest = max(oldest, *first)
	}
	return &events.ErrGone{Oldest: oldest}
}

// Events reads the feed after q.After (or from the oldest kept event). Any
// snapshot of the events table is a prefix of the feed, so no visible mark
// bounds the read.
func (s *DB) Events(ctx context.Context, q events.Query) (evs []events.Event, next int64, err error) {
	after := q.After
	tail := q.Tail && !q.HasAfter
	var newest int64
	err = s.readTx(ctx, func(tx pgx.Tx) error {
		if !q.HasAfter {
			var h *int64
			if err := tx.QueryRow(ctx, `SELECT v FROM meta WHERE k = 'events_horizon'`).Scan(&h); err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return classify(err)
			}
			if h != nil {
				after = *h
			}
		}
		if err := gone(ctx, tx, after); err != nil {
			return err
		}
		where := []string{"seq > $1"}
		args := []any{after}
		if q.ChatID != "" {
			args = append(args, q.ChatID)
			where = append(where, "chat_id = $"+strconv.Itoa(len(args)))
		}
		if len(q.Types) > 0 {
			ts := make([]string, len(q.Types))
			for i, t := range q.Types {
				ts[i] = string(t)
			}
			args = append(args, ts)
			where = append(where, "type = ANY($"+strconv.Itoa(len(args))+")")
		}
		args = append(args, q.Limit)
		order := "seq"
		if tail {
			// The last events, then next is the newest seq of this
			// snapshot (matching or not), where a follower goes on.
			order = "seq DESC"
			if err := tx.QueryRow(ctx, `SELECT coalesce(max(seq), $1) FROM events`, after).Scan(&newest); err != nil {
				return classify(err)
			}
		}
		rows, err := tx.Query(ctx, `SELECT `+store.EventColumns+` FROM events
			WHERE `+strings.Join(where, " AND ")+` ORDER BY `+order+` LIMIT $`+strconv.Itoa(len(args)), args...)
		if err != nil {
			return classify(err)
		}
		defer rows.Close()
		evs, err = store.ScanAll(rows, store.ScanEvent)
		return classify(err)
	})
	if err != nil {
		return nil, after, err
	}
	if tail {
		slices.Reverse(evs)
		s.feed.Advance(newest)
		return evs, newest, nil
	}
	next = after
	if len(evs) > 0 {
		next = evs[len(evs)-1].Seq
		s.feed.Advance(next)
	}
	return evs, next, nil
}

func (s *DB) EventsBySeq(ctx context.Context, seqs []int64) ([]events.Event, error) {
	return query(ctx, s, store.ScanEvent, `SELECT `+store.EventColumns+` FROM events WHERE seq = ANY($1)`, seqs)
}

func (s *DB) EventsOldest(ctx context.Context) (oldest, last int64, err error) {
	var first, h *int64
	err = s.pool.QueryRow(ctx, `SELECT (SELECT min(seq) FROM events), last,
		(SELECT v FROM meta WHERE k = 'events_horizon') FROM feed`).Scan(&first, &last, &h)
	if err != nil {
		return 0, 0, classify(err)
	}
	s.feed.Advance(last)
	if first != nil {
		return *first, last, nil
	}
	var hv int64
	if h != nil {
		hv = *h
	}
	return hv + 1, last, nil
}

// PurgeEvents removes one chunk of the feed's head older than cutoff with
// its webhook deliveries. The horizon is recorded in the same transaction
// as the deletion, and readers read both in one snapshot.
func (s *DB) PurgeEvents(ctx context.Context, cutoff int64, n int) (got int, done bool, err error) {
	err = s.Write(ctx, false, func(ctx context.Context, tx *Tx) error {
		got, done = 0, false
		rows, err := tx.Query(ctx, `SELECT seq, at FROM events ORDER BY seq LIMIT $1`, n)
		if err != nil {
			return err
		}
		var upTo int64
		for rows.Next() {
			var seq, at int64
			if err := rows.Scan(&seq, &at); err != nil {
				rows.Close()
				return err
			}
			if at >= cutoff {
				done = true
				break
			}
			upTo = seq
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if upTo == 0 {
			done = true
			return nil
		}
		tag, err := tx.Exec(ctx, `DELETE FROM events WHERE seq <= $1`, upTo)
		if err != nil {
			return err
		}
		got = int(tag.RowsAffected())
		if _, err := tx.Exec(ctx, `DELETE FROM webhook_outbox WHERE seq <= $1`, upTo); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO meta (k, v) VALUES ('events_horizon', $1)
			ON CONFLICT (k) DO UPDATE SET v = greatest(meta.v, excluded.v)`, upTo)
		return err
	})
	return got, done, err
}

package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/store"
)

// The event feed on SQLite.
//
// Events are inserted by write transactions through the single writer and
// numbered by the table's AUTOINCREMENT rowid. Readers see them only up to
// the feed's visible mark, which the writer moves up after a commit, to
// the largest event seq that commit inserted, and before it answers any
// caller of the batch.
//
// Why a reader that has been given the events up to N never later finds a
// new event with seq ≤ N: every event with seq ≤ visible was committed
// before visible reached it (the mark moves only after a commit); and the
// single writer commits one transaction at a time, each one's new seqs
// larger than every seq committed before it, so nothing committed after
// the mark moved can sort below it. A read returns events with seq ≤ the
// mark it saw, so its answer is a prefix that can only grow at the end.
// (A rolled-back op does not move the mark; SQLite rolls its counter back
// too, so its seq may be used again by a later commit, above the mark.)
//
// The retention horizon (every event up to it was purged) is kept in
// memory as well as durably: it is raised before a purge's deletion
// commits, and a read checks it after its query, so a read from below it
// is an ErrGone, never a silent gap.

// Visible returns the feed's visible mark and a channel closed when it
// next moves up.
func (s *DB) Visible() (int64, <-chan struct{}) { return s.feed.State() }

// loadFeed reads the visible mark and the retention horizon at open.
func (s *DB) loadFeed(ctx context.Context) error {
	var last sql.NullInt64
	if err := s.wc.QueryRowContext(ctx, `SELECT max(seq) FROM events`).Scan(&last); err != nil {
		return fmt.Errorf("read event feed: %w", err)
	}
	var horizon int64
	err := s.wc.QueryRowContext(ctx, `SELECT v FROM meta WHERE k = 'events_horizon'`).Scan(&horizon)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("read event horizon: %w", err)
	}
	s.horizon.Store(horizon)
	s.feed.Init(max(last.Int64, horizon))
	return nil
}

// Events reads the feed after q.After (from the horizon without one),
// never past the visible mark.
func (s *DB) Events(ctx context.Context, q events.Query) (evs []events.Event, next int64, err error) {
	visible, _ := s.feed.State()
	after := q.After
	if !q.HasAfter {
		after = s.horizon.Load()
	}
	if err := s.checkHorizon(ctx, after); err != nil {
		return nil, after, err
	}
	where := []string{"seq > ?", "seq <= ?"}
	args := []any{after, visible}
	if q.ChatID != "" {
		where = append(where, "chat_id = ?")
		args = append(args, q.ChatID)
	}
	if len(q.Types) > 0 {
		where = append(where, "type IN ("+placeholders(len(q.Types))+")")
		for _, t := range q.Types {
			args = append(args, string(t))
		}
	}
	args = append(args, q.Limit)
	order := "seq"
	tail := q.Tail && !q.HasAfter
	if tail {
		order = "seq DESC"
	}
	rows, err := s.r.QueryContext(ctx, `SELECT `+store.EventColumns+` FROM events
		WHERE `+strings.Join(where, " AND ")+` ORDER BY `+order+` LIMIT ?`, args...)
	if err != nil {
		return nil, after, err
	}
	defer rows.Close()
	if evs, err = store.ScanAll(rows, store.ScanEvent); err != nil {
		return nil, after, err
	}
	// A purge may have removed events between the check and the query.
	if err := s.checkHorizon(ctx, after); err != nil {
		return nil, after, err
	}
	if tail {
		slices.Reverse(evs)
		return evs, visible, nil
	}
	next = after
	if len(evs) > 0 {
		next = evs[len(evs)-1].Seq
	}
	return evs, next, nil
}

func (s *DB) checkHorizon(ctx context.Context, after int64) error {
	h := s.horizon.Load()
	if after >= h {
		return nil
	}
	oldest := h + 1
	var first sql.NullInt64
	if err := s.r.QueryRowContext(ctx, `SELECT min(seq) FROM events`).Scan(&first); err == nil && first.Valid {
		oldest = max(first.Int64, oldest)
	}
	return &events.ErrGone{Oldest: oldest}
}

func (s *DB) EventsBySeq(ctx context.Context, seqs []int64) ([]events.Event, error) {
	args := make([]any, len(seqs))
	for i, q := range seqs {
		args[i] = q
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+store.EventColumns+` FROM events
		WHERE seq IN (`+placeholders(len(seqs))+`)`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return store.ScanAll(rows, store.ScanEvent)
}

func (s *DB) EventsOldest(ctx context.Context) (oldest, last int64, err error) {
	visible, _ := s.feed.State()
	var first sql.NullInt64
	if err := s.r.QueryRowContext(ctx, `SELECT min(seq) FROM events`).Scan(&first); err != nil {
		return 0, 0, err
	}
	if first.Valid {
		return first.Int64, visible, nil
	}
	return s.horizon.Load() + 1, visible, nil
}

// PurgeEvents removes one chunk of the feed's head older than cutoff: the
// prefix is read, the in-memory horizon raised (readers below it get
// ErrGone from now on, before the events disappear), then the deletion
// and the durable horizon are one write.
func (s *DB) PurgeEvents(ctx context.Context, cutoff int64, n int) (int, bool, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT seq, at FROM events ORDER BY seq LIMIT ?`, n)
	if err != nil {
		return 0, false, err
	}
	var upTo int64
	cut := false
	for rows.Next() {
		var seq, at int64
		if err := rows.Scan(&seq, &at); err != nil {
			rows.Close()
			return 0, false, err
		}
		if at >= cutoff {
			cut = true
			break
		}
		upTo = seq
	}
	rows.Close()
	if upTo == 0 {
		return 0, true, nil
	}
	for {
		h := s.horizon.Load()
		if h >= upTo || s.horizon.CompareAndSwap(h, upTo) {
			break
		}
	}
	var got int64
	err = s.Write(ctx, false, func(ctx context.Context, tx *Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM events WHERE seq <= ?`, upTo)
		if err != nil {
			return err
		}
		if got, err = res.RowsAffected(); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM webhook_outbox WHERE seq <= ?`, upTo); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO meta (k, v) VALUES ('events_horizon', ?)
			ON CONFLICT (k) DO UPDATE SET v = max(v, excluded.v)`, upTo)
		return err
	})
	return int(got), cut, err
}

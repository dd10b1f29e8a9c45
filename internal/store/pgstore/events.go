package pgstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/store"
)

// EventsVisible returns the largest seq this node knows committed and a
// channel closed when it next moves up; see the package comment.
func (s *Store) EventsVisible() (int64, <-chan struct{}) { return s.feed.State() }

// AppendEvent writes one event durably and returns it numbered.
func (s *Store) AppendEvent(ctx context.Context, ev events.Event) (events.Event, error) {
	var out *events.Event
	err := s.write(ctx, false, func(ctx context.Context, tx *wtx) (err error) {
		out, err = s.appendEvent(tx, ev)
		return err
	})
	if err != nil {
		return events.Event{}, fmt.Errorf("store: %w", err)
	}
	return *out, nil
}

// RecordReset writes a session_reset event.
func (s *Store) RecordReset(ctx context.Context, chat, reason string) error {
	err := s.write(ctx, false, func(ctx context.Context, tx *wtx) error {
		if err := s.fenceChats(ctx, tx, chat); err != nil {
			return err
		}
		_, err := s.appendEvent(tx, events.Event{Type: events.SessionReset, ChatID: chat, Reason: reason})
		return err
	})
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// readTx runs fn in a read-only REPEATABLE READ transaction: one snapshot,
// so the retention horizon and the events read agree.
func (s *Store) readTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
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

// Events reads the feed after q.After (or from the oldest kept event); see
// store.Store.Events. Any snapshot of the events table is a prefix of the
// feed, so no visible mark bounds the read.
func (s *Store) Events(ctx context.Context, q events.Query) (evs []events.Event, next int64, err error) {
	after := q.After
	limit := q.Limit
	if limit <= 0 {
		limit = events.DefaultLimit
	}
	limit = min(limit, events.MaxLimit)
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
		args = append(args, limit)
		order := "seq"
		if tail {
			// The last events, then next is the newest seq of this
			// snapshot (matching or not), where a follower goes on.
			order = "seq DESC"
			if err := tx.QueryRow(ctx, `SELECT coalesce(max(seq), $1) FROM events`, after).Scan(&newest); err != nil {
				return classify(err)
			}
		}
		rows, err := tx.Query(ctx, `SELECT seq, type, at, payload FROM events
			WHERE `+strings.Join(where, " AND ")+` ORDER BY `+order+` LIMIT $`+strconv.Itoa(len(args)), args...)
		if err != nil {
			return classify(err)
		}
		evs, err = scanEvents(rows)
		return classify(err)
	})
	if err != nil {
		if _, ok := events.IsGone(err); ok {
			return nil, after, err
		}
		return nil, after, fmt.Errorf("store: events: %w", err)
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

// EventsBySeq returns the events with the given seqs that are still kept.
func (s *Store) EventsBySeq(ctx context.Context, seqs []int64) (map[int64]events.Event, error) {
	out := make(map[int64]events.Event, len(seqs))
	if len(seqs) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT seq, type, at, payload FROM events WHERE seq = ANY($1)`, seqs)
	if err != nil {
		return nil, fmt.Errorf("store: events by seq: %w", classify(err))
	}
	evs, err := scanEvents(rows)
	if err != nil {
		return nil, fmt.Errorf("store: events by seq: %w", classify(err))
	}
	for _, e := range evs {
		out[e.Seq] = e
	}
	return out, nil
}

func scanEvents(rows pgx.Rows) ([]events.Event, error) {
	defer rows.Close()
	var out []events.Event
	for rows.Next() {
		var (
			seq, at      int64
			typ, payload string
		)
		if err := rows.Scan(&seq, &typ, &at, &payload); err != nil {
			return nil, err
		}
		e, err := events.FromPayload(seq, events.Type(typ), store.FromNanos(at), []byte(payload))
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// EventsOldest returns the oldest kept seq and the last committed one.
func (s *Store) EventsOldest(ctx context.Context) (oldest, last int64, err error) {
	var first, h *int64
	err = s.pool.QueryRow(ctx, `SELECT (SELECT min(seq) FROM events), last,
		(SELECT v FROM meta WHERE k = 'events_horizon') FROM feed`).Scan(&first, &last, &h)
	if err != nil {
		return 0, 0, fmt.Errorf("store: oldest event: %w", classify(err))
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

// PurgeEvents removes a prefix of the feed older than cutoff, at most
// limit events, with their webhook deliveries; see store.Store.PurgeEvents.
// The horizon is recorded in the same transaction as the deletion, and
// readers read both in one snapshot.
func (s *Store) PurgeEvents(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	total := 0
	for total < limit {
		n := min(store.PurgeChunk, limit-total)
		var (
			got int64
			cut bool
		)
		err := s.write(ctx, false, func(ctx context.Context, tx *wtx) error {
			got, cut = 0, false
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
				if at >= store.Nanos(cutoff) {
					cut = true
					break
				}
				upTo = seq
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			if upTo == 0 {
				cut = true
				return nil
			}
			tag, err := tx.Exec(ctx, `DELETE FROM events WHERE seq <= $1`, upTo)
			if err != nil {
				return err
			}
			got = tag.RowsAffected()
			if _, err := tx.Exec(ctx, `DELETE FROM webhook_outbox WHERE seq <= $1`, upTo); err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `INSERT INTO meta (k, v) VALUES ('events_horizon', $1)
				ON CONFLICT (k) DO UPDATE SET v = greatest(meta.v, excluded.v)`, upTo)
			return err
		})
		if err != nil {
			return total, fmt.Errorf("store: purge events: %w", err)
		}
		total += int(got)
		if cut || int(got) < n {
			break
		}
	}
	return total, nil
}

// RecentExchanges returns chat's last n answered turns, oldest first.
func (s *Store) RecentExchanges(ctx context.Context, chat string, n int) ([]store.Exchange, error) {
	if n <= 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT turn_id, text, reply FROM messages
		WHERE state = 'done' AND chat_id = $1 AND turn_id IN (
			SELECT turn_id FROM messages WHERE state = 'done' AND chat_id = $1 AND turn_id != ''
			GROUP BY turn_id ORDER BY max(seq) DESC LIMIT $2)
		ORDER BY seq`, chat, n)
	if err != nil {
		return nil, fmt.Errorf("store: recent exchanges: %w", classify(err))
	}
	defer rows.Close()
	var out []store.Exchange
	for rows.Next() {
		var turn, text, reply string
		if err := rows.Scan(&turn, &text, &reply); err != nil {
			return nil, fmt.Errorf("store: recent exchanges: %w", err)
		}
		if len(out) == 0 || out[len(out)-1].TurnID != turn {
			out = append(out, store.Exchange{TurnID: turn, Reply: reply})
		}
		out[len(out)-1].Texts = append(out[len(out)-1].Texts, text)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: recent exchanges: %w", classify(err))
	}
	return out, nil
}

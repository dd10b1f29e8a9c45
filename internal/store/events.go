package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dispatchd/dispatch/internal/events"
)

// The event feed.
//
// Events are written by write ops through the single writer, each in the
// same transaction as the change it reports, and numbered by the table's
// AUTOINCREMENT rowid. Readers see them only up to the feed's visible mark,
// which the writer moves up after a commit, to the largest event seq that
// commit inserted, and before it answers any caller of the batch.
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
// A store with concurrent writers (PostgreSQL, where sequence values are
// taken at insert and transactions commit in any order) must keep the same
// promise another way: take the seqs of a transaction's events at commit
// time, under a lock that orders those commits (a one-row counter updated
// as the transaction's last statement), so seq order is commit order; or
// keep a visible mark that only moves past a seq once every transaction
// that took a smaller one has ended. The feed's readers (store.Backend,
// api.EventsBackend, webhook.Store) ask only for that promise, and for a
// notification when the mark moves (EventsVisible).
//
// Retention removes a prefix of the feed (every event up to a seq, the
// horizon) and records the horizon durably. A read from a position below
// the horizon is an ErrGone naming the oldest kept seq, never a silent gap:
// the in-memory horizon is raised before the deletion commits, and a read
// checks it after its query.

// EventsVisible returns the feed's visible mark (the largest seq a reader
// may be given) and a channel closed when it next moves up. Take the
// channel before reading, then wait on it: a new event cannot slip between
// the read and the wait.
func (s *Store) EventsVisible() (int64, <-chan struct{}) { return s.feed.State() }

// SetWebhookFanout sets which webhook endpoints each new event is queued
// for: f returns the names of the endpoints subscribed to an event type.
// Call it before the first event is written (at startup); nil queues none.
func (s *Store) SetWebhookFanout(f func(events.Type) []string) {
	if f == nil {
		s.fanout.Store(nil)
		return
	}
	s.fanout.Store(&f)
}

// loadFeed reads the visible mark and the retention horizon at open.
func (s *Store) loadFeed(ctx context.Context) error {
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

// appendEvent inserts ev (its Seq and ID are ignored) inside a write op,
// queues it for the subscribed webhook endpoints in the same transaction,
// and returns it numbered.
func (s *Store) appendEvent(ctx context.Context, tx *wtx, ev events.Event) (events.Event, error) {
	if !ev.Type.Valid() {
		return ev, fmt.Errorf("unknown event type %q", ev.Type)
	}
	if ev.At.IsZero() {
		ev.At = s.clk.Now()
	}
	payload, err := ev.Payload()
	if err != nil {
		return ev, err
	}
	var seq int64
	if err := tx.QueryRowContext(ctx, `INSERT INTO events (type, chat_id, at, payload)
		VALUES (?, ?, ?, ?) RETURNING seq`, string(ev.Type), ev.ChatID, nanos(ev.At), string(payload)).Scan(&seq); err != nil {
		return ev, fmt.Errorf("append %s event: %w", ev.Type, err)
	}
	if f := s.fanout.Load(); f != nil {
		for _, ep := range (*f)(ev.Type) {
			if _, err := tx.ExecContext(ctx, `INSERT INTO webhook_outbox (endpoint, seq, chat_id, event_at, updated_at)
				VALUES (?, ?, ?, ?, ?)`, ep, seq, ev.ChatID, nanos(ev.At), nanos(ev.At)); err != nil {
				return ev, fmt.Errorf("queue event %d for webhook %q: %w", seq, ep, err)
			}
		}
	}
	tx.noteEvent(seq)
	return ev.WithSeq(seq), nil
}

// AppendEvent writes one event durably and returns it numbered. Events
// that belong to another change (a reply, a dead letter, a failed session)
// are written by that change's own write instead, in the same commit.
func (s *Store) AppendEvent(ctx context.Context, ev events.Event) (events.Event, error) {
	var out events.Event
	err := s.write(ctx, func(ctx context.Context, tx *wtx) (err error) {
		out, err = s.appendEvent(ctx, tx, ev)
		return err
	})
	if err != nil {
		return events.Event{}, fmt.Errorf("store: %w", err)
	}
	return out, nil
}

// RecordReset writes a session_reset event: chat's conversation had to
// start over, for reason.
func (s *Store) RecordReset(ctx context.Context, chat, reason string) error {
	_, err := s.AppendEvent(ctx, events.Event{Type: events.SessionReset, ChatID: chat, Reason: reason})
	return err
}

// Events reads the feed: the events after q.After (or from the oldest kept
// one), oldest first, never past the visible mark. next is the seq of the
// last event returned, or the position read from when none was. A position
// older than the oldest kept event is an *events.ErrGone. With q.Tail (and
// no q.After) it returns the last q.Limit events, oldest first, and next is
// the visible mark.
func (s *Store) Events(ctx context.Context, q events.Query) (evs []events.Event, next int64, err error) {
	visible, _ := s.feed.State()
	after := q.After
	if !q.HasAfter {
		after = s.horizon.Load()
	}
	if err := s.checkHorizon(ctx, after); err != nil {
		return nil, after, err
	}
	limit := q.Limit
	if limit <= 0 {
		limit = events.DefaultLimit
	}
	limit = min(limit, events.MaxLimit)
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
	args = append(args, limit)
	order := "seq"
	tail := q.Tail && !q.HasAfter
	if tail {
		order = "seq DESC"
	}
	rows, err := s.r.QueryContext(ctx, `SELECT seq, type, at, payload FROM events
		WHERE `+strings.Join(where, " AND ")+` ORDER BY `+order+` LIMIT ?`, args...)
	if err != nil {
		return nil, after, fmt.Errorf("store: events: %w", err)
	}
	evs, err = scanEvents(rows)
	if err != nil {
		return nil, after, fmt.Errorf("store: events: %w", err)
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

func (s *Store) checkHorizon(ctx context.Context, after int64) error {
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

// EventsBySeq returns the events with the given seqs that are still kept.
func (s *Store) EventsBySeq(ctx context.Context, seqs []int64) (map[int64]events.Event, error) {
	out := make(map[int64]events.Event, len(seqs))
	for len(seqs) > 0 {
		n := min(len(seqs), 500)
		args := make([]any, n)
		for i, q := range seqs[:n] {
			args[i] = q
		}
		seqs = seqs[n:]
		rows, err := s.rdb.QueryContext(ctx, `SELECT seq, type, at, payload FROM events
			WHERE seq IN (`+placeholders(n)+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("store: events by seq: %w", err)
		}
		evs, err := scanEvents(rows)
		if err != nil {
			return nil, fmt.Errorf("store: events by seq: %w", err)
		}
		for _, e := range evs {
			out[e.Seq] = e
		}
	}
	return out, nil
}

// scanEvents reads and closes rows of (seq, type, at, payload).
func scanEvents(rows *sql.Rows) ([]events.Event, error) {
	defer rows.Close()
	var out []events.Event
	for rows.Next() {
		var (
			seq     int64
			typ     string
			at      int64
			payload string
		)
		if err := rows.Scan(&seq, &typ, &at, &payload); err != nil {
			return nil, err
		}
		e, err := events.FromPayload(seq, events.Type(typ), fromNanos(at), []byte(payload))
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// EventsOldest returns the oldest kept seq and the visible mark (0, 0 when
// the feed is empty and was never purged).
func (s *Store) EventsOldest(ctx context.Context) (oldest, last int64, err error) {
	visible, _ := s.feed.State()
	var first sql.NullInt64
	if err := s.r.QueryRowContext(ctx, `SELECT min(seq) FROM events`).Scan(&first); err != nil {
		return 0, 0, fmt.Errorf("store: oldest event: %w", err)
	}
	if first.Valid {
		return first.Int64, visible, nil
	}
	return s.horizon.Load() + 1, visible, nil
}

// PurgeEvents removes events older than cutoff, at most limit of them, a
// chunk at a time, and reports how many went. Only a prefix of the feed is
// ever removed (the events up to the first one that is still young), so
// the feed has no holes: what is kept is everything after the horizon.
// Webhook deliveries of purged events, still pending or failed, go with
// them (they are past the retention too).
func (s *Store) PurgeEvents(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	total := 0
	for total < limit {
		n := min(purgeChunk, limit-total)
		// The prefix to remove: events in seq order while at < cutoff.
		rows, err := s.r.QueryContext(ctx, `SELECT seq, at FROM events ORDER BY seq LIMIT ?`, n)
		if err != nil {
			return total, fmt.Errorf("store: purge events: %w", err)
		}
		var upTo int64
		cut := false
		for rows.Next() {
			var seq, at int64
			if err := rows.Scan(&seq, &at); err != nil {
				rows.Close()
				return total, fmt.Errorf("store: purge events: %w", err)
			}
			if at >= nanos(cutoff) {
				cut = true
				break
			}
			upTo = seq
		}
		rows.Close()
		if upTo == 0 {
			break
		}
		// Readers below the new horizon get ErrGone from now on, before
		// the events disappear.
		for {
			h := s.horizon.Load()
			if h >= upTo || s.horizon.CompareAndSwap(h, upTo) {
				break
			}
		}
		var got int64
		err = s.write(ctx, func(ctx context.Context, tx *wtx) error {
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

// Exchange is one earlier turn of a chat: the messages it answered and its
// reply.
type Exchange struct {
	TurnID string
	Texts  []string
	Reply  string
}

// RecentExchanges returns chat's last n answered turns, oldest first, from
// the messages still kept.
func (s *Store) RecentExchanges(ctx context.Context, chat string, n int) ([]Exchange, error) {
	if n <= 0 {
		return nil, nil
	}
	rows, err := s.r.QueryContext(ctx, `SELECT turn_id, text, reply FROM messages
		WHERE state = 'done' AND chat_id = ? AND turn_id IN (
			SELECT turn_id FROM messages WHERE state = 'done' AND chat_id = ? AND turn_id != ''
			GROUP BY turn_id ORDER BY max(seq) DESC LIMIT ?)
		ORDER BY seq`, chat, chat, n)
	if err != nil {
		return nil, fmt.Errorf("store: recent exchanges: %w", err)
	}
	defer rows.Close()
	var out []Exchange
	for rows.Next() {
		var turn, text, reply string
		if err := rows.Scan(&turn, &text, &reply); err != nil {
			return nil, fmt.Errorf("store: recent exchanges: %w", err)
		}
		if len(out) == 0 || out[len(out)-1].TurnID != turn {
			out = append(out, Exchange{TurnID: turn, Reply: reply})
		}
		last := &out[len(out)-1]
		last.Texts = append(last.Texts, text)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: recent exchanges: %w", err)
	}
	return out, nil
}

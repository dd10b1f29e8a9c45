package store

import (
	"context"
	"fmt"
	"time"

	"github.com/dispatchd/dispatch/internal/events"
)

// The event feed.
//
// Every event is written by the write that makes it true (a reply by the
// turn's completion, a dead letter by the failure that kills the message,
// session_failed by the session's save), in the same transaction, together
// with its webhook deliveries (the outbox): an event is never committed
// without its change, nor the change without its event.
//
// Its promise to readers: a reader that has been given the events up to
// seq N never later finds a new event with seq ≤ N. How a dialect keeps it
// is the dialect's (SQLite: one writer numbers events as it inserts them
// and a visible mark moves after each commit; PostgreSQL: a counter row
// updated as a transaction's last statement, so seq order is commit
// order). Retention removes a prefix of the feed and records the horizon;
// a read from below it is an *events.ErrGone naming the oldest kept seq,
// never a silent gap. The feed's readers (store.Backend,
// api.EventsBackend, webhook.Store) ask only for that promise, and for a
// notification when the mark moves (EventsVisible).

// SetWebhookFanout sets which webhook endpoints each new event is queued
// for: f returns the names of the endpoints subscribed to an event type.
// Call it before the first event is written (at startup); nil queues none.
func (s *Store[T]) SetWebhookFanout(f func(events.Type) []string) {
	if f == nil {
		s.fanout.Store(nil)
		return
	}
	s.fanout.Store(&f)
}

// appendEvent adds *ev (its Seq and ID are ignored) to tx with its
// webhook deliveries; *ev is numbered by the commit at the latest.
func (s *Store[T]) appendEvent(ctx context.Context, tx T, ev *events.Event) error {
	if !ev.Type.Valid() {
		return fmt.Errorf("unknown event type %q", ev.Type)
	}
	if ev.At.IsZero() {
		ev.At = s.clk.Now()
	}
	var endpoints []string
	if f := s.fanout.Load(); f != nil {
		endpoints = (*f)(ev.Type)
	}
	if err := tx.InsertEvent(ctx, ev, endpoints); err != nil {
		return fmt.Errorf("append %s event: %w", ev.Type, err)
	}
	return nil
}

// AppendEvent writes one event durably and returns it numbered. Events
// that belong to another change (a reply, a dead letter, a failed session)
// are written by that change's own write instead, in the same commit.
func (s *Store[T]) AppendEvent(ctx context.Context, ev events.Event) (events.Event, error) {
	var out events.Event
	err := s.write(ctx, false, func(ctx context.Context, tx T) error {
		out = ev
		return s.appendEvent(ctx, tx, &out)
	})
	if err != nil {
		return events.Event{}, fmt.Errorf("store: %w", err)
	}
	return out, nil
}

// RecordReset writes a session_reset event: chat's conversation had to
// start over, for reason. It is fenced like every write for the chat.
func (s *Store[T]) RecordReset(ctx context.Context, chat, reason string) error {
	err := s.write(ctx, false, func(ctx context.Context, tx T) error {
		if err := s.fenced(ctx, tx, chat); err != nil {
			return err
		}
		return s.appendEvent(ctx, tx, &events.Event{Type: events.SessionReset, ChatID: chat, Reason: reason})
	})
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// EventsVisible returns the feed's visible mark (the largest seq a reader
// may be given) and a channel closed when it next moves up. Take the
// channel before reading, then wait on it: a new event cannot slip between
// the read and the wait.
func (s *Store[T]) EventsVisible() (int64, <-chan struct{}) { return s.d.Visible() }

// Events reads the feed: the events after q.After (or from the oldest kept
// one), oldest first, never past the visible mark. next is the seq of the
// last event returned, or the position read from when none was. A position
// older than the oldest kept event is an *events.ErrGone. With q.Tail (and
// no q.After) it returns the last q.Limit events, oldest first, and next is
// the visible mark.
func (s *Store[T]) Events(ctx context.Context, q events.Query) (evs []events.Event, next int64, err error) {
	if q.Limit <= 0 {
		q.Limit = events.DefaultLimit
	}
	q.Limit = min(q.Limit, events.MaxLimit)
	evs, next, err = s.d.Events(ctx, q)
	if err != nil {
		if _, ok := events.IsGone(err); ok {
			return nil, next, err
		}
		return nil, next, fmt.Errorf("store: events: %w", err)
	}
	return evs, next, nil
}

// EventsBySeq returns the events with the given seqs that are still kept.
func (s *Store[T]) EventsBySeq(ctx context.Context, seqs []int64) (map[int64]events.Event, error) {
	out := make(map[int64]events.Event, len(seqs))
	for len(seqs) > 0 {
		n := min(len(seqs), 500)
		evs, err := s.d.EventsBySeq(ctx, seqs[:n])
		if err != nil {
			return nil, fmt.Errorf("store: events by seq: %w", err)
		}
		seqs = seqs[n:]
		for _, e := range evs {
			out[e.Seq] = e
		}
	}
	return out, nil
}

// EventsOldest returns the oldest kept seq and the visible mark (0, 0 when
// the feed is empty and was never purged).
func (s *Store[T]) EventsOldest(ctx context.Context) (oldest, last int64, err error) {
	oldest, last, err = s.d.EventsOldest(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("store: oldest event: %w", err)
	}
	return oldest, last, nil
}

// PurgeEvents removes events older than cutoff, at most limit of them, a
// chunk at a time, and reports how many went. Only a prefix of the feed is
// ever removed (the events up to the first one that is still young), so
// the feed has no holes: what is kept is everything after the horizon.
// Webhook deliveries of purged events, still pending or failed, go with
// them (they are past the retention too).
func (s *Store[T]) PurgeEvents(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	total := 0
	for total < limit {
		n := min(PurgeChunk, limit-total)
		if err := s.injected(); err != nil {
			return total, fmt.Errorf("store: purge events: %w", err)
		}
		got, done, err := s.d.PurgeEvents(ctx, Nanos(cutoff), n)
		if err != nil {
			return total, fmt.Errorf("store: purge events: %w", err)
		}
		total += got
		if done || got < n {
			break
		}
	}
	return total, nil
}

package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dispatchd/dispatch/internal/events"
)

// Channels: the person's own chat apps (Telegram, later Slack) run inside
// the daemon on this store, so their guarantees are the queue's.
//
// Inbound, a channel's cursor on the platform (Telegram: the next
// getUpdates offset) is committed in the same transaction as the message
// it accepted (AcceptFromChannel), so a daemon killed at any point neither
// loses an update nor accepts one twice: the platform's id of the update
// is the message's client id, and the cursor only moves up.
//
// Outbound, a channel reads the event feed from its own durable feed
// cursor and copies the events it must deliver into its deliveries
// (ChannelEnqueue, in one transaction with the feed cursor), so nothing
// is enqueued twice or skipped; a delivery then records each part the
// platform accepted, with the platform's message id (ChannelSent), so a
// restart sends only what was not yet accepted. A chat's deliveries go
// out in seq order (turn order); a delivery that is waiting (a rate limit,
// a retry) holds only its own chat.

// Delivery states.
const (
	DeliveryPending = "pending"
	DeliveryDone    = "done"
	DeliveryFailed  = "failed"
)

// ChannelCursor is a channel's durable position: Inbound on the platform
// (the next update to ask for), Feed in the event feed (the last event
// whose deliveries were enqueued).
type ChannelCursor struct {
	Channel       string
	Inbound, Feed int64
	Updated       time.Time
}

// ChannelDelivery is one event a channel delivers to one chat.
type ChannelDelivery struct {
	Channel string
	Seq     int64 // the event's
	ChatID  string
	Kind    events.Type // reply, dead_letter, …
	Text    string      // what to say (a reply's text, a dead letter's error)
	State   string
	// Attempts counts failed attempts since the last success.
	Attempts int
	// Sent is how many parts the platform already accepted, PlatformIDs
	// their message ids in order.
	Sent        int
	PlatformIDs []string
	NextAt      time.Time // not before (a rate limit or a retry's delay)
	Error       string    // the last attempt's error
	Updated     time.Time
}

// ChannelCount is how many of channel's deliveries are in state, and
// the latest NextAt among them (pending: how long a chat is held).
type ChannelCount struct {
	Channel, State string
	N              int
	NextAt         int64
}

// ChannelTx is a write transaction's one-query operations for channels.
type ChannelTx interface {
	// SetChannelInbound moves channel's inbound cursor up to next (never
	// down), creating the cursor.
	SetChannelInbound(ctx context.Context, channel string, next, now int64) error
	// SetChannelFeed moves channel's feed cursor up to seq (never down).
	SetChannelFeed(ctx context.Context, channel string, seq, now int64) error
	// InsertDelivery stores d pending unless channel already has a
	// delivery of its seq.
	InsertDelivery(ctx context.Context, d ChannelDelivery, now int64) error
	// DeliverySent records d's Sent, PlatformIDs and State (done or
	// pending), clearing its retry state.
	DeliverySent(ctx context.Context, d ChannelDelivery, now int64) error
	// DeliveryAttempt records d's failed attempt (Attempts, NextAt, Error).
	DeliveryAttempt(ctx context.Context, d ChannelDelivery, now int64) error
	// DeliveryGiveUp marks d's pending row failed with d.Error.
	DeliveryGiveUp(ctx context.Context, d ChannelDelivery, now int64) error
	// DeleteDelivered deletes at most n done deliveries updated before
	// before.
	DeleteDelivered(ctx context.Context, before int64, n int) (int64, error)
}

// ChannelReader is the dialect's one-query reads for channels.
type ChannelReader interface {
	ChannelCursor(ctx context.Context, channel string) (ChannelCursor, bool, error)
	// PendingDeliveries returns channel's pending deliveries in seq order,
	// at most limit.
	PendingDeliveries(ctx context.Context, channel string, limit int) ([]ChannelDelivery, error)
	// Deliveries returns channel's deliveries to chat (every chat when
	// empty), in any state, in seq order, at most limit.
	Deliveries(ctx context.Context, channel, chat string, limit int) ([]ChannelDelivery, error)
	// DeliveryCounts returns, per channel and state, the count and the
	// latest next_at.
	DeliveryCounts(ctx context.Context) ([]ChannelCount, error)
}

// ChannelBackend is the channels' part of Backend.
type ChannelBackend interface {
	AcceptFromChannel(ctx context.Context, channel string, next int64, chatID, text, clientID string) (id string, dup bool, err error)
	ChannelAdvance(ctx context.Context, channel string, next int64) error
	ChannelCursor(ctx context.Context, channel string) (ChannelCursor, error)
	ChannelEnqueue(ctx context.Context, channel string, feed int64, ds []ChannelDelivery) error
	PendingDeliveries(ctx context.Context, channel string, limit int) ([]ChannelDelivery, error)
	Deliveries(ctx context.Context, channel, chat string, limit int) ([]ChannelDelivery, error)
	DeliveryCounts(ctx context.Context) (map[string]ChannelStats, error)
	DeliverySent(ctx context.Context, d ChannelDelivery) error
	DeliveryAttempt(ctx context.Context, d ChannelDelivery) error
	DeliveryGiveUp(ctx context.Context, d ChannelDelivery) error
	PurgeDelivered(ctx context.Context, cutoff time.Time, limit int) (int, error)
}

// AcceptFromChannel is Accept for a message that came from channel: the
// message is stored (clientID, the platform's id of the update, makes a
// second copy a duplicate) and channel's inbound cursor moves up to next,
// in one durable commit. A duplicate is answered with the original's id
// and dup true whatever its text (the platform's id is the identity), and
// still moves the cursor, so an update accepted before a crash that lost
// the cursor's reply is skipped, not refused forever.
func (s *Store[T]) AcceptFromChannel(ctx context.Context, channel string, next int64, chatID, text, clientID string) (id string, dup bool, err error) {
	if chatID == "" || channel == "" || clientID == "" {
		return "", false, errors.New("store: accept from channel: empty chat, channel or client id")
	}
	newID := NewMessageID()
	now := Nanos(s.clk.Now())
	m := NewMessage{ID: newID, ChatID: chatID, Text: text, ClientID: clientID, At: now}
	err = s.write(ctx, false, func(ctx context.Context, tx T) error {
		id, dup = newID, false
		if err := tx.LockChat(ctx, chatID); err != nil {
			return err
		}
		ok, err := tx.InsertMessage(ctx, m)
		if err != nil {
			return err
		}
		if !ok {
			if id, _, err = tx.MessageByClient(ctx, chatID, clientID); err != nil {
				return err
			}
			dup = true
		}
		return tx.SetChannelInbound(ctx, channel, next, now)
	})
	if err != nil {
		return "", false, fmt.Errorf("store: accept from channel: %w", err)
	}
	if !dup {
		s.wake(ctx, chatID)
	}
	return id, dup, nil
}

// ChannelAdvance moves channel's inbound cursor up to next, durably, for
// updates that yield no message (a stranger refused, a group message not
// addressed to the bot).
func (s *Store[T]) ChannelAdvance(ctx context.Context, channel string, next int64) error {
	now := Nanos(s.clk.Now())
	if err := s.write(ctx, false, func(ctx context.Context, tx T) error {
		return tx.SetChannelInbound(ctx, channel, next, now)
	}); err != nil {
		return fmt.Errorf("store: channel advance: %w", err)
	}
	return nil
}

// ChannelCursor returns channel's cursors (zero when it has none yet).
func (s *Store[T]) ChannelCursor(ctx context.Context, channel string) (ChannelCursor, error) {
	c, _, err := s.d.ChannelCursor(ctx, channel)
	if err != nil {
		return ChannelCursor{}, fmt.Errorf("store: channel cursor: %w", err)
	}
	c.Channel = channel
	return c, nil
}

// ChannelEnqueue stores ds as channel's pending deliveries (those it
// already has are left alone) and moves its feed cursor up to feed, in one
// durable commit.
func (s *Store[T]) ChannelEnqueue(ctx context.Context, channel string, feed int64, ds []ChannelDelivery) error {
	now := Nanos(s.clk.Now())
	err := s.write(ctx, false, func(ctx context.Context, tx T) error {
		for _, d := range ds {
			d.Channel = channel
			if err := tx.InsertDelivery(ctx, d, now); err != nil {
				return err
			}
		}
		return tx.SetChannelFeed(ctx, channel, feed, now)
	})
	if err != nil {
		return fmt.Errorf("store: channel enqueue: %w", err)
	}
	return nil
}

// PendingDeliveries returns channel's pending deliveries in seq order.
func (s *Store[T]) PendingDeliveries(ctx context.Context, channel string, limit int) ([]ChannelDelivery, error) {
	out, err := s.d.PendingDeliveries(ctx, channel, limit)
	if err != nil {
		return nil, fmt.Errorf("store: pending deliveries: %w", err)
	}
	return out, nil
}

// Deliveries returns channel's deliveries to chat ("" any), any state, in
// seq order.
func (s *Store[T]) Deliveries(ctx context.Context, channel, chat string, limit int) ([]ChannelDelivery, error) {
	out, err := s.d.Deliveries(ctx, channel, chat, limit)
	if err != nil {
		return nil, fmt.Errorf("store: deliveries: %w", err)
	}
	return out, nil
}

// ChannelStats is one channel's deliveries at a glance.
type ChannelStats struct {
	Pending, Failed, Done int
	// HeldUntil is the latest time a pending delivery waits for (a rate
	// limit or a retry); zero when none waits.
	HeldUntil time.Time
}

// DeliveryCounts returns each channel's deliveries at a glance.
func (s *Store[T]) DeliveryCounts(ctx context.Context) (map[string]ChannelStats, error) {
	counts, err := s.d.DeliveryCounts(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: delivery counts: %w", err)
	}
	out := map[string]ChannelStats{}
	for _, c := range counts {
		st := out[c.Channel]
		switch c.State {
		case DeliveryPending:
			st.Pending = c.N
			if c.NextAt > 0 {
				st.HeldUntil = FromNanos(c.NextAt)
			}
		case DeliveryFailed:
			st.Failed = c.N
		case DeliveryDone:
			st.Done = c.N
		}
		out[c.Channel] = st
	}
	return out, nil
}

// DeliverySent records the parts of d the platform accepted (d.Sent,
// d.PlatformIDs) and, when d.State is DeliveryDone, that d is delivered,
// durably: the window in which a restart sends a part again is only
// between the platform accepting it and this commit.
func (s *Store[T]) DeliverySent(ctx context.Context, d ChannelDelivery) error {
	if d.State != DeliveryDone {
		d.State = DeliveryPending
	}
	now := Nanos(s.clk.Now())
	if err := s.write(ctx, false, func(ctx context.Context, tx T) error { return tx.DeliverySent(ctx, d, now) }); err != nil {
		return fmt.Errorf("store: delivery sent: %w", err)
	}
	return nil
}

// DeliveryAttempt records a failed attempt of d, to be tried again at
// d.NextAt. Losing it in a power failure only means an earlier retry, so
// it does not wait for its flush.
func (s *Store[T]) DeliveryAttempt(ctx context.Context, d ChannelDelivery) error {
	now := Nanos(s.clk.Now())
	if err := s.write(ctx, true, func(ctx context.Context, tx T) error { return tx.DeliveryAttempt(ctx, d, now) }); err != nil {
		return fmt.Errorf("store: delivery attempt: %w", err)
	}
	return nil
}

// DeliveryGiveUp marks d failed, durably (the chat's next delivery may go).
func (s *Store[T]) DeliveryGiveUp(ctx context.Context, d ChannelDelivery) error {
	now := Nanos(s.clk.Now())
	if err := s.write(ctx, false, func(ctx context.Context, tx T) error { return tx.DeliveryGiveUp(ctx, d, now) }); err != nil {
		return fmt.Errorf("store: delivery give up: %w", err)
	}
	return nil
}

// PurgeDelivered deletes done deliveries last updated before cutoff, at
// most limit (below 1: all), in short transactions.
func (s *Store[T]) PurgeDelivered(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	total := 0
	for limit < 1 || total < limit {
		n := PurgeChunk
		if limit > 0 {
			n = min(n, limit-total)
		}
		var got int64
		err := s.write(ctx, true, func(ctx context.Context, tx T) (err error) {
			got, err = tx.DeleteDelivered(ctx, Nanos(cutoff), n)
			return err
		})
		if err != nil {
			return total, fmt.Errorf("store: purge delivered: %w", err)
		}
		total += int(got)
		if got < int64(n) {
			break
		}
	}
	return total, nil
}

// DeliveryColumns are the columns ScanDelivery reads, in its order.
const DeliveryColumns = `channel, seq, chat_id, kind, text, state, attempts, sent, platform_ids, next_at, error, updated_at`

// ScanDelivery reads a row of DeliveryColumns.
func ScanDelivery(row Scanner) (ChannelDelivery, error) {
	var (
		d             ChannelDelivery
		kind, ids     string
		next, updated int64
	)
	err := row.Scan(&d.Channel, &d.Seq, &d.ChatID, &kind, &d.Text, &d.State, &d.Attempts, &d.Sent, &ids, &next, &d.Error, &updated)
	d.Kind, d.NextAt, d.Updated = events.Type(kind), FromNanos(next), FromNanos(updated)
	if ids != "" {
		d.PlatformIDs = strings.Split(ids, ",")
	}
	return d, err
}

// JoinPlatformIDs is how a delivery's platform ids are stored (ids hold
// no comma: Telegram's are integers, Slack's timestamps).
func JoinPlatformIDs(ids []string) string { return strings.Join(ids, ",") }

// ScanChannelCount reads channel, state, count, max(next_at).
func ScanChannelCount(row Scanner) (c ChannelCount, err error) {
	err = row.Scan(&c.Channel, &c.State, &c.N, &c.NextAt)
	return c, err
}

// ScanChannelCursor reads inbound, feed, updated_at.
func ScanChannelCursor(row Scanner) (c ChannelCursor, err error) {
	var updated int64
	err = row.Scan(&c.Inbound, &c.Feed, &updated)
	c.Updated = FromNanos(updated)
	return c, err
}

package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/dispatchd/dispatch/internal/events"
)

// State is where a message is in its life.
type State string

// The message states. A message is pending until a turn containing it
// succeeds (done) or it has failed too often for reasons of its own (dead).
const (
	Pending  State = "pending"  // waiting to be handed to the agent
	Inflight State = "inflight" // handed to the agent, turn not yet ended
	Done     State = "done"     // a turn containing it ended successfully
	Dead     State = "dead"     // failed queue.max_attempts times; kept for an operator
)

// ValidState reports whether st is one of the message states.
func ValidState(st State) bool {
	switch st {
	case Pending, Inflight, Done, Dead:
		return true
	}
	return false
}

// Message is one stored message.
type Message struct {
	ID, ChatID, Text string
	// Seq is the global arrival order; a chat's FIFO order is Seq order.
	Seq      int64
	State    State
	Attempts int // times handed to the agent
	Failures int // failed attempts that count toward dead
	// Error is the last error; Reply the final reply once done.
	Error, Reply         string
	CreatedAt, UpdatedAt time.Time
	// KeptIn is the agent conversation that already holds this message from
	// a turn the API failed ("" if none); see RequeueKept.
	KeptIn string
	// ClientID is the sender's own key for the message, unique within its
	// chat ("" if none); see Accept.
	ClientID string
	// TurnID is the turn that answered the message ("" until it is done);
	// the turn's reply event carries the same id.
	TurnID string
}

// Filter selects messages for List. Zero fields match anything, except that
// an empty State means "not done" (pending, inflight or dead).
type Filter struct {
	ChatID string
	State  State
	Limit  int // default 1000
}

// Counts is the number of messages in each state.
type Counts struct {
	Pending, Inflight, Done, Dead int
}

// PendingStat is one chat's waiting line.
type PendingStat struct {
	Count  int
	Oldest time.Time // when the longest-waiting message became pending
}

// MaxPage is the most messages one page of a listing holds.
const MaxPage = 1000

// Listed is a message as a listing shows it: its texts clipped (Text,
// Reply and Error hold at most the clip length in characters) and their
// full sizes in bytes, so that a page costs memory in proportion to its
// rows, not to the texts behind them.
type Listed struct {
	Message
	TextBytes, ReplyBytes, ErrorBytes int
}

// Clipped reports whether any of the texts was cut.
func (l Listed) Clipped() bool {
	return len(l.Text) < l.TextBytes || len(l.Reply) < l.ReplyBytes || len(l.Error) < l.ErrorBytes
}

// Answered is a message a turn's completion marked done.
type Answered struct {
	Seq        int64
	ID, ChatID string
}

// DefaultListLimit is List's limit when the filter sets none.
const DefaultListLimit = 1000

// PurgeChunk bounds one purge transaction, so a large backlog is removed
// in short transactions that never hold the writer for long.
const PurgeChunk = 2000

// Accept stores a new pending message for chatID and returns its id once it
// is committed durably. Message ids are always the store's own (a UUID).
// clientID is the sender's optional key for the message, scoped to the
// chat: if chatID already has a message with that clientID, in any state,
// nothing is stored and the original's id comes back with dup true (a
// client's resend is idempotent), unless its text differs, which is
// ErrConflict. The same clientID in another chat is another message.
func (s *Store[T]) Accept(ctx context.Context, chatID, text, clientID string) (id string, dup bool, err error) {
	return s.AcceptID(ctx, chatID, text, clientID, NewMessageID())
}

// AcceptID is Accept with the new message's id given (for tests that name
// their messages).
func (s *Store[T]) AcceptID(ctx context.Context, chatID, text, clientID, newID string) (id string, dup bool, err error) {
	if chatID == "" {
		return "", false, errors.New("store: accept: empty chat id")
	}
	m := NewMessage{ID: newID, ChatID: chatID, Text: text, ClientID: clientID, At: Nanos(s.clk.Now())}
	id, dup, err = s.accept(ctx, m)
	if err != nil {
		return "", false, fmt.Errorf("store: accept: %w", err)
	}
	if !dup {
		s.wake(ctx, chatID)
	}
	return id, dup, nil
}

// accept stores m, or finds the message a resend of it duplicates. The
// insert is the driver's one-commit Accept; only a taken (chat, client id)
// reads the original, after the insert's commit (a message's chat, client
// id and text never change, so the original read then is the one that
// stopped the insert; if it was purged in between, the insert is tried
// again).
func (s *Store[T]) accept(ctx context.Context, m NewMessage) (id string, dup bool, err error) {
	for range 3 {
		if err := s.injected(); err != nil {
			return "", false, err
		}
		ok, err := s.d.Accept(ctx, m)
		if err != nil {
			return "", false, err
		}
		if ok {
			return m.ID, false, nil
		}
		if m.ClientID == "" {
			return "", false, errors.New("message id collision")
		}
		var oldText string
		err = s.write(ctx, true, func(ctx context.Context, tx T) (err error) {
			id, oldText, err = tx.MessageByClient(ctx, m.ChatID, m.ClientID)
			return err
		})
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return "", false, err
		}
		if oldText != m.Text {
			return "", false, fmt.Errorf("%w: chat %q already has client_id %q (message %s) with another text", ErrConflict, m.ChatID, m.ClientID, id)
		}
		return id, true, nil
	}
	return "", false, errors.New("client id taken by a message that keeps disappearing")
}

// Claim takes the next batch of chatID's pending messages, marks them
// inflight and counts an attempt for each. The batch is the chat's oldest
// pending message alone if it has failed before (so a poison message is
// isolated and cannot take others down with it); otherwise the run of
// oldest pending messages that have never failed, at most limit (below 1
// means 1). Messages come in Seq order; none pending is a nil batch.
//
// more reports whether the chat still has pending messages behind the
// batch: a batch can be short of limit with messages waiting (an isolated
// message, or a run cut before one that failed), so the caller must look
// again after the turn whenever more is true, and need not when it is
// false.
//
// Unlike the other writes, Claim returns once the change is committed,
// without waiting for it to be flushed: a claim lost to a power failure
// changes nothing that matters. Startup (and a takeover) puts in-flight
// messages back to pending anyway, and the turn's outcome (Complete,
// Requeue, Fail) is a durable write whose flush covers the claim too.
func (s *Store[T]) Claim(ctx context.Context, chatID string, limit int) (batch []Message, more bool, err error) {
	limit = max(limit, 1)
	now := Nanos(s.clk.Now())
	err = s.write(ctx, true, func(ctx context.Context, tx T) error {
		batch, more = nil, false
		if err := tx.LockChat(ctx, chatID); err != nil {
			return err
		}
		if err := s.fenced(ctx, tx, chatID); err != nil {
			return err
		}
		// One row past the limit tells whether anything waits behind.
		pending, err := tx.PendingMessages(ctx, chatID, limit+1)
		if err != nil {
			return err
		}
		claimed := Claimable(pending[:min(len(pending), limit)])
		if len(claimed) == 0 {
			return nil
		}
		if err := tx.MarkInflight(ctx, claimed, now); err != nil {
			return err
		}
		for i := range claimed {
			claimed[i].State = Inflight
			claimed[i].Attempts++
			claimed[i].UpdatedAt = FromNanos(now)
		}
		batch, more = claimed, len(pending) > len(claimed)
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("store: claim for chat %q: %w", chatID, err)
	}
	return batch, more, nil
}

// Claimable cuts a chat's oldest pending messages (in Seq order) down to
// the batch Claim hands out: the first alone if it has failed before,
// otherwise the leading run of messages that never failed.
func Claimable(pending []Message) []Message {
	if len(pending) == 0 {
		return nil
	}
	if pending[0].Failures > 0 {
		return pending[:1]
	}
	for i, m := range pending {
		if m.Failures > 0 {
			return pending[:i]
		}
	}
	return pending
}

// Complete marks inflight messages done with reply, clearing their error,
// as one turn: they get a new turn id, and the turn's reply event is
// written in the same commit. Ids that are not inflight are left alone, so
// a late or repeated call cannot change a message that has moved on.
func (s *Store[T]) Complete(ctx context.Context, ids []string, reply string) error {
	if len(ids) == 0 {
		return nil
	}
	now := s.clk.Now()
	turn := NewTurnID()
	err := s.write(ctx, false, func(ctx context.Context, tx T) error {
		if err := s.fencedIDs(ctx, tx, ids, ""); err != nil {
			return err
		}
		return s.completeMessages(ctx, tx, ids, reply, turn, now)
	})
	if err != nil {
		return fmt.Errorf("store: complete %d messages: %w", len(ids), err)
	}
	return nil
}

// NewMessageID makes a message's id: a version 7 UUID, whose leading bits
// are the time (and, within a millisecond, a counter), so the ids of
// messages accepted one after another sort in that order. Each new id then
// lands at the end of the id index, on the page the previous one dirtied,
// where a random (version 4) id dirtied a page of its own: about four of a
// group commit's 18 pages. After the time come a 12-bit sequence and 62
// random bits.
func NewMessageID() string {
	id, err := uuid.NewV7()
	if err != nil { // the system's random source failed
		return uuid.NewString()
	}
	return id.String()
}

// NewTurnID makes a turn's id.
func NewTurnID() string { return "turn-" + uuid.NewString() }

// completeMessages marks the inflight ones of ids done as turn turnID and
// writes the turn's one reply event, naming the messages it answered in
// order. A message is done exactly when its reply event exists: both are
// in this one transaction, and nothing is written when no message was
// inflight any more.
func (s *Store[T]) completeMessages(ctx context.Context, tx T, ids []string, reply, turnID string, at time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	got, err := tx.MarkDone(ctx, ids, reply, turnID, Nanos(at))
	if err != nil {
		return err
	}
	evs := ReplyEvents(got, reply, turnID, at)
	for i := range evs {
		if err := s.appendEvent(ctx, tx, &evs[i]); err != nil {
			return err
		}
	}
	return nil
}

// ReplyEvents are the reply events of a completed turn: one per chat (a
// turn answers one chat; a call mixing chats, never made, gets a reply per
// chat rather than one chat's reply shown in another), each listing its
// messages in Seq order.
func ReplyEvents(done []Answered, reply, turnID string, at time.Time) []events.Event {
	done = slices.Clone(done)
	slices.SortFunc(done, func(a, b Answered) int { return cmp.Compare(a.Seq, b.Seq) })
	var out []events.Event
	index := map[string]int{}
	for _, d := range done {
		i, ok := index[d.ChatID]
		if !ok {
			i = len(out)
			index[d.ChatID] = i
			out = append(out, events.Event{Type: events.Reply, At: at, ChatID: d.ChatID, TurnID: turnID, Text: reply})
		}
		out[i].MessageIDs = append(out[i].MessageIDs, d.ID)
	}
	return out
}

// Requeue puts inflight messages back to pending, keeping their Seq (place
// in line) and Failures, and records errText. It is for failures that are
// not the messages' fault: outages and shutdown. Ids that are not inflight
// are left alone.
func (s *Store[T]) Requeue(ctx context.Context, ids []string, errText string) error {
	return s.RequeueKept(ctx, ids, errText, "")
}

// RequeueKept is Requeue for a turn the API failed whose messages the
// agent's conversation keptIn now holds (the Claude Code CLI keeps them and
// merges them into its next request): Message.KeptIn records it, durably,
// so a retry in that conversation — even after a daemon restart — does not
// send their texts again. An empty keptIn leaves KeptIn as it was.
func (s *Store[T]) RequeueKept(ctx context.Context, ids []string, errText, keptIn string) error {
	if len(ids) == 0 {
		return nil
	}
	now := Nanos(s.clk.Now())
	err := s.write(ctx, false, func(ctx context.Context, tx T) error {
		if err := s.fencedIDs(ctx, tx, ids, ""); err != nil {
			return err
		}
		return tx.MarkPending(ctx, ids, errText, keptIn, now)
	})
	if err != nil {
		return fmt.Errorf("store: requeue %d messages: %w", len(ids), err)
	}
	return nil
}

// Fail records a failed attempt that is the messages' own fault: Failures
// goes up by one and Error becomes errText. A message whose Failures reaches
// maxAttempts becomes dead and its id is returned (in Seq order), with its
// dead_letter event in the same commit; the others go back to pending in
// their old place. Ids that are not inflight are left alone.
func (s *Store[T]) Fail(ctx context.Context, ids []string, errText string, maxAttempts int) (dead []string, err error) {
	if len(ids) == 0 {
		return nil, nil
	}
	now := Nanos(s.clk.Now())
	err = s.write(ctx, false, func(ctx context.Context, tx T) error {
		if err := s.fencedIDs(ctx, tx, ids, ""); err != nil {
			return err
		}
		failed, err := tx.MarkFailed(ctx, ids, errText, maxAttempts, now)
		if err != nil {
			return err
		}
		slices.SortFunc(failed, func(a, b Failed) int { return cmp.Compare(a.Seq, b.Seq) })
		dead = nil
		for _, f := range failed {
			if f.State != Dead {
				continue
			}
			dead = append(dead, f.ID)
			// In the commit that makes the message dead: a front-end
			// learns that no reply is coming.
			if err := s.appendEvent(ctx, tx, &events.Event{
				Type: events.DeadLetter, At: FromNanos(now), ChatID: f.ChatID, MessageID: f.ID, Error: errText,
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: fail %d messages: %w", len(ids), err)
	}
	return dead, nil
}

// ResetInflight returns every inflight message to pending and reports how
// many there were. It is for a single node's startup: whatever was
// inflight when the previous daemon died was never answered. (With
// several nodes a chat's in-flight messages go back in line when its lease
// is taken.)
func (s *Store[T]) ResetInflight(ctx context.Context) (int, error) {
	now := Nanos(s.clk.Now())
	var n int64
	err := s.write(ctx, false, func(ctx context.Context, tx T) (err error) {
		n, err = tx.ResetInflight(ctx, now)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store: reset inflight: %w", err)
	}
	return int(n), nil
}

// Retry gives a dead message another chance: it becomes pending with
// Failures 0 and a new Seq, so it goes to the back of its chat's line
// rather than jumping ahead of messages that arrived after it.
// ErrNotFound if there is no dead message with that id.
func (s *Store[T]) Retry(ctx context.Context, id string) error {
	now := Nanos(s.clk.Now())
	var chat string
	err := s.write(ctx, false, func(ctx context.Context, tx T) error {
		c, err := tx.DeadChat(ctx, id)
		if err != nil {
			return err
		}
		if err := tx.LockChat(ctx, c); err != nil {
			return err
		}
		ok, err := tx.RequeueDead(ctx, id, now)
		if err != nil {
			return err
		}
		if !ok {
			return ErrNotFound
		}
		chat = c
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: retry %q: %w", id, err)
	}
	s.wake(ctx, chat)
	return nil
}

// Drop deletes a dead message. ErrNotFound if there is no dead message
// with that id: only an operator's explicit drop of a dead message ever
// removes one.
func (s *Store[T]) Drop(ctx context.Context, id string) error {
	err := s.write(ctx, false, func(ctx context.Context, tx T) error {
		ok, err := tx.DeleteDead(ctx, id)
		if err == nil && !ok {
			err = ErrNotFound
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("store: drop %q: %w", id, err)
	}
	return nil
}

// PurgeDone deletes done messages last updated before cutoff, at most limit
// of them (a chunk at a time), and reports how many went. Done messages are
// kept for a while so GET /v1/messages/{id} can report replies and a resent
// client id is recognised as a duplicate; past the retention they only grow
// the database. Pending, in-flight and dead messages are never purged.
func (s *Store[T]) PurgeDone(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	total := 0
	for total < limit {
		n := min(PurgeChunk, limit-total)
		var got int64
		err := s.write(ctx, false, func(ctx context.Context, tx T) (err error) {
			got, err = tx.DeleteDone(ctx, Nanos(cutoff), n)
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

// Get returns the message with id, or ErrNotFound.
func (s *Store[T]) Get(ctx context.Context, id string) (Message, error) {
	m, err := s.d.Message(ctx, id)
	if err != nil {
		return Message{}, fmt.Errorf("store: get %q: %w", id, err)
	}
	return m, nil
}

// List returns the messages matching f in Seq order.
func (s *Store[T]) List(ctx context.Context, f Filter) ([]Message, error) {
	if f.State != "" && !ValidState(f.State) {
		return nil, fmt.Errorf("store: list: unknown state %q", f.State)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultListLimit
	}
	msgs, err := s.d.Messages(ctx, f, limit)
	if err != nil {
		return nil, fmt.Errorf("store: list: %w", err)
	}
	return msgs, nil
}

// ListPage returns up to limit (at most MaxPage) messages matching f with
// Seq greater than after, in Seq order, their texts clipped to clip
// characters in the query itself. more reports whether later messages
// match: the next page starts after the last one returned.
func (s *Store[T]) ListPage(ctx context.Context, f Filter, after int64, limit, clip int) (page []Listed, more bool, err error) {
	if f.State != "" && !ValidState(f.State) {
		return nil, false, fmt.Errorf("store: list page: unknown state %q", f.State)
	}
	limit = min(max(limit, 1), MaxPage)
	page, err = s.d.MessagePage(ctx, f, after, limit+1, clip)
	if err != nil {
		return nil, false, fmt.Errorf("store: list page: %w", err)
	}
	if len(page) > limit {
		return page[:limit], true, nil
	}
	return page, false, nil
}

// Counts returns how many messages are in each state.
func (s *Store[T]) Counts(ctx context.Context) (Counts, error) {
	c, err := s.d.Counts(ctx)
	if err != nil {
		return c, fmt.Errorf("store: counts: %w", err)
	}
	return c, nil
}

// ChatsWithPending returns the chats that have pending messages, the one
// waiting longest first, so a caller working down the list is fair.
func (s *Store[T]) ChatsWithPending(ctx context.Context) ([]string, error) {
	out, err := s.d.ChatsWithPending(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: chats with pending: %w", err)
	}
	return out, nil
}

// OldestPending is when chat's oldest waiting message was accepted (zero
// when none waits): a session's place in line for a live slot.
func (s *Store[T]) OldestPending(ctx context.Context, chatID string) (time.Time, error) {
	n, err := s.d.OldestPending(ctx, chatID)
	if err != nil {
		return time.Time{}, fmt.Errorf("store: oldest pending: %w", err)
	}
	return FromNanos(n), nil
}

// PendingStats returns, for every chat with pending messages, how many wait
// and since when; one query, for health checks and status.
func (s *Store[T]) PendingStats(ctx context.Context) (map[string]PendingStat, error) {
	out, err := s.d.PendingStats(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: pending stats: %w", err)
	}
	return out, nil
}

// HasPending reports whether chat has a message waiting.
func (s *Store[T]) HasPending(ctx context.Context, chatID string) (bool, error) {
	has, err := s.d.HasPending(ctx, chatID)
	if err != nil {
		return false, fmt.Errorf("store: has pending: %w", err)
	}
	return has, nil
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
func (s *Store[T]) RecentExchanges(ctx context.Context, chat string, n int) ([]Exchange, error) {
	if n <= 0 {
		return nil, nil
	}
	msgs, err := s.d.RecentTurns(ctx, chat, n)
	if err != nil {
		return nil, fmt.Errorf("store: recent exchanges: %w", err)
	}
	var out []Exchange
	for _, m := range msgs {
		if len(out) == 0 || out[len(out)-1].TurnID != m.TurnID {
			out = append(out, Exchange{TurnID: m.TurnID, Reply: m.Reply})
		}
		last := &out[len(out)-1]
		last.Texts = append(last.Texts, m.Text)
	}
	return out, nil
}

package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
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

func (st State) valid() bool {
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

const defaultListLimit = 1000

const msgCols = `seq, id, chat_id, text, state, attempts, failures, error, reply, created_at, updated_at, kept_in, coalesce(client_id, ''), turn_id`

// Accept stores a new pending message for chatID and returns its id once it
// is committed and fsync'd. Message ids are always the store's own (a
// UUID). clientID is the sender's optional key for the message, scoped to
// the chat: if chatID already has a message with that clientID, in any
// state, nothing is stored and the original's id comes back with dup true
// (a client's resend is idempotent), unless its text differs, which is
// ErrConflict. The same clientID in another chat is another message.
func (s *Store) Accept(ctx context.Context, chatID, text, clientID string) (id string, dup bool, err error) {
	return s.accept(ctx, chatID, text, clientID, uuid.NewString())
}

// accept is Accept with the new message's id given.
func (s *Store) accept(ctx context.Context, chatID, text, clientID, newID string) (id string, dup bool, err error) {
	if chatID == "" {
		return "", false, errors.New("store: accept: empty chat id")
	}
	var client any // NULL: no client key
	if clientID != "" {
		client = clientID
	}
	now := nanos(s.clk.Now())
	err = s.write(ctx, func(ctx context.Context, tx *wtx) error {
		id, dup = newID, false
		res, err := tx.ExecContext(ctx, `INSERT INTO messages
			(id, chat_id, text, state, created_at, updated_at, client_id)
			VALUES (?, ?, ?, 'pending', ?, ?, ?)
			ON CONFLICT DO NOTHING`,
			newID, chatID, text, now, now, client)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return err
		}
		if clientID == "" {
			return errors.New("message id collision")
		}
		var oldText string
		if err := tx.QueryRowContext(ctx, `SELECT id, text FROM messages
			WHERE chat_id = ? AND client_id = ?`, chatID, clientID).Scan(&id, &oldText); err != nil {
			return err
		}
		if oldText != text {
			return fmt.Errorf("%w: chat %q already has client_id %q (message %s) with another text", ErrConflict, chatID, clientID, id)
		}
		dup = true
		return nil
	})
	if err != nil {
		return "", false, fmt.Errorf("store: accept: %w", err)
	}
	return id, dup, nil
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
// without waiting for its fsync: a claim lost to a power failure changes
// nothing that matters. Startup puts in-flight messages back to pending
// anyway, and the turn's outcome (Complete, Requeue, Fail) is a durable
// write whose fsync covers the claim too, the WAL being one file written in
// order. Not waiting for a flush of its own takes one fsync out of every
// turn. (A process crash loses nothing either way: the commit is in the
// WAL, only not yet flushed from the page cache.)
func (s *Store) Claim(ctx context.Context, chatID string, limit int) (batch []Message, more bool, err error) {
	limit = max(limit, 1)
	now := nanos(s.clk.Now())
	err = s.writeLazy(ctx, func(ctx context.Context, tx *wtx) error {
		batch, more = nil, false
		// One row past the limit tells whether anything waits behind.
		rows, err := tx.QueryContext(ctx, `SELECT `+msgCols+` FROM messages
			WHERE chat_id = ? AND state = 'pending' ORDER BY seq LIMIT ?`,
			chatID, limit+1)
		if err != nil {
			return err
		}
		pending, err := scanMessages(rows)
		if err != nil {
			return err
		}
		claimed := claimable(pending[:min(len(pending), limit)])
		if len(claimed) == 0 {
			return nil
		}
		args := []any{now}
		for _, m := range claimed {
			args = append(args, m.Seq)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE messages
			SET state = 'inflight', attempts = attempts + 1, updated_at = ?
			WHERE seq IN (`+placeholders(len(claimed))+`)`, args...); err != nil {
			return err
		}
		for i := range claimed {
			claimed[i].State = Inflight
			claimed[i].Attempts++
			claimed[i].UpdatedAt = fromNanos(now)
		}
		batch, more = claimed, len(pending) > len(claimed)
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("store: claim for chat %q: %w", chatID, err)
	}
	return batch, more, nil
}

// claimable cuts a chat's oldest pending messages (in Seq order) down to
// the batch Claim hands out: the first alone if it has failed before,
// otherwise the leading run of messages that never failed.
func claimable(pending []Message) []Message {
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
func (s *Store) Complete(ctx context.Context, ids []string, reply string) error {
	if len(ids) == 0 {
		return nil
	}
	now := s.clk.Now()
	turn := newTurnID()
	err := s.write(ctx, func(ctx context.Context, tx *wtx) error {
		return s.completeMessages(ctx, tx, ids, reply, turn, now)
	})
	if err != nil {
		return fmt.Errorf("store: complete %d messages: %w", len(ids), err)
	}
	return nil
}

// newTurnID makes a turn's id.
func newTurnID() string { return "turn-" + uuid.NewString() }

// completeMessages marks the inflight ones of ids done as turn turnID and
// writes the turn's one reply event, naming the messages it answered in
// order. A message is done exactly when its reply event exists: both are
// in this one transaction, and nothing is written when no message was
// inflight any more.
func (s *Store) completeMessages(ctx context.Context, tx *wtx, ids []string, reply, turnID string, at time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	rows, err := tx.QueryContext(ctx, `UPDATE messages
		SET state = 'done', reply = ?, error = '', updated_at = ?, turn_id = ?
		WHERE state = 'inflight' AND id IN (`+placeholders(len(ids))+`)
		RETURNING seq, id, chat_id`,
		withIDs([]any{reply, nanos(at), turnID}, ids)...)
	if err != nil {
		return err
	}
	var got []Answered
	for rows.Next() {
		var d Answered
		if err := rows.Scan(&d.Seq, &d.ID, &d.ChatID); err != nil {
			rows.Close()
			return err
		}
		got = append(got, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, ev := range ReplyEvents(got, reply, turnID, at) {
		if _, err := s.appendEvent(ctx, tx, ev); err != nil {
			return err
		}
	}
	return nil
}

// Answered is a message a turn's completion marked done.
type Answered struct {
	Seq        int64
	ID, ChatID string
}

// ReplyEvents are the reply events of a completed turn: one per chat (a
// turn answers one chat; a call mixing chats, never made, gets a reply per
// chat rather than one chat's reply shown in another), each listing its
// messages in Seq order. Both stores write them in the completion's commit.
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
func (s *Store) Requeue(ctx context.Context, ids []string, errText string) error {
	return s.RequeueKept(ctx, ids, errText, "")
}

// RequeueKept is Requeue for a turn the API failed whose messages the
// agent's conversation keptIn now holds (the Claude Code CLI keeps them and
// merges them into its next request): Message.KeptIn records it, durably,
// so a retry in that conversation — even after a daemon restart — does not
// send their texts again. An empty keptIn leaves KeptIn as it was.
func (s *Store) RequeueKept(ctx context.Context, ids []string, errText, keptIn string) error {
	if len(ids) == 0 {
		return nil
	}
	now := nanos(s.clk.Now())
	err := s.write(ctx, func(ctx context.Context, tx *wtx) error {
		_, err := tx.ExecContext(ctx, `UPDATE messages
			SET state = 'pending', error = ?, updated_at = ?,
				kept_in = CASE WHEN ? = '' THEN kept_in ELSE ? END
			WHERE state = 'inflight' AND id IN (`+placeholders(len(ids))+`)`,
			withIDs([]any{errText, now, keptIn, keptIn}, ids)...)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: requeue %d messages: %w", len(ids), err)
	}
	return nil
}

// Fail records a failed attempt that is the messages' own fault: Failures
// goes up by one and Error becomes errText. A message whose Failures reaches
// maxAttempts becomes dead and its id is returned (in Seq order); the others
// go back to pending in their old place. Ids that are not inflight are left
// alone.
func (s *Store) Fail(ctx context.Context, ids []string, errText string, maxAttempts int) (dead []string, err error) {
	if len(ids) == 0 {
		return nil, nil
	}
	now := nanos(s.clk.Now())
	err = s.write(ctx, func(ctx context.Context, tx *wtx) error {
		rows, err := tx.QueryContext(ctx, `UPDATE messages
			SET failures = failures + 1, error = ?, updated_at = ?,
				state = CASE WHEN failures + 1 >= ? THEN 'dead' ELSE 'pending' END
			WHERE state = 'inflight' AND id IN (`+placeholders(len(ids))+`)
			RETURNING seq, id, state, chat_id`,
			withIDs([]any{errText, now, maxAttempts}, ids)...)
		if err != nil {
			return err
		}
		type seqID struct {
			seq      int64
			id, chat string
		}
		var died []seqID
		for rows.Next() {
			var (
				r  seqID
				st State
			)
			if err := rows.Scan(&r.seq, &r.id, &st, &r.chat); err != nil {
				rows.Close()
				return err
			}
			if st == Dead {
				died = append(died, r)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		slices.SortFunc(died, func(a, b seqID) int { return cmp.Compare(a.seq, b.seq) })
		dead = nil
		for _, r := range died {
			dead = append(dead, r.id)
			// In the commit that makes the message dead: a front-end
			// learns that no reply is coming.
			if _, err := s.appendEvent(ctx, tx, events.Event{
				Type: events.DeadLetter, At: fromNanos(now), ChatID: r.chat, MessageID: r.id, Error: errText,
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
// many there were. It is for startup: whatever was inflight when the
// previous daemon died was never answered.
func (s *Store) ResetInflight(ctx context.Context) (int, error) {
	now := nanos(s.clk.Now())
	var n int64
	err := s.write(ctx, func(ctx context.Context, tx *wtx) error {
		res, err := tx.ExecContext(ctx, `UPDATE messages
			SET state = 'pending', updated_at = ? WHERE state = 'inflight'`, now)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
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
func (s *Store) Retry(ctx context.Context, id string) error {
	now := nanos(s.clk.Now())
	err := s.write(ctx, func(ctx context.Context, tx *wtx) error {
		m, err := getMessage(ctx, tx, id)
		if err != nil {
			return err
		}
		if m.State != Dead {
			return ErrNotFound
		}
		// A new rowid is the new Seq. AUTOINCREMENT only advances on
		// INSERT, hence delete and re-insert rather than UPDATE seq.
		if _, err := tx.ExecContext(ctx, `DELETE FROM messages WHERE seq = ?`, m.Seq); err != nil {
			return err
		}
		var client any
		if m.ClientID != "" {
			client = m.ClientID
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO messages
			(id, chat_id, text, state, attempts, failures, error, reply, created_at, updated_at, client_id)
			VALUES (?, ?, ?, 'pending', ?, 0, ?, ?, ?, ?, ?)`,
			m.ID, m.ChatID, m.Text, m.Attempts, m.Error, m.Reply, nanos(m.CreatedAt), now, client)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: retry %q: %w", id, err)
	}
	return nil
}

// Drop deletes a dead message. ErrNotFound if there is no dead message
// with that id: only an operator's explicit drop of a dead message ever
// removes one.
func (s *Store) Drop(ctx context.Context, id string) error {
	err := s.write(ctx, func(ctx context.Context, tx *wtx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM messages WHERE id = ? AND state = 'dead'`, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: drop %q: %w", id, err)
	}
	return nil
}

// Get returns the message with id, or ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (Message, error) {
	m, err := getMessage(ctx, &s.r, id)
	if err != nil {
		return Message{}, fmt.Errorf("store: get %q: %w", id, err)
	}
	return m, nil
}

// List returns the messages matching f in Seq order.
func (s *Store) List(ctx context.Context, f Filter) ([]Message, error) {
	var (
		where []string
		args  []any
	)
	if f.ChatID != "" {
		where = append(where, "chat_id = ?")
		args = append(args, f.ChatID)
	}
	switch {
	case f.State == "":
		where = append(where, "state IN ('pending', 'inflight', 'dead')")
	case f.State.valid():
		where = append(where, "state = ?")
		args = append(args, string(f.State))
	default:
		return nil, fmt.Errorf("store: list: unknown state %q", f.State)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = defaultListLimit
	}
	args = append(args, limit)
	rows, err := s.r.QueryContext(ctx, `SELECT `+msgCols+` FROM messages
		WHERE `+strings.Join(where, " AND ")+` ORDER BY seq LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list: %w", err)
	}
	msgs, err := scanMessages(rows)
	if err != nil {
		return nil, fmt.Errorf("store: list: %w", err)
	}
	return msgs, nil
}

// Counts returns how many messages are in each state.
func (s *Store) Counts(ctx context.Context) (Counts, error) {
	var c Counts
	rows, err := s.r.QueryContext(ctx, `SELECT state, count(*) FROM messages GROUP BY state`)
	if err != nil {
		return c, fmt.Errorf("store: counts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			st State
			n  int
		)
		if err := rows.Scan(&st, &n); err != nil {
			return c, fmt.Errorf("store: counts: %w", err)
		}
		switch st {
		case Pending:
			c.Pending = n
		case Inflight:
			c.Inflight = n
		case Done:
			c.Done = n
		case Dead:
			c.Dead = n
		}
	}
	if err := rows.Err(); err != nil {
		return c, fmt.Errorf("store: counts: %w", err)
	}
	return c, nil
}

// ChatsWithPending returns the chats that have pending messages, the one
// waiting longest first, so a caller working down the list is fair.
func (s *Store) ChatsWithPending(ctx context.Context) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT chat_id FROM messages
		WHERE state = 'pending' GROUP BY chat_id ORDER BY min(seq)`)
	if err != nil {
		return nil, fmt.Errorf("store: chats with pending: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var chat string
		if err := rows.Scan(&chat); err != nil {
			return nil, fmt.Errorf("store: chats with pending: %w", err)
		}
		out = append(out, chat)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: chats with pending: %w", err)
	}
	return out, nil
}

// queryRower is what getMessage needs: the read pool or the writer's
// connection (inside a write op).
type queryRower interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func getMessage(ctx context.Context, q queryRower, id string) (Message, error) {
	m, err := scanMessage(q.QueryRowContext(ctx, `SELECT `+msgCols+` FROM messages WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Message{}, ErrNotFound
	}
	return m, err
}

func scanMessage(row interface{ Scan(...any) error }) (Message, error) {
	var (
		m                Message
		created, updated int64
	)
	err := row.Scan(&m.Seq, &m.ID, &m.ChatID, &m.Text, &m.State, &m.Attempts,
		&m.Failures, &m.Error, &m.Reply, &created, &updated, &m.KeptIn, &m.ClientID, &m.TurnID)
	m.CreatedAt, m.UpdatedAt = fromNanos(created), fromNanos(updated)
	return m, err
}

// scanMessages reads and closes rows.
func scanMessages(rows *sql.Rows) ([]Message, error) {
	defer rows.Close()
	var out []Message
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// placeholders returns "?, ?, …" with n marks, for an IN list.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// withIDs appends ids to args as bind values.
func withIDs(args []any, ids []string) []any {
	for _, id := range ids {
		args = append(args, id)
	}
	return args
}

// nanos stores a time as unix nanoseconds; the zero time is 0.
func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// fromNanos is the inverse of nanos. Times come back in UTC, so values
// read back compare equal with ==, whatever the process's time zone.
func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

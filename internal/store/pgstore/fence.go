package pgstore

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/dispatchd/dispatch/internal/store"
)

// Fence tells the store which chats this node holds a lease on, and with
// which fencing token. With a fence set (several nodes on one database),
// every write for a chat — a claim, a turn's outcome, a requeue, a failure,
// a session record, a reset event — checks, inside its own transaction,
// that the chat's lease row still names this node with that token and has
// not expired (by the database's clock), and holds the row (FOR SHARE)
// until commit. A takeover bumps the token with an UPDATE of that row, so
// it waits for such a write to commit, and every later write of the old
// owner fails with ErrFenced: a node that was paused or cut off never
// writes for a chat it lost.
type Fence interface {
	// Token is this node's id and its token for chat; ok is false when
	// the node holds no lease on chat.
	Token(chat string) (node string, token int64, ok bool)
}

// ErrFenced: the write is for a chat this node no longer owns (its lease
// expired or was taken over); nothing was written.
var ErrFenced = errors.New("not the chat's lease holder (fenced)")

// SetFence makes every chat-scoped write check f (nil: no checks, one
// node). Set it before any such write.
func (s *Store) SetFence(f Fence) {
	if f == nil {
		s.fencer.Store(nil)
		return
	}
	s.fencer.Store(&f)
}

// fenceChats checks and holds the leases of chats for this transaction.
func (s *Store) fenceChats(ctx context.Context, tx *wtx, chats ...string) error {
	fp := s.fencer.Load()
	if fp == nil {
		return nil
	}
	f := *fp
	slices.Sort(chats)
	chats = slices.Compact(chats)
	for _, chat := range chats {
		if chat == "" {
			continue
		}
		node, token, ok := f.Token(chat)
		if !ok {
			return fmt.Errorf("chat %q: %w", chat, ErrFenced)
		}
		var got int64
		err := tx.QueryRow(ctx, `SELECT token FROM leases
			WHERE chat_id = $1 AND owner = $2 AND expires_at > clock_timestamp()
			FOR SHARE`, chat, node).Scan(&got)
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && got != token) {
			return fmt.Errorf("chat %q: %w", chat, ErrFenced)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// fenceIDs fences the chats of the messages ids.
func (s *Store) fenceIDs(ctx context.Context, tx *wtx, ids []string, more ...string) error {
	if s.fencer.Load() == nil {
		return nil
	}
	rows, err := tx.Query(ctx, `SELECT DISTINCT chat_id FROM messages WHERE id = ANY($1)`, ids)
	if err != nil {
		return err
	}
	chats, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	return s.fenceChats(ctx, tx, append(chats, more...)...)
}

// IsFenced reports whether err is a write refused by the fence.
func IsFenced(err error) bool { return errors.Is(err, ErrFenced) }

// wakeChannel is the NOTIFY channel on which an accept (or a retry) names
// its chat after commit, so that the chat's owner node wakes its session
// without polling.
const wakeChannel = "dispatch_wake"

// wake tells chat's owner, through NOTIFY, that a message was committed
// for it: after the commit, in a transaction of its own that is not
// waited for (synchronous_commit off). A NOTIFY inside the accept's own
// transaction would serialize every accept's commit (PostgreSQL holds one
// lock on its notification queue from a notifying transaction's
// pre-commit to its end, WAL flush included), losing group commit. Only
// with a fence set (several nodes), and only when this node does not own
// the chat: the supervisor wakes its own sessions itself. A lost wake-up
// (the node died between the commit and the NOTIFY, or the owner's
// listener was reconnecting) is made up for by the owner's scan.
func (s *Store) wake(ctx context.Context, chat string) {
	fp := s.fencer.Load()
	if fp == nil || chat == "" {
		return
	}
	if _, _, own := (*fp).Token(chat); own {
		return
	}
	_ = s.write(context.WithoutCancel(ctx), true, func(ctx context.Context, tx *wtx) error {
		_, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, wakeChannel, chat)
		return err
	})
}

// WakeChannel is the channel a node LISTENs on for its chats' wake-ups.
func WakeChannel() string { return wakeChannel }

// SessionRecord returns chat's saved session (ok false: none).
func (s *Store) SessionRecord(ctx context.Context, chat string) (store.SessionRecord, bool, error) {
	var (
		r                 store.SessionRecord
		created, activity int64
	)
	err := s.pool.QueryRow(ctx, `SELECT chat_id, session_id, exempt, live, failed,
		fail_reason, turns, restarts, created_at, last_activity, paused
		FROM sessions WHERE chat_id = $1`, chat).Scan(&r.ChatID, &r.SessionID, &r.Exempt, &r.Live, &r.Failed,
		&r.FailReason, &r.Turns, &r.Restarts, &created, &activity, &r.Paused)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.SessionRecord{ChatID: chat}, false, nil
	}
	if err != nil {
		return r, false, fmt.Errorf("store: session %q: %w", chat, classify(err))
	}
	r.CreatedAt, r.LastActivity = store.FromNanos(created), store.FromNanos(activity)
	return r, true, nil
}

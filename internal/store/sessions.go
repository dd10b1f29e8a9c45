package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dispatchd/dispatch/internal/events"
)

// SessionRecord is the durable part of a session: what a restarted daemon
// needs to resume it and the counters status reports.
type SessionRecord struct {
	ChatID, SessionID    string
	Exempt, Live, Failed bool
	// Paused: an operator holds the chat's messages (sessions pause).
	Paused          bool
	FailReason      string
	Turns, Restarts int64
	CreatedAt       time.Time
	LastActivity    time.Time
}

// SaveSession inserts or replaces the record for r.ChatID. A zero
// CreatedAt means "now" for a new record and "unchanged" for an existing
// one.
func (s *Store[T]) SaveSession(ctx context.Context, r SessionRecord) error {
	if r.ChatID == "" {
		return errors.New("store: save session: empty chat id")
	}
	given := Nanos(r.CreatedAt)
	created := given
	if created == 0 {
		created = Nanos(s.clk.Now())
	}
	f := s.failedFlag(r.ChatID)
	defer f.unlock()
	err := s.write(ctx, false, func(ctx context.Context, tx T) error {
		if err := s.fenced(ctx, tx, r.ChatID); err != nil {
			return err
		}
		return s.saveSession(ctx, tx, r, created, given, f)
	})
	f.settle(err, r.Failed)
	if err != nil {
		return fmt.Errorf("store: save session %q: %w", r.ChatID, err)
	}
	return nil
}

// CompleteTurn records a successful turn in one write: its inflight
// messages become done with the reply, the turn's reply event is written
// (one per turn, naming its messages in order, with the turn id each
// message records), and the session record is saved.
func (s *Store[T]) CompleteTurn(ctx context.Context, ids []string, reply string, r SessionRecord) error {
	if r.ChatID == "" {
		return errors.New("store: complete turn: empty chat id")
	}
	now := s.clk.Now()
	created := Nanos(r.CreatedAt)
	if created == 0 {
		created = Nanos(now)
	}
	turn := NewTurnID()
	f := s.failedFlag(r.ChatID)
	defer f.unlock()
	err := s.write(ctx, false, func(ctx context.Context, tx T) error {
		if err := s.fencedIDs(ctx, tx, ids, r.ChatID); err != nil {
			return err
		}
		if err := s.completeMessages(ctx, tx, ids, reply, turn, now); err != nil {
			return err
		}
		return s.saveSession(ctx, tx, r, created, Nanos(r.CreatedAt), f)
	})
	f.settle(err, r.Failed)
	if err != nil {
		return fmt.Errorf("store: complete turn of %d messages: %w", len(ids), err)
	}
	return nil
}

// saveSession upserts r. A session that becomes failed, or stops being
// failed, gets its session_failed or session_recovered event in the same
// commit. The flag it was is f's when f knows it, else read in tx.
func (s *Store[T]) saveSession(ctx context.Context, tx T, r SessionRecord, created, given int64, f *failedFlag) error {
	wasFailed, known := f.get()
	if !known {
		var err error
		if wasFailed, err = tx.SessionFailed(ctx, r.ChatID); err != nil {
			return err
		}
	}
	var err error
	if err := tx.UpsertSession(ctx, r, created, given); err != nil {
		return err
	}
	switch {
	case r.Failed && !wasFailed:
		err = s.appendEvent(ctx, tx, &events.Event{Type: events.SessionFailed, ChatID: r.ChatID, Reason: r.FailReason})
	case !r.Failed && wasFailed:
		err = s.appendEvent(ctx, tx, &events.Event{Type: events.SessionRecovered, ChatID: r.ChatID, Reason: "restarted"})
	}
	return err
}

// Sessions returns every saved session, ordered by chat id.
func (s *Store[T]) Sessions(ctx context.Context) ([]SessionRecord, error) {
	out, err := s.d.Sessions(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: sessions: %w", err)
	}
	return out, nil
}

// SessionRecord returns chat's saved session; found is false (and the
// record empty but for its ChatID) when there is none.
func (s *Store[T]) SessionRecord(ctx context.Context, chat string) (SessionRecord, bool, error) {
	r, found, err := s.d.Session(ctx, chat)
	if err != nil {
		return SessionRecord{}, false, fmt.Errorf("store: session %q: %w", chat, err)
	}
	if !found {
		return SessionRecord{ChatID: chat}, false, nil
	}
	return r, true, nil
}

// failedFlag is what this store last committed as a chat's session failed
// flag, so that saving a session (every turn) need not read the flag back
// to tell whether it changed. Only a single node keeps them: with several
// nodes on one database another node may have saved the chat since (its
// lease moved), so a fenced store reads the flag in every save. A save
// holds its chat's flag from before its write until its outcome is known,
// so saves of one chat settle in the order they committed.
type failedFlag struct {
	mu            sync.Mutex
	known, failed bool
}

// failedFlag returns chat's flag, locked; nil (and no lock) when the store
// is fenced. Its methods take a nil flag as one that knows nothing.
func (s *Store[T]) failedFlag(chat string) *failedFlag {
	if s.fence != nil {
		return nil
	}
	v, ok := s.flags.Load(chat)
	if !ok {
		v, _ = s.flags.LoadOrStore(chat, &failedFlag{})
	}
	f := v.(*failedFlag)
	f.mu.Lock()
	return f
}

func (f *failedFlag) unlock() {
	if f != nil {
		f.mu.Unlock()
	}
}

func (f *failedFlag) get() (failed, known bool) {
	if f == nil {
		return false, false
	}
	return f.failed, f.known
}

// settle records the outcome of a save of failed: committed (err nil), the
// flag is known; otherwise it is not (a failed write may or may not have
// left a row behind).
func (f *failedFlag) settle(err error, failed bool) {
	if f != nil {
		f.known, f.failed = err == nil, failed
	}
}

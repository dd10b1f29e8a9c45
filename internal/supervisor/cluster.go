package supervisor

import (
	"context"
	"errors"
	"time"

	"github.com/dispatchd/dispatch/internal/lifecycle"
	"github.com/dispatchd/dispatch/internal/session"
	"github.com/dispatchd/dispatch/internal/store"
)

// Owner says which chats this node holds the lease of, when several nodes
// share one database (internal/cluster). Only the owner of a chat runs its
// session; the others accept its messages and wake the owner through the
// database.
type Owner interface {
	Owns(chat string) bool
}

// startClustered starts a node of several: nothing is recovered here. A
// chat's in-flight messages go back in line when its lease is taken (in
// the same commit), and its session is made then (Adopt), so that nothing
// touches the chats other nodes own.
func (s *Supervisor) startClustered() error {
	if s.cfg.StateDir != "" {
		s.killOrphans(true) // leftovers of this node's killed daemon
	}
	s.log.Info("supervisor started (cluster node: chats are taken as their leases are)")
	s.startLoops()
	return nil
}

// Adopt makes the session of a chat whose lease this node just took, from
// its saved record (a session that was live elsewhere starts again with
// resume), and wakes it. false once shutdown has begun.
func (s *Supervisor) Adopt(chat string) bool {
	s.mu.Lock()
	closing := s.closing
	ss, exists := s.sessions[chat]
	s.mu.Unlock()
	if closing {
		return false
	}
	if exists {
		ss.Notify()
		return true
	}
	var rec store.SessionRecord
	for try := 0; ; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r, _, err := s.store.SessionRecord(ctx, chat)
		cancel()
		if err == nil {
			rec = r
			break
		}
		if try == 2 {
			s.log.Error("adopt chat: read its session; giving the lease back", "chat", chat, "err", err)
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Requests the earlier owner's agent asked are closed (its agent is
	// gone); best effort: a failure leaves them to expire by their time.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := s.closeAsked(ctx, chat); err != nil {
		s.log.Warn("adopt chat: close its earlier permission requests", "chat", chat, "err", err)
	}
	cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	if ss, ok := s.sessions[chat]; ok {
		ss.Notify()
		return true
	}
	ss = session.New(s.deps, rec, rec.Live)
	s.sessions[chat] = ss
	ss.Notify()
	s.emit(lifecycle.Event{Kind: lifecycle.Adopt, Cause: lifecycle.Lease, Chat: chat, Detail: "took the chat's lease"})
	return true
}

// Wake tells an owned chat's session that messages may be waiting (a
// wake-up from another node's accept).
func (s *Supervisor) Wake(chat string) {
	if ss, ok := s.lookup(chat); ok {
		ss.Notify()
	}
}

// Drop stops the session of a chat whose lease was lost, at once: its
// agent is stopped without waiting for a turn in flight, whose outcome
// the store would refuse anyway (the chat's new owner answers it).
func (s *Supervisor) Drop(chat, why string) {
	s.mu.Lock()
	ss, ok := s.sessions[chat]
	delete(s.sessions, chat)
	s.mu.Unlock()
	if !ok {
		return
	}
	s.emit(lifecycle.Event{Kind: lifecycle.LeaseLost, Cause: lifecycle.Lease, Chat: chat, Detail: why})
	s.log.Warn("lease lost: stopping the chat's agent", "chat", chat, "reason", why)
	s.drops.Add(1)
	go func() {
		defer s.drops.Done()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		ss.Shutdown(ctx)
	}()
}

// ErrOtherNode is returned for an operator's command on a chat whose
// session runs on another node (several nodes on PostgreSQL): the command
// must go to the chat's owner.
var ErrOtherNode = errors.New("this chat's session runs on another node: send the command to its owner (dispatch status shows the owner of every chat)")

// missing is the error for a command on a chat with no session here:
// ErrOtherNode when, with several nodes, the chat exists (another node
// owns it, or will), else ErrUnknownChat.
func (s *Supervisor) missing(ctx context.Context, chat string) error {
	if s.cfg.Owner == nil {
		return ErrUnknownChat
	}
	if _, found, err := s.store.SessionRecord(ctx, chat); err == nil && found {
		return ErrOtherNode
	}
	return ErrUnknownChat
}

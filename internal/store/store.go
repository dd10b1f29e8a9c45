// Package store is dispatch's durable state — the message queue, the
// saved sessions, the event feed, the webhook outbox and the agents'
// conversation files — as one policy (Store) over a driver of one SQL
// dialect: internal/store/sqlite, the embedded database of a single node,
// and internal/store/postgres, the database several nodes share. The
// package also holds the contract both keep (Backend; storetest runs it
// against both) and the types they share. See driver.go for the split.
package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/events"
)

// ErrNotFound is returned when the message (in the state an operation
// requires) does not exist.
var ErrNotFound = errors.New("store: not found")

// ErrClosed is returned by writes made after Close.
var ErrClosed = errors.New("store: closed")

// Options are what a mode adds to the store's policy; the zero value is a
// single node.
type Options[T Tx] struct {
	// Fence, with several nodes, refuses a write for a chat this node no
	// longer holds the lease of.
	Fence Fence[T]
	// Waker, with several nodes, wakes a chat's owner after an accept or
	// a retry commits.
	Waker Waker
}

// Store is the store's policy over a driver. It is safe for concurrent
// use.
type Store[T Tx] struct {
	clk   clock.Clock
	d     Driver[T]
	fence Fence[T]
	waker Waker

	flags sync.Map // chat → *failedFlag (see failedFlag)

	fault  atomic.Pointer[FaultFunc]                  // see InjectWriteFault
	fanout atomic.Pointer[func(events.Type) []string] // see SetWebhookFanout
}

var _ Backend = (*Store[Tx])(nil)

// New puts the store's policy over d, which the store owns from now on
// (Close closes it).
func New[T Tx](d Driver[T], clk clock.Clock, opt Options[T]) *Store[T] {
	if clk == nil {
		clk = clock.Real{}
	}
	return &Store[T]{clk: clk, d: d, fence: opt.Fence, waker: opt.Waker}
}

// write runs fn in one transaction of the driver, after the injected
// fault, if any.
func (s *Store[T]) write(ctx context.Context, lazy bool, fn func(ctx context.Context, tx T) error) error {
	if err := s.injected(); err != nil {
		return err
	}
	return s.d.Write(ctx, lazy, fn)
}

// injected is the injected write fault's error, classified (nil: none).
func (s *Store[T]) injected() error {
	if f := s.fault.Load(); f != nil {
		return Classify(nil, (*f)())
	}
	return nil
}

// fenced checks and holds chat's lease for tx (several nodes).
func (s *Store[T]) fenced(ctx context.Context, tx T, chat string) error {
	if s.fence == nil {
		return nil
	}
	return s.hold(ctx, tx, []string{chat})
}

// fencedIDs fences the chats of the messages ids, and chat unless it is
// empty.
func (s *Store[T]) fencedIDs(ctx context.Context, tx T, ids []string, chat string) error {
	if s.fence == nil {
		return nil
	}
	chats, err := tx.ChatsOf(ctx, ids)
	if err != nil {
		return err
	}
	return s.hold(ctx, tx, append(chats, chat))
}

// hold asks the fence to hold chats (sorted, once each, "" left out).
func (s *Store[T]) hold(ctx context.Context, tx T, chats []string) error {
	slices.Sort(chats)
	chats = slices.Compact(chats)
	if len(chats) > 0 && chats[0] == "" {
		chats = chats[1:]
	}
	return s.fence.Hold(ctx, tx, chats)
}

// wake tells chat's owner node that messages were committed for it.
func (s *Store[T]) wake(ctx context.Context, chat string) {
	if s.waker != nil && chat != "" {
		s.waker.Wake(context.WithoutCancel(ctx), chat)
	}
}

// FaultFunc decides whether a write fails before it reaches the database;
// a nil result lets it through.
type FaultFunc func() error

// InjectWriteFault makes every write (accepts, claims, turn outcomes,
// session saves) call f first and fail with its error, classified like a
// driver's (wrap syscall.ENOSPC for a full disk, syscall.EIO for an I/O
// error), without touching the database. nil removes the fault. It is for
// tests that need a storage failure where a real one cannot be arranged;
// a full file system is tested for real as well.
func (s *Store[T]) InjectWriteFault(f FaultFunc) {
	if f == nil {
		s.fault.Store(nil)
		return
	}
	s.fault.Store(&f)
}

// Ping proves the store takes writes: one durable write (a full disk, a
// read-only file system or a wedged writer fail it).
func (s *Store[T]) Ping(ctx context.Context) error {
	now := Nanos(s.clk.Now())
	if err := s.write(ctx, false, func(ctx context.Context, tx T) error { return tx.SetMeta(ctx, "ping", now) }); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

// Check proves the database readable and sound.
func (s *Store[T]) Check(ctx context.Context) error {
	if err := s.d.Check(ctx); err != nil {
		return fmt.Errorf("store: check: %w", err)
	}
	return nil
}

// CheckIdentity is a cheap probe that the database is still the one the
// store opened (see the dialect's).
func (s *Store[T]) CheckIdentity() error { return s.d.CheckIdentity() }

// Close closes the driver: later writes get ErrClosed. It is safe to call
// more than once.
func (s *Store[T]) Close() error { return s.d.Close() }

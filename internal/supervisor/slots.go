package supervisor

import (
	"slices"
	"sync"
	"time"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/session"
)

// Slots is the live cap: it hands out at most max slots, one per running
// agent. A session asks for a slot before it starts an agent and gives it
// back once its agent is stopped for good (a restart keeps it: the new
// agent replaces the old one, so a restart never needs a second slot).
//
// A session that asks while every slot is taken joins the line and is told
// so; when a slot is given back it goes at once to the first in line (by
// session.StartsBefore: oldest waiting message first), whose wake is then
// called so it asks again and finds the slot its own. So a free slot and a
// waiting session never coexist, and nobody can overtake the line. Freeing
// a slot by hibernating an idle session is the supervisor's part: Slots
// only calls short whenever someone starts waiting.
//
// max 0 means no cap: every ask is granted. Slots is safe for concurrent use.
type Slots struct {
	max   int
	clock clock.Clock
	short func() // someone is waiting: look for a session to hibernate

	mu      sync.Mutex
	held    map[string]time.Time // chat → when it got its slot
	waiting map[string]waiter
	closed  bool // shutting down: no new slots
}

type waiter struct {
	session.Waiter
	wake func()
}

// NewSlots makes a cap of max live agents (0: no cap). short, if not nil,
// is called (never under the lock) each time a session has to wait.
func NewSlots(max int, clk clock.Clock, short func()) *Slots {
	return &Slots{max: max, clock: clk, short: short,
		held: map[string]time.Time{}, waiting: map[string]waiter{}}
}

// Acquire asks for chat's slot. oldest is when chat's oldest waiting
// message was accepted: its place in line. true: chat holds a slot (also
// when it already held one). false: chat waits in line; wake is called once
// a slot has been set aside for it.
func (s *Slots) Acquire(chat string, oldest time.Time, wake func()) bool {
	s.mu.Lock()
	if _, ok := s.held[chat]; ok {
		s.mu.Unlock()
		return true
	}
	if s.closed {
		s.mu.Unlock()
		return false
	}
	if s.max == 0 || len(s.held) < s.max {
		// A free slot means nobody waits (see Release).
		delete(s.waiting, chat)
		s.held[chat] = s.clock.Now()
		s.mu.Unlock()
		return true
	}
	w, ok := s.waiting[chat]
	if !ok {
		w.Chat, w.Since = chat, s.clock.Now()
	}
	if !oldest.IsZero() {
		w.Oldest = oldest
	}
	w.wake = wake
	s.waiting[chat] = w
	s.mu.Unlock()
	if s.short != nil {
		s.short()
	}
	return false
}

// Release gives chat's slot back, or takes chat out of the line. The freed
// slot goes to the first in line at once. Releasing what chat does not
// hold is a no-op.
func (s *Slots) Release(chat string) {
	s.mu.Lock()
	delete(s.waiting, chat)
	if _, ok := s.held[chat]; !ok {
		s.mu.Unlock()
		return
	}
	delete(s.held, chat)
	var wakes []func()
	for !s.closed && len(s.waiting) > 0 && (s.max == 0 || len(s.held) < s.max) {
		next := s.first()
		delete(s.waiting, next.Chat)
		s.held[next.Chat] = s.clock.Now()
		wakes = append(wakes, next.wake)
	}
	s.mu.Unlock()
	for _, w := range wakes {
		if w != nil {
			w()
		}
	}
}

// first is the waiter to be served next. Called with mu held and at least
// one waiter.
func (s *Slots) first() waiter {
	var best waiter
	found := false
	for _, w := range s.waiting {
		if !found || session.StartsBefore(w.Waiter, best.Waiter) < 0 {
			best, found = w, true
		}
	}
	return best
}

// Close stops handing out slots (the daemon is shutting down): nobody in
// line is woken any more, and no new agent gets a slot.
func (s *Slots) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
}

// Holds reports whether chat holds a slot.
func (s *Slots) Holds(chat string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.held[chat]
	return ok
}

// Live is how many slots are held.
func (s *Slots) Live() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.held)
}

// Waiting is how many sessions wait in line.
func (s *Slots) Waiting() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.waiting)
}

// Line is the waiting sessions in the order they will be served.
func (s *Slots) Line() []session.Waiter {
	s.mu.Lock()
	out := make([]session.Waiter, 0, len(s.waiting))
	for _, w := range s.waiting {
		out = append(out, w.Waiter)
	}
	s.mu.Unlock()
	slices.SortFunc(out, session.StartsBefore)
	return out
}

// Max is the cap (0: none).
func (s *Slots) Max() int { return s.max }

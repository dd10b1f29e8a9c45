package supervisor

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/dispatchd/dispatch/internal/session"
)

// capacity is the supervisor's part of the live cap and of the memory
// watch.
type capacity struct {
	slots *Slots        // nil: no cap
	kick  chan struct{} // wakes the hibernation loop

	hibMu       sync.Mutex
	hibernating map[string]bool // asked to hibernate, slot not yet given back

	memMu  sync.Mutex
	rss    map[string]uint64 // chat → its agent's resident memory at the last sample
	rssSum uint64
	rssMax uint64
	// memWarned: agents over the limit at the last sample, already logged
	memWarned map[string]memWarning
}

func (s *Supervisor) initCapacity() {
	s.kick = make(chan struct{}, 1)
	s.hibernating = map[string]bool{}
	s.rss = map[string]uint64{}
	if s.cfg.MaxLive > 0 {
		s.slots = NewSlots(s.cfg.MaxLive, s.clock, s.kickHibernation)
		s.deps.Slots = slotGate{s}
	}
}

// slotGate is the live cap as sessions see it.
type slotGate struct{ s *Supervisor }

// Acquire asks for chat's slot; at the cap, chat's place in line is the
// acceptance time of its oldest waiting message.
func (g slotGate) Acquire(chat string, wake func()) bool {
	sl := g.s.slots
	if sl.Acquire(chat, time.Time{}, wake) {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	oldest, err := g.s.store.OldestPending(ctx, chat)
	cancel()
	if err != nil {
		g.s.log.Warn("live cap: oldest waiting message unknown; queued last", "chat", chat, "err", err)
		return false
	}
	return sl.Acquire(chat, oldest, wake)
}

func (g slotGate) Release(chat string) {
	g.s.hibMu.Lock()
	delete(g.s.hibernating, chat)
	g.s.hibMu.Unlock()
	g.s.slots.Release(chat)
}

func (g slotGate) Idle(string) {
	if g.s.slots.Waiting() > 0 {
		g.s.kickHibernation()
	}
}

// kickHibernation asks the hibernation loop to look for sessions to
// hibernate. It never blocks.
func (s *Supervisor) kickHibernation() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// hibernationLoop hibernates idle sessions while others wait for a slot.
// It is woken when a session starts waiting, when a live session becomes
// idle while others wait, and by every health check.
func (s *Supervisor) hibernationLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		}
		s.hibernateForWaiters(ctx)
	}
}

// hibernateForWaiters picks, for each waiting session not already covered
// by a hibernation under way, one live session that may be hibernated
// (session.Rules.Hibernatable), least recently active first, and asks it
// to stop through its own actor. A session that has meanwhile taken work
// declines, and the loop is woken to look again.
//
// It runs whenever a session goes idle while others wait, so it reads only
// what it needs: the sessions' own snapshots choose and order the
// candidates, and the store is asked whether a chat has messages waiting
// one candidate at a time, in that order, until enough are found — a few
// indexed lookups instead of a count of every chat's pending messages.
func (s *Supervisor) hibernateForWaiters(ctx context.Context) {
	defer func() {
		if r := recover(); r != nil {
			s.metrics.Panics.Inc()
			s.log.Error("hibernation panic", "panic", r)
		}
	}()
	if s.slots == nil {
		return
	}
	s.hibMu.Lock()
	need := s.slots.Waiting() - len(s.hibernating)
	s.hibMu.Unlock()
	if need <= 0 {
		return
	}
	rules := s.cfg.Rules
	var cands []session.Snapshot
	byChat := map[string]*session.Session{}
	s.hibMu.Lock()
	for _, ss := range s.all() {
		snap := ss.Snapshot()
		if s.hibernating[snap.ChatID] || !s.slots.Holds(snap.ChatID) || !rules.Hibernatable(snap, session.Queue{}) {
			continue
		}
		cands = append(cands, snap)
		byChat[snap.ChatID] = ss
	}
	s.hibMu.Unlock()
	slices.SortFunc(cands, session.HibernateFirst)
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	chosen := cands[:0]
	for _, c := range cands {
		if len(chosen) == need {
			break
		}
		waiting, err := s.store.HasPending(qctx, c.ChatID)
		if err != nil {
			s.log.Error("live cap: read queues", "err", err)
			return
		}
		if !waiting {
			chosen = append(chosen, c)
		}
	}
	// Only this loop's goroutine adds to hibernating, so no other pass
	// chose these meanwhile.
	s.hibMu.Lock()
	for _, c := range chosen {
		s.hibernating[c.ChatID] = true
	}
	s.hibMu.Unlock()
	for _, c := range chosen {
		chat := c.ChatID
		byChat[chat].Hibernate(
			func(cur session.Snapshot) bool { return rules.Hibernatable(cur, session.Queue{}) },
			func(done bool) {
				if done {
					s.metrics.Hibernations.Inc()
					return // its slot comes back through Release
				}
				s.hibMu.Lock()
				delete(s.hibernating, chat)
				s.hibMu.Unlock()
				s.kickHibernation()
			})
	}
}

// SessionsWaiting is how many sessions wait for a live slot.
func (s *Supervisor) SessionsWaiting() int {
	if s.slots == nil {
		return 0
	}
	return s.slots.Waiting()
}

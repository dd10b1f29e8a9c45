// Package scheduler is the loop that fires schedules: it keeps every
// running schedule's next firing time in a heap, sleeps until the
// earliest, and fires what is due through the store, which decides by
// internal/schedule's rules what is due and commits each firing at once
// (store.Store.FireSchedule). It wakes early when a schedule is added,
// removed, paused or resumed (Changed), runs the catch-up of every
// schedule when it starts (the daemon was down, or another node held the
// role), and retries a store error with backoff: a failed firing is not
// skipped, it is fired (or, by the schedule's catch-up policy, reported
// missed) by a later attempt.
//
// With several nodes on one database one node runs the loop (a role with
// a lease); Stop ends it at once when the role is lost. A firing that
// races one of another node is harmless: the store orders them on the
// schedule's row, and the queue refuses a second message with the same
// client id.
package scheduler

import (
	"container/heap"
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/schedule"
	"github.com/dispatchd/dispatch/internal/store"
)

// Store is what the scheduler needs of the store.
type Store interface {
	Schedules(ctx context.Context, chat string) ([]store.ScheduleRecord, error)
	Schedule(ctx context.Context, id string) (store.ScheduleRecord, error)
	FireSchedule(ctx context.Context, id string, now time.Time, window time.Duration) (store.Fired, error)
}

// Config is the scheduler's settings.
type Config struct {
	// Window is the catch-up window of policy one (schedules.catch_up_window).
	Window time.Duration
	// Resync reloads every schedule this often (0: never). With several
	// nodes it is how a schedule added or changed through another node is
	// seen.
	Resync time.Duration
	// Parallel bounds the firings made at once (default 16): concurrent
	// commits share the store's flushes.
	Parallel int
	// Accepted is told of each chat a firing accepted a new message for
	// (the supervisor's Accepted).
	Accepted func(chat string)
	Clock    clock.Clock
	Log      *slog.Logger
}

// Retry delays after a store error: doubling from minBackoff, at most
// maxBackoff.
const (
	minBackoff = time.Second
	maxBackoff = time.Minute
)

// Scheduler fires schedules while started. It is safe for concurrent use.
type Scheduler struct {
	cfg Config
	st  Store

	mu      sync.Mutex
	changed map[string]bool // schedules to reload
	kick    chan struct{}   // a change is waiting (capacity 1)
	cancel  context.CancelFunc
	done    chan struct{}
}

// New returns a stopped scheduler over st.
func New(st Store, cfg Config) *Scheduler {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = 16
	}
	return &Scheduler{cfg: cfg, st: st, changed: map[string]bool{}, kick: make(chan struct{}, 1)}
}

// Start starts the loop unless it runs; it loads every schedule and
// catches up what is due first.
func (s *Scheduler) Start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	s.changed = map[string]bool{} // the start loads everything
	done := s.done
	go func() {
		defer close(done)
		s.run(ctx)
	}()
}

// Stop ends the loop, if it runs, and waits for it: no firing starts
// after Stop returns (one already committing completes).
func (s *Scheduler) Stop() {
	s.mu.Lock()
	cancel, done := s.cancel, s.done
	s.cancel, s.done = nil, nil
	s.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

// Changed tells the loop that schedule id was added, removed, paused or
// resumed, so that it reads it again now. A stopped scheduler ignores it:
// its start reads every schedule.
func (s *Scheduler) Changed(id string) {
	s.mu.Lock()
	running := s.cancel != nil
	if running {
		s.changed[id] = true
	}
	s.mu.Unlock()
	if !running {
		return
	}
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// entry is a schedule's place in the heap: its next firing time, or the
// time of its next attempt after a store error.
type entry struct {
	at  time.Time
	id  string
	gen int
}

type entries []entry

func (h entries) Len() int { return len(h) }
func (h entries) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].id < h[j].id
}
func (h entries) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *entries) Push(x any)   { *h = append(*h, x.(entry)) }
func (h *entries) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// loop is one run's state: the heap, and per schedule the generation of
// its valid entry (older entries are skipped when popped) and its failed
// attempts.
type loop struct {
	*Scheduler
	h        entries
	gen      map[string]int
	failures map[string]int
	n        int
}

func (s *Scheduler) run(ctx context.Context) {
	l := &loop{Scheduler: s, gen: map[string]int{}, failures: map[string]int{}}
	if !l.loadAll(ctx) {
		return
	}
	resyncAt := s.cfg.Clock.Now().Add(s.cfg.Resync)
	for {
		l.reload(ctx)
		now := s.cfg.Clock.Now()
		if s.cfg.Resync > 0 && !now.Before(resyncAt) {
			if !l.loadAll(ctx) {
				return
			}
			resyncAt = now.Add(s.cfg.Resync)
		}
		l.fireDue(ctx, now)
		if ctx.Err() != nil {
			return
		}
		wait := time.Duration(-1)
		if at, ok := l.next(); ok {
			wait = max(at.Sub(s.cfg.Clock.Now()), 0)
		}
		if s.cfg.Resync > 0 {
			if d := max(resyncAt.Sub(s.cfg.Clock.Now()), 0); wait < 0 || d < wait {
				wait = d
			}
		}
		if wait == 0 {
			continue
		}
		var tc <-chan time.Time
		var t clock.Timer
		if wait > 0 {
			t = s.cfg.Clock.NewTimer(wait)
			tc = t.C()
		}
		select {
		case <-ctx.Done():
		case <-s.kick:
		case <-tc:
		}
		if t != nil {
			t.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// loadAll (re)builds the heap from every stored schedule, retrying a
// store error with backoff; false: ctx ended.
func (l *loop) loadAll(ctx context.Context) bool {
	for attempt := 0; ; attempt++ {
		rs, err := l.st.Schedules(ctx, "")
		if err == nil {
			l.h = l.h[:0]
			clear(l.gen)
			for _, r := range rs {
				l.place(r, time.Time{})
			}
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		d := backoff(attempt)
		l.cfg.Log.Warn("schedules: cannot read the schedules; retrying", "err", err, "retry_in", d)
		if !l.sleep(ctx, d) {
			return false
		}
	}
}

// reload reads again the schedules Changed named.
func (l *loop) reload(ctx context.Context) {
	l.mu.Lock()
	ids := l.changed
	l.changed = map[string]bool{}
	l.mu.Unlock()
	for id := range ids {
		r, err := l.st.Schedule(ctx, id)
		switch {
		case errors.Is(err, store.ErrNotFound):
			delete(l.gen, id)
			delete(l.failures, id)
		case err != nil:
			// Read it at its next attempt instead: firing reads the row.
			l.cfg.Log.Warn("schedules: cannot read a changed schedule; retrying", "schedule", id, "err", err)
			l.push(id, l.cfg.Clock.Now().Add(backoff(l.failures[id])))
			l.failures[id]++
		default:
			l.place(r, time.Time{})
		}
	}
}

// place puts r in the heap at its next firing after its progress (which
// may be past: then it is due now), or takes it out when it fires no more.
// A next firing not after notAfter (a firing that found nothing due) is
// put at notAfter plus a second instead, so the loop never spins.
func (l *loop) place(r store.ScheduleRecord, notAfter time.Time) {
	if r.Paused || r.Finished {
		delete(l.gen, r.ID)
		return
	}
	sc, err := schedule.Parse(r.Spec)
	if err != nil {
		l.cfg.Log.Error("schedules: a stored schedule no longer parses; it does not fire", "schedule", r.ID, "err", err)
		delete(l.gen, r.ID)
		return
	}
	after := r.Through
	if after.Before(r.Spec.Created) {
		after = r.Spec.Created
	}
	f, ok := sc.Next(after)
	if !ok {
		delete(l.gen, r.ID)
		return
	}
	at := f.At
	if !notAfter.IsZero() && !at.After(notAfter) {
		at = notAfter.Add(time.Second)
	}
	l.push(r.ID, at)
}

// next returns the earliest valid entry's time, dropping stale entries
// (of schedules placed again or taken out) from the top of the heap.
func (l *loop) next() (time.Time, bool) {
	for len(l.h) > 0 {
		if g, ok := l.gen[l.h[0].id]; ok && g == l.h[0].gen {
			return l.h[0].at, true
		}
		heap.Pop(&l.h)
	}
	return time.Time{}, false
}

func (l *loop) push(id string, at time.Time) {
	l.n++
	l.gen[id] = l.n
	heap.Push(&l.h, entry{at: at, id: id, gen: l.n})
}

// fireDue fires every schedule whose entry is due at now, at most
// Parallel at once, and places each again.
func (l *loop) fireDue(ctx context.Context, now time.Time) {
	var due []string
	for len(l.h) > 0 && !l.h[0].at.After(now) {
		e := heap.Pop(&l.h).(entry)
		if g, ok := l.gen[e.id]; ok && g == e.gen {
			due = append(due, e.id)
		}
	}
	if len(due) == 0 {
		return
	}
	type result struct {
		id  string
		f   store.Fired
		err error
	}
	results := make([]result, len(due))
	sem := make(chan struct{}, l.cfg.Parallel)
	var wg sync.WaitGroup
	for i, id := range due {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			f, err := l.st.FireSchedule(ctx, id, now, l.cfg.Window)
			results[i] = result{id, f, err}
			if err == nil && f.New > 0 && l.cfg.Accepted != nil {
				l.cfg.Accepted(f.Schedule.ChatID)
			}
		}()
	}
	wg.Wait()
	for _, r := range results {
		if r.err != nil {
			if ctx.Err() != nil {
				return
			}
			d := backoff(l.failures[r.id])
			l.failures[r.id]++
			l.cfg.Log.Warn("schedules: firing failed; retrying", "schedule", r.id, "err", r.err, "retry_in", d)
			l.push(r.id, l.cfg.Clock.Now().Add(d))
			continue
		}
		delete(l.failures, r.id)
		l.logFired(r.f)
		if r.f.Gone {
			delete(l.gen, r.id)
			continue
		}
		var notAfter time.Time
		if r.f.Plan.Through.IsZero() {
			notAfter = now
		}
		l.place(r.f.Schedule, notAfter)
	}
}

func (l *loop) logFired(f store.Fired) {
	r := f.Schedule
	for _, x := range f.Plan.Fire {
		if x.Skipped {
			l.cfg.Log.Info("schedules: a scheduled time did not exist (daylight saving); fired at the jump",
				"schedule", r.ID, "wall", x.Wall, "at", x.At)
		}
	}
	if len(f.Plan.Fire) > 0 {
		l.cfg.Log.Debug("schedules: fired", "schedule", r.ID, "chat", r.ChatID, "firings", len(f.Plan.Fire), "new", f.New)
	}
	if m := f.Plan.Missed; m.Count > 0 {
		l.cfg.Log.Info("schedules: firings missed", "schedule", r.ID, "chat", r.ChatID,
			"count", m.Count, "first", m.First, "last", m.Last, "reason", m.Reason)
	}
}

func (l *loop) sleep(ctx context.Context, d time.Duration) bool {
	return clock.Sleep(ctx, l.cfg.Clock, d)
}

// backoff is the delay before attempt n+1 after n failed ones.
func backoff(n int) time.Duration {
	d := minBackoff
	for range n {
		d *= 2
		if d >= maxBackoff {
			return maxBackoff
		}
	}
	return d
}

// Package breaker is the daemon's one API-health circuit breaker.
//
// A turn that fails as an outage opens the breaker: from then on every new
// turn is held (its messages stay pending, in order) and the breaker probes
// the API with growing delay — from Min, doubling with ±20 % jitter, up to
// Max. A probe is a throwaway turn through the agent itself (so it works for
// any agent and needs no API address of its own) and, unlike retrying a
// chat's held turn, it leaves no trace in any conversation. The first probe
// that gets an answer, or any turn that does, closes the breaker; the held
// sessions are then woken oldest first, with at most Recovery of them
// running at once until that backlog has drained, so recovery does not
// flood the API. Only the backlog is paced: a chat that was not held goes
// at once, and pacing ends when the backlog has drained, however busy the
// other chats are.
//
// The breaker also remembers when each chat last got an answer, so that a
// session can tell an outage (nobody gets answers) from a failure of its
// own conversation (others do).
package breaker

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/session"
)

// Config sets the probe delays, the probe itself and the recovery pacing.
type Config struct {
	Min, Max time.Duration
	Recovery int // turns at once while draining the backlog after an outage
	// Probe asks, through the agent, whether the API answers again. It is
	// called from Run, one at a time, with a context bounded by
	// ProbeTimeout.
	Probe        func(ctx context.Context) (up bool)
	ProbeTimeout time.Duration
	// OnChange is called (outside the breaker's lock) when the API goes
	// down (up=false) or comes back (up=true).
	OnChange func(up bool)
}

// Breaker implements session.Gate.
type Breaker struct {
	cfg   Config
	clock clock.Clock
	rearm chan struct{}

	mu   sync.Mutex
	down bool
	// backlog: chats held by the last outage (or waiting at startup) that
	// have not had their paced turn yet; paced: those whose paced turn is
	// in flight. Pacing lasts while either is non-empty.
	backlog   map[string]bool
	paced     map[string]bool
	answered  map[string]time.Time // chat ("" for a probe) → its last answer
	delay     time.Duration
	probeAt   time.Time
	timer     clock.Timer
	inflight  int
	waiters   []waiter
	downSince time.Time
	downTotal time.Duration
	outages   int
	probes    int
}

type waiter struct {
	chat string
	wake func()
}

var _ session.Gate = (*Breaker)(nil)

// New returns a closed (API up) breaker.
func New(cfg Config, clk clock.Clock) *Breaker {
	if cfg.Min <= 0 {
		cfg.Min = time.Second
	}
	if cfg.Max < cfg.Min {
		cfg.Max = cfg.Min
	}
	if cfg.Recovery <= 0 {
		cfg.Recovery = 1
	}
	if cfg.ProbeTimeout <= 0 {
		cfg.ProbeTimeout = 2 * time.Minute
	}
	return &Breaker{cfg: cfg, clock: clk, rearm: make(chan struct{}, 1),
		backlog: map[string]bool{}, paced: map[string]bool{}, answered: map[string]time.Time{}}
}

// Up reports whether the API is considered reachable.
func (b *Breaker) Up() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.down
}

// Stats are the breaker's counters for status and metrics.
type Stats struct {
	Up          bool
	Held        int
	Pacing      bool // a backlog is being drained at a bounded pace
	Outages     int
	Probes      int
	DownSeconds float64 // total time spent down, including the current outage
	NextProbe   time.Time
}

// Stats returns the breaker's counters at this moment.
func (b *Breaker) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	total := b.downTotal
	if b.down {
		total += b.clock.Now().Sub(b.downSince)
	}
	st := Stats{Up: !b.down, Held: len(b.waiters), Pacing: b.pacingLocked(), Outages: b.outages, Probes: b.probes, DownSeconds: total.Seconds()}
	if b.down {
		st.NextProbe = b.probeAt
	}
	return st
}

// Pace makes chats a backlog: each one's next turn is paced (at most
// Recovery of them at once), as after an outage, until all have had it.
// The daemon calls it at startup for the chats with waiting messages: it
// cannot know whether the API came back while it was down. Other chats are
// not paced.
func (b *Breaker) Pace(chats ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.down {
		return
	}
	for _, c := range chats {
		b.backlog[c] = true
	}
}

func (b *Breaker) pacingLocked() bool { return !b.down && (len(b.backlog) > 0 || len(b.paced) > 0) }

// Admit lets a turn start, or holds it and calls wake when it may try
// again: while the API is down every turn is held; while a backlog drains,
// at most Recovery of its chats run at once (other chats go at once).
func (b *Breaker) Admit(chat string, wake func()) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.down {
		switch {
		case !b.backlog[chat]:
			b.remove(chat)
			b.inflight++
			return true
		case len(b.paced) < b.cfg.Recovery:
			delete(b.backlog, chat)
			b.paced[chat] = true
			b.remove(chat)
			b.inflight++
			return true
		}
	}
	for _, w := range b.waiters {
		if w.chat == chat {
			return false
		}
	}
	b.waiters = append(b.waiters, waiter{chat, wake})
	if len(b.waiters) == 1 {
		b.kick()
	}
	return false
}

func (b *Breaker) remove(chat string) {
	for i, w := range b.waiters {
		if w.chat == chat {
			b.waiters = append(b.waiters[:i], b.waiters[i+1:]...)
			return
		}
	}
}

// kick lets Run re-read the timers. b.mu is held.
func (b *Breaker) kick() {
	select {
	case b.rearm <- struct{}{}:
	default:
	}
}

// Done records how an admitted turn ended.
func (b *Breaker) Done(chat string, o session.Outcome) {
	b.mu.Lock()
	if b.inflight > 0 {
		b.inflight--
	}
	delete(b.paced, chat)
	var change func(bool)
	var up bool
	switch o {
	case session.Unreachable:
		if !b.down {
			b.openLocked()
			change, up = b.cfg.OnChange, false
		}
	case session.Answered:
		b.answered[chat] = b.clock.Now()
		if b.down {
			b.closeLocked()
			change, up = b.cfg.OnChange, true
		}
	}
	wake := b.wakeLocked()
	b.mu.Unlock()
	if change != nil {
		change(up)
	}
	for _, w := range wake {
		w()
	}
}

// AnsweredElsewhere reports whether a chat other than chat, or a probe,
// got an answer from the API at or after since.
func (b *Breaker) AnsweredElsewhere(chat string, since time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for c, t := range b.answered {
		if c != chat && !t.Before(since) {
			return true
		}
	}
	return false
}

func (b *Breaker) openLocked() {
	now := b.clock.Now()
	b.down, b.downSince, b.delay = true, now, b.cfg.Min
	clear(b.backlog)
	clear(b.paced)
	b.outages++
	b.armLocked(now)
}

// closeLocked ends an outage: the chats it held are the backlog to pace.
func (b *Breaker) closeLocked() {
	b.down = false
	for _, w := range b.waiters {
		b.backlog[w.chat] = true
	}
	b.downTotal += b.clock.Now().Sub(b.downSince)
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
}

// wakeLocked pops the waiters that may go now, oldest first: none while
// down; otherwise every waiter outside the backlog, and of the backlog one
// per free pacing slot. A woken session that no longer wants to send
// simply does not come back; the next event (or Run's tick) wakes the next
// one.
func (b *Breaker) wakeLocked() []func() {
	if b.down {
		return nil
	}
	slots := b.cfg.Recovery - len(b.paced)
	var out []func()
	keep := b.waiters[:0]
	for _, w := range b.waiters {
		switch {
		case !b.backlog[w.chat]:
			out = append(out, w.wake)
		case slots > 0:
			slots--
			out = append(out, w.wake)
		default:
			keep = append(keep, w)
		}
	}
	clear(b.waiters[len(keep):])
	b.waiters = keep
	return out
}

// armLocked schedules the next probe after the current delay with ±20 % jitter.
func (b *Breaker) armLocked(now time.Time) {
	d := b.delay
	if j := int64(d) / 5; j > 0 {
		d += time.Duration(rand.Int64N(2*j) - j)
	}
	b.probeAt = now.Add(d)
	if b.timer != nil {
		b.timer.Stop()
	}
	b.timer = b.clock.NewTimer(d)
	b.kick()
}

// Run probes the API whenever a probe falls due, and re-offers free slots
// every second while turns are held, until ctx ends.
func (b *Breaker) Run(ctx context.Context) {
	for {
		b.mu.Lock()
		var probe, tick <-chan time.Time
		if b.timer != nil {
			probe = b.timer.C()
		}
		var t clock.Timer
		if len(b.waiters) > 0 && !b.down {
			t = b.clock.NewTimer(time.Second)
			tick = t.C()
		}
		b.mu.Unlock()
		select {
		case <-ctx.Done():
			if t != nil {
				t.Stop()
			}
			return
		case <-b.rearm:
		case <-probe:
			b.probe(ctx)
		case <-tick:
		}
		if t != nil {
			t.Stop()
		}
		b.mu.Lock()
		wake := b.wakeLocked()
		b.mu.Unlock()
		for _, w := range wake {
			w()
		}
	}
}

// probe runs one probe and acts on its answer.
func (b *Breaker) probe(ctx context.Context) {
	b.mu.Lock()
	b.timer = nil
	down := b.down
	b.probes++
	b.mu.Unlock()
	if !down {
		return
	}
	up := true
	if b.cfg.Probe != nil {
		pctx, cancel := context.WithTimeout(ctx, b.cfg.ProbeTimeout)
		up = b.cfg.Probe(pctx)
		cancel()
	}
	if ctx.Err() != nil {
		return
	}
	b.mu.Lock()
	if up {
		b.answered[""] = b.clock.Now()
	}
	var change func(bool)
	switch {
	case !b.down: // a turn got through meanwhile
	case up:
		b.closeLocked()
		change = b.cfg.OnChange
	default:
		b.delay = min(2*b.delay, b.cfg.Max)
		b.armLocked(b.clock.Now())
	}
	b.mu.Unlock()
	if change != nil {
		change(true)
	}
}

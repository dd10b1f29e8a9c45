// Package breaker is the daemon's one API-health circuit breaker (SPEC 2.4).
//
// A turn that fails as an outage opens the breaker: from then on every new
// turn is held (its messages stay pending, in order) and the breaker probes
// the API with growing delay — from Min, doubling with ±20 % jitter, up to
// Max. A probe is a throwaway turn through the agent itself (so it works for
// any agent and needs no API address of its own) and, unlike retrying a
// chat's held turn, it leaves no trace in any conversation. The first probe
// that gets an answer, or any turn that does, closes the breaker; the held
// sessions are then woken oldest first, with at most Recovery turns running
// at once until the backlog has drained, so recovery does not flood the API.
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

	mu         sync.Mutex
	down       bool
	recovering bool
	delay      time.Duration
	probeAt    time.Time
	timer      clock.Timer
	inflight   int
	waiters    []waiter
	downSince  time.Time
	downTotal  time.Duration
	outages    int
	probes     int
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
	return &Breaker{cfg: cfg, clock: clk, rearm: make(chan struct{}, 1)}
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
	st := Stats{Up: !b.down, Held: len(b.waiters), Outages: b.outages, Probes: b.probes, DownSeconds: total.Seconds()}
	if b.down {
		st.NextProbe = b.probeAt
	}
	return st
}

// Pace makes the breaker admit at most Recovery turns at once until the
// current backlog drains — as after an outage. The daemon calls it at
// startup when messages are waiting: it cannot know whether the API came
// back while it was down.
func (b *Breaker) Pace() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.down {
		b.recovering = true
	}
}

// Admit lets a turn start, or holds it and calls wake when it may try
// again: while the API is down every turn is held; while recovering at most
// Recovery run at once.
func (b *Breaker) Admit(chat string, wake func()) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.down && (!b.recovering || b.inflight < b.cfg.Recovery) {
		b.remove(chat)
		b.inflight++
		return true
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
	var change func(bool)
	var up bool
	switch o {
	case session.Unreachable:
		if !b.down {
			b.openLocked()
			change, up = b.cfg.OnChange, false
		}
	case session.Answered:
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

func (b *Breaker) openLocked() {
	now := b.clock.Now()
	b.down, b.recovering, b.downSince, b.delay = true, false, now, b.cfg.Min
	b.outages++
	b.armLocked(now)
}

func (b *Breaker) closeLocked() {
	b.down, b.recovering = false, true
	b.downTotal += b.clock.Now().Sub(b.downSince)
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
}

// wakeLocked pops the waiters that may go now, oldest first: all of them
// when the API is up, one per free slot while recovering, none while down.
// A woken session that no longer wants to send simply does not come back;
// the next event (or Run's tick) wakes the next one.
func (b *Breaker) wakeLocked() []func() {
	if b.down {
		return nil
	}
	if b.recovering && len(b.waiters) == 0 && b.inflight == 0 {
		b.recovering = false // the backlog has drained
	}
	n := len(b.waiters)
	if b.recovering {
		n = max(0, min(n, b.cfg.Recovery-b.inflight))
	}
	out := make([]func(), n)
	for i := range n {
		out[i] = b.waiters[i].wake
	}
	b.waiters = b.waiters[n:]
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

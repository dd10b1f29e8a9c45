// Package breaker is the daemon's one API-health circuit breaker (SPEC 2.4).
//
// A turn that fails as an outage opens the breaker: from then on new turns
// are held (their messages stay pending, in order) and only one turn at a
// time is let through as a probe, after a delay that doubles with jitter
// from Min to Max. The first probe the API answers closes the breaker; the
// held sessions are then woken oldest first, with at most Recovery turns
// running at once until the backlog has drained, so that recovery does not
// flood the API.
package breaker

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/session"
)

// Config sets the probe delays and the recovery pacing.
type Config struct {
	Min, Max time.Duration
	Recovery int // turns at once while draining the backlog after an outage
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
	probe      string // chat holding the probe slot
	timer      clock.Timer
	inflight   int
	waiters    []waiter
	downSince  time.Time
	downTotal  time.Duration
	outages    int
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
	st := Stats{Up: !b.down, Held: len(b.waiters), Outages: b.outages, DownSeconds: total.Seconds()}
	if b.down {
		st.NextProbe = b.probeAt
	}
	return st
}

// Admit lets a turn start, or holds it and calls wake when it may try again.
func (b *Breaker) Admit(chat string, wake func()) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case !b.down && (!b.recovering || b.inflight < b.cfg.Recovery):
		b.remove(chat)
		b.inflight++
		return true
	case b.down && b.probe == "" && !b.clock.Now().Before(b.probeAt):
		b.remove(chat)
		b.probe = chat
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
		select { // let Run start its tick
		case b.rearm <- struct{}{}:
		default:
		}
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

// Done records how an admitted turn ended.
func (b *Breaker) Done(chat string, o session.Outcome) {
	var wake []func()
	var change func(bool)
	var up bool
	b.mu.Lock()
	if b.inflight > 0 {
		b.inflight--
	}
	wasProbe := b.probe == chat
	if wasProbe {
		b.probe = ""
	}
	now := b.clock.Now()
	switch o {
	case session.Unreachable:
		if !b.down {
			b.down, b.downSince, b.delay = true, now, b.cfg.Min
			b.outages++
			change, up = b.cfg.OnChange, false
		} else if wasProbe {
			b.delay = min(2*b.delay, b.cfg.Max)
		}
		if wasProbe || b.timer == nil {
			b.armLocked(now)
		}
	case session.Answered:
		if b.down {
			b.down, b.recovering = false, true
			b.downTotal += now.Sub(b.downSince)
			if b.timer != nil {
				b.timer.Stop()
				b.timer = nil
			}
			change, up = b.cfg.OnChange, true
		}
	case session.Released:
		if b.down && wasProbe {
			// The probe had nothing to send: let the next held turn probe.
			b.probeAt = now
		}
	}
	wake = b.wakeLocked()
	b.mu.Unlock()
	if change != nil {
		change(up)
	}
	for _, w := range wake {
		w()
	}
}

// wakeLocked pops the waiters that may go now, oldest first: all of them
// when the API is up, one per free slot while recovering, and one when a
// probe is due. A woken session that no longer wants to send simply does not
// come back; the next event (or Run's tick) wakes the next one.
func (b *Breaker) wakeLocked() []func() {
	if !b.down && b.recovering && len(b.waiters) == 0 && b.inflight == 0 {
		b.recovering = false // the backlog has drained
	}
	n := 0
	switch {
	case !b.down && !b.recovering:
		n = len(b.waiters)
	case !b.down:
		n = b.cfg.Recovery - b.inflight
	case b.probe == "" && !b.clock.Now().Before(b.probeAt):
		n = 1
	}
	n = max(0, min(n, len(b.waiters)))
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
	select {
	case b.rearm <- struct{}{}:
	default:
	}
}

// Run wakes held turns when a probe falls due, and re-offers free slots
// every second while turns are held, until ctx ends.
func (b *Breaker) Run(ctx context.Context) {
	for {
		b.mu.Lock()
		var probe, tick <-chan time.Time
		if b.timer != nil {
			probe = b.timer.C()
		}
		var t clock.Timer
		if len(b.waiters) > 0 {
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
			b.mu.Lock()
			b.timer = nil
			b.mu.Unlock()
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

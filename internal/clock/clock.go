// Package clock lets every interval and timeout in dispatch be driven by an
// injected clock, so tests can cross exact boundaries (2h vs 2h+1s) without
// sleeping.
package clock

import (
	"context"
	"sync"
	"time"
)

// Clock is the small slice of the time package dispatch uses.
type Clock interface {
	Now() time.Time
	// NewTimer returns a timer that fires once after d.
	NewTimer(d time.Duration) Timer
}

// Timer is a one-shot timer; C fires once. Stop reports whether it stopped
// the timer before it fired.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
}

// Sleep waits d on c, or until ctx ends; it reports whether the whole
// wait passed (false: ctx ended first).
func Sleep(ctx context.Context, c Clock, d time.Duration) bool {
	t := c.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	}
}

// Real is the wall clock.
type Real struct{}

func (Real) Now() time.Time { return time.Now() }

func (Real) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time { return r.t.C }
func (r realTimer) Stop() bool          { return r.t.Stop() }

// Fake is a manually advanced clock for tests. Timers fire (in deadline
// order) when Advance moves the clock past their deadline.
type Fake struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
	armed  chan struct{} // closed (and replaced) whenever a timer is armed
}

// NewFake returns a fake clock set to start.
func NewFake(start time.Time) *Fake { return &Fake{now: start} }

func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *Fake) NewTimer(d time.Duration) Timer {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := &fakeTimer{f: f, when: f.now.Add(d), c: make(chan time.Time, 1)}
	if d <= 0 {
		t.fired = true
		t.c <- f.now
		return t
	}
	f.timers = append(f.timers, t)
	if f.armed != nil {
		close(f.armed)
		f.armed = nil
	}
	return t
}

// Advance moves the clock forward by d, firing every timer that falls due.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	now := f.now
	var keep []*fakeTimer
	for _, t := range f.timers {
		if !t.when.After(now) {
			t.fired = true
			select {
			case t.c <- now:
			default:
			}
		} else {
			keep = append(keep, t)
		}
	}
	f.timers = keep
	f.mu.Unlock()
}

// Set moves the clock to t (which must not be earlier than Now).
func (f *Fake) Set(t time.Time) { f.Advance(t.Sub(f.Now())) }

// Next returns the earliest deadline of the timers waiting to fire; ok is
// false when none is. A test can step the clock from deadline to deadline,
// letting the code react to each timer before the next one fires.
func (f *Fake) Next() (when time.Time, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.nextLocked()
}

func (f *Fake) nextLocked() (when time.Time, ok bool) {
	for _, t := range f.timers {
		if !ok || t.when.Before(when) {
			when, ok = t.when, true
		}
	}
	return when, ok
}

// Pending reports how many timers are waiting to fire.
func (f *Fake) Pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.timers)
}

// BlockUntil waits until at least n timers are waiting to fire, or ctx
// ends. A test uses it to let the code arm the timer it is on its way to,
// then moves the clock to exactly that deadline (Set(Next())) instead of
// advancing time while the code may not be waiting yet.
func (f *Fake) BlockUntil(ctx context.Context, n int) error {
	return f.waitArmed(ctx, func() bool { return len(f.timers) >= n })
}

// WaitNext waits until a timer due no later than Now()+within is waiting to
// fire, and returns the earliest deadline of the timers waiting; or ctx's
// error. Timers further off (a check loop's, say) do not count.
func (f *Fake) WaitNext(ctx context.Context, within time.Duration) (time.Time, error) {
	var when time.Time
	err := f.waitArmed(ctx, func() bool {
		var ok bool
		when, ok = f.nextLocked()
		return ok && !when.After(f.now.Add(within))
	})
	return when, err
}

// waitArmed waits until cond, called with f.mu held, holds; it is looked at
// again each time a timer is armed.
func (f *Fake) waitArmed(ctx context.Context, cond func() bool) error {
	for {
		f.mu.Lock()
		if cond() {
			f.mu.Unlock()
			return nil
		}
		if f.armed == nil {
			f.armed = make(chan struct{})
		}
		armed := f.armed
		f.mu.Unlock()
		select {
		case <-armed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

type fakeTimer struct {
	f     *Fake
	when  time.Time
	c     chan time.Time
	fired bool
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	if t.fired {
		return false
	}
	for i, x := range t.f.timers {
		if x == t {
			t.f.timers = append(t.f.timers[:i], t.f.timers[i+1:]...)
			break
		}
	}
	t.fired = true
	return true
}

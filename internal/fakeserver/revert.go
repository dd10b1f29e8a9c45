package fakeserver

import "time"

// Revert is the pending switch back of a fake's SetModeFor, with the
// generation of mode changes that lets a switch back lose to a newer
// switch. It has no lock of its own: the fake guards it with the mutex of
// its mode.
type Revert struct {
	gen   uint64 // bumped on every mode change
	timer *time.Timer
}

// Change starts a new generation of the mode, stopping a pending switch
// back. With onlyIfGen non-zero it changes nothing and returns false if
// the generation is no longer onlyIfGen: the mode changed meanwhile.
func (r *Revert) Change(onlyIfGen uint64) bool {
	if onlyIfGen != 0 && r.gen != onlyIfGen {
		return false
	}
	r.Stop()
	r.gen++
	return true
}

// After calls back with the current generation after d; with d <= 0 it
// does nothing. back should switch the mode with that generation as
// onlyIfGen.
func (r *Revert) After(d time.Duration, back func(gen uint64)) {
	if d <= 0 {
		return
	}
	gen := r.gen
	r.timer = time.AfterFunc(d, func() { back(gen) })
}

// Stop stops a pending switch back.
func (r *Revert) Stop() {
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
}

package events

import "sync"

// Mark is a feed's visible mark — the largest seq a reader may be given —
// with its waiters. Both stores keep one; it only moves up.
type Mark struct {
	mu      sync.Mutex
	visible int64
	changed chan struct{} // closed (and replaced) when visible moves up
}

// Init sets the mark at start.
func (m *Mark) Init(visible int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.visible = visible
	m.changed = make(chan struct{})
}

// Advance moves the mark up to seq (never down) and wakes the waiters.
func (m *Mark) Advance(seq int64) {
	if seq <= 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if seq <= m.visible {
		return
	}
	m.visible = seq
	close(m.changed)
	m.changed = make(chan struct{})
}

// State returns the mark and a channel closed when it next moves up. Take
// the channel before reading, then wait on it: a new event cannot slip
// between the read and the wait.
func (m *Mark) State() (int64, <-chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.visible, m.changed
}

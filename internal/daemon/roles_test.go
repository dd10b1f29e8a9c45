package daemon

import (
	"log/slog"
	"sync"
	"testing"
	"time"
)

// work counts a role's starts and stops and can hold a stop up.
type work struct {
	mu            sync.Mutex
	starts, stops int
	running       bool
	both          bool // started while running: two at once
	hold          chan struct{}
	stopping      chan struct{} // told when a stop begins, if set
}

func (w *work) start() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.running {
		w.both = true
	}
	w.starts++
	w.running = true
}

func (w *work) stop() {
	if w.stopping != nil {
		w.stopping <- struct{}{}
	}
	if w.hold != nil {
		<-w.hold
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stops++
	w.running = false
}

func (w *work) state() (starts, stops int, running, both bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.starts, w.stops, w.running, w.both
}

// A role's switches never block the caller (the node's loop), never run
// the work twice at once, and end in the state last asked for; close
// stops it for good.
func TestRolesSwitch(t *testing.T) {
	r := newRoles(slog.New(slog.DiscardHandler))
	w := &work{hold: make(chan struct{}), stopping: make(chan struct{}, 1)}
	r.add("channel:tg", w.start, w.stop)
	r.set("unknown", true) // ignored

	r.set("channel:tg", true)
	waitRole(t, func() bool { s, _, on, _ := w.state(); return s == 1 && on })

	// A stop held up by a send in flight: the caller goes on at once, and
	// what it asks meanwhile is applied after, in its latest form.
	done := make(chan struct{})
	go func() {
		r.set("channel:tg", false)
		<-w.stopping
		r.set("channel:tg", true)
		r.set("channel:tg", false)
		r.set("channel:tg", true)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("set blocked behind a slow stop")
	}
	close(w.hold)
	waitRole(t, func() bool { s, p, on, _ := w.state(); t.Log(s, p, on); return s == 2 && p == 1 && on })

	r.closeAll()
	starts, stops, on, both := w.state()
	if on || stops != 2 || starts != 2 || both {
		t.Fatalf("after close: starts %d stops %d running %v twice-at-once %v; want 2 2 false false", starts, stops, on, both)
	}
	r.set("channel:tg", true) // after close: never again
	time.Sleep(50 * time.Millisecond)
	if s, _, on, _ := w.state(); on || s != 2 {
		t.Fatal("a closed role started again")
	}
}

// On one machine every role runs from the start.
func TestRolesHoldAll(t *testing.T) {
	r := newRoles(slog.New(slog.DiscardHandler))
	a, b := &work{}, &work{}
	r.add("webhooks", a.start, a.stop)
	r.add("channel:tg", b.start, b.stop)
	r.holdAll()
	waitRole(t, func() bool { _, _, x, _ := a.state(); _, _, y, _ := b.state(); return x && y })
	r.close() // no channels configured: nothing stops
	if _, _, x, _ := a.state(); !x {
		t.Fatal("close of no role stopped one")
	}
	r.close("channel:tg")
	if _, _, on, _ := b.state(); on {
		t.Fatal("channel:tg runs after its close")
	}
	if _, _, on, _ := a.state(); !on {
		t.Fatal("closing one role stopped another")
	}
	r.closeAll()
	if _, _, on, _ := a.state(); on {
		t.Fatal("webhooks run after close")
	}
}

func waitRole(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

package session

import (
	"context"
	"sync"
	"time"

	"github.com/dispatchd/dispatch/internal/agent"
	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/events"
)

// Asking a person and reporting progress, as a session wraps them around
// its agent: while the agent waits for a person the turn's stuck and
// max-turn clocks stop (Rules.Verdict reads Snapshot.Asking and
// Snapshot.Waited), and the tool calls the agent starts become progress
// events, dropped when the turn ends.

// ProgressStore keeps a running turn's progress events.
type ProgressStore interface {
	// AppendProgress writes one progress event.
	AppendProgress(ctx context.Context, ev events.Event) error
	// DropProgress removes chat's progress events (its turn ended).
	DropProgress(ctx context.Context, chat string) (int, error)
}

// waits tracks the person-waits of a session's agent. Safe for concurrent
// use: the agent asks from its own goroutines.
type waits struct {
	clk clock.Clock

	mu     sync.Mutex
	open   int
	since  time.Time     // when the wait in progress began (open > 0)
	waited time.Duration // closed waits since reset
	last   time.Time     // when the last wait ended
}

func (w *waits) begin() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.open == 0 {
		w.since = w.clk.Now()
	}
	w.open++
}

func (w *waits) end() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.open == 0 {
		return
	}
	w.open--
	if w.open == 0 {
		now := w.clk.Now()
		w.waited += now.Sub(w.since)
		w.last = now
	}
}

// reset starts a turn's count afresh.
func (w *waits) reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.waited, w.last = 0, time.Time{}
	if w.open > 0 {
		w.since = w.clk.Now()
	}
}

// read returns whether a wait is in progress, the closed waits' total
// and when the last one ended.
func (w *waits) read() (asking bool, waited time.Duration, last time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.open > 0, w.waited, w.last
}

// asker wraps the chat's asker (nil: none) so that its waits are counted.
func (w *waits) asker(inner agent.Asker) agent.Asker {
	if inner == nil {
		return nil
	}
	return agent.AskerFunc(func(ctx context.Context, q agent.PermissionRequest) (agent.PermissionAnswer, error) {
		w.begin()
		defer w.end()
		return inner.Ask(ctx, q)
	})
}

// maxProgressQueue bounds the progress events waiting to be written: past
// it a report is dropped (progress is commentary, never the chat's data).
const maxProgressQueue = 256

// progressQueue writes a session's progress events, in order, from one
// goroutine at a time that runs only while there is something to write.
type progressQueue struct {
	st   ProgressStore
	chat string
	clk  clock.Clock
	log  func(msg string, err error)

	mu      sync.Mutex
	items   []events.Event // Type "" stands for "drop the chat's progress"
	running bool
	dirty   bool // progress was reported since the last drop

	idle sync.Cond
}

func newProgressQueue(st ProgressStore, chat string, clk clock.Clock, log func(string, error)) *progressQueue {
	q := &progressQueue{st: st, chat: chat, clk: clk, log: log}
	q.idle.L = &q.mu
	return q
}

// report queues a progress event for a tool call; it never blocks.
func (q *progressQueue) report(p agent.Progress) {
	q.push(events.NewProgress(q.clk.Now(), q.chat, "", p.Tool, p.Summary), false)
}

// turnEnded queues the removal of the chat's progress events, after those
// already queued (a turn that reported none costs no write).
func (q *progressQueue) turnEnded() { q.push(events.Event{}, true) }

func (q *progressQueue) push(ev events.Event, drop bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if drop {
		if !q.dirty {
			return
		}
		q.dirty = false
	} else {
		if len(q.items) >= maxProgressQueue {
			return
		}
		q.dirty = true
	}
	q.items = append(q.items, ev)
	if !q.running {
		q.running = true
		go q.run()
	}
}

func (q *progressQueue) run() {
	for {
		q.mu.Lock()
		if len(q.items) == 0 {
			q.running = false
			q.idle.Broadcast()
			q.mu.Unlock()
			return
		}
		ev := q.items[0]
		q.items = q.items[1:]
		q.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if ev.Type == "" {
			if _, err := q.st.DropProgress(ctx, q.chat); err != nil {
				q.log("drop progress events", err)
			}
		} else if err := q.st.AppendProgress(ctx, ev); err != nil {
			q.log("progress event", err) // commentary only: the turn goes on
		}
		cancel()
	}
}

// wait returns once nothing is queued or being written (at once for a
// nil queue: progress not kept). The session's loop waits for it before it
// ends, so the writer never outlives its session.
func (q *progressQueue) wait() {
	if q == nil {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.running {
		q.idle.Wait()
	}
}

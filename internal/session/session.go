// Package session runs one chat's agent: it starts and stops the agent
// process, hands it the chat's waiting messages in order, records every
// outcome durably, and restarts the agent under the restart policy.
//
// Each Session is an actor: a single goroutine owns its state and reacts to
// commands, process exits, turn results and timers. Readers see a published
// Snapshot, so a health check or a status call never waits on a session.
//
// Files by role: session.go is the Session's public face (New, Notify,
// Snapshot and the commands, each sent to the actor); actor.go the actor
// loop and its durable writes; turn.go a turn from hand-over to recorded
// outcome; agentproc.go starting, stopping and restarting the agent;
// livecap.go the live slot and memory; reset.go a conversation that starts
// over; rules.go every rule, as pure functions; deps.go what sessions share.
package session

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/dispatchd/dispatch/internal/agent"
	"github.com/dispatchd/dispatch/internal/lifecycle"
	"github.com/dispatchd/dispatch/internal/store"
)

// State is a session's externally visible state (dispatch status).
type State string

const (
	Starting State = "starting"
	Idle     State = "idle"
	Busy     State = "busy"
	Stopped  State = "stopped"
	Failed   State = "failed"
	// Paused: an operator holds the chat's messages (Pause); they are
	// accepted and kept, and nothing is handed to the agent until Resume.
	Paused State = "paused"
)

// StopReason says why a stopped session has no agent.
type StopReason string

const (
	StopIdle   StopReason = "idle"   // reaped after the idle timeout
	StopKilled StopReason = "killed" // an operator killed the agent
)

// Snapshot is a session's state at one moment, for health checks and status.
type Snapshot struct {
	ChatID         string
	State          State
	ProcUp         bool
	Busy           bool
	Held           bool // waiting for the API gate
	RestartPending bool
	// Backoff: the next hand-over waits out a backoff after a failure
	// charged to the chat (it is scheduled).
	Backoff    bool
	ErrorCount int
	Turns      int64
	Restarts   int64 // automatic restarts since the daemon started
	SessionID  string
	ExemptFlag bool
	FailReason string
	StopReason StopReason // why a stopped session has no agent
	// StoreError is the last failed store write while the session retries
	// it ("" when the store is fine): the session is waiting on its disk.
	StoreError string
	// StoreFull: that write failed for lack of space (store.ErrNoSpace).
	StoreFull    bool
	Pid          int
	FirstTurn    bool   // the turn in flight is the process's first
	Gen          uint64 // counts agent starts; a verdict is about one generation
	CreatedAt    time.Time
	LastActivity time.Time
	LastHandover time.Time
	TurnStarted  time.Time
	LastOutput   time.Time
	// Asking: the turn's agent waits for a person to answer a permission
	// request; Waited is how long the turn waited for people in waits
	// that ended, the last at LastAnswer. The turn's clocks do not run
	// while it waits.
	Asking     bool
	Waited     time.Duration
	LastAnswer time.Time
}

// Causes for cancelling a turn in flight: they decide whether the turn's
// messages are charged an attempt.
var (
	errStuck    = errors.New("turn stuck: no output past the stuck timeout")
	errStopped  = errors.New("session stopped")
	errShutdown = errors.New("daemon shutting down")
)

// Session is one chat's agent session.
type Session struct {
	chat string
	d    *Deps
	log  *slog.Logger

	cmds   chan func(*actor)
	wake   chan struct{}
	turnCh chan turnResult
	done   chan struct{}
	// quit is closed when the daemon shuts down: a store write being
	// retried gives up then (what it concerned is recovered at startup).
	quit     chan struct{}
	quitOnce sync.Once

	mu   sync.Mutex
	pub  Snapshot
	proc agent.Process

	waits    waits          // the agent's waits for a person
	progress *progressQueue // nil: progress is not kept
}

// New creates the session for chat from its stored record (zero for a new
// chat) and starts its actor. The agent is started lazily, by Notify, or at
// once when start is true (a session that was live before a restart).
func New(d *Deps, rec store.SessionRecord, start bool) *Session {
	now := d.Clock.Now()
	s := &Session{
		chat:   rec.ChatID,
		d:      d,
		log:    d.Log(rec.ChatID),
		cmds:   make(chan func(*actor), 8),
		wake:   make(chan struct{}, 1),
		turnCh: make(chan turnResult, 1),
		done:   make(chan struct{}),
		quit:   make(chan struct{}),
	}
	s.waits.clk = d.Clock
	if d.Progress != nil {
		s.progress = newProgressQueue(d.Progress, rec.ChatID, d.Clock, func(msg string, err error) {
			s.log.Warn(msg+" not written (progress is not kept)", "err", err)
		})
	}
	a := &actor{
		s:            s,
		state:        Stopped,
		sessionID:    rec.SessionID,
		exempt:       rec.Exempt,
		turns:        rec.Turns,
		createdAt:    rec.CreatedAt,
		lastActivity: rec.LastActivity,
	}
	if a.createdAt.IsZero() {
		a.createdAt = now
	}
	if a.lastActivity.IsZero() {
		a.lastActivity = now
	}
	if rec.Failed {
		a.state = Failed
		a.failReason = rec.FailReason
	}
	if rec.Paused {
		a.paused = true
		if a.state == Stopped {
			a.state = Paused
		}
	}
	s.publish(a)
	go s.loop(a, start && !rec.Failed && !rec.Paused)
	return s
}

// ChatID is the session's chat.
func (s *Session) ChatID() string { return s.chat }

// Notify tells the session that messages may be waiting. It never blocks.
func (s *Session) Notify() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Snapshot returns the session's published state, with the agent's latest
// output time read at this moment.
func (s *Session) Snapshot() Snapshot {
	s.mu.Lock()
	snap, proc := s.pub, s.proc
	s.mu.Unlock()
	if proc != nil {
		snap.LastOutput = proc.LastOutput()
	}
	if snap.Busy {
		snap.Asking, snap.Waited, snap.LastAnswer = s.waits.read()
	}
	return snap
}

// Restart asks for an automatic restart for reason, a health verdict on the
// agent generation gen (Snapshot.Gen). It never blocks: the restart happens
// in the session's own goroutine. A verdict on an agent that has since been
// replaced is stale and ignored, as is a request while a restart is pending.
func (s *Session) Restart(v Verdict, gen uint64) bool {
	return s.send(func(a *actor) {
		if gen != a.gen {
			return
		}
		a.autoRestart(v.Cause, v.Reason)
	})
}

// Reap stops an idle session to free its agent, if it is still reapable
// when the session gets to it.
func (s *Session) Reap(ok func(Snapshot) bool) bool {
	return s.send(func(a *actor) {
		if ok(s.Snapshot()) {
			a.stop(lifecycle.Reap, lifecycle.Idle, "idle timeout", errStopped)
		}
	})
}

// Kill stops the session's agent and keeps its session_id (operator): for
// a wedged or misbehaving agent. A turn in flight goes back in line
// uncharged, and waiting messages go to a new agent right away; with
// nothing waiting the session stays stopped.
func (s *Session) Kill(ctx context.Context) error {
	return s.call(ctx, func(a *actor) {
		a.stop(lifecycle.Stop, lifecycle.Operator, "operator kill", errStopped)
		if a.state == Stopped {
			a.stopReason = StopKilled
		}
		a.pump()
	})
}

// Pause holds the chat (operator): messages are still accepted and kept,
// but none is handed to the agent until Resume. A turn in flight finishes;
// then the agent is stopped (its session_id kept) so a held chat holds no
// memory. The hold is saved and outlives a restart of the daemon.
func (s *Session) Pause(ctx context.Context) error {
	return s.call(ctx, func(a *actor) {
		if a.paused {
			return
		}
		a.paused = true
		a.save()
		a.emit(lifecycle.Pause, lifecycle.Operator, "operator pause")
		a.pump()
	})
}

// Resume lifts an operator's hold: the waiting messages go to the agent in
// order.
func (s *Session) Resume(ctx context.Context) error {
	return s.call(ctx, func(a *actor) {
		if !a.paused {
			return
		}
		a.paused = false
		if a.state == Paused {
			a.state = Stopped
		}
		a.save()
		a.emit(lifecycle.Resume, lifecycle.Operator, "operator resume")
		a.pump()
	})
}

// OperatorRestart restarts the session now (clean: without resume) and
// clears the failed state and restart history.
func (s *Session) OperatorRestart(ctx context.Context, clean bool) error {
	return s.call(ctx, func(a *actor) { a.operatorRestart(clean) })
}

// StopTurn stops the turn in flight for the chat's person: its messages
// are answered HaltedReply and not retried; the conversation goes on.
// false: no turn was running.
func (s *Session) StopTurn(ctx context.Context) (bool, error) {
	var stopped bool
	err := s.call(ctx, func(a *actor) { stopped = a.stopTurn() })
	return stopped, err
}

// SetExempt sets or clears the run-time idle exemption.
func (s *Session) SetExempt(ctx context.Context, on bool) error {
	return s.call(ctx, func(a *actor) {
		a.exempt = on
		a.save()
	})
}

// Shutdown lets a turn in flight finish until ctx is done, then stops the
// agent and ends the actor. The session stays marked live in the store so
// the next daemon resumes it.
func (s *Session) Shutdown(ctx context.Context) {
	s.quitOnce.Do(func() { close(s.quit) })
	select {
	case s.cmds <- func(a *actor) { a.shutdown(ctx) }:
	case <-s.done:
		return
	}
	<-s.done
}

// Done is closed when the session's actor has ended.
func (s *Session) Done() <-chan struct{} { return s.done }

func (s *Session) send(f func(*actor)) bool {
	select {
	case s.cmds <- f:
		return true
	default:
		return false
	}
}

// call runs f in the actor and waits for it.
func (s *Session) call(ctx context.Context, f func(*actor)) error {
	ran := make(chan struct{})
	select {
	case s.cmds <- func(a *actor) { defer close(ran); f(a) }:
	case <-s.done:
		return errors.New("session is shut down")
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ran:
		return nil
	case <-s.done:
		return errors.New("session is shut down")
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Session) publish(a *actor) {
	snap := Snapshot{
		ChatID:         s.chat,
		State:          a.state,
		ProcUp:         a.proc != nil,
		Busy:           a.turn != nil,
		Held:           a.held,
		RestartPending: a.restartTimer != nil,
		Backoff:        a.retryTimer != nil,
		ErrorCount:     a.errorCount,
		Gen:            a.gen,
		Turns:          a.turns,
		Restarts:       a.restarts,
		SessionID:      a.sessionID,
		ExemptFlag:     a.exempt,
		FailReason:     a.failReason,
		StopReason:     a.stopReason,
		StoreError:     a.storeErr,
		StoreFull:      a.storeFull,
		CreatedAt:      a.createdAt,
		LastActivity:   a.lastActivity,
		LastHandover:   a.lastHandover,
	}
	if a.proc != nil {
		snap.Pid = a.proc.Pid()
	}
	if a.turn != nil {
		snap.TurnStarted = a.turn.started
		snap.FirstTurn = a.turn.first
	}
	s.mu.Lock()
	s.pub = snap
	s.proc = a.proc
	s.mu.Unlock()
}

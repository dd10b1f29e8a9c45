// The actor: one goroutine per session (loop) owns the actor state and
// reacts to commands, process exits, turn results and timers; persist runs
// a store write until it succeeds.

package session

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/dispatchd/dispatch/internal/agent"
	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/lifecycle"
	"github.com/dispatchd/dispatch/internal/store"
)

// loop is the actor. Every state change happens here.
func (s *Session) loop(a *actor, start bool) {
	defer close(s.done)
	// The agent is stopped by then, so nothing reports progress any more;
	// what it reported is written before the session is done.
	defer s.progress.wait()
	if start {
		s.guard(a, func() { a.startProc(); a.pump() })
		s.publish(a)
	}
	for !a.exited {
		var procDone <-chan struct{}
		if a.proc != nil {
			procDone = a.proc.Done()
		}
		var timer, retry <-chan time.Time
		if a.restartTimer != nil {
			timer = a.restartTimer.C()
		}
		if a.retryTimer != nil {
			retry = a.retryTimer.C()
		}
		select {
		case <-s.wake:
			s.guard(a, a.pump)
		case f := <-s.cmds:
			s.guard(a, func() { f(a) })
		case <-procDone:
			s.guard(a, func() { a.onExit(); a.pump() })
		case r := <-s.turnCh:
			s.guard(a, func() {
				if r.err != nil {
					a.more = true // its messages are back in line (or dead)
				}
				a.act(a.onTurn(r))
				if a.more {
					a.pump()
				}
			})
		case <-timer:
			a.restartTimer = nil
			s.guard(a, func() { a.startProc(); a.pump() })
		case <-retry:
			a.retryTimer = nil
			s.guard(a, a.pump)
		}
		s.guard(a, a.afterEvent)
		s.publish(a)
		a.announceIdle()
	}
}

// guard runs f, turning a panic into a logged, counted event and a restart:
// a panic in one session never touches another.
func (s *Session) guard(a *actor, f func()) {
	defer func() {
		if r := recover(); r != nil {
			reason := fmt.Sprintf("panic: %v", r)
			s.log.Error("session panic", "panic", r, "stack", string(debug.Stack()))
			a.emit(lifecycle.Panic, lifecycle.Panicked, reason)
			if !a.exited && a.state != Failed && a.state != Stopped {
				a.scheduleRestart(lifecycle.Panicked, "panic")
			}
		}
	}()
	f()
}

// actor is the state owned by the session's goroutine.
type actor struct {
	s *Session

	state      State
	proc       agent.Process
	procFirst  bool // the process has not finished a turn yet
	procResume bool // the process was started with --resume
	// more is set when messages may be waiting behind the turn in flight
	// (a wake during the turn, a full batch, a failed turn): only then does
	// the end of a turn look for the next one, saving an empty claim.
	more         bool
	gen          uint64
	turn         *turnState
	held         bool
	sessionID    string
	exempt       bool
	errorCount   int
	turns        int64
	restarts     int64
	history      []time.Time
	restartTimer clock.Timer
	// retryTimer: the next hand-over waits out a backoff after a failure
	// charged to the chat.
	retryTimer clock.Timer
	// daemonTries counts agent starts in a row that failed for want of
	// the daemon's own resources (retried with backoff, never counted
	// against the session).
	daemonTries int
	// noOutput holds the messages of the last turn whose process ended
	// after taking it but before writing anything: the same messages
	// ending so again are charged.
	noOutput map[string]bool
	// outageAt is when this chat's last failure was put down to an
	// outage; an answer elsewhere since then proves the API up.
	outageAt     time.Time
	failReason   string
	stopReason   StopReason
	paused       bool
	storeErr     string // the store write being retried failed with this
	storeFull    bool   // … for lack of space
	authLogged   bool
	createdAt    time.Time
	lastActivity time.Time
	lastHandover time.Time
	draining     bool
	exited       bool
	capState     // live slot and memory (livecap.go)
	// carry: the conversation started over; its first turn carries the
	// chat's earlier exchanges (see reset.go).
	carry bool
}

func (a *actor) now() time.Time { return a.s.d.Clock.Now() }

// emit reports a lifecycle event of the session's and returns it.
func (a *actor) emit(kind lifecycle.Kind, cause lifecycle.Cause, detail string) lifecycle.Event {
	ev := lifecycle.Event{Kind: kind, Cause: cause, Chat: a.s.chat, Detail: detail}
	a.s.d.Observer.Event(ev)
	return ev
}

// record is the session's durable form.
func (a *actor) record() store.SessionRecord {
	return store.SessionRecord{
		ChatID:       a.s.chat,
		SessionID:    a.sessionID,
		Exempt:       a.exempt,
		Live:         a.proc != nil || a.restartTimer != nil || a.state == Starting,
		Failed:       a.state == Failed,
		Paused:       a.paused,
		FailReason:   a.failReason,
		Turns:        a.turns,
		Restarts:     a.restarts,
		CreatedAt:    a.createdAt,
		LastActivity: a.lastActivity,
	}
}

func (a *actor) save() {
	a.saveRecord(a.record())
}

func (a *actor) saveRecord(rec store.SessionRecord) {
	a.persist("save session", func(ctx context.Context) error { return a.s.d.Store.SaveSession(ctx, rec) })
}

// persist runs a store operation until it succeeds. A failure (a full disk,
// an I/O error, a wedged writer) is never just logged: the session reports
// it (StoreError, health reason store_error) and tries again with growing
// delay, holding everything else back meanwhile, so no later message
// overtakes the ones the operation concerns. It gives up (false) only when
// the daemon shuts down; whatever the operation concerned is then recovered
// at the next start (in-flight messages go back in line).
func (a *actor) persist(what string, op func(ctx context.Context) error) bool {
	for try := 0; ; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), storeOpTimeout)
		err := op(ctx)
		cancel()
		if err == nil {
			if a.storeErr != "" {
				a.s.log.Info("store write succeeded again", "op", what, "tries", try+1)
				a.storeErr, a.storeFull = "", false
				a.s.publish(a)
			}
			return true
		}
		delay := StoreRetryDelay(try)
		if a.storeErr == "" {
			a.s.log.Error("store write failed: retrying until it succeeds", "op", what, "err", err)
			a.emit(lifecycle.StoreError, lifecycle.Store, fmt.Sprintf("%s: %v", what, err))
		} else {
			a.s.log.Debug("store write failed again", "op", what, "err", err, "retry_in", delay)
		}
		a.storeErr = fmt.Sprintf("%s: %v", what, err)
		a.storeFull = errors.Is(err, store.ErrNoSpace)
		a.s.publish(a)
		t := a.s.d.Clock.NewTimer(delay)
		select {
		case <-t.C():
		case <-a.s.quit:
			t.Stop()
			a.s.log.Warn("store write abandoned at shutdown; recovered at the next start", "op", what, "err", err)
			return false
		}
	}
}

// storeOpTimeout bounds one try of a store operation.
const storeOpTimeout = 30 * time.Second

// Package session runs one chat's agent: it starts and stops the agent
// process, hands it the chat's waiting messages in order, records every
// outcome durably, and restarts the agent under the restart policy.
//
// Each Session is an actor: a single goroutine owns its state and reacts to
// commands, process exits, turn results and timers. Readers see a published
// Snapshot, so a health check or a status call never waits on a session.
package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/dispatchd/dispatch/internal/agent"
	"github.com/dispatchd/dispatch/internal/clock"
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
	StoreError   string
	Pid          int
	FirstTurn    bool   // the turn in flight is the process's first
	Gen          uint64 // counts agent starts; a verdict is about one generation
	CreatedAt    time.Time
	LastActivity time.Time
	LastHandover time.Time
	TurnStarted  time.Time
	LastOutput   time.Time
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

// loop is the actor. Every state change happens here.
func (s *Session) loop(a *actor, start bool) {
	defer close(s.done)
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

type turnState struct {
	msgs    []store.Message
	more    bool // the claim left messages waiting behind this batch
	cancel  context.CancelCauseFunc
	ctx     context.Context
	started time.Time
	first   bool
	// progress: the agent wrote something of its own for this turn
	// before it was cancelled as stuck (read at the cancellation).
	progress bool
}

type turnResult struct {
	res agent.Result
	err error
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
				a.storeErr = ""
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

// startProc starts the agent, resuming the saved conversation when there is
// one. A start failure is handled like an exit: restart under the policy.
func (a *actor) startProc() {
	if a.proc != nil || a.state == Failed || a.exited {
		return
	}
	if a.paused {
		a.state = Paused // held by an operator: no agent until Resume
		return
	}
	if !a.takeSlot() {
		return // at the live cap: woken when a slot is set aside for it
	}
	a.stopReason = ""
	resume := a.sessionID != ""
	if !resume {
		a.sessionID = a.s.d.NewID() // a new conversation: it holds no kept message
	}
	a.state = Starting
	a.s.publish(a)
	spec := agent.Spec{ChatID: a.s.chat, SessionID: a.sessionID, Resume: resume, Log: a.s.log, Env: a.s.d.Env}
	proc, err := a.s.d.Agent.Start(context.Background(), spec)
	if err != nil {
		d := Decide(TurnEnd{Ending: EndStartFailed, DaemonError: DaemonResourceError(err)})
		if d.Follow == RetryStart {
			// Not the session's fault: no restart budget is spent.
			a.daemonTries++
			delay := a.s.d.Rules.RetryDelay(a.daemonTries)
			a.s.log.Error("agent start failed for want of the daemon's own resources; retrying", "err", err, "retry_in", delay)
			a.emit(lifecycle.DaemonError, lifecycle.Resources, fmt.Sprintf("agent start: %v (retry in %s)", err, delay))
			a.state = Starting
			a.restartTimer = a.s.d.Clock.NewTimer(delay)
			return
		}
		a.s.log.Error("agent start failed", "err", err)
		a.emit(lifecycle.Failure, lifecycle.StartFail, "start failed: "+err.Error())
		a.scheduleRestart(lifecycle.StartFail, "start failed")
		return
	}
	a.daemonTries = 0
	a.proc = proc
	a.gen++
	a.procFirst = true
	a.procResume = resume
	a.state = Idle
	a.errorCount = 0
	a.s.publish(a) // its pid is owned from now on (the orphan check reads it)
	a.save()
	how := "new session " + a.sessionID
	if resume {
		how = "resume " + a.sessionID
	}
	a.emit(lifecycle.Start, lifecycle.NoCause, how)
}

// pump hands waiting messages to the agent when the session can take them.
func (a *actor) pump() {
	if a.turn != nil {
		a.more = true // woken during the turn: look again when it ends
		return
	}
	a.more = false
	if a.state == Failed || a.restartTimer != nil || a.retryTimer != nil || a.draining || a.exited {
		return
	}
	if a.paused {
		// An operator holds the chat: nothing is handed over, and an idle
		// agent is stopped (its conversation kept) until Resume.
		if a.proc != nil {
			a.stopProc(errStopped)
			a.save()
		}
		a.state = Paused
		return
	}
	d := a.s.d
	if a.proc != nil {
		select {
		case <-a.proc.Done():
			return // it died: onExit restarts it; nothing goes to a dead process
		default:
		}
	}
	if a.proc == nil {
		// Start an agent only for real work: a stopped session woken with
		// nothing waiting stays stopped.
		var waiting bool
		if !a.persist("check pending", func(ctx context.Context) (err error) {
			waiting, err = d.Store.HasPending(ctx, a.s.chat)
			return err
		}) || !waiting {
			a.noWork()
			return
		}
		a.startProc()
		if a.proc == nil {
			return
		}
	}
	if d.Gate != nil && !d.Gate.Admit(a.s.chat, a.s.Notify) {
		a.held = true
		return
	}
	a.held = false
	var (
		msgs []store.Message
		more bool
	)
	ok := a.persist("claim messages", func(ctx context.Context) (err error) {
		msgs, more, err = d.Store.Claim(ctx, a.s.chat, d.MaxBatch)
		return err
	})
	if !ok || len(msgs) == 0 {
		if d.Gate != nil {
			d.Gate.Done(a.s.chat, Released)
		}
		return
	}
	texts := make([]string, 0, len(msgs))
	for _, m := range msgs {
		if m.KeptIn != a.sessionID {
			texts = append(texts, m.Text)
		}
	}
	if len(texts) == 0 {
		// Everything is already in the conversation from a turn the API
		// failed; the agent merges it into this request.
		texts = append(texts, RetryNote)
	}
	texts = a.withCarryOver(texts)
	now := a.now()
	ctx, cancel := context.WithCancelCause(context.Background())
	a.turn = &turnState{msgs: msgs, more: more, cancel: cancel, ctx: ctx, started: now, first: a.procFirst}
	a.state = Busy
	a.lastActivity, a.lastHandover = now, now
	proc, ch := a.proc, a.s.turnCh
	a.s.log.Debug("turn start", "messages", len(msgs), "first_id", msgs[0].ID)
	go func() {
		var r turnResult
		defer func() {
			// A panicking driver fails the turn, not the daemon.
			if v := recover(); v != nil {
				a.s.log.Error("agent turn panic", "panic", v, "stack", string(debug.Stack()))
				r = turnResult{err: agent.Errorf(agent.Fault, "agent panic: %v", v)}
			}
			ch <- r
		}()
		r.res, r.err = proc.Turn(ctx, texts)
	}()
}

// onTurn records a finished turn's outcome as the fault model decides it
// (Decide) and returns the follow-up. It only records; the caller acts on
// the follow-up, so that a turn that finishes while the session is
// stopping never starts a new agent.
func (a *actor) onTurn(r turnResult) FollowUp {
	t := a.turn
	a.turn = nil
	if t == nil {
		return CarryOn
	}
	defer t.cancel(nil) // release the turn's context (its cause is read below)
	d := a.s.d
	now := a.now()
	a.lastActivity = now
	if a.state == Busy {
		a.state = Idle
	}
	if t.more {
		a.more = true // the claim left messages behind this batch
	}
	ids := make([]string, len(t.msgs))
	for i, m := range t.msgs {
		ids[i] = m.ID
	}
	dur := now.Sub(t.started)
	d.Observer.Turn(a.s.chat, dur, len(t.msgs), r.err)
	end := a.turnEnd(t, r)
	if end.Ending == EndAnswered {
		// The agent answered, even if the turn was being cancelled.
		a.gateDone(Answered)
		a.errorCount = 0
		a.history = nil // a successful turn proves the session healthy
		a.noOutput, a.outageAt = nil, time.Time{}
		a.turns++
		a.procFirst = false
		// one write: the messages are done and the session saved
		rec := a.record()
		a.persist("complete turn", func(ctx context.Context) error {
			return d.Store.CompleteTurn(ctx, ids, r.res.Text, rec)
		})
		a.s.log.Debug("turn done", "messages", len(ids), "duration", dur)
		return CarryOn
	}
	why := "turn failed"
	if r.err != nil {
		why = r.err.Error()
	}
	switch end.Ending {
	case EndStuck, EndStopped:
		why = context.Cause(t.ctx).Error()
	case EndSilent:
		why = "turn silent: no output from the agent past the stuck timeout"
	}
	if c := context.Cause(t.ctx); errors.Is(c, errMemory) {
		why = c.Error()
	}
	if end.Ending == EndExited && end.Delivery == NoOutput {
		// The same messages ending the agent before it says anything
		// again are charged; the others go back uncharged.
		var again, fresh []string
		for _, id := range ids {
			if a.noOutput[id] {
				again = append(again, id)
			} else {
				fresh = append(fresh, id)
			}
		}
		a.noOutput = make(map[string]bool, len(ids))
		for _, id := range ids {
			a.noOutput[id] = true
		}
		end.Repeat = len(again) > 0
		dec := Decide(end)
		a.logDecision(end, dec, why)
		a.gateDone(dec.Breaker)
		a.applyMessages(dec, again, why)
		end.Repeat = false
		a.applyMessages(Decide(end), fresh, why)
		return dec.Follow
	}
	dec := Decide(end)
	a.logDecision(end, dec, why)
	if end.Error == agent.Auth && !a.authLogged {
		// Rejected credentials: the operator has to act; told once.
		a.authLogged = true
		a.s.log.Error("the AI API rejected the agent's credentials", "err", r.err)
		a.emit(lifecycle.Failure, lifecycle.Auth, why)
	}
	a.gateDone(dec.Breaker)
	a.applyMessages(dec, ids, why)
	if dec.Party == BlameAPI {
		a.outageAt = now
	}
	if dec.Errors == ErrorsGrow {
		a.errorCount++
		if a.errorCount >= d.Rules.MaxErrors && dec.Follow == CarryOn {
			return restartErr
		}
	}
	if dec.Backoff && dec.Follow == CarryOn {
		delay := d.Rules.RetryDelay(a.errorCount)
		a.s.log.Info("backing off after a failed turn", "retry_in", delay, "error_count", a.errorCount)
		a.retryTimer = d.Clock.NewTimer(delay)
	}
	return dec.Follow
}

// restartErr is the follow-up of a session whose error_count reached
// max_errors: a restart under the policy.
const restartErr FollowUp = -1

// turnEnd describes how a turn ended, for Decide.
func (a *actor) turnEnd(t *turnState, r turnResult) TurnEnd {
	e := TurnEnd{ResumeStart: a.procResume && a.procFirst, Answered: !a.procFirst}
	if r.err == nil {
		e.Ending = EndAnswered
		return e
	}
	if cause := context.Cause(t.ctx); cause != nil {
		switch {
		case errors.Is(cause, errMemory):
			// Killed for holding more than twice its memory limit: the
			// turn fails like a crash after the agent took it.
			e.Ending, e.Delivery = EndExited, Output
		case errors.Is(cause, errStuck) && t.progress:
			e.Ending = EndStuck
		case errors.Is(cause, errStuck):
			e.Ending = EndSilent
			e.OthersAnswered = a.othersAnswered(t)
		default:
			e.Ending = EndStopped
		}
		return e
	}
	kind := agent.KindOf(r.err)
	switch kind {
	case agent.Exited:
		e.Ending, e.Delivery = EndExited, Output
	case agent.ExitedSilent:
		e.Ending, e.Delivery = EndExited, NoOutput
	case agent.Undelivered:
		e.Ending = EndUndelivered
	case agent.ResumeFailed:
		e.Ending, e.Error = EndExited, agent.ResumeFailed
		if !e.ResumeStart {
			// Not from a --resume start before its first turn: whatever
			// the words, the turn's own error.
			e.Ending, e.Error = EndErrorResult, agent.Fault
		}
	default:
		e.Ending, e.Error = EndErrorResult, kind
		if kind == agent.Outage {
			e.OthersAnswered = a.othersAnswered(t)
		}
	}
	return e
}

// othersAnswered reports whether the API answered another chat (or a
// probe) since the turn started or since this chat's last failure that was
// put down to an outage, whichever is earlier.
func (a *actor) othersAnswered(t *turnState) bool {
	g := a.s.d.Gate
	if g == nil {
		return false
	}
	since := t.started
	if !a.outageAt.IsZero() && a.outageAt.Before(since) {
		since = a.outageAt
	}
	return g.AnsweredElsewhere(a.s.chat, since)
}

func (a *actor) logDecision(e TurnEnd, d Decision, why string) {
	a.s.log.Warn("turn failed", "ending", e.Ending.String(), "kind", e.Error.String(), "blame", d.Party.String(),
		"messages", d.Messages.String(), "follow_up", d.Follow.String(), "err", why)
}

// applyMessages carries out a decision's fate for ids (never FateDone:
// a success is recorded with the session in one write).
func (a *actor) applyMessages(d Decision, ids []string, why string) {
	if len(ids) == 0 {
		return
	}
	switch d.Messages {
	case FateRequeue:
		a.requeue(ids, why)
	case FateHold:
		a.hold(ids, why)
	case FateCharge:
		a.fail(ids, why)
	}
}

// act carries out a turn's follow-up.
func (a *actor) act(f FollowUp) {
	switch f {
	case restartErr:
		a.retryTimer = stopTimer(a.retryTimer)
		a.autoRestart(lifecycle.Errors, fmt.Sprintf("errors=%d", a.errorCount))
	case Restart:
		// The process still runs (its input was closed, say); a process
		// that ended is restarted by onExit.
		if a.proc != nil {
			a.autoRestart(lifecycle.Broken, "agent broken: a turn could not be delivered")
		}
	case StartFresh:
		a.freshStart("no conversation to resume")
	case RestartClean:
		ev := a.emit(lifecycle.Restart, lifecycle.Context, "context too long: restarting clean")
		a.stopProc(errStopped)
		a.sessionID = ""
		a.reset(ev)
		a.startProc()
	}
}

func stopTimer(t clock.Timer) clock.Timer {
	if t != nil {
		t.Stop()
	}
	return nil
}

// RetryNote is the text sent in place of messages that an agent already
// holds from a turn the API failed (see agent.FailedTurnKeeper).
const RetryNote = "(The AI service was unavailable a moment ago. Please answer the message above.)"

// hold puts the messages of a turn the API failed back in line. An agent
// that keeps such turns in its conversation (agent.FailedTurnKeeper) now
// holds them: the store records in which conversation, so the retry sends
// only RetryNote for them — also after a restart of the daemon.
func (a *actor) hold(ids []string, why string) {
	kept := ""
	if k, ok := a.s.d.Agent.(agent.FailedTurnKeeper); ok && k.KeepsFailedTurns() {
		kept = a.sessionID
	}
	a.persist("requeue messages", func(ctx context.Context) error {
		return a.s.d.Store.RequeueKept(ctx, ids, why, kept)
	})
}

func (a *actor) gateDone(o Outcome) {
	if a.s.d.Gate != nil {
		a.s.d.Gate.Done(a.s.chat, o)
	}
}

func (a *actor) requeue(ids []string, why string) {
	a.persist("requeue messages", func(ctx context.Context) error {
		return a.s.d.Store.Requeue(ctx, ids, why)
	})
}

// fail charges the messages one failed attempt; those past the limit are
// dead letters, logged one by one.
func (a *actor) fail(ids []string, why string) {
	var dead []string
	a.persist("fail messages", func(ctx context.Context) (err error) {
		dead, err = a.s.d.Store.Fail(ctx, ids, why, a.s.d.MaxAttempts)
		return err
	})
	for _, id := range dead {
		a.emit(lifecycle.DeadLetter, lifecycle.Attempts, fmt.Sprintf("message %s: %s", id, why))
	}
}

// onExit handles the agent process ending on its own: the turn in flight,
// if any, reports the exit; otherwise the exit itself is judged (Decide,
// EndIdleExit).
func (a *actor) onExit() {
	proc := a.proc
	if proc == nil {
		return
	}
	exitErr := proc.ExitErr()
	hadTurn := a.turn != nil
	f := a.finishTurn()
	a.proc = nil
	a.held = false
	_ = proc.Stop(context.Background()) // already reaped: kills leftovers, returns at once
	if !hadTurn {
		e := TurnEnd{Ending: EndIdleExit, ResumeStart: a.procResume && a.procFirst,
			Answered: !a.procFirst, CleanExit: exitErr == nil}
		if exitErr != nil && agent.KindOf(exitErr) == agent.ResumeFailed {
			e.Error = agent.ResumeFailed
		}
		f = Decide(e).Follow
	}
	reason := "dead: agent exited"
	if exitErr != nil {
		reason = "dead: " + exitErr.Error()
	}
	switch f {
	case StartFresh:
		a.freshStart(fmt.Sprint(exitErr))
		return
	case RestartPlain:
		a.s.log.Info("agent exited cleanly after answering; starting it again")
		a.emit(lifecycle.Restart, lifecycle.CleanExit, "agent exited cleanly after answering (not a fault)")
		a.startProc()
		return
	case RestartClean:
		a.sessionID = ""
		a.reset(lifecycle.Event{Kind: lifecycle.Restart, Cause: lifecycle.Context, Chat: a.s.chat})
	}
	a.s.log.Warn("agent exited", "err", exitErr)
	a.scheduleRestart(lifecycle.Dead, reason)
}

// freshStart drops a conversation that cannot be resumed and starts a new
// one; the pending messages are processed by the new agent.
func (a *actor) freshStart(why string) {
	ev := a.emit(lifecycle.ResumeFailed, lifecycle.Resumption, fmt.Sprintf("session %s: %s; starting fresh", a.sessionID, why))
	a.stopProc(errStopped)
	a.sessionID = ""
	a.reset(ev)
	a.startProc()
}

// finishTurn waits for the turn in flight (its process is stopped or gone,
// or its context cancelled) and records its outcome.
func (a *actor) finishTurn() FollowUp {
	if a.turn == nil {
		return CarryOn
	}
	return a.onTurn(<-a.s.turnCh)
}

// stopProc cancels the turn in flight with cause, stops the agent in three
// steps and records the turn's outcome, returning its follow-up.
func (a *actor) stopProc(cause error) FollowUp {
	if a.turn != nil {
		if errors.Is(cause, errStuck) && a.proc != nil {
			a.turn.progress = progressSince(a.proc, a.turn.started)
		}
		a.turn.cancel(cause)
	}
	if a.proc != nil {
		ctx, cancel := context.WithTimeout(context.Background(), a.s.d.StopTimeout)
		if err := a.proc.Stop(ctx); err != nil {
			a.s.log.Error("agent stop", "err", err)
		}
		cancel()
	}
	f := a.finishTurn()
	a.proc = nil
	a.held = false
	return f
}

// progressSince reports whether the agent wrote anything of its own after
// t: more than the acknowledgement of a turn, where the agent can tell
// (agent.ProgressReporter), else any output.
func progressSince(p agent.Process, t time.Time) bool {
	if pr, ok := p.(agent.ProgressReporter); ok {
		return pr.LastProgress().After(t)
	}
	return p.LastOutput().After(t)
}

// stop ends the agent and leaves the session stopped and resumable.
func (a *actor) stop(kind lifecycle.Kind, why lifecycle.Cause, reason string, cause error) {
	if a.restartTimer != nil {
		a.restartTimer.Stop()
		a.restartTimer = nil
	}
	a.retryTimer = stopTimer(a.retryTimer)
	if a.proc == nil && a.state == Stopped {
		return
	}
	a.stopProc(cause)
	switch {
	case a.state == Failed:
	case a.paused:
		a.state = Paused
	default:
		a.state = Stopped
		a.stopReason = StopIdle
	}
	a.save()
	a.emit(kind, why, reason)
}

// autoRestart kills the agent and starts it again under the restart policy.
// A request while a restart is already scheduled is ignored.
func (a *actor) autoRestart(why lifecycle.Cause, reason string) {
	if a.restartTimer != nil || a.state == Failed || a.exited {
		return
	}
	if a.state == Stopped && a.proc == nil {
		return // stopped sessions are healthy; the next message starts them
	}
	cause := errStopped
	if why == lifecycle.Stuck {
		cause = errStuck
	}
	if a.stopProc(cause) == RestartPlain {
		// A silent turn while nobody gets answers: an outage signal, not
		// the session's fault; the breaker now holds the next turn.
		a.emit(lifecycle.Restart, why, reason+": silent turn, API outage suspected (not counted)")
		a.state = Starting
		a.startProc()
		a.pump()
		return
	}
	a.scheduleRestart(why, reason)
}

// scheduleRestart applies the restart intensity limit: the session either
// waits its backoff and starts again, or fails.
func (a *actor) scheduleRestart(why lifecycle.Cause, reason string) {
	r := a.s.d.Rules
	now := a.now()
	a.history = r.trimHistory(a.history, now)
	delay, ok := r.NextRestart(a.history, now)
	if !ok {
		a.state = Failed
		a.failReason = fmt.Sprintf("%d restarts in %s; last: %s", len(a.history), r.RestartWindow, reason)
		a.save()
		a.s.log.Error("session failed: restart limit reached", "reason", a.failReason)
		a.emit(lifecycle.Failure, lifecycle.RestartLimit, a.failReason)
		return
	}
	a.history = append(a.history, now)
	a.restarts++
	a.state = Starting
	a.emit(lifecycle.Restart, why, fmt.Sprintf("%s (delay %s)", reason, delay))
	a.restartTimer = a.s.d.Clock.NewTimer(delay)
	a.save()
}

func (a *actor) operatorRestart(clean bool) {
	if a.restartTimer != nil {
		a.restartTimer.Stop()
		a.restartTimer = nil
	}
	a.retryTimer = stopTimer(a.retryTimer)
	a.daemonTries = 0
	a.stopProc(errStopped)
	a.history = nil
	a.failReason = ""
	a.state = Stopped
	a.stopReason = ""
	if clean {
		a.sessionID = ""
	}
	a.emit(lifecycle.Restart, lifecycle.Operator, fmt.Sprintf("operator restart (clean=%t)", clean))
	a.startProc()
	a.pump()
}

// shutdown waits (until ctx is done) for a turn in flight, then stops the
// agent and ends the actor, leaving the session marked live.
func (a *actor) shutdown(ctx context.Context) {
	a.draining = true
	if a.restartTimer != nil {
		a.restartTimer.Stop()
		a.restartTimer = nil
	}
	a.retryTimer = stopTimer(a.retryTimer)
	if a.turn != nil {
		var procDone <-chan struct{}
		if a.proc != nil {
			procDone = a.proc.Done()
		}
		select {
		case r := <-a.s.turnCh:
			a.onTurn(r)

		case <-procDone:
		case <-ctx.Done():
		}
	}
	live := a.proc != nil || a.state == Starting
	a.stopProc(errShutdown)
	rec := a.record()
	rec.Live = live && a.state != Failed
	a.saveRecord(rec)
	if a.state != Failed {
		a.state = Stopped
	}
	a.exited = true
}

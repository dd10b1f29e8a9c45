// The agent process's lifecycle: start, exit, stop, automatic and operator
// restarts under the restart policy, shutdown.

package session

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dispatchd/dispatch/internal/agent"
	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/lifecycle"
)

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
	if a.s.d.Asker != nil {
		spec.Permissions = a.s.waits.asker(a.s.d.Asker(a.s.chat))
	}
	if q := a.s.progress; q != nil {
		spec.Progress = q.report
	}
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

func stopTimer(t clock.Timer) clock.Timer {
	if t != nil {
		t.Stop()
	}
	return nil
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
	hadTurn, turns := a.turn != nil, a.turns
	f := a.finishTurn()
	// A turn whose answer came before the exit was noticed did not end
	// with the process: the exit is judged as one with no turn in flight
	// (an agent exiting with status 0 after answering is no fault).
	answered := a.turns > turns
	a.proc = nil
	a.held = false
	_ = proc.Stop(context.Background()) // already reaped: kills leftovers, returns at once
	if !hadTurn || answered || f == JudgeExit {
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
		if a.proc != nil {
			if errors.Is(cause, errStuck) {
				a.turn.progress = progressSince(a.proc, a.turn.started)
			}
			a.turn.unread = a.turn.unread || unreadInput(a.proc)
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

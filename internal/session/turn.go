// A turn: pump hands waiting messages to the agent, onTurn records how the
// turn ended as the fault model decides it (Decide in rules.go), act
// carries out the follow-up.

package session

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dispatchd/dispatch/internal/agent"
	"github.com/dispatchd/dispatch/internal/lifecycle"
	"github.com/dispatchd/dispatch/internal/store"
)

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
	// unread: the turn's bytes were still unread in the agent's input
	// when it was cancelled (read at the cancellation): it never reached
	// the agent.
	unread bool
	proc   agent.Process
	// halted: the person stopped the turn (StopTurn).
	halted bool
}

type turnResult struct {
	res agent.Result
	err error
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
	a.turn = &turnState{msgs: msgs, more: more, cancel: cancel, ctx: ctx, started: now, first: a.procFirst, proc: a.proc}
	a.s.waits.reset()
	a.state = Busy
	a.lastActivity, a.lastHandover = now, now
	proc, ch := a.proc, a.s.turnCh
	a.s.log.Debug("turn start", "messages", len(msgs), "first_id", msgs[0].ID)
	for _, m := range msgs {
		// The chat's own log shows what was said (slog quotes and escapes).
		a.s.log.Info("message to agent", "id", m.ID, "text", logText(m.Text))
	}
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
	if q := a.s.progress; q != nil {
		q.turnEnded() // progress is kept only while its turn runs
	}
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
		a.s.log.Info("reply", "message_ids", strings.Join(ids, ","), "text", logText(r.res.Text))
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
	if t.halted {
		// Whatever the agent said of the interruption, or however its
		// stop went: the person stopped it.
		e.Ending = EndHalted
		return e
	}
	if cause := context.Cause(t.ctx); cause != nil {
		switch {
		case t.unread && (errors.Is(cause, errStuck) || errors.Is(cause, errMemory)):
			// Its bytes were still unread when it was given up on: the
			// agent does not read its input (or had not yet), whatever
			// anyone else got from the API.
			e.Ending = EndUndelivered
		case errors.Is(cause, errMemory):
			// Killed for holding more than twice its memory limit: the
			// turn fails like a crash after the agent took it.
			e.Ending, e.Delivery = EndExited, Output
		case errors.Is(cause, errStuck) && t.progress:
			e.Ending = EndStuck
		case errors.Is(cause, errStuck):
			e.Ending = EndSilent
			e.OthersAnswered = a.othersAnswered(t, true)
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
		e.ProcessEnded = ended(t.proc)
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
			e.OthersAnswered = a.othersAnswered(t, false)
		}
	}
	return e
}

// othersAnswered reports whether the API answered another chat (or a
// probe) since the turn's own evidence of failure, or since this chat's
// last failure that was put down to an outage (BlameSince).
func (a *actor) othersAnswered(t *turnState, silent bool) bool {
	g := a.s.d.Gate
	if g == nil {
		return false
	}
	ev := Evidence{Started: t.started, Ended: a.now(), Silent: silent, OutageAt: a.outageAt}
	if rr, ok := t.proc.(agent.RetryReporter); ok {
		ev.FirstRetry = rr.FirstRetry(t.started)
	}
	return g.AnsweredElsewhere(a.s.chat, BlameSince(ev))
}

// ended reports whether p has ended.
func ended(p agent.Process) bool {
	if p == nil {
		return true
	}
	select {
	case <-p.Done():
		return true
	default:
		return false
	}
}

// unreadInput reports whether p's input holds bytes it has not read, where
// the agent can tell (agent.InputReporter).
func unreadInput(p agent.Process) bool {
	ir, ok := p.(agent.InputReporter)
	return ok && ir.UnreadInput() > 0
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
	case FateHalted:
		rec := a.record()
		a.persist("complete stopped turn", func(ctx context.Context) error {
			return a.s.d.Store.CompleteTurn(ctx, ids, HaltedReply, rec)
		})
		a.s.log.Info("turn stopped by its person", "message_ids", strings.Join(ids, ","))
	}
}

// HaltedReply answers the messages of a turn its person stopped.
const HaltedReply = "Stopped."

// errHalted is the cause of a turn whose agent was stopped because its
// person stopped the turn.
var errHalted = errors.New("turn stopped by its person")

// stopTurn stops the turn in flight for its person; false: none runs.
// An agent that can be interrupted (agent.Interrupter) and has written
// something since the turn began is asked to end the turn and keeps its
// conversation and process; if it does not end the turn within
// StopTimeout, or cannot be interrupted (yet), it is stopped and started
// again with its conversation (not counted as a restart).
// Either way the turn ends as EndHalted.
func (a *actor) stopTurn() bool {
	t := a.turn
	if t == nil {
		return false
	}
	if t.halted {
		return true
	}
	t.halted = true
	// An interrupt that reaches the CLI before it has begun the turn
	// (it writes its init line first) ends nothing, and the turn would
	// run on until the fallback below: then it is stopped at once.
	if in, ok := a.proc.(agent.Interrupter); ok && !ended(a.proc) && a.proc.LastOutput().After(t.started) {
		ctx, cancel := context.WithTimeout(context.Background(), a.s.d.StopTimeout)
		err := in.Interrupt(ctx)
		cancel()
		if err == nil {
			a.s.log.Info("turn interrupted for its person")
			tm := a.s.d.Clock.NewTimer(a.s.d.StopTimeout)
			go func() {
				defer tm.Stop()
				select {
				case <-t.ctx.Done(): // the turn ended
				case <-tm.C():
					a.s.send(func(a *actor) {
						if a.turn == t {
							a.haltByStop()
						}
					})
				}
			}()
			return true
		}
		a.s.log.Warn("interrupting the turn failed; stopping the agent", "err", err)
	}
	a.haltByStop()
	return true
}

// haltByStop ends a halted turn by stopping its agent, and starts the
// agent again with its conversation.
func (a *actor) haltByStop() {
	a.stopProc(errHalted)
	a.emit(lifecycle.Restart, lifecycle.Operator, "turn stopped by its person: agent restarted with its conversation")
	if a.state == Busy {
		a.state = Idle
	}
	a.startProc()
	a.pump()
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

// logText is a text as a session log shows it: up to 4 KiB, then how long
// it was (queue show has it whole).
func logText(s string) string {
	const max = 4 << 10
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + fmt.Sprintf("… (%d bytes in all)", len(s))
}

package session

import (
	"context"
	"errors"
	"fmt"

	"github.com/dispatchd/dispatch/internal/lifecycle"
)

// Waiting: the session must start an agent but the cap on live agents is
// reached and no live session could be hibernated; it starts, in the order
// of its oldest waiting message, as soon as a slot frees.
const Waiting State = "waiting"

// StopHibernated: the agent was stopped to free a live slot for another
// chat; the next message resumes the conversation.
const StopHibernated StopReason = "hibernated"

// errMemory cancels a turn whose agent is killed for holding more than
// twice its memory limit: the turn fails like a crash and its messages are
// charged an attempt, so a message that makes every agent balloon still
// ends as a dead letter.
var errMemory = errors.New("agent killed: over twice its memory limit")

// capState is what the actor keeps about its live slot and its memory.
type capState struct {
	// slot: the session has asked for a live slot (holds it or waits in
	// line) and not given it back.
	slot bool
	// memGen is the agent generation to restart for its memory once it is
	// not in a turn (0: none); memReason says why.
	memGen    uint64
	memReason string
}

// Hibernate stops an idle session's agent to free its slot for a chat
// waiting at the live cap — exactly like idle reaping: the session_id is
// kept and the next message resumes the conversation. It acts only if ok
// still holds for the session's snapshot when the session gets to it, no
// turn is in flight and nothing waits; done (never nil) is told whether it
// did. It never blocks.
func (s *Session) Hibernate(ok func(Snapshot) bool, done func(bool)) {
	if !s.send(func(a *actor) { done(a.hibernate(ok)) }) {
		done(false)
	}
}

func (a *actor) hibernate(ok func(Snapshot) bool) bool {
	if a.proc == nil || a.turn != nil || a.more || a.restartTimer != nil || !ok(a.s.Snapshot()) {
		return false
	}
	var waiting bool
	if !a.persist("check pending", func(ctx context.Context) (err error) {
		waiting, err = a.s.d.Store.HasPending(ctx, a.s.chat)
		return err
	}) || waiting {
		a.pump()
		return false
	}
	a.stop(lifecycle.Hibernate, lifecycle.LiveCap, "live cap: slot given to a waiting chat", errStopped)
	if a.state == Stopped {
		a.stopReason = StopHibernated
	}
	return true
}

// Memory acts on a sample of the agent's resident memory: rss bytes for
// agent generation gen, judged act by Rules.Memory. Over the limit the
// agent is restarted with resume as soon as it is not in a turn; over twice
// the limit it is killed at once, even mid-turn. It never blocks; a sample
// of an agent that has since been replaced is ignored.
func (s *Session) Memory(rss uint64, act MemoryAction, gen uint64) bool {
	return s.send(func(a *actor) {
		if gen != a.gen || a.proc == nil || act == MemoryOK {
			return
		}
		limit := a.s.d.Rules.MaxAgentRSS
		reason := fmt.Sprintf("memory: agent holds %s, over the %s limit", Bytes(rss), Bytes(limit))
		if act == MemoryKill {
			reason = fmt.Sprintf("memory: agent holds %s, over twice the %s limit: killed", Bytes(rss), Bytes(limit))
		}
		if act == MemoryKill {
			a.s.log.Warn("agent over twice its memory limit: killing it", "rss_bytes", rss, "limit_bytes", limit,
				"in_turn", a.turn != nil)
			a.memoryKill(reason)
			return
		}
		if a.memGen != gen {
			a.s.log.Warn("agent over its memory limit: restarting it once it is not in a turn", "rss_bytes", rss,
				"limit_bytes", limit, "in_turn", a.turn != nil)
		}
		a.memGen, a.memReason = gen, reason
		a.memoryRestartWhenIdle()
	})
}

// memoryRestartWhenIdle restarts an agent marked for its memory once it is
// not in a turn.
func (a *actor) memoryRestartWhenIdle() {
	if a.memGen == 0 {
		return
	}
	if a.memGen != a.gen || a.proc == nil {
		a.memGen, a.memReason = 0, "" // replaced or stopped meanwhile
		return
	}
	if a.turn != nil || a.restartTimer != nil || a.state == Failed || a.exited {
		return
	}
	reason := a.memReason
	a.memGen, a.memReason = 0, ""
	a.stopProc(errStopped)
	a.scheduleRestart(lifecycle.Memory, reason)
}

// memoryKill kills the agent's whole process group at once and restarts it
// under the restart policy; a turn in flight fails with errMemory.
func (a *actor) memoryKill(reason string) {
	if a.restartTimer != nil || a.state == Failed || a.exited || a.proc == nil {
		return
	}
	a.memGen, a.memReason = 0, ""
	if a.turn != nil {
		a.turn.unread = unreadInput(a.proc)
		a.turn.cancel(errMemory)
	}
	proc := a.proc
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = proc.Stop(ctx) // with a done context the stop goes straight to SIGKILL
	t := a.s.d.Clock.NewTimer(a.s.d.StopTimeout)
	select {
	case <-proc.Done():
	case <-t.C():
	}
	t.Stop()
	a.stopProc(errMemory)
	a.scheduleRestart(lifecycle.Memory, reason)
}

// takeSlot asks for a live slot before an agent starts. At the cap the
// session waits (state waiting): the slot allocator wakes it once a slot
// is set aside for it.
func (a *actor) takeSlot() bool {
	sl := a.s.d.Slots
	if sl == nil {
		return true
	}
	a.slot = true
	if sl.Acquire(a.s.chat, a.s.Notify) {
		return true
	}
	// With nothing waiting (a session that was live before the daemon
	// restarted) there is no need to wait for a slot: stay hibernated.
	var waiting bool
	if a.persist("check pending", func(ctx context.Context) (err error) {
		waiting, err = a.s.d.Store.HasPending(ctx, a.s.chat)
		return err
	}) && !waiting {
		a.slot = false
		sl.Release(a.s.chat)
		if a.state != Failed && a.state != Paused {
			a.state, a.stopReason = Stopped, StopHibernated
		}
		return false
	}
	if a.state != Waiting {
		a.s.log.Info("live cap reached: waiting for a slot")
		a.emit(lifecycle.Wait, lifecycle.LiveCap, "live cap reached: waiting for a slot")
	}
	a.state = Waiting
	return false
}

// noWork is called when a session without an agent finds nothing waiting:
// a session that waited for a slot no longer needs one.
func (a *actor) noWork() {
	if a.state == Waiting {
		a.state = Stopped
	}
}

// afterEvent runs after every event the actor handles: an agent marked
// for its memory is restarted once it is out of its turn, and a slot the
// session no longer needs (its agent stopped for good: reaped, hibernated,
// killed, paused, failed, shut down) is given back.
func (a *actor) afterEvent() {
	a.memoryRestartWhenIdle()
	if a.slot && a.s.d.Slots != nil {
		need := a.proc != nil || a.restartTimer != nil || a.state == Starting || a.state == Waiting
		if !need || a.exited {
			a.slot = false
			a.s.d.Slots.Release(a.s.chat)
		}
	}
}

// announceIdle tells the slot allocator, after the state is published, that
// this session's agent is up with nothing in flight.
func (a *actor) announceIdle() {
	if a.s.d.Slots != nil && a.proc != nil && a.turn == nil && a.state == Idle {
		a.s.d.Slots.Idle(a.s.chat)
	}
}

// Bytes renders a byte count for people: "1.9 GiB", "312 MiB".
func Bytes(n uint64) string {
	const k = 1024
	switch {
	case n >= k*k*k:
		return fmt.Sprintf("%.1f GiB", float64(n)/(k*k*k))
	case n >= k*k:
		return fmt.Sprintf("%.0f MiB", float64(n)/(k*k))
	case n >= k:
		return fmt.Sprintf("%.0f KiB", float64(n)/k)
	}
	return fmt.Sprintf("%d B", n)
}

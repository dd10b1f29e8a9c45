package session

import (
	"cmp"
	"fmt"
	"strings"
	"time"
)

// Rules are the health, idle and restart limits of SPEC 2.1–2.3, taken from
// config. Every rule about when a session is unhealthy, reapable or allowed
// to restart lives in this file.
type Rules struct {
	MaxErrors             int
	StuckTimeout          time.Duration
	FirstTurnStuckTimeout time.Duration
	IdleTimeout           time.Duration
	Master                string
	ExemptSuffix          string

	MaxRestarts    int
	RestartWindow  time.Duration
	BackoffInitial time.Duration
	BackoffMax     time.Duration

	// MaxAgentRSS is the most resident memory (bytes) one agent's process
	// group may hold; 0 means no limit.
	MaxAgentRSS uint64
}

// Health reasons (SPEC 2.2). Unhealthy reasons for errors are "errors=N"
// and for failed sessions "failed: <why>".
const (
	ReasonOK         = "ok"
	ReasonDead       = "dead"
	ReasonStuck      = "stuck"
	ReasonStaleQueue = "stale_queue"
	ReasonStopped    = "stopped"
	ReasonStarting   = "starting"
	ReasonPaused     = "paused"
	ReasonStoreError = "store_error"
	// ReasonLiveCap: the session waits for a live slot (the cap on agent
	// processes is reached and no live session could be hibernated).
	ReasonLiveCap = "live_cap"
)

// Queue is what the store knows about one chat's waiting messages.
type Queue struct {
	Depth  int       // pending messages
	Oldest time.Time // when the oldest pending message was accepted
}

// Verdict is the health of one session at one moment.
type Verdict struct {
	Healthy bool
	Reason  string
	// Restart: the health check should restart the session. Not every
	// unhealthy session is restarted: a failed one waits for an operator,
	// and one whose store writes fail waits for its disk.
	Restart bool
}

// Verdict judges s at now. apiDown suppresses stale_queue: while the API
// breaker holds turns, a waiting queue is expected, not a fault.
func (r Rules) Verdict(s Snapshot, q Queue, now time.Time, apiDown bool) Verdict {
	switch {
	case s.State == Failed:
		return Verdict{false, "failed: " + s.FailReason, false}
	case s.StoreError != "":
		// Restarting cannot help: the session retries its write.
		return Verdict{false, ReasonStoreError, false}
	case s.State == Paused:
		return Verdict{true, ReasonPaused, false}
	case s.State == Stopped:
		return Verdict{true, ReasonStopped, false}
	case s.State == Waiting:
		// Held on purpose: it starts as soon as a slot frees.
		return Verdict{true, ReasonLiveCap, false}
	}
	if !s.ProcUp {
		if s.State == Starting && !s.RestartPending {
			// The agent is being started right now.
			return Verdict{true, ReasonStarting, false}
		}
		// Also while a restart waits out its backoff: the session is down.
		return Verdict{false, ReasonDead, true}
	}
	if s.ErrorCount >= r.MaxErrors {
		return Verdict{false, fmt.Sprintf("errors=%d", s.ErrorCount), true}
	}
	if s.Busy {
		limit := r.StuckTimeout
		if s.FirstTurn {
			limit = r.FirstTurnStuckTimeout
		}
		quiet := s.TurnStarted
		if s.LastOutput.After(quiet) {
			quiet = s.LastOutput
		}
		if now.Sub(quiet) > limit {
			return Verdict{false, ReasonStuck, true}
		}
		return Verdict{true, ReasonOK, false}
	}
	if q.Depth > 0 && !apiDown && !s.Held {
		since := s.LastHandover
		if q.Oldest.After(since) {
			since = q.Oldest
		}
		if now.Sub(since) > r.StuckTimeout {
			return Verdict{false, ReasonStaleQueue, true}
		}
	}
	return Verdict{true, ReasonOK, false}
}

// StrandGrace is how long messages may wait at an idle session before the
// health check counts them as stranded: a message accepted a moment ago
// may simply not have reached its session yet.
const StrandGrace = 5 * time.Second

// Stranded reports whether a session has messages waiting with nothing
// scheduled to hand them over: no turn in flight, no start or restart
// pending, not held on purpose (failed, paused, an API outage, a store
// write being retried), for longer than StrandGrace. That must never
// happen; the health check hands such messages over and logs that it had
// to.
func (r Rules) Stranded(s Snapshot, q Queue, now time.Time, apiDown bool) bool {
	if q.Depth == 0 || apiDown || s.Busy || s.Held || s.RestartPending || s.StoreError != "" {
		return false
	}
	if s.State != Idle && s.State != Stopped {
		return false
	}
	since := s.LastHandover
	if q.Oldest.After(since) {
		since = q.Oldest
	}
	return now.Sub(since) > StrandGrace
}

// StoreRetryDelay is how long a session waits before trying a failed
// store write again for the try-th time (from 0): 250 ms, doubling, at
// most 10 s, so a disk that frees up is noticed within seconds.
func StoreRetryDelay(try int) time.Duration {
	d := 250 * time.Millisecond
	for i := 0; i < try && d < 10*time.Second; i++ {
		d *= 2
	}
	return min(d, 10*time.Second)
}

// Exempt reports whether a chat is never idle-reaped: the master session,
// chats ending in the exempt suffix, and chats flagged at run time.
func (r Rules) Exempt(chat string, flagged bool) bool {
	return flagged || chat == r.Master || (r.ExemptSuffix != "" && strings.HasSuffix(chat, r.ExemptSuffix))
}

// Reapable reports whether a live session has been idle for more than the
// idle timeout and may be stopped (SPEC 2.3). Busy sessions and sessions
// with waiting messages are never reaped.
func (r Rules) Reapable(s Snapshot, q Queue, now time.Time) bool {
	if !s.ProcUp || s.State == Stopped || s.State == Failed || s.State == Starting || s.State == Paused {
		return false
	}
	if s.Busy || q.Depth > 0 || r.Exempt(s.ChatID, s.ExemptFlag) {
		return false
	}
	return now.Sub(s.LastActivity) > r.IdleTimeout
}

// NextRestart applies the restart intensity limit to a session's recent
// automatic restarts: ok is false once MaxRestarts restarts fall within the
// window (the session is then failed). The first restart in a window is
// immediate; each further one waits twice as long as the one before, from
// BackoffInitial up to BackoffMax.
func (r Rules) NextRestart(history []time.Time, now time.Time) (delay time.Duration, ok bool) {
	recent := 0
	for _, t := range history {
		if now.Sub(t) < r.RestartWindow {
			recent++
		}
	}
	if recent >= r.MaxRestarts {
		return 0, false
	}
	if recent == 0 {
		return 0, true
	}
	delay = r.BackoffInitial
	for i := 1; i < recent && delay < r.BackoffMax; i++ {
		delay *= 2
	}
	return min(delay, r.BackoffMax), true
}

// trimHistory drops restarts that fell out of the window.
func (r Rules) trimHistory(history []time.Time, now time.Time) []time.Time {
	out := history[:0]
	for _, t := range history {
		if now.Sub(t) < r.RestartWindow {
			out = append(out, t)
		}
	}
	return out
}

// Hibernatable reports whether a live session may be hibernated to free its
// agent's slot for a session that must start at the live cap: its agent is
// up and idle — no turn in flight, nothing waiting, not held by the API
// gate, no restart pending, no store write being retried — and the chat is
// not exempt (the master session, the exempt suffix, a run-time flag).
// Hibernation stops the agent exactly like idle reaping; the next message
// resumes the conversation.
func (r Rules) Hibernatable(s Snapshot, q Queue) bool {
	if !s.ProcUp || s.State != Idle || s.Busy || s.Held || s.RestartPending || s.StoreError != "" {
		return false
	}
	if q.Depth > 0 {
		return false
	}
	return !r.Exempt(s.ChatID, s.ExemptFlag)
}

// HibernateFirst orders hibernation candidates, for slices.SortFunc: the
// least recently active first, ties broken by chat id so that the choice
// is deterministic.
func HibernateFirst(a, b Snapshot) int {
	if c := a.LastActivity.Compare(b.LastActivity); c != 0 {
		return c
	}
	return cmp.Compare(a.ChatID, b.ChatID)
}

// Waiter is a session waiting for a live slot.
type Waiter struct {
	Chat string
	// Oldest is when its oldest waiting message was accepted (zero when
	// unknown: it then goes after every waiter that knows).
	Oldest time.Time
	// Since is when it began to wait.
	Since time.Time
}

// StartsBefore orders the sessions waiting for a live slot, for
// slices.SortFunc: the one whose oldest waiting message is oldest starts
// first; then the one that has waited longest; then by chat id.
func StartsBefore(a, b Waiter) int {
	switch {
	case a.Oldest.IsZero() && !b.Oldest.IsZero():
		return 1
	case !a.Oldest.IsZero() && b.Oldest.IsZero():
		return -1
	}
	if c := a.Oldest.Compare(b.Oldest); c != 0 {
		return c
	}
	if c := a.Since.Compare(b.Since); c != 0 {
		return c
	}
	return cmp.Compare(a.Chat, b.Chat)
}

// MemoryAction is what an agent's sampled memory calls for.
type MemoryAction int

const (
	// MemoryOK: within the limit (or no limit).
	MemoryOK MemoryAction = iota
	// MemoryRestart: over the limit: restart it with resume as soon as it
	// is not in a turn.
	MemoryRestart
	// MemoryKill: over twice the limit: kill it at once, even mid-turn; the
	// turn fails like a crash.
	MemoryKill
)

func (m MemoryAction) String() string {
	switch m {
	case MemoryRestart:
		return "restart"
	case MemoryKill:
		return "kill"
	}
	return "ok"
}

// Memory judges an agent's resident memory (its whole process group)
// against MaxAgentRSS.
func (r Rules) Memory(rss uint64) MemoryAction {
	switch {
	case r.MaxAgentRSS == 0 || rss <= r.MaxAgentRSS:
		return MemoryOK
	case rss > 2*r.MaxAgentRSS:
		return MemoryKill
	}
	return MemoryRestart
}

package session

import (
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

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
}

// Verdict judges s at now. apiDown suppresses stale_queue: while the API
// breaker holds turns, a waiting queue is expected, not a fault.
func (r Rules) Verdict(s Snapshot, q Queue, now time.Time, apiDown bool) Verdict {
	switch s.State {
	case Failed:
		return Verdict{false, "failed: " + s.FailReason}
	case Stopped:
		return Verdict{true, ReasonStopped}
	}
	if !s.ProcUp {
		if s.State == Starting && !s.RestartPending {
			// The agent is being started right now.
			return Verdict{true, ReasonStarting}
		}
		// Also while a restart waits out its backoff: the session is down.
		return Verdict{false, ReasonDead}
	}
	if s.ErrorCount >= r.MaxErrors {
		return Verdict{false, fmt.Sprintf("errors=%d", s.ErrorCount)}
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
			return Verdict{false, ReasonStuck}
		}
		return Verdict{true, ReasonOK}
	}
	if q.Depth > 0 && !apiDown && !s.Held {
		since := s.LastHandover
		if q.Oldest.After(since) {
			since = q.Oldest
		}
		if now.Sub(since) > r.StuckTimeout {
			return Verdict{false, ReasonStaleQueue}
		}
	}
	return Verdict{true, ReasonOK}
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
	if !s.ProcUp || s.State == Stopped || s.State == Failed || s.State == Starting {
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

package session

import (
	"context"
	"log/slog"
	"time"

	"github.com/dispatchd/dispatch/internal/agent"
	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/lifecycle"
	"github.com/dispatchd/dispatch/internal/store"
)

// Store is the part of the durable store a session uses.
type Store interface {
	HasPending(ctx context.Context, chatID string) (bool, error)
	// Claim also reports whether messages wait behind the batch it took.
	Claim(ctx context.Context, chatID string, max int) (batch []store.Message, more bool, err error)
	CompleteTurn(ctx context.Context, ids []string, reply string, rec store.SessionRecord) error
	Requeue(ctx context.Context, ids []string, errText string) error
	RequeueKept(ctx context.Context, ids []string, errText, keptIn string) error
	Fail(ctx context.Context, ids []string, errText string, maxAttempts int) (dead []string, err error)
	SaveSession(ctx context.Context, rec store.SessionRecord) error
}

// Outcome is what a gated turn came to, as the gate needs to know it.
type Outcome int

const (
	// Released: the admission was not used (nothing to send, or stopped).
	Released Outcome = iota
	// Answered: the API answered (success, or a failure that is not an outage).
	Answered
	// Unreachable: the turn failed as an outage.
	Unreachable
)

// Gate admits turns. The API breaker implements it: while the API is down it
// admits only a probe, and after recovery it bounds how many turns run at
// once. A session that is not admitted is woken through wake when it may
// try again.
type Gate interface {
	Admit(chat string, wake func()) bool
	Done(chat string, o Outcome)
	// AnsweredElsewhere reports whether the API answered a turn of
	// another chat, or a probe, at or after since: then a failure of
	// chat's that looks like an outage is its own.
	AnsweredElsewhere(chat string, since time.Time) bool
}

// Observer receives what a session does, for the lifecycle log and metrics.
type Observer interface {
	// Event is one lifecycle event: a start, stop, restart, reap, failure,
	// resume_failed, dead_letter, panic and the like, with its cause.
	Event(ev lifecycle.Event)
	// Turn is one finished turn: its duration, and its error (nil on success).
	Turn(chat string, d time.Duration, n int, err error)
}

// Deps are what every session shares.
type Deps struct {
	Store    Store
	Agent    agent.Agent
	Clock    clock.Clock
	Gate     Gate // nil admits everything
	Observer Observer
	Rules    Rules
	// MaxAttempts is queue.max_attempts; MaxBatch caps one turn's messages.
	MaxAttempts int
	MaxBatch    int
	// StopTimeout bounds one agent stop (three steps).
	StopTimeout time.Duration
	// Log returns the session's own log.
	Log func(chat string) *slog.Logger
	// Env is added to every agent's environment (owner markers).
	Env map[string]string
	// NewID makes a fresh agent session id.
	NewID func() string
	// Slots is the live cap (nil: no cap).
	Slots Slots
	// History records a conversation that had to start over and provides
	// the earlier exchanges it may carry; nil records nothing.
	History History
	// CarryOver is how many earlier exchanges the first turn of such a
	// conversation carries (sessions.carry_over; 0: none).
	CarryOver int
	// Asker returns the asker for chat's agent (nil: none; the agent
	// refuses every tool call that needs permission).
	Asker func(chat string) agent.Asker
	// Progress, if set, keeps the progress events of running turns.
	Progress ProgressStore
}

// History is what a session needs when its conversation starts over.
type History interface {
	// RecordReset writes the session_reset event.
	RecordReset(ctx context.Context, chat, reason string) error
	// RecentExchanges returns the chat's last n answered turns, oldest
	// first.
	RecentExchanges(ctx context.Context, chat string, n int) ([]store.Exchange, error)
}

// Slots is the live cap: a session asks for a slot before it starts an
// agent and gives it back once its agent is stopped for good (a restart
// keeps it).
type Slots interface {
	// Acquire asks for chat's slot. false: the cap is reached; chat waits
	// in line (state waiting) and wake is called once a slot is set aside
	// for it.
	Acquire(chat string, wake func()) bool
	// Release gives chat's slot back, or takes chat out of the line.
	Release(chat string)
	// Idle tells that chat's agent is up with nothing in flight: if others
	// wait for a slot, it may be hibernated for them.
	Idle(chat string)
}

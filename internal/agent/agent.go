// Package agent defines what dispatch needs from the program behind a
// session, and the classification of a failed turn. Drivers live in
// sub-packages: claude (the Claude Code CLI), echo (in-process) and fake
// (tests).
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Agent starts agent processes. One Process serves one live session.
type Agent interface {
	Start(ctx context.Context, spec Spec) (Process, error)
}

// Spec says how to start one session's agent.
type Spec struct {
	ChatID string
	// SessionID is the agent conversation id. With Resume it is resumed
	// (claude: --resume ID); otherwise a new conversation is started with
	// this id (claude: --session-id ID).
	SessionID string
	Resume    bool
	// Log receives the agent's own output (stderr, unknown lines); it is the
	// session's log. Never nil when started by dispatch.
	Log *slog.Logger
	// Ephemeral asks for a throwaway conversation that is not saved (the
	// API-health probe); SessionID and Resume are ignored.
	Ephemeral bool
	// Env adds marker variables (for example the owning state dir) to the
	// agent's environment on top of the configured agent.env.
	Env map[string]string
	// Permissions answers the agent's requests to run a tool, for agents
	// started to ask (claude: agent.permissions ask). Nil refuses every
	// request. It is called from the process's own goroutines while a
	// turn runs.
	Permissions Asker
	// Progress, if set, is called for every tool call the agent starts,
	// in order, from the goroutine reading the agent's output: it must
	// return quickly.
	Progress func(Progress)
}

// Process is one running agent. Turn is called by one goroutine at a time;
// every other method is safe for concurrent use.
type Process interface {
	// Turn sends the texts as one user message and waits for the agent's
	// final result. It returns a *TurnError on failure. If ctx is cancelled
	// the turn is abandoned (the process is left to the caller to stop).
	Turn(ctx context.Context, texts []string) (Result, error)
	// SessionID is the conversation id the agent reported (or was given).
	SessionID() string
	// Done is closed once the process has exited and been reaped.
	Done() <-chan struct{}
	// ExitErr describes how the process ended; valid after Done.
	ExitErr() error
	// LastOutput is when the agent last produced any output (or started).
	LastOutput() time.Time
	// Pid is the process (and process group) id, 0 for in-process agents.
	Pid() int
	// Stop ends the process in three steps: close stdin and wait, SIGTERM
	// the group and wait, SIGKILL the group; it returns once the process has
	// been reaped. Idempotent.
	Stop(ctx context.Context) error
}

// ProgressReporter is implemented by processes that can tell their own
// output from a mere acknowledgement of a turn (the Claude Code CLI prints
// system lines at once, even when the API then hangs): LastProgress is
// when the agent last wrote something of its own. A turn with none is
// silent, which while no other chat gets answers either is an outage
// signal rather than the messages' fault.
type ProgressReporter interface {
	LastProgress() time.Time
}

// RetryReporter is implemented by processes whose agent reports retrying a
// failed API request (the Claude Code CLI prints a system/api_retry line
// for each retry): evidence of when a failing turn began to fail, which
// tells an outage that started mid-turn from a conversation whose requests
// fail while the API answers others.
type RetryReporter interface {
	// FirstRetry is when the agent first reported a retry since the
	// current turn was sent, if at or after since; zero if it did not.
	FirstRetry(since time.Time) time.Time
}

// InputReporter is implemented by processes that can tell how much of what
// was written to the agent's input it has not read yet (a pipe's unread
// bytes): a turn whose bytes are still unread never reached the agent.
type InputReporter interface {
	UnreadInput() int
}

// Interrupter is implemented by processes that can end the turn in
// flight on request and go on with the same conversation (the Claude Code
// CLI's stream-json control_request of subtype "interrupt"): Interrupt
// asks for it and returns once the request is written; the turn then
// ends with an error of the agent's own. Without it, a turn is stopped by
// stopping the process.
type Interrupter interface {
	Interrupt(ctx context.Context) error
}

// FailedTurnKeeper is implemented by agents whose conversation keeps the
// user message of a turn that failed at the API (the Claude Code CLI does,
// and merges it into the next request). For them a retry after an outage
// must not send those texts again, or every probe would add a copy.
type FailedTurnKeeper interface {
	KeepsFailedTurns() bool
}

// Result is a successful turn.
type Result struct {
	Text      string
	SessionID string
	Duration  time.Duration
	// Denials are the tool calls the agent was refused during the turn.
	Denials []Denial
}

// Kind classifies a failed turn where it arises.
type Kind int

const (
	// Fault is the session's own failure: crash, protocol error, an error
	// result. It counts toward error_count and toward the message's attempts.
	Fault Kind = iota
	// Outage is an unreachable or overloaded AI API (connection refused,
	// timeout, 5xx, 529, 429). It counts toward nothing; the message stays
	// pending and the daemon's API breaker opens.
	Outage
	// ContextTooLong is a fault after which the session must restart clean
	// (without resume).
	ContextTooLong
	// ResumeFailed means the saved conversation cannot be resumed ("No
	// conversation found"); the session starts fresh.
	ResumeFailed
	// Auth is a rejected credential (401/403). Restarting cannot fix it, so
	// it is held like an outage (messages pending, breaker open) and logged
	// once per session with a hint for the operator.
	Auth
	// Exited means the process ended during the turn, after it had taken
	// the turn (it answered with at least one line): a crash that counts
	// against the turn's messages.
	Exited
	// Undelivered means the turn provably never reached the agent: the
	// write failed (its input is closed) or the turn's bytes were still
	// unread when it ended. The agent is broken, not the messages, so they
	// go back in line uncharged.
	Undelivered
	// ExitedSilent means the process ended during the turn after it may
	// have read it, but before writing anything for it. Once is the
	// agent's fault; the same messages doing it again are charged.
	ExitedSilent
)

func (k Kind) String() string {
	switch k {
	case Fault:
		return "fault"
	case Outage:
		return "outage"
	case ContextTooLong:
		return "context_too_long"
	case ResumeFailed:
		return "resume_failed"
	case Auth:
		return "auth"
	case Exited:
		return "exited"
	case Undelivered:
		return "undelivered"
	case ExitedSilent:
		return "exited_silent"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// TurnError is a failed turn with its classification.
type TurnError struct {
	Kind   Kind
	Status int // HTTP status reported by the agent, 0 if none
	Msg    string
}

func (e *TurnError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("%s (status %d): %s", e.Kind, e.Status, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Kind, e.Msg)
}

// KindOf returns the classification of err; errors that are not a
// *TurnError are faults.
func KindOf(err error) Kind {
	var te *TurnError
	if errors.As(err, &te) {
		return te.Kind
	}
	return Fault
}

// Errorf builds a *TurnError.
func Errorf(k Kind, format string, args ...any) *TurnError {
	return &TurnError{Kind: k, Msg: fmt.Sprintf(format, args...)}
}

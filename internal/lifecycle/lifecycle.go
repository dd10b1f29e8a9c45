// Package lifecycle defines the typed events of a session's (and the
// daemon's) life: an agent started, stopped, restarted, reaped, hibernated,
// failed; a message gave up; a store write failed. Sessions and the
// supervisor emit Events; the supervisor renders each one once — for the
// lifecycle log, the metrics and, where it has one, the event feed — so no
// code anywhere decides anything by comparing event names or parsing
// reason texts.
//
// An Event has a Kind (what happened), a Cause (why, from a small closed
// set: what metrics count by) and a Detail (the free text people read). A
// Detail can be reworded freely: nothing parses it.
package lifecycle

import (
	"log/slog"

	"github.com/dispatchd/dispatch/internal/events"
)

// Kind is what happened.
type Kind int

// The kinds of lifecycle events. Their names (String) are what the
// lifecycle log writes as event=… and the metric
// dispatch_lifecycle_events_total counts by.
const (
	Start        Kind = iota + 1 // an agent started (new conversation or resumed)
	Stop                         // an operator killed the agent (session kept)
	Restart                      // the agent is restarted (automatic or operator)
	Reap                         // an idle agent was stopped after idle_timeout
	Hibernate                    // an idle agent was stopped to free a live slot
	Wait                         // the session waits for a live slot
	Failure                      // something failed that an operator may have to look at
	ResumeFailed                 // the saved conversation could not be resumed: a new one starts
	DeadLetter                   // a message gave up after max_attempts
	Panic                        // a panic in a session was caught
	Pause                        // an operator paused the chat
	Resume                       // an operator resumed the chat
	StoreError                   // a store write failed; the session retries it
	DaemonError                  // the daemon ran out of a resource of its own
	Retry                        // an operator put a dead message back in line
	Drop                         // an operator dropped a dead message
	StoreLost                    // the database was removed or replaced under the daemon
	OrphanKilled                 // an agent process no session owned was killed
	Adopt                        // this node took the chat's lease (several nodes on PostgreSQL)
	LeaseLost                    // this node lost the chat's lease: its agent was stopped
)

var kindNames = map[Kind]string{
	Start: "start", Stop: "stop", Restart: "restart", Reap: "reap", Hibernate: "hibernate",
	Wait: "wait", Failure: "failure", ResumeFailed: "resume_failed", DeadLetter: "dead_letter",
	Panic: "panic", Pause: "pause", Resume: "resume", StoreError: "store_error",
	DaemonError: "daemon_error", Retry: "retry", Drop: "drop", StoreLost: "store_lost",
	OrphanKilled: "orphan_killed", Adopt: "adopt", LeaseLost: "lease_lost",
}

// Kinds lists every kind, in declaration order.
func Kinds() []Kind {
	out := make([]Kind, 0, len(kindNames))
	for k := Start; k <= LeaseLost; k++ {
		out = append(out, k)
	}
	return out
}

// String is the kind's name in the lifecycle log ("restart").
func (k Kind) String() string {
	if n, ok := kindNames[k]; ok {
		return n
	}
	return "unknown"
}

// Level is the log level of the kind's lines: WARN for what an operator
// may have to look at (a failure, a conversation lost, a dead letter),
// INFO for everything else.
func (k Kind) Level() slog.Level {
	switch k {
	case Failure, ResumeFailed, DeadLetter:
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

// Cause is why an event happened, from a closed set.
type Cause int

// The causes.
const (
	NoCause      Cause = iota
	Dead               // the agent process ended
	Errors             // error_count reached max_errors
	Stuck              // a turn produced no output past the stuck timeout (or ran past max_turn)
	StaleQueue         // messages waited with nothing handed over past the stuck timeout
	Panicked           // a panic in the session
	StartFail          // the agent could not be started
	Context            // the conversation grew too long: restarted clean
	Memory             // the agent held more memory than its limit
	Operator           // an operator asked for it
	Idle               // idle past idle_timeout
	LiveCap            // the cap on live agents (sessions.max_live)
	Broken             // a turn could not be delivered to the running agent
	CleanExit          // the agent exited cleanly after answering (not a fault)
	Resumption         // the saved conversation could not be resumed
	Auth               // the AI API rejected the agent's credentials
	RestartLimit       // max_restarts within the restart window
	Attempts           // a message reached max_attempts
	Store              // a store write failed, or the database was lost
	Resources          // the daemon is out of descriptors, memory or processes
	Orphan             // a leftover agent process
	Lease              // a chat's lease (several nodes on PostgreSQL)
)

var causeNames = map[Cause]string{
	NoCause: "none", Dead: "dead", Errors: "errors", Stuck: "stuck", StaleQueue: "stale_queue",
	Panicked: "panic", StartFail: "start", Context: "context", Memory: "memory", Operator: "operator",
	Idle: "idle", LiveCap: "live_cap", Broken: "broken", CleanExit: "clean_exit", Resumption: "resume",
	Auth: "auth", RestartLimit: "restart_limit", Attempts: "attempts", Store: "store",
	Resources: "resources", Orphan: "orphan", Lease: "lease",
}

// String is the cause's name ("stale_queue").
func (c Cause) String() string {
	if n, ok := causeNames[c]; ok {
		return n
	}
	return "unknown"
}

// restartLabels are the reasons dispatch_restarts_total counts by; every
// other cause counts as "other". The set is part of the metrics contract
// (docs/reference.md), so it does not grow with every new cause.
var restartLabels = map[Cause]bool{
	Dead: true, Errors: true, Stuck: true, StaleQueue: true, Panicked: true,
	StartFail: true, Context: true, Memory: true,
}

// RestartLabel is the reason label of dispatch_restarts_total for a
// restart with this cause.
func (c Cause) RestartLabel() string {
	if restartLabels[c] {
		return c.String()
	}
	return "other"
}

// RestartLabels lists every reason label of dispatch_restarts_total.
func RestartLabels() []string {
	out := []string{}
	for c := NoCause; c <= Orphan; c++ {
		if restartLabels[c] {
			out = append(out, c.String())
		}
	}
	return append(out, "other")
}

// Event is one lifecycle event.
type Event struct {
	Kind  Kind
	Cause Cause
	// Chat is the chat it concerns ("" for the daemon's own events).
	Chat string
	// Detail is the reason people read: free text, never parsed.
	Detail string
}

// Attrs are the event's attributes in the lifecycle log, in its line
// format: event=<kind> chat=<chat> reason=<detail>.
func (e Event) Attrs() []slog.Attr {
	return []slog.Attr{slog.String("event", e.Kind.String()), slog.String("chat", e.Chat), slog.String("reason", e.Detail)}
}

// Feed is the event-feed event a lifecycle event is reported as, if it
// has one: the one place lifecycle events map to the feed (package events).
// The store writes the feed event in the same commit as the change it
// reports (a dead letter with the message's state, session_failed with the
// session record); a session writes session_reset through its History.
func (e Event) Feed() (events.Event, bool) {
	switch {
	case e.Kind == DeadLetter:
		return events.Event{Type: events.DeadLetter, ChatID: e.Chat}, true // the store adds the message and its error
	case e.Kind == Failure && e.Cause == RestartLimit:
		return events.Event{Type: events.SessionFailed, ChatID: e.Chat, Reason: e.Detail}, true
	case e.Kind == ResumeFailed:
		return events.Event{Type: events.SessionReset, ChatID: e.Chat, Reason: events.ResetResumeFailed}, true
	case e.Kind == Restart && e.Cause == Context:
		return events.Event{Type: events.SessionReset, ChatID: e.Chat, Reason: events.ResetContextTooLong}, true
	}
	return events.Event{}, false
}

package session

import (
	"cmp"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/dispatchd/dispatch/internal/agent"
	"github.com/dispatchd/dispatch/internal/lifecycle"
)

// Rules are the health, idle and restart limits, taken from config.
//
// Every rule about a session lives in this file as a pure function, table
// tested in rules_test.go: when a session is healthy, alive, stranded,
// reapable, hibernatable or allowed to restart (Verdict, Alive, Stranded,
// Reapable, StillReapable, RestartNow, NextRestart, Hibernatable), how a
// session another node runs shows in status (Remote), what a turn's end
// means (Decide, docs/faults.md), which answers elsewhere count against a
// failed turn (BlameSince) and whether a probe reached the API
// (ProbeAnswered). The one rule kept beside its only user is the
// store's claim isolation (store.claimable: a message that failed before
// goes alone), because the store cannot import this package.
type Rules struct {
	MaxErrors             int
	StuckTimeout          time.Duration
	FirstTurnStuckTimeout time.Duration
	// MaxTurn bounds a turn's length whatever the agent prints (0: no
	// bound): an agent that keeps writing to stderr is not making progress.
	MaxTurn      time.Duration
	IdleTimeout  time.Duration
	Master       string
	ExemptSuffix string

	MaxRestarts    int
	RestartWindow  time.Duration
	BackoffInitial time.Duration
	BackoffMax     time.Duration

	// MaxAgentRSS is the most resident memory (bytes) one agent's process
	// group may hold; 0 means no limit.
	MaxAgentRSS uint64
}

// Health reasons (docs/faults.md lists them with the outcomes). Unhealthy reasons for errors are "errors=N"
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
	// ReasonAsking: the turn waits for a person to answer a permission
	// request.
	ReasonAsking = "asking"
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
	// Cause is the restart's cause (set when Restart is).
	Cause lifecycle.Cause
}

func healthy(reason string) Verdict   { return Verdict{Healthy: true, Reason: reason} }
func unhealthy(reason string) Verdict { return Verdict{Reason: reason} }
func restart(c lifecycle.Cause, reason string) Verdict {
	return Verdict{Reason: reason, Restart: true, Cause: c}
}

// Verdict judges s at now. apiDown suppresses stale_queue: while the API
// breaker holds turns, a waiting queue is expected, not a fault.
func (r Rules) Verdict(s Snapshot, q Queue, now time.Time, apiDown bool) Verdict {
	switch {
	case s.State == Failed:
		return unhealthy("failed: " + s.FailReason)
	case s.StoreError != "":
		// Restarting cannot help: the session retries its write.
		return unhealthy(ReasonStoreError)
	case s.State == Paused:
		return healthy(ReasonPaused)
	case s.State == Stopped:
		return healthy(ReasonStopped)
	case s.State == Waiting:
		// Held on purpose: it starts as soon as a slot frees.
		return healthy(ReasonLiveCap)
	}
	if !s.ProcUp {
		if s.State == Starting && !s.RestartPending {
			// The agent is being started right now.
			return healthy(ReasonStarting)
		}
		// Also while a restart waits out its backoff: the session is down.
		return restart(lifecycle.Dead, ReasonDead)
	}
	if s.ErrorCount >= r.MaxErrors {
		return restart(lifecycle.Errors, fmt.Sprintf("errors=%d", s.ErrorCount))
	}
	if s.Busy {
		if s.Asking {
			// Waiting for a person is not being stuck: both clocks stop
			// (the request has its own timeout).
			return healthy(ReasonAsking)
		}
		limit := r.StuckTimeout
		if s.FirstTurn {
			limit = r.FirstTurnStuckTimeout
		}
		quiet := s.TurnStarted
		if s.LastOutput.After(quiet) {
			quiet = s.LastOutput
		}
		if s.LastAnswer.After(quiet) {
			quiet = s.LastAnswer // the stuck clock starts again at the answer
		}
		ran := now.Sub(s.TurnStarted) - s.Waited // the turn's own time, without its waits
		if now.Sub(quiet) > limit || (r.MaxTurn > 0 && ran > r.MaxTurn) {
			return restart(lifecycle.Stuck, ReasonStuck)
		}
		return healthy(ReasonOK)
	}
	if q.Depth > 0 && !apiDown && !s.Held {
		since := s.LastHandover
		if q.Oldest.After(since) {
			since = q.Oldest
		}
		if now.Sub(since) > r.StuckTimeout {
			return restart(lifecycle.StaleQueue, ReasonStaleQueue)
		}
	}
	return healthy(ReasonOK)
}

// Alive reports whether a session counts as alive in status: it has an
// agent process that is not stopped, failed or past max_errors.
func (r Rules) Alive(s Snapshot) bool {
	return s.State != Stopped && s.State != Failed && s.ProcUp && s.ErrorCount < r.MaxErrors
}

// RestartNow reports whether the health check asks for a restart after
// verdict v on s: the verdict calls for one and none is pending already.
func RestartNow(v Verdict, s Snapshot) bool {
	return v.Restart && !s.RestartPending
}

// StrandGrace is how long messages may wait at an idle session before the
// health check counts them as stranded: a message accepted a moment ago
// may simply not have reached its session yet.
const StrandGrace = 5 * time.Second

// Stranded reports whether a session has messages waiting with nothing
// scheduled to hand them over: no turn in flight, no start or restart
// pending, no backoff after a failure, not held on purpose (failed,
// paused, an API outage, a store
// write being retried), for longer than StrandGrace. That must never
// happen; the health check hands such messages over and logs that it had
// to.
func (r Rules) Stranded(s Snapshot, q Queue, now time.Time, apiDown bool) bool {
	if q.Depth == 0 || apiDown || s.Busy || s.Held || s.RestartPending || s.Backoff || s.StoreError != "" {
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

// Remote is what a node knows of a session it does not run (another node
// owns its chat, or none does): the session's saved record and the chat's
// owner.
type Remote struct {
	ChatID                        string
	Owner                         string // "" when no node holds the chat's lease
	Live, Failed, Paused, Flagged bool
	FailReason                    string
}

// RemoteView is how status shows a Remote session.
type RemoteView struct {
	State          State
	Alive, Healthy bool
	Reason         string
	Exempt         bool
}

// Remote is the status of a session from its saved record, by the same
// exemption rule as a local one (Exempt): failed and paused as recorded, idle
// when it is live on its owner (whose own status has the detail), stopped
// otherwise.
func (r Rules) Remote(s Remote) RemoteView {
	v := RemoteView{State: Stopped, Healthy: true, Exempt: r.Exempt(s.ChatID, s.Flagged)}
	switch {
	case s.Failed:
		v.State, v.Healthy = Failed, false
	case s.Paused:
		v.State = Paused
	case s.Live && s.Owner != "":
		v.State, v.Alive = Idle, true
	}
	switch {
	case s.Failed && s.FailReason != "":
		v.Reason = "failed: " + s.FailReason
	case s.Owner == "":
		v.Reason = "no owner"
	default:
		v.Reason = "on node " + s.Owner
	}
	return v
}

// Reapable reports whether a live session has been idle for more than the
// idle timeout and may be stopped. Busy sessions and sessions
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

// StillReapable is the re-check a session makes when a reap requested by
// the health check reaches it: the session may have taken a turn or
// started over since. Its own snapshot carries no queue depth; a message
// that arrived meanwhile wakes it into a turn, which makes it busy.
func (r Rules) StillReapable(s Snapshot, now time.Time) bool {
	return r.Reapable(s, Queue{}, now)
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

// --- The fault model ---
//
// Every way a turn can end is described by a TurnEnd and judged by Decide:
// who is to blame and what follows. docs/faults.md has the table.

// Party is who is to blame for how a turn ended.
type Party int

const (
	// NoFault: the turn succeeded, or it was stopped on purpose (an
	// operator, idle reaping, a pause, shutdown).
	NoFault Party = iota
	// BlameAPI: the AI API is unreachable or overloaded for everyone (an
	// outage): messages are held, the breaker probes.
	BlameAPI
	// BlameConversation: the conversation cannot go on as it is (it cannot
	// be resumed, its context is too long, or its requests keep failing
	// while the API answers others).
	BlameConversation
	// BlameMessage: the messages of the turn (their turn crashed the agent,
	// hung, or got an error result).
	BlameMessage
	// BlameAgent: the agent process is broken (died before taking the
	// turn, closed its input, could not start).
	BlameAgent
	// BlameDaemon: the daemon itself (out of file descriptors or memory,
	// fork failures) or its configuration (rejected credentials).
	BlameDaemon
)

func (p Party) String() string {
	switch p {
	case NoFault:
		return "none"
	case BlameAPI:
		return "api"
	case BlameConversation:
		return "conversation"
	case BlameMessage:
		return "message"
	case BlameAgent:
		return "agent"
	case BlameDaemon:
		return "daemon"
	}
	return fmt.Sprintf("party(%d)", int(p))
}

// Ending is how a turn (or an agent process) ended, from structured facts
// only: the result line's fields, the process's exit, what it wrote.
type Ending int

const (
	// EndAnswered: a result that is not an error.
	EndAnswered Ending = iota
	// EndErrorResult: an error result; TurnEnd.Error classifies it.
	EndErrorResult
	// EndExited: the process ended during the turn (TurnEnd.Delivery says
	// how far the turn got), or it reported an exit of kind
	// TurnEnd.Error (agent.ResumeFailed).
	EndExited
	// EndUndelivered: the turn provably never reached the agent: its
	// input was closed, or its bytes were still unread when the process
	// ended or when the turn was cancelled as stuck (an agent that does not
	// read). TurnEnd.ProcessEnded says whether the process had ended.
	EndUndelivered
	// EndSilent: cancelled as stuck with no output of the agent's own at
	// all since the turn was sent (it acknowledged it at most).
	EndSilent
	// EndStuck: cancelled as stuck after some output, or past max_turn.
	EndStuck
	// EndStopped: stopped on purpose (operator, reap, pause, shutdown).
	EndStopped
	// EndHalted: the chat's person stopped the turn (/stop): its messages
	// are not to be answered.
	EndHalted
	// EndStartFailed: the agent could not be started; no turn ran.
	EndStartFailed
	// EndIdleExit: the process ended with no turn in flight.
	EndIdleExit
)

func (e Ending) String() string {
	switch e {
	case EndAnswered:
		return "answered"
	case EndErrorResult:
		return "error_result"
	case EndExited:
		return "exited"
	case EndUndelivered:
		return "undelivered"
	case EndSilent:
		return "silent"
	case EndStuck:
		return "stuck"
	case EndStopped:
		return "stopped"
	case EndHalted:
		return "halted"
	case EndStartFailed:
		return "start_failed"
	case EndIdleExit:
		return "idle_exit"
	}
	return fmt.Sprintf("ending(%d)", int(e))
}

// Delivery is how far a turn got before its process ended.
type Delivery int

const (
	// NotDelivered: provably never read by the agent (the write failed, or
	// the turn's bytes were still unread when the process ended).
	NotDelivered Delivery = iota
	// NoOutput: taken (or not provably untaken), but the process ended
	// before writing anything for it.
	NoOutput
	// Output: the agent wrote something for the turn, then ended.
	Output
)

// TurnEnd describes how a turn ended.
type TurnEnd struct {
	Ending Ending
	// Error classifies an error result, and for EndExited and EndIdleExit
	// the process's own exit (agent.ResumeFailed: the agent reported that
	// the conversation it was told to resume does not exist).
	Error agent.Kind
	// Delivery: for EndExited, how far the turn got.
	Delivery Delivery
	// Repeat: for EndExited with NoOutput, these messages were also in the
	// previous turn that ended so (the same turn again).
	Repeat bool
	// ResumeStart: the process was started with --resume and has not
	// finished a turn yet. Only then can "conversation not found" be true.
	ResumeStart bool
	// CleanExit: the process exited with status 0.
	CleanExit bool
	// Answered: the process answered at least one turn before it ended.
	Answered bool
	// OthersAnswered: the API answered another chat (or a probe) since this
	// turn started, or since this chat's last failure that was put down to
	// an outage: the API is up, so the failure is this chat's own.
	OthersAnswered bool
	// DaemonError: for EndStartFailed, the daemon ran out of a resource of
	// its own (descriptors, memory, processes).
	DaemonError bool
	// ProcessEnded: for EndUndelivered, the process had already ended (or
	// was ending: its input closed for the drain after its exit) when the
	// turn was handed over. The turn is nobody's fault; the exit is judged
	// on its own, as one with no turn in flight.
	ProcessEnded bool
}

// Fate is what happens to a turn's messages.
type Fate int

const (
	// FateNone: the ending concerns no messages (no turn was in flight).
	FateNone Fate = iota
	// FateDone: answered; the messages are done.
	FateDone
	// FateRequeue: back in line, uncharged, texts sent again next time.
	FateRequeue
	// FateHold: back in line, uncharged, and kept: the agent's
	// conversation already holds them (a turn the API failed), so the
	// retry sends only a note.
	FateHold
	// FateCharge: one failed attempt; dead after queue.max_attempts.
	FateCharge
	// FateHalted: done without an answer, never retried: the person
	// stopped the turn. They are answered HaltedReply, so the person (and
	// an API client) is told, once, and nothing counts as a failure.
	FateHalted
)

func (f Fate) String() string {
	return [...]string{"none", "done", "requeue", "hold", "charge", "halted"}[f]
}

// FollowUp is what the session does next.
type FollowUp int

const (
	// CarryOn: hand over the next messages (after Backoff, if set).
	CarryOn FollowUp = iota
	// Restart: restart the agent under the restart policy (counted,
	// backed off, failed past the limit).
	Restart
	// RestartPlain: start the agent again at once, not counted as a
	// fault.
	RestartPlain
	// RestartClean: a new conversation (without resume): resuming would
	// fail the same way.
	RestartClean
	// StartFresh: the saved conversation does not exist; start a new one.
	StartFresh
	// RetryStart: start again after a backoff, not counted against the
	// session (the daemon's own resources failed).
	RetryStart
	// JudgeExit: the process has ended; its exit is judged on its own
	// (EndIdleExit), as one with no turn in flight.
	JudgeExit
)

func (f FollowUp) String() string {
	return [...]string{"carry_on", "restart", "restart_plain", "restart_clean", "start_fresh", "retry_start", "judge_exit"}[f]
}

// ErrorEffect is what happens to a session's error_count.
type ErrorEffect int

const (
	ErrorsKeep  ErrorEffect = iota
	ErrorsReset             // a successful turn: also clears the restart history
	ErrorsGrow
)

// Decision is the fault model's verdict on one turn's end.
type Decision struct {
	Party    Party
	Messages Fate
	Breaker  Outcome
	Follow   FollowUp
	Errors   ErrorEffect
	// Backoff: the next hand-over waits RetryDelay(error_count), so a
	// failing chat never spins.
	Backoff bool
}

// Decide is the fault model: for every way a turn can end, who is to blame
// and what follows. It is pure; the session applies it.
func Decide(e TurnEnd) Decision {
	charge := func(p Party) Decision {
		return Decision{Party: p, Messages: FateCharge, Breaker: Released, Follow: CarryOn, Errors: ErrorsGrow, Backoff: true}
	}
	switch e.Ending {
	case EndAnswered:
		return Decision{Party: NoFault, Messages: FateDone, Breaker: Answered, Follow: CarryOn, Errors: ErrorsReset}
	case EndErrorResult:
		switch e.Error {
		case agent.Outage:
			if e.OthersAnswered {
				// The API answers others: this conversation's requests
				// fail on their own (a sticky timeout, a rate limit only
				// it exceeds). Held, it would hold everyone.
				return charge(BlameConversation)
			}
			return Decision{Party: BlameAPI, Messages: FateHold, Breaker: Unreachable, Follow: CarryOn}
		case agent.Auth:
			// Credentials are the daemon's configuration: hold like an
			// outage (the breaker probes until the key works).
			return Decision{Party: BlameDaemon, Messages: FateHold, Breaker: Unreachable, Follow: CarryOn}
		case agent.ContextTooLong:
			d := charge(BlameConversation)
			d.Breaker, d.Follow, d.Backoff = Answered, RestartClean, false
			return d
		case agent.ResumeFailed:
			if e.ResumeStart {
				return Decision{Party: BlameConversation, Messages: FateRequeue, Breaker: Released, Follow: StartFresh}
			}
		}
		d := charge(BlameMessage)
		d.Breaker = Answered
		return d
	case EndExited:
		if e.Error == agent.ResumeFailed && e.ResumeStart {
			return Decision{Party: BlameConversation, Messages: FateRequeue, Breaker: Released, Follow: StartFresh}
		}
		d := Decision{Party: BlameAgent, Messages: FateRequeue, Breaker: Released, Follow: Restart}
		if e.Delivery == Output || (e.Delivery == NoOutput && e.Repeat) {
			d.Party, d.Messages = BlameMessage, FateCharge
		}
		return d
	case EndUndelivered:
		if e.ProcessEnded {
			// Handed to a process that had ended (cleanly, say, while a
			// child it left behind held its output open): the exit says
			// whose fault that was, not this turn.
			return Decision{Party: NoFault, Messages: FateRequeue, Breaker: Released, Follow: JudgeExit}
		}
		return Decision{Party: BlameAgent, Messages: FateRequeue, Breaker: Released, Follow: Restart}
	case EndSilent:
		if !e.OthersAnswered {
			// Nobody gets anything from the API: an outage signal. The
			// hung agent is replaced without counting it; the messages
			// go out again (not kept: the agent may never have taken
			// them) once a probe gets through.
			return Decision{Party: BlameAPI, Messages: FateRequeue, Breaker: Unreachable, Follow: RestartPlain}
		}
		return Decision{Party: BlameMessage, Messages: FateCharge, Breaker: Released, Follow: Restart}
	case EndStuck:
		return Decision{Party: BlameMessage, Messages: FateCharge, Breaker: Released, Follow: Restart}
	case EndStopped:
		return Decision{Party: NoFault, Messages: FateRequeue, Breaker: Released, Follow: CarryOn}
	case EndHalted:
		// Nobody's fault, and nothing to retry. The agent goes on with
		// its conversation: interrupted, it still runs; stopped (an
		// agent that cannot be interrupted), the stop starts it again.
		return Decision{Party: NoFault, Messages: FateHalted, Breaker: Released, Follow: CarryOn}
	case EndStartFailed:
		if e.DaemonError {
			return Decision{Party: BlameDaemon, Messages: FateNone, Breaker: Released, Follow: RetryStart}
		}
		return Decision{Party: BlameAgent, Messages: FateNone, Breaker: Released, Follow: Restart}
	case EndIdleExit:
		switch {
		case e.Error == agent.ResumeFailed && e.ResumeStart:
			return Decision{Party: BlameConversation, Messages: FateNone, Breaker: Released, Follow: StartFresh}
		case e.CleanExit && e.Answered:
			// An agent that ends cleanly after answering is not broken.
			return Decision{Party: NoFault, Messages: FateNone, Breaker: Released, Follow: RestartPlain}
		}
		return Decision{Party: BlameAgent, Messages: FateNone, Breaker: Released, Follow: Restart}
	}
	panic(fmt.Sprintf("session: Decide: unknown ending %v", e.Ending))
}

// Evidence is what a turn that failed in a way an outage explains (an
// outage-type error result, or a silent turn) shows about when it began to
// fail, for BlameSince.
type Evidence struct {
	// Started is when the turn was handed to the agent; Ended when its
	// failure was noticed (the error result, or the stuck cancellation).
	Started, Ended time.Time
	// FirstRetry is when the agent first reported retrying a failed API
	// request during the turn (the Claude Code CLI's system/api_retry
	// line); zero when it reported none.
	FirstRetry time.Time
	// Silent: the turn ended with no output of the agent's own at all.
	Silent bool
	// OutageAt is when this chat's last failure was put down to an outage,
	// zero if it got an answer since (or never failed so).
	OutageAt time.Time
}

// BlameSince is the moment from which an answer the API gave another chat
// (or a probe) proves that a failed turn's failure was its own
// (TurnEnd.OthersAnswered). Only answers after the turn's own evidence of
// failure count: answers before it came before the trouble began, so an
// outage that starts mid-turn is the API's, however many chats were
// answered earlier in the turn.
//
// The evidence is the agent's first reported retry, if it reported one:
// then the turn has a window of its own (the CLI retries for seconds to
// minutes), in which the API answering anybody else proves the failure
// the conversation's. Without one, the evidence is the error result itself
// (for a silent turn, its start: it never got anything), and the window
// reaches back to the chat's last failure put down to an outage if it has
// not been answered since: a conversation whose requests fail at once,
// over and over, while a probe or other chats get answers, is charged
// rather than taken for an outage again and again.
func BlameSince(e Evidence) time.Time {
	if !e.FirstRetry.IsZero() && !e.FirstRetry.Before(e.Started) {
		return e.FirstRetry
	}
	since := e.Ended
	if e.Silent {
		since = e.Started
	}
	if !e.OutageAt.IsZero() && e.OutageAt.Before(since) {
		since = e.OutageAt
	}
	return since
}

// RetryDelay is how long a chat waits before its next hand-over after a
// failure charged to it, with errors consecutive failures (from 1):
// BackoffInitial, doubling, at most BackoffMax.
func (r Rules) RetryDelay(errors int) time.Duration {
	d := r.BackoffInitial
	for i := 1; i < errors && d < r.BackoffMax; i++ {
		d *= 2
	}
	return min(d, r.BackoffMax)
}

// DaemonResourceError reports whether err is the daemon running out of a
// resource of its own — file descriptors (EMFILE, ENFILE), memory (ENOMEM)
// or processes (EAGAIN from fork) — rather than anything about a session.
func DaemonResourceError(err error) bool {
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOMEM, syscall.EAGAIN} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// ProbeAnswered judges an API-health probe's turn (Supervisor.probe):
// whether the API answered. err is the turn's error; cancelled says the
// probe's context ended first. An outage, rejected credentials, or an
// agent that exited (whether or not it wrote anything) or could not take
// the turn leave the API unreachable;
// any other error is the API answering with an error of the turn's own.
// A probe is stricter than a chat's turn (Decide): it exists only to learn
// whether the API answers, so anything that did not reach it counts as no.
func ProbeAnswered(err error, cancelled bool) bool {
	if err == nil {
		return true
	}
	if cancelled {
		return false
	}
	switch agent.KindOf(err) {
	case agent.Outage, agent.Auth, agent.Exited, agent.ExitedSilent, agent.Undelivered:
		return false
	}
	return true
}

package permission

import (
	"errors"
	"fmt"
	"time"
)

// Decision is how a permission request was closed.
type Decision string

// The decisions. Allow and AllowAlways let the tool run (AllowAlways also
// stores a Rule, so the same tool in the same chat is not asked about
// again); Deny and Expired refuse it, Expired when nobody answered in time
// or the request's agent or daemon went away before an answer.
const (
	Allow       Decision = "allow"
	AllowAlways Decision = "allow_always"
	Deny        Decision = "deny"
	Expired     Decision = "expired"
)

// PersonDecisions are the decisions a person can make (Expired is the
// clock's or dispatch's).
var PersonDecisions = []Decision{Allow, AllowAlways, Deny}

// ParseDecision parses a person's decision: allow, allow_always or deny.
func ParseDecision(s string) (Decision, error) {
	for _, d := range PersonDecisions {
		if string(d) == s {
			return d, nil
		}
	}
	return "", fmt.Errorf("unknown decision %q (want allow, allow_always or deny)", s)
}

// Allows reports whether d lets the tool run.
func (d Decision) Allows() bool { return d == Allow || d == AllowAlways }

// Valid reports whether d is one of the four decisions.
func (d Decision) Valid() bool {
	switch d {
	case Allow, AllowAlways, Deny, Expired:
		return true
	}
	return false
}

// Who decided, besides a named person ("cli", "api:<token name>",
// "telegram:<user>", …): a standing rule, or dispatch itself (expiry).
const (
	ByRule     = "rule"
	ByDispatch = "dispatch"
)

// DefaultTimeout is how long a request waits for a person (agent.permission_timeout).
const DefaultTimeout = 30 * time.Minute

// Request is one question to a person: may this chat's agent run this tool
// call? It is open until Decision is set.
type Request struct {
	ID        string // dispatch's id of the request
	ChatID    string
	AgentID   string // the agent's own request id (the CLI's request_id)
	ToolUseID string
	Tool      string
	Summary   string // Summary(Tool, input)
	Input     []byte // the tool's input, JSON
	CreatedAt time.Time
	ExpiresAt time.Time

	Decision  Decision // "" while open
	DecidedBy string
	DecidedAt time.Time
	Reason    string // why an Expired request expired (timeout, agent exited, daemon restarted)
}

// Open reports whether r awaits a decision.
func (r Request) Open() bool { return r.Decision == "" }

// ExpiresAt is when a request created at created, with timeout t (≤ 0:
// DefaultTimeout), is denied unanswered.
func ExpiresAt(created time.Time, t time.Duration) time.Time {
	if t <= 0 {
		t = DefaultTimeout
	}
	return created.Add(t)
}

// IsExpired reports whether an open request is past its expiry at now: the
// instant of expiry itself is expired, so an answer and the expiry can
// never both win.
func (r Request) IsExpired(now time.Time) bool {
	return r.Open() && !now.Before(r.ExpiresAt)
}

// Why an Expired request expired.
const (
	ReasonTimeout   = "timeout"        // nobody answered in time
	ReasonAgentGone = "agent_exited"   // the agent process ended or withdrew the request
	ReasonRestart   = "daemon_restart" // the daemon restarted while it was open
	ReasonTurnEnded = "turn_abandoned" // the turn that asked was abandoned
)

// Errors of Close.
var (
	// ErrClosed: the request was already decided (or expired). The API
	// answers a second decision with 409 Conflict.
	ErrClosed = errors.New("permission request already closed")
	// ErrInvalid: not a decision.
	ErrInvalid = errors.New("invalid permission decision")
)

// Close is the rule of closing r with d by by at now. A request that is
// already closed refuses (ErrClosed). A person's answer that arrives at or
// after the expiry closes it as Expired instead (the clock won), and
// returns it with ErrClosed so the person is told. Expired needs a reason.
func Close(r Request, d Decision, by, reason string, now time.Time) (Request, error) {
	if !d.Valid() {
		return r, fmt.Errorf("%w: %q", ErrInvalid, d)
	}
	if !r.Open() {
		return r, ErrClosed
	}
	if d != Expired && r.IsExpired(now) {
		r.Decision, r.DecidedBy, r.DecidedAt, r.Reason = Expired, ByDispatch, r.ExpiresAt, ReasonTimeout
		return r, ErrClosed
	}
	r.Decision, r.DecidedBy, r.DecidedAt = d, by, now
	if d == Expired {
		if by == "" {
			r.DecidedBy = ByDispatch
		}
		r.Reason = reason
	}
	return r, nil
}

// Rule is a standing allow_always: the chat's agent may use the tool
// without asking.
type Rule struct {
	ChatID    string
	Tool      string
	CreatedAt time.Time
	CreatedBy string
}

// RuleFor is the rule an AllowAlways decision on r stores.
func RuleFor(r Request) Rule {
	return Rule{ChatID: r.ChatID, Tool: r.Tool, CreatedAt: r.DecidedAt, CreatedBy: r.DecidedBy}
}

// Matches reports whether the rule answers a request of chat for tool:
// same chat and same tool, exactly (names are case-sensitive, as the
// agent's are; a rule of one chat never answers another).
func (rl Rule) Matches(chat, tool string) bool {
	return rl.ChatID != "" && rl.Tool != "" && rl.ChatID == chat && rl.Tool == tool
}

// Match returns the first of rules that answers a request of chat for tool.
func Match(rules []Rule, chat, tool string) (Rule, bool) {
	for _, rl := range rules {
		if rl.Matches(chat, tool) {
			return rl, true
		}
	}
	return Rule{}, false
}

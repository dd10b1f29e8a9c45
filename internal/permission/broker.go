package permission

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dispatchd/dispatch/internal/agent"
	"github.com/dispatchd/dispatch/internal/clock"
)

// Broker asks people: it keeps each request of an agent in its Store (and
// so on the event feed), waits for a person's Decide or the expiry, and
// answers requests a standing rule covers without asking. Safe for
// concurrent use.
type Broker struct {
	st      Store
	clk     clock.Clock
	timeout time.Duration
	newID   func() string

	mu      sync.Mutex
	waiting map[string]chan Request // open requests asked here → their Ask
}

// NewBroker returns a broker over st; requests expire after timeout (≤ 0:
// DefaultTimeout); newID names them.
func NewBroker(st Store, clk clock.Clock, timeout time.Duration, newID func() string) *Broker {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Broker{st: st, clk: clk, timeout: timeout, newID: newID, waiting: map[string]chan Request{}}
}

// Question is what an agent asks about.
type Question struct {
	AgentID   string // the agent's own request id
	ToolUseID string
	Tool      string
	Input     []byte
	Summary   string
}

// Ask asks about q for chat and waits for the decision. A rule of chat for
// the tool allows at once (DecidedBy ByRule; nothing is stored). Otherwise
// the request is stored open and waits for Decide, its expiry (closed as
// Expired, ReasonTimeout) or ctx (closed as Expired, ReasonAgentGone: the
// agent, its turn or the daemon went away). The closed request is
// returned; an error means the store failed and nothing was decided.
func (b *Broker) Ask(ctx context.Context, chat string, q Question) (Request, error) {
	rules, err := b.st.Rules(ctx, chat)
	if err != nil {
		return Request{}, fmt.Errorf("permission rules: %w", err)
	}
	now := b.clk.Now()
	r := Request{ID: b.newID(), ChatID: chat, AgentID: q.AgentID, ToolUseID: q.ToolUseID, Tool: q.Tool,
		Summary: q.Summary, Input: q.Input, CreatedAt: now, ExpiresAt: ExpiresAt(now, b.timeout)}
	if _, ok := Match(rules, chat, q.Tool); ok {
		r.Decision, r.DecidedBy, r.DecidedAt = Allow, ByRule, now
		return r, nil
	}
	ch := make(chan Request, 1)
	b.mu.Lock()
	b.waiting[r.ID] = ch // before the request is visible, so no decision is missed
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.waiting, r.ID)
		b.mu.Unlock()
	}()
	if err := b.st.CreateRequest(ctx, r); err != nil {
		return Request{}, fmt.Errorf("permission request: %w", err)
	}
	t := b.clk.NewTimer(r.ExpiresAt.Sub(now))
	defer t.Stop()
	reason := ReasonTimeout
	select {
	case closed := <-ch:
		return closed, nil
	case <-t.C():
	case <-ctx.Done():
		reason = ReasonAgentGone
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			reason = ReasonTimeout // the agent's own bound on the wait (the same timeout)
		}
	}
	closed, err := b.st.CloseRequest(context.WithoutCancel(ctx), r.ID, Expired, ByDispatch, reason, b.clk.Now())
	if errors.Is(err, ErrClosed) { // a decision got there first
		return closed, nil
	}
	return closed, err
}

// Decide closes request id with a person's decision d, by by. A second
// answer gets ErrClosed (with the request as closed), an answer at or
// after the expiry too; AllowAlways also stores the rule. The Ask waiting
// on the request, if any, returns it.
func (b *Broker) Decide(ctx context.Context, id string, d Decision, by string) (Request, error) {
	if d == Expired || !d.Valid() {
		return Request{}, fmt.Errorf("%w: %q", ErrInvalid, d)
	}
	closed, err := b.st.CloseRequest(ctx, id, d, by, "", b.clk.Now())
	if !closed.Open() && closed.ID != "" {
		b.notify(closed)
	}
	if err != nil {
		return closed, err
	}
	if d == AllowAlways {
		if err := b.st.AddRule(ctx, RuleFor(closed)); err != nil {
			return closed, fmt.Errorf("allowed, but the rule was not stored: %w", err)
		}
	}
	return closed, nil
}

// ExpireOpen closes every open request as Expired with reason (at start:
// ReasonRestart, for requests whose agents are gone) and returns how many.
func (b *Broker) ExpireOpen(ctx context.Context, reason string) (int, error) {
	return b.ExpireChat(ctx, "", reason)
}

// ExpireChat is ExpireOpen for chat's requests only ("": every chat's):
// a node that takes over a chat closes the requests its earlier owner's
// agent asked.
func (b *Broker) ExpireChat(ctx context.Context, chat, reason string) (int, error) {
	open, err := b.st.OpenRequests(ctx, chat)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range open {
		closed, err := b.st.CloseRequest(ctx, r.ID, Expired, ByDispatch, reason, b.clk.Now())
		switch {
		case errors.Is(err, ErrClosed):
		case err != nil:
			return n, err
		default:
			n++
			b.notify(closed)
		}
	}
	return n, nil
}

func (b *Broker) notify(r Request) {
	b.mu.Lock()
	ch := b.waiting[r.ID]
	b.mu.Unlock()
	if ch != nil {
		select {
		case ch <- r:
		default: // already told
		}
	}
}

// Asker is the agent.Asker for chat's agent: each request is asked through
// the broker, and its decision becomes the answer (a refusal says why).
func (b *Broker) Asker(chat string) agent.Asker {
	return agent.AskerFunc(func(ctx context.Context, q agent.PermissionRequest) (agent.PermissionAnswer, error) {
		r, err := b.Ask(ctx, chat, Question{AgentID: q.ID, ToolUseID: q.ToolUseID, Tool: q.Tool, Input: q.Input, Summary: q.Summary})
		if err != nil {
			return agent.PermissionAnswer{}, err
		}
		return Answer(r, b.timeout), nil
	})
}

// Answer is what the agent is told of the closed request r.
func Answer(r Request, timeout time.Duration) agent.PermissionAnswer {
	switch {
	case r.Decision.Allows():
		return agent.PermissionAnswer{Allow: true}
	case r.Decision == Deny:
		return agent.PermissionAnswer{Message: "The person denied this tool call."}
	case r.Reason == ReasonTimeout:
		return agent.PermissionAnswer{Message: fmt.Sprintf("Nobody answered the permission request within %s; the call was not run.", timeout)}
	}
	return agent.PermissionAnswer{Message: "The permission request was closed without an answer; the call was not run."}
}

// Open returns chat's open requests ("" every chat's), oldest first.
func (b *Broker) Open(ctx context.Context, chat string) ([]Request, error) {
	return b.st.OpenRequests(ctx, chat)
}

// Get returns request id, open or closed (ErrNotFound).
func (b *Broker) Get(ctx context.Context, id string) (Request, error) {
	return b.st.GetRequest(ctx, id)
}

// Rules returns chat's allow_always rules ("" every chat's).
func (b *Broker) Rules(ctx context.Context, chat string) ([]Rule, error) {
	return b.st.Rules(ctx, chat)
}

// RemoveRule removes chat's rule for tool: the tool is asked about again.
// false: there was none.
func (b *Broker) RemoveRule(ctx context.Context, chat, tool string) (bool, error) {
	return b.st.RemoveRule(ctx, chat, tool)
}

// Timeout is how long a request waits for a person.
func (b *Broker) Timeout() time.Duration { return b.timeout }

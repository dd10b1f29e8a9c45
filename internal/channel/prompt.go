package channel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/permission"
	"github.com/dispatchd/dispatch/internal/store"
)

// Permission requests in a chat. When a chat's agent asks whether it may
// run a tool, the outbox delivers the permission_request event to the
// chat like a reply (durably, at least once, in order with the chat's
// replies), and the platform shows it with three buttons: allow once,
// always for this tool in this chat, deny. A press is the platform's own
// update; the platform's intake hands it to Answer, which decides through
// the broker. Whoever closes the request (a press, the CLI, the status
// page, the timeout, the agent going away), its permission_decided event
// is delivered to the chat too: the platform replaces the buttons of the
// request's message with the decision. So every closing goes through one
// path, and a press only answers the press.

// Prompt is a permission request as a chat shows it. A delivery of kind
// permission_request or permission_decided carries it as JSON in its Text
// (PromptOf reads it back).
type Prompt struct {
	RequestID string    `json:"request_id"`
	Tool      string    `json:"tool"`
	Summary   string    `json:"summary,omitempty"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// Decided only: how the request was closed, by whom, and why an
	// expired request expired.
	Decision permission.Decision `json:"decision,omitempty"`
	By       string              `json:"by,omitempty"`
	Reason   string              `json:"reason,omitempty"`
}

// PromptSender is implemented by a Sender whose platform can show a
// permission request with buttons (Telegram's inline keyboard, Slack's
// Block Kit). The outbox delivers permission requests and decisions only
// to a channel whose Sender implements it. Both methods' errors are
// classified as Send's (*RateLimitedError holds the chat, a
// *PermanentError gives the delivery up, others are retried).
type PromptSender interface {
	// SendPrompt shows p in chat with one button per decision a person
	// can make (permission.PersonDecisions), each carrying the request id
	// and the decision, and returns the platform's id of the message.
	// The platform's intake turns a press into Answer.
	SendPrompt(ctx context.Context, chat string, p Prompt) (platformID string, err error)
	// ClosePrompt replaces the buttons of message platformID (as
	// SendPrompt returned it) with p's decision (DecidedText). A message
	// the platform no longer has, or one already showing the decision,
	// is not an error: there is nothing left to do.
	ClosePrompt(ctx context.Context, chat, platformID string, p Prompt) error
}

// PromptOf reads the Prompt a permission delivery carries.
func PromptOf(d store.ChannelDelivery) (Prompt, error) {
	var p Prompt
	if d.Kind != events.PermissionRequest && d.Kind != events.PermissionDecided {
		return p, fmt.Errorf("a %s delivery carries no permission request", d.Kind)
	}
	if err := json.Unmarshal([]byte(d.Text), &p); err != nil || p.RequestID == "" {
		return p, fmt.Errorf("delivery %d: not a permission request: %q", d.Seq, d.Text)
	}
	return p, nil
}

func promptText(ev events.Event) string {
	p := Prompt{RequestID: ev.RequestID, Tool: ev.Tool, Summary: ev.Summary,
		Decision: permission.Decision(ev.Decision), By: ev.By, Reason: ev.Reason}
	if ev.ExpiresAt != nil {
		p.ExpiresAt = ev.ExpiresAt.UTC()
	}
	b, _ := json.Marshal(p) // plain strings and a time: cannot fail
	return string(b)
}

// Permissions is what Answer needs of the permission broker
// (*permission.Broker).
type Permissions interface {
	Get(ctx context.Context, id string) (permission.Request, error)
	Decide(ctx context.Context, id string, d permission.Decision, by string) (permission.Request, error)
}

// Answer carries out a person's press of a permission button: decision d
// on request id, by (the platform's name of the person, such as
// "telegram:<user id>"), pressed in chat. The caller has checked that the
// person may talk to the bot at all. A request of another chat is refused
// (a button's data is not to be trusted), an already closed one is
// reported as such and changed in nothing. The text is the short answer
// to the press (a Telegram callback answer, a Slack ephemeral message);
// the error is a store failure (nothing was decided: the press may be
// retried).
func Answer(ctx context.Context, perms Permissions, chat, id string, d permission.Decision, by string) (string, error) {
	if perms == nil {
		return "Permission requests cannot be answered here.", nil
	}
	if !slicesContains(permission.PersonDecisions, d) {
		return "That is not an answer to a permission request.", nil
	}
	r, err := perms.Get(ctx, id)
	switch {
	case errors.Is(err, permission.ErrNotFound):
		return "This permission request no longer exists.", nil
	case err != nil:
		return "", err
	case r.ChatID != chat:
		return "This permission request is not from this chat.", nil
	case !r.Open():
		return "Already decided: " + DecidedText(r.Decision, r.DecidedBy, r.Reason) + ".", nil
	}
	closed, err := perms.Decide(ctx, id, d, by)
	switch {
	case errors.Is(err, permission.ErrClosed):
		return "Already decided: " + DecidedText(closed.Decision, closed.DecidedBy, closed.Reason) + ".", nil
	case err != nil && !closed.Open() && closed.Decision == d:
		// Decided, but an allow_always rule was not stored: the call runs.
		return DecidedText(d, by, "") + " (the standing rule was not saved: " + err.Error() + ").", nil
	case err != nil:
		return "", err
	}
	return DecidedText(closed.Decision, closed.DecidedBy, closed.Reason) + ".", nil
}

func slicesContains(ds []permission.Decision, d permission.Decision) bool {
	for _, x := range ds {
		if x == d {
			return true
		}
	}
	return false
}

// ButtonLabels are the buttons' labels, one per person's decision.
var ButtonLabels = map[permission.Decision]string{
	permission.Allow:       "Allow once",
	permission.AllowAlways: "Always here",
	permission.Deny:        "Deny",
}

// DecidedText is a closed request's decision in a few words, as it
// replaces the buttons: "Allowed once by telegram:42", "Always allowed
// here by cli", "Denied by …", "Expired: nobody answered in time".
func DecidedText(d permission.Decision, by, reason string) string {
	who := ""
	if by != "" && by != permission.ByDispatch {
		who = " by " + by
	}
	switch d {
	case permission.Allow:
		return "Allowed once" + who
	case permission.AllowAlways:
		return "Always allowed here" + who
	case permission.Deny:
		return "Denied" + who
	case permission.Expired:
		switch reason {
		case permission.ReasonTimeout:
			return "Expired: nobody answered in time"
		case permission.ReasonAgentGone, permission.ReasonTurnEnded:
			return "Expired: the agent stopped waiting"
		case permission.ReasonRestart:
			return "Expired: dispatch restarted"
		}
		return "Expired"
	}
	return "Closed" + who
}

// PromptText is the request's own line: the tool and what it would do,
// summary shortened to max runes (0: not shortened), and who may answer.
func PromptText(p Prompt, max int) string {
	sum := strings.Join(strings.Fields(p.Summary), " ")
	if r := []rune(sum); max > 0 && len(r) > max {
		sum = string(r[:max-1]) + "…"
	}
	s := "Permission: " + p.Tool
	if sum != "" {
		s += ": " + sum
	}
	return s
}

package slack

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	slackapi "github.com/slack-go/slack"

	"github.com/dispatchd/dispatch/internal/channel"
	"github.com/dispatchd/dispatch/internal/permission"
	"github.com/dispatchd/dispatch/internal/store"
)

// Permission requests as Block Kit buttons, delivered by the outbox
// (channel.PromptSender): a chat's permission_request becomes a message
// with three buttons in the thread of the chat's last message, and its
// permission_decided (whoever decided: a press, the CLI, the status page,
// the timeout, a restart) replaces the buttons with the decision. Both go
// through the outbox in order with the chat's replies, so a restart
// between the two still closes the message, and nothing is shown twice.
// A press comes over Socket Mode as an interactive envelope; interaction
// reads it and channel.Answer decides through the broker.

// byPrefix marks a decision made in Slack: slack:<user id>.
const byPrefix = "slack:"

// requestOf is what the message builders show of p.
func requestOf(p channel.Prompt) PermissionRequest {
	return PermissionRequest{ID: p.RequestID, Tool: p.Tool, Summary: p.Summary}
}

// closedMessage is p's message once decided: AnsweredMessage for a
// person's decision (who, as a mention when it was a Slack user), and the
// same request line with why it expired otherwise.
func closedMessage(p channel.Prompt) (string, []slackapi.Block) {
	r := requestOf(p)
	var d Decision
	switch p.Decision {
	case permission.Allow:
		d = Allow
	case permission.AllowAlways:
		d = AllowAlways
	case permission.Deny:
		d = Deny
	default:
		outcome := channel.DecidedText(p.Decision, p.By, p.Reason)
		section := slackapi.NewSectionBlock(slackapi.NewTextBlockObject(slackapi.MarkdownType, requestLine(r), false, false), nil, nil)
		ctx := slackapi.NewContextBlock("perm:"+r.ID, slackapi.NewTextBlockObject(slackapi.MarkdownType, Escape(outcome), false, false))
		return Escape(outcome) + ": " + plainLine(r), []slackapi.Block{section, ctx}
	}
	by := p.By
	if by == permission.ByDispatch {
		by = "dispatch"
	}
	return AnsweredMessage(r, d, strings.TrimPrefix(by, byPrefix))
}

// SendPrompt shows p in chat with its buttons (channel.PromptSender), in
// the thread of the chat's last message taken in; after a restart, before
// any new message, in the thread of the newest of the chat's messages in
// flight (the turn that asks) or else still in line, and only when none
// is, in the conversation itself.
func (s sender) SendPrompt(ctx context.Context, chat string, p channel.Prompt) (string, error) {
	c := s.c
	_, ch, ok := ParseChatID(chat)
	if !ok {
		return "", channel.Permanent(fmt.Errorf("%q is not a Slack chat", chat))
	}
	if w := c.heldFor(methodPost, ch); w > 0 {
		return "", &channel.RateLimitedError{After: w, Err: errors.New(methodPost + ": rate limited")}
	}
	text, blocks, err := PermissionMessage(requestOf(p))
	if err != nil {
		return "", channel.Permanent(err)
	}
	opts := []slackapi.MsgOption{slackapi.MsgOptionText(text, false), slackapi.MsgOptionBlocks(blocks...)}
	root := c.rootOf(chat)
	if root == "" {
		if root, err = c.liveRoot(ctx, chat); err != nil {
			return "", err // the store's: retried
		}
	}
	if root != "" {
		opts = append(opts, slackapi.MsgOptionTS(root))
	}
	_, ts, err := c.api.PostMessageContext(ctx, ch, opts...)
	if err != nil {
		return "", c.classify(methodPost, ch, err)
	}
	return ts, nil
}

// liveRoot is the thread of the newest of chat's messages in flight (the
// turn that asks), else of those still in line (pending or
// dead-lettered); "" when none came from Slack.
func (c *Channel) liveRoot(ctx context.Context, chat string) (string, error) {
	for _, state := range []store.State{store.Inflight, ""} {
		ms, err := c.cfg.Store.List(ctx, store.Filter{ChatID: chat, State: state})
		if err != nil {
			return "", err
		}
		for _, m := range slices.Backward(ms) {
			if root, _, ok := ParseClientID(m.ClientID); ok {
				return root, nil
			}
		}
	}
	return "", nil
}

// ClosePrompt replaces the buttons of message ts with p's decision
// (channel.PromptSender). A message gone, or no longer the bot's to
// edit, is left as it is.
func (s sender) ClosePrompt(ctx context.Context, chat, ts string, p channel.Prompt) error {
	c := s.c
	_, ch, ok := ParseChatID(chat)
	if !ok {
		return channel.Permanent(fmt.Errorf("%q is not a Slack chat", chat))
	}
	if w := c.heldFor(methodUpdate, ch); w > 0 {
		return &channel.RateLimitedError{After: w, Err: errors.New(methodUpdate + ": rate limited")}
	}
	text, blocks := closedMessage(p)
	_, _, _, err := c.api.UpdateMessageContext(ctx, ch, ts, slackapi.MsgOptionText(text, false), slackapi.MsgOptionBlocks(blocks...))
	var se slackapi.SlackErrorResponse
	if err != nil && errors.As(err, &se) && goneCodes[se.Err] {
		return nil // nothing left to close
	}
	if err != nil {
		return c.classify(methodUpdate, ch, err)
	}
	return nil
}

// goneCodes are chat.update's refusals of a message there is nothing
// left to do to.
var goneCodes = map[string]bool{"message_not_found": true, "cant_update_message": true, "channel_not_found": true, "is_archived": true}

// interaction handles a permission button press: a stranger is told,
// only them, and nothing is decided; a person on the allow list decides
// through channel.Answer (a request of another chat, or one already
// closed, changes nothing), and is told the outcome, only them. The
// message itself changes when the decision is delivered.
func (c *Channel) interaction(ctx context.Context, cb slackapi.InteractionCallback) {
	a, err := ParseAnswer(cb)
	if errors.Is(err, ErrNotPermission) {
		return
	}
	if err != nil {
		c.cfg.Log.Warn("slack: a permission button press that does not hold together", "channel", c.cfg.Name, "err", err)
		return
	}
	tell := func(text string) {
		opts := []slackapi.MsgOption{slackapi.MsgOptionText(Escape(text), false)}
		if a.ThreadTS != "" {
			opts = append(opts, slackapi.MsgOptionTS(a.ThreadTS))
		}
		if _, err := c.api.PostEphemeralContext(ctx, a.Channel, a.User, opts...); err != nil {
			c.hold(methodEphemeral, a.Channel, err)
			c.cfg.Log.Warn("slack: could not answer a button press", "channel", c.cfg.Name, "err", err)
		}
	}
	if !c.allow[a.User] {
		c.cfg.Log.Info("slack: a stranger pressed a permission button", "channel", c.cfg.Name, "user", a.User)
		tell("Only the people on this bot's allow list may answer. Your Slack user id is " + a.User + ".")
		return
	}
	team := cb.Team.ID
	if team == "" {
		c.mu.Lock()
		team = c.team
		c.mu.Unlock()
	}
	text, err := channel.Answer(ctx, c.cfg.Permissions, ChatID(team, a.Channel), a.RequestID, permission.Decision(a.Decision), byPrefix+a.User)
	if err != nil {
		c.cfg.Log.Warn("slack: deciding a permission request failed", "channel", c.cfg.Name, "request", a.RequestID, "err", err)
		text = "Your answer could not be recorded; press again."
	}
	tell(text)
}

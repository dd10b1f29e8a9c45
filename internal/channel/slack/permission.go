package slack

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	slackapi "github.com/slack-go/slack"
)

// Decision is a person's answer to a permission request.
type Decision string

// The decisions, as the buttons carry them.
const (
	Allow       Decision = "allow"        // this once
	AllowAlways Decision = "allow_always" // this tool, in this chat, from now on
	Deny        Decision = "deny"
)

// Valid reports whether d is one of the three decisions.
func (d Decision) Valid() bool { return d == Allow || d == AllowAlways || d == Deny }

// PermissionRequest is what a permission message shows.
type PermissionRequest struct {
	ID      string // the request id, carried by the buttons
	Tool    string // the tool the agent wants to use, such as Bash
	Summary string // a short human summary of its input: the command, the file path
}

// actionPrefix starts the action_id of every permission button:
// perm:<decision>:<request id>.
const actionPrefix = "perm:"

// MaxRequestIDLen is the longest request id a button can carry (Slack's
// action_id is at most 255 characters, "perm:allow_always:" included).
const MaxRequestIDLen = 200

// maxSummaryLen bounds the summary shown, so the section stays well within
// Slack's 3,000 characters whatever the escaping.
const maxSummaryLen = 500

// ActionID returns the action_id of the button for decision d on request
// id.
func ActionID(d Decision, id string) string { return actionPrefix + string(d) + ":" + id }

// requestLine is the section text both states share.
func requestLine(r PermissionRequest) string {
	sum := r.Summary
	if utf8.RuneCountInString(sum) > maxSummaryLen {
		sum = string([]rune(sum)[:maxSummaryLen-1]) + "…"
	}
	sum = strings.Join(strings.Fields(sum), " ")
	line := "*" + Escape(strings.ReplaceAll(r.Tool, "*", "∗")) + "*"
	if sum != "" {
		line += " wants to run `" + Escape(strings.ReplaceAll(sum, "`", "ˋ")) + "`"
	} else {
		line += " wants to run"
	}
	return line
}

// PermissionMessage builds the message asking for a permission: the
// notification text (shown where blocks are not, such as push
// notifications) and the blocks: the request, then Allow once · Always
// here · Deny buttons whose action_id is perm:<decision>:<request id> and
// whose value is the request id.
func PermissionMessage(r PermissionRequest) (text string, blocks []slackapi.Block, err error) {
	if r.ID == "" || len(r.ID) > MaxRequestIDLen || strings.ContainsAny(r.ID, " \t\n") {
		return "", nil, fmt.Errorf("slack: request id %q is empty, has spaces or is longer than %d bytes", r.ID, MaxRequestIDLen)
	}
	section := slackapi.NewSectionBlock(slackapi.NewTextBlockObject(slackapi.MarkdownType, "Permission needed: "+requestLine(r), false, false), nil, nil)
	button := func(d Decision, label string) *slackapi.ButtonBlockElement {
		return slackapi.NewButtonBlockElement(ActionID(d, r.ID), r.ID, slackapi.NewTextBlockObject(slackapi.PlainTextType, label, false, false))
	}
	actions := slackapi.NewActionBlock("perm:"+r.ID,
		button(Allow, "Allow once").WithStyle(slackapi.StylePrimary),
		button(AllowAlways, "Always here"),
		button(Deny, "Deny").WithStyle(slackapi.StyleDanger),
	)
	return "Permission needed: " + plainLine(r), []slackapi.Block{section, actions}, nil
}

func plainLine(r PermissionRequest) string {
	s := r.Tool
	if r.Summary != "" {
		sum := r.Summary
		if utf8.RuneCountInString(sum) > maxSummaryLen {
			sum = string([]rune(sum)[:maxSummaryLen-1]) + "…"
		}
		s += ": " + strings.Join(strings.Fields(sum), " ")
	}
	return Escape(s)
}

// AnsweredMessage builds the same message once decided: the request, no
// buttons, and who decided what. by is the deciding user's id, or who
// else decided (the CLI, a rule), or "" when nobody answered in time and
// the request was denied for them.
func AnsweredMessage(r PermissionRequest, d Decision, by string) (text string, blocks []slackapi.Block) {
	var outcome string
	switch d {
	case Allow:
		outcome = "Allowed once"
	case AllowAlways:
		outcome = "Always allowed here"
	default:
		outcome = "Denied"
	}
	who := " (no answer in time)"
	switch {
	case isUserID(by):
		who = " by <@" + by + ">"
	case by != "":
		who = " by " + Escape(by) // the CLI, the API, a standing rule
	}
	section := slackapi.NewSectionBlock(slackapi.NewTextBlockObject(slackapi.MarkdownType, requestLine(r), false, false), nil, nil)
	ctx := slackapi.NewContextBlock("perm:"+r.ID, slackapi.NewTextBlockObject(slackapi.MarkdownType, outcome+who, false, false))
	return outcome + ": " + plainLine(r), []slackapi.Block{section, ctx}
}

// isUserID reports whether s is a Slack user id (U… or W…, upper case
// letters and digits).
func isUserID(s string) bool {
	if len(s) < 2 || (s[0] != 'U' && s[0] != 'W') {
		return false
	}
	for _, r := range s {
		if !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// Answer is a permission button press.
type Answer struct {
	RequestID string
	Decision  Decision
	User      string // the user id of who pressed
	Channel   string
	MessageTS string // the permission message
	ThreadTS  string // its thread, if it is in one
}

// ErrNotPermission means an interactive payload is not a permission button
// press (another kind of interaction, or another app's button): the
// channel acknowledges it and does nothing.
var ErrNotPermission = errors.New("slack: not a permission button press")

// ParseAnswer reads a block_actions payload into the permission answer it
// carries. A payload that is not a permission press is ErrNotPermission;
// one that is but does not hold together (an unknown decision, a value
// that is not the request id) is another error.
func ParseAnswer(cb slackapi.InteractionCallback) (Answer, error) {
	if cb.Type != slackapi.InteractionTypeBlockActions || len(cb.ActionCallback.BlockActions) != 1 {
		return Answer{}, ErrNotPermission
	}
	a := cb.ActionCallback.BlockActions[0]
	rest, ok := strings.CutPrefix(a.ActionID, actionPrefix)
	if !ok {
		return Answer{}, ErrNotPermission
	}
	dec, id, ok := strings.Cut(rest, ":")
	d := Decision(dec)
	switch {
	case !ok || !d.Valid():
		return Answer{}, fmt.Errorf("slack: permission button %q has no valid decision", a.ActionID)
	case id == "" || a.Value != id:
		return Answer{}, fmt.Errorf("slack: permission button %q carries value %q, not its request id", a.ActionID, a.Value)
	case cb.User.ID == "":
		return Answer{}, errors.New("slack: permission button press without a user")
	}
	ch := cb.Channel.ID
	if ch == "" {
		ch = cb.Container.ChannelID
	}
	return Answer{RequestID: id, Decision: d, User: cb.User.ID, Channel: ch, MessageTS: cb.Container.MessageTs, ThreadTS: cb.Container.ThreadTs}, nil
}

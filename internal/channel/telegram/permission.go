package telegram

import (
	"context"
	"errors"
	"fmt"
	"html"
	"strconv"
	"strings"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"

	"github.com/dispatchd/dispatch/internal/channel"
	"github.com/dispatchd/dispatch/internal/permission"
)

// Permission requests as inline buttons. The outbox delivers a chat's
// permission requests (channel.PromptSender): each becomes a message with
// three buttons whose callback_data names the decision and the request.
// A press comes back as a callback_query update; Press reads it (the data
// is not trusted: parsed strictly, and the request must be this chat's),
// channel.Answer decides through the broker, and the press is always
// answered (answerCallbackQuery). The buttons go when the decision's
// permission_decided event is delivered, whoever decided.

// MaxCallbackData is Telegram's bound on a button's callback_data, in bytes.
const MaxCallbackData = 64

// callbackPrefix starts the callback_data of every permission button:
// p:<code>:<request id>.
const callbackPrefix = "p:"

// decisionCodes are the one-letter codes of the decisions in callback_data.
var decisionCodes = map[permission.Decision]string{
	permission.Allow:       "1",
	permission.AllowAlways: "a",
	permission.Deny:        "d",
}

// maxRequestID is the longest request id a button can carry.
const maxRequestID = MaxCallbackData - len(callbackPrefix) - 2

// CallbackData is the callback_data of the button for decision d on
// request id; false if it does not fit (or d is not a person's).
func CallbackData(d permission.Decision, id string) (string, bool) {
	code, ok := decisionCodes[d]
	if !ok || !validRequestID(id) {
		return "", false
	}
	return callbackPrefix + code + ":" + id, true
}

// ParseCallbackData reads a permission button's callback_data: the
// decision and the request id, or false for anything else.
func ParseCallbackData(data string) (permission.Decision, string, bool) {
	if len(data) > MaxCallbackData {
		return "", "", false
	}
	rest, ok := strings.CutPrefix(data, callbackPrefix)
	if !ok {
		return "", "", false
	}
	code, id, ok := strings.Cut(rest, ":")
	if !ok || !validRequestID(id) {
		return "", "", false
	}
	for d, c := range decisionCodes {
		if c == code {
			return d, id, true
		}
	}
	return "", "", false
}

// validRequestID: dispatch's request ids are UUIDs; letters, digits, '-'
// and '_' up to maxRequestID bytes are taken.
func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestID {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// PressAction is what the channel does with a button press.
type PressAction int

const (
	PressIgnore  PressAction = iota // not a callback_query
	PressDecide                     // an allowed person answered a request
	PressRefuse                     // a stranger: refused, nothing decided
	PressInvalid                    // not one of dispatch's buttons
)

// PressDecision is what Press decides for one update.
type PressDecision struct {
	Action   PressAction
	QueryID  string // to answer
	Chat     int64  // the chat of the message pressed
	User     int64
	Request  string
	Decision permission.Decision
}

// Press decides what to do with a callback_query update: a press from a
// user not in allow is refused; data that is not a permission button's is
// invalid. Every press it does not ignore is answered.
func Press(u *models.Update, allow map[int64]bool) PressDecision {
	q := u.CallbackQuery
	if q == nil || q.ID == "" {
		return PressDecision{}
	}
	d := PressDecision{QueryID: q.ID, User: q.From.ID}
	if q.Message.Message != nil {
		d.Chat = q.Message.Message.Chat.ID
	} else if q.Message.InaccessibleMessage != nil {
		d.Chat = q.Message.InaccessibleMessage.Chat.ID
	}
	if !allow[q.From.ID] {
		d.Action = PressRefuse
		return d
	}
	dec, id, ok := ParseCallbackData(q.Data)
	if !ok || d.Chat == 0 {
		d.Action = PressInvalid
		return d
	}
	d.Action, d.Request, d.Decision = PressDecide, id, dec
	return d
}

// PressRefusalText answers a stranger's press.
func PressRefusalText(user int64) string {
	return "Only the people on this bot's allow list can answer. Your Telegram user id is " + strconv.FormatInt(user, 10) + "."
}

// By is how a decision by Telegram user id is recorded.
func By(user int64) string { return "telegram:" + strconv.FormatInt(user, 10) }

// maxPromptSummary bounds the summary shown in a request's message.
const maxPromptSummary = 500

// promptHTML is a permission request's message: the tool and what it
// would do, then (open) who may answer, or (closed) the decision.
func promptHTML(p channel.Prompt, closed bool) string {
	sum := strings.TrimSpace(p.Summary)
	if r := []rune(sum); len(r) > maxPromptSummary {
		sum = string(r[:maxPromptSummary-1]) + "…"
	}
	var b strings.Builder
	b.WriteString("🔐 <b>" + html.EscapeString(p.Tool) + "</b> wants to run")
	if sum != "" {
		b.WriteString(":\n<code>" + html.EscapeString(sum) + "</code>")
	}
	b.WriteString("\n")
	if closed {
		b.WriteString("<i>" + html.EscapeString(channel.DecidedText(p.Decision, p.By, p.Reason)) + ".</i>")
		return b.String()
	}
	b.WriteString("Anyone on this bot's allow list may answer")
	if !p.ExpiresAt.IsZero() {
		b.WriteString(" until " + p.ExpiresAt.UTC().Format("15:04 MST"))
	}
	b.WriteString(".")
	return b.String()
}

// keyboard is a request's three buttons in one row.
func keyboard(id string) (*models.InlineKeyboardMarkup, error) {
	row := make([]models.InlineKeyboardButton, 0, len(permission.PersonDecisions))
	for _, d := range permission.PersonDecisions {
		data, ok := CallbackData(d, id)
		if !ok {
			return nil, fmt.Errorf("request id %q does not fit in a button", id)
		}
		row = append(row, models.InlineKeyboardButton{Text: channel.ButtonLabels[d], CallbackData: data})
	}
	return &models.InlineKeyboardMarkup{InlineKeyboard: [][]models.InlineKeyboardButton{row}}, nil
}

// SendPrompt shows p in chat with its buttons (channel.PromptSender).
func (s sender) SendPrompt(ctx context.Context, chat string, p channel.Prompt) (string, error) {
	id, ok := ParseChatID(chat)
	if !ok {
		return "", channel.Permanent(fmt.Errorf("%q is not a Telegram chat", chat))
	}
	kb, err := keyboard(p.RequestID)
	if err != nil {
		return "", channel.Permanent(err)
	}
	m, err := s.c.bot.SendMessage(ctx, &bot.SendMessageParams{ChatID: id, Text: promptHTML(p, false),
		ParseMode: models.ParseModeHTML, ReplyMarkup: kb})
	if err != nil {
		return "", classify(redact(err, s.c.cfg.Token))
	}
	return strconv.Itoa(m.ID), nil
}

// ClosePrompt replaces the buttons of message msg with p's decision
// (channel.PromptSender).
func (s sender) ClosePrompt(ctx context.Context, chat, msg string, p channel.Prompt) error {
	id, ok := ParseChatID(chat)
	if !ok {
		return channel.Permanent(fmt.Errorf("%q is not a Telegram chat", chat))
	}
	mid, err := strconv.Atoi(msg)
	if err != nil {
		return channel.Permanent(fmt.Errorf("message id %q: %w", msg, err))
	}
	_, err = s.c.bot.EditMessageText(ctx, &bot.EditMessageTextParams{ChatID: id, MessageID: mid,
		Text: promptHTML(p, true), ParseMode: models.ParseModeHTML})
	if err != nil && errors.Is(err, bot.ErrorBadRequest) &&
		(strings.Contains(err.Error(), "not modified") || strings.Contains(err.Error(), "not found") ||
			strings.Contains(err.Error(), "can't be edited")) {
		return nil // already showing it, or gone: nothing left to do
	}
	if err != nil {
		return classify(redact(err, s.c.cfg.Token))
	}
	return nil
}

// press carries out a button press and answers it. Like a command, it
// runs before the offset moves: a crash between the two presses again,
// which finds the request decided ("Already decided").
func (c *Channel) press(ctx context.Context, d PressDecision) error {
	var text string
	switch d.Action {
	case PressRefuse:
		text = PressRefusalText(d.User)
		c.cfg.Log.Info("telegram: refused a stranger's button press", "channel", c.cfg.Name, "user", d.User, "chat", d.Chat)
	case PressInvalid:
		text = "This button is not one of mine."
	case PressDecide:
		var err error
		text, err = channel.Answer(ctx, c.cfg.Permissions, ChatID(d.Chat), d.Request, d.Decision, By(d.User))
		if err != nil {
			return err // a store failure: nothing decided, tried again
		}
	}
	if _, err := c.bot.AnswerCallbackQuery(ctx, &bot.AnswerCallbackQueryParams{CallbackQueryID: d.QueryID, Text: text}); err != nil {
		c.cfg.Log.Warn("telegram: could not answer a button press", "channel", c.cfg.Name, "chat", d.Chat, "err", redact(err, c.cfg.Token))
	}
	return nil
}

package faketelegram

import (
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"
)

type chat struct {
	info      Chat
	nextMsgID int64
	msgs      map[int64]*Message // every message of the chat, as it is now
	botMsgs   map[int64]*SentMessage
	sent      []*SentMessage // the bot's, in order
	ops       []Op
}

// SentMessage is a message the bot sent, as it is now.
type SentMessage struct {
	MessageID   int64                 `json:"message_id"`
	Method      string                `json:"method"`         // sendMessage or sendDocument
	Text        string                `json:"text,omitempty"` // after entity parsing; a document's caption
	Entities    []MessageEntity       `json:"entities,omitempty"`
	Raw         string                `json:"raw,omitempty"` // text or caption as the bot sent it
	ParseMode   string                `json:"parse_mode,omitempty"`
	ReplyMarkup *InlineKeyboardMarkup `json:"reply_markup,omitempty"`
	ReplyTo     int64                 `json:"reply_to,omitempty"`
	Document    *Document             `json:"document,omitempty"`
	Edits       []string              `json:"edits,omitempty"` // earlier texts, oldest first
	Deleted     bool                  `json:"deleted,omitempty"`
}

func (m *SentMessage) clone() SentMessage {
	c := *m
	c.Entities = append([]MessageEntity(nil), m.Entities...)
	c.Edits = append([]string(nil), m.Edits...)
	c.ReplyMarkup = cloneMarkup(m.ReplyMarkup)
	if m.Document != nil {
		d := *m.Document
		c.Document = &d
	}
	return c
}

// Op is one thing the bot did in a chat, in the order the API accepted it.
type Op struct {
	Time      time.Time `json:"time"`
	Method    string    `json:"method"`
	MessageID int64     `json:"message_id,omitempty"`
	Text      string    `json:"text,omitempty"`   // new text after entity parsing, for sends and edits
	Action    string    `json:"action,omitempty"` // sendChatAction's action
}

type storedFile struct {
	id, uniqueID, path string
	data               []byte
}

type query struct {
	id       string
	chatID   int64
	msgID    int64
	from     User
	data     string
	answered *CallbackAnswer
}

// CallbackAnswer is the bot's answerCallbackQuery to a button press.
type CallbackAnswer struct {
	QueryID   string `json:"callback_query_id"`
	Text      string `json:"text,omitempty"`
	ShowAlert bool   `json:"show_alert,omitempty"`
	URL       string `json:"url,omitempty"`
}

// Fault is an error answer to inject. Status 0 means 429; an empty
// Description is Telegram's usual one for the status.
type Fault struct {
	Status      int    `json:"status,omitempty"`
	Description string `json:"description,omitempty"`
	RetryAfter  int    `json:"retry_after,omitempty"` // seconds, sent as parameters.retry_after
}

type fault struct {
	method string // lower case; "" for every method
	left   int
	f      Fault
}

func (f Fault) apiError() *apiError {
	code := f.Status
	if code == 0 {
		code = http.StatusTooManyRequests
	}
	desc := f.Description
	if desc == "" {
		switch code {
		case http.StatusTooManyRequests:
			desc = fmt.Sprintf("Too Many Requests: retry after %d", f.RetryAfter)
		case http.StatusBadRequest:
			desc = "Bad Request"
		case http.StatusForbidden:
			desc = "Forbidden: bot was blocked by the user"
		default:
			desc = http.StatusText(code)
		}
	}
	return &apiError{code: code, desc: desc, retryAfter: f.RetryAfter}
}

// FailNext answers the next n calls of method (any case; "" for any
// method) with f, before looking at the call. Faults queue up in the order
// given.
func (s *Server) FailNext(method string, n int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n > 0 {
		s.faults = append(s.faults, &fault{method: strings.ToLower(method), left: n, f: f})
	}
}

// LimitChat answers every call naming chatID with 429 until d has passed on
// the server's clock; retry_after is the time left, rounded up to a whole
// second. d <= 0 lifts the limit.
func (s *Server) LimitChat(chatID int64, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d <= 0 {
		delete(s.limits, chatID)
	} else {
		s.limits[chatID] = s.clk.Now().Add(d)
	}
	s.notifyLocked()
}

// injected returns the injected error for a call, if any.
func (s *Server) injected(method string, p *params) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	method = strings.ToLower(method)
	for i, f := range s.faults {
		if f.method == "" || f.method == method {
			f.left--
			if f.left <= 0 {
				s.faults = append(s.faults[:i], s.faults[i+1:]...)
			}
			return f.f.apiError()
		}
	}
	if id, e := p.int64("chat_id"); e == nil && id != 0 {
		if until, ok := s.limits[id]; ok {
			left := until.Sub(s.clk.Now())
			if left <= 0 {
				delete(s.limits, id)
				return nil
			}
			secs := int(math.Ceil(left.Seconds()))
			return Fault{RetryAfter: secs}.apiError()
		}
	}
	return nil
}

func (s *Server) addChatLocked(info Chat) *chat {
	if c, ok := s.chats[info.ID]; ok {
		if info.Title != "" {
			c.info.Title = info.Title
		}
		return c
	}
	c := &chat{info: info, nextMsgID: 1, msgs: map[int64]*Message{}, botMsgs: map[int64]*SentMessage{}}
	s.chats[info.ID] = c
	s.chatOrder = append(s.chatOrder, info.ID)
	return c
}

// AddChat makes a chat known to the bot, as if it had been added to it.
func (s *Server) AddChat(info Chat) {
	if info.Type == "" {
		info.Type = ChatPrivate
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addChatLocked(info)
	s.notifyLocked()
}

// Sent returns the messages the bot sent to chatID, in order, as they are
// now (edited text, keyboard, deletion).
func (s *Server) Sent(chatID int64) []SentMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.chats[chatID]
	if c == nil {
		return nil
	}
	out := make([]SentMessage, len(c.sent))
	for i, m := range c.sent {
		out[i] = m.clone()
	}
	return out
}

// Ops returns what the bot did in chatID, in order.
func (s *Server) Ops(chatID int64) []Op {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.chats[chatID]
	if c == nil {
		return nil
	}
	return append([]Op(nil), c.ops...)
}

// ChatActions returns the actions the bot sent to chatID with
// sendChatAction, in order.
func (s *Server) ChatActions(chatID int64) []string {
	var out []string
	for _, op := range s.Ops(chatID) {
		if op.Action != "" {
			out = append(out, op.Action)
		}
	}
	return out
}

// Chats returns every chat the bot knows, in the order it learnt of them.
func (s *Server) Chats() []Chat {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Chat, 0, len(s.chatOrder))
	for _, id := range s.chatOrder {
		out = append(out, s.chats[id].info)
	}
	return out
}

// Answer returns the bot's answer to the button press queryID; ok is false
// while it has not answered.
func (s *Server) Answer(queryID string) (a CallbackAnswer, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queries[queryID]
	if q == nil || q.answered == nil {
		return CallbackAnswer{}, false
	}
	return *q.answered, true
}

// Commands returns the bot's command list for a scope ("" or "default",
// "all_private_chats", "all_group_chats", "chat:<id>", …) and language
// code, as setMyCommands left it.
func (s *Server) Commands(scope, lang string) []BotCommand {
	if scope == "" {
		scope = "default"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]BotCommand(nil), s.commands[scope+"|"+lang]...)
}

// Pending returns the updates not yet confirmed by the bot.
func (s *Server) Pending() []Update {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Update(nil), s.updates...)
}

// Polling reports whether a getUpdates long poll is waiting.
func (s *Server) Polling() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.poller != nil
}

// Hanging returns how many requests ModeHang is holding.
func (s *Server) Hanging() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hanging
}

// FileData returns the content of a stored file by file_id.
func (s *Server) FileData(fileID string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.files[fileID]
	if f == nil {
		return nil, false
	}
	return f.data, true
}

// storeFileLocked keeps data and returns its record; s.mu must be held.
func (s *Server) storeFileLocked(dir, name string, data []byte) *storedFile {
	s.fileSeq++
	ext := ""
	if i := strings.LastIndexByte(name, '.'); i >= 0 && len(name)-i <= 8 {
		ext = name[i:]
	}
	f := &storedFile{
		id:       fmt.Sprintf("BQACAgIAAxk-fake-%06d", s.fileSeq),
		uniqueID: fmt.Sprintf("AgAD-fake-%06d", s.fileSeq),
		path:     fmt.Sprintf("%s/file_%d%s", dir, s.fileSeq, ext),
		data:     data,
	}
	s.files[f.id] = f
	return f
}

func cloneMarkup(m *InlineKeyboardMarkup) *InlineKeyboardMarkup {
	if m == nil {
		return nil
	}
	c := &InlineKeyboardMarkup{InlineKeyboard: make([][]InlineKeyboardButton, len(m.InlineKeyboard))}
	for i, row := range m.InlineKeyboard {
		c.InlineKeyboard[i] = append([]InlineKeyboardButton(nil), row...)
	}
	return c
}

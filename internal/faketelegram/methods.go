package faketelegram

import (
	"context"
	"encoding/json"
	"mime"
	"net/http"
	"path"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

type handler func(ctx context.Context, p *params) (any, *apiError)

func (s *Server) methods() map[string]handler {
	return map[string]handler{
		"getme":                  s.getMe,
		"getupdates":             s.getUpdates,
		"deletewebhook":          func(context.Context, *params) (any, *apiError) { return true, nil },
		"getwebhookinfo":         s.getWebhookInfo,
		"sendmessage":            s.sendMessage,
		"editmessagetext":        s.editMessageText,
		"editmessagereplymarkup": s.editMessageReplyMarkup,
		"deletemessage":          s.deleteMessage,
		"sendchataction":         s.sendChatAction,
		"setmycommands":          s.setMyCommands,
		"getmycommands":          s.getMyCommands,
		"deletemycommands":       s.deleteMyCommands,
		"answercallbackquery":    s.answerCallbackQuery,
		"getfile":                s.getFile,
		"senddocument":           s.sendDocument,
	}
}

func (s *Server) getMe(context.Context, *params) (any, *apiError) { return s.bot, nil }

func (s *Server) getWebhookInfo(context.Context, *params) (any, *apiError) {
	return map[string]any{"url": "", "has_custom_certificate": false, "pending_update_count": len(s.Pending())}, nil
}

func (s *Server) getUpdates(ctx context.Context, p *params) (any, *apiError) {
	offset, e := p.int64("offset")
	if e != nil {
		return nil, e
	}
	limit, e := p.int64("limit")
	if e != nil {
		return nil, e
	}
	if limit <= 0 || limit > defaultPollLimit {
		limit = defaultPollLimit
	}
	timeout, e := p.int64("timeout")
	if e != nil {
		return nil, e
	}
	var allowed []string
	hasAllowed, e := p.json("allowed_updates", &allowed)
	if e != nil {
		return nil, e
	}

	s.mu.Lock()
	if hasAllowed {
		s.allowed = nil
		if len(allowed) > 0 {
			s.allowed = map[string]bool{}
			for _, a := range allowed {
				s.allowed[a] = true
			}
		}
	}
	switch {
	case offset > 0:
		i := 0
		for i < len(s.updates) && s.updates[i].UpdateID < offset {
			i++
		}
		s.updates = s.updates[i:]
	case offset < 0:
		if keep := int(-offset); keep < len(s.updates) {
			s.updates = s.updates[len(s.updates)-keep:]
		}
	}
	if s.poller != nil {
		close(s.poller.conflict)
	}
	me := &poller{conflict: make(chan struct{})}
	s.poller = me
	s.notifyLocked()
	var expired <-chan time.Time
	if timeout > 0 {
		t := s.clk.NewTimer(time.Duration(timeout) * time.Second)
		defer t.Stop()
		expired = t.C()
	}
	for {
		if n := len(s.updates); n > 0 || timeout <= 0 {
			out := append([]Update{}, s.updates[:min(n, int(limit))]...)
			if s.poller == me {
				s.poller = nil
			}
			s.mu.Unlock()
			return out, nil
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-expired:
			timeout = 0 // answer with what there is, which is nothing
		case <-me.conflict:
			return nil, &apiError{code: http.StatusConflict, desc: "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"}
		case <-ctx.Done():
			s.dropPoller(me)
			return nil, &apiError{code: http.StatusBadRequest, desc: "Bad Request: request cancelled"}
		case <-s.done:
			s.dropPoller(me)
			return []Update{}, nil
		}
		s.mu.Lock()
	}
}

func (s *Server) dropPoller(me *poller) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.poller == me {
		s.poller = nil
	}
}

// chatParam returns the chat named by the chat_id parameter.
func (s *Server) chatParamLocked(p *params) (*chat, *apiError) {
	v := strings.TrimSpace(p.str("chat_id"))
	if v == "" {
		return nil, badRequest("chat_id is empty")
	}
	if strings.HasPrefix(v, "@") {
		for _, c := range s.chats {
			if c.info.Username != "" && strings.EqualFold("@"+c.info.Username, v) {
				return c, nil
			}
		}
		return nil, badRequest("chat not found")
	}
	id, e := p.int64("chat_id")
	if e != nil {
		return nil, badRequest("chat not found")
	}
	c := s.chats[id]
	if c == nil {
		return nil, badRequest("chat not found")
	}
	return c, nil
}

// formatted parses a text or caption in the given parse mode and checks
// its length.
func formatted(text, parseMode string, maxLen int, isCaption bool) (string, []MessageEntity, *apiError) {
	var entities []MessageEntity
	switch strings.ToLower(parseMode) {
	case "":
		if !utf8.ValidString(text) {
			return "", nil, badRequest("strings must be encoded in UTF-8")
		}
	case "html":
		var err error
		text, entities, err = ParseHTML(text)
		if err != nil {
			return "", nil, badRequest("can't parse entities: %v", err)
		}
	case "markdown", "markdownv2":
		return "", nil, badRequest("can't parse entities: the fake understands parse_mode HTML only")
	default:
		return "", nil, badRequest("unsupported parse_mode")
	}
	text, entities = trimText(text, entities)
	if text == "" && !isCaption {
		return "", nil, badRequest("message text is empty")
	}
	if UTF16Len(text) > maxLen {
		if isCaption {
			return "", nil, badRequest("message caption is too long")
		}
		return "", nil, badRequest("message is too long")
	}
	return text, entities, nil
}

// trimText removes leading and trailing whitespace as the server does,
// moving and clipping the entities to match.
func trimText(text string, es []MessageEntity) (string, []MessageEntity) {
	trimmed := strings.TrimLeft(text, " \t\r\n")
	lead := UTF16Len(text[:len(text)-len(trimmed)])
	trimmed = strings.TrimRight(trimmed, " \t\r\n")
	n := UTF16Len(trimmed)
	var out []MessageEntity
	for _, e := range es {
		start, end := max(e.Offset-lead, 0), min(e.Offset+e.Length-lead, n)
		if end > start {
			e.Offset, e.Length = start, end-start
			out = append(out, e)
		}
	}
	return trimmed, out
}

var commandRE = regexp.MustCompile(`^[a-z0-9_]{1,32}$`)

// markupParam reads reply_markup; only inline keyboards are kept.
func markupParam(p *params) (*InlineKeyboardMarkup, *apiError) {
	var m InlineKeyboardMarkup
	ok, e := p.json("reply_markup", &m)
	if e != nil || !ok {
		return nil, e
	}
	if m.InlineKeyboard == nil {
		return nil, nil // a reply keyboard or the like: not modelled
	}
	for _, row := range m.InlineKeyboard {
		for _, b := range row {
			if b.Text == "" {
				return nil, badRequest("text buttons are unallowed in the inline keyboard")
			}
			if b.URL == "" && (len(b.CallbackData) == 0 || len(b.CallbackData) > maxCallbackData) {
				return nil, badRequest("BUTTON_DATA_INVALID")
			}
		}
	}
	return &m, nil
}

// replyToParam reads reply_parameters or reply_to_message_id.
func replyToParam(p *params) (int64, bool, *apiError) {
	var rp struct {
		MessageID                int64 `json:"message_id"`
		AllowSendingWithoutReply bool  `json:"allow_sending_without_reply"`
	}
	if ok, e := p.json("reply_parameters", &rp); e != nil || ok {
		return rp.MessageID, rp.AllowSendingWithoutReply, e
	}
	id, e := p.int64("reply_to_message_id")
	return id, p.str("allow_sending_without_reply") == "true", e
}

func (s *Server) sendMessage(_ context.Context, p *params) (any, *apiError) {
	raw, mode := p.str("text"), p.str("parse_mode")
	text, entities, e := formatted(raw, mode, MaxTextLen, false)
	if e != nil {
		return nil, e
	}
	markup, e := markupParam(p)
	if e != nil {
		return nil, e
	}
	replyTo, allowWithout, e := replyToParam(p)
	if e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, e := s.chatParamLocked(p)
	if e != nil {
		return nil, e
	}
	msg := Message{Text: text, Entities: entities, ReplyMarkup: markup}
	sm := &SentMessage{Method: "sendMessage", Text: text, Entities: entities, Raw: raw, ParseMode: mode, ReplyMarkup: cloneMarkup(markup)}
	if e := s.botSendLocked(c, &msg, sm, replyTo, allowWithout); e != nil {
		return nil, e
	}
	return msg, nil
}

// botSendLocked numbers and keeps a message the bot sends.
func (s *Server) botSendLocked(c *chat, msg *Message, sm *SentMessage, replyTo int64, allowWithout bool) *apiError {
	if replyTo != 0 {
		if r := c.msgs[replyTo]; r != nil {
			cp := *r
			cp.ReplyToMessage = nil
			msg.ReplyToMessage = &cp
			sm.ReplyTo = replyTo
		} else if !allowWithout {
			return badRequest("message to be replied not found")
		}
	}
	bot := s.bot
	msg.MessageID = c.nextMsgID
	c.nextMsgID++
	msg.From = &bot
	msg.Chat = c.info
	msg.Date = s.clk.Now().Unix()
	sm.MessageID = msg.MessageID
	stored := *msg
	c.msgs[msg.MessageID] = &stored
	c.botMsgs[msg.MessageID] = sm
	c.sent = append(c.sent, sm)
	c.ops = append(c.ops, Op{Time: s.clk.Now(), Method: sm.Method, MessageID: msg.MessageID, Text: sm.Text})
	s.notifyLocked()
	return nil
}

// botMessageLocked finds a bot message to edit or delete.
func (s *Server) botMessageLocked(p *params, verb string) (*chat, *Message, *SentMessage, *apiError) {
	if p.str("inline_message_id") != "" {
		return nil, nil, nil, badRequest("message to %s not found", verb)
	}
	c, e := s.chatParamLocked(p)
	if e != nil {
		return nil, nil, nil, e
	}
	id, e := p.int64("message_id")
	if e != nil {
		return nil, nil, nil, e
	}
	if id == 0 {
		return nil, nil, nil, badRequest("message identifier is not specified")
	}
	m := c.msgs[id]
	if m == nil {
		return nil, nil, nil, badRequest("message to %s not found", verb)
	}
	sm := c.botMsgs[id]
	if sm == nil {
		if verb == "delete" {
			return c, m, nil, nil // bots may delete others' messages in groups where they are admins
		}
		return nil, nil, nil, badRequest("message can't be edited")
	}
	return c, m, sm, nil
}

const notModified = "message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message"

func (s *Server) editMessageText(_ context.Context, p *params) (any, *apiError) {
	raw, mode := p.str("text"), p.str("parse_mode")
	text, entities, e := formatted(raw, mode, MaxTextLen, false)
	if e != nil {
		return nil, e
	}
	markup, e := markupParam(p)
	if e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, m, sm, e := s.botMessageLocked(p, "edit")
	if e != nil {
		return nil, e
	}
	if m.Document != nil {
		return nil, badRequest("there is no text in the message to edit")
	}
	if m.Text == text && reflect.DeepEqual(m.Entities, entities) && reflect.DeepEqual(m.ReplyMarkup, markup) {
		return nil, badRequest(notModified)
	}
	sm.Edits = append(sm.Edits, sm.Text)
	sm.Text, sm.Entities, sm.Raw, sm.ParseMode, sm.ReplyMarkup = text, entities, raw, mode, cloneMarkup(markup)
	m.Text, m.Entities, m.ReplyMarkup, m.EditDate = text, entities, markup, s.clk.Now().Unix()
	c.ops = append(c.ops, Op{Time: s.clk.Now(), Method: "editMessageText", MessageID: m.MessageID, Text: text})
	s.notifyLocked()
	return *m, nil
}

func (s *Server) editMessageReplyMarkup(_ context.Context, p *params) (any, *apiError) {
	markup, e := markupParam(p)
	if e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, m, sm, e := s.botMessageLocked(p, "edit")
	if e != nil {
		return nil, e
	}
	if reflect.DeepEqual(m.ReplyMarkup, markup) {
		return nil, badRequest(notModified)
	}
	sm.ReplyMarkup = cloneMarkup(markup)
	m.ReplyMarkup, m.EditDate = markup, s.clk.Now().Unix()
	c.ops = append(c.ops, Op{Time: s.clk.Now(), Method: "editMessageReplyMarkup", MessageID: m.MessageID})
	s.notifyLocked()
	return *m, nil
}

func (s *Server) deleteMessage(_ context.Context, p *params) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, m, sm, e := s.botMessageLocked(p, "delete")
	if e != nil {
		return nil, e
	}
	delete(c.msgs, m.MessageID)
	if sm != nil {
		sm.Deleted = true
	}
	c.ops = append(c.ops, Op{Time: s.clk.Now(), Method: "deleteMessage", MessageID: m.MessageID})
	s.notifyLocked()
	return true, nil
}

var chatActions = map[string]bool{
	"typing": true, "upload_photo": true, "record_video": true, "upload_video": true, "record_voice": true,
	"upload_voice": true, "upload_document": true, "choose_sticker": true, "find_location": true,
	"record_video_note": true, "upload_video_note": true,
}

func (s *Server) sendChatAction(_ context.Context, p *params) (any, *apiError) {
	action := p.str("action")
	if !chatActions[action] {
		return nil, badRequest("wrong parameter action in request")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, e := s.chatParamLocked(p)
	if e != nil {
		return nil, e
	}
	c.ops = append(c.ops, Op{Time: s.clk.Now(), Method: "sendChatAction", Action: action})
	s.notifyLocked()
	return true, nil
}

// scopeKey names a BotCommandScope as Commands takes it.
func scopeKey(p *params) (string, *apiError) {
	var sc struct {
		Type   string          `json:"type"`
		ChatID json.RawMessage `json:"chat_id"`
		UserID int64           `json:"user_id"`
	}
	ok, e := p.json("scope", &sc)
	if e != nil {
		return "", e
	}
	if !ok || sc.Type == "" {
		return "default", nil
	}
	switch sc.Type {
	case "default", "all_private_chats", "all_group_chats", "all_chat_administrators":
		return sc.Type, nil
	case "chat", "chat_administrators":
		return sc.Type + ":" + strings.Trim(string(sc.ChatID), `"`), nil
	case "chat_member":
		return sc.Type + ":" + strings.Trim(string(sc.ChatID), `"`) + ":" + strconv.FormatInt(sc.UserID, 10), nil
	}
	return "", badRequest("wrong bot command scope type specified")
}

func (s *Server) setMyCommands(_ context.Context, p *params) (any, *apiError) {
	var cmds []BotCommand
	ok, e := p.json("commands", &cmds)
	if e != nil {
		return nil, e
	}
	if !ok {
		return nil, badRequest("parameter \"commands\" is required")
	}
	if len(cmds) > 100 {
		return nil, badRequest("too many commands specified")
	}
	for _, c := range cmds {
		if !commandRE.MatchString(c.Command) {
			return nil, badRequest("BOT_COMMAND_INVALID")
		}
		if n := utf8.RuneCountInString(strings.TrimSpace(c.Description)); n == 0 || n > 256 {
			return nil, badRequest("command description must be non-empty")
		}
	}
	key, e := scopeKey(p)
	if e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.commands[key+"|"+p.str("language_code")] = append([]BotCommand{}, cmds...)
	s.notifyLocked()
	return true, nil
}

func (s *Server) getMyCommands(_ context.Context, p *params) (any, *apiError) {
	key, e := scopeKey(p)
	if e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]BotCommand{}, s.commands[key+"|"+p.str("language_code")]...), nil
}

func (s *Server) deleteMyCommands(_ context.Context, p *params) (any, *apiError) {
	key, e := scopeKey(p)
	if e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.commands, key+"|"+p.str("language_code"))
	s.notifyLocked()
	return true, nil
}

func (s *Server) answerCallbackQuery(_ context.Context, p *params) (any, *apiError) {
	id := p.str("callback_query_id")
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queries[id]
	if q == nil || q.answered != nil {
		return nil, badRequest("query is too old and response timeout expired or query ID is invalid")
	}
	q.answered = &CallbackAnswer{QueryID: id, Text: p.str("text"), ShowAlert: p.str("show_alert") == "true", URL: p.str("url")}
	if c := s.chats[q.chatID]; c != nil {
		c.ops = append(c.ops, Op{Time: s.clk.Now(), Method: "answerCallbackQuery", MessageID: q.msgID, Text: q.answered.Text})
	}
	s.notifyLocked()
	return true, nil
}

func (s *Server) getFile(_ context.Context, p *params) (any, *apiError) {
	id := p.str("file_id")
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.files[id]
	if f == nil {
		return nil, badRequest("invalid file_id")
	}
	if len(f.data) > MaxDownloadSize {
		return nil, badRequest("file is too big")
	}
	return File{FileID: f.id, FileUniqueID: f.uniqueID, FileSize: int64(len(f.data)), FilePath: f.path}, nil
}

// serveFile answers GET /file/bot<token>/<file_path>.
func (s *Server) serveFile(ctx context.Context, w http.ResponseWriter, rest string) {
	token, fpath, _ := strings.Cut(rest, "/")
	var data []byte
	found := false
	if token == s.token {
		s.mu.Lock()
		for _, f := range s.files {
			if f.path == fpath && len(f.data) <= MaxDownloadSize {
				data, found = f.data, true
				break
			}
		}
		s.mu.Unlock()
	}
	if !found {
		writeError(w, &apiError{code: http.StatusNotFound, desc: "Not Found"})
		return
	}
	ct := mime.TypeByExtension(path.Ext(fpath))
	if ct == "" {
		ct = http.DetectContentType(data)
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	s.writeFile(ctx, w, data)
}

func (s *Server) sendDocument(_ context.Context, p *params) (any, *apiError) {
	raw, mode := p.str("caption"), p.str("parse_mode")
	caption, entities, e := formatted(raw, mode, MaxCaptionLen, true)
	if e != nil {
		return nil, e
	}
	markup, e := markupParam(p)
	if e != nil {
		return nil, e
	}
	replyTo, allowWithout, e := replyToParam(p)
	if e != nil {
		return nil, e
	}
	up, uploaded := p.files["document"]
	ref := p.str("document")
	if !uploaded && ref == "" {
		return nil, badRequest("there is no document in the request")
	}
	if uploaded && len(up.data) == 0 {
		return nil, badRequest("file must be non-empty")
	}
	if uploaded && len(up.data) > MaxUploadSize {
		return nil, &apiError{code: http.StatusRequestEntityTooLarge, desc: "Request Entity Too Large"}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, e := s.chatParamLocked(p)
	if e != nil {
		return nil, e
	}
	var f *storedFile
	name := ""
	if uploaded {
		name = path.Base(up.name)
		f = s.storeFileLocked("documents", name, up.data)
	} else {
		if f = s.files[ref]; f == nil {
			if strings.HasPrefix(ref, "http://") || strings.HasPrefix(ref, "https://") {
				return nil, badRequest("failed to get HTTP URL content")
			}
			return nil, badRequest("wrong file identifier/HTTP URL specified")
		}
		name = path.Base(f.path)
	}
	ct := mime.TypeByExtension(path.Ext(name))
	if ct == "" {
		ct = http.DetectContentType(f.data)
	}
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	doc := &Document{FileID: f.id, FileUniqueID: f.uniqueID, FileName: name, MimeType: ct, FileSize: int64(len(f.data))}
	msg := Message{Document: doc, Caption: caption, CaptionEntities: entities, ReplyMarkup: markup}
	d := *doc
	sm := &SentMessage{Method: "sendDocument", Text: caption, Entities: entities, Raw: raw, ParseMode: mode, ReplyMarkup: cloneMarkup(markup), Document: &d}
	if e := s.botSendLocked(c, &msg, sm, replyTo, allowWithout); e != nil {
		return nil, e
	}
	return msg, nil
}

package faketelegram

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf16"
)

// Incoming is a message a person sends to the bot.
type Incoming struct {
	// Chat is where it is sent. A zero Chat is the private chat with From;
	// a chat not seen before is created (Type defaults to private for a
	// positive ID, supergroup for a negative one).
	Chat Chat
	From User
	// Text is the message text, or the caption of a photo or document.
	Text string
	// Entities, when nil, are found in Text as Telegram's clients mark
	// them: bot_command (/cmd, /cmd@bot), mention (@username) and url.
	Entities []MessageEntity
	// ReplyTo is the id of a message in the chat this one answers.
	ReplyTo int64
	// Photo, if not nil, makes this a photo message, in two sizes: a
	// thumbnail (its first thumbBytes bytes) and the photo itself.
	Photo []byte
	// Document, if not nil, makes this a document message.
	Document []byte
	FileName string // of the document
	MimeType string // of the document
}

// thumbBytes is the size of the fake's photo thumbnails.
const thumbBytes = 64

// Send delivers a person's message to the bot as a "message" update and
// returns the update. It fails only on a bad Incoming (no sender, a reply
// to a message that does not exist).
func (s *Server) Send(in Incoming) (Update, error) {
	if in.From.ID == 0 {
		return Update{}, errors.New("faketelegram: Incoming.From.ID is required")
	}
	if in.From.FirstName == "" {
		in.From.FirstName = "User" + fmt.Sprint(in.From.ID)
	}
	info := in.Chat
	if info.ID == 0 {
		info = Chat{ID: in.From.ID, Type: ChatPrivate, FirstName: in.From.FirstName, Username: in.From.Username}
	}
	if info.Type == "" {
		info.Type = ChatPrivate
		if info.ID < 0 {
			info.Type = ChatSupergroup
		}
	}
	if info.Type != ChatPrivate && info.Title == "" {
		info.Title = "Group " + fmt.Sprint(info.ID)
	}
	entities := in.Entities
	if entities == nil {
		entities = FindEntities(in.Text)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if existing := s.chats[info.ID]; existing != nil && existing.info.Type != info.Type && in.Chat.Type != "" {
		return Update{}, fmt.Errorf("faketelegram: chat %d is a %s, not a %s", info.ID, existing.info.Type, info.Type)
	}
	c := s.addChatLocked(info)
	from := in.From
	msg := &Message{MessageID: c.nextMsgID, From: &from, Date: s.clk.Now().Unix(), Chat: c.info}
	if in.ReplyTo != 0 {
		r := c.msgs[in.ReplyTo]
		if r == nil {
			return Update{}, fmt.Errorf("faketelegram: no message %d in chat %d to reply to", in.ReplyTo, info.ID)
		}
		cp := *r
		cp.ReplyToMessage = nil
		msg.ReplyToMessage = &cp
	}
	switch {
	case in.Photo != nil:
		// Telegram sends a photo in several sizes, smallest first; the
		// fake's smaller one is a thumbnail of the first bytes (a
		// different file), so a bot that takes the first size, not the
		// largest, gets the wrong bytes.
		thumb := in.Photo[:min(len(in.Photo), thumbBytes)]
		t := s.storeFileLocked("photos", "photo.jpg", thumb)
		f := s.storeFileLocked("photos", "photo.jpg", in.Photo)
		msg.Photo = []PhotoSize{
			{FileID: t.id, FileUniqueID: t.uniqueID, Width: 90, Height: 68, FileSize: int64(len(thumb))},
			{FileID: f.id, FileUniqueID: f.uniqueID, Width: 1280, Height: 960, FileSize: int64(len(in.Photo))},
		}
		msg.Caption, msg.CaptionEntities = in.Text, entities
	case in.Document != nil:
		name := in.FileName
		if name == "" {
			name = "document.bin"
		}
		mt := in.MimeType
		if mt == "" {
			mt = "application/octet-stream"
		}
		f := s.storeFileLocked("documents", name, in.Document)
		msg.Document = &Document{FileID: f.id, FileUniqueID: f.uniqueID, FileName: name, MimeType: mt, FileSize: int64(len(in.Document))}
		msg.Caption, msg.CaptionEntities = in.Text, entities
	default:
		if in.Text == "" {
			return Update{}, errors.New("faketelegram: an Incoming needs Text, Photo or Document")
		}
		msg.Text, msg.Entities = in.Text, entities
	}
	c.nextMsgID++
	c.msgs[msg.MessageID] = msg
	return s.enqueueLocked(Update{Message: msg}), nil
}

// SendText is Send of a text in the private chat with from.
func (s *Server) SendText(from User, text string) (Update, error) {
	return s.Send(Incoming{From: from, Text: text})
}

// Press presses the inline button with callbackData under the bot's
// message messageID in chatID, as from, and returns the callback_query
// update; its CallbackQuery.ID is what the bot answers.
func (s *Server) Press(chatID, messageID int64, from User, callbackData string) (Update, error) {
	if from.FirstName == "" {
		from.FirstName = "User" + fmt.Sprint(from.ID)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.chats[chatID]
	if c == nil {
		return Update{}, fmt.Errorf("faketelegram: no chat %d", chatID)
	}
	m := c.msgs[messageID]
	if m == nil || c.botMsgs[messageID] == nil {
		return Update{}, fmt.Errorf("faketelegram: no bot message %d in chat %d", messageID, chatID)
	}
	found := false
	if m.ReplyMarkup != nil {
		for _, row := range m.ReplyMarkup.InlineKeyboard {
			for _, b := range row {
				found = found || b.CallbackData == callbackData
			}
		}
	}
	if !found {
		return Update{}, fmt.Errorf("faketelegram: message %d in chat %d has no button with callback_data %q", messageID, chatID, callbackData)
	}
	s.querySeq++
	q := &query{id: fmt.Sprintf("%d%08d", from.ID, s.querySeq), chatID: chatID, msgID: messageID, from: from, data: callbackData}
	s.queries[q.id] = q
	cp := *m
	cp.ReplyMarkup = cloneMarkup(m.ReplyMarkup)
	return s.enqueueLocked(Update{CallbackQuery: &CallbackQuery{
		ID: q.id, From: from, Message: &cp, ChatInstance: fmt.Sprintf("%d", chatID*7919), Data: callbackData,
	}}), nil
}

// enqueueLocked numbers an update and queues it unless allowed_updates
// excludes its kind; s.mu must be held.
func (s *Server) enqueueLocked(u Update) Update {
	u.UpdateID = s.nextUpdateID
	s.nextUpdateID++
	if s.allowed == nil || s.allowed[u.kind()] {
		s.updates = append(s.updates, u)
	}
	s.notifyLocked()
	return u
}

var entityRE = regexp.MustCompile(`(?:^|[\s(])(/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?|@[A-Za-z0-9_]{5,32}|https?://[^\s]+)`)

// FindEntities marks bot commands, @mentions and URLs in text the way
// Telegram's clients do for a message a person types, with UTF-16 offsets.
func FindEntities(text string) []MessageEntity {
	var out []MessageEntity
	for _, m := range entityRE.FindAllStringSubmatchIndex(text, -1) {
		start, end := m[2], m[3]
		word := text[start:end]
		e := MessageEntity{Offset: UTF16Len(text[:start]), Length: len(utf16.Encode([]rune(word)))}
		switch word[0] {
		case '/':
			e.Type = "bot_command"
		case '@':
			e.Type = "mention"
		default:
			e.Type = "url"
			trimmed := strings.TrimRight(word, ".,;:!?)")
			e.Length = UTF16Len(trimmed)
		}
		out = append(out, e)
	}
	return out
}

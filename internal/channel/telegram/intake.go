package telegram

import (
	"strconv"
	"strings"
	"unicode/utf16"

	"github.com/go-telegram/bot/models"
)

// ChatPrefix begins every Telegram chat id in dispatch: tg:<chat id>.
const ChatPrefix = "tg:"

// ChatID is dispatch's chat id for Telegram chat id.
func ChatID(id int64) string { return ChatPrefix + strconv.FormatInt(id, 10) }

// ParseChatID is the Telegram chat id of dispatch's chat id chat.
func ParseChatID(chat string) (int64, bool) {
	s, ok := strings.CutPrefix(chat, ChatPrefix)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// Action is what the channel does with an update.
type Action int

const (
	Ignore      Action = iota // not for the bot (another bot's command, a group message not addressed to it, not a message)
	Accept                    // queue its text for the chat's agent
	Refuse                    // a stranger: tell them their user id, queue nothing
	Unsupported               // from an allowed person, but nothing dispatch reads yet (a sticker, a voice note)
	Command                   // an in-chat command of dispatch's own (Decision.Command)
)

// In-chat commands.
const (
	CmdNew    = "new"    // start a clean conversation
	CmdStatus = "status" // this chat's health and queue
)

// Commands are the in-chat commands, as registered with setMyCommands.
var Commands = []struct{ Name, Description string }{
	{CmdNew, "Start a clean conversation"},
	{CmdStatus, "This chat's health and queue"},
}

// Decision is what Intake decides for one update.
type Decision struct {
	Action Action
	Chat   int64  // the Telegram chat to answer in
	User   int64  // the sender
	Text   string // Accept: the text to queue
	// Command is the command's name without its slash (Action Command).
	Command string
	// File is the photo or document that comes with an accepted message
	// (Text is then its caption, maybe empty); its ID is "" when there is
	// none.
	File FileRef
}

// Bot is the bot as Intake needs it (from getMe).
type Bot struct {
	ID       int64
	Username string
}

// Intake decides what to do with update u for bot, whose allowed senders
// are allow:
//   - only new messages count (edits, channel posts, button presses and
//     the rest are ignored here);
//   - in a group the bot answers only when addressed: a mention of its
//     @username, a reply to one of its messages, or a command (/cmd, or
//     /cmd@its_username; a command for another bot is not for it);
//   - a sender not in allow is refused (in private, or when addressing
//     the bot in a group), and nothing is queued;
//   - the text queued is the message's text or caption; a photo (its
//     largest size) or document comes with it as File, even without a
//     caption (a command in a caption is text for the agent).
func Intake(u *models.Update, bot Bot, allow map[int64]bool) Decision {
	m := u.Message
	if m == nil || m.From == nil || m.From.IsBot {
		return Decision{}
	}
	d := Decision{Chat: m.Chat.ID, User: m.From.ID}
	text, entities := m.Text, m.Entities
	if text == "" {
		text, entities = m.Caption, m.CaptionEntities
	}
	if m.Chat.Type != models.ChatTypePrivate && !addressed(m, text, entities, bot) {
		return Decision{}
	}
	if !allow[m.From.ID] {
		d.Action = Refuse
		return d
	}
	if f, ok := attachment(m); ok {
		d.Action, d.Text, d.File = Accept, text, f
		return d
	}
	if strings.TrimSpace(text) == "" {
		d.Action = Unsupported
		return d
	}
	if cmd, ok := ownCommand(text, entities, bot); ok {
		d.Action, d.Command = Command, cmd
		return d
	}
	d.Action, d.Text = Accept, text
	return d
}

// ownCommand is the in-chat command a message is, if it begins with one of
// dispatch's (/new, /status, or /new@its_username). Anything after the
// command is ignored; other commands are text for the agent.
func ownCommand(text string, entities []models.MessageEntity, bot Bot) (string, bool) {
	for _, e := range entities {
		if e.Type != models.MessageEntityTypeBotCommand || e.Offset != 0 {
			continue
		}
		name, to, named := strings.Cut(strings.TrimPrefix(entityText(text, e), "/"), "@")
		if named && !strings.EqualFold(to, bot.Username) {
			return "", false
		}
		name = strings.ToLower(name)
		for _, c := range Commands {
			if c.Name == name {
				return name, true
			}
		}
	}
	return "", false
}

// addressed reports whether a group message speaks to bot.
func addressed(m *models.Message, text string, entities []models.MessageEntity, bot Bot) bool {
	if r := m.ReplyToMessage; r != nil && r.From != nil && r.From.ID == bot.ID {
		return true
	}
	for _, e := range entities {
		s := entityText(text, e)
		switch e.Type {
		case models.MessageEntityTypeMention:
			if strings.EqualFold(strings.TrimPrefix(s, "@"), bot.Username) {
				return true
			}
		case models.MessageEntityTypeBotCommand:
			_, to, named := strings.Cut(s, "@")
			if !named || strings.EqualFold(to, bot.Username) {
				return true
			}
		case models.MessageEntityTypeTextMention:
			if e.User != nil && e.User.ID == bot.ID {
				return true
			}
		}
	}
	return false
}

// entityText is the text an entity covers (offsets in UTF-16 code units).
func entityText(text string, e models.MessageEntity) string {
	u := utf16.Encode([]rune(text))
	if e.Offset < 0 || e.Length < 0 || e.Offset+e.Length > len(u) {
		return ""
	}
	return string(utf16.Decode(u[e.Offset : e.Offset+e.Length]))
}

// RefusalText is the one answer a stranger gets: their user id, so the
// owner can add it.
func RefusalText(user int64) string {
	return "Sorry, this bot answers only the people on its allow list. Your Telegram user id is " +
		strconv.FormatInt(user, 10) + "; the bot's owner can add it (channels[].allow)."
}

// UnsupportedText answers a message with nothing dispatch reads yet.
const UnsupportedText = "I can read only text, photos and documents for now."

// DeadLetterText is the short notice for a message that gave up.
func DeadLetterText(errText string) string {
	const maxErr = 300
	if r := []rune(errText); len(r) > maxErr {
		errText = string(r[:maxErr]) + "…"
	}
	return "I could not answer this: " + errText
}

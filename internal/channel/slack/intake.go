package slack

import (
	"regexp"
	"strings"
)

// ChatPrefix begins every Slack chat id in dispatch:
// slack:<team>:<channel>.
const ChatPrefix = "slack:"

// ChatID is dispatch's chat id for a Slack conversation (a channel or a
// direct message channel) in team.
func ChatID(team, channel string) string { return ChatPrefix + team + ":" + channel }

// ParseChatID is the team and Slack channel of dispatch's chat id chat.
func ParseChatID(chat string) (team, channel string, ok bool) {
	s, ok := strings.CutPrefix(chat, ChatPrefix)
	if !ok {
		return "", "", false
	}
	team, channel, ok = strings.Cut(s, ":")
	return team, channel, ok && team != "" && channel != "" && !strings.Contains(channel, ":")
}

// Event is what the intake reads of one Events API event: a message event
// or an app_mention event.
type Event struct {
	Type        string // "message" or "app_mention"
	Subtype     string // message subtypes: "" for a person's new message, "file_share", "message_changed", …
	Team        string
	Channel     string
	ChannelType string // "im" for a direct message, "channel", "group", "mpim"; "" in app_mention events
	User        string
	BotID       string // set on a bot's message (the bot's own included)
	Text        string
	TS          string
	ThreadTS    string // the thread's parent, for a reply in a thread
	Edited      bool
	HasFiles    bool
	Files       []FileRef // the files to take in (those Slack hosts)
}

// Bot is the bot as Intake needs it (from auth.test).
type Bot struct {
	UserID string // U…, the id mentions name
	BotID  string // B…, on the bot's own messages
}

// Action is what the channel does with an event.
type Action int

const (
	Ignore      Action = iota // not for the bot: its own or another bot's message, an edit, a join, a channel message not addressed to it
	Accept                    // queue its text for the chat's agent
	Refuse                    // a stranger: one ephemeral refusal naming their id, nothing queued
	Unsupported               // from an allowed person, but nothing dispatch reads yet (files)
	Command                   // an in-chat command of dispatch's own (Intent.Command)
)

// In-chat commands.
const (
	CmdNew    = "new"    // start a clean conversation
	CmdStatus = "status" // this chat's health and queue
	CmdStop   = "stop"   // stop the turn in flight
)

// Intent is what Intake decides for one event.
type Intent struct {
	Action  Action
	Chat    string // dispatch's chat id
	Channel string // the Slack channel to answer in
	User    string
	Text    string // Accept: the text to queue
	TS      string // the person's message
	// Root is the thread the bot answers in: the message's own thread, or,
	// for a top-level message in a channel, a new thread under it ("" in a
	// direct message outside a thread: the answer goes in the
	// conversation).
	Root    string
	Command string // Action Command: its name, without a slash
	// Files are the files of an accepted message, saved into the chat's
	// inbox before Text is queued (the channel adds a line naming each).
	Files []FileRef
}

// ClientID is the message's key in its chat: the same message reaches the
// bot as a message event and, when it mentions the bot, an app_mention
// event with another event_id, and Slack redelivers an unacknowledged
// envelope with the same event_id; the message's ts is the one id they all
// share. The thread the bot answers in rides along (root/ts), so a
// reply's thread and a thread's owner survive a restart.
func (d Intent) ClientID() string { return d.Root + "/" + d.TS }

// ParseClientID reads a ClientID back.
func ParseClientID(id string) (root, ts string, ok bool) {
	root, ts, ok = strings.Cut(id, "/")
	return root, ts, ok && ts != ""
}

// Intake decides what to do with event ev for bot, whose allowed senders
// are allow. ownThread reports whether the bot answers in the given
// thread of a channel (it replied there before); it is asked only for a
// reply in a thread of a channel that does not mention the bot.
//   - only a person's new message counts: the bot's own and other bots'
//     messages, edits, deletions, joins and other subtypes are ignored;
//   - in a direct message the bot answers everything;
//   - in a channel it answers a message that mentions it (<@BOT>), and
//     every message in a thread it answers in;
//   - a sender not in allow is refused, and nothing is queued;
//   - the text queued is the message's, Slack's escapes undone and a
//     leading mention of the bot dropped;
//   - /new, /status and /stop (also after the mention, with or without
//     the slash) are commands.
func Intake(ev Event, bot Bot, allow map[string]bool, ownThread func(channel, root string) bool) Intent {
	if ev.Type != "message" && ev.Type != "app_mention" {
		return Intent{}
	}
	if ev.BotID != "" || ev.User == "" || ev.User == bot.UserID || ev.Edited || ev.TS == "" || ev.Channel == "" {
		return Intent{}
	}
	if ev.Subtype != "" && ev.Subtype != "file_share" && ev.Subtype != "thread_broadcast" {
		return Intent{}
	}
	im := ev.ChannelType == "im" || (ev.ChannelType == "" && strings.HasPrefix(ev.Channel, "D"))
	mention := bot.UserID != "" && (strings.Contains(ev.Text, "<@"+bot.UserID+">") || strings.Contains(ev.Text, "<@"+bot.UserID+"|"))
	d := Intent{Chat: ChatID(ev.Team, ev.Channel), Channel: ev.Channel, User: ev.User, TS: ev.TS, Root: ev.ThreadTS}
	if !im {
		if !mention && (ev.ThreadTS == "" || ownThread == nil || !ownThread(ev.Channel, ev.ThreadTS)) {
			return Intent{}
		}
		if d.Root == "" {
			d.Root = ev.TS
		}
	}
	if !allow[ev.User] {
		d.Action = Refuse
		return d
	}
	text, addressed := stripMention(ev.Text, bot.UserID)
	text = unescape(text)
	if cmd, ok := command(text, addressed); ok {
		d.Action, d.Command = Command, cmd
		return d
	}
	if len(ev.Files) > 0 {
		d.Action, d.Text, d.Files = Accept, text, ev.Files
		return d
	}
	if ev.HasFiles || strings.TrimSpace(text) == "" {
		d.Action = Unsupported
		return d
	}
	d.Action, d.Text = Accept, text
	return d
}

// stripMention drops a mention of the bot that begins the text, and
// reports whether there was one.
func stripMention(text, botUser string) (string, bool) {
	t := strings.TrimLeft(text, " \t\n")
	if botUser == "" {
		return text, false
	}
	for _, m := range []string{"<@" + botUser + ">"} {
		if rest, ok := strings.CutPrefix(t, m); ok {
			return strings.TrimLeft(rest, " \t\n:,"), true
		}
	}
	// Slack may add the name: <@U123|name>.
	if rest, ok := strings.CutPrefix(t, "<@"+botUser+"|"); ok {
		if _, after, ok := strings.Cut(rest, ">"); ok {
			return strings.TrimLeft(after, " \t\n:,"), true
		}
	}
	return text, false
}

var commandRE = regexp.MustCompile(`^/?([a-z]+)$`)

// command is the in-chat command text is, if it is one: /new, /status,
// /stop, or the bare word right after a mention of the bot.
func command(text string, addressed bool) (string, bool) {
	t := strings.ToLower(strings.TrimSpace(text))
	m := commandRE.FindStringSubmatch(t)
	if m == nil || (!strings.HasPrefix(t, "/") && !addressed) {
		return "", false
	}
	switch m[1] {
	case CmdNew, CmdStatus, CmdStop:
		return m[1], true
	}
	return "", false
}

// unescape undoes Slack's three escapes in message text.
func unescape(s string) string {
	return strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&").Replace(s)
}

// RefusalText is the one answer a stranger gets: their user id, so the
// owner can add it.
func RefusalText(user string) string {
	return "Sorry, this bot answers only the people on its allow list. Your Slack user id is " + user +
		"; the bot's owner can add it (channels[].allow)."
}

// UnsupportedText answers a message with nothing dispatch reads (no text,
// or files where the channel has no folders).
const UnsupportedText = "I can read only text messages for now."

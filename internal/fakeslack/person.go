package fakeslack

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"strings"
)

// Incoming is a message a person writes.
type Incoming struct {
	// User is the person's user id ("U…"), required; Name their name.
	User string
	Name string
	// Channel is where: "" for the direct message channel with the bot,
	// or a channel id ("C…"), made if new.
	Channel string
	Text    string
	// Mention puts "<@BOT> " before Text, as Slack writes a mention of
	// the bot; the message then raises an app_mention event too.
	Mention bool
	// ThreadTS makes the message a reply in the thread of that message.
	ThreadTS string
	// Files are shared with the message (a file_share message).
	Files []FileIn
}

// FileIn is a file a person shares.
type FileIn struct {
	Name     string
	Mimetype string // from Name's extension when empty
	Data     []byte
}

// Posted is what Post made: the message and the envelopes carrying its
// events (the message event and, for a mention, the app_mention event).
type Posted struct {
	Channel   string   `json:"channel"`
	TS        string   `json:"ts"`
	Files     []string `json:"files,omitempty"`
	EventIDs  []string `json:"event_ids"`
	Envelopes []string `json:"envelope_ids"`
}

// Post delivers a person's message: it is added to the channel and its
// events are queued for the bot's Socket Mode connection, following the
// app's subscriptions: a message event (channel_type "im" or "channel",
// subtype "file_share" with files) and, when the text mentions the bot in a
// channel, an app_mention event.
func (s *Server) Post(in Incoming) (Posted, error) {
	if !strings.HasPrefix(in.User, "U") || in.User == DefaultBotUser {
		return Posted{}, errors.New("fakeslack: Incoming.User must be a person's user id (U…)")
	}
	if in.Text == "" && len(in.Files) == 0 && !in.Mention {
		return Posted{}, errors.New("fakeslack: an Incoming needs Text or Files")
	}
	if in.Mention {
		in.Text = strings.TrimSpace("<@" + DefaultBotUser + "> " + in.Text)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addUserLocked(User{ID: in.User, Name: in.Name})
	var c *channel
	switch {
	case in.Channel == "":
		c = s.addChannelLocked(Channel{ID: dmIDFor(in.User), IsIM: true, User: in.User})
	case strings.HasPrefix(in.Channel, "C"):
		c = s.addChannelLocked(Channel{ID: in.Channel})
	case s.chans[in.Channel] != nil:
		c = s.chans[in.Channel]
	default:
		return Posted{}, fmt.Errorf("fakeslack: no channel %q (channel ids start with C)", in.Channel)
	}
	m := &Message{User: in.User, Text: in.Text}
	var parentUser string
	if in.ThreadTS != "" {
		p := c.find(in.ThreadTS)
		if p == nil {
			return Posted{}, fmt.Errorf("fakeslack: no message %s in %s to reply to", in.ThreadTS, c.info.ID)
		}
		m.ThreadTS = in.ThreadTS
		if p.ThreadTS != "" {
			m.ThreadTS = p.ThreadTS
		}
		parentUser = c.find(m.ThreadTS).User
	}
	m.TS = s.nextTSLocked()
	var filesJSON []map[string]any
	for _, fi := range in.Files {
		mt := fi.Mimetype
		if mt == "" {
			if mt = mime.TypeByExtension(extOf(fi.Name)); mt == "" {
				mt = "application/octet-stream"
			}
		}
		name := fi.Name
		if name == "" {
			name = "file.bin"
		}
		f := &file{id: s.nextIDLocked("F"), name: name, title: name, mimetype: mt, user: in.User, data: fi.Data, created: s.clk.Now().Unix(), channels: []string{c.info.ID}}
		s.files[f.id] = f
		m.Files = append(m.Files, f.id)
		filesJSON = append(filesJSON, s.fileJSON(f))
	}
	c.msgs = append(c.msgs, m)

	out := Posted{Channel: c.info.ID, TS: m.TS, Files: m.Files}
	event := func(typ string) map[string]any {
		ev := map[string]any{
			"type": typ, "user": in.User, "text": m.Text, "ts": m.TS, "event_ts": m.TS,
			"channel": c.info.ID, "team": s.teamID, "client_msg_id": fmt.Sprintf("fake-msg-%s", m.TS),
		}
		if typ == "message" {
			ev["channel_type"] = c.info.Type()
		}
		if m.ThreadTS != "" {
			ev["thread_ts"] = m.ThreadTS
			ev["parent_user_id"] = parentUser
		}
		if len(filesJSON) > 0 {
			ev["files"] = filesJSON
			ev["upload"] = false
			if typ == "message" {
				ev["subtype"] = "file_share"
			}
		}
		return ev
	}
	add := func(e *envelope) {
		out.EventIDs = append(out.EventIDs, e.EventID)
		out.Envelopes = append(out.Envelopes, e.ID)
	}
	if s.subs[subscriptionFor(c.info)] {
		add(s.eventLocked(event("message")))
	}
	if !c.info.IsIM && strings.Contains(m.Text, "<@"+DefaultBotUser+">") && s.subs["app_mention"] {
		add(s.eventLocked(event("app_mention")))
	}
	s.notifyLocked()
	return out, nil
}

// Press presses the button with actionID in the bot's message ts in
// channel, as user, and returns the interactive envelope's id. The
// block_actions payload carries the button's action_id, block_id and
// value, the user, the channel, and the message as it is now.
func (s *Server) Press(channel, ts, user, actionID string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.chans[channel]
	if c == nil {
		return "", fmt.Errorf("fakeslack: no channel %q", channel)
	}
	m := c.find(ts)
	if m == nil || m.BotID == "" {
		return "", fmt.Errorf("fakeslack: no bot message %s in %s", ts, channel)
	}
	var blocks []struct {
		Type     string            `json:"type"`
		BlockID  string            `json:"block_id"`
		Elements []json.RawMessage `json:"elements"`
	}
	json.Unmarshal(m.Blocks, &blocks)
	var action map[string]any
	for _, b := range blocks {
		if b.Type != "actions" {
			continue
		}
		for _, raw := range b.Elements {
			var el struct {
				Type     string          `json:"type"`
				ActionID string          `json:"action_id"`
				Value    string          `json:"value"`
				Style    string          `json:"style"`
				Text     json.RawMessage `json:"text"`
			}
			json.Unmarshal(raw, &el)
			if el.Type == "button" && el.ActionID == actionID {
				blockID := b.BlockID
				if blockID == "" {
					blockID = "fake-block"
				}
				action = map[string]any{"type": "button", "action_id": el.ActionID, "block_id": blockID, "text": el.Text, "value": el.Value, "action_ts": s.nextTSLocked()}
				if el.Style != "" {
					action["style"] = el.Style
				}
			}
		}
	}
	if action == nil {
		return "", fmt.Errorf("fakeslack: message %s in %s has no button with action_id %q", ts, channel, actionID)
	}
	u := s.addUserLocked(User{ID: user})
	msg := s.messageJSON(m)
	container := map[string]any{"type": "message", "message_ts": m.TS, "channel_id": c.info.ID, "is_ephemeral": false}
	if m.ThreadTS != "" {
		container["thread_ts"] = m.ThreadTS
	}
	chName := c.info.Name
	if c.info.IsIM {
		chName = "directmessage"
	}
	payload := map[string]any{
		"type":                  "block_actions",
		"user":                  map[string]any{"id": u.ID, "username": u.Name, "name": u.Name, "team_id": s.teamID},
		"api_app_id":            DefaultAppID,
		"token":                 "fake-verification-token",
		"container":             container,
		"trigger_id":            s.nextIDLocked("fake-trigger-"),
		"team":                  map[string]any{"id": s.teamID, "domain": "fake"},
		"enterprise":            nil,
		"is_enterprise_install": false,
		"channel":               map[string]any{"id": c.info.ID, "name": chName},
		"message":               msg,
		"state":                 map[string]any{"values": map[string]any{}},
		"response_url":          s.URL() + "/actions/" + s.teamID + "/fake",
		"actions":               []any{action},
	}
	e := s.enqueueLocked(EnvelopeInteractive, "", payload)
	return e.ID, nil
}

package fakeslack

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// User is a member of the workspace.
type User struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	RealName string `json:"real_name,omitempty"`
	IsBot    bool   `json:"is_bot,omitempty"`
	BotID    string `json:"bot_id,omitempty"`
}

// Channel is a conversation: a public channel (C…) or a direct message
// channel (D…) between the bot and one person.
type Channel struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	IsIM bool   `json:"is_im,omitempty"`
	User string `json:"user,omitempty"` // the person of a direct message channel
}

// Type is the channel_type of its message events: "im" or "channel".
func (c Channel) Type() string {
	if c.IsIM {
		return "im"
	}
	return "channel"
}

type channel struct {
	info Channel
	msgs []*Message // in ts order
	ops  []Op
}

// Reaction is an emoji on a message and who added it, in order.
type Reaction struct {
	Name  string   `json:"name"`
	Users []string `json:"users"`
	Count int      `json:"count"`
}

// Message is a message in a channel as it is now, the person's or the bot's.
type Message struct {
	TS        string          `json:"ts"`
	ThreadTS  string          `json:"thread_ts,omitempty"`
	User      string          `json:"user"`
	BotID     string          `json:"bot_id,omitempty"`
	Text      string          `json:"text"`
	Blocks    json.RawMessage `json:"blocks,omitempty"`
	Mrkdwn    *bool           `json:"mrkdwn,omitempty"` // as the bot asked with mrkdwn=false/true; nil when not given
	Files     []string        `json:"files,omitempty"`  // file ids
	Edits     []string        `json:"edits,omitempty"`  // earlier texts, oldest first
	Truncated bool            `json:"truncated,omitempty"`
	Reactions []Reaction      `json:"reactions,omitempty"`
}

func (m *Message) clone() Message {
	c := *m
	c.Blocks = slices.Clone(m.Blocks)
	c.Files = slices.Clone(m.Files)
	c.Edits = slices.Clone(m.Edits)
	c.Reactions = nil
	for _, r := range m.Reactions {
		c.Reactions = append(c.Reactions, Reaction{Name: r.Name, Users: slices.Clone(r.Users), Count: r.Count})
	}
	if m.Mrkdwn != nil {
		b := *m.Mrkdwn
		c.Mrkdwn = &b
	}
	return c
}

// Op is one thing the bot did in a channel, in the order the API accepted
// it.
type Op struct {
	Time     time.Time `json:"time"`
	Method   string    `json:"method"`
	TS       string    `json:"ts,omitempty"` // the message made, changed or reacted to
	ThreadTS string    `json:"thread_ts,omitempty"`
	Text     string    `json:"text,omitempty"`
	Reaction string    `json:"reaction,omitempty"`
	User     string    `json:"user,omitempty"` // an ephemeral message's recipient
}

// Ephemeral is a message the bot showed to one person only.
type Ephemeral struct {
	Channel   string          `json:"channel"`
	User      string          `json:"user"`
	Text      string          `json:"text"`
	Blocks    json.RawMessage `json:"blocks,omitempty"`
	ThreadTS  string          `json:"thread_ts,omitempty"`
	MessageTS string          `json:"message_ts"`
}

// Upload is a file the bot uploaded and shared.
type Upload struct {
	FileID         string `json:"file_id"`
	Name           string `json:"name"`
	Title          string `json:"title,omitempty"`
	Size           int    `json:"size"`
	Channel        string `json:"channel,omitempty"`
	ThreadTS       string `json:"thread_ts,omitempty"`
	InitialComment string `json:"initial_comment,omitempty"`
	TS             string `json:"ts,omitempty"` // the message that shares it
}

type file struct {
	id, name, title, mimetype, user string
	data                            []byte
	created                         int64
	uploaded                        bool // for the bot's: content received at the upload URL
	length                          int  // announced by files.getUploadURLExternal
	completed                       bool
	channels                        []string
}

// DefaultSubscriptions are the bot events the fake's app subscribes to:
// direct messages, every message in channels it is in, and mentions.
var DefaultSubscriptions = []string{"message.im", "message.channels", "app_mention"}

// SetSubscriptions replaces the bot events delivered ("message.im",
// "message.channels", "app_mention"), as the app's event subscriptions
// would.
func (s *Server) SetSubscriptions(events ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subs = map[string]bool{}
	for _, e := range events {
		s.subs[e] = true
	}
}

// nextTSLocked returns a new message timestamp, "seconds.micros", later
// than every one before; s.mu must be held.
func (s *Server) nextTSLocked() string {
	us := s.clk.Now().UnixMicro()
	if us <= s.lastTS {
		us = s.lastTS + 1
	}
	s.lastTS = us
	return fmt.Sprintf("%d.%06d", us/1e6, us%1e6)
}

func (s *Server) nextIDLocked(prefix string) string {
	s.seq++
	return fmt.Sprintf("%s%08d", prefix, s.seq)
}

func (s *Server) addUserLocked(u User) *User {
	if old, ok := s.users[u.ID]; ok {
		if u.Name != "" {
			old.Name = u.Name
		}
		if u.RealName != "" {
			old.RealName = u.RealName
		}
		return old
	}
	if u.Name == "" {
		u.Name = strings.ToLower(u.ID)
	}
	if u.RealName == "" {
		u.RealName = u.Name
	}
	s.users[u.ID] = &u
	s.userOrder = append(s.userOrder, u.ID)
	return &u
}

// AddUser makes a person known to the workspace (Post adds the people it
// names itself).
func (s *Server) AddUser(u User) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addUserLocked(u)
	s.notifyLocked()
}

// dmIDFor is the id of the direct message channel with user.
func dmIDFor(user string) string { return "D" + strings.TrimPrefix(user, "U") }

func (s *Server) addChannelLocked(info Channel) *channel {
	if c, ok := s.chans[info.ID]; ok {
		return c
	}
	if info.Name == "" && !info.IsIM {
		info.Name = strings.ToLower(info.ID)
	}
	c := &channel{info: info}
	s.chans[info.ID] = c
	s.chanOrder = append(s.chanOrder, info.ID)
	return c
}

// AddChannel makes a public channel known, with the bot in it.
func (s *Server) AddChannel(id, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addChannelLocked(Channel{ID: id, Name: name})
	s.notifyLocked()
}

// DMChannel returns the id of the direct message channel between the bot
// and user, making it if needed.
func (s *Server) DMChannel(user string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addUserLocked(User{ID: user})
	c := s.addChannelLocked(Channel{ID: dmIDFor(user), IsIM: true, User: user})
	s.notifyLocked()
	return c.info.ID
}

// channelLocked finds a channel by id, or a user id's direct message
// channel (chat.postMessage accepts a user id as its channel).
func (s *Server) channelLocked(id string) *channel {
	if c := s.chans[id]; c != nil {
		return c
	}
	if strings.HasPrefix(id, "U") && s.users[id] != nil && !s.users[id].IsBot {
		return s.addChannelLocked(Channel{ID: dmIDFor(id), IsIM: true, User: id})
	}
	return nil
}

func (c *channel) find(ts string) *Message {
	for _, m := range c.msgs {
		if m.TS == ts {
			return m
		}
	}
	return nil
}

// Channels returns every channel known, in the order the fake learnt of
// them.
func (s *Server) Channels() []Channel {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Channel, 0, len(s.chanOrder))
	for _, id := range s.chanOrder {
		out = append(out, s.chans[id].info)
	}
	return out
}

// Messages returns every message of channel, the person's and the bot's,
// in ts order, as they are now (edits, reactions). Thread replies are
// included; Thread picks one thread.
func (s *Server) Messages(channel string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.chans[channel]
	if c == nil {
		return nil
	}
	out := make([]Message, len(c.msgs))
	for i, m := range c.msgs {
		out[i] = m.clone()
	}
	return out
}

// BotMessages returns the bot's messages in channel, in order.
func (s *Server) BotMessages(channel string) []Message {
	var out []Message
	for _, m := range s.Messages(channel) {
		if m.BotID != "" {
			out = append(out, m)
		}
	}
	return out
}

// Thread returns the parent message ts and its replies, in order.
func (s *Server) Thread(channel, ts string) []Message {
	var out []Message
	for _, m := range s.Messages(channel) {
		if m.TS == ts || m.ThreadTS == ts {
			out = append(out, m)
		}
	}
	return out
}

// Message returns one message of channel as it is now.
func (s *Server) Message(channel, ts string) (Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.chans[channel]; c != nil {
		if m := c.find(ts); m != nil {
			return m.clone(), true
		}
	}
	return Message{}, false
}

// Ops returns what the bot did in channel, in order.
func (s *Server) Ops(channel string) []Op {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.chans[channel]; c != nil {
		return slices.Clone(c.ops)
	}
	return nil
}

// Ephemerals returns the ephemeral messages the bot showed in channel.
func (s *Server) Ephemerals(channel string) []Ephemeral {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Ephemeral
	for _, e := range s.ephs {
		if e.Channel == channel {
			out = append(out, e)
		}
	}
	return out
}

// Uploads returns the files the bot uploaded and shared, in order.
func (s *Server) Uploads() []Upload {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.uploads)
}

// FileData returns the content of a file by id.
func (s *Server) FileData(id string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.files[id]
	if f == nil {
		return nil, false
	}
	return f.data, true
}

// RateLimit answers the next n calls of method (n <= 0: every call, until
// lifted with ClearRateLimits) with HTTP 429, Retry-After: retryAfter
// seconds.
func (s *Server) RateLimit(method string, n, retryAfter int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limits = append(s.limits, &limit{method: method, left: n, retryAfter: max(retryAfter, 1)})
	s.notifyLocked()
}

// RateLimitFor answers every call of method ("" for every method) with 429
// until d has passed on the server's clock; Retry-After is the time left,
// rounded up to a whole second.
func (s *Server) RateLimitFor(method string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limits = append(s.limits, &limit{method: method, until: s.clk.Now().Add(d)})
	s.notifyLocked()
}

// ClearRateLimits lifts every rate limit.
func (s *Server) ClearRateLimits() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limits = nil
	s.notifyLocked()
}

// FailNext answers the next n calls of method with {"ok":false,"error":code}.
func (s *Server) FailNext(method string, n int, code string) { s.FailAfter(method, 0, n, code) }

// FailAfter lets the next skip calls of method through, then answers the
// n after them with {"ok":false,"error":code} (the second file of a
// message refused, say).
func (s *Server) FailAfter(method string, skip, n int, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n > 0 {
		s.failures = append(s.failures, &failure{method: method, skip: skip, left: n, code: code})
	}
}

type limit struct {
	method     string // "" for every method
	left       int    // calls left; <= 0 with zero until: unlimited
	retryAfter int
	until      time.Time
}

type failure struct {
	method string
	skip   int // calls still let through before the failures
	left   int
	code   string
}

// injected returns the injected answer for a call of method, if any.
func (s *Server) injected(method string) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clk.Now()
	for i := 0; i < len(s.limits); i++ {
		l := s.limits[i]
		if l.method != "" && l.method != method {
			continue
		}
		if !l.until.IsZero() {
			left := l.until.Sub(now)
			if left <= 0 {
				s.limits = slices.Delete(s.limits, i, i+1)
				i--
				continue
			}
			return &apiError{status: 429, code: "ratelimited", retryAfter: int(math.Ceil(left.Seconds()))}
		}
		if l.left > 0 {
			l.left--
			if l.left == 0 {
				s.limits = slices.Delete(s.limits, i, i+1)
			}
		}
		return &apiError{status: 429, code: "ratelimited", retryAfter: l.retryAfter}
	}
	for i, f := range s.failures {
		if f.method == method {
			if f.skip > 0 {
				f.skip--
				continue
			}
			f.left--
			if f.left <= 0 {
				s.failures = slices.Delete(s.failures, i, i+1)
			}
			return fail(f.code)
		}
	}
	return nil
}

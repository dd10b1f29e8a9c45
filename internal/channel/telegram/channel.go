package telegram

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"

	"github.com/dispatchd/dispatch/internal/channel"
	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/permission"
	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/webhook"
)

// The running channel. Sends go through go-telegram/bot; getUpdates is
// asked here, not through the client's own polling loop, because that
// loop confirms an update to Telegram (by asking for the next offset)
// before its handler has run: a daemon killed then would lose it. Here
// the next offset is asked for only after the update, and the offset
// after it, are committed (store.AcceptFromChannel), so an update is
// never lost and, its update_id being the message's client id, never
// accepted twice.

// Store is what the channel needs of the store.
type Store interface {
	channel.Store
	AcceptFromChannel(ctx context.Context, channel string, next int64, chatID, text, clientID string) (id string, dup bool, err error)
	ChannelAdvance(ctx context.Context, channel string, next int64) error
	// List and OpenRequests find the chats whose turn runs when the
	// channel starts (typing shown again after a restart or a takeover).
	List(ctx context.Context, f store.Filter) ([]store.Message, error)
	OpenRequests(ctx context.Context, chat string) ([]permission.Request, error)
}

// Config configures a Channel.
type Config struct {
	Name   string // the channel's name (its state in the store)
	Token  string
	APIURL string // the Bot API's base URL
	Allow  []int64
	Store  Store
	// Accepted is told of each new message accepted (the supervisor's
	// wake-up of the chat's session).
	Accepted func(chat string)
	Clock    clock.Clock
	Log      *slog.Logger
	// Control carries out the in-chat commands (nil: they answer that
	// they are not available).
	Control Control
	// Permissions answers the permission buttons (nil: a press is told
	// that requests cannot be answered here).
	Permissions channel.Permissions
	// Metrics, if set, counts updates and deliveries.
	Metrics *channel.Metrics
	// PollTimeout is getUpdates' long-poll timeout (default 25 s).
	PollTimeout time.Duration
	// Folders gives each chat's working directory, for attachments in
	// and files out (nil: neither).
	Folders channel.Folders
	// MaxAttachment is the largest attachment taken in (0:
	// channel.DefaultMaxAttachment).
	MaxAttachment int64
	// Until, if set, is when the channel's right to run ends (by Clock):
	// the deadline of the cluster role under which it runs, zero when the
	// role is not held. No poll or send starts at or after it and none
	// goes on past it (see channel.OutboxConfig.Until).
	Until func() time.Time
}

// Control is what the in-chat commands do to a chat.
type Control interface {
	// Restart starts chat's conversation over, clean.
	Restart(ctx context.Context, chat string, clean bool) error
	// ChatStatus is a short description of chat's health and queue.
	ChatStatus(ctx context.Context, chat string) (string, error)
	// StopTurn stops chat's turn in flight; its messages are not
	// retried (they end answered "Stopped."). false: no turn was running.
	StopTurn(ctx context.Context, chat string) (bool, error)
}

// Typing is renewed this often while a chat's turn runs (Telegram shows
// it for about 5 s), and given up after typingMax.
const (
	TypingEvery = 4 * time.Second
	typingMax   = 30 * time.Minute
)

// Channel is one Telegram bot inside the daemon.
type Channel struct {
	cfg   Config
	bot   *bot.Bot
	http  *http.Client
	allow map[int64]bool
	out   *channel.Outbox
	// progress keeps the chats' status messages.
	progress *progress

	mu       sync.Mutex
	me       Bot
	typing   map[int64]time.Time // chats whose turn runs: since when
	lastPoll time.Time           // the last getUpdates answered
	lastUpd  time.Time           // the last update taken in
	lastErr  string
	conflict bool           // lastErr is a 409 Conflict: another poller
	loops    channel.Loops  // its own lock: not under mu
	bg       sync.WaitGroup // "typing" actions under way
}

// New makes a channel; Start runs it.
func New(cfg Config) (*Channel, error) {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.PollTimeout <= 0 {
		cfg.PollTimeout = 25 * time.Second
	}
	cfg.APIURL = strings.TrimRight(cfg.APIURL, "/")
	c := &Channel{
		cfg:      cfg,
		http:     &http.Client{Timeout: cfg.PollTimeout + 15*time.Second},
		allow:    map[int64]bool{},
		typing:   map[int64]time.Time{},
		progress: newProgress(),
	}
	for _, id := range cfg.Allow {
		c.allow[id] = true
	}
	b, err := bot.New(cfg.Token, bot.WithServerURL(cfg.APIURL), bot.WithSkipGetMe(),
		bot.WithHTTPClient(30*time.Second, &http.Client{Timeout: 30 * time.Second}))
	if err != nil {
		return nil, fmt.Errorf("telegram %s: %w", cfg.Name, err)
	}
	c.bot = b
	cfg.Metrics.Init(cfg.Name)
	c.out = channel.NewOutbox(channel.OutboxConfig{
		Channel: cfg.Name, Prefix: ChatPrefix, Store: cfg.Store, Sender: sender{c}, Clock: cfg.Clock, Log: cfg.Log,
		Metrics: cfg.Metrics, Until: cfg.Until,
		Enqueued: c.enqueued,
		Progress: c.progress.step,
	})
	return c, nil
}

// Name is the channel's name.
func (c *Channel) Name() string { return c.cfg.Name }

// Start runs the channel (intake, outbox, typing) until Stop.
func (c *Channel) Start() {
	c.loops.Start(c.progressLoop, c.intake, c.out.Run, c.typingLoop)
}

// Stop stops the channel and waits for it.
func (c *Channel) Stop() {
	if !c.loops.Stop() {
		return
	}
	c.bg.Wait()
}

// Status is the channel at a glance.
type Status struct {
	Name, Kind string
	Connected  bool      // the last getUpdates was answered
	LastPoll   time.Time // when
	LastUpdate time.Time // the last update taken in
	Error      string    // the last error, while not connected
	Conflict   bool      // Error is Telegram's 409: another poller uses the bot
	Bot        string    // the bot's @username
}

// Status reports the channel's state.
func (c *Channel) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Status{Name: c.cfg.Name, Kind: "telegram", Connected: c.lastErr == "" && !c.lastPoll.IsZero(),
		LastPoll: c.lastPoll, LastUpdate: c.lastUpd, Error: c.lastErr, Conflict: c.conflict, Bot: c.me.Username}
}

func (c *Channel) setErr(err error) {
	c.cfg.Metrics.SetConnected(c.cfg.Name, err == nil)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conflict = errors.As(err, new(*ConflictError))
	if c.conflict {
		c.cfg.Metrics.Conflict(c.cfg.Name)
	}
	if err == nil {
		c.lastErr, c.lastPoll = "", c.cfg.Clock.Now()
	} else {
		c.lastErr = err.Error()
	}
}

// ConflictError is Telegram's 409 Conflict to getUpdates: another
// process polls the same bot (Telegram ends the earlier of two long polls
// with it, so two pollers take turns failing). The channel backs off and
// tries again; its status shows the conflict.
type ConflictError struct{ Description string }

func (e *ConflictError) Error() string {
	return "another poller is using this bot (getUpdates: 409 " + e.Description + ")"
}

// heldFor is how long the channel may still poll (its role's deadline);
// ok is false when it may not poll now.
func (c *Channel) heldFor() (left time.Duration, ok bool) {
	if c.cfg.Until == nil {
		return c.cfg.PollTimeout, true
	}
	left = c.cfg.Until().Sub(c.cfg.Clock.Now())
	return left, left > 0
}

// sleep waits d or until ctx ends.
func (c *Channel) sleep(ctx context.Context, d time.Duration) bool {
	return clock.Sleep(ctx, c.cfg.Clock, d)
}

// intake long-polls getUpdates and accepts each update exactly once.
func (c *Channel) intake(ctx context.Context) {
	log := c.cfg.Log.With("channel", c.cfg.Name)
	select {
	case <-ctx.Done():
		return
	case <-c.out.Ready():
	}
	fail := 0
	backoff := func(err error) bool {
		fail++
		c.setErr(err)
		d := webhook.Backoff(fail, 500*time.Millisecond, 30*time.Second, rand.Float64)
		log.Warn("telegram: polling failed, retrying", "err", err, "in", d)
		return c.sleep(ctx, d)
	}
	for ctx.Err() == nil {
		me, err := c.bot.GetMe(ctx)
		if err == nil {
			c.mu.Lock()
			c.me = Bot{ID: me.ID, Username: me.Username}
			c.mu.Unlock()
			c.registerCommands(ctx)
			break
		}
		if ctx.Err() != nil || !backoff(redact(err, c.cfg.Token)) {
			return
		}
	}
	for ctx.Err() == nil {
		left, held := c.heldFor()
		if !held {
			// The role's deadline passed: the channel is stopped, or the
			// role renewed, in a moment.
			if !c.sleep(ctx, 100*time.Millisecond) {
				return
			}
			continue
		}
		cur, err := c.cfg.Store.ChannelCursor(ctx, c.cfg.Name)
		if err != nil {
			if !backoff(err) {
				return
			}
			continue
		}
		ups, err := c.getUpdates(ctx, cur.Inbound, min(left, c.cfg.PollTimeout))
		if err != nil {
			if ctx.Err() != nil || !backoff(err) {
				return
			}
			continue
		}
		fail = 0
		c.setErr(nil)
		for _, u := range ups {
			if _, held := c.heldFor(); !held {
				break // left to the next holder: the offset did not move
			}
			for ctx.Err() == nil {
				err := c.handle(ctx, u)
				if err == nil {
					break
				}
				// Never skipped: a store error is retried until it commits.
				if !backoff(fmt.Errorf("update %d: %w", u.ID, err)) {
					return
				}
			}
		}
	}
}

// handle applies Intake to u and commits its outcome with the next offset.
func (c *Channel) handle(ctx context.Context, u *models.Update) error {
	c.mu.Lock()
	me := c.me
	c.mu.Unlock()
	next := u.ID + 1
	c.mu.Lock()
	c.lastUpd = c.cfg.Clock.Now()
	c.mu.Unlock()
	if u.CallbackQuery != nil {
		pd := Press(u, c.allow)
		if pd.Action != PressIgnore {
			if err := c.press(ctx, pd); err != nil {
				return err
			}
		}
		if err := c.cfg.Store.ChannelAdvance(ctx, c.cfg.Name, next); err != nil {
			return err
		}
		c.cfg.Metrics.Update(c.cfg.Name, channel.UpdatePress)
		return nil
	}
	d := Intake(u, me, c.allow)
	switch d.Action {
	case Accept:
		chat := ChatID(d.Chat)
		text := d.Text
		if d.File.ID != "" {
			// Downloaded before the accept commits (see attach.go).
			var err error
			if text, err = c.attach(ctx, u.ID, d); err != nil {
				var r *refusal
				if errors.As(err, &r) {
					return c.acceptRefused(ctx, next, d.Chat, r)
				}
				return err
			}
		}
		_, dup, err := c.cfg.Store.AcceptFromChannel(ctx, c.cfg.Name, next, chat, text, strconv.FormatInt(u.ID, 10))
		if err != nil {
			return err
		}
		if dup {
			c.cfg.Metrics.Update(c.cfg.Name, channel.UpdateDuplicate)
		} else {
			c.cfg.Metrics.Update(c.cfg.Name, channel.UpdateAccepted)
			c.mu.Lock()
			c.typing[d.Chat] = c.cfg.Clock.Now()
			c.mu.Unlock()
			c.bg.Go(func() { c.action(context.WithoutCancel(ctx), d.Chat) })
			if c.cfg.Accepted != nil {
				c.cfg.Accepted(chat)
			}
		}
		return nil
	case Command:
		// An empty answer says nothing now (/stop: the turn's "Stopped."
		// comes through the outbox, in order with the chat's replies).
		if text := c.command(ctx, ChatID(d.Chat), d.Command); text != "" {
			if _, err := c.bot.SendMessage(ctx, &bot.SendMessageParams{ChatID: d.Chat, Text: text}); err != nil {
				c.cfg.Log.Warn("telegram: could not answer a command", "channel", c.cfg.Name, "chat", d.Chat, "err", redact(err, c.cfg.Token))
			}
		}
		if err := c.cfg.Store.ChannelAdvance(ctx, c.cfg.Name, next); err != nil {
			return err
		}
		c.cfg.Metrics.Update(c.cfg.Name, channel.UpdateCommand)
		return nil
	case Refuse, Unsupported:
		// Answered before the cursor moves: a crash between the two
		// answers again, never not at all.
		text, outcome := UnsupportedText, channel.UpdateUnsupported
		if d.Action == Refuse {
			outcome = channel.UpdateRefused
			text = RefusalText(d.User)
			c.cfg.Log.Info("telegram: refused a stranger", "channel", c.cfg.Name, "user", d.User, "chat", d.Chat)
		}
		if _, err := c.bot.SendMessage(ctx, &bot.SendMessageParams{ChatID: d.Chat, Text: text}); err != nil {
			c.cfg.Log.Warn("telegram: could not answer", "channel", c.cfg.Name, "chat", d.Chat, "err", redact(err, c.cfg.Token))
		}
		if err := c.cfg.Store.ChannelAdvance(ctx, c.cfg.Name, next); err != nil {
			return err
		}
		c.cfg.Metrics.Update(c.cfg.Name, outcome)
		return nil
	}
	if err := c.cfg.Store.ChannelAdvance(ctx, c.cfg.Name, next); err != nil {
		return err
	}
	c.cfg.Metrics.Update(c.cfg.Name, channel.UpdateIgnored)
	return nil
}

// command carries out an in-chat command and returns its answer. It runs
// before the offset moves: a crash between the two carries it out again
// (both are harmless twice).
func (c *Channel) command(ctx context.Context, chat, cmd string) string {
	if c.cfg.Control == nil {
		return "This command is not available here."
	}
	switch cmd {
	case CmdNew:
		if err := c.cfg.Control.Restart(ctx, chat, true); err != nil {
			c.cfg.Log.Info("telegram: /new", "channel", c.cfg.Name, "chat", chat, "err", err)
			return "There is no conversation to start over yet."
		}
		return "Starting a clean conversation: earlier context is gone."
	case CmdStatus:
		st, err := c.cfg.Control.ChatStatus(ctx, chat)
		if err != nil {
			return "No conversation yet."
		}
		return st
	case CmdStop:
		stopped, err := c.cfg.Control.StopTurn(ctx, chat)
		switch {
		case err != nil:
			c.cfg.Log.Info("telegram: /stop", "channel", c.cfg.Name, "chat", chat, "err", err)
			return "Nothing is running."
		case !stopped:
			return "Nothing is running."
		}
		return ""
	}
	return "Unknown command."
}

// registerCommands tells Telegram the in-chat commands (best effort).
func (c *Channel) registerCommands(ctx context.Context) {
	cmds := make([]models.BotCommand, len(Commands))
	for i, cmd := range Commands {
		cmds[i] = models.BotCommand{Command: cmd.Name, Description: cmd.Description}
	}
	if _, err := c.bot.SetMyCommands(ctx, &bot.SetMyCommandsParams{Commands: cmds}); err != nil {
		c.cfg.Log.Warn("telegram: setMyCommands failed", "channel", c.cfg.Name, "err", redact(err, c.cfg.Token))
	}
}

// getUpdates asks for the updates from offset on, long-polling for up to
// wait (whole seconds; the request ends at wait in any case).
func (c *Channel) getUpdates(ctx context.Context, offset int64, wait time.Duration) ([]*models.Update, error) {
	poll := wait
	if wait < c.cfg.PollTimeout {
		// Bounded by the role's deadline: Telegram answers a second
		// before the request is cut off.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, wait)
		defer cancel()
		poll = max(wait-time.Second, 0)
	}
	q := url.Values{}
	q.Set("offset", strconv.FormatInt(offset, 10))
	q.Set("timeout", strconv.Itoa(int(poll/time.Second)))
	q.Set("allowed_updates", `["message","callback_query"]`)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.APIURL+"/bot"+c.cfg.Token+"/getUpdates",
		strings.NewReader(q.Encode()))
	if err != nil {
		return nil, redact(err, c.cfg.Token)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, redact(err, c.cfg.Token)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, redact(err, c.cfg.Token)
	}
	var r struct {
		OK          bool             `json:"ok"`
		Result      []*models.Update `json:"result"`
		Description string           `json:"description"`
		ErrorCode   int              `json:"error_code"`
		Parameters  map[string]any   `json:"parameters"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("getUpdates: HTTP %d, not a Bot API answer", resp.StatusCode)
	}
	if !r.OK && r.ErrorCode == http.StatusConflict {
		return nil, &ConflictError{Description: r.Description}
	}
	if !r.OK {
		return nil, fmt.Errorf("getUpdates: %d %s", r.ErrorCode, r.Description)
	}
	return r.Result, nil
}

// enqueued is told of each delivery the outbox copies from the feed: a
// reply or dead letter ends the chat's turn (typing stops, its status
// message shows its last line); a permission request waits for a person
// (typing stops), and a decision lets the turn go on (typing again).
func (c *Channel) enqueued(d store.ChannelDelivery) {
	id, ok := ParseChatID(d.ChatID)
	if !ok {
		return
	}
	switch d.Kind {
	case events.Reply, events.DeadLetter:
		c.progress.ended(id)
		fallthrough
	case events.PermissionRequest:
		c.mu.Lock()
		delete(c.typing, id)
		c.mu.Unlock()
	case events.PermissionDecided:
		if p, err := channel.PromptOf(d); err == nil && p.Decision != permission.Expired {
			c.mu.Lock()
			c.typing[id] = c.cfg.Clock.Now()
			c.mu.Unlock()
		}
	}
}

// typingLoop renews "typing" in every chat whose turn runs.
func (c *Channel) typingLoop(ctx context.Context) {
	for _, id := range c.resumeTyping(ctx) {
		c.action(ctx, id)
	}
	for c.sleep(ctx, TypingEvery) {
		now := c.cfg.Clock.Now()
		c.mu.Lock()
		var chats []int64
		for id, since := range c.typing {
			if now.Sub(since) > typingMax {
				delete(c.typing, id)
				continue
			}
			chats = append(chats, id)
		}
		c.mu.Unlock()
		for _, id := range chats {
			c.action(ctx, id)
		}
	}
}

// resumeTyping marks the chats whose turn was running when the channel
// started (a restart, or the role taken over from another node): those
// with messages in flight and no permission request waiting for a person.
// What happened before the start was told to the channel that ran then,
// so without this their "typing" would be gone until the reply. It
// returns the chats it marked.
func (c *Channel) resumeTyping(ctx context.Context) (marked []int64) {
	ms, err := c.cfg.Store.List(ctx, store.Filter{State: store.Inflight})
	if err != nil {
		c.cfg.Log.Warn("telegram: could not find the turns running (no typing shown for them)", "channel", c.cfg.Name, "err", err)
		return nil
	}
	running := map[int64]bool{}
	for _, m := range ms {
		id, ok := ParseChatID(m.ChatID)
		if !ok || running[id] {
			continue
		}
		if open, err := c.cfg.Store.OpenRequests(ctx, m.ChatID); err != nil || len(open) > 0 {
			continue // waiting for a person (or unknown): no typing
		}
		running[id] = true
	}
	now := c.cfg.Clock.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for id := range running {
		if _, set := c.typing[id]; !set {
			c.typing[id] = now
			marked = append(marked, id)
		}
	}
	return marked
}

// action shows "typing" in chat once (best effort).
func (c *Channel) action(ctx context.Context, chat int64) {
	limit := 10 * time.Second
	if c.cfg.Until != nil { // nothing is sent past the role's deadline
		left, ok := c.heldFor()
		if !ok {
			return
		}
		limit = min(left, limit)
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	_, _ = c.bot.SendChatAction(ctx, &bot.SendChatActionParams{ChatID: chat, Action: models.ChatActionTyping})
}

// sender sends deliveries through the Bot API.
type sender struct{ c *Channel }

// Parts is what a delivery says, as Telegram HTML messages in order. It is
// a pure function of the delivery, so a restart finds the same parts and
// sends only those not yet accepted.
func Parts(d store.ChannelDelivery) ([]string, error) {
	var h string
	switch d.Kind {
	case "dead_letter":
		h = html.EscapeString(DeadLetterText(d.Text))
	default:
		text, files := channel.FileMarkers(d.Text)
		if strings.TrimSpace(text) == "" && len(files) > 0 {
			return nil, nil // only files: no text part
		}
		h = HTML(text)
	}
	if strings.TrimSpace(h) == "" {
		h = html.EscapeString("(empty reply)")
	}
	return Split(h, MaxMessageLen)
}

// Files are the paths of the files a delivery sends after its text parts.
func Files(d store.ChannelDelivery) []string {
	if d.Kind == "dead_letter" {
		return nil
	}
	_, files := channel.FileMarkers(d.Text)
	return files
}

func (s sender) Send(ctx context.Context, d store.ChannelDelivery, sent func(string) error) error {
	chat, ok := ParseChatID(d.ChatID)
	if !ok {
		return channel.Permanent(fmt.Errorf("%q is not a Telegram chat", d.ChatID))
	}
	parts, err := Parts(d)
	if err != nil {
		return channel.Permanent(err)
	}
	off := true
	for i := d.Sent; i < len(parts); i++ {
		p := &bot.SendMessageParams{ChatID: chat, Text: parts[i], ParseMode: models.ParseModeHTML,
			LinkPreviewOptions: &models.LinkPreviewOptions{IsDisabled: &off}}
		m, err := s.c.bot.SendMessage(ctx, p)
		if err != nil && errors.Is(err, bot.ErrorBadRequest) && strings.Contains(err.Error(), "can't parse entities") {
			// Telegram refused the formatting: the same part as plain text.
			plain, perr := PlainText(parts[i], MaxMessageLen)
			if perr != nil {
				return channel.Permanent(perr)
			}
			p.Text, p.ParseMode = plain, ""
			m, err = s.c.bot.SendMessage(ctx, p)
		}
		if err != nil {
			return classify(redact(err, s.c.cfg.Token))
		}
		if err := sent(strconv.Itoa(m.ID)); err != nil {
			return err
		}
	}
	return s.sendFiles(ctx, d.ChatID, chat, Files(d), len(parts), d.Sent, sent)
}

// classify maps a Bot API error to the outbox's kinds.
func classify(err error) error {
	var tm *bot.TooManyRequestsError
	if errors.As(err, &tm) {
		return &channel.RateLimitedError{After: time.Duration(max(tm.RetryAfter, 1)) * time.Second, Err: err}
	}
	if errors.Is(err, bot.ErrorForbidden) || errors.Is(err, bot.ErrorBadRequest) ||
		errors.Is(err, bot.ErrorNotFound) {
		return channel.Permanent(err)
	}
	return err
}

// redactedError is an error with the bot token cut out of its text.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redact removes the token from err's text (URLs carry it).
func redact(err error, token string) error {
	if err == nil || token == "" || !strings.Contains(err.Error(), token) {
		return err
	}
	return &redactedError{msg: strings.ReplaceAll(err.Error(), token, "***"), err: err}
}

package slack

import (
	"context"
	"errors"
	"fmt"
	stdlog "log"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	slackapi "github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
	"github.com/slack-go/slack/socketmode"

	"github.com/dispatchd/dispatch/internal/channel"
	"github.com/dispatchd/dispatch/internal/channel/telegram"
	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/webhook"
)

// The running channel. Events come over Socket Mode through slack-go's
// socketmode client, which hands each envelope to the channel without
// acknowledging it (slack-go v0.36.0: the consumer calls Client.Ack; only
// its optional SocketmodeHandler acknowledges on its own, and the channel
// does not use it). The channel commits the message first (store.Accept,
// keyed on the message's ts, see Intent.ClientID) and acknowledges the
// envelope only then: a daemon killed between the two is sent the
// envelope again by Slack, and the second accept is a duplicate. Replies
// go out through the channel outbox with chat.postMessage.

// Store is what the channel needs of the store.
type Store interface {
	channel.Store
	Accept(ctx context.Context, chatID, text, clientID string) (id string, dup bool, err error)
	Get(ctx context.Context, id string) (store.Message, error)
	ByClient(ctx context.Context, chatID, clientID string) (id string, ok bool, err error)
	EventsBySeq(ctx context.Context, seqs []int64) (map[int64]events.Event, error)
	// List finds a chat's messages still in line (a permission request's
	// thread after a restart).
	List(ctx context.Context, f store.Filter) ([]store.Message, error)
}

// Control is what the in-chat commands do to a chat.
type Control interface {
	// Restart starts chat's conversation over, clean.
	Restart(ctx context.Context, chat string, clean bool) error
	// ChatStatus is a short description of chat's health and queue.
	ChatStatus(ctx context.Context, chat string) (string, error)
	// StopTurn stops chat's turn in flight; its messages are not
	// retried (they end answered "Stopped.", which the outbox delivers).
	// false: no turn was running.
	StopTurn(ctx context.Context, chat string) (bool, error)
}

// Config configures a Channel.
type Config struct {
	Name     string // the channel's name (its state in the store)
	BotToken string // xoxb-…: the Web API
	AppToken string // xapp-…: Socket Mode connections
	APIURL   string // the Web API's base URL, ending in /api/
	Allow    []string
	Store    Store
	// Accepted is told of each new message accepted (the supervisor's
	// wake-up of the chat's session).
	Accepted func(chat string)
	// Control carries out the in-chat commands (nil: they answer that
	// they are not available).
	Control Control
	// Permissions decides permission requests from button presses (nil:
	// the buttons answer that they are not available).
	Permissions channel.Permissions
	Clock       clock.Clock
	Log         *slog.Logger
	Metrics     *channel.Metrics
	// Reaction is the emoji put on a person's message while its turn
	// runs (default "eyes").
	Reaction string
	// HTTP is the Web API's client (default: a 30 s timeout).
	HTTP *http.Client
	// Folders gives each chat's working directory, for files in and out
	// (nil: files are answered as not readable, and not sent).
	Folders channel.Folders
	// MaxAttachment is the largest file taken in (0:
	// channel.DefaultMaxAttachment).
	MaxAttachment int64
	// Until, if set, is when the channel's right to run ends (by Clock):
	// the deadline of the cluster role under which it runs, zero when
	// the role is not held. Past it the Socket Mode connection is
	// closed, no envelope is taken in or acknowledged (Slack sends an
	// envelope not acknowledged again, to whichever connection the app
	// has then: the next holder's), and nothing is sent (see
	// channel.OutboxConfig.Until).
	Until func() time.Time
}

// Methods the channel calls, as rate limits are kept per method.
const (
	methodPost           = "chat.postMessage"
	methodEphemeral      = "chat.postEphemeral"
	methodReactionAdd    = "reactions.add"
	methodReactionRemove = "reactions.remove"
	methodUpdate         = "chat.update"
)

// Channel is one Slack app inside the daemon.
type Channel struct {
	cfg   Config
	api   *slackapi.Client
	allow map[string]bool
	out   *channel.Outbox

	mu       sync.Mutex
	me       Bot
	team     string
	held     map[string]time.Time // method + channel: rate limited until
	threads  map[string]bool      // channel/root: the bot answers there (known so far)
	handled  map[string]bool      // channel/ts of refusals and commands answered (the same message comes as two events)
	roots    map[string]string    // chat: the thread of its last message taken in
	progress map[string]*progress // chat: its running turn's progress message
	lastEv   time.Time
	connAt   time.Time
	lastErr  string
	loops    channel.Loops  // its own lock: not under mu
	bg       sync.WaitGroup // reactions under way
}

// New makes a channel; Start runs it.
func New(cfg Config) (*Channel, error) {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Reaction == "" {
		cfg.Reaction = "eyes"
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: 30 * time.Second}
	}
	if !strings.HasPrefix(cfg.BotToken, "xoxb-") {
		return nil, fmt.Errorf("slack %s: the bot token must be a bot token (xoxb-…)", cfg.Name)
	}
	if !strings.HasPrefix(cfg.AppToken, "xapp-") {
		return nil, fmt.Errorf("slack %s: the app token must be an app-level token (xapp-…)", cfg.Name)
	}
	if !strings.HasSuffix(cfg.APIURL, "/") {
		cfg.APIURL += "/"
	}
	c := &Channel{
		cfg: cfg, allow: map[string]bool{},
		held: map[string]time.Time{}, threads: map[string]bool{}, handled: map[string]bool{},
		roots: map[string]string{}, progress: map[string]*progress{},
	}
	for _, u := range cfg.Allow {
		c.allow[u] = true
	}
	c.api = slackapi.New(cfg.BotToken, slackapi.OptionAPIURL(cfg.APIURL), slackapi.OptionHTTPClient(cfg.HTTP))
	cfg.Metrics.Init(cfg.Name)
	c.out = channel.NewOutbox(channel.OutboxConfig{
		Channel: cfg.Name, Prefix: ChatPrefix, Store: cfg.Store, Sender: sender{c}, Clock: cfg.Clock, Log: cfg.Log,
		Metrics: cfg.Metrics, Until: cfg.Until,
	})
	return c, nil
}

// Name is the channel's name.
func (c *Channel) Name() string { return c.cfg.Name }

// Start runs the channel (Socket Mode intake and outbox) until Stop.
func (c *Channel) Start() {
	c.loops.Start(c.intake, c.out.Run, c.follow)
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
	Name       string
	Connected  bool      // a Socket Mode connection is open
	Since      time.Time // since when
	LastUpdate time.Time // the last event taken in
	Error      string    // the last error, while not connected
	Bot        string    // the bot's user id
}

// Status reports the channel's state.
func (c *Channel) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Status{Name: c.cfg.Name, Connected: c.lastErr == "" && !c.connAt.IsZero(), Since: c.connAt,
		LastUpdate: c.lastEv, Error: c.lastErr, Bot: c.me.UserID}
}

func (c *Channel) setErr(err error) {
	c.cfg.Metrics.SetConnected(c.cfg.Name, err == nil)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		c.lastErr, c.connAt = "", c.cfg.Clock.Now()
	} else {
		c.lastErr, c.connAt = err.Error(), time.Time{}
	}
}

// roleLeft is how long the channel may still run (its role's deadline);
// ok is false when it may not now.
func (c *Channel) roleLeft() (left time.Duration, ok bool) {
	if c.cfg.Until == nil {
		return time.Hour, true
	}
	left = c.cfg.Until().Sub(c.cfg.Clock.Now())
	return left, left > 0
}

// errRoleLost ends a Socket Mode connection whose role's deadline passed.
var errRoleLost = errors.New("the channel's role is not held (another node may hold it)")

// notHeldWait is how often a channel whose role's deadline passed looks
// again (it is stopped, or the role renewed, soon after).
const notHeldWait = 100 * time.Millisecond

// roleRecheck is how often a connected channel looks at its role's
// deadline between envelopes: a role given up early (its deadline
// cleared) closes the connection within it.
const roleRecheck = 250 * time.Millisecond

// sleep waits d or until ctx ends.
func (c *Channel) sleep(ctx context.Context, d time.Duration) bool {
	return clock.Sleep(ctx, c.cfg.Clock, d)
}

// intake learns who the bot is, then keeps a Socket Mode connection and
// takes in its envelopes, each committed before it is acknowledged.
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
		log.Warn("slack: failed, retrying", "err", err, "in", d)
		return c.sleep(ctx, d)
	}
	for ctx.Err() == nil {
		r, err := c.api.AuthTestContext(ctx)
		if err == nil {
			c.mu.Lock()
			c.me, c.team = Bot{UserID: r.UserID, BotID: r.BotID}, r.TeamID
			c.mu.Unlock()
			break
		}
		if ctx.Err() != nil || !backoff(fmt.Errorf("auth.test: %w", err)) {
			return
		}
	}
	for ctx.Err() == nil {
		if _, held := c.roleLeft(); !held {
			// The role's deadline passed: no connection, so Slack sends
			// the app's envelopes to the next holder's.
			c.setErr(errRoleLost)
			if !c.sleep(ctx, notHeldWait) {
				return
			}
			continue
		}
		app := slackapi.New(c.cfg.BotToken, slackapi.OptionAppLevelToken(c.cfg.AppToken), slackapi.OptionAPIURL(c.cfg.APIURL), slackapi.OptionHTTPClient(c.cfg.HTTP))
		sm := socketmode.New(app, socketmode.OptionLog(stdlog.New(discard{}, "", 0)))
		rctx, cancel := context.WithCancel(ctx)
		errc := make(chan error, 1)
		go func() { errc <- sm.RunContext(rctx) }()
		err := c.consume(rctx, sm, errc, log)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errRoleLost) {
			log.Info("slack: the role's deadline passed; the Socket Mode connection is closed")
			continue
		}
		if err == nil {
			err = errors.New("socket mode stopped")
		}
		if !backoff(fmt.Errorf("socket mode: %w", err)) {
			return
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// consume handles sm's events until its run ends (its error), ctx does,
// or the role's deadline passes (errRoleLost: the caller closes the
// connection). Past the deadline an envelope is neither taken in nor
// acknowledged.
func (c *Channel) consume(ctx context.Context, sm *socketmode.Client, errc <-chan error, log *slog.Logger) error {
	for {
		left, held := c.roleLeft()
		if !held {
			return errRoleLost
		}
		// The deadline is looked at again when it comes (it may have
		// been renewed by then), and every roleRecheck (the role may be
		// given up before it).
		if c.cfg.Until != nil {
			left = min(left, roleRecheck)
		}
		timer := c.cfg.Clock.NewTimer(left)
		var ev socketmode.Event
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case err := <-errc:
			timer.Stop()
			return err
		case <-timer.C():
			continue
		case ev = <-sm.Events:
			timer.Stop()
		}
		// A handled envelope is acknowledged only under the role: one
		// not acknowledged comes again, to the next holder.
		hctx, cancel := c.underRole(ctx)
		err := c.consumeOne(hctx, sm, ev, log)
		cancel()
		if err != nil || ctx.Err() != nil {
			return err
		}
	}
}

// underRole is ctx cut off at the role's deadline (as it is now).
func (c *Channel) underRole(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.cfg.Until == nil {
		return context.WithCancel(ctx)
	}
	return context.WithDeadline(ctx, c.cfg.Until())
}

// ack acknowledges req if the role is still held; past the deadline it
// is left to Slack to send again (errRoleLost).
func (c *Channel) ack(sm *socketmode.Client, req *socketmode.Request, log *slog.Logger) error {
	if _, held := c.roleLeft(); !held {
		return errRoleLost
	}
	if err := sm.Ack(*req); err != nil {
		log.Warn("slack: acknowledging an envelope failed (Slack sends it again; it is a duplicate then)", "err", err)
	}
	return nil
}

// consumeOne handles one event of sm under ctx (cut off at the role's
// deadline).
func (c *Channel) consumeOne(ctx context.Context, sm *socketmode.Client, ev socketmode.Event, log *slog.Logger) error {
	switch ev.Type {
	case socketmode.EventTypeConnected, socketmode.EventTypeHello:
		c.setErr(nil)
	case socketmode.EventTypeConnectionError:
		if ce, ok := ev.Data.(*slackapi.ConnectionErrorEvent); ok {
			c.setErr(ce.ErrorObj)
		}
	case socketmode.EventTypeEventsAPI:
		if ev.Request == nil {
			return nil
		}
		api, ok := ev.Data.(slackevents.EventsAPIEvent)
		if !ok {
			return c.ack(sm, ev.Request, log)
		}
		// Never acknowledged before it is committed: a store error
		// is retried; Slack sends the envelope again meanwhile if
		// it must, and that copy is a duplicate.
		fail := 0
		for {
			err := c.handle(ctx, api)
			if err == nil {
				break
			}
			if _, held := c.roleLeft(); !held {
				return errRoleLost
			}
			if ctx.Err() != nil {
				return nil
			}
			fail++
			d := webhook.Backoff(fail, 100*time.Millisecond, 10*time.Second, rand.Float64)
			log.Warn("slack: taking in an event failed, retrying", "err", err, "in", d)
			if !c.sleep(ctx, d) {
				if _, held := c.roleLeft(); !held {
					return errRoleLost
				}
				return nil
			}
		}
		return c.ack(sm, ev.Request, log)
	case socketmode.EventTypeInteractive, socketmode.EventTypeSlashCommand:
		if ev.Request != nil {
			if cb, ok := ev.Data.(slackapi.InteractionCallback); ok {
				c.interaction(ctx, cb)
			}
			return c.ack(sm, ev.Request, log)
		}
	}
	return nil
}

// eventOf is what Intake reads of an Events API event.
func eventOf(api slackevents.EventsAPIEvent) (Event, bool) {
	e := Event{Team: api.TeamID}
	switch in := api.InnerEvent.Data.(type) {
	case *slackevents.MessageEvent:
		e.Type, e.Subtype, e.Channel, e.ChannelType = "message", in.SubType, in.Channel, in.ChannelType
		e.User, e.BotID, e.Text, e.TS, e.ThreadTS = in.User, in.BotID, in.Text, in.TimeStamp, in.ThreadTimeStamp
		if m := in.Message; m != nil {
			e.Edited = m.Edited != nil
			e.HasFiles = len(m.Files) > 0
			e.Files = filesOf(m.Files)
		}
		e.HasFiles = e.HasFiles || in.SubType == "file_share"
	case *slackevents.AppMentionEvent:
		e.Type, e.Channel = "app_mention", in.Channel
		e.User, e.BotID, e.Text, e.TS, e.ThreadTS = in.User, in.BotID, in.Text, in.TimeStamp, in.ThreadTimeStamp
		e.Edited, e.HasFiles = in.Edited != nil, len(in.Files) > 0
		e.Files = filesOf(in.Files)
	default:
		return Event{}, false
	}
	if e.Team == "" {
		if cb, ok := api.Data.(*slackevents.EventsAPICallbackEvent); ok {
			e.Team = cb.TeamID
		}
	}
	return e, true
}

// handle applies Intake to one event and commits its outcome.
func (c *Channel) handle(ctx context.Context, api slackevents.EventsAPIEvent) error {
	c.mu.Lock()
	c.lastEv = c.cfg.Clock.Now()
	me, team := c.me, c.team
	c.mu.Unlock()
	ev, ok := eventOf(api)
	if !ok {
		c.cfg.Metrics.Update(c.cfg.Name, channel.UpdateIgnored)
		return nil
	}
	if ev.Team == "" {
		ev.Team = team
	}
	var lookErr error
	own := func(ch, root string) bool {
		ok, err := c.ownThread(ctx, ChatID(ev.Team, ch), ch, root)
		lookErr = err
		return ok
	}
	d := Intake(ev, me, c.allow, own)
	if lookErr != nil {
		return lookErr
	}
	switch d.Action {
	case Accept:
		if len(d.Files) > 0 {
			text, answered, err := c.acceptFiles(ctx, d)
			if err != nil || answered {
				return err
			}
			d.Text = text
		}
		_, dup, err := c.cfg.Store.Accept(ctx, d.Chat, d.Text, d.ClientID())
		if errors.Is(err, store.ErrConflict) {
			dup, err = true, nil // the same ts with another text: Slack's copy of a message already taken in
		}
		if err != nil {
			return err
		}
		if dup {
			c.cfg.Metrics.Update(c.cfg.Name, channel.UpdateDuplicate)
			return nil
		}
		c.cfg.Metrics.Update(c.cfg.Name, channel.UpdateAccepted)
		if d.Root != "" {
			c.remember(c.threads, d.Channel+"/"+d.Root)
		}
		c.mu.Lock()
		if len(c.roots) >= maxRemembered {
			clear(c.roots)
		}
		c.roots[d.Chat] = d.Root
		c.mu.Unlock()
		c.bg.Go(func() { c.react(context.WithoutCancel(ctx), d.Channel, d.TS, true) })
		if c.cfg.Accepted != nil {
			c.cfg.Accepted(d.Chat)
		}
		return nil
	case Refuse, Command, Unsupported:
		if !c.firstTime(d) {
			c.cfg.Metrics.Update(c.cfg.Name, channel.UpdateDuplicate)
			return nil
		}
		outcome := channel.UpdateUnsupported
		switch d.Action {
		case Refuse:
			outcome = channel.UpdateRefused
			c.cfg.Log.Info("slack: refused a stranger", "channel", c.cfg.Name, "user", d.User, "chat", d.Chat)
			c.ephemeral(ctx, d, RefusalText(d.User))
		case Command:
			outcome = channel.UpdateCommand
			if text := c.command(ctx, d.Chat, d.Command); text != "" {
				c.answer(ctx, d, text)
			}
		default:
			c.answer(ctx, d, UnsupportedText)
		}
		c.cfg.Metrics.Update(c.cfg.Name, outcome)
		return nil
	}
	c.cfg.Metrics.Update(c.cfg.Name, channel.UpdateIgnored)
	return nil
}

// maxRemembered bounds the channel's in-memory sets; past it a set starts
// over (the store still knows the threads; a refusal or command may then
// be answered twice if Slack sends its message again much later).
const maxRemembered = 10000

func (c *Channel) remember(set map[string]bool, key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rememberLocked(set, key)
}

func rememberLocked(set map[string]bool, key string) {
	if len(set) >= maxRemembered {
		clear(set)
	}
	set[key] = true
}

// firstTime reports whether message d is answered here for the first time,
// and records that it is: a redelivered envelope of a message that is
// answered rather than queued (a refusal, a command) is answered once.
func (c *Channel) firstTime(d Intent) bool {
	key := d.Channel + "/" + d.TS
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.handled[key] {
		return false
	}
	rememberLocked(c.handled, key)
	return true
}

// ownThread reports whether the bot answers in thread root of Slack
// channel ch (chat): it does when it took in the message the thread hangs
// from (a mention it answered under, the common case), which the store
// knows by that message's client id (root/root), so this survives a
// restart; or when it took in a message of that thread since it started
// (a mention inside someone else's thread). The answer is kept in memory
// either way (a message taken in later makes it yes).
func (c *Channel) ownThread(ctx context.Context, chat, ch, root string) (bool, error) {
	key := ch + "/" + root
	c.mu.Lock()
	known, seen := c.threads[key]
	c.mu.Unlock()
	if seen {
		return known, nil
	}
	_, ok, err := c.cfg.Store.ByClient(ctx, chat, Intent{Root: root, TS: root}.ClientID())
	if err != nil {
		return false, err
	}
	c.mu.Lock()
	if _, set := c.threads[key]; !set {
		if len(c.threads) >= maxRemembered {
			clear(c.threads)
		}
		c.threads[key] = ok
	}
	c.mu.Unlock()
	return ok, nil
}

// command carries out an in-chat command and returns its answer.
func (c *Channel) command(ctx context.Context, chat, cmd string) string {
	if c.cfg.Control == nil {
		return "This command is not available here."
	}
	switch cmd {
	case CmdNew:
		if err := c.cfg.Control.Restart(ctx, chat, true); err != nil {
			c.cfg.Log.Info("slack: new", "channel", c.cfg.Name, "chat", chat, "err", err)
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
			c.cfg.Log.Info("slack: stop", "channel", c.cfg.Name, "chat", chat, "err", err)
			return "Nothing is running."
		case !stopped:
			return "Nothing is running."
		}
		return "" // the turn's messages are answered "Stopped."
	}
	return "Unknown command."
}

// answer posts a short answer where d's message is (its thread in a
// channel), best effort.
func (c *Channel) answer(ctx context.Context, d Intent, text string) {
	opts := []slackapi.MsgOption{slackapi.MsgOptionText(Escape(text), false)}
	if d.Root != "" {
		opts = append(opts, slackapi.MsgOptionTS(d.Root))
	}
	if _, _, err := c.api.PostMessageContext(ctx, d.Channel, opts...); err != nil {
		c.hold(methodPost, d.Channel, err)
		c.cfg.Log.Warn("slack: could not answer", "channel", c.cfg.Name, "chat", d.Chat, "err", err)
	}
}

// ephemeral shows text to d's sender only, best effort.
func (c *Channel) ephemeral(ctx context.Context, d Intent, text string) {
	opts := []slackapi.MsgOption{slackapi.MsgOptionText(Escape(text), false)}
	if d.Root != "" && d.Root != d.TS {
		opts = append(opts, slackapi.MsgOptionTS(d.Root))
	}
	if _, err := c.api.PostEphemeralContext(ctx, d.Channel, d.User, opts...); err != nil {
		c.hold(methodEphemeral, d.Channel, err)
		c.cfg.Log.Warn("slack: could not refuse", "channel", c.cfg.Name, "chat", d.Chat, "err", err)
	}
}

// react adds (or removes) the channel's reaction on a person's message,
// best effort: it only shows that the turn runs.
func (c *Channel) react(ctx context.Context, ch, ts string, add bool) {
	left, held := c.roleLeft()
	if !held {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, min(left, 10*time.Second))
	defer cancel()
	method := methodReactionAdd
	if !add {
		method = methodReactionRemove
	}
	if c.heldFor(method, ch) > 0 {
		return
	}
	ref := slackapi.NewRefToMessage(ch, ts)
	var err error
	if add {
		err = c.api.AddReactionContext(ctx, c.cfg.Reaction, ref)
	} else {
		err = c.api.RemoveReactionContext(ctx, c.cfg.Reaction, ref)
	}
	if err != nil {
		c.hold(method, ch, err)
		c.cfg.Log.Debug("slack: reaction", "channel", c.cfg.Name, "add", add, "err", err)
	}
}

// heldFor is how long method is still rate limited in Slack channel ch.
func (c *Channel) heldFor(method, ch string) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	until, ok := c.held[method+" "+ch]
	if !ok {
		return 0
	}
	if d := until.Sub(c.cfg.Clock.Now()); d > 0 {
		return d
	}
	delete(c.held, method+" "+ch)
	return 0
}

// hold records a rate limit err (if it is one) on method in ch, and
// returns it as the outbox's kind.
func (c *Channel) hold(method, ch string, err error) *channel.RateLimitedError {
	var rl *slackapi.RateLimitedError
	if !errors.As(err, &rl) {
		return nil
	}
	after := max(rl.RetryAfter, time.Second)
	c.mu.Lock()
	c.held[method+" "+ch] = c.cfg.Clock.Now().Add(after)
	c.mu.Unlock()
	return &channel.RateLimitedError{After: after, Err: fmt.Errorf("%s: %w", method, err)}
}

// sender sends deliveries with chat.postMessage.
type sender struct{ c *Channel }

// Parts is what a delivery says, as mrkdwn messages in order. It is a pure
// function of the delivery, so a restart finds the same parts and sends
// only those not yet accepted.
func Parts(d store.ChannelDelivery) []string {
	var parts []string
	switch d.Kind {
	case events.DeadLetter:
		parts = Split(telegram.DeadLetterText(d.Text), MaxPartLen)
	default:
		text, files := channel.FileMarkers(d.Text)
		if strings.TrimSpace(text) == "" && len(files) > 0 {
			return nil // only files: no text part
		}
		parts = Split(text, MaxPartLen)
	}
	if len(parts) == 0 {
		parts = []string{"(empty reply)"}
	}
	return parts
}

// fallbackCodes are the refusals of a formatted message that the same
// text without formatting may pass.
var fallbackCodes = map[string]bool{"invalid_blocks": true, "invalid_blocks_format": true, "msg_too_long": true, "invalid_arguments": true}

// permanentCodes are the refusals no retry changes.
var permanentCodes = map[string]bool{
	"channel_not_found": true, "not_in_channel": true, "is_archived": true, "msg_too_long": true,
	"no_text": true, "restricted_action": true, "thread_not_found": true, "cannot_reply_to_message": true,
}

// classify turns a Web API error into the outbox's kinds: a rate limit
// holds the chat, a refusal no retry changes gives the delivery up,
// anything else is retried.
func (c *Channel) classify(method, ch string, err error) error {
	if rl := c.hold(method, ch, err); rl != nil {
		return rl
	}
	var se slackapi.SlackErrorResponse
	if errors.As(err, &se) && permanentCodes[se.Err] {
		return channel.Permanent(err)
	}
	return err
}

func (s sender) Send(ctx context.Context, d store.ChannelDelivery, sent func(string) error) error {
	c := s.c
	_, ch, ok := ParseChatID(d.ChatID)
	if !ok {
		return channel.Permanent(fmt.Errorf("%q is not a Slack chat", d.ChatID))
	}
	if w := c.heldFor(methodPost, ch); w > 0 {
		return &channel.RateLimitedError{After: w, Err: errors.New(methodPost + ": rate limited")}
	}
	root, msgs, err := c.turn(ctx, d)
	if err != nil {
		return err
	}
	if d.Sent == 0 {
		for _, ts := range msgs {
			c.react(ctx, ch, ts, false)
		}
	}
	parts := Parts(d)
	for i := d.Sent; i < len(parts); i++ {
		opts := []slackapi.MsgOption{slackapi.MsgOptionText(parts[i], false), slackapi.MsgOptionDisableLinkUnfurl()}
		if root != "" {
			opts = append(opts, slackapi.MsgOptionTS(root))
		}
		_, ts, err := c.api.PostMessageContext(ctx, ch, opts...)
		var se slackapi.SlackErrorResponse
		if err != nil && errors.As(err, &se) && fallbackCodes[se.Err] {
			// Slack refused the formatted text: the same part, unformatted.
			_, ts, err = c.api.PostMessageContext(ctx, ch, append(opts, slackapi.MsgOptionDisableMarkdown())...)
		}
		if err != nil {
			return c.classify(methodPost, ch, err)
		}
		if err := sent(ts); err != nil {
			return err
		}
	}
	return sender{c}.sendFiles(ctx, d.ChatID, ch, root, Files(d), len(parts), d.Sent, sent)
}

// turn finds where d answers: the thread of the last message of its turn
// (root, "" for the conversation itself) and the person's messages the
// turn answered (their ts, to take the reaction off). It reads the event
// d copies and its messages' client ids; a message no longer stored is
// left out.
func (c *Channel) turn(ctx context.Context, d store.ChannelDelivery) (root string, msgs []string, err error) {
	evs, err := c.cfg.Store.EventsBySeq(ctx, []int64{d.Seq})
	if err != nil {
		return "", nil, err
	}
	ev, ok := evs[d.Seq]
	if !ok {
		return "", nil, nil
	}
	ids := ev.MessageIDs
	if ev.MessageID != "" {
		ids = append(ids, ev.MessageID)
	}
	for _, id := range ids {
		m, err := c.cfg.Store.Get(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return "", nil, err
		}
		if r, ts, ok := ParseClientID(m.ClientID); ok {
			root = r
			msgs = append(msgs, ts)
		}
	}
	return root, msgs, nil
}

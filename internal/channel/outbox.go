package channel

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/webhook"
)

// Store is what the outbox needs of the store.
type Store interface {
	ChannelCursor(ctx context.Context, channel string) (store.ChannelCursor, error)
	ChannelEnqueue(ctx context.Context, channel string, feed int64, ds []store.ChannelDelivery) error
	PendingDeliveries(ctx context.Context, channel string, limit int) ([]store.ChannelDelivery, error)
	DeliverySent(ctx context.Context, d store.ChannelDelivery) error
	DeliveryAttempt(ctx context.Context, d store.ChannelDelivery) error
	DeliveryGiveUp(ctx context.Context, d store.ChannelDelivery) error
	Events(ctx context.Context, q events.Query) ([]events.Event, int64, error)
	EventsVisible() (int64, <-chan struct{})
	EventsOldest(ctx context.Context) (oldest, last int64, err error)
	// Deliveries lists a chat's deliveries, oldest first (finding the
	// message of a permission request whose decision came).
	Deliveries(ctx context.Context, channel, chat string, limit int) ([]store.ChannelDelivery, error)
}

// Sender delivers one delivery on its platform.
type Sender interface {
	// Send sends d, from its part d.Sent on (the earlier parts were
	// accepted before), calling sent with the platform's id of each part
	// as soon as the platform accepted it; sent records it durably and
	// its error stops the delivery. A *RateLimitedError holds the chat,
	// a *PermanentError gives the delivery up, any other error is retried.
	Send(ctx context.Context, d store.ChannelDelivery, sent func(platformID string) error) error
}

// Outbox limits and delays.
const (
	// MaxAttempts failed attempts (rate limits not counted) give a
	// delivery up: with delays doubling to RetryMax, about a day.
	MaxAttempts  = 150
	RetryInitial = time.Second
	RetryMax     = 10 * time.Minute
	// SendTimeout bounds one delivery's sending and recording once begun.
	SendTimeout = 30 * time.Second
	// Workers bounds the chats sent to at once.
	Workers = 8
	// pageSize bounds one read of the feed or of the pending deliveries.
	pageSize = 500
)

// Kinds are the event types every channel delivers to its chats; a
// channel whose Sender is a PromptSender also delivers PromptKinds.
var Kinds = []events.Type{events.Reply, events.DeadLetter}

// PromptKinds are the permission events a PromptSender shows.
var PromptKinds = []events.Type{events.PermissionRequest, events.PermissionDecided}

// promptScan bounds the look back through a chat's deliveries for the
// message of a request decided after a restart (a request is decided
// within agent.permission_timeout, long before that many deliveries).
const promptScan = 5000

// OutboxConfig configures an Outbox.
type OutboxConfig struct {
	// Channel names the channel's state in the store.
	Channel string
	// Prefix selects the channel's chats ("tg:").
	Prefix string
	Store  Store
	Sender Sender
	Clock  clock.Clock
	Log    *slog.Logger
	// Metrics, if set, counts the deliveries.
	Metrics *Metrics
	// Enqueued, if set, is told of each delivery copied from the feed
	// (a turn ended in that chat: its typing indicator stops).
	Enqueued func(d store.ChannelDelivery)
	// Progress, if set, is told of each progress event of the channel's
	// chats (a running turn started a tool), in feed order with
	// Enqueued. Progress is best effort: it is not stored as a delivery,
	// and one that comes while the outbox is down is never shown. It is
	// called from the outbox's loop: it must not block.
	Progress func(ev events.Event)
	// Until, if set, is when the outbox's right to send ends (by Clock):
	// the deadline of the cluster role under which it runs, zero when
	// the role is not held. No send starts at or after it, and a send in
	// flight is cut off at it, so that the node taking the role over
	// next never sends while this one still does.
	Until func() time.Time
}

// heldFor is how long the outbox may still send (Until's deadline);
// ok is false when it may not send now.
func (o *Outbox) heldFor() (left time.Duration, ok bool) {
	if o.cfg.Until == nil {
		return SendTimeout, true
	}
	left = o.cfg.Until().Sub(o.cfg.Clock.Now())
	return left, left > 0
}

// errRoleLost stops a delivery whose role's deadline passed between two
// parts.
var errRoleLost = errors.New("channel outbox: the role's deadline passed")

// notHeldWait is how often an outbox whose role's deadline passed looks
// again (it is stopped, or the role renewed, soon after).
const notHeldWait = 100 * time.Millisecond

// Outbox sends a channel's deliveries. Run it in one goroutine per
// channel (on one node).
type Outbox struct {
	cfg OutboxConfig

	mu   sync.Mutex
	busy map[string]bool // chats with a delivery being sent
	// ended counts the sends that have ended; endedAt holds, per chat,
	// the count when its last send ended. A step whose read of the
	// pending deliveries began before a chat's send ended has a stale
	// view of that chat (the delivery it read as pending may be done
	// now): it leaves the chat to the next step, which the send's end
	// wakes. Without this, a send ending between the read and the busy
	// check was sent again.
	ended   uint64
	endedAt map[string]uint64
	done    chan struct{} // a send ended (buffered 1)

	readyOnce sync.Once
	ready     chan struct{} // closed once the feed cursor exists

	prompts PromptSender // the Sender, if it shows permission requests
	// shown remembers the message of each request shown since start
	// (request id → platform id), so closing it needs no look-up.
	shown map[string]string
}

// Ready is closed once the channel's feed cursor exists: from then on
// every event is delivered. A channel's intake waits for it, so that no
// reply to a message it accepted can fall before the cursor.
func (o *Outbox) Ready() <-chan struct{} { return o.ready }

// NewOutbox makes an outbox.
func NewOutbox(cfg OutboxConfig) *Outbox {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	o := &Outbox{cfg: cfg, busy: map[string]bool{}, endedAt: map[string]uint64{}, done: make(chan struct{}, 1), ready: make(chan struct{}),
		shown: map[string]string{}}
	o.prompts, _ = cfg.Sender.(PromptSender)
	return o
}

// Run copies new events into deliveries and sends them until ctx ends.
// A store error is retried with a delay; nothing is skipped.
func (o *Outbox) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, Workers)
	fail := 0
	for ctx.Err() == nil {
		_, moved := o.cfg.Store.EventsVisible()
		wait, err := o.step(ctx, &wg, sem)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			fail++
			d := webhook.Backoff(fail, 100*time.Millisecond, 10*time.Second, rand.Float64)
			o.cfg.Log.Warn("channel outbox: store error, retrying", "channel", o.cfg.Channel, "err", err, "in", d)
			wait = d
		} else {
			fail = 0
		}
		var (
			timer <-chan time.Time
			t     clock.Timer
		)
		if wait > 0 {
			t = o.cfg.Clock.NewTimer(wait)
			timer = t.C()
		}
		select {
		case <-ctx.Done():
		case <-moved:
		case <-o.done:
		case <-timer:
		}
		if t != nil {
			t.Stop()
		}
	}
}

// step enqueues what the feed holds beyond the cursor and starts a send
// for every chat whose head delivery is due and not being sent. wait is
// how long until the next held delivery is due (0: none).
func (o *Outbox) step(ctx context.Context, wg *sync.WaitGroup, sem chan struct{}) (wait time.Duration, err error) {
	if _, held := o.heldFor(); !held {
		return notHeldWait, nil
	}
	if err := o.pull(ctx); err != nil {
		return 0, err
	}
	o.readyOnce.Do(func() { close(o.ready) })
	o.mu.Lock()
	readAt := o.ended
	o.mu.Unlock()
	pending, err := o.cfg.Store.PendingDeliveries(ctx, o.cfg.Channel, pageSize)
	if err != nil {
		return 0, err
	}
	now := o.cfg.Clock.Now()
	seen := map[string]bool{}
	for _, d := range pending {
		if seen[d.ChatID] {
			continue // a chat's later deliveries wait for its head
		}
		seen[d.ChatID] = true
		if d.NextAt.After(now) {
			if w := d.NextAt.Sub(now); wait == 0 || w < wait {
				wait = w
			}
			continue
		}
		o.mu.Lock()
		if o.busy[d.ChatID] || o.endedAt[d.ChatID] > readAt {
			o.mu.Unlock()
			continue
		}
		select {
		case sem <- struct{}{}:
		default:
			o.mu.Unlock()
			return wait, nil // every worker busy: a send's end wakes us
		}
		o.busy[d.ChatID] = true
		o.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			o.deliver(ctx, d)
			o.mu.Lock()
			delete(o.busy, d.ChatID)
			o.ended++
			o.endedAt[d.ChatID] = o.ended
			o.mu.Unlock()
			<-sem
			select {
			case o.done <- struct{}{}:
			default:
			}
		}()
	}
	return wait, nil
}

// pull copies the events after the channel's feed cursor into its
// deliveries. A channel seen for the first time starts at the feed's end:
// it does not send the history.
func (o *Outbox) pull(ctx context.Context) error {
	cur, err := o.cfg.Store.ChannelCursor(ctx, o.cfg.Channel)
	if err != nil {
		return err
	}
	if cur.Updated.IsZero() {
		visible, _ := o.cfg.Store.EventsVisible()
		return o.cfg.Store.ChannelEnqueue(ctx, o.cfg.Channel, visible, nil)
	}
	after := cur.Feed
	for {
		evs, next, err := o.cfg.Store.Events(ctx, events.Query{After: after, HasAfter: true, Limit: pageSize})
		var gone *events.ErrGone
		if errors.As(err, &gone) {
			oldest, _, oerr := o.cfg.Store.EventsOldest(ctx)
			if oerr != nil {
				return oerr
			}
			o.cfg.Log.Error("channel outbox: events were purged before they were read; skipping them",
				"channel", o.cfg.Channel, "from", after, "to", oldest-1)
			after = oldest - 1
			continue
		}
		if err != nil {
			return err
		}
		if len(evs) == 0 {
			return nil
		}
		var ds []store.ChannelDelivery
		for _, ev := range evs {
			if d, ok := o.delivery(ev); ok {
				ds = append(ds, d)
			}
		}
		if err := o.cfg.Store.ChannelEnqueue(ctx, o.cfg.Channel, next, ds); err != nil {
			return err
		}
		// Told in feed order: a turn's progress before its reply.
		for _, ev := range evs {
			if !strings.HasPrefix(ev.ChatID, o.cfg.Prefix) {
				continue
			}
			if ev.Type == events.Progress && o.cfg.Progress != nil {
				o.cfg.Progress(ev)
			}
			if o.cfg.Enqueued != nil && len(ds) > 0 && ds[0].Seq == ev.Seq {
				o.cfg.Enqueued(ds[0])
				ds = ds[1:]
			}
		}
		after = next
	}
}

// delivery is what ev asks of this channel, if anything.
func (o *Outbox) delivery(ev events.Event) (store.ChannelDelivery, bool) {
	if !strings.HasPrefix(ev.ChatID, o.cfg.Prefix) {
		return store.ChannelDelivery{}, false
	}
	d := store.ChannelDelivery{Seq: ev.Seq, ChatID: ev.ChatID, Kind: ev.Type}
	switch ev.Type {
	case events.Reply:
		d.Text = ev.Text
	case events.DeadLetter:
		d.Text = ev.Error
	case events.PermissionRequest, events.PermissionDecided:
		if o.prompts == nil {
			return d, false
		}
		d.Text = promptText(ev)
	default:
		return d, false
	}
	return d, true
}

// deliver sends d and records the outcome. A store error leaves d pending
// (the next step tries again).
func (o *Outbox) deliver(ctx context.Context, d store.ChannelDelivery) {
	log := o.cfg.Log.With("channel", o.cfg.Channel, "chat", d.ChatID, "seq", d.Seq)
	// What the platform accepted is recorded even when the outbox is
	// stopping: the window for sending a part twice stays as short as it
	// can be.
	// A part being sent when the outbox stops is let finish (within
	// SendTimeout) and recorded; the next part is not started.
	// Under a role, the sending (not the recording) also ends at the
	// role's deadline.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), SendTimeout)
	defer cancel()
	left, held := o.heldFor()
	if !held {
		return // the role's deadline passed: the delivery stays pending
	}
	sctx, scancel := context.WithTimeout(rctx, min(left, SendTimeout))
	defer scancel()
	sent := func(id string) error {
		d.Sent++
		d.PlatformIDs = append(d.PlatformIDs, id)
		if err := o.cfg.Store.DeliverySent(rctx, d); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, held := o.heldFor(); !held {
			return errRoleLost
		}
		return nil
	}
	var err error
	switch d.Kind {
	case events.PermissionRequest, events.PermissionDecided:
		err = o.sendPrompt(sctx, d, sent)
	default:
		err = o.cfg.Sender.Send(sctx, d, sent)
	}
	if err != nil && (ctx.Err() != nil || errors.Is(err, errRoleLost) || sctx.Err() != nil && rctx.Err() == nil) {
		return // stopping, or the role's deadline passed: the delivery stays pending
	}
	ctx = rctx
	var rl *RateLimitedError
	switch {
	case err == nil:
		o.cfg.Metrics.delivery(o.cfg.Channel, DeliveryDelivered)
		d.State = store.DeliveryDone
		if serr := o.cfg.Store.DeliverySent(ctx, d); serr != nil {
			log.Warn("channel outbox: recording a delivery failed; it may be sent again", "err", serr)
		}
	case errors.As(err, &rl):
		o.cfg.Metrics.delivery(o.cfg.Channel, DeliveryRateLimited)
		d.NextAt, d.Error = o.cfg.Clock.Now().Add(rl.After), err.Error()
		log.Info("channel outbox: rate limited", "for", rl.After)
		if serr := o.cfg.Store.DeliveryAttempt(ctx, d); serr != nil {
			log.Warn("channel outbox: recording an attempt failed", "err", serr)
		}
	case IsPermanent(err) || d.Attempts+1 >= MaxAttempts:
		o.cfg.Metrics.delivery(o.cfg.Channel, DeliveryGaveUp)
		d.Attempts++
		d.Error = err.Error()
		log.Warn("channel outbox: delivery given up", "err", err, "attempts", d.Attempts)
		if serr := o.cfg.Store.DeliveryGiveUp(ctx, d); serr != nil {
			log.Warn("channel outbox: recording a give-up failed", "err", serr)
		}
	default:
		o.cfg.Metrics.delivery(o.cfg.Channel, DeliveryRetried)
		d.Attempts++
		delay := webhook.Backoff(d.Attempts, RetryInitial, RetryMax, rand.Float64)
		d.NextAt, d.Error = o.cfg.Clock.Now().Add(delay), err.Error()
		log.Info("channel outbox: delivery failed, retrying", "err", err, "in", delay)
		if serr := o.cfg.Store.DeliveryAttempt(ctx, d); serr != nil {
			log.Warn("channel outbox: recording an attempt failed", "err", serr)
		}
	}
}

// sendPrompt delivers a permission request (its message with buttons) or
// its decision (the buttons of the request's message replaced).
func (o *Outbox) sendPrompt(ctx context.Context, d store.ChannelDelivery, sent func(string) error) error {
	p, err := PromptOf(d)
	if err != nil {
		return Permanent(err)
	}
	if o.prompts == nil {
		return Permanent(errors.New("this channel does not show permission requests"))
	}
	if d.Kind == events.PermissionRequest {
		if d.Sent > 0 {
			return nil // shown before a restart
		}
		id, err := o.prompts.SendPrompt(ctx, d.ChatID, p)
		if err != nil {
			return err
		}
		o.mu.Lock()
		o.shown[p.RequestID] = id
		o.mu.Unlock()
		return sent(id)
	}
	o.mu.Lock()
	msg, ok := o.shown[p.RequestID]
	o.mu.Unlock()
	if !ok {
		if msg, ok, err = o.promptMessage(ctx, d.ChatID, p.RequestID); err != nil {
			return err
		}
	}
	if !ok {
		return nil // never shown (given up, or purged): nothing to close
	}
	if err := o.prompts.ClosePrompt(ctx, d.ChatID, msg, p); err != nil {
		return err
	}
	o.mu.Lock()
	delete(o.shown, p.RequestID)
	o.mu.Unlock()
	return sent(msg)
}

// promptMessage finds the platform's id of the message that showed
// request id in chat.
func (o *Outbox) promptMessage(ctx context.Context, chat, id string) (string, bool, error) {
	ds, err := o.cfg.Store.Deliveries(ctx, o.cfg.Channel, chat, promptScan)
	if err != nil {
		return "", false, err
	}
	for i := len(ds) - 1; i >= 0; i-- {
		d := ds[i]
		if d.Kind != events.PermissionRequest || len(d.PlatformIDs) == 0 {
			continue
		}
		if p, err := PromptOf(d); err == nil && p.RequestID == id {
			return d.PlatformIDs[0], true, nil
		}
	}
	return "", false, nil
}

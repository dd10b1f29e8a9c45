package slack

import (
	"context"
	"strings"
	"time"

	slackapi "github.com/slack-go/slack"

	"github.com/dispatchd/dispatch/internal/events"
)

// The live side of a chat: the tools a running turn uses, as one message
// edited as it goes. It need not outlive the daemon (progress is kept only
// while its turn runs), so the channel follows it on the event feed from
// where the feed is when it starts, in memory, beside the outbox's durable
// deliveries. (Permission requests are not live: the outbox delivers them,
// see prompt.go.)

// ProgressEvery bounds the edits of a turn's progress message (Slack's
// chat.update allows about one a second per channel; one every 2 s leaves
// room for the replies).
const ProgressEvery = 2 * time.Second

// maxProgressLines is how many of a turn's latest tool uses its progress
// message shows.
const maxProgressLines = 10

// progress is a running turn's progress message.
type progress struct {
	turn, channel, root, ts string
	lines                   []string
	edited                  time.Time // when it was last posted or edited
	dirty                   bool      // lines not shown yet
}

// liveKinds are the feed events the live side follows.
var liveKinds = []events.Type{events.Progress, events.Reply, events.DeadLetter}

// follow reads the feed from its end at start and shows what the live
// side follows, until ctx ends.
func (c *Channel) follow(ctx context.Context) {
	after, _ := c.cfg.Store.EventsVisible()
	fail := 0
	for ctx.Err() == nil {
		_, moved := c.cfg.Store.EventsVisible()
		evs, next, err := c.cfg.Store.Events(ctx, events.Query{After: after, HasAfter: true, Types: liveKinds, Limit: events.MaxLimit})
		if _, gone := events.IsGone(err); gone {
			after, _ = c.cfg.Store.EventsVisible() // purged under us: nothing live is that old
			continue
		}
		if err != nil {
			fail++
			if !c.sleep(ctx, min(time.Duration(fail)*200*time.Millisecond, 5*time.Second)) {
				return
			}
			continue
		}
		fail = 0
		for _, ev := range evs {
			if !strings.HasPrefix(ev.ChatID, ChatPrefix) {
				continue
			}
			c.live(ctx, ev)
		}
		after = next
		if len(evs) == events.MaxLimit {
			continue
		}
		wait := c.flushProgress(ctx)
		var (
			timer <-chan time.Time
			t     interface{ Stop() bool }
		)
		if wait > 0 {
			tm := c.cfg.Clock.NewTimer(wait)
			t, timer = tm, tm.C()
		}
		select {
		case <-ctx.Done():
		case <-moved:
		case <-timer:
		}
		if t != nil {
			t.Stop()
		}
	}
}

// live shows one event of a Slack chat.
func (c *Channel) live(ctx context.Context, ev events.Event) {
	_, ch, ok := ParseChatID(ev.ChatID)
	if !ok {
		return
	}
	switch ev.Type {
	case events.Progress:
		line := "• *" + Escape(strings.ReplaceAll(ev.Tool, "*", "∗")) + "*"
		if sum := strings.Join(strings.Fields(ev.Summary), " "); sum != "" {
			if r := []rune(sum); len(r) > 120 {
				sum = string(r[:119]) + "…"
			}
			line += " `" + Escape(strings.ReplaceAll(sum, "`", "ˋ")) + "`"
		}
		c.mu.Lock()
		p := c.progress[ev.ChatID]
		if p == nil || p.turn != ev.TurnID {
			p = &progress{turn: ev.TurnID, channel: ch, root: c.rootLocked(ev.ChatID)}
			c.progress[ev.ChatID] = p
		}
		p.lines = append(p.lines, line)
		if len(p.lines) > maxProgressLines {
			p.lines = p.lines[len(p.lines)-maxProgressLines:]
		}
		p.dirty = true
		c.mu.Unlock()
	case events.Reply, events.DeadLetter:
		// The turn ended: its progress message shows its last tools, and
		// is not edited again.
		c.mu.Lock()
		p := c.progress[ev.ChatID]
		delete(c.progress, ev.ChatID)
		c.mu.Unlock()
		if p != nil && p.dirty {
			c.showProgress(ctx, p)
		}
	}
}

// flushProgress posts or edits every progress message with lines not yet
// shown whose last edit is ProgressEvery old, and returns how long until
// the next one is due (0: none waits).
func (c *Channel) flushProgress(ctx context.Context) time.Duration {
	now := c.cfg.Clock.Now()
	var due []*progress
	var wait time.Duration
	c.mu.Lock()
	for _, p := range c.progress {
		if !p.dirty {
			continue
		}
		if next := p.edited.Add(ProgressEvery); p.ts != "" && next.After(now) {
			if w := next.Sub(now); wait == 0 || w < wait {
				wait = w
			}
			continue
		}
		due = append(due, p)
	}
	c.mu.Unlock()
	for _, p := range due {
		c.showProgress(ctx, p)
	}
	return wait
}

// showProgress posts p's message, or edits it, with its lines now.
func (c *Channel) showProgress(ctx context.Context, p *progress) {
	left, held := c.roleLeft()
	if !held {
		return // past the role's deadline nothing is sent; progress is best effort
	}
	ctx, cancel := context.WithTimeout(ctx, left)
	defer cancel()
	c.mu.Lock()
	text := "Working on it:\n" + strings.Join(p.lines, "\n")
	ts, ch, root := p.ts, p.channel, p.root
	p.dirty, p.edited = false, c.cfg.Clock.Now()
	c.mu.Unlock()
	if ts == "" {
		opts := []slackapi.MsgOption{slackapi.MsgOptionText(text, false)}
		if root != "" {
			opts = append(opts, slackapi.MsgOptionTS(root))
		}
		_, ts, err := c.api.PostMessageContext(ctx, ch, opts...)
		if err != nil {
			c.hold(methodPost, ch, err)
			return
		}
		c.mu.Lock()
		p.ts = ts
		c.mu.Unlock()
		return
	}
	if _, _, _, err := c.api.UpdateMessageContext(ctx, ch, ts, slackapi.MsgOptionText(text, false)); err != nil {
		if rl := c.hold(methodUpdate, ch, err); rl != nil {
			c.mu.Lock()
			p.dirty, p.edited = true, c.cfg.Clock.Now().Add(rl.After-ProgressEvery)
			c.mu.Unlock()
		}
	}
}

// rootOf is the thread a chat's live messages go in: that of the last
// message taken in ("" for a direct message outside a thread, or when
// none was taken in since the start).
func (c *Channel) rootOf(chat string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rootLocked(chat)
}

func (c *Channel) rootLocked(chat string) string { return c.roots[chat] }

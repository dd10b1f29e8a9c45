package telegram

import (
	"context"
	"errors"
	"fmt"
	"html"
	"strings"
	"sync"
	"time"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"

	"github.com/dispatchd/dispatch/internal/events"
)

// Progress as one status message per turn. The first progress event of a
// chat's turn (the agent started a tool) sends a status message; later
// ones edit it, at most once every StatusEvery, and the last state is
// always shown once that time has passed. When the turn's reply (or dead
// letter) is enqueued, the status message is edited one last time to a
// compact line ("Done: 3 steps — Bash ×2, Read"), which stays above the
// reply as a record of what the agent did; deleting it would leave no
// trace, and Telegram refuses to delete messages older than 48 hours.
//
// Progress is best effort: it is not stored, a daemon restart forgets it,
// and it runs in its own loop with its own requests, so it never delays
// or reorders replies. A 429 holds the chat's status message for its
// retry_after; any other failure drops the turn's status (no retries, no
// spam). A status message not yet sent when the turn ends is never sent.

// StatusEvery is the least time between two edits of a status message.
const StatusEvery = 2 * time.Second

// statusSteps is how many of a turn's latest steps the status shows.
const statusSteps = 5

// maxStepLen bounds one step's line in the status message.
const maxStepLen = 120

// status is one chat's status message for its running turn.
type status struct {
	chat    int64
	msgID   int      // 0 until sent
	steps   []string // every step's tool and summary, in order
	tools   []string // the tools used, in first-use order
	uses    map[string]int
	shown   string    // the text last sent
	last    time.Time // when it was last sent or edited
	ended   bool      // the turn ended: show the final line, then forget
	dropped bool      // a failure: forget it
	busy    bool      // a send or edit of it is in flight
}

// StatusDue is when a status last shown at last may next be edited, the
// chat being held until held (a 429): never before both.
func StatusDue(last, held time.Time) time.Time {
	due := last.Add(StatusEvery)
	if last.IsZero() {
		due = time.Time{}
	}
	if held.After(due) {
		return held
	}
	return due
}

// text is what the status message says now.
func (s *status) text() string {
	if s.ended {
		parts := make([]string, 0, len(s.tools))
		for _, t := range s.tools {
			if n := s.uses[t]; n > 1 {
				parts = append(parts, fmt.Sprintf("%s ×%d", t, n))
			} else {
				parts = append(parts, t)
			}
		}
		return html.EscapeString(fmt.Sprintf("✓ Done: %d %s — %s", len(s.steps), plural(len(s.steps), "step"), strings.Join(parts, ", ")))
	}
	var b strings.Builder
	b.WriteString(html.EscapeString(fmt.Sprintf("⏳ Working… (%d %s)", len(s.steps), plural(len(s.steps), "step"))))
	from := max(0, len(s.steps)-statusSteps)
	if from > 0 {
		b.WriteString("\n…")
	}
	for _, st := range s.steps[from:] {
		b.WriteString("\n• " + html.EscapeString(st))
	}
	return b.String()
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// stepLine is one step as the status shows it.
func stepLine(tool, summary string) string {
	line := tool
	if s := strings.Join(strings.Fields(summary), " "); s != "" {
		line += ": " + s
	}
	if r := []rune(line); len(r) > maxStepLen {
		line = string(r[:maxStepLen-1]) + "…"
	}
	return line
}

// progress keeps the chats' status messages.
type progress struct {
	mu     sync.Mutex
	chats  map[int64]*status // the running turn's status, per chat
	ending []*status         // ended turns' statuses still to show their last line
	held   map[int64]time.Time
	wake   chan struct{}
}

func newProgress() *progress {
	return &progress{chats: map[int64]*status{}, held: map[int64]time.Time{}, wake: make(chan struct{}, 1)}
}

func (p *progress) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// step records a progress event of chat (called by the outbox; never
// blocks).
func (p *progress) step(ev events.Event) {
	chat, ok := ParseChatID(ev.ChatID)
	if !ok {
		return
	}
	p.mu.Lock()
	s := p.chats[chat]
	if s == nil {
		s = &status{chat: chat, uses: map[string]int{}}
		p.chats[chat] = s
	}
	s.steps = append(s.steps, stepLine(ev.Tool, ev.Summary))
	if s.uses[ev.Tool] == 0 {
		s.tools = append(s.tools, ev.Tool)
	}
	s.uses[ev.Tool]++
	p.mu.Unlock()
	p.poke()
}

// ended records that chat's turn ended (its reply or dead letter was
// enqueued).
func (p *progress) ended(chat int64) {
	p.mu.Lock()
	s := p.chats[chat]
	delete(p.chats, chat)
	if s != nil {
		s.ended = true
		if (s.msgID != 0 || s.busy) && !s.dropped {
			p.ending = append(p.ending, s)
		}
	}
	p.mu.Unlock()
	if s != nil {
		p.poke()
	}
}

// statusOp is one send or edit the loop makes.
type statusOp struct {
	s    *status
	text string
}

// due returns the operations due at now and when the next one is due
// (zero: none waiting).
func (p *progress) due(now time.Time) (ops []statusOp, next time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	consider := func(s *status) {
		text := s.text()
		if s.dropped || s.busy || text == s.shown {
			return
		}
		at := StatusDue(s.last, p.held[s.chat])
		if at.After(now) {
			if next.IsZero() || at.Before(next) {
				next = at
			}
			return
		}
		s.busy = true
		ops = append(ops, statusOp{s: s, text: text})
	}
	for _, s := range p.chats {
		consider(s)
	}
	keep := p.ending[:0]
	for _, s := range p.ending {
		if s.dropped || (s.msgID == 0 && !s.busy) || (!s.busy && s.text() == s.shown) {
			continue // its last line is shown (or it was never sent): forgotten
		}
		consider(s)
		keep = append(keep, s)
	}
	p.ending = keep
	return ops, next
}

// progressLoop shows the chats' status messages until ctx ends.
func (c *Channel) progressLoop(ctx context.Context) {
	p := c.progress
	for ctx.Err() == nil {
		ops, next := p.due(c.cfg.Clock.Now())
		for _, op := range ops {
			c.showStatus(ctx, op)
		}
		if len(ops) > 0 {
			continue // look again: the state may have moved meanwhile
		}
		var (
			timer <-chan time.Time
			t     interface{ Stop() bool }
		)
		if !next.IsZero() {
			ct := c.cfg.Clock.NewTimer(next.Sub(c.cfg.Clock.Now()))
			t, timer = ct, ct.C()
		}
		select {
		case <-ctx.Done():
		case <-p.wake:
		case <-timer:
		}
		if t != nil {
			t.Stop()
		}
	}
}

// showStatus sends or edits one status message.
func (c *Channel) showStatus(ctx context.Context, op statusOp) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s := op.s
	c.progress.mu.Lock()
	msgID := s.msgID
	c.progress.mu.Unlock()
	var err error
	if msgID == 0 {
		sent, serr := c.bot.SendMessage(ctx, &bot.SendMessageParams{ChatID: s.chat, Text: op.text, ParseMode: models.ParseModeHTML})
		err = serr
		if serr == nil {
			msgID = sent.ID
		}
	} else {
		_, err = c.bot.EditMessageText(ctx, &bot.EditMessageTextParams{ChatID: s.chat, MessageID: msgID, Text: op.text, ParseMode: models.ParseModeHTML})
		if err != nil && errors.Is(err, bot.ErrorBadRequest) && strings.Contains(err.Error(), "not modified") {
			err = nil
		}
	}
	now := c.cfg.Clock.Now()
	p := c.progress
	p.mu.Lock()
	defer p.mu.Unlock()
	s.busy = false
	var tm *bot.TooManyRequestsError
	switch {
	case err == nil:
		s.msgID, s.shown, s.last = msgID, op.text, now
	case errors.As(err, &tm):
		p.held[s.chat] = now.Add(time.Duration(max(tm.RetryAfter, 1)) * time.Second)
	default:
		s.dropped = true
		c.cfg.Log.Info("telegram: status message dropped", "channel", c.cfg.Name, "chat", s.chat, "err", redact(err, c.cfg.Token))
	}
	if s.msgID == 0 && s.ended {
		s.dropped = true // the turn ended before its status was shown
	}
}

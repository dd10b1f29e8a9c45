package slack_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/channel/slack"
	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/fakeslack"
	"github.com/dispatchd/dispatch/internal/permission"
	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/store/sqlite"
)

// rig is a channel against the fake Slack, on a real store, with an agent
// that answers every message with reply(text).
type rig struct {
	t     *testing.T
	fake  *fakeslack.Server
	st    slack.Store
	db    *sqlite.Store
	ch    *slack.Channel
	ctl   *control
	perms *permission.Broker
	reply func(text string) string
	wake  chan string
	tweak func(*slack.Config) // changes the channel's configuration (files_test.go)
	until func() time.Time    // the role's deadline (nil: none)
}

const (
	ann = "U0ANN"
	bob = "U0BOB"
	eve = "U0EVE"
)

func newRig(t *testing.T, reply func(string) string, opts ...fakeslack.Option) *rig {
	t.Helper()
	return newRigUntil(t, reply, nil, opts...)
}

// newRigUntil is newRig with a channel under a role whose deadline is
// until.
func newRigUntil(t *testing.T, reply func(string) string, until func() time.Time, opts ...fakeslack.Option) *rig {
	t.Helper()
	fake := fakeslack.New(append([]fakeslack.Option{fakeslack.WithAckTimeout(300 * time.Millisecond)}, opts...)...)
	if err := fake.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fake.Close() })
	db, err := sqlite.Open(filepath.Join(t.TempDir(), "d.db"), clock.Real{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	n := 0
	broker := permission.NewBroker(db, clock.Real{}, time.Minute, func() string { n++; return fmt.Sprintf("req-%d", n) })
	r := &rig{t: t, fake: fake, st: db, db: db, reply: reply, wake: make(chan string, 1000), ctl: &control{}, perms: broker, until: until}
	r.start()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); r.agent(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return r
}

func (r *rig) start() {
	cfg := slack.Config{
		Name: "slack", BotToken: r.fake.BotToken(), AppToken: r.fake.AppToken(), APIURL: r.fake.APIURL(),
		Allow: []string{ann, bob}, Store: r.st, Log: testLog(), Accepted: func(chat string) { r.wake <- chat }, Control: r.ctl,
		Permissions: r.perms, Until: r.until,
	}
	if r.tweak != nil {
		r.tweak(&cfg)
	}
	ch, err := slack.New(cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	r.ch = ch
	ch.Start()
	r.t.Cleanup(ch.Stop)
}

// restart stops the channel and starts a new one on the same store.
func (r *rig) restart() {
	r.ch.Stop()
	r.start()
}

// agent answers each woken chat's pending messages, one turn each.
func (r *rig) agent(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case chat := <-r.wake:
			for {
				batch, _, err := r.db.Claim(ctx, chat, 1)
				if err != nil || len(batch) == 0 {
					break
				}
				ids := []string{batch[0].ID}
				err = nil
				if out := r.reply(batch[0].Text); strings.HasPrefix(out, "FAIL:") {
					_, err = r.db.Fail(ctx, ids, strings.TrimPrefix(out, "FAIL:"), 1)
				} else {
					err = r.db.Complete(ctx, ids, out)
				}
				if err != nil && ctx.Err() == nil {
					r.t.Error(err)
				}
			}
		}
	}
}

type control struct {
	mu    sync.Mutex
	calls []string
}

func (c *control) Restart(_ context.Context, chat string, clean bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, fmt.Sprintf("restart %s %v", chat, clean))
	return nil
}

func (c *control) ChatStatus(_ context.Context, chat string) (string, error) {
	return "idle, healthy; 0 waiting", nil
}

func (c *control) StopTurn(_ context.Context, chat string) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, "stop "+chat)
	return false, nil
}

func (r *rig) post(in fakeslack.Incoming) fakeslack.Posted {
	r.t.Helper()
	p, err := r.fake.Post(in)
	if err != nil {
		r.t.Fatal(err)
	}
	return p
}

func (r *rig) waitFor(what string, cond func() bool) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := r.fake.WaitFor(ctx, cond); err != nil {
		r.t.Fatalf("waiting for %s: %v", what, err)
	}
}

// botMessages waits until the bot has n messages in channel and returns
// them.
func (r *rig) botMessages(channel string, n int) []fakeslack.Message {
	r.t.Helper()
	r.waitFor(fmt.Sprintf("%d bot messages in %s", n, channel), func() bool { return len(r.fake.BotMessages(channel)) >= n })
	return r.fake.BotMessages(channel)
}

func (r *rig) messages(chat string) []store.Message {
	r.t.Helper()
	ms, err := r.db.List(context.Background(), store.Filter{ChatID: chat, State: store.Done})
	if err != nil {
		r.t.Fatal(err)
	}
	all, _ := r.db.List(context.Background(), store.Filter{ChatID: chat})
	return append(ms, all...)
}

func (r *rig) waitDelivered(chat string, n int) []store.ChannelDelivery {
	r.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ds, err := r.db.Deliveries(context.Background(), "slack", chat, 100)
		if err != nil {
			r.t.Fatal(err)
		}
		done := 0
		for _, d := range ds {
			if d.State == store.DeliveryDone {
				done++
			}
		}
		if done >= n {
			return ds
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%s: %d deliveries done, want %d: %+v", chat, done, n, ds)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// settle gives the channel time to do something it must not do.
func settle() { time.Sleep(400 * time.Millisecond) }

func echo(s string) string { return "**echo:** " + s }

func TestDirectMessage(t *testing.T) {
	r := newRig(t, echo)
	p := r.post(fakeslack.Incoming{User: ann, Text: "hello & <goodbye>"})
	dm := p.Channel
	sent := r.botMessages(dm, 1)
	if sent[0].Text != "*echo:* hello &amp; &lt;goodbye&gt;" || sent[0].ThreadTS != "" {
		t.Fatalf("sent %+v", sent[0])
	}
	chat := slack.ChatID(r.fake.TeamID(), dm)
	ms := r.messages(chat)
	if len(ms) != 1 || ms[0].Text != "hello & <goodbye>" || ms[0].ClientID != "/"+p.TS {
		t.Fatalf("stored %+v", ms)
	}
	ds := r.waitDelivered(chat, 1)
	if len(ds[0].PlatformIDs) != 1 || ds[0].PlatformIDs[0] != sent[0].TS {
		t.Fatalf("delivery %+v", ds)
	}
	// The reaction was on while the turn ran, and is gone.
	r.waitFor("the reaction removed", func() bool {
		var add, rm bool
		for _, op := range r.fake.Ops(dm) {
			add = add || (op.Method == "reactions.add" && op.TS == p.TS && op.Reaction == "eyes")
			rm = rm || (op.Method == "reactions.remove" && op.TS == p.TS && add)
		}
		return add && rm
	})
	if m, _ := r.fake.Message(dm, p.TS); len(m.Reactions) != 0 {
		t.Fatalf("reactions left: %+v", m.Reactions)
	}
	// Every envelope acknowledged.
	r.waitFor("acks", func() bool {
		for _, e := range r.fake.Envelopes() {
			if !e.Acked {
				return false
			}
		}
		return true
	})
}

func TestMentionAndThread(t *testing.T) {
	r := newRig(t, echo)
	const team = "C0TEAM"
	chat := slack.ChatID(r.fake.TeamID(), team)
	r.post(fakeslack.Incoming{User: ann, Channel: team, Text: "lunch anyone?"})
	p := r.post(fakeslack.Incoming{User: ann, Channel: team, Text: "what broke?", Mention: true})
	if len(p.EventIDs) != 2 {
		t.Fatalf("a mention should raise two events: %+v", p)
	}
	sent := r.botMessages(team, 1)
	if sent[0].Text != "*echo:* what broke?" || sent[0].ThreadTS != p.TS {
		t.Fatalf("the answer is not in a thread under the mention: %+v", sent[0])
	}
	// The thread continues without a mention, from anyone allowed.
	r.post(fakeslack.Incoming{User: bob, Channel: team, Text: "and the tests?", ThreadTS: p.TS})
	sent = r.botMessages(team, 2)
	if sent[1].Text != "*echo:* and the tests?" || sent[1].ThreadTS != p.TS {
		t.Fatalf("thread reply %+v", sent[1])
	}
	// Another thread, not the bot's, is not for it.
	other := r.post(fakeslack.Incoming{User: bob, Channel: team, Text: "pizza"})
	r.post(fakeslack.Incoming{User: ann, Channel: team, Text: "yes please", ThreadTS: other.TS})
	// After a restart the thread is still the bot's.
	r.restart()
	r.post(fakeslack.Incoming{User: ann, Channel: team, Text: "still there?", ThreadTS: p.TS})
	sent = r.botMessages(team, 3)
	if sent[2].Text != "*echo:* still there?" || sent[2].ThreadTS != p.TS {
		t.Fatalf("thread reply after a restart %+v", sent[2])
	}
	settle()
	if n := len(r.fake.BotMessages(team)); n != 3 {
		t.Fatalf("%d bot messages: %+v", n, r.fake.BotMessages(team))
	}
	ms := r.messages(chat)
	if len(ms) != 3 {
		t.Fatalf("queued %d: %+v", len(ms), ms)
	}
	for _, m := range ms {
		if !strings.HasPrefix(m.ClientID, p.TS+"/") {
			t.Fatalf("client id %q not in the thread %s", m.ClientID, p.TS)
		}
	}
}

func TestStrangerRefusedOnce(t *testing.T) {
	r := newRig(t, echo)
	r.post(fakeslack.Incoming{User: eve, Text: "let me in"})
	r.post(fakeslack.Incoming{User: eve, Channel: "C0TEAM", Text: "me too", Mention: true})
	r.waitFor("two refusals", func() bool {
		return len(r.fake.Ephemerals(r.fake.DMChannel(eve))) == 1 && len(r.fake.Ephemerals("C0TEAM")) == 1
	})
	settle()
	for _, ch := range []string{r.fake.DMChannel(eve), "C0TEAM"} {
		eph := r.fake.Ephemerals(ch)
		if len(eph) != 1 || eph[0].User != eve || !strings.Contains(eph[0].Text, "Your Slack user id is "+eve) {
			t.Fatalf("%s: refusals %+v", ch, eph)
		}
		if ms := r.messages(slack.ChatID(r.fake.TeamID(), ch)); len(ms) != 0 {
			t.Fatalf("a stranger's message was queued: %+v", ms)
		}
		if n := len(r.fake.BotMessages(ch)); n != 0 {
			t.Fatalf("%d bot messages in %s", n, ch)
		}
	}
}

func TestCommands(t *testing.T) {
	r := newRig(t, echo)
	p := r.post(fakeslack.Incoming{User: ann, Text: "/status"})
	sent := r.botMessages(p.Channel, 1)
	if !strings.Contains(sent[0].Text, "healthy") {
		t.Fatalf("status answer %+v", sent)
	}
	r.post(fakeslack.Incoming{User: ann, Channel: "C0TEAM", Text: "new", Mention: true})
	sent = r.botMessages("C0TEAM", 1)
	if !strings.Contains(sent[0].Text, "clean conversation") {
		t.Fatalf("new answer %+v", sent)
	}
	r.post(fakeslack.Incoming{User: ann, Text: "/stop"})
	sent = r.botMessages(p.Channel, 2)
	if !strings.Contains(sent[1].Text, "Nothing is running") {
		t.Fatalf("stop answer %+v", sent)
	}
	r.ctl.mu.Lock()
	calls := strings.Join(r.ctl.calls, ",")
	r.ctl.mu.Unlock()
	team := r.fake.TeamID()
	if calls != "restart slack:"+team+":C0TEAM true,stop slack:"+team+":"+p.Channel {
		t.Fatalf("control calls %s", calls)
	}
	if ms := r.messages(slack.ChatID(team, p.Channel)); len(ms) != 0 {
		t.Fatalf("commands were queued: %+v", ms)
	}
}

// TestRedeliveredEnvelope: an envelope whose acknowledgement Slack did not
// get comes again with the same event; the copy is acknowledged and
// nothing new is queued.
func TestRedeliveredEnvelope(t *testing.T) {
	r := newRig(t, echo)
	r.fake.HoldAcks(true)
	p := r.post(fakeslack.Incoming{User: ann, Text: "once"})
	r.waitFor("a redelivery", func() bool {
		e, _ := r.fake.Envelope(p.Envelopes[0])
		return e.RetryAttempt >= 2
	})
	r.fake.HoldAcks(false)
	r.waitFor("the acknowledgement", func() bool {
		e, _ := r.fake.Envelope(p.Envelopes[0])
		return e.Acked
	})
	r.botMessages(p.Channel, 1)
	settle()
	if n := len(r.fake.BotMessages(p.Channel)); n != 1 {
		t.Fatalf("%d replies", n)
	}
	if ms := r.messages(slack.ChatID(r.fake.TeamID(), p.Channel)); len(ms) != 1 {
		t.Fatalf("stored %+v", ms)
	}
}

// blockingStore holds Accept until released.
type blockingStore struct {
	slack.Store
	entered chan struct{}
	release chan struct{}
}

func (b *blockingStore) Accept(ctx context.Context, chat, text, client string) (string, bool, error) {
	b.entered <- struct{}{}
	<-b.release
	return b.Store.Accept(ctx, chat, text, client)
}

// TestCommitBeforeAck: the envelope is acknowledged only once its message
// is committed.
func TestCommitBeforeAck(t *testing.T) {
	r := newRig(t, echo, fakeslack.WithAckTimeout(time.Minute))
	bs := &blockingStore{Store: r.db, entered: make(chan struct{}, 10), release: make(chan struct{})}
	r.ch.Stop()
	r.st = bs
	r.start()
	var once sync.Once
	release := func() { once.Do(func() { close(bs.release) }) }
	t.Cleanup(release) // before the channel's Stop: a failed check does not leave it blocked
	p := r.post(fakeslack.Incoming{User: ann, Text: "commit me"})
	<-bs.entered
	time.Sleep(200 * time.Millisecond)
	if e, _ := r.fake.Envelope(p.Envelopes[0]); e.Acked {
		t.Fatal("acknowledged before the commit")
	}
	if ms := r.messages(slack.ChatID(r.fake.TeamID(), p.Channel)); len(ms) != 0 {
		t.Fatalf("stored early %+v", ms)
	}
	release()
	r.waitFor("the acknowledgement", func() bool {
		e, _ := r.fake.Envelope(p.Envelopes[0])
		return e.Acked
	})
	if ms := r.messages(slack.ChatID(r.fake.TeamID(), p.Channel)); len(ms) != 1 {
		t.Fatalf("stored %+v", ms)
	}
}

// TestRateLimitPerMethod: a 429 on chat.postMessage holds that chat's
// replies for Retry-After; another chat's reply and other methods go on.
func TestRateLimitPerMethod(t *testing.T) {
	r := newRig(t, echo)
	r.fake.RateLimit("chat.postMessage", 1, 2)
	a := r.post(fakeslack.Incoming{User: ann, Text: "first"})
	r.waitFor("the 429", func() bool {
		for _, c := range r.fake.Calls() {
			if c.Method == "chat.postMessage" && c.Status == 429 {
				return true
			}
		}
		return false
	})
	limitedAt := time.Now()
	b := r.post(fakeslack.Incoming{User: bob, Text: "second"})
	r.botMessages(b.Channel, 1)
	if len(r.fake.BotMessages(a.Channel)) != 0 {
		t.Fatal("the limited chat was not held")
	}
	// reactions.add went on in the limited chat meanwhile.
	a2 := r.post(fakeslack.Incoming{User: ann, Text: "third"})
	r.waitFor("a reaction in the held chat", func() bool {
		m, _ := r.fake.Message(a.Channel, a2.TS)
		return len(m.Reactions) == 1
	})
	sent := r.botMessages(a.Channel, 2)
	if waited := time.Since(limitedAt); waited < 1500*time.Millisecond {
		t.Fatalf("the held chat went on after %v, Retry-After was 2 s", waited)
	}
	if sent[0].Text != "*echo:* first" || sent[1].Text != "*echo:* third" {
		t.Fatalf("order %q, %q", sent[0].Text, sent[1].Text)
	}
}

// TestDisconnectNothingLost: disconnect requests and cut connections while
// people write: every message answered exactly once.
func TestDisconnectNothingLost(t *testing.T) {
	r := newRig(t, func(s string) string { return s })
	const n = 20
	for i := range n {
		r.post(fakeslack.Incoming{User: ann, Text: fmt.Sprintf("m%02d", i)})
		switch i {
		case 5:
			r.fake.Disconnect("refresh_requested")
		case 10:
			r.fake.Drop()
		case 15:
			r.fake.Disconnect("warning")
		}
		time.Sleep(20 * time.Millisecond)
	}
	dm := r.fake.DMChannel(ann)
	r.waitFor("every answer", func() bool { return len(r.fake.BotMessages(dm)) >= n })
	settle()
	sent := r.fake.BotMessages(dm)
	if len(sent) != n {
		t.Fatalf("%d answers for %d messages", len(sent), n)
	}
	// An envelope on a connection that went away comes again on the next
	// one after Slack's acknowledgement timeout, so its answer may come
	// after later ones: each exactly once, not necessarily in order.
	seen := map[string]bool{}
	for _, m := range sent {
		if seen[m.Text] {
			t.Fatalf("%q answered twice", m.Text)
		}
		seen[m.Text] = true
	}
	for i := range n {
		if !seen[fmt.Sprintf("m%02d", i)] {
			t.Fatalf("m%02d not answered: %+v", i, sent)
		}
	}
	if c := r.fake.Connections(); c < 1 {
		t.Fatalf("%d connections after reconnecting", c)
	}
}

func TestLongReplySplitInOrder(t *testing.T) {
	var paras []string
	for i := 0; len(strings.Join(paras, "\n\n")) < 8000; i++ {
		paras = append(paras, fmt.Sprintf("Paragraph %d. %s", i, strings.Repeat("word ", 40)))
	}
	long := strings.Join(paras, "\n\n")
	r := newRig(t, func(string) string { return long })
	p := r.post(fakeslack.Incoming{User: ann, Text: "tell me a lot"})
	r.botMessages(p.Channel, 3)
	ds := r.waitDelivered(slack.ChatID(r.fake.TeamID(), p.Channel), 1)
	sent := r.fake.BotMessages(p.Channel)
	if len(sent) != ds[0].Sent || len(ds[0].PlatformIDs) != len(sent) {
		t.Fatalf("%d sent, delivery %+v", len(sent), ds[0])
	}
	var got []string
	for i, m := range sent {
		if len(m.Text) > slack.MaxPartLen || m.TS != ds[0].PlatformIDs[i] {
			t.Fatalf("part %d: %d bytes, ts %s", i, len(m.Text), m.TS)
		}
		got = append(got, m.Text)
	}
	norm := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	if norm(strings.Join(got, "\n\n")) != norm(long) {
		t.Fatal("the parts are not the reply in order")
	}
}

// TestPlainFallback: a part Slack refuses with its formatting goes again
// without it.
func TestPlainFallback(t *testing.T) {
	r := newRig(t, echo)
	r.fake.FailNext("chat.postMessage", 1, "invalid_blocks")
	p := r.post(fakeslack.Incoming{User: ann, Text: "x"})
	sent := r.botMessages(p.Channel, 1)
	if sent[0].Mrkdwn == nil || *sent[0].Mrkdwn {
		t.Fatalf("fallback %+v", sent[0])
	}
}

// testLog logs to stderr with DISPATCH_TEST_LOG set.
func testLog() *slog.Logger {
	if os.Getenv("DISPATCH_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// TestDeadLetterNotice: a message that gave up reaches the person as a
// short notice, in its thread, and its reaction is taken off.
func TestDeadLetterNotice(t *testing.T) {
	r := newRig(t, func(string) string { return "FAIL:the agent crashed <twice>" })
	p := r.post(fakeslack.Incoming{User: ann, Channel: "C0TEAM", Text: "try this", Mention: true})
	sent := r.botMessages("C0TEAM", 1)
	if sent[0].Text != "I could not answer this: the agent crashed &lt;twice&gt;" || sent[0].ThreadTS != p.TS {
		t.Fatalf("notice %+v", sent[0])
	}
	r.waitFor("the reaction removed", func() bool {
		m, _ := r.fake.Message("C0TEAM", p.TS)
		for _, op := range r.fake.Ops("C0TEAM") {
			if op.Method == "reactions.remove" && op.TS == p.TS {
				return len(m.Reactions) == 0
			}
		}
		return false
	})
}

// TestPermissionButtons: a permission request is shown as buttons in the
// chat's thread; a stranger's press is refused, only to them; an allowed
// person's press decides it, and the buttons give way to who decided.
func TestPermissionButtons(t *testing.T) {
	r := newRig(t, echo)
	p := r.post(fakeslack.Incoming{User: ann, Channel: "C0TEAM", Text: "deploy", Mention: true})
	r.botMessages("C0TEAM", 1)
	chat := slack.ChatID(r.fake.TeamID(), "C0TEAM")
	got := make(chan permission.Request, 1)
	go func() {
		req, err := r.perms.Ask(context.Background(), chat, permission.Question{Tool: "Bash", Summary: "touch x"})
		if err != nil {
			t.Error(err)
		}
		got <- req
	}()
	sent := r.botMessages("C0TEAM", 2)
	ask := sent[1]
	if ask.ThreadTS != p.TS || !strings.Contains(string(ask.Blocks), `"action_id":"perm:allow:req-1"`) || !strings.Contains(ask.Text, "Bash: touch x") {
		t.Fatalf("the request's message %+v", ask)
	}
	if _, err := r.fake.Press("C0TEAM", ask.TS, eve, "perm:allow:req-1"); err != nil {
		t.Fatal(err)
	}
	r.waitFor("the stranger told", func() bool {
		for _, e := range r.fake.Ephemerals("C0TEAM") {
			if e.User == eve && strings.Contains(e.Text, eve) {
				return true
			}
		}
		return false
	})
	select {
	case req := <-got:
		t.Fatalf("a stranger decided: %+v", req)
	case <-time.After(200 * time.Millisecond):
	}
	if _, err := r.fake.Press("C0TEAM", ask.TS, ann, "perm:allow:req-1"); err != nil {
		t.Fatal(err)
	}
	select {
	case req := <-got:
		if req.Decision != permission.Allow || req.DecidedBy != "slack:"+ann {
			t.Fatalf("decided %+v", req)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the press did not decide")
	}
	r.waitFor("the buttons gone", func() bool {
		m, _ := r.fake.Message("C0TEAM", ask.TS)
		return !strings.Contains(string(m.Blocks), "button") && strings.Contains(string(m.Blocks), "Allowed once by ") &&
			strings.Contains(string(m.Blocks), ann) && strings.HasPrefix(m.Text, "Allowed once")
	})
}

// TestProgressOneMessage: the tools a turn uses are one message, edited at
// most once every 2 s, in the chat's thread.
func TestProgressOneMessage(t *testing.T) {
	r := newRig(t, echo)
	p := r.post(fakeslack.Incoming{User: ann, Channel: "C0TEAM", Text: "work", Mention: true})
	r.botMessages("C0TEAM", 1)
	chat := slack.ChatID(r.fake.TeamID(), "C0TEAM")
	ctx := context.Background()
	for i := range 6 {
		if err := r.db.AppendProgress(ctx, events.Event{Type: events.Progress, ChatID: chat, TurnID: "turn-x", Tool: "Bash", Summary: fmt.Sprintf("step %d", i)}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	r.waitFor("every step shown", func() bool {
		ms := r.fake.BotMessages("C0TEAM")
		return len(ms) == 2 && strings.Contains(ms[1].Text, "step 5")
	})
	prog := r.fake.BotMessages("C0TEAM")[1]
	if prog.ThreadTS != p.TS || !strings.Contains(prog.Text, "step 0") {
		t.Fatalf("progress %+v", prog)
	}
	var last time.Time
	edits := 0
	for _, op := range r.fake.Ops("C0TEAM") {
		if op.TS != prog.TS || (op.Method != "chat.postMessage" && op.Method != "chat.update") {
			continue
		}
		if !last.IsZero() && op.Time.Sub(last) < slack.ProgressEvery-50*time.Millisecond {
			t.Fatalf("edited %v after the last", op.Time.Sub(last))
		}
		last = op.Time
		if op.Method == "chat.update" {
			edits++
		}
	}
	if edits == 0 {
		t.Fatal("the progress message was never edited")
	}
}

// askAfterReply has ann mention the bot, waits for the reply, then asks a
// permission in that chat and waits for the request's message; the
// decision arrives on the returned channel.
func (r *rig) askAfterReply() (thread string, ask fakeslack.Message, got chan permission.Request) {
	r.t.Helper()
	p := r.post(fakeslack.Incoming{User: ann, Channel: "C0TEAM", Text: "deploy", Mention: true})
	r.botMessages("C0TEAM", 1)
	chat := slack.ChatID(r.fake.TeamID(), "C0TEAM")
	got = make(chan permission.Request, 1)
	go func() {
		req, err := r.perms.Ask(context.Background(), chat, permission.Question{Tool: "Bash", Summary: "touch x"})
		if err != nil {
			r.t.Error(err)
		}
		got <- req
	}()
	return p.TS, r.botMessages("C0TEAM", 2)[1], got
}

// closedWith waits until the request's message ts shows want and no
// button, then checks nothing else was posted: each message once.
func (r *rig) closedWith(ts, want string) {
	r.t.Helper()
	r.waitFor("the buttons replaced by "+want, func() bool {
		m, _ := r.fake.Message("C0TEAM", ts)
		return !strings.Contains(string(m.Blocks), "button") && strings.Contains(string(m.Blocks), want)
	})
	settle()
	if ms := r.fake.BotMessages("C0TEAM"); len(ms) != 2 {
		r.t.Fatalf("%d bot messages, want the reply and the request once: %+v", len(ms), ms)
	}
	updates := 0
	for _, op := range r.fake.Ops("C0TEAM") {
		if op.Method == "chat.update" && op.TS == ts {
			updates++
		}
	}
	if updates != 1 {
		r.t.Fatalf("the request's message was updated %d times, want once", updates)
	}
}

// TestPermissionDecidedElsewhere: a request decided outside Slack (the
// CLI) loses its buttons all the same, and a press after that decides
// nothing and says so.
func TestPermissionDecidedElsewhere(t *testing.T) {
	r := newRig(t, echo)
	_, ask, got := r.askAfterReply()
	if _, err := r.perms.Decide(context.Background(), "req-1", permission.Deny, "cli"); err != nil {
		t.Fatal(err)
	}
	if req := <-got; req.Decision != permission.Deny {
		t.Fatalf("decided %+v", req)
	}
	r.closedWith(ask.TS, "Denied by cli")
}

// TestPermissionAcrossRestart: the channel restarts between showing a
// request and its decision; the request is not shown again, and the press
// after the restart decides it and closes the message shown before.
func TestPermissionAcrossRestart(t *testing.T) {
	r := newRig(t, echo)
	thread, ask, got := r.askAfterReply()
	if ask.ThreadTS != thread {
		t.Fatalf("the request is not in the thread: %+v", ask)
	}
	r.restart()
	settle()
	if _, err := r.fake.Press("C0TEAM", ask.TS, bob, "perm:allow_always:req-1"); err != nil {
		t.Fatal(err)
	}
	select {
	case req := <-got:
		if req.Decision != permission.AllowAlways || req.DecidedBy != "slack:"+bob {
			t.Fatalf("decided %+v", req)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the press did not decide")
	}
	r.closedWith(ask.TS, "Always allowed here by ")
	if m, _ := r.fake.Message("C0TEAM", ask.TS); !strings.Contains(string(m.Blocks), "@"+bob) {
		t.Fatalf("the decision does not name bob: %s", m.Blocks)
	}
	r.waitFor("bob told", func() bool {
		for _, e := range r.fake.Ephemerals("C0TEAM") {
			if e.User == bob && strings.Contains(e.Text, "Always allowed here") {
				return true
			}
		}
		return false
	})
}

// TestPermissionAfterRestartInThread: a channel started again (a restart,
// or the role taken over by another node) knows no thread yet, so the
// request of the turn in flight goes to the thread of that turn's message,
// found in the store, not to the conversation.
func TestPermissionAfterRestartInThread(t *testing.T) {
	release := make(chan struct{})
	r := newRig(t, func(s string) string {
		if strings.Contains(s, "deploy") {
			<-release // in flight until the request is shown
		}
		return s
	})
	defer close(release)
	p := r.post(fakeslack.Incoming{User: ann, Channel: "C0TEAM", Text: "deploy", Mention: true})
	chat := slack.ChatID(r.fake.TeamID(), "C0TEAM")
	r.waitFor("the message in flight", func() bool {
		ms, err := r.db.List(context.Background(), store.Filter{ChatID: chat, State: store.Inflight})
		return err == nil && len(ms) == 1
	})
	r.restart()
	ctx, cancel := context.WithCancel(context.Background())
	asked := make(chan struct{})
	go func() {
		defer close(asked)
		_, _ = r.perms.Ask(ctx, chat, permission.Question{Tool: "Bash", Summary: "touch x"})
	}()
	defer func() { cancel(); <-asked }()
	ask := r.botMessages("C0TEAM", 1)[0]
	if ask.ThreadTS != p.TS || !strings.Contains(ask.Text, "Bash: touch x") {
		t.Fatalf("the request after the restart: thread %q, text %q; want thread %s", ask.ThreadTS, ask.Text, p.TS)
	}
}

package telegram_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/channel/telegram"
	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/faketelegram"
	"github.com/dispatchd/dispatch/internal/permission"
	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/store/sqlite"
)

var (
	ann = faketelegram.User{ID: 42, FirstName: "Ann"}
	bob = faketelegram.User{ID: 43, FirstName: "Bob"}
	eve = faketelegram.User{ID: 7, FirstName: "Eve"}
)

// rig is a channel against the fake Telegram, on a real store, with an
// agent that answers every message with reply(text).
type rig struct {
	t     *testing.T
	fake  *faketelegram.Server
	st    *sqlite.Store
	ch    *telegram.Channel
	reply func(text string) string
	wake  chan string
	// opts change the channel's configuration before it starts.
	opts []func(*telegram.Config)
}

func newRig(t *testing.T, reply func(string) string, opts ...func(*telegram.Config)) *rig {
	t.Helper()
	fake := faketelegram.New()
	if err := fake.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fake.Close() })
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "d.db"), clock.Real{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	r := &rig{t: t, fake: fake, st: st, reply: reply, wake: make(chan string, 100), opts: opts}
	r.start()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); r.agent(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return r
}

func (r *rig) start() {
	cfg := telegram.Config{
		Name: "telegram", Token: r.fake.Token(), APIURL: r.fake.URL(), Allow: []int64{42, 43},
		Store: r.st, Accepted: func(chat string) { r.wake <- chat }, PollTimeout: time.Second,
	}
	for _, o := range r.opts {
		if o != nil {
			o(&cfg)
		}
	}
	ch, err := telegram.New(cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	r.ch = ch
	ch.Start()
	r.t.Cleanup(ch.Stop)
}

// agent answers each woken chat's pending messages, one turn each.
func (r *rig) agent(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case chat := <-r.wake:
			for {
				batch, _, err := r.st.Claim(ctx, chat, 1)
				if err != nil || len(batch) == 0 {
					break
				}
				ids := []string{batch[0].ID}
				if err := r.st.Complete(ctx, ids, r.reply(batch[0].Text)); err != nil {
					r.t.Error(err)
				}
			}
		}
	}
}

func (r *rig) waitSent(chat int64, n int) []faketelegram.SentMessage {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := r.fake.WaitFor(ctx, func() bool { return len(r.fake.Sent(chat)) >= n }); err != nil {
		r.t.Fatalf("chat %d: %d messages sent, want %d: %+v", chat, len(r.fake.Sent(chat)), n, r.fake.Sent(chat))
	}
	return r.fake.Sent(chat)
}

// waitDelivered waits until chat has n deliveries done and returns its
// deliveries.
func (r *rig) waitDelivered(chat string, n int) []store.ChannelDelivery {
	r.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ds, err := r.st.Deliveries(context.Background(), "telegram", chat, 100)
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

func (r *rig) send(in faketelegram.Incoming) faketelegram.Update {
	r.t.Helper()
	u, err := r.fake.Send(in)
	if err != nil {
		r.t.Fatal(err)
	}
	return u
}

func (r *rig) messages(chat string) []store.Message {
	r.t.Helper()
	ms, err := r.st.List(context.Background(), store.Filter{ChatID: chat, State: store.Done})
	if err != nil {
		r.t.Fatal(err)
	}
	all, _ := r.st.List(context.Background(), store.Filter{ChatID: chat})
	return append(ms, all...)
}

func echo(s string) string { return "**echo:** " + s }

func TestRoundTrip(t *testing.T) {
	r := newRig(t, echo)
	u := r.send(faketelegram.Incoming{From: ann, Text: "hello"})
	sent := r.waitSent(42, 1)
	if sent[0].Text != "echo: hello" || sent[0].ParseMode != "HTML" || len(sent[0].Entities) != 1 || sent[0].Entities[0].Type != "bold" {
		t.Fatalf("sent %+v", sent[0])
	}
	ms := r.messages("tg:42")
	if len(ms) != 1 || ms[0].ClientID != fmt.Sprint(u.UpdateID) || ms[0].Text != "hello" {
		t.Fatalf("stored %+v", ms)
	}
	if acts := r.fake.ChatActions(42); len(acts) == 0 || acts[0] != "typing" {
		t.Fatalf("chat actions %v", acts)
	}
	ctx := context.Background()
	ds := r.waitDelivered("tg:42", 1)
	if len(ds) != 1 || ds[0].State != store.DeliveryDone || len(ds[0].PlatformIDs) != 1 || ds[0].PlatformIDs[0] != fmt.Sprint(sent[0].MessageID) {
		t.Fatalf("deliveries %+v", ds)
	}
	if c, _ := r.st.ChannelCursor(ctx, "telegram"); c.Inbound != u.UpdateID+1 {
		t.Fatalf("cursor %+v after update %d", c, u.UpdateID)
	}
}

func TestStrangerRefusedNothingQueued(t *testing.T) {
	r := newRig(t, echo)
	r.send(faketelegram.Incoming{From: eve, Text: "let me in"})
	sent := r.waitSent(7, 1)
	if !strings.Contains(sent[0].Text, "Your Telegram user id is 7") {
		t.Fatalf("refusal %q", sent[0].Text)
	}
	if ms := r.messages("tg:7"); len(ms) != 0 {
		t.Fatalf("a stranger's message was queued: %+v", ms)
	}
	// One refusal per message, and the cursor moved past it.
	time.Sleep(300 * time.Millisecond)
	if n := len(r.fake.Sent(7)); n != 1 {
		t.Fatalf("%d refusals", n)
	}
}

func TestGroupOnlyWhenAddressed(t *testing.T) {
	r := newRig(t, echo)
	group := faketelegram.Chat{ID: -1001, Type: "supergroup", Title: "team"}
	r.send(faketelegram.Incoming{Chat: group, From: ann, Text: "lunch anyone?"})
	r.send(faketelegram.Incoming{Chat: group, From: eve, Text: "me"})
	r.send(faketelegram.Incoming{Chat: group, From: ann, Text: "@" + r.fake.Bot().Username + " status?"})
	sent := r.waitSent(-1001, 1)
	if sent[0].Text != "echo: @"+r.fake.Bot().Username+" status?" {
		t.Fatalf("sent %+v", sent)
	}
	// A reply to the bot's message is addressed too.
	r.send(faketelegram.Incoming{Chat: group, From: bob, Text: "and you?", ReplyTo: sent[0].MessageID})
	sent = r.waitSent(-1001, 2)
	if sent[1].Text != "echo: and you?" {
		t.Fatalf("sent %+v", sent)
	}
	if ms := r.messages("tg:-1001"); len(ms) != 2 {
		t.Fatalf("queued %+v", ms)
	}
}

func TestLongReplySplitInOrder(t *testing.T) {
	var paras []string
	for i := 0; len(strings.Join(paras, "\n\n")) < 10000; i++ {
		paras = append(paras, fmt.Sprintf("Paragraph %d. %s", i, strings.Repeat("word ", 40)))
	}
	long := strings.Join(paras, "\n\n")
	r := newRig(t, func(string) string { return long })
	r.send(faketelegram.Incoming{From: ann, Text: "tell me a lot"})
	sent := r.waitSent(42, 3)
	time.Sleep(200 * time.Millisecond)
	sent = r.fake.Sent(42)
	if len(sent) != 3 {
		t.Fatalf("%d parts", len(sent))
	}
	var got []string
	for _, m := range sent {
		if n := len([]rune(m.Text)); n > telegram.MaxMessageLen {
			t.Fatalf("part of %d characters", n)
		}
		got = append(got, m.Text)
	}
	norm := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	if norm(strings.Join(got, "\n\n")) != norm(long) {
		t.Fatal("the parts are not the reply in order")
	}
	ds := r.waitDelivered("tg:42", 1)
	if len(ds) != 1 || ds[0].Sent != 3 || len(ds[0].PlatformIDs) != 3 {
		t.Fatalf("delivery %+v", ds)
	}
}

func TestRateLimitHoldsOnlyItsChat(t *testing.T) {
	r := newRig(t, echo)
	// Ann's chat is rate-limited for 2 s; Bob's goes on meanwhile.
	r.fake.LimitChat(42, 2*time.Second)
	start := time.Now()
	r.send(faketelegram.Incoming{From: ann, Text: "first"})
	r.send(faketelegram.Incoming{From: bob, Text: "meanwhile"})
	if sent := r.waitSent(43, 1); sent[0].Text != "echo: meanwhile" {
		t.Fatalf("bob got %+v", sent)
	}
	if len(r.fake.Sent(42)) != 0 {
		t.Fatal("ann's reply went through the rate limit")
	}
	r.send(faketelegram.Incoming{From: ann, Text: "second"})
	sent := r.waitSent(42, 2)
	if time.Since(start) < 2*time.Second {
		t.Fatalf("ann's replies came before retry_after: %v", time.Since(start))
	}
	if sent[0].Text != "echo: first" || sent[1].Text != "echo: second" {
		t.Fatalf("ann's replies out of order: %+v", sent)
	}
}

func TestEntitiesRefusedSentPlain(t *testing.T) {
	r := newRig(t, echo)
	r.fake.FailNext("sendMessage", 1, faketelegram.Fault{Status: 400, Description: "Bad Request: can't parse entities: unsupported start tag"})
	r.send(faketelegram.Incoming{From: ann, Text: "hi"})
	sent := r.waitSent(42, 1)
	if sent[0].Text != "echo: hi" || sent[0].ParseMode != "" {
		t.Fatalf("fallback %+v", sent[0])
	}
}

func TestDeadLetterNotice(t *testing.T) {
	r := newRig(t, echo)
	r.fake.AddChat(faketelegram.Chat{ID: 42, Type: "private", FirstName: "Ann"})
	ctx := context.Background()
	for {
		if c, _ := r.st.ChannelCursor(ctx, "telegram"); !c.Updated.IsZero() {
			break // the outbox started: from here on every event is delivered
		}
		time.Sleep(10 * time.Millisecond)
	}
	id, _, err := r.st.Accept(ctx, "tg:42", "poison", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.st.Claim(ctx, "tg:42", 1); err != nil {
		t.Fatal(err)
	}
	if dead, err := r.st.Fail(ctx, []string{id}, "the agent crashed twice", 1); err != nil || len(dead) != 1 {
		t.Fatalf("fail: %v %v", dead, err)
	}
	sent := r.waitSent(42, 1)
	if sent[0].Text != "I could not answer this: the agent crashed twice" {
		t.Fatalf("notice %q", sent[0].Text)
	}
}

// A store that cannot commit holds the update: it is accepted once the
// store is back, once, and nothing after it is skipped.
func TestIntakeRetriesStoreErrors(t *testing.T) {
	r := newRig(t, echo)
	r.st.InjectWriteFault(func() error { return fmt.Errorf("disk: %w", syscall.ENOSPC) })
	r.send(faketelegram.Incoming{From: ann, Text: "one"})
	r.send(faketelegram.Incoming{From: ann, Text: "two"})
	time.Sleep(700 * time.Millisecond)
	if ms := r.messages("tg:42"); len(ms) != 0 {
		t.Fatalf("accepted under a fault: %+v", ms)
	}
	r.st.InjectWriteFault(nil)
	sent := r.waitSent(42, 2)
	if sent[0].Text != "echo: one" || sent[1].Text != "echo: two" {
		t.Fatalf("sent %+v", sent)
	}
}

// A channel stopped and started again (a restart) neither accepts an
// update twice nor sends a reply twice.
func TestRestartExactlyOnce(t *testing.T) {
	r := newRig(t, echo)
	for i := range 5 {
		r.send(faketelegram.Incoming{From: ann, Text: fmt.Sprint("m", i)})
	}
	r.waitSent(42, 5)
	r.ch.Stop()
	r.start()
	for i := 5; i < 8; i++ {
		r.send(faketelegram.Incoming{From: ann, Text: fmt.Sprint("m", i)})
	}
	sent := r.waitSent(42, 8)
	time.Sleep(300 * time.Millisecond)
	sent = r.fake.Sent(42)
	if len(sent) != 8 {
		for _, m := range sent {
			t.Log(m.MessageID, m.Text)
		}
		t.Fatalf("%d replies for 8 messages", len(sent))
	}
	for i, m := range sent {
		if m.Text != fmt.Sprint("echo: m", i) {
			t.Fatalf("reply %d = %q", i, m.Text)
		}
	}
	all, _ := r.st.List(context.Background(), store.Filter{ChatID: "tg:42", State: store.Done})
	if len(all) != 8 {
		t.Fatalf("%d messages stored for 8 updates", len(all))
	}
}

// Telegram down (connections refused, then 502 pages, then hanging) and
// back: what was written meanwhile is taken in once and answered once, in
// order, and the channel shows it was not connected.
func TestFakeDownAndBack(t *testing.T) {
	r := newRig(t, echo)
	r.send(faketelegram.Incoming{From: ann, Text: "before"})
	// Recorded first: an answer cut by the outage would be the window in
	// which a reply is sent twice.
	r.waitDelivered("tg:42", 1)
	for _, m := range []faketelegram.Mode{faketelegram.ModeRefuse, faketelegram.Mode502, faketelegram.ModeHang} {
		r.fake.SetMode(m)
		r.send(faketelegram.Incoming{From: ann, Text: "during " + string(m)})
		time.Sleep(1500 * time.Millisecond)
		if m != faketelegram.ModeHang {
			if st := r.ch.Status(); st.Connected || st.Error == "" {
				t.Fatalf("mode %s: status %+v", m, st)
			}
		}
	}
	r.fake.SetMode(faketelegram.ModeUp)
	sent := r.waitSent(42, 4)
	time.Sleep(300 * time.Millisecond)
	sent = r.fake.Sent(42)
	var got []string
	for _, m := range sent {
		got = append(got, m.Text)
	}
	want := []string{"echo: before", "echo: during refuse", "echo: during 502", "echo: during hang"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("sent %q, want %q", got, want)
	}
	if ms := r.messages("tg:42"); len(ms) != 4 {
		t.Fatalf("%d messages stored for 4 updates", len(ms))
	}
}

// A channel started again while a chat's turn runs (a restart, or the
// role taken over from another node) shows "typing" there at once, as the
// channel before it did; a chat whose turn waits for a person's decision
// gets none.
func TestTypingResumedAfterRestart(t *testing.T) {
	release := make(chan struct{})
	r := newRig(t, func(s string) string {
		if s == "work" {
			<-release
		}
		return echo(s)
	})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free) // before the rig's own clean-up, which waits for the agent
	ctx := context.Background()
	r.send(faketelegram.Incoming{From: ann, Text: "work"})
	waitFor(t, "the message in flight", func() bool {
		ms, err := r.st.List(ctx, store.Filter{ChatID: "tg:42", State: store.Inflight})
		return err == nil && len(ms) == 1
	})
	// Bob's turn (the agent is busy with Ann's: it is claimed here) waits
	// for his decision.
	r.send(faketelegram.Incoming{From: bob, Text: "asks"})
	waitFor(t, "bob's message", func() bool { return len(r.messages("tg:43")) == 1 })
	if b, _, err := r.st.Claim(ctx, "tg:43", 1); err != nil || len(b) != 1 {
		t.Fatalf("claim: %v %v", b, err)
	}
	if err := r.st.CreateRequest(ctx, permission.Request{ID: "p1", ChatID: "tg:43", Tool: "Bash",
		CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	r.ch.Stop()
	before, before43 := len(r.fake.ChatActions(42)), len(r.fake.ChatActions(43))
	if before43 == 0 {
		t.Fatal("bob's chat never showed typing: the check below would prove nothing")
	}
	r.start()
	waitFor(t, "typing again", func() bool { return len(r.fake.ChatActions(42)) > before })
	time.Sleep(200 * time.Millisecond)
	if n := len(r.fake.ChatActions(43)); n != before43 {
		t.Fatalf("typing shown in a chat waiting for a decision (%d actions, %d before)", n, before43)
	}
	free()
	r.waitSent(42, 1)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

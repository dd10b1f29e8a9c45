package channel_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/channel"
	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/store/sqlite"
)

// sender records what it sends; fail decides an attempt's error.
type sender struct {
	mu   sync.Mutex
	sent map[string][]string
	fail func(d store.ChannelDelivery) error
	n    int
}

func (s *sender) Send(_ context.Context, d store.ChannelDelivery, sent func(string) error) error {
	s.mu.Lock()
	if s.fail != nil {
		if err := s.fail(d); err != nil {
			s.mu.Unlock()
			return err
		}
	}
	s.n++
	id := string(rune('a' + s.n))
	s.sent[d.ChatID] = append(s.sent[d.ChatID], d.Text)
	s.mu.Unlock()
	return sent(id)
}

func (s *sender) got(chat string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sent[chat])
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for " + what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The outbox delivers its own chats' replies and dead letters, each chat in
// turn order; a rate-limited chat waits for exactly its retry_after while
// the others go on; a refusal gives up and lets the chat's next go.
func TestOutbox(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "d.db"), clk)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	limited := true
	s := &sender{sent: map[string][]string{}, fail: func(d store.ChannelDelivery) error {
		switch {
		case d.ChatID == "tg:1" && limited:
			limited = false
			return &channel.RateLimitedError{After: 30 * time.Second, Err: errors.New("429")}
		case d.Text == "refused":
			return channel.Permanent(errors.New("403 blocked"))
		}
		return nil
	}}
	// An event from before the channel's first start is history: not sent.
	if _, err := st.AppendEvent(ctx, events.Event{Type: events.Reply, ChatID: "tg:1", Text: "old"}); err != nil {
		t.Fatal(err)
	}
	o := channel.NewOutbox(channel.OutboxConfig{Channel: "telegram", Prefix: "tg:", Store: st, Sender: s, Clock: clk})
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); o.Run(rctx) }()
	defer func() { cancel(); wg.Wait() }()
	<-o.Ready()
	for _, ev := range []events.Event{
		{Type: events.Reply, ChatID: "tg:1", Text: "one"},
		{Type: events.Reply, ChatID: "tg:2", Text: "refused"},
		{Type: events.Reply, ChatID: "slack:T:C", Text: "not mine"},
		{Type: events.APIDown},
		{Type: events.Reply, ChatID: "tg:2", Text: "after the refusal"},
		{Type: events.DeadLetter, ChatID: "tg:1", Error: "boom"},
	} {
		if _, err := st.AppendEvent(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "tg:2's second reply", func() bool { return len(s.got("tg:2")) == 1 })
	if got := s.got("tg:2"); got[0] != "after the refusal" {
		t.Fatalf("tg:2 got %v", got)
	}
	if got := s.got("tg:1"); len(got) != 0 {
		t.Fatalf("tg:1 went through its rate limit: %v", got)
	}
	// The held chat waits for a timer at exactly its retry_after.
	tctx, tcancel := context.WithTimeout(ctx, 10*time.Second)
	defer tcancel()
	when, err := clk.WaitNext(tctx, time.Minute)
	if err != nil || !when.Equal(clk.Now().Add(30*time.Second)) {
		t.Fatalf("next timer %v (%v), want now+30s", when, err)
	}
	clk.Set(when)
	waitFor(t, "tg:1's replies", func() bool { return len(s.got("tg:1")) == 2 })
	if got := s.got("tg:1"); !slices.Equal(got, []string{"one", "boom"}) {
		t.Fatalf("tg:1 got %v", got)
	}
	waitFor(t, "the outcomes recorded", func() bool {
		c, _ := st.DeliveryCounts(ctx)
		return c["telegram"].Done == 3 && c["telegram"].Failed == 1 && c["telegram"].Pending == 0
	})
	ds, _ := st.Deliveries(ctx, "telegram", "", 10)
	for _, d := range ds {
		if d.State == store.DeliveryFailed && d.Error != "refused: 403 blocked" {
			t.Fatalf("failed delivery %+v", d)
		}
		if d.ChatID == "slack:T:C" {
			t.Fatal("another platform's chat was enqueued")
		}
	}
}

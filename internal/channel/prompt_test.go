package channel_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/channel"
	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/permission"
	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/store/sqlite"
)

// promptSender is a sender that also shows permission requests; it logs
// every operation as "chat op text".
type promptSender struct {
	sender
	mu  sync.Mutex
	ops []string
	n   int
}

func (p *promptSender) log(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ops = append(p.ops, s)
}

func (p *promptSender) got() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.ops)
}

func (p *promptSender) Send(ctx context.Context, d store.ChannelDelivery, sent func(string) error) error {
	p.log(d.ChatID + " send " + d.Text)
	return p.sender.Send(ctx, d, sent)
}

func (p *promptSender) SendPrompt(_ context.Context, chat string, pr channel.Prompt) (string, error) {
	p.mu.Lock()
	p.n++
	id := fmt.Sprintf("m%d", p.n)
	p.mu.Unlock()
	p.log(chat + " prompt " + pr.RequestID + " " + pr.Tool + " " + pr.Summary + " as " + id)
	return id, nil
}

func (p *promptSender) ClosePrompt(_ context.Context, chat, msg string, pr channel.Prompt) error {
	p.log(chat + " close " + msg + " " + channel.DecidedText(pr.Decision, pr.By, pr.Reason))
	return nil
}

func runOutbox(t *testing.T, st *sqlite.Store, s channel.Sender) func() {
	t.Helper()
	o := channel.NewOutbox(channel.OutboxConfig{Channel: "telegram", Prefix: "tg:", Store: st, Sender: s, Clock: clock.Real{}})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); o.Run(ctx) }()
	<-o.Ready()
	return func() { cancel(); wg.Wait() }
}

// Permission requests go out in order with the chat's replies, through
// the PromptSender, and their decision closes the same message, also
// when it comes after a restart of the outbox (the message is found in
// the store). A sender that shows no buttons gets no permission events.
func TestOutboxPrompts(t *testing.T) {
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "d.db"), clock.Real{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	s := &promptSender{sender: sender{sent: map[string][]string{}}}
	stop := runOutbox(t, st, s)
	exp := time.Date(2026, 1, 1, 0, 30, 0, 0, time.UTC)
	for _, ev := range []events.Event{
		{Type: events.Reply, ChatID: "tg:1", Text: "before"},
		events.NewPermissionRequest(time.Now(), "tg:1", "r1", "Bash", "touch x", exp),
		events.NewProgress(time.Now(), "tg:1", "", "Bash", "touch x"),
		events.NewPermissionDecided(time.Now(), "tg:1", "r1", "Bash", "allow", "telegram:42", ""),
		{Type: events.Reply, ChatID: "tg:1", Text: "after"},
		events.NewPermissionRequest(time.Now(), "tg:1", "r2", "Write", "a.txt", exp),
	} {
		if _, err := st.AppendEvent(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "five operations", func() bool { return len(s.got()) == 5 })
	stop()
	want := []string{
		"tg:1 send before",
		"tg:1 prompt r1 Bash touch x as m1",
		"tg:1 close m1 Allowed once by telegram:42",
		"tg:1 send after",
		"tg:1 prompt r2 Write a.txt as m2",
	}
	if got := s.got(); !slices.Equal(got, want) {
		t.Fatalf("operations\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Decided while the outbox was down: the new outbox finds m2.
	if _, err := st.AppendEvent(ctx, events.NewPermissionDecided(time.Now(), "tg:1", "r2", "Write", "expired", "dispatch", permission.ReasonTimeout)); err != nil {
		t.Fatal(err)
	}
	stop = runOutbox(t, st, s)
	defer stop()
	waitFor(t, "the close after a restart", func() bool { return len(s.got()) == 6 })
	if got := s.got()[5]; got != "tg:1 close m2 Expired: nobody answered in time" {
		t.Fatalf("after a restart: %q", got)
	}
}

// Without a PromptSender, permission events are not the channel's.
func TestOutboxNoPrompts(t *testing.T) {
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "d.db"), clock.Real{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	s := &sender{sent: map[string][]string{}}
	stop := runOutbox(t, st, s)
	defer stop()
	for _, ev := range []events.Event{
		events.NewPermissionRequest(time.Now(), "tg:1", "r1", "Bash", "touch x", time.Now().Add(time.Hour)),
		{Type: events.Reply, ChatID: "tg:1", Text: "reply"},
	} {
		if _, err := st.AppendEvent(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the reply", func() bool { return len(s.got("tg:1")) == 1 })
	ds, _ := st.Deliveries(ctx, "telegram", "tg:1", 10)
	if len(ds) != 1 || ds[0].Kind != events.Reply {
		t.Fatalf("deliveries %+v", ds)
	}
}

// Answer: the rules of a press, on a real broker.
func TestAnswer(t *testing.T) {
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "d.db"), clock.Real{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	n := 0
	b := permission.NewBroker(st, clock.Real{}, time.Hour, func() string { n++; return fmt.Sprintf("req%d", n) })
	asked := make(chan permission.Request, 1)
	go func() {
		r, _ := b.Ask(ctx, "tg:1", permission.Question{Tool: "Bash", Summary: "touch x"})
		asked <- r
	}()
	waitFor(t, "the request", func() bool { o, _ := b.Open(ctx, "tg:1"); return len(o) == 1 })
	for _, c := range []struct {
		name, chat, id string
		d              permission.Decision
		want           string
	}{
		{"not a person's decision", "tg:1", "req1", permission.Expired, "not an answer"},
		{"unknown request", "tg:1", "nope", permission.Allow, "no longer exists"},
		{"another chat's request", "tg:2", "req1", permission.Allow, "not from this chat"},
		{"the answer", "tg:1", "req1", permission.Deny, "Denied by telegram:42."},
		{"again", "tg:1", "req1", permission.Allow, "Already decided: Denied by telegram:42."},
	} {
		got, err := channel.Answer(ctx, b, c.chat, c.id, c.d, "telegram:42")
		if err != nil || !strings.Contains(got, c.want) {
			t.Errorf("%s: %q, %v; want %q", c.name, got, err, c.want)
		}
	}
	if r := <-asked; r.Decision != permission.Deny {
		t.Fatalf("decided %s", r.Decision)
	}
	if got, _ := channel.Answer(ctx, nil, "tg:1", "req1", permission.Allow, "x"); !strings.Contains(got, "cannot be answered") {
		t.Errorf("no broker: %q", got)
	}
}

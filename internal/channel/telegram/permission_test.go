package telegram_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/dispatchd/dispatch/internal/channel/telegram"
	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/faketelegram"
	"github.com/dispatchd/dispatch/internal/permission"
)

// permRig is a rig whose channel answers permission buttons through a real
// broker on the rig's store.
type permRig struct {
	*rig
	b *permission.Broker
}

func newPermRig(t *testing.T, _ time.Duration) *permRig {
	t.Helper()
	pr := &permRig{}
	pr.rig = newRig(t, echo, func(c *telegram.Config) { c.Permissions = laterBroker{pr} })
	return pr
}

// laterBroker is the rig's broker, made once the rig's store exists.
type laterBroker struct{ pr *permRig }

func (l laterBroker) Get(ctx context.Context, id string) (permission.Request, error) {
	return l.pr.b.Get(ctx, id)
}

func (l laterBroker) Decide(ctx context.Context, id string, d permission.Decision, by string) (permission.Request, error) {
	return l.pr.b.Decide(ctx, id, d, by)
}

func (pr *permRig) init(timeout time.Duration) {
	pr.b = permission.NewBroker(pr.st, clock.Real{}, timeout, uuid.NewString)
}

// ask asks for chat tg:42 in the background (after Ann opened the chat)
// and returns the request's message and the Ask's outcome.
func (pr *permRig) ask(t *testing.T) (faketelegram.SentMessage, <-chan permission.Request) {
	t.Helper()
	pr.send(faketelegram.Incoming{From: ann, Text: "hello"})
	pr.waitSent(42, 1)
	out := make(chan permission.Request, 1)
	go func() {
		r, err := pr.b.Ask(context.Background(), "tg:42", permission.Question{Tool: "Bash", Summary: "touch x"})
		if err != nil {
			t.Error(err)
		}
		out <- r
	}()
	sent := pr.waitSent(42, 2)
	m := sent[1]
	if m.ReplyMarkup == nil || len(m.ReplyMarkup.InlineKeyboard) != 1 || len(m.ReplyMarkup.InlineKeyboard[0]) != 3 {
		t.Fatalf("request message %+v: want one row of three buttons", m)
	}
	if !strings.Contains(m.Text, "Bash") || !strings.Contains(m.Text, "touch x") || !strings.Contains(m.Text, "allow list") {
		t.Fatalf("request message %q: want the tool, the summary and who may answer", m.Text)
	}
	return m, out
}

func button(t *testing.T, m faketelegram.SentMessage, label string) string {
	t.Helper()
	for _, b := range m.ReplyMarkup.InlineKeyboard[0] {
		if b.Text == label {
			if len(b.CallbackData) > telegram.MaxCallbackData {
				t.Fatalf("callback_data %q over %d bytes", b.CallbackData, telegram.MaxCallbackData)
			}
			return b.CallbackData
		}
	}
	t.Fatalf("no button %q in %+v", label, m.ReplyMarkup)
	return ""
}

func (pr *permRig) press(t *testing.T, m faketelegram.SentMessage, from faketelegram.User, data string) string {
	t.Helper()
	u, err := pr.fake.Press(42, m.MessageID, from, data)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var a faketelegram.CallbackAnswer
	if err := pr.fake.WaitFor(ctx, func() bool {
		var ok bool
		a, ok = pr.fake.Answer(u.CallbackQuery.ID)
		return ok
	}); err != nil {
		t.Fatalf("press %q by %d never answered", data, from.ID)
	}
	return a.Text
}

// waitClosed waits until the request's message has no buttons and returns
// its text.
func (pr *permRig) waitClosed(t *testing.T, id int64) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var text string
	if err := pr.fake.WaitFor(ctx, func() bool {
		for _, m := range pr.fake.Sent(42) {
			if m.MessageID == id && m.ReplyMarkup == nil {
				text = m.Text
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatalf("the buttons of message %d were never removed: %+v", id, pr.fake.Sent(42))
	}
	return text
}

func recv(t *testing.T, ch <-chan permission.Request) permission.Request {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(15 * time.Second):
		t.Fatal("the Ask never returned")
		return permission.Request{}
	}
}

// An allowed person's press decides (recorded as telegram:<user id>), is
// answered, and the buttons give way to the decision; a second press of
// the same button is answered "already decided" and changes nothing.
func TestPermissionPressAllowed(t *testing.T) {
	pr := newPermRig(t, time.Hour)
	pr.init(time.Hour)
	m, out := pr.ask(t)
	data := button(t, m, "Allow once")
	// Two presses, both queued while the buttons still show.
	u1, err := pr.fake.Press(42, m.MessageID, ann, data)
	if err != nil {
		t.Fatal(err)
	}
	u2, err := pr.fake.Press(42, m.MessageID, ann, data)
	if err != nil {
		t.Fatal(err)
	}
	if a := pr.answerOf(t, u1); !strings.Contains(a, "Allowed once by telegram:42") {
		t.Fatalf("the press was answered %q", a)
	}
	if a := pr.answerOf(t, u2); !strings.Contains(a, "Already decided") {
		t.Fatalf("the second press was answered %q", a)
	}
	r := recv(t, out)
	if r.Decision != permission.Allow || r.DecidedBy != "telegram:42" {
		t.Fatalf("decided %s by %q, want allow by telegram:42", r.Decision, r.DecidedBy)
	}
	if text := pr.waitClosed(t, m.MessageID); !strings.Contains(text, "Allowed once by telegram:42") {
		t.Fatalf("closed message %q", text)
	}
	if got, _ := pr.b.Get(context.Background(), r.ID); got.Decision != permission.Allow || got.DecidedBy != "telegram:42" {
		t.Fatalf("the request is now %+v", got)
	}
}

// A stranger's press is refused, naming their id, and decides nothing;
// the buttons stay for the allowed person, whose "Always here" stores the
// rule.
func TestPermissionPressStranger(t *testing.T) {
	pr := newPermRig(t, time.Hour)
	pr.init(time.Hour)
	m, out := pr.ask(t)
	if a := pr.press(t, m, eve, button(t, m, "Deny")); !strings.Contains(a, "allow list") || !strings.Contains(a, "7") {
		t.Fatalf("the stranger's press was answered %q", a)
	}
	open, err := pr.b.Open(context.Background(), "tg:42")
	if err != nil || len(open) != 1 {
		t.Fatalf("after a stranger's press: %d open requests (%v), want 1", len(open), err)
	}
	if a := pr.press(t, m, bob, button(t, m, "Always here")); !strings.Contains(a, "Always allowed here by telegram:43") {
		t.Fatalf("the press was answered %q", a)
	}
	if r := recv(t, out); r.Decision != permission.AllowAlways {
		t.Fatalf("decided %s", r.Decision)
	}
	pr.waitClosed(t, m.MessageID)
	rules, _ := pr.b.Rules(context.Background(), "tg:42")
	if len(rules) != 1 || rules[0].Tool != "Bash" || rules[0].CreatedBy != "telegram:43" {
		t.Fatalf("rules %+v", rules)
	}
}

// A request decided elsewhere (the CLI) loses its buttons too, showing
// who decided.
func TestPermissionDecidedElsewhere(t *testing.T) {
	pr := newPermRig(t, time.Hour)
	pr.init(time.Hour)
	m, out := pr.ask(t)
	open, _ := pr.b.Open(context.Background(), "tg:42")
	if len(open) != 1 {
		t.Fatalf("%d open requests", len(open))
	}
	if _, err := pr.b.Decide(context.Background(), open[0].ID, permission.Deny, "cli"); err != nil {
		t.Fatal(err)
	}
	recv(t, out)
	if text := pr.waitClosed(t, m.MessageID); !strings.Contains(text, "Denied by cli") {
		t.Fatalf("closed message %q", text)
	}
}

// An unanswered request expires, and its message says so.
func TestPermissionExpired(t *testing.T) {
	pr := newPermRig(t, 0)
	pr.init(1500 * time.Millisecond)
	m, out := pr.ask(t)
	if r := recv(t, out); r.Decision != permission.Expired {
		t.Fatalf("decided %s", r.Decision)
	}
	if text := pr.waitClosed(t, m.MessageID); !strings.Contains(text, "Expired: nobody answered in time") {
		t.Fatalf("closed message %q", text)
	}
}

// callback_data is parsed strictly: only dispatch's own buttons, within
// Telegram's 64 bytes, with a plain request id.
func TestParseCallbackData(t *testing.T) {
	id := uuid.NewString()
	for _, d := range permission.PersonDecisions {
		data, ok := telegram.CallbackData(d, id)
		if !ok || len(data) > telegram.MaxCallbackData {
			t.Fatalf("%s: %q %v", d, data, ok)
		}
		got, gotID, ok := telegram.ParseCallbackData(data)
		if !ok || got != d || gotID != id {
			t.Fatalf("%q parsed as %s %q %v", data, got, gotID, ok)
		}
	}
	for _, bad := range []string{"", "p:", "p:1:", "p:x:" + id, "q:1:" + id, "p:1:" + id + "/../x", "p:1:a b",
		"p:1:" + strings.Repeat("a", 62), "p:expired:" + id, "p:1:" + id + ":", "P:1:" + id} {
		if d, i, ok := telegram.ParseCallbackData(bad); ok {
			t.Errorf("%q parsed as %s %q", bad, d, i)
		}
	}
	if _, ok := telegram.CallbackData(permission.Expired, id); ok {
		t.Error("an expired button was made")
	}
	if _, ok := telegram.CallbackData(permission.Allow, strings.Repeat("a", 61)); ok {
		t.Error("a button over 64 bytes was made")
	}
}

func (pr *permRig) answerOf(t *testing.T, u faketelegram.Update) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var a faketelegram.CallbackAnswer
	if err := pr.fake.WaitFor(ctx, func() bool {
		var ok bool
		a, ok = pr.fake.Answer(u.CallbackQuery.ID)
		return ok
	}); err != nil {
		t.Fatal("a press was never answered")
	}
	return a.Text
}

package telegram_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/channel/telegram"
	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/faketelegram"
)

// StatusDue: never sooner than StatusEvery after the last edit, never
// before a 429's hold; the first send is due at once.
func TestStatusDue(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name       string
		last, held time.Time
		want       time.Time
	}{
		{"never shown", time.Time{}, time.Time{}, time.Time{}},
		{"never shown, held", time.Time{}, t0.Add(5 * time.Second), t0.Add(5 * time.Second)},
		{"shown", t0, time.Time{}, t0.Add(telegram.StatusEvery)},
		{"held less than the throttle", t0, t0.Add(time.Second), t0.Add(telegram.StatusEvery)},
		{"held longer", t0, t0.Add(30 * time.Second), t0.Add(30 * time.Second)},
	} {
		if got := telegram.StatusDue(c.last, c.held); !got.Equal(c.want) {
			t.Errorf("%s: due %v, want %v", c.name, got, c.want)
		}
	}
}

// A turn's progress is one status message: sent at the first step, edited
// at most once every 2 s (not at 1.999 s, at 2 s), showing the latest
// state, and ended with a compact line once the reply is enqueued.
func TestProgressStatusMessage(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	r := newRig(t, echo, func(c *telegram.Config) { c.Clock = clk })
	r.send(faketelegram.Incoming{From: ann, Text: "hi"})
	r.waitSent(42, 1)
	ctx := context.Background()
	step := func(tool, summary string) {
		t.Helper()
		if err := r.st.AppendProgress(ctx, events.NewProgress(clk.Now(), "tg:42", "", tool, summary)); err != nil {
			t.Fatal(err)
		}
	}
	step("Bash", "touch a")
	sent := r.waitSent(42, 2)
	status := sent[1]
	if !strings.Contains(status.Text, "Working") || !strings.Contains(status.Text, "Bash: touch a") {
		t.Fatalf("status %q", status.Text)
	}
	step("Read", "x.go")
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if _, err := clk.WaitNext(wctx, telegram.StatusEvery); err != nil {
		t.Fatal("the status loop never waited for its next edit")
	}
	edits := func() []string {
		for _, m := range r.fake.Sent(42) {
			if m.MessageID == status.MessageID {
				return append(m.Edits, m.Text)
			}
		}
		return nil
	}
	clk.Advance(telegram.StatusEvery - time.Millisecond)
	time.Sleep(200 * time.Millisecond) // an edit now would be too early
	if n := len(edits()); n != 1 {
		t.Fatalf("edited before 2 s: %q", edits())
	}
	clk.Advance(time.Millisecond)
	if err := r.fake.WaitFor(wctx, func() bool { return len(edits()) == 2 }); err != nil {
		t.Fatalf("not edited at 2 s: %q", edits())
	}
	if e := edits(); !strings.Contains(e[1], "2 steps") || !strings.Contains(e[1], "Read: x.go") {
		t.Fatalf("edited to %q", e[1])
	}
	// A third step and the reply: the final line shows all three.
	step("Bash", "touch b")
	if _, err := r.st.AppendEvent(ctx, events.Event{Type: events.Reply, ChatID: "tg:42", At: clk.Now(), Text: "done"}); err != nil {
		t.Fatal(err)
	}
	r.waitSent(42, 3)
	if _, err := clk.WaitNext(wctx, telegram.StatusEvery); err != nil {
		t.Fatal("the status loop never waited for its last edit")
	}
	clk.Advance(telegram.StatusEvery)
	if err := r.fake.WaitFor(wctx, func() bool { return len(edits()) == 3 }); err != nil {
		t.Fatalf("never ended: %q", edits())
	}
	if e := edits(); e[2] != "✓ Done: 3 steps — Bash ×2, Read" {
		t.Fatalf("ended as %q", e[2])
	}
	// Nothing more: no new message, no further edit.
	step("Bash", "after the turn")
	time.Sleep(200 * time.Millisecond)
	if n := len(r.fake.Sent(42)); n != 4 {
		t.Fatalf("%d messages after a new turn's first step, want 4 (a new status)", n)
	}
}

// A 429 on the status message holds it for exactly its retry_after (no
// call before), then the latest state is shown; the reply meanwhile is
// not held by it.
func TestProgressRateLimited(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	r := newRig(t, echo, func(c *telegram.Config) { c.Clock = clk })
	r.send(faketelegram.Incoming{From: ann, Text: "hi"})
	r.waitSent(42, 1)
	ctx := context.Background()
	step := func(tool, summary string) {
		t.Helper()
		if err := r.st.AppendProgress(ctx, events.NewProgress(clk.Now(), "tg:42", "", tool, summary)); err != nil {
			t.Fatal(err)
		}
	}
	step("Bash", "one")
	status := r.waitSent(42, 2)[1]
	r.fake.FailNext("editMessageText", 1, faketelegram.Fault{Status: 429, RetryAfter: 30})
	step("Bash", "two")
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	edits := func() int { return r.fake.CallCount("editMessageText") }
	if _, err := clk.WaitNext(wctx, telegram.StatusEvery); err != nil {
		t.Fatal(err)
	}
	clk.Advance(telegram.StatusEvery)
	if err := r.fake.WaitFor(wctx, func() bool { return edits() == 1 }); err != nil {
		t.Fatal("the edit was never tried")
	}
	step("Bash", "three")
	// The reply goes out while the status is held.
	if _, err := r.st.AppendEvent(ctx, events.Event{Type: events.Reply, ChatID: "tg:42", At: clk.Now(), Text: "answer"}); err != nil {
		t.Fatal(err)
	}
	r.waitSent(42, 3)
	if _, err := clk.WaitNext(wctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	clk.Advance(30*time.Second - time.Millisecond)
	time.Sleep(200 * time.Millisecond) // a call now would break the hold
	if n := edits(); n != 1 {
		t.Fatalf("%d edits during the 429's hold", n)
	}
	clk.Advance(time.Millisecond)
	if err := r.fake.WaitFor(wctx, func() bool {
		for _, m := range r.fake.Sent(42) {
			if m.MessageID == status.MessageID {
				return m.Text == "✓ Done: 3 steps — Bash ×3"
			}
		}
		return false
	}); err != nil {
		t.Fatalf("the last state was not shown after the hold: %+v", r.fake.Sent(42))
	}
}

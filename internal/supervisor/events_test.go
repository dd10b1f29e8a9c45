package supervisor

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/agent"
	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/session"
	"github.com/dispatchd/dispatch/internal/store"
)

func (h *harness) events(q events.Query) []events.Event {
	h.t.Helper()
	q.Limit = events.MaxLimit
	evs, _, err := h.st.Events(context.Background(), q)
	if err != nil {
		h.t.Fatal(err)
	}
	return evs
}

// Messages that arrive while a turn is in flight go to the agent together;
// each turn yields exactly one reply, naming its messages in order, and
// every answered message records the turn that answered it.
func TestOneReplyPerTurnForBatchedMessages(t *testing.T) {
	h := newHarness(t, nil)
	release := make(chan struct{})
	h.ag.SetScript(func(chat string, texts []string) (agent.Result, error) {
		if texts[0] == "first" {
			<-release
		}
		return agent.Result{Text: "answer to " + strings.Join(texts, "+")}, nil
	})
	var ids []string
	ids = append(ids, h.send("zoe", "first"))
	h.eventually("busy", func() bool { return h.snap("zoe").Busy })
	for i := range 4 {
		ids = append(ids, h.send("zoe", fmt.Sprint("batched ", i)))
	}
	close(release)
	for _, id := range ids {
		h.waitMsg(id, store.Done)
	}
	turns := h.ag.TurnsFor("zoe")
	replies := h.events(events.Query{ChatID: "zoe", Types: []events.Type{events.Reply}})
	if len(replies) != len(turns) || len(replies) != 2 {
		t.Fatalf("%d replies for %d turns (want 2 each): %+v", len(replies), len(turns), replies)
	}
	var named []string
	for _, r := range replies {
		named = append(named, r.MessageIDs...)
		for _, id := range r.MessageIDs {
			if m := h.msg(id); m.TurnID != r.TurnID || m.Reply != r.Text {
				t.Fatalf("message %s: turn %q reply %q; its reply event says %q %q", id, m.TurnID, m.Reply, r.TurnID, r.Text)
			}
		}
	}
	if !slices.Equal(named, ids) {
		t.Fatalf("replies name %v, want every message once, in order: %v", named, ids)
	}
}

// A lost transcript is a session_reset (resume_failed), and with
// carry_over the new conversation's first turn carries the chat's last
// exchanges, marked as earlier context.
func TestLostTranscriptResetCarriesOver(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.CarryOver = 2 })
	h.ag.SetStrictResume(true)
	for _, text := range []string{"one", "two", "three"} {
		h.waitMsg(h.send("nia", text), store.Done)
	}
	old := h.snap("nia").SessionID
	if err := h.sup.Kill(context.Background(), "nia"); err != nil {
		t.Fatal(err)
	}
	h.ag.Forget(old)
	h.waitMsg(h.send("nia", "four"), store.Done)
	resets := h.events(events.Query{ChatID: "nia", Types: []events.Type{events.SessionReset}})
	if len(resets) != 1 || resets[0].Reason != events.ResetResumeFailed {
		t.Fatalf("resets = %+v", resets)
	}
	turns := h.ag.TurnsFor("nia")
	last := turns[len(turns)-1]
	if len(last.Texts) != 2 || last.Texts[1] != "four" {
		t.Fatalf("first turn of the new conversation = %q", last.Texts)
	}
	ctx := last.Texts[0]
	if !strings.HasPrefix(ctx, session.CarryOverHeader) || !strings.HasSuffix(ctx, session.CarryOverFooter) ||
		!strings.Contains(ctx, "User: two") || !strings.Contains(ctx, "User: three") || strings.Contains(ctx, "User: one") ||
		!strings.Contains(ctx, "Assistant: echo: three") {
		t.Fatalf("carried context:\n%s", ctx)
	}
	// Only the first turn carries it.
	h.waitMsg(h.send("nia", "five"), store.Done)
	turns = h.ag.TurnsFor("nia")
	if got := turns[len(turns)-1].Texts; len(got) != 1 {
		t.Fatalf("second turn carried context again: %q", got)
	}
}

// A conversation that never had an answer loses nothing when it cannot be
// resumed: no session_reset tells the person otherwise.
func TestNoResetBeforeTheFirstAnswer(t *testing.T) {
	h := newHarness(t, nil)
	h.ag.SetStrictResume(true) // the crashed first turn left nothing to resume
	id := h.send("pia", "CRASH")
	h.runUntil("the poison message dead", time.Hour, func() bool { return h.msg(id).State == store.Dead })
	hello := h.send("pia", "hello")
	h.runUntil("hello answered", time.Hour, func() bool { return h.msg(hello).State == store.Done })
	if resets := h.events(events.Query{ChatID: "pia", Types: []events.Type{events.SessionReset}}); len(resets) != 0 {
		t.Fatalf("resets for a chat that was never answered: %+v", resets)
	}
	if n := len(h.events(events.Query{ChatID: "pia", Types: []events.Type{events.Reply}})); n != 1 {
		t.Fatalf("%d replies, want 1", n)
	}
}

// A context too long restarts the conversation clean: session_reset with
// reason context_too_long.
func TestContextTooLongIsAReset(t *testing.T) {
	h := newHarness(t, nil)
	h.waitMsg(h.send("omar", "hello"), store.Done)
	h.send("omar", "TOOLONG")
	h.eventually("reset event", func() bool {
		r := h.events(events.Query{ChatID: "omar", Types: []events.Type{events.SessionReset}})
		return len(r) > 0 && r[0].Reason == events.ResetContextTooLong
	})
}

// The API breaker's changes are events, in order: api_down, then api_up.
func TestAPIDownAndUpEvents(t *testing.T) {
	h := newHarness(t, nil)
	h.ag.SetDirectives(false)
	h.waitMsg(h.send("kim", "warm"), store.Done)
	h.ag.Fail(agent.Outage, 1000)
	id := h.send("kim", "held")
	h.eventually("api down", func() bool { return !h.sup.breaker.Up() })
	h.ag.Fail(agent.Outage, 0)
	h.runUntil("recovery", 2*time.Minute, func() bool { return h.msg(id).State == store.Done })
	h.eventually("api events", func() bool {
		return len(h.events(events.Query{Types: []events.Type{events.APIDown, events.APIUp}})) == 2
	})
	evs := h.events(events.Query{Types: []events.Type{events.APIDown, events.APIUp}})
	if evs[0].Type != events.APIDown || evs[1].Type != events.APIUp {
		t.Fatalf("api events = %+v", evs)
	}
}

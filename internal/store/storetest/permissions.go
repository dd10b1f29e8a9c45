package storetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/permission"
)

func newRequest(id, chat, tool string, at time.Time) permission.Request {
	return permission.Request{ID: id, ChatID: chat, AgentID: "agent-" + id, ToolUseID: "toolu_" + id, Tool: tool,
		Summary: "touch x", Input: []byte(`{"command":"touch x"}`), CreatedAt: at, ExpiresAt: at.Add(time.Minute)}
}

// testPermissions: a request and its permission_request event in one
// commit, its close and permission_decided in another, one winner of two
// answers, a late answer expired, rules per chat and tool.
func testPermissions(t *testing.T, s Suite) {
	st, clk := open(t, s)
	st.SetWebhookFanout(func(events.Type) []string { return []string{"hook"} })
	r := newRequest("p1", "a", "Bash", clk.Now())
	if err := st.CreateRequest(bg, r); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateRequest(bg, r); err == nil {
		t.Fatal("a second request with the same id was kept")
	}
	if err := st.CreateRequest(bg, newRequest("p2", "b", "Write", clk.Now())); err != nil {
		t.Fatal(err)
	}
	got, err := st.GetRequest(bg, "p1")
	if err != nil || got.ChatID != "a" || got.Tool != "Bash" || string(got.Input) != `{"command":"touch x"}` ||
		!got.CreatedAt.Equal(r.CreatedAt) || !got.ExpiresAt.Equal(r.ExpiresAt) || !got.Open() || got.AgentID != "agent-p1" {
		t.Fatalf("GetRequest = %+v, %v", got, err)
	}
	if _, err := st.GetRequest(bg, "nope"); !errors.Is(err, permission.ErrNotFound) {
		t.Fatalf("GetRequest of an unknown id = %v", err)
	}
	if open, err := st.OpenRequests(bg, ""); err != nil || len(open) != 2 || open[0].ID != "p1" {
		t.Fatalf("OpenRequests(all) = %+v, %v", open, err)
	}
	if open, err := st.OpenRequests(bg, "b"); err != nil || len(open) != 1 || open[0].ID != "p2" {
		t.Fatalf("OpenRequests(b) = %+v, %v", open, err)
	}
	evs := readAll(t, st, events.Query{})
	if len(evs) != 2 || evs[0].Type != events.PermissionRequest || evs[0].RequestID != "p1" || evs[0].Tool != "Bash" ||
		evs[0].Summary != "touch x" || evs[0].ExpiresAt == nil || !evs[0].ExpiresAt.Equal(r.ExpiresAt) || evs[0].ChatID != "a" {
		t.Fatalf("events = %+v", evs)
	}
	if rows, err := st.OutboxPending(bg, "hook", 0, 10); err != nil || len(rows) != 2 {
		t.Fatalf("outbox = %+v, %v", rows, err)
	}

	// Two answers at once: one wins, the other is told it is closed.
	clk.Advance(time.Second)
	var (
		wg   sync.WaitGroup
		errs [2]error
		outs [2]permission.Request
	)
	for i, d := range []permission.Decision{permission.Allow, permission.Deny} {
		wg.Go(func() { outs[i], errs[i] = st.CloseRequest(bg, "p1", d, "cli", "", clk.Now()) })
	}
	wg.Wait()
	if (errs[0] == nil) == (errs[1] == nil) || outs[0].Decision != outs[1].Decision {
		t.Fatalf("two answers: %v %v, %+v %+v", errs[0], errs[1], outs[0], outs[1])
	}
	for _, err := range errs {
		if err != nil && !errors.Is(err, permission.ErrClosed) {
			t.Fatalf("the losing answer = %v", err)
		}
	}
	closed, _ := st.GetRequest(bg, "p1")
	if closed.Open() || closed.Decision != outs[0].Decision || closed.DecidedBy != "cli" || !closed.DecidedAt.Equal(clk.Now()) {
		t.Fatalf("closed = %+v", closed)
	}
	if _, err := st.CloseRequest(bg, "nope", permission.Allow, "cli", "", clk.Now()); !errors.Is(err, permission.ErrNotFound) {
		t.Fatalf("closing an unknown id = %v", err)
	}

	// An answer at the expiry: the clock won.
	clk.Advance(time.Minute)
	late, err := st.CloseRequest(bg, "p2", permission.Allow, "cli", "", clk.Now())
	if !errors.Is(err, permission.ErrClosed) || late.Decision != permission.Expired || late.Reason != permission.ReasonTimeout {
		t.Fatalf("a late answer = %+v, %v", late, err)
	}
	if open, _ := st.OpenRequests(bg, ""); len(open) != 0 {
		t.Fatalf("open after both closed: %+v", open)
	}
	evs = readAll(t, st, events.Query{})
	if len(evs) != 4 || evs[2].Type != events.PermissionDecided || evs[2].RequestID != "p1" || evs[2].By != "cli" ||
		evs[3].Decision != string(permission.Expired) || evs[3].Reason != permission.ReasonTimeout || evs[3].ChatID != "b" {
		t.Fatalf("decided events = %+v", evs)
	}

	// Rules.
	rl := permission.Rule{ChatID: "a", Tool: "Bash", CreatedAt: clk.Now(), CreatedBy: "cli"}
	if err := st.AddRule(bg, rl); err != nil {
		t.Fatal(err)
	}
	rl.CreatedBy = "api:ops"
	if err := st.AddRule(bg, rl); err != nil {
		t.Fatal(err)
	}
	if err := st.AddRule(bg, permission.Rule{ChatID: "b", Tool: "Write", CreatedAt: clk.Now()}); err != nil {
		t.Fatal(err)
	}
	if rules, err := st.Rules(bg, "a"); err != nil || len(rules) != 1 || rules[0] != rl {
		t.Fatalf("Rules(a) = %+v, %v", rules, err)
	}
	if rules, err := st.Rules(bg, ""); err != nil || len(rules) != 2 {
		t.Fatalf("Rules() = %+v, %v", rules, err)
	}
	if ok, err := st.RemoveRule(bg, "a", "Bash"); err != nil || !ok {
		t.Fatalf("RemoveRule = %v, %v", ok, err)
	}
	if ok, err := st.RemoveRule(bg, "a", "Bash"); err != nil || ok {
		t.Fatalf("RemoveRule again = %v, %v", ok, err)
	}
	if rules, _ := st.Rules(bg, "a"); len(rules) != 0 {
		t.Fatalf("rules after removal: %+v", rules)
	}
}

// testPermissionBroker: the broker over the store asks, is answered, and
// a rule answers without asking.
func testPermissionBroker(t *testing.T, s Suite) {
	st, clk := open(t, s)
	n := 0
	b := permission.NewBroker(st, clk, time.Minute, func() string { n++; return "q" + string(rune('0'+n)) })
	done := make(chan permission.Request, 1)
	go func() {
		r, err := b.Ask(bg, "a", permission.Question{Tool: "Bash", Summary: "touch x"})
		if err != nil {
			t.Error(err)
		}
		done <- r
	}()
	var open []permission.Request
	for len(open) == 0 { // the request is kept before its event is visible
		_, ch := st.EventsVisible()
		if open, _ = st.OpenRequests(bg, "a"); len(open) == 0 {
			<-ch
		}
	}
	if _, err := b.Decide(bg, open[0].ID, permission.AllowAlways, "cli"); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r.Decision != permission.AllowAlways {
		t.Fatalf("Ask = %+v", r)
	}
	if r, err := b.Ask(bg, "a", permission.Question{Tool: "Bash"}); err != nil || r.DecidedBy != permission.ByRule {
		t.Fatalf("second Ask = %+v, %v", r, err)
	}
	if _, err := b.Decide(bg, open[0].ID, permission.Deny, "cli"); !errors.Is(err, permission.ErrClosed) {
		t.Fatalf("second answer = %v", err)
	}
}

// testProgress: progress events are on the feed and queued for the
// endpoints that subscribe until DropProgress removes a chat's.
func testProgress(t *testing.T, s Suite) {
	st, clk := open(t, s)
	st.SetWebhookFanout(func(ty events.Type) []string {
		if ty == events.Progress {
			return []string{"progress-hook"}
		}
		return nil
	})
	for _, chat := range []string{"a", "b"} {
		if err := st.AppendProgress(bg, events.NewProgress(clk.Now(), chat, "t1", "Bash", "ls")); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.AppendProgress(bg, events.Event{Type: events.APIDown}); err == nil {
		t.Fatal("AppendProgress took another type")
	}
	keep, err := st.AppendEvent(bg, events.Event{Type: events.APIDown})
	if err != nil {
		t.Fatal(err)
	}
	if evs := readAll(t, st, events.Query{}); len(evs) != 3 || evs[0].Type != events.Progress || evs[0].Tool != "Bash" || evs[0].TurnID != "t1" {
		t.Fatalf("feed = %+v", evs)
	}
	if n, err := st.DropProgress(bg, "a"); err != nil || n != 1 {
		t.Fatalf("DropProgress(a) = %d, %v", n, err)
	}
	evs := readAll(t, st, events.Query{})
	if len(evs) != 2 || evs[0].ChatID != "b" || evs[1].Seq != keep.Seq {
		t.Fatalf("feed after dropping a's = %+v", evs)
	}
	if rows, _ := st.OutboxPending(bg, "progress-hook", 0, 10); len(rows) != 1 || rows[0].ChatID != "b" {
		t.Fatalf("outbox after dropping a's = %+v", rows)
	}
	if n, err := st.DropProgress(bg, ""); err != nil || n != 1 {
		t.Fatalf("DropProgress(all) = %d, %v", n, err)
	}
	if evs := readAll(t, st, events.Query{}); len(evs) != 1 || evs[0].Seq != keep.Seq {
		t.Fatalf("feed after dropping all = %+v", evs)
	}
	if next, err := st.AppendEvent(bg, events.Event{Type: events.APIUp}); err != nil || next.Seq <= keep.Seq {
		t.Fatalf("an event after the drop: %+v, %v", next, err)
	}
}

package sqlite

import (
	"context"
	"errors"
	"fmt"
	"github.com/dispatchd/dispatch/internal/store"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/events"
)

func readEvents(t *testing.T, s *testStore, q events.Query) []events.Event {
	t.Helper()
	evs, _, err := s.Events(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func claimAll(t *testing.T, s *testStore, chat string) []string {
	t.Helper()
	batch, _, err := s.Claim(context.Background(), chat, 100)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(batch))
	for i, m := range batch {
		ids[i] = m.ID
	}
	return ids
}

// Messages that travelled in one turn get one reply event, naming them in
// order, and every one of them records the turn's id.
func TestCompleteTurnWritesOneReplyPerTurn(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	accept(t, s, "alice", "m1", "m2", "m3")
	ids := claimAll(t, s, "alice")
	if err := s.CompleteTurn(ctx, ids, "the reply", store.SessionRecord{ChatID: "alice"}); err != nil {
		t.Fatal(err)
	}
	evs := readEvents(t, s, events.Query{})
	if len(evs) != 1 {
		t.Fatalf("events = %+v, want one reply", evs)
	}
	e := evs[0]
	if e.Type != events.Reply || e.ChatID != "alice" || e.Text != "the reply" || !slices.Equal(e.MessageIDs, []string{"m1", "m2", "m3"}) {
		t.Fatalf("reply = %+v", e)
	}
	if e.TurnID == "" || e.ID != fmt.Sprintf("evt-%d", e.Seq) || e.At.IsZero() {
		t.Fatalf("reply identity = %+v", e)
	}
	for _, id := range ids {
		if m := get(t, s, id); m.TurnID != e.TurnID || m.State != store.Done {
			t.Errorf("message %s: turn %q state %s, want turn %q done", id, m.TurnID, m.State, e.TurnID)
		}
	}
	page, _, err := s.ListPage(ctx, store.Filter{ChatID: "alice", State: store.Done}, 0, 10, 200)
	if err != nil || len(page) != 3 || page[0].TurnID != e.TurnID {
		t.Fatalf("queue listing: %+v, %v; want the turn id on each message", page, err)
	}
	// A late or repeated completion changes nothing and writes no reply:
	// a message is done exactly when its reply exists.
	if err := s.CompleteTurn(ctx, ids, "again", store.SessionRecord{ChatID: "alice"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Complete(ctx, []string{"m1", "missing"}, "late"); err != nil {
		t.Fatal(err)
	}
	if evs := readEvents(t, s, events.Query{}); len(evs) != 1 {
		t.Fatalf("after late completions: %d events, want 1", len(evs))
	}
}

func TestDeadLetterAndSessionEvents(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	accept(t, s, "bob", "poison")
	claimAll(t, s, "bob")
	if dead, err := s.Fail(ctx, []string{"poison"}, "it crashed the agent", 1); err != nil || len(dead) != 1 {
		t.Fatalf("Fail = %v, %v", dead, err)
	}
	if err := s.SaveSession(ctx, store.SessionRecord{ChatID: "bob"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveSession(ctx, store.SessionRecord{ChatID: "bob", Failed: true, FailReason: "3 restarts in 20m"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveSession(ctx, store.SessionRecord{ChatID: "bob", Failed: true, FailReason: "3 restarts in 20m"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveSession(ctx, store.SessionRecord{ChatID: "bob"}); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordReset(ctx, "bob", events.ResetResumeFailed); err != nil {
		t.Fatal(err)
	}
	evs := readEvents(t, s, events.Query{})
	var got []string
	for _, e := range evs {
		got = append(got, fmt.Sprintf("%s:%s:%s%s", e.Type, e.ChatID, e.MessageID, e.Reason))
	}
	want := []string{
		"dead_letter:bob:poison",
		"session_failed:bob:3 restarts in 20m",
		"session_recovered:bob:restarted",
		"session_reset:bob:resume_failed",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("events = %q, want %q", got, want)
	}
	if evs[0].Error != "it crashed the agent" {
		t.Errorf("dead letter error = %q", evs[0].Error)
	}
	// Filters: by chat and by type.
	if n := len(readEvents(t, s, events.Query{ChatID: "alice"})); n != 0 {
		t.Errorf("chat filter: %d events for alice", n)
	}
	if evs := readEvents(t, s, events.Query{Types: []events.Type{events.SessionReset}}); len(evs) != 1 {
		t.Errorf("type filter: %+v", evs)
	}
	if evs := readEvents(t, s, events.Query{After: evs[1].Seq, HasAfter: true, Limit: 1}); len(evs) != 1 || evs[0].Type != events.SessionRecovered {
		t.Errorf("after+limit: %+v", evs)
	}
}

// The visible mark moves only after a commit, wakes waiters, and never
// counts an op that was rolled back.
func TestFeedVisibleMarkAndNotification(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	v0, ch := s.EventsVisible()
	err := s.write(ctx, func(ctx context.Context, tx *Tx) error {
		if err := tx.InsertEvent(ctx, &events.Event{Type: events.APIDown, At: time.Now()}, nil); err != nil {
			return err
		}
		return errors.New("this op fails")
	})
	if err == nil {
		t.Fatal("failing op succeeded")
	}
	if v, _ := s.EventsVisible(); v != v0 {
		t.Fatalf("a rolled-back event moved the mark: %d → %d", v0, v)
	}
	select {
	case <-ch:
		t.Fatal("woken by a rolled-back event")
	default:
	}
	ev, err := s.AppendEvent(ctx, events.Event{Type: events.APIUp})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(time.Second):
		t.Fatal("not woken by a committed event")
	}
	if v, _ := s.EventsVisible(); v != ev.Seq {
		t.Fatalf("visible = %d, want %d", v, ev.Seq)
	}
}

// Retention removes a prefix; a read from before it is ErrGone naming the
// oldest kept seq, never a silent gap, also after a reopen.
func TestPurgeEventsAndGone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.db")
	clk := clock.NewFake(t0)
	s, err := openStore(path, clk)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var seqs []int64
	for i := range 5 {
		ev, err := s.AppendEvent(ctx, events.Event{Type: events.SessionReset, ChatID: "c", Reason: fmt.Sprint(i)})
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, ev.Seq)
		if i == 2 {
			clk.Advance(time.Hour)
		}
	}
	n, err := s.PurgeEvents(ctx, t0.Add(30*time.Minute), 1000)
	if err != nil || n != 3 {
		t.Fatalf("PurgeEvents = %d, %v; want 3", n, err)
	}
	check := func(s *testStore) {
		t.Helper()
		_, _, err := s.Events(ctx, events.Query{After: 0, HasAfter: true})
		g, ok := events.IsGone(err)
		if !ok || g.Oldest != seqs[3] {
			t.Fatalf("read from 0 after purge: %v; want gone with oldest %d", err, seqs[3])
		}
		if evs := readEvents(t, s, events.Query{After: seqs[2], HasAfter: true}); len(evs) != 2 {
			t.Fatalf("read from the horizon: %+v", evs)
		}
		if evs := readEvents(t, s, events.Query{}); len(evs) != 2 || evs[0].Seq != seqs[3] {
			t.Fatalf("read from the oldest kept: %+v", evs)
		}
	}
	check(s)
	s.Close()
	s, err = openStore(path, clk)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	check(s)
	// Everything purged: the feed is empty, the horizon still holds, and
	// new events continue the numbering.
	clk.Advance(2 * time.Hour)
	if _, err := s.PurgeEvents(ctx, clk.Now(), 1000); err != nil {
		t.Fatal(err)
	}
	_, _, err = s.Events(ctx, events.Query{After: seqs[3], HasAfter: true})
	if g, ok := events.IsGone(err); !ok || g.Oldest != seqs[4]+1 {
		t.Fatalf("read from a purged position of an empty feed: %v", err)
	}
	ev, err := s.AppendEvent(ctx, events.Event{Type: events.APIUp})
	if err != nil || ev.Seq <= seqs[4] {
		t.Fatalf("new event after a full purge: %+v, %v", ev, err)
	}
}

func TestOutboxRows(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	s.SetWebhookFanout(func(t events.Type) []string {
		if t == events.Reply {
			return []string{"a", "b"}
		}
		return []string{"a"}
	})
	accept(t, s, "c1", "m1")
	ids := claimAll(t, s, "c1")
	if err := s.CompleteTurn(ctx, ids, "r", store.SessionRecord{ChatID: "c1"}); err != nil {
		t.Fatal(err)
	}
	reset, err := s.AppendEvent(ctx, events.Event{Type: events.SessionReset, ChatID: "c2"})
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.OutboxPending(ctx, "a", 0, 100)
	if err != nil || len(a) != 2 || a[0].ChatID != "c1" || a[1].Seq != reset.Seq {
		t.Fatalf("endpoint a: %+v, %v", a, err)
	}
	b, _ := s.OutboxPending(ctx, "b", 0, 100)
	if len(b) != 1 {
		t.Fatalf("endpoint b: %+v", b)
	}
	first := a[0]
	first.Attempts, first.FirstAt, first.NextAt, first.Error = 1, t0, t0.Add(time.Second), "HTTP 503"
	if err := s.OutboxAttempt(ctx, first); err != nil {
		t.Fatal(err)
	}
	first.Attempts, first.Error = 2, "HTTP 400"
	if err := s.OutboxGiveUp(ctx, first); err != nil {
		t.Fatal(err)
	}
	if err := s.OutboxDelivered(ctx, "a", []int64{a[1].Seq}); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.OutboxPending(ctx, "a", 0, 100); len(p) != 0 {
		t.Fatalf("pending after delivery and give-up: %+v", p)
	}
	failed, _ := s.OutboxFailed(ctx, "a", 100)
	if len(failed) != 1 || failed[0].Error != "HTTP 400" || failed[0].Attempts != 2 {
		t.Fatalf("failed: %+v", failed)
	}
	counts, _ := s.OutboxCounts(ctx)
	if counts["a"] != [2]int{0, 1} || counts["b"] != [2]int{1, 0} {
		t.Fatalf("counts: %v", counts)
	}
	back, err := s.OutboxRetry(ctx, "a")
	if err != nil || len(back) != 1 || back[0].State != store.OutboxPending || back[0].Attempts != 0 {
		t.Fatalf("retry: %+v, %v", back, err)
	}
	byseq, err := s.EventsBySeq(ctx, []int64{back[0].Seq})
	if err != nil || byseq[back[0].Seq].Type != events.Reply {
		t.Fatalf("EventsBySeq: %v, %v", byseq, err)
	}
}

func TestRecentExchanges(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	for i := range 4 {
		accept(t, s, "c", fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i))
		ids := claimAll(t, s, "c")
		if err := s.CompleteTurn(ctx, ids, fmt.Sprintf("reply %d", i), store.SessionRecord{ChatID: "c"}); err != nil {
			t.Fatal(err)
		}
	}
	ex, err := s.RecentExchanges(ctx, "c", 2)
	if err != nil || len(ex) != 2 {
		t.Fatalf("RecentExchanges = %+v, %v", ex, err)
	}
	if ex[0].Reply != "reply 2" || ex[1].Reply != "reply 3" || !slices.Equal(ex[1].Texts, []string{"text of a3", "text of b3"}) {
		t.Fatalf("exchanges = %+v", ex)
	}
}

// Package storetest is the contract every store.Backend keeps, as one test
// suite that runs against each implementation (the embedded SQLite store
// and the PostgreSQL one). An implementation's own tests call Run with a
// way to make fresh databases.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/store"
)

// T0 is the fake clock's start in every test.
var T0 = time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)

// Suite describes an implementation under test.
type Suite struct {
	// NewDB makes a fresh, empty database for one test (removed when the
	// test ends) and returns how to open it. open may be called more than
	// once: again after Close (a restart), or, when Shared is set, while
	// another store is open on the same database (a second node).
	NewDB func(t *testing.T) (open func(clk clock.Clock) (store.Backend, error))
	// Shared: several stores may be open on one database at once.
	Shared bool
}

// Run runs the whole contract.
func Run(t *testing.T, s Suite) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s Suite)
	}{
		{"AcceptAndGet", testAcceptAndGet},
		{"IdempotencyPerChat", testIdempotencyPerChat},
		{"ClaimOrder", testClaimOrder},
		{"FailedMessagesIsolated", testFailedIsolated},
		{"CompleteTurnOneCommit", testCompleteTurn},
		{"DeadLetters", testDeadLetters},
		{"RequeueKeepsPlace", testRequeue},
		{"PurgeDone", testPurgeDone},
		{"EventsAfterCursor", testEventsAfterCursor},
		{"EventsTail", testEventsTail},
		{"PurgeEventsGone", testPurgeEventsGone},
		{"FeedNeverGrowsBehindReader", testFeedPrefix},
		{"FeedNotifies", testFeedNotifies},
		{"Sessions", testSessions},
		{"Outbox", testOutbox},
		{"Conversations", testConversations},
		{"Permissions", testPermissions},
		{"PermissionBroker", testPermissionBroker},
		{"Progress", testProgress},
		{"Stats", testStats},
		{"ListPage", testListPage},
		{"RecentExchanges", testRecentExchanges},
		{"WriteFault", testWriteFault},
		{"Reopen", testReopen},
		{"TwoStoresOneDatabase", testShared},
		{"ChannelAccept", testChannelAccept},
		{"ChannelAcceptRace", testChannelAcceptRace},
		{"ChannelDeliveries", testChannelDeliveries},
		{"Schedules", testSchedules},
		{"ScheduleFire", testScheduleFire},
		{"ScheduleDuplicate", testScheduleDuplicate},
		{"SchedulePause", testSchedulePause},
		{"ScheduleRace", testScheduleRace},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, s) })
	}
}

func open(t *testing.T, s Suite) (store.Backend, *clock.Fake) {
	t.Helper()
	clk := clock.NewFake(T0)
	o := s.NewDB(t)
	st, err := o(clk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st, clk
}

var bg = context.Background()

func accept(t *testing.T, st store.Backend, chat string, texts ...string) []string {
	t.Helper()
	var ids []string
	for _, text := range texts {
		id, dup, err := st.Accept(bg, chat, text, "")
		if err != nil || dup {
			t.Fatalf("Accept(%q, %q) dup=%v err=%v", chat, text, dup, err)
		}
		ids = append(ids, id)
	}
	return ids
}

func get(t *testing.T, st store.Backend, id string) store.Message {
	t.Helper()
	m, err := st.Get(bg, id)
	if err != nil {
		t.Fatalf("Get(%q): %v", id, err)
	}
	return m
}

func claim(t *testing.T, st store.Backend, chat string, limit int) ([]string, bool) {
	t.Helper()
	batch, more, err := st.Claim(bg, chat, limit)
	if err != nil {
		t.Fatalf("Claim(%q): %v", chat, err)
	}
	return idsOf(batch), more
}

func idsOf(msgs []store.Message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.ID)
	}
	return out
}

func texts(msgs []store.Message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.Text)
	}
	return out
}

func readAll(t *testing.T, st store.Backend, q events.Query) []events.Event {
	t.Helper()
	q.Limit = events.MaxLimit
	var out []events.Event
	for {
		evs, next, err := st.Events(bg, q)
		if err != nil {
			t.Fatalf("Events(%+v): %v", q, err)
		}
		out = append(out, evs...)
		if len(evs) == 0 {
			return out
		}
		q.After, q.HasAfter = next, true
	}
}

func testAcceptAndGet(t *testing.T, s Suite) {
	st, clk := open(t, s)
	id, dup, err := st.Accept(bg, "chat", "hello", "")
	if err != nil || dup || id == "" {
		t.Fatalf("Accept = %q, %v, %v", id, dup, err)
	}
	clk.Advance(time.Second)
	m := get(t, st, id)
	if m.ChatID != "chat" || m.Text != "hello" || m.State != store.Pending || m.Attempts != 0 ||
		m.ClientID != "" || !m.CreatedAt.Equal(T0) || m.Seq <= 0 {
		t.Fatalf("Get = %+v", m)
	}
	if _, err := st.Get(bg, "no-such-id"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(unknown) = %v, want ErrNotFound", err)
	}
	if _, _, err := st.Accept(bg, "", "x", ""); err == nil {
		t.Fatal("Accept with an empty chat succeeded")
	}
	// Texts come back byte for byte.
	odd := "ünïcødé\n\t'quotes' \"and\" \\ back; -- DROP TABLE messages"
	id2, _, err := st.Accept(bg, "chat", odd, "")
	if err != nil {
		t.Fatal(err)
	}
	if m := get(t, st, id2); m.Text != odd || m.Seq <= get(t, st, id).Seq {
		t.Fatalf("second message = %+v", m)
	}
}

func testIdempotencyPerChat(t *testing.T, s Suite) {
	st, _ := open(t, s)
	id, dup, err := st.Accept(bg, "a", "hi", "k1")
	if err != nil || dup {
		t.Fatal(dup, err)
	}
	again, dup, err := st.Accept(bg, "a", "hi", "k1")
	if err != nil || !dup || again != id {
		t.Fatalf("resend = %q dup=%v err=%v; want %q dup", again, dup, err, id)
	}
	if _, _, err := st.Accept(bg, "a", "other text", "k1"); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("resend with another text = %v, want ErrConflict", err)
	}
	other, dup, err := st.Accept(bg, "b", "hi", "k1")
	if err != nil || dup || other == id {
		t.Fatalf("same client id in another chat = %q dup=%v err=%v", other, dup, err)
	}
	if m := get(t, st, id); m.ClientID != "k1" {
		t.Fatalf("client id = %q", m.ClientID)
	}
	// ByClient finds a message by its client id, in its chat only.
	for _, tc := range []struct {
		chat, client, id string
		ok               bool
	}{{"a", "k1", id, true}, {"b", "k1", other, true}, {"a", "k9", "", false}, {"z", "k1", "", false}, {"a", "", "", false}} {
		if got, ok, err := st.ByClient(bg, tc.chat, tc.client); err != nil || ok != tc.ok || got != tc.id {
			t.Fatalf("ByClient(%q, %q) = %q %v %v, want %q %v", tc.chat, tc.client, got, ok, err, tc.id, tc.ok)
		}
	}
	// A duplicate is recognised in any state, done included.
	claim(t, st, "a", 10)
	if err := st.Complete(bg, []string{id}, "r"); err != nil {
		t.Fatal(err)
	}
	if again, dup, err := st.Accept(bg, "a", "hi", "k1"); err != nil || !dup || again != id {
		t.Fatalf("resend of a done message = %q dup=%v err=%v", again, dup, err)
	}
	// Concurrent resends store one message.
	var wg sync.WaitGroup
	got := make([]string, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, _, err := st.Accept(bg, "c", "same", "k2")
			if err != nil {
				t.Error(err)
			}
			got[i] = id
		}()
	}
	wg.Wait()
	for _, g := range got {
		if g != got[0] {
			t.Fatalf("concurrent resends got different ids: %v", got)
		}
	}
	if list, err := st.List(bg, store.Filter{ChatID: "c"}); err != nil || len(list) != 1 {
		t.Fatalf("chat c holds %d messages (%v)", len(list), err)
	}
}

func testClaimOrder(t *testing.T, s Suite) {
	st, _ := open(t, s)
	a := accept(t, st, "a", "a1", "a2")
	accept(t, st, "b", "b1")
	a = append(a, accept(t, st, "a", "a3", "a4", "a5")...)
	got, more := claim(t, st, "a", 3)
	if !slices.Equal(got, a[:3]) || !more {
		t.Fatalf("Claim(a, 3) = %v more=%v; want %v more", got, more, a[:3])
	}
	m := get(t, st, a[0])
	if m.State != store.Inflight || m.Attempts != 1 {
		t.Fatalf("claimed message = %+v", m)
	}
	got, more = claim(t, st, "a", 3)
	if !slices.Equal(got, a[3:]) || more {
		t.Fatalf("second Claim = %v more=%v; want %v", got, more, a[3:])
	}
	if got, more = claim(t, st, "a", 3); got != nil || more {
		t.Fatalf("Claim of an empty line = %v more=%v", got, more)
	}
	if got, _ := claim(t, st, "b", 0); len(got) != 1 {
		t.Fatalf("Claim with limit 0 took %d", len(got))
	}
}

func testFailedIsolated(t *testing.T, s Suite) {
	st, _ := open(t, s)
	ids := accept(t, st, "a", "m1", "m2", "m3")
	claim(t, st, "a", 10)
	if dead, err := st.Fail(bg, ids, "boom", 5); err != nil || dead != nil {
		t.Fatalf("Fail = %v, %v", dead, err)
	}
	for _, id := range ids {
		if m := get(t, st, id); m.State != store.Pending || m.Failures != 1 || m.Error != "boom" {
			t.Fatalf("failed message = %+v", m)
		}
	}
	// Each failed message is claimed alone, in order.
	for i, id := range ids {
		got, more := claim(t, st, "a", 10)
		if !slices.Equal(got, []string{id}) || more != (i < 2) {
			t.Fatalf("Claim = %v more=%v; want [%s] alone", got, more, id)
		}
		if err := st.Complete(bg, got, "ok"); err != nil {
			t.Fatal(err)
		}
	}
	// A run of never-failed messages stops before one that failed.
	x := accept(t, st, "b", "x1", "x2", "x3")
	claim(t, st, "b", 2)
	if err := st.Requeue(bg, x[:1], "outage"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Fail(bg, x[1:2], "own fault", 5); err != nil {
		t.Fatal(err)
	}
	if got, more := claim(t, st, "b", 10); !slices.Equal(got, x[:1]) || !more {
		t.Fatalf("Claim = %v more=%v; want [x1] and more", got, more)
	}
}

func testCompleteTurn(t *testing.T, s Suite) {
	st, clk := open(t, s)
	ids := accept(t, st, "a", "q1", "q2")
	claim(t, st, "a", 10)
	clk.Advance(time.Minute)
	rec := store.SessionRecord{ChatID: "a", SessionID: "sess-1", Turns: 1, LastActivity: clk.Now()}
	if err := st.CompleteTurn(bg, ids, "the reply", rec); err != nil {
		t.Fatal(err)
	}
	var turn string
	for _, id := range ids {
		m := get(t, st, id)
		if m.State != store.Done || m.Reply != "the reply" || m.TurnID == "" || !m.UpdatedAt.Equal(clk.Now()) {
			t.Fatalf("completed message = %+v", m)
		}
		if turn != "" && m.TurnID != turn {
			t.Fatal("one turn's messages have different turn ids")
		}
		turn = m.TurnID
	}
	evs := readAll(t, st, events.Query{Types: []events.Type{events.Reply}})
	if len(evs) != 1 {
		t.Fatalf("%d reply events, want 1", len(evs))
	}
	e := evs[0]
	if e.ChatID != "a" || e.TurnID != turn || !slices.Equal(e.MessageIDs, ids) || e.Text != "the reply" || e.ID != events.IDOf(e.Seq) {
		t.Fatalf("reply event = %+v", e)
	}
	sess, err := st.Sessions(bg)
	if err != nil || len(sess) != 1 || sess[0].SessionID != "sess-1" || sess[0].Turns != 1 {
		t.Fatalf("Sessions = %+v, %v", sess, err)
	}
	// A late repeat changes nothing and writes no second reply.
	if err := st.CompleteTurn(bg, ids, "another", rec); err != nil {
		t.Fatal(err)
	}
	if err := st.Complete(bg, ids, "another"); err != nil {
		t.Fatal(err)
	}
	if evs := readAll(t, st, events.Query{Types: []events.Type{events.Reply}}); len(evs) != 1 {
		t.Fatalf("%d reply events after a repeat", len(evs))
	}
	if m := get(t, st, ids[0]); m.Reply != "the reply" {
		t.Fatalf("a repeat changed the reply: %+v", m)
	}
	// Done iff the reply exists: a failing turn write stores neither.
	more := accept(t, st, "a", "q3")
	claim(t, st, "a", 10)
	st.InjectWriteFault(func() error { return syscall.EIO })
	if err := st.CompleteTurn(bg, more, "lost", rec); !store.IsStorage(err) {
		t.Fatalf("CompleteTurn under a fault = %v", err)
	}
	st.InjectWriteFault(nil)
	if m := get(t, st, more[0]); m.State != store.Inflight {
		t.Fatalf("failed CompleteTurn changed the message: %+v", m)
	}
	if evs := readAll(t, st, events.Query{Types: []events.Type{events.Reply}}); len(evs) != 1 {
		t.Fatalf("failed CompleteTurn wrote a reply")
	}
}

func testDeadLetters(t *testing.T, s Suite) {
	st, _ := open(t, s)
	ids := accept(t, st, "a", "poison", "fine")
	for attempt := 1; attempt <= 2; attempt++ {
		got, _ := claim(t, st, "a", 10)
		want := ids
		if attempt > 1 {
			want = ids[:1]
		}
		if !slices.Equal(got, want) {
			t.Fatalf("attempt %d claimed %v, want %v", attempt, got, want)
		}
		if attempt == 1 {
			if err := st.Requeue(bg, ids[1:], "not its fault"); err != nil {
				t.Fatal(err)
			}
		}
		dead, err := st.Fail(bg, ids[:1], "bad input", 2)
		if err != nil {
			t.Fatal(err)
		}
		if wantDead := attempt == 2; (len(dead) == 1) != wantDead {
			t.Fatalf("attempt %d: dead = %v", attempt, dead)
		}
	}
	m := get(t, st, ids[0])
	if m.State != store.Dead || m.Failures != 2 || m.Error != "bad input" {
		t.Fatalf("dead message = %+v", m)
	}
	evs := readAll(t, st, events.Query{Types: []events.Type{events.DeadLetter}})
	if len(evs) != 1 || evs[0].MessageID != ids[0] || evs[0].ChatID != "a" || evs[0].Error != "bad input" {
		t.Fatalf("dead letter events = %+v", evs)
	}
	if c, err := st.Counts(bg); err != nil || c.Dead != 1 || c.Pending != 1 {
		t.Fatalf("Counts = %+v, %v", c, err)
	}
	// The dead message no longer blocks its chat.
	if got, _ := claim(t, st, "a", 10); !slices.Equal(got, ids[1:]) {
		t.Fatalf("after the dead letter, claimed %v", got)
	}
	if err := st.Complete(bg, ids[1:], "ok"); err != nil {
		t.Fatal(err)
	}
	// Retry: back of the line, failures reset.
	later := accept(t, st, "a", "later")
	oldSeq := m.Seq
	if err := st.Retry(bg, ids[0]); err != nil {
		t.Fatal(err)
	}
	m = get(t, st, ids[0])
	if m.State != store.Pending || m.Failures != 0 || m.Seq <= get(t, st, later[0]).Seq || m.Seq <= oldSeq {
		t.Fatalf("retried message = %+v", m)
	}
	if got, _ := claim(t, st, "a", 10); !slices.Equal(got, []string{later[0], ids[0]}) {
		t.Fatalf("after retry, claimed %v", got)
	}
	if err := st.Retry(bg, ids[0]); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Retry of a message that is not dead = %v", err)
	}
	// Drop removes only dead messages.
	if _, err := st.Fail(bg, []string{ids[0]}, "again", 1); err != nil {
		t.Fatal(err)
	}
	if err := st.Drop(bg, later[0]); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Drop of an inflight message = %v", err)
	}
	if err := st.Drop(bg, ids[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(bg, ids[0]); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("dropped message: %v", err)
	}
}

func testRequeue(t *testing.T, s Suite) {
	st, _ := open(t, s)
	ids := accept(t, st, "a", "m1", "m2")
	claim(t, st, "a", 1)
	if err := st.RequeueKept(bg, ids[:1], "api down", "conv-1"); err != nil {
		t.Fatal(err)
	}
	m := get(t, st, ids[0])
	if m.State != store.Pending || m.Failures != 0 || m.Error != "api down" || m.KeptIn != "conv-1" {
		t.Fatalf("requeued = %+v", m)
	}
	claim(t, st, "a", 1)
	if err := st.Requeue(bg, ids[:1], "again"); err != nil {
		t.Fatal(err)
	}
	if m := get(t, st, ids[0]); m.KeptIn != "conv-1" {
		t.Fatalf("Requeue without keptIn cleared it: %+v", m)
	}
	if got, _ := claim(t, st, "a", 10); !slices.Equal(got, ids) {
		t.Fatalf("after requeue, claimed %v; want %v", got, ids)
	}
	if n, err := st.ResetInflight(bg); err != nil || n != 2 {
		t.Fatalf("ResetInflight = %d, %v", n, err)
	}
	if c, _ := st.Counts(bg); c.Pending != 2 || c.Inflight != 0 {
		t.Fatalf("Counts after reset = %+v", c)
	}
	// Requeue, Fail and Complete leave messages that are not inflight alone.
	if err := st.Complete(bg, ids, "x"); err != nil {
		t.Fatal(err)
	}
	if dead, err := st.Fail(bg, ids, "x", 1); err != nil || dead != nil {
		t.Fatalf("Fail of pending messages = %v, %v", dead, err)
	}
	if m := get(t, st, ids[0]); m.State != store.Pending || m.Failures != 0 {
		t.Fatalf("pending message changed: %+v", m)
	}
}

func testPurgeDone(t *testing.T, s Suite) {
	st, clk := open(t, s)
	old := accept(t, st, "a", "o1", "o2", "o3")
	claim(t, st, "a", 10)
	if err := st.Complete(bg, old, "r"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	young := accept(t, st, "a", "y1")
	claim(t, st, "a", 10)
	if err := st.Complete(bg, young, "r"); err != nil {
		t.Fatal(err)
	}
	waiting := accept(t, st, "b", "w1")
	n, err := st.PurgeDone(bg, T0.Add(30*time.Minute), 2)
	if err != nil || n != 2 {
		t.Fatalf("PurgeDone(limit 2) = %d, %v", n, err)
	}
	n, err = st.PurgeDone(bg, T0.Add(30*time.Minute), 100)
	if err != nil || n != 1 {
		t.Fatalf("PurgeDone = %d, %v", n, err)
	}
	for _, id := range old {
		if _, err := st.Get(bg, id); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("purged message %s: %v", id, err)
		}
	}
	get(t, st, young[0])
	get(t, st, waiting[0])
}

func testEventsAfterCursor(t *testing.T, s Suite) {
	st, clk := open(t, s)
	var seqs []int64
	for i := range 6 {
		chat := []string{"a", "b"}[i%2]
		typ := events.SessionReset
		if i == 4 {
			typ = events.APIDown
		}
		ev, err := st.AppendEvent(bg, events.Event{Type: typ, ChatID: chat, Reason: fmt.Sprint(i)})
		if err != nil {
			t.Fatal(err)
		}
		if len(seqs) > 0 && ev.Seq <= seqs[len(seqs)-1] {
			t.Fatalf("seq %d after %d", ev.Seq, seqs[len(seqs)-1])
		}
		if !ev.At.Equal(clk.Now()) {
			t.Fatalf("event at %v, want %v", ev.At, clk.Now())
		}
		seqs = append(seqs, ev.Seq)
	}
	if _, err := st.AppendEvent(bg, events.Event{Type: "no-such-type"}); err == nil {
		t.Fatal("an unknown event type was written")
	}
	evs, next, err := st.Events(bg, events.Query{After: seqs[1], HasAfter: true, Limit: 2})
	if err != nil || len(evs) != 2 || evs[0].Seq != seqs[2] || next != seqs[3] {
		t.Fatalf("Events after %d = %+v next=%d %v", seqs[1], evs, next, err)
	}
	if evs[0].Reason != "2" || evs[0].ChatID != "a" || evs[0].Type != events.SessionReset || !evs[0].At.Equal(T0) {
		t.Fatalf("event read back = %+v", evs[0])
	}
	evs, next, err = st.Events(bg, events.Query{After: seqs[5], HasAfter: true})
	if err != nil || len(evs) != 0 || next != seqs[5] {
		t.Fatalf("Events at the end = %+v next=%d %v", evs, next, err)
	}
	if got := readAll(t, st, events.Query{ChatID: "b"}); len(got) != 3 {
		t.Fatalf("chat b: %d events", len(got))
	}
	if got := readAll(t, st, events.Query{Types: []events.Type{events.APIDown}}); len(got) != 1 || got[0].Seq != seqs[4] {
		t.Fatalf("api_down events: %+v", got)
	}
	if got := readAll(t, st, events.Query{}); len(got) != 6 {
		t.Fatalf("all events: %d", len(got))
	}
	byseq, err := st.EventsBySeq(bg, []int64{seqs[0], seqs[3], 1 << 40})
	if err != nil || len(byseq) != 2 || byseq[seqs[3]].Reason != "3" {
		t.Fatalf("EventsBySeq = %+v, %v", byseq, err)
	}
	oldest, last, err := st.EventsOldest(bg)
	if err != nil || oldest != seqs[0] || last != seqs[5] {
		t.Fatalf("EventsOldest = %d, %d, %v", oldest, last, err)
	}
	if v, _ := st.EventsVisible(); v != seqs[5] {
		t.Fatalf("EventsVisible = %d, want %d", v, seqs[5])
	}
	if err := st.RecordReset(bg, "c", "why"); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, st, events.Query{ChatID: "c"}); len(got) != 1 || got[0].Reason != "why" {
		t.Fatalf("RecordReset wrote %+v", got)
	}
}

func testPurgeEventsGone(t *testing.T, s Suite) {
	clk := clock.NewFake(T0)
	o := s.NewDB(t)
	st, err := o(clk)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	var seqs []int64
	for i := range 5 {
		ev, err := st.AppendEvent(bg, events.Event{Type: events.SessionReset, ChatID: "c", Reason: fmt.Sprint(i)})
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, ev.Seq)
		if i == 2 {
			clk.Advance(time.Hour)
		}
	}
	n, err := st.PurgeEvents(bg, T0.Add(30*time.Minute), 1000)
	if err != nil || n != 3 {
		t.Fatalf("PurgeEvents = %d, %v; want 3", n, err)
	}
	check := func(st store.Backend) {
		t.Helper()
		_, _, err := st.Events(bg, events.Query{After: 0, HasAfter: true})
		if g, ok := events.IsGone(err); !ok || g.Oldest != seqs[3] {
			t.Fatalf("read from 0 after purge: %v; want gone with oldest %d", err, seqs[3])
		}
		if evs := readAll(t, st, events.Query{After: seqs[2], HasAfter: true}); len(evs) != 2 {
			t.Fatalf("read from the horizon: %+v", evs)
		}
		if evs := readAll(t, st, events.Query{}); len(evs) != 2 || evs[0].Seq != seqs[3] {
			t.Fatalf("read from the oldest kept: %+v", evs)
		}
	}
	check(st)
	_ = st.Close()
	if st, err = o(clk); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	check(st)
	clk.Advance(2 * time.Hour)
	if _, err := st.PurgeEvents(bg, clk.Now(), 1000); err != nil {
		t.Fatal(err)
	}
	_, _, err = st.Events(bg, events.Query{After: seqs[3], HasAfter: true})
	if g, ok := events.IsGone(err); !ok || g.Oldest != seqs[4]+1 {
		t.Fatalf("read from a purged position of an empty feed: %v", err)
	}
	ev, err := st.AppendEvent(bg, events.Event{Type: events.APIUp})
	if err != nil || ev.Seq <= seqs[4] {
		t.Fatalf("new event after a full purge: %+v, %v", ev, err)
	}
}

// feedPrefix checks, under concurrent writers (through each of the given
// stores), that every full read of the feed extends the previous one.
func feedPrefix(t *testing.T, reader store.Backend, writers []store.Backend) {
	const perWriter, each = 4, 50
	base := len(readAll(t, reader, events.Query{After: 0, HasAfter: true}))
	var wg sync.WaitGroup
	for wi, w := range writers {
		for g := range perWriter {
			wg.Add(1)
			go func() {
				defer wg.Done()
				chat := fmt.Sprintf("c%d-%d", wi, g)
				for i := range each {
					var err error
					if i%2 == 0 {
						_, err = w.AppendEvent(bg, events.Event{Type: events.SessionReset, ChatID: chat, Reason: fmt.Sprint(i)})
					} else {
						var ids []string
						if ids, err = acceptErr(w, chat); err == nil {
							if _, _, err = w.Claim(bg, chat, 10); err == nil {
								err = w.CompleteTurn(bg, ids, "r", store.SessionRecord{ChatID: chat})
							}
						}
					}
					if err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	var seen []int64
	check := func() {
		var all []int64
		for _, e := range readAll(t, reader, events.Query{After: 0, HasAfter: true}) {
			all = append(all, e.Seq)
		}
		if len(all) < len(seen) || !slices.Equal(all[:len(seen)], seen) {
			t.Fatalf("a read is not an extension of the previous one: had %d, now %d", len(seen), len(all))
		}
		seen = all
	}
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		check()
	}
	check()
	if want := base + len(writers)*perWriter*each; len(seen) != want {
		t.Fatalf("read %d events, want %d", len(seen), want)
	}
}

func acceptErr(st store.Backend, chat string) ([]string, error) {
	id, _, err := st.Accept(bg, chat, "m", "")
	return []string{id}, err
}

func testFeedPrefix(t *testing.T, s Suite) {
	st, _ := open(t, s)
	feedPrefix(t, st, []store.Backend{st})
}

func testFeedNotifies(t *testing.T, s Suite) {
	st, _ := open(t, s)
	v0, ch := st.EventsVisible()
	ev, err := st.AppendEvent(bg, events.Event{Type: events.APIUp})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("not woken by a committed event")
	}
	if v, _ := st.EventsVisible(); v != ev.Seq || v <= v0 {
		t.Fatalf("visible = %d, want %d", v, ev.Seq)
	}
	// A write that fails leaves the mark alone.
	_, ch = st.EventsVisible()
	st.InjectWriteFault(func() error { return syscall.EIO })
	if _, err := st.AppendEvent(bg, events.Event{Type: events.APIDown}); err == nil {
		t.Fatal("append under a fault succeeded")
	}
	st.InjectWriteFault(nil)
	select {
	case <-ch:
		t.Fatal("woken by a failed write")
	case <-time.After(50 * time.Millisecond):
	}
}

func testSessions(t *testing.T, s Suite) {
	st, clk := open(t, s)
	rec := store.SessionRecord{ChatID: "b", SessionID: "s1", Exempt: true, Live: true, Turns: 3, Restarts: 1, LastActivity: clk.Now()}
	if err := st.SaveSession(bg, rec); err != nil {
		t.Fatal(err)
	}
	if err := st.SaveSession(bg, store.SessionRecord{ChatID: "a"}); err != nil {
		t.Fatal(err)
	}
	if err := st.SaveSession(bg, store.SessionRecord{}); err == nil {
		t.Fatal("a session without a chat was saved")
	}
	clk.Advance(time.Hour)
	rec.Failed, rec.FailReason, rec.Paused, rec.Live = true, "crash loop", true, false
	if err := st.SaveSession(bg, rec); err != nil {
		t.Fatal(err)
	}
	recs, err := st.Sessions(bg)
	if err != nil || len(recs) != 2 || recs[0].ChatID != "a" {
		t.Fatalf("Sessions = %+v, %v", recs, err)
	}
	b := recs[1]
	if b.SessionID != "s1" || !b.Exempt || b.Live || !b.Failed || !b.Paused || b.FailReason != "crash loop" ||
		b.Turns != 3 || b.Restarts != 1 || !b.CreatedAt.Equal(T0) || !b.LastActivity.Equal(T0) {
		t.Fatalf("session b = %+v", b)
	}
	if one, found, err := st.SessionRecord(bg, "b"); err != nil || !found || one != b {
		t.Fatalf("SessionRecord(b) = %+v, %v, %v; want %+v", one, found, err, b)
	}
	if none, found, err := st.SessionRecord(bg, "nobody"); err != nil || found || none != (store.SessionRecord{ChatID: "nobody"}) {
		t.Fatalf("SessionRecord(nobody) = %+v, %v, %v", none, found, err)
	}
	rec.Failed = false
	if err := st.SaveSession(bg, rec); err != nil {
		t.Fatal(err)
	}
	evs := readAll(t, st, events.Query{ChatID: "b"})
	if len(evs) != 2 || evs[0].Type != events.SessionFailed || evs[0].Reason != "crash loop" || evs[1].Type != events.SessionRecovered {
		t.Fatalf("session events = %+v", evs)
	}

	// The store need not read the flag back on every save, but what it
	// knows must follow the commits: a save that failed leaves the flag as
	// it was, and only a change gets its event.
	for _, save := range []struct {
		failed, fault bool
	}{{false, false}, {true, false}, {true, false}, {false, true}, {true, false}, {false, false}} {
		if save.fault {
			st.InjectWriteFault(func() error { return syscall.EIO })
		}
		rec.Failed = save.failed
		err := st.SaveSession(bg, rec)
		st.InjectWriteFault(nil)
		if (err != nil) != save.fault {
			t.Fatalf("SaveSession(failed %v, fault %v) = %v", save.failed, save.fault, err)
		}
	}
	var types []events.Type
	for _, e := range readAll(t, st, events.Query{ChatID: "b"})[2:] {
		types = append(types, e.Type)
	}
	if want := []events.Type{events.SessionFailed, events.SessionRecovered}; !slices.Equal(types, want) {
		t.Fatalf("session events after the saves = %v, want %v", types, want)
	}
}

func testOutbox(t *testing.T, s Suite) {
	st, clk := open(t, s)
	st.SetWebhookFanout(func(typ events.Type) []string {
		if typ == events.Reply {
			return []string{"hook1", "hook2"}
		}
		return []string{"hook1"}
	})
	ids := accept(t, st, "a", "q")
	claim(t, st, "a", 1)
	if err := st.Complete(bg, ids, "r"); err != nil {
		t.Fatal(err)
	}
	ev, err := st.AppendEvent(bg, events.Event{Type: events.APIDown})
	if err != nil {
		t.Fatal(err)
	}
	p1, err := st.OutboxPending(bg, "hook1", 0, 10)
	if err != nil || len(p1) != 2 || p1[1].Seq != ev.Seq || p1[0].ChatID != "a" || p1[0].State != store.OutboxPending {
		t.Fatalf("hook1 pending = %+v, %v", p1, err)
	}
	if p, _ := st.OutboxPending(bg, "hook1", p1[0].Seq, 10); len(p) != 1 {
		t.Fatalf("pending after the first = %+v", p)
	}
	r := p1[0]
	r.Attempts, r.FirstAt, r.NextAt, r.Error = 1, clk.Now(), clk.Now().Add(time.Minute), "503"
	if err := st.OutboxAttempt(bg, r); err != nil {
		t.Fatal(err)
	}
	p1, _ = st.OutboxPending(bg, "hook1", 0, 10)
	if p1[0].Attempts != 1 || p1[0].Error != "503" || !p1[0].NextAt.Equal(T0.Add(time.Minute)) {
		t.Fatalf("after an attempt = %+v", p1[0])
	}
	r.Attempts, r.Error = 2, "410 gone"
	if err := st.OutboxGiveUp(bg, r); err != nil {
		t.Fatal(err)
	}
	if err := st.OutboxDelivered(bg, "hook1", []int64{ev.Seq}); err != nil {
		t.Fatal(err)
	}
	failed, err := st.OutboxFailed(bg, "hook1", 10)
	if err != nil || len(failed) != 1 || failed[0].State != store.OutboxFailed || failed[0].Error != "410 gone" {
		t.Fatalf("failed = %+v, %v", failed, err)
	}
	counts, err := st.OutboxCounts(bg)
	if err != nil || counts["hook1"] != [2]int{0, 1} || counts["hook2"] != [2]int{1, 0} {
		t.Fatalf("OutboxCounts = %v, %v", counts, err)
	}
	back, err := st.OutboxRetry(bg, "hook1")
	if err != nil || len(back) != 1 || back[0].State != store.OutboxPending || back[0].Attempts != 0 {
		t.Fatalf("OutboxRetry = %+v, %v", back, err)
	}
	// Purging the events takes their deliveries along.
	clk.Advance(time.Hour)
	if _, err := st.PurgeEvents(bg, clk.Now(), 100); err != nil {
		t.Fatal(err)
	}
	if counts, _ := st.OutboxCounts(bg); len(counts) != 0 {
		t.Fatalf("deliveries of purged events remain: %v", counts)
	}
}

func testStats(t *testing.T, s Suite) {
	st, clk := open(t, s)
	a := accept(t, st, "a", "a1")
	clk.Advance(time.Second)
	accept(t, st, "b", "b1", "b2")
	clk.Advance(time.Second)
	accept(t, st, "a", "a2")
	chats, err := st.ChatsWithPending(bg)
	if err != nil || !slices.Equal(chats, []string{"a", "b"}) {
		t.Fatalf("ChatsWithPending = %v, %v", chats, err)
	}
	stats, err := st.PendingStats(bg)
	if err != nil || stats["a"].Count != 2 || stats["b"].Count != 2 || !stats["b"].Oldest.Equal(T0.Add(time.Second)) {
		t.Fatalf("PendingStats = %+v, %v", stats, err)
	}
	if old, err := st.OldestPending(bg, "a"); err != nil || !old.Equal(T0) {
		t.Fatalf("OldestPending(a) = %v, %v", old, err)
	}
	if old, err := st.OldestPending(bg, "zzz"); err != nil || !old.IsZero() {
		t.Fatalf("OldestPending(none) = %v, %v", old, err)
	}
	claim(t, st, "a", 1)
	if err := st.Complete(bg, a, "r"); err != nil {
		t.Fatal(err)
	}
	claim(t, st, "b", 1)
	c, err := st.Counts(bg)
	if err != nil || c != (store.Counts{Pending: 2, Inflight: 1, Done: 1}) {
		t.Fatalf("Counts = %+v, %v", c, err)
	}
	if has, err := st.HasPending(bg, "a"); err != nil || !has {
		t.Fatalf("HasPending(a) = %v, %v", has, err)
	}
	claim(t, st, "a", 1)
	if has, err := st.HasPending(bg, "a"); err != nil || has {
		t.Fatalf("HasPending(a) after claim = %v, %v", has, err)
	}
	list, err := st.List(bg, store.Filter{})
	if err != nil || len(list) != 3 {
		t.Fatalf("List(not done) = %v, %v", texts(list), err)
	}
	list, err = st.List(bg, store.Filter{State: store.Done})
	if err != nil || len(list) != 1 || list[0].ID != a[0] {
		t.Fatalf("List(done) = %v, %v", texts(list), err)
	}
	list, err = st.List(bg, store.Filter{ChatID: "b", State: store.Pending, Limit: 5})
	if err != nil || !slices.Equal(texts(list), []string{"b2"}) {
		t.Fatalf("List(b pending) = %v, %v", texts(list), err)
	}
	if _, err := st.List(bg, store.Filter{State: "bogus"}); err == nil {
		t.Fatal("List with an unknown state succeeded")
	}
}

func testListPage(t *testing.T, s Suite) {
	st, _ := open(t, s)
	long := strings.Repeat("é", 50) // 100 bytes
	for i := range 5 {
		if _, _, err := st.Accept(bg, "a", fmt.Sprintf("%d%s", i, long), ""); err != nil {
			t.Fatal(err)
		}
	}
	page, more, err := st.ListPage(bg, store.Filter{ChatID: "a"}, 0, 3, 10)
	if err != nil || len(page) != 3 || !more {
		t.Fatalf("ListPage = %d more=%v %v", len(page), more, err)
	}
	l := page[0]
	if l.Text != "0"+strings.Repeat("é", 9) || l.TextBytes != 101 || !l.Clipped() {
		t.Fatalf("clipped listing = %q (%d bytes)", l.Text, l.TextBytes)
	}
	page, more, err = st.ListPage(bg, store.Filter{ChatID: "a"}, page[2].Seq, 3, 1000)
	if err != nil || len(page) != 2 || more || page[0].Clipped() || page[0].Text[0] != '3' {
		t.Fatalf("second page = %+v more=%v %v", page, more, err)
	}
}

func testRecentExchanges(t *testing.T, s Suite) {
	st, _ := open(t, s)
	for turn := range 4 {
		ids := accept(t, st, "a", fmt.Sprintf("q%d-1", turn), fmt.Sprintf("q%d-2", turn))
		claim(t, st, "a", 10)
		if err := st.Complete(bg, ids, fmt.Sprintf("r%d", turn)); err != nil {
			t.Fatal(err)
		}
	}
	ex, err := st.RecentExchanges(bg, "a", 2)
	if err != nil || len(ex) != 2 {
		t.Fatalf("RecentExchanges = %+v, %v", ex, err)
	}
	if ex[0].Reply != "r2" || !slices.Equal(ex[0].Texts, []string{"q2-1", "q2-2"}) || ex[1].Reply != "r3" || ex[0].TurnID == "" {
		t.Fatalf("RecentExchanges = %+v", ex)
	}
	if ex, err := st.RecentExchanges(bg, "other", 2); err != nil || len(ex) != 0 {
		t.Fatalf("RecentExchanges(other) = %+v, %v", ex, err)
	}
}

func testWriteFault(t *testing.T, s Suite) {
	st, _ := open(t, s)
	st.InjectWriteFault(func() error { return fmt.Errorf("disk: %w", syscall.ENOSPC) })
	_, _, err := st.Accept(bg, "a", "x", "")
	if !errors.Is(err, store.ErrNoSpace) || !store.IsStorage(err) {
		t.Fatalf("Accept under ENOSPC = %v", err)
	}
	if err := st.Ping(bg); !store.IsStorage(err) {
		t.Fatalf("Ping under a fault = %v", err)
	}
	st.InjectWriteFault(nil)
	if c, _ := st.Counts(bg); c.Pending != 0 {
		t.Fatal("a failed accept stored a message")
	}
	if err := st.Ping(bg); err != nil {
		t.Fatal(err)
	}
	if err := st.Check(bg); err != nil {
		t.Fatal(err)
	}
	if err := st.CheckIdentity(); err != nil {
		t.Fatal(err)
	}
}

func testReopen(t *testing.T, s Suite) {
	clk := clock.NewFake(T0)
	o := s.NewDB(t)
	st, err := o(clk)
	if err != nil {
		t.Fatal(err)
	}
	ids := accept(t, st, "a", "m1", "m2")
	claim(t, st, "a", 1)
	ev, err := st.AppendEvent(bg, events.Event{Type: events.APIDown})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Accept(bg, "a", "late", ""); err == nil {
		t.Fatal("Accept after Close succeeded")
	}
	if st, err = o(clk); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	if m := get(t, st, ids[0]); m.State != store.Inflight {
		t.Fatalf("after reopen: %+v", m)
	}
	if v, _ := st.EventsVisible(); v != ev.Seq {
		t.Fatalf("visible after reopen = %d, want %d", v, ev.Seq)
	}
	if ev2, err := st.AppendEvent(bg, events.Event{Type: events.APIUp}); err != nil || ev2.Seq <= ev.Seq {
		t.Fatalf("event after reopen: %+v, %v", ev2, err)
	}
}

// testShared: two stores on one database (two nodes) see each other's
// writes, and the feed keeps its order across them.
func testShared(t *testing.T, s Suite) {
	if !s.Shared {
		t.Skip("this store is not shared between processes")
	}
	clk := clock.NewFake(T0)
	o := s.NewDB(t)
	a, err := o(clk)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = a.Close() }()
	b, err := o(clk)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Close() }()
	id, _, err := a.Accept(bg, "chat", "via a", "k")
	if err != nil {
		t.Fatal(err)
	}
	if again, dup, err := b.Accept(bg, "chat", "via a", "k"); err != nil || !dup || again != id {
		t.Fatalf("resend through b = %q dup=%v %v", again, dup, err)
	}
	if got, _ := claim(t, b, "chat", 10); !slices.Equal(got, []string{id}) {
		t.Fatalf("b claimed %v", got)
	}
	_, ch := a.EventsVisible()
	if err := b.Complete(bg, []string{id}, "r"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("a was not told of b's event")
	}
	if got := readAll(t, a, events.Query{}); len(got) != 1 || got[0].Type != events.Reply {
		t.Fatalf("a reads %+v", got)
	}
	feedPrefix(t, a, []store.Backend{a, b})
}

// testEventsTail: Tail reads the last events, oldest first, and points next
// at the newest event (matching or not), so a reader can follow from there.
func testEventsTail(t *testing.T, s Suite) {
	st, _ := open(t, s)
	for _, chat := range []string{"a", "b", "a", "b", "a"} {
		if err := st.RecordReset(bg, chat, "why"); err != nil {
			t.Fatal(err)
		}
	}
	all, _, err := st.Events(bg, events.Query{Limit: 100})
	if err != nil || len(all) != 5 {
		t.Fatalf("all events: %d, %v", len(all), err)
	}
	last := all[len(all)-1].Seq
	evs, next, err := st.Events(bg, events.Query{Tail: true, Limit: 2})
	if err != nil || len(evs) != 2 || evs[0].Seq != all[3].Seq || evs[1].Seq != last || next != last {
		t.Fatalf("tail 2 = %+v next %d, %v; want the last two, oldest first, next %d", evs, next, err, last)
	}
	evs, next, err = st.Events(bg, events.Query{Tail: true, Limit: 10, ChatID: "b"})
	if err != nil || len(evs) != 2 || evs[0].ChatID != "b" || evs[0].Seq > evs[1].Seq || next != last {
		t.Fatalf("tail of chat b = %+v next %d, %v; want b's two events and next %d", evs, next, err, last)
	}
	evs, _, err = st.Events(bg, events.Query{Tail: true, After: all[0].Seq, HasAfter: true, Limit: 1})
	if err != nil || len(evs) != 1 || evs[0].Seq != all[1].Seq {
		t.Fatalf("tail with after = %+v, %v; want the event after the cursor", evs, err)
	}
}

func testConversations(t *testing.T, s Suite) {
	st, _ := open(t, s)
	if files, err := st.ConversationFiles(bg, "c"); err != nil || len(files) != 0 {
		t.Fatalf("ConversationFiles of a new chat = %v, %v", files, err)
	}
	save := func(changes ...store.ConvChange) {
		t.Helper()
		if err := st.SaveConversation(bg, "c", changes); err != nil {
			t.Fatal(err)
		}
	}
	save(store.ConvChange{Path: "s.jsonl", Data: []byte("one\n"), Size: 4, Hash: []byte{1}},
		store.ConvChange{Path: "s/tool.txt", Data: []byte("x"), Size: 1, Hash: []byte{2}})
	save(store.ConvChange{Path: "s.jsonl", Offset: 4, Data: []byte("two\n"), Size: 8, Hash: []byte{3}})
	save(store.ConvChange{Path: "s/tool.txt", Replace: true, Data: []byte("yz"), Size: 2, Hash: []byte{4}})
	files, err := st.ConversationFiles(bg, "c")
	if err != nil || len(files) != 2 || files[0].Path != "s.jsonl" || files[0].Size != 8 || string(files[0].Hash) != "\x03" ||
		files[1].Path != "s/tool.txt" || files[1].Size != 2 {
		t.Fatalf("ConversationFiles = %+v, %v", files, err)
	}
	got, err := st.LoadConversation(bg, "c")
	if err != nil || len(got) != 2 || string(got["s.jsonl"]) != "one\ntwo\n" || string(got["s/tool.txt"]) != "yz" {
		t.Fatalf("LoadConversation = %q, %v", got, err)
	}
	if other, err := st.LoadConversation(bg, "d"); err != nil || len(other) != 0 {
		t.Fatalf("another chat's conversation = %q, %v", other, err)
	}
}

package sqlite

import (
	"context"
	"errors"
	"fmt"
	"github.com/dispatchd/dispatch/internal/store"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/clock"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)

func openTest(t *testing.T) (*testStore, *clock.Fake) {
	t.Helper()
	clk := clock.NewFake(t0)
	s, err := openStore(filepath.Join(t.TempDir(), "dispatch.db"), clk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s, clk
}

// acceptID stores a message under an id the test chooses (Accept makes its
// own), so that tests can name their messages.
func (s *testStore) acceptID(ctx context.Context, chat, text, id string) (string, bool, error) {
	return s.accept(ctx, chat, text, "", id)
}

// accept stores messages for chat with the given ids, in order.
func accept(t *testing.T, s *testStore, chat string, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if _, dup, err := s.acceptID(context.Background(), chat, "text of "+id, id); err != nil || dup {
			t.Fatalf("Accept(%q) dup=%v err=%v", id, dup, err)
		}
	}
}

// setFailures forces a message's failure count, to set up Claim cases.
func setFailures(t *testing.T, s *testStore, id string, n int) {
	t.Helper()
	err := s.write(context.Background(), func(ctx context.Context, tx *Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE messages SET failures = ? WHERE id = ?`, n, id)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, s *testStore, id string) store.Message {
	t.Helper()
	m, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get(%q): %v", id, err)
	}
	return m
}

func ids(msgs []store.Message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.ID)
	}
	return out
}

func claim(t *testing.T, s *testStore, chat string, max int) []string {
	t.Helper()
	msgs, _, err := s.Claim(context.Background(), chat, max)
	if err != nil {
		t.Fatal(err)
	}
	return ids(msgs)
}

func TestOpenCreatesDirAndSettings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "dispatch.db")
	s, err := openStore(path, clock.Real{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	var mode string
	var sync, version int
	err = s.write(context.Background(), func(ctx context.Context, tx *Tx) error {
		if err := tx.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version)
	})
	if err != nil {
		t.Fatal(err)
	}
	if mode != "wal" || sync != 2 || version != len(migrations) {
		t.Errorf("journal_mode=%q synchronous=%d user_version=%d, want wal 2 %d", mode, sync, version, len(migrations))
	}
	if err := s.Check(context.Background()); err != nil {
		t.Error(err)
	}
}

func TestOpenPathWithQuestionMark(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "odd?dir#x%20y")
	s, err := openStore(filepath.Join(dir, "dispatch.db"), clock.Real{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := os.Stat(filepath.Join(dir, "dispatch.db")); err != nil {
		t.Fatal(err)
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dispatch.db")
	s, err := openStore(path, clock.Real{})
	if err != nil {
		t.Fatal(err)
	}
	err = s.write(context.Background(), func(ctx context.Context, tx *Tx) error {
		_, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(migrations)+1))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err := openStore(path, clock.Real{}); err == nil {
		s.Close()
		t.Fatal("Open accepted a database from a newer build")
	}
}

func TestAccept(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()

	id, dup, err := s.Accept(ctx, "chat", "hello", "client-1")
	if err != nil || dup || id == "" || id == "client-1" {
		t.Fatalf("Accept = %q, %v, %v; want a new id of the store's own", id, dup, err)
	}
	m := get(t, s, id)
	if m.ChatID != "chat" || m.ClientID != "client-1" || m.Text != "hello" || m.State != store.Pending || m.Seq == 0 ||
		!m.CreatedAt.Equal(t0) || !m.UpdatedAt.Equal(t0) {
		t.Errorf("stored %+v", m)
	}

	// A resend of the same (chat, client_id) and text stores nothing and
	// answers the original id.
	again, dup, err := s.Accept(ctx, "chat", "hello", "client-1")
	if err != nil || !dup || again != id {
		t.Fatalf("resend = %q, %v, %v; want %q, true", again, dup, err, id)
	}
	if got := get(t, s, id); got != m {
		t.Errorf("resend changed the message: %+v", got)
	}

	// The same pair with another text is a conflict; nothing is stored.
	if _, _, err := s.Accept(ctx, "chat", "changed", "client-1"); !errors.Is(err, store.ErrConflict) {
		t.Errorf("same client_id, other text: %v, want ErrConflict", err)
	}

	// The same client_id in another chat is another message: a client id
	// never reaches across chats.
	other, dup, err := s.Accept(ctx, "other", "changed", "client-1")
	if err != nil || dup || other == id {
		t.Fatalf("other chat = %q, %v, %v; want a new message", other, dup, err)
	}
	if got := get(t, s, other); got.ChatID != "other" || got.Text != "changed" {
		t.Errorf("other chat's message: %+v", got)
	}

	// Still a duplicate once done.
	claim(t, s, "chat", 1)
	if err := s.Complete(ctx, []string{id}, "hi"); err != nil {
		t.Fatal(err)
	}
	if got, dup, _ := s.Accept(ctx, "chat", "hello", "client-1"); !dup || got != id {
		t.Error("resend of a done message was not a duplicate")
	}

	// No client id: never a duplicate, a distinct id each time.
	a, dup, err := s.Accept(ctx, "chat", "x", "")
	if err != nil || dup || a == "" {
		t.Fatalf("Accept without client id = %q, %v, %v", a, dup, err)
	}
	b, dup, _ := s.Accept(ctx, "chat", "x", "")
	if a == b || dup {
		t.Errorf("second Accept without client id: %q (first %q), dup %v", b, a, dup)
	}

	if _, _, err := s.Accept(ctx, "", "x", ""); err == nil {
		t.Error("Accept with empty chat id succeeded")
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := s.Accept(cancelled, "chat", "x", "never"); !errors.Is(err, context.Canceled) {
		t.Errorf("Accept with cancelled ctx: %v", err)
	}
	if got, _ := s.List(ctx, store.Filter{ChatID: "chat", State: store.Pending}); len(got) != 2 {
		t.Errorf("cancelled Accept stored its message: %d pending", len(got))
	}
}

func TestClaim(t *testing.T) {
	tests := []struct {
		name     string
		failures []int // per message m0, m1, … of chat "c"
		max      int
		want     []string
		more     bool // messages wait behind the batch
	}{
		{"nothing pending", nil, 10, nil, false},
		{"all fresh", []int{0, 0, 0}, 10, []string{"m0", "m1", "m2"}, false},
		{"exactly max", []int{0, 0, 0}, 3, []string{"m0", "m1", "m2"}, false},
		{"capped at max", []int{0, 0, 0}, 2, []string{"m0", "m1"}, true},
		{"max below 1 means 1", []int{0, 0}, 0, []string{"m0"}, true},
		{"failed oldest goes alone", []int{1, 0, 0}, 10, []string{"m0"}, true},
		{"failed oldest alone, nothing behind", []int{1}, 10, []string{"m0"}, false},
		{"stops before a failed one", []int{0, 0, 1, 0}, 10, []string{"m0", "m1"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openTest(t)
			accept(t, s, "other", "o0") // another chat's message never comes along
			for i, f := range tt.failures {
				id := fmt.Sprintf("m%d", i)
				accept(t, s, "c", id)
				setFailures(t, s, id, f)
			}
			msgs, more, err := s.Claim(context.Background(), "c", tt.max)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(msgs); !slices.Equal(got, tt.want) {
				t.Fatalf("Claim = %v, want %v", got, tt.want)
			}
			if more != tt.more {
				t.Errorf("Claim more = %v, want %v", more, tt.more)
			}
			if tt.want == nil && msgs != nil {
				t.Errorf("Claim with nothing pending = %#v, want nil", msgs)
			}
			for _, m := range msgs {
				if m.State != store.Inflight || m.Attempts != 1 {
					t.Errorf("returned %s state=%s attempts=%d", m.ID, m.State, m.Attempts)
				}
				if stored := get(t, s, m.ID); stored != m {
					t.Errorf("returned %+v, stored %+v", m, stored)
				}
			}
			// Claimed messages are not claimed again.
			again := claim(t, s, "c", 10)
			for _, id := range again {
				if slices.Contains(tt.want, id) {
					t.Errorf("%s claimed twice", id)
				}
			}
		})
	}
}

func TestFailGoesDeadAtMaxAttempts(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	accept(t, s, "c", "poison", "next")

	claim(t, s, "c", 10) // both go together the first time
	dead, err := s.Fail(ctx, []string{"poison", "next"}, "agent crashed", 2)
	if err != nil || len(dead) != 0 {
		t.Fatalf("first Fail = %v, %v", dead, err)
	}
	m := get(t, s, "poison")
	if m.State != store.Pending || m.Failures != 1 || m.Error != "agent crashed" {
		t.Fatalf("after one failure: %+v", m)
	}

	// Having failed, the oldest is now tried alone.
	if got := claim(t, s, "c", 10); !slices.Equal(got, []string{"poison"}) {
		t.Fatalf("second Claim = %v, want [poison]", got)
	}
	dead, err = s.Fail(ctx, []string{"poison"}, "agent crashed again", 2)
	if err != nil || !slices.Equal(dead, []string{"poison"}) {
		t.Fatalf("second Fail = %v, %v", dead, err)
	}
	m = get(t, s, "poison")
	if m.State != store.Dead || m.Failures != 2 || m.Attempts != 2 || m.Error != "agent crashed again" {
		t.Fatalf("dead message: %+v", m)
	}

	// "next" failed once too, so it is now tried alone; once it succeeds
	// the queue is empty.
	if got := claim(t, s, "c", 10); !slices.Equal(got, []string{"next"}) {
		t.Fatalf("third Claim = %v, want [next]", got)
	}
	if err := s.Complete(ctx, []string{"next"}, "ok"); err != nil {
		t.Fatal(err)
	}
	c, err := s.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c != (store.Counts{Done: 1, Dead: 1}) {
		t.Errorf("Counts = %+v", c)
	}
}

func TestCompleteClearsError(t *testing.T) {
	s, clk := openTest(t)
	ctx := context.Background()
	accept(t, s, "c", "a")
	claim(t, s, "c", 1)
	if err := s.Requeue(ctx, []string{"a"}, "api down"); err != nil {
		t.Fatal(err)
	}
	claim(t, s, "c", 1)
	clk.Advance(time.Minute)
	if err := s.Complete(ctx, []string{"a"}, "the reply"); err != nil {
		t.Fatal(err)
	}
	m := get(t, s, "a")
	if m.State != store.Done || m.Reply != "the reply" || m.Error != "" || m.Attempts != 2 ||
		!m.UpdatedAt.Equal(t0.Add(time.Minute)) || !m.CreatedAt.Equal(t0) {
		t.Errorf("completed: %+v", m)
	}
}

func TestRequeueKeepsOrder(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	accept(t, s, "c", "a", "b")
	setFailures(t, s, "b", 1)
	claim(t, s, "c", 10) // a
	accept(t, s, "c", "later")

	if err := s.Requeue(ctx, []string{"a"}, "overloaded"); err != nil {
		t.Fatal(err)
	}
	m := get(t, s, "a")
	if m.State != store.Pending || m.Failures != 0 || m.Error != "overloaded" || m.Attempts != 1 {
		t.Errorf("requeued: %+v", m)
	}
	// a is first in line again; b (failed before) alone after it; then later.
	for _, want := range [][]string{{"a"}, {"b"}, {"later"}} {
		got := claim(t, s, "c", 10)
		if !slices.Equal(got, want) {
			t.Fatalf("Claim = %v, want %v", got, want)
		}
		if want[0] == "b" {
			if err := s.Requeue(ctx, got, "shutdown"); err != nil {
				t.Fatal(err)
			}
			if m := get(t, s, "b"); m.Failures != 1 {
				t.Errorf("Requeue changed failures: %+v", m)
			}
			if got := claim(t, s, "c", 10); !slices.Equal(got, want) {
				t.Fatalf("Claim after requeue = %v, want %v", got, want)
			}
		}
		if err := s.Complete(ctx, got, ""); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOnlyInflightIsChanged(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	accept(t, s, "c", "pending", "done")
	claim(t, s, "c", 10)
	if err := s.Requeue(ctx, []string{"pending"}, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Complete(ctx, []string{"done"}, "r"); err != nil {
		t.Fatal(err)
	}
	before := []store.Message{get(t, s, "pending"), get(t, s, "done")}

	if err := s.Complete(ctx, []string{"pending", "missing"}, "late"); err != nil {
		t.Fatal(err)
	}
	if err := s.Requeue(ctx, []string{"done"}, "late"); err != nil {
		t.Fatal(err)
	}
	if dead, err := s.Fail(ctx, []string{"done", "pending"}, "late", 1); err != nil || dead != nil {
		t.Fatalf("Fail = %v, %v", dead, err)
	}
	after := []store.Message{get(t, s, "pending"), get(t, s, "done")}
	if !slices.Equal(before, after) {
		t.Errorf("non-inflight messages changed:\n%+v\n%+v", before, after)
	}
	if err := s.Complete(ctx, nil, ""); err != nil {
		t.Errorf("Complete(nil) = %v", err)
	}
}

func TestResetInflight(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	accept(t, s, "a", "a1", "a2")
	accept(t, s, "b", "b1")
	claim(t, s, "a", 1)
	claim(t, s, "b", 1)
	n, err := s.ResetInflight(ctx)
	if err != nil || n != 2 {
		t.Fatalf("ResetInflight = %d, %v", n, err)
	}
	c, _ := s.Counts(ctx)
	if c != (store.Counts{Pending: 3}) {
		t.Errorf("Counts = %+v", c)
	}
	if got := claim(t, s, "a", 10); !slices.Equal(got, []string{"a1", "a2"}) {
		t.Errorf("Claim after reset = %v", got)
	}
	if n, err := s.ResetInflight(ctx); err != nil || n != 2 {
		t.Errorf("second ResetInflight = %d, %v", n, err)
	}
}

// kill makes id dead through the normal path.
func kill(t *testing.T, s *testStore, chat, id string) {
	t.Helper()
	setFailures(t, s, id, 1)
	if got := claim(t, s, chat, 10); !slices.Equal(got, []string{id}) {
		t.Fatalf("Claim = %v, want [%s]", got, id)
	}
	if dead, err := s.Fail(context.Background(), []string{id}, "boom", 2); err != nil || len(dead) != 1 {
		t.Fatalf("Fail = %v, %v", dead, err)
	}
}

func TestRetryGoesToBackOfLine(t *testing.T) {
	s, clk := openTest(t)
	ctx := context.Background()
	accept(t, s, "c", "old", "mid")
	kill(t, s, "c", "old")
	accept(t, s, "c", "new")
	before := get(t, s, "old")
	clk.Advance(time.Hour)

	if err := s.Retry(ctx, "old"); err != nil {
		t.Fatal(err)
	}
	m := get(t, s, "old")
	if m.State != store.Pending || m.Failures != 0 || m.Seq <= get(t, s, "new").Seq ||
		m.Text != before.Text || m.Attempts != before.Attempts ||
		!m.CreatedAt.Equal(before.CreatedAt) || !m.UpdatedAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("retried: %+v (was %+v)", m, before)
	}
	if got := claim(t, s, "c", 10); !slices.Equal(got, []string{"mid", "new", "old"}) {
		t.Errorf("Claim = %v, want [mid new old]", got)
	}

	for _, id := range []string{"old", "missing"} { // inflight, absent
		if err := s.Retry(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Retry(%q) = %v, want ErrNotFound", id, err)
		}
	}
}

func TestSeqNeverReused(t *testing.T) {
	s, _ := openTest(t)
	accept(t, s, "c", "a")
	kill(t, s, "c", "a")
	seq := get(t, s, "a").Seq
	if err := s.Drop(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	accept(t, s, "c", "b")
	if got := get(t, s, "b").Seq; got <= seq {
		t.Errorf("seq %d reused after drop of %d", got, seq)
	}
}

func TestDrop(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	accept(t, s, "c", "dead", "alive")
	kill(t, s, "c", "dead")

	if err := s.Drop(ctx, "alive"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Drop(pending) = %v, want ErrNotFound", err)
	}
	if err := s.Drop(ctx, "dead"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "dead"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get after Drop = %v", err)
	}
	if err := s.Drop(ctx, "dead"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second Drop = %v, want ErrNotFound", err)
	}
	if get(t, s, "alive").State != store.Pending {
		t.Error("Drop touched another message")
	}
}

func TestListAndCounts(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	accept(t, s, "a", "a1", "a2", "a3", "a4")
	accept(t, s, "b", "b1", "b2")
	claim(t, s, "a", 1) // a1 inflight
	if err := s.Complete(ctx, []string{"a1"}, "r"); err != nil {
		t.Fatal(err)
	}
	kill(t, s, "a", "a2")
	claim(t, s, "a", 1) // a3 inflight

	tests := []struct {
		f    store.Filter
		want []string
	}{
		{store.Filter{}, []string{"a2", "a3", "a4", "b1", "b2"}},
		{store.Filter{ChatID: "a"}, []string{"a2", "a3", "a4"}},
		{store.Filter{State: store.Done}, []string{"a1"}},
		{store.Filter{State: store.Dead}, []string{"a2"}},
		{store.Filter{State: store.Pending}, []string{"a4", "b1", "b2"}},
		{store.Filter{ChatID: "b", State: store.Pending}, []string{"b1", "b2"}},
		{store.Filter{State: store.Pending, Limit: 2}, []string{"a4", "b1"}},
		{store.Filter{ChatID: "nobody"}, nil},
	}
	for _, tt := range tests {
		got, err := s.List(ctx, tt.f)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ids(got), tt.want) {
			t.Errorf("List(%+v) = %v, want %v", tt.f, ids(got), tt.want)
		}
	}
	if _, err := s.List(ctx, store.Filter{State: "bogus"}); err == nil {
		t.Error("List accepted an unknown state")
	}

	c, err := s.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c != (store.Counts{Pending: 3, Inflight: 1, Done: 1, Dead: 1}) {
		t.Errorf("Counts = %+v", c)
	}

	byChat, err := s.PendingStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(byChat) != 2 || byChat["a"].Count != 1 || byChat["b"].Count != 2 {
		t.Errorf("PendingStats = %v", byChat)
	}
}

func TestChatsWithPendingOldestFirst(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	accept(t, s, "late", "l1")
	accept(t, s, "early", "e1")
	accept(t, s, "idle", "i1")
	accept(t, s, "late", "l2")
	claim(t, s, "late", 1) // late's oldest pending is now l2
	claim(t, s, "idle", 1) // idle has none pending

	got, err := s.ChatsWithPending(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"early", "late"}) {
		t.Errorf("ChatsWithPending = %v, want [early late]", got)
	}
}

func TestQueriesUseIndex(t *testing.T) {
	s, _ := openTest(t)
	for _, q := range []string{
		`SELECT ` + msgCols + ` FROM messages WHERE chat_id = 'c' AND state = 'pending' ORDER BY seq LIMIT 10`,
		`SELECT chat_id, count(*) FROM messages WHERE state = 'pending' GROUP BY chat_id`,
		`SELECT chat_id FROM messages WHERE state = 'pending' GROUP BY chat_id ORDER BY min(seq)`,
		`SELECT state, count(*) FROM messages GROUP BY state`,
		`SELECT ` + msgCols + ` FROM messages WHERE id = 'x'`,
		`SELECT EXISTS(SELECT 1 FROM messages WHERE chat_id = 'c' AND state = 'pending')`,
		`SELECT chat_id, count(*), min(updated_at) FROM messages WHERE state = 'pending' GROUP BY chat_id`,
	} {
		rows, err := s.db.rdb.Query("EXPLAIN QUERY PLAN " + q)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		p := strings.Join(plan, "; ")
		if !strings.Contains(p, "INDEX") || strings.Contains(p, "SCAN messages ") && !strings.Contains(p, "COVERING") {
			t.Errorf("%s\n  plan: %s", q, p)
		}
		if strings.Contains(q, "ORDER BY seq") && strings.Contains(p, "TEMP B-TREE") {
			t.Errorf("%s sorts: %s", q, p)
		}
	}
}

func TestPendingStatsManyChats(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	const chats = 5000
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < chats; i += 16 {
				if _, _, err := s.Accept(ctx, fmt.Sprintf("chat-%d", i), "x", ""); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	start := time.Now()
	got, err := s.PendingStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != chats {
		t.Fatalf("PendingStats has %d chats, want %d", len(got), chats)
	}
	t.Logf("PendingStats over %d chats: %v", chats, time.Since(start))
}

func TestDurableAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "dispatch.db")
	ctx := context.Background()
	s, err := openStore(path, clock.NewFake(t0))
	if err != nil {
		t.Fatal(err)
	}
	accept(t, s, "c", "a", "b")
	claim(t, s, "c", 1)
	rec := store.SessionRecord{ChatID: "c", SessionID: "sess-1", Live: true, Turns: 3, CreatedAt: t0, LastActivity: t0}
	if err := s.SaveSession(ctx, rec); err != nil {
		t.Fatal(err)
	}
	seqB := get(t, s, "b").Seq
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Accept(ctx, "c", "x", ""); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Accept after Close = %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}

	s, err = openStore(path, clock.NewFake(t0))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if m := get(t, s, "a"); m.State != store.Inflight {
		t.Errorf("a after reopen: %+v", m)
	}
	if n, err := s.ResetInflight(ctx); n != 1 || err != nil {
		t.Errorf("ResetInflight = %d, %v", n, err)
	}
	if got := claim(t, s, "c", 10); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("Claim after reopen = %v", got)
	}
	accept(t, s, "c", "c")
	if get(t, s, "c").Seq <= seqB {
		t.Error("seq went backwards after reopen")
	}
	sessions, err := s.Sessions(ctx)
	if err != nil || len(sessions) != 1 || sessions[0] != rec {
		t.Errorf("Sessions after reopen = %+v, %v", sessions, err)
	}
}

func TestConcurrentAccept(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	const goroutines, each = 16, 50
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, _, err := s.acceptID(ctx, fmt.Sprintf("chat-%d", g%4), "x", fmt.Sprintf("g%d-%d", g, i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()

	seen := make(map[int64]bool)
	for g := range goroutines {
		var last int64
		for i := range each {
			m := get(t, s, fmt.Sprintf("g%d-%d", g, i))
			if seen[m.Seq] {
				t.Fatalf("seq %d used twice", m.Seq)
			}
			seen[m.Seq] = true
			if m.Seq <= last {
				t.Fatalf("one client's messages out of order: %d after %d", m.Seq, last)
			}
			last = m.Seq
		}
	}
	if c, _ := s.Counts(ctx); c.Pending != goroutines*each {
		t.Errorf("Counts = %+v, want %d pending", c, goroutines*each)
	}
}

// A failing op in a group commit is rolled back alone; the others in the
// same transaction are stored.
func TestFailingOpDoesNotFailBatch(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()

	// Hold the writer inside a transaction so the next writes queue up and
	// are committed together.
	hold, held := make(chan struct{}), make(chan struct{})
	go s.write(ctx, func(ctx context.Context, tx *Tx) error {
		close(held)
		<-hold
		return nil
	})
	<-held

	errBoom := errors.New("boom")
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i == 1 {
				errs[i] = s.write(ctx, func(ctx context.Context, tx *Tx) error {
					if _, err := tx.ExecContext(ctx, `INSERT INTO messages (id, chat_id, text, state, created_at, updated_at)
						VALUES ('half', 'c', '', 'pending', 0, 0)`); err != nil {
						return err
					}
					return errBoom
				})
				return
			}
			_, _, errs[i] = s.acceptID(ctx, "c", "x", fmt.Sprint("ok", i))
		}()
	}
	waitSending(t, s, 3) // all three queued behind the held op
	close(hold)
	wg.Wait()

	if errs[0] != nil || errs[2] != nil || !errors.Is(errs[1], errBoom) {
		t.Fatalf("errors = %v", errs)
	}
	if _, err := s.Get(ctx, "half"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("failed op's write was kept: %v", err)
	}
	for _, id := range []string{"ok0", "ok2"} {
		get(t, s, id)
	}
}

func TestSessionUpsert(t *testing.T) {
	s, clk := openTest(t)
	ctx := context.Background()
	if got, err := s.Sessions(ctx); err != nil || len(got) != 0 {
		t.Fatalf("Sessions on empty store = %v, %v", got, err)
	}

	// Zero CreatedAt on first save means now.
	first := store.SessionRecord{ChatID: "master", SessionID: "s1", Exempt: true, Live: true, Turns: 1, LastActivity: t0}
	if err := s.SaveSession(ctx, first); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	second := store.SessionRecord{ChatID: "master", SessionID: "s2", Failed: true, FailReason: "3 restarts in 20m",
		Turns: 7, Restarts: 3, LastActivity: t0.Add(time.Hour)}
	if err := s.SaveSession(ctx, second); err != nil {
		t.Fatal(err)
	}
	other := store.SessionRecord{ChatID: "family-group", CreatedAt: t0.Add(-time.Hour)}
	if err := s.SaveSession(ctx, other); err != nil {
		t.Fatal(err)
	}

	got, err := s.Sessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	second.CreatedAt = t0 // kept from the first save
	want := []store.SessionRecord{other, second}
	if len(got) != len(want) {
		t.Fatalf("Sessions = %+v", got)
	}
	for i := range want {
		if !sessionEqual(got[i], want[i]) {
			t.Errorf("Sessions[%d] = %+v\n want %+v", i, got[i], want[i])
		}
	}
	if err := s.SaveSession(ctx, store.SessionRecord{}); err == nil {
		t.Error("SaveSession without chat id succeeded")
	}
}

func sessionEqual(a, b store.SessionRecord) bool {
	return a.CreatedAt.Equal(b.CreatedAt) && a.LastActivity.Equal(b.LastActivity) &&
		a.ChatID == b.ChatID && a.SessionID == b.SessionID && a.Exempt == b.Exempt &&
		a.Live == b.Live && a.Failed == b.Failed && a.FailReason == b.FailReason &&
		a.Turns == b.Turns && a.Restarts == b.Restarts
}

func TestClaimableRule(t *testing.T) {
	msgs := func(failures ...int) []store.Message {
		var out []store.Message
		for i, f := range failures {
			out = append(out, store.Message{ID: fmt.Sprint(i), Failures: f})
		}
		return out
	}
	tests := []struct {
		in   []store.Message
		want []string
	}{
		{nil, nil},
		{msgs(0), []string{"0"}},
		{msgs(2, 0), []string{"0"}},
		{msgs(0, 0, 3, 0), []string{"0", "1"}},
		{msgs(0, 0, 0), []string{"0", "1", "2"}},
	}
	for _, tt := range tests {
		if got := ids(store.Claimable(tt.in)); !slices.Equal(got, tt.want) {
			t.Errorf("store.Claimable(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestCloseCheckpointsWAL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dispatch.db")
	s, err := openStore(path, clock.Real{})
	if err != nil {
		t.Fatal(err)
	}
	accept(t, s, "c", "a")
	if _, err := s.Get(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + "-wal"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("WAL left behind after Close: %v", err)
	}
}

func TestPendingStatsAndHasPending(t *testing.T) {
	s, clk := openTest(t)
	ctx := context.Background()
	accept(t, s, "a", "a1")
	clk.Advance(time.Minute)
	accept(t, s, "a", "a2")
	accept(t, s, "b", "b1")
	claim(t, s, "b", 1)

	stats, err := s.PendingStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(stats) != 1 || stats["a"].Count != 2 || !stats["a"].Oldest.Equal(t0) {
		t.Errorf("PendingStats = %+v", stats)
	}
	for chat, want := range map[string]bool{"a": true, "b": false, "nobody": false} {
		if got, err := s.HasPending(ctx, chat); err != nil || got != want {
			t.Errorf("HasPending(%q) = %v, %v; want %v", chat, got, err, want)
		}
	}
}

// A group made only of lazy ops (claims) commits with synchronous=NORMAL,
// without an fsync of its own; any group with a durable op commits with
// FULL, whose fsync also covers the lazy commits before it.
func TestLazyGroupsSkipFsync(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	level := func(tx *Tx) int {
		var v int
		if err := tx.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&v); err != nil {
			t.Error(err)
		}
		return v
	}
	var got int
	if err := s.writeLazy(ctx, func(ctx context.Context, tx *Tx) error { got = level(tx); return nil }); err != nil {
		t.Fatal(err)
	}
	if got != 1 {
		t.Errorf("lazy group: synchronous=%d, want 1 (NORMAL)", got)
	}
	if err := s.write(ctx, func(ctx context.Context, tx *Tx) error { got = level(tx); return nil }); err != nil {
		t.Fatal(err)
	}
	if got != 2 {
		t.Errorf("durable group: synchronous=%d, want 2 (FULL)", got)
	}

	// A lazy op sharing a group with a durable one is committed durably.
	hold, held := make(chan struct{}), make(chan struct{})
	go s.write(ctx, func(ctx context.Context, tx *Tx) error {
		close(held)
		<-hold
		return nil
	})
	<-held
	var lazy, durable int
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_ = s.writeLazy(ctx, func(ctx context.Context, tx *Tx) error { lazy = level(tx); return nil })
	}()
	go func() {
		defer wg.Done()
		_ = s.write(ctx, func(ctx context.Context, tx *Tx) error { durable = level(tx); return nil })
	}()
	waitSending(t, s, 2) // both queued behind the held op
	close(hold)
	wg.Wait()
	if lazy != 2 || durable != 2 {
		t.Errorf("mixed group: synchronous lazy=%d durable=%d, want 2 and 2", lazy, durable)
	}

	// Claims work as before.
	accept(t, s, "c", "m1")
	if ids := claim(t, s, "c", 10); len(ids) != 1 || ids[0] != "m1" {
		t.Fatalf("claim = %v", ids)
	}
	if m := get(t, s, "m1"); m.State != store.Inflight || m.Attempts != 1 {
		t.Errorf("after claim: %+v", m)
	}
}

func TestPurgeDone(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	s, err := openStore(filepath.Join(t.TempDir(), "p.db"), clk)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	accept := func(id string) {
		if _, _, err := s.accept(ctx, "c", "t", id, id); err != nil { // client id = id
			t.Fatal(err)
		}
	}
	accept("old-done")
	accept("old-dead")
	if m, _, _ := s.Claim(ctx, "c", 2); len(m) != 2 {
		t.Fatalf("claimed %d", len(m))
	}
	s.Complete(ctx, []string{"old-done"}, "r")
	s.Fail(ctx, []string{"old-dead"}, "e", 1)
	clk.Advance(48 * time.Hour)
	accept("new-pending")
	accept("new-done")
	s.Claim(ctx, "c", 1) // new-pending goes in flight; new-done stays pending
	n, err := s.PurgeDone(ctx, clk.Now().Add(-24*time.Hour), 1000)
	if err != nil || n != 1 {
		t.Fatalf("PurgeDone = %d, %v; want 1 (only the old done message)", n, err)
	}
	if _, err := s.Get(ctx, "old-done"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("old done message still there: %v", err)
	}
	for _, id := range []string{"old-dead", "new-pending", "new-done"} {
		if _, err := s.Get(ctx, id); err != nil {
			t.Fatalf("%s purged: %v", id, err)
		}
	}
	// a purged client id is new again
	if _, dup, _ := s.Accept(ctx, "c", "t", "old-done"); dup {
		t.Fatal("a purged id still counts as a duplicate")
	}
}

func TestPing(t *testing.T) {
	dir := t.TempDir()
	s, err := openStore(filepath.Join(dir, "ping.db"), clock.Real{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping on a fresh store: %v", err)
	}
	s.Close()
	if err := s.Ping(context.Background()); err == nil {
		t.Fatal("Ping after Close succeeded")
	}
}

func TestRequeueKeptRecordsTheConversation(t *testing.T) {
	s, err := openStore(filepath.Join(t.TempDir(), "k.db"), clock.Real{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	s.acceptID(ctx, "c", "t", "m1")
	s.Claim(ctx, "c", 1)
	if err := s.RequeueKept(ctx, []string{"m1"}, "outage", "conv-1"); err != nil {
		t.Fatal(err)
	}
	m, _ := s.Get(ctx, "m1")
	if m.State != store.Pending || m.KeptIn != "conv-1" || m.Failures != 0 {
		t.Fatalf("after RequeueKept: %+v", m)
	}
	s.Claim(ctx, "c", 1)
	s.Requeue(ctx, []string{"m1"}, "stop") // a plain requeue keeps what is known
	if m, _ := s.Get(ctx, "m1"); m.KeptIn != "conv-1" {
		t.Fatalf("plain requeue lost KeptIn: %+v", m)
	}
}

// An upgrade keeps a client's old message ids working as duplicates, in
// their own chat only.
func TestMigrationMakesOldIDsClientIDs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	s, err := openStore(path, clock.Real{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// Rewind to schema 3, as a database of the previous version, and
	// store a message under a client-chosen id the way it allowed.
	err = s.write(ctx, func(ctx context.Context, tx *Tx) error {
		for _, q := range []string{
			`DROP TABLE schedules`,
			`DROP TABLE channel_deliveries`,
			`DROP TABLE channel_cursors`,
			`DROP TABLE permission_requests`,
			`DROP TABLE permission_rules`,
			`DROP TABLE conversation_files`,
			`DROP TABLE conversation_chunks`,
			`DROP TABLE events`,
			`DROP TABLE webhook_outbox`,
			`ALTER TABLE messages DROP COLUMN turn_id`,
			`DROP INDEX messages_chat_client`,
			`ALTER TABLE messages DROP COLUMN client_id`,
			`ALTER TABLE sessions DROP COLUMN paused`,
			`INSERT INTO messages (id, chat_id, text, state, created_at, updated_at)
				VALUES ('client-42', 'a', 'hi from a', 'pending', 1, 1)`,
			`PRAGMA user_version = 3`,
		} {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = openStore(path, clock.Real{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := get(t, s, "client-42")
	if m.ClientID != "client-42" {
		t.Fatalf("migrated message: %+v", m)
	}
	if id, dup, err := s.Accept(ctx, "a", "hi from a", "client-42"); err != nil || !dup || id != "client-42" {
		t.Errorf("resend in chat a = %q, %v, %v; want the original, a duplicate", id, dup, err)
	}
	id, dup, err := s.Accept(ctx, "b", "hi from b", "client-42")
	if err != nil || dup || id == "client-42" {
		t.Errorf("chat b with a's old id = %q, %v, %v; want a new message", id, dup, err)
	}
	recs, err := s.Sessions(ctx)
	if err != nil || len(recs) != 0 {
		t.Errorf("sessions after migration: %v, %v", recs, err)
	}
}

// Storage failures are classified where they arise: a full disk and an
// I/O error are told apart without reading error texts, and a write that
// fails that way stores nothing.
func TestStorageErrorsClassified(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	for _, tt := range []struct {
		cause error
		want  error
	}{
		{syscall.ENOSPC, store.ErrNoSpace},
		{syscall.EDQUOT, store.ErrNoSpace},
		{syscall.EIO, store.ErrIO},
		{syscall.EROFS, store.ErrIO},
	} {
		s.InjectWriteFault(func() error { return &os.PathError{Op: "write", Path: "dispatch.db-wal", Err: tt.cause} })
		_, _, err := s.Accept(ctx, "c", "x", "")
		if !errors.Is(err, tt.want) || !store.IsStorage(err) || !errors.Is(err, tt.cause) {
			t.Errorf("%v: Accept error %v, want %v", tt.cause, err, tt.want)
		}
		if _, _, err := s.Claim(ctx, "c", 1); !errors.Is(err, tt.want) {
			t.Errorf("%v: Claim error %v, want %v", tt.cause, err, tt.want)
		}
	}
	s.InjectWriteFault(nil)
	if c, _ := s.Counts(ctx); c.Pending != 0 {
		t.Errorf("failed accepts stored %d messages", c.Pending)
	}
	if _, _, err := s.Accept(ctx, "c", "x", ""); err != nil {
		t.Errorf("Accept after the fault cleared: %v", err)
	}
	if store.IsStorage(store.ErrConflict) || store.IsStorage(context.Canceled) {
		t.Error("IsStorage is true for errors that are not storage failures")
	}
}

// waitSending waits until n writes wait for the writer (held in an op).
func waitSending(t *testing.T, s *testStore, n int64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); s.db.sending.Load() != n; runtime.Gosched() {
		if time.Now().After(deadline) {
			t.Fatalf("%d writes waiting for the writer, want %d", s.db.sending.Load(), n)
		}
	}
}

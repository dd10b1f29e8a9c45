package cluster

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/store/postgres"
	"github.com/dispatchd/dispatch/internal/testutil/pgtest"
)

type fakeHost struct {
	mu      sync.Mutex
	adopted []string
	dropped []string
}

func (h *fakeHost) Adopt(chat string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.adopted = append(h.adopted, chat)
	return true
}
func (h *fakeHost) Wake(string) {}
func (h *fakeHost) Drop(chat, _ string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dropped = append(h.dropped, chat)
}

func node(t *testing.T, dsn, id string) (*postgres.Store, *Manager, *fakeHost) {
	t.Helper()
	db, err := postgres.Open(context.Background(), dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := New(db, Config{Node: id, TTL: 3 * time.Second})
	st := store.New(db, clock.Real{}, store.Options[*postgres.Tx]{Fence: m, Waker: m})
	t.Cleanup(func() { st.Close() })
	h := &fakeHost{}
	m.host = h
	return st, m, h
}

// pause ends every lease at once, as if their holders had been paused
// past their ttl.
func pause(t *testing.T, dsn string) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), `UPDATE leases SET expires_at = clock_timestamp() - interval '1 second'`); err != nil {
		t.Fatal(err)
	}
}

// The fencing token at work: a node holding no lease writes nothing for
// the chat; a node whose lease was taken over (it was paused past its
// ttl) cannot complete the turn it had claimed — the new owner claims the
// message again and answers it once — and learns at its next renewal that
// the chat is gone.
func TestFencing(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	ctx := context.Background()
	sa, a, ha := node(t, dsn, "a")
	sb, b, _ := node(t, dsn, "b")

	id, _, err := sa.Accept(ctx, "c", "hi", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := sa.Claim(ctx, "c", 10); !store.IsFenced(err) {
		t.Fatalf("claim without a lease: %v, want fenced", err)
	}
	a.take(ctx, "c")
	if !a.Owns("c") || len(ha.adopted) != 1 {
		t.Fatalf("a did not take the chat: owns %v, adopted %v", a.Owns("c"), ha.adopted)
	}
	batch, _, err := sa.Claim(ctx, "c", 10)
	if err != nil || len(batch) != 1 {
		t.Fatalf("claim by the owner: %v %v", batch, err)
	}
	b.take(ctx, "c") // a's lease is valid: b gets nothing
	if b.Owns("c") {
		t.Fatal("b took a chat whose lease is valid")
	}
	if _, _, err := sb.Claim(ctx, "c", 10); !store.IsFenced(err) {
		t.Fatalf("claim by a non-owner: %v, want fenced", err)
	}

	// a is paused past its lease; b takes the chat over
	pause(t, dsn)
	b.take(ctx, "c")
	if !b.Owns("c") || b.Stats().Takeovers != 1 {
		t.Fatalf("b did not take over: %+v", b.Stats())
	}
	if m, _ := sb.Get(ctx, id); m.State != store.Pending {
		t.Fatalf("after takeover the message is %s, want pending", m.State)
	}
	// a wakes up and finishes its turn: refused, nothing written
	err = sa.CompleteTurn(ctx, []string{id}, "late reply", store.SessionRecord{ChatID: "c"})
	if !store.IsFenced(err) {
		t.Fatalf("the old owner's complete: %v, want fenced", err)
	}
	if err := sa.SaveSession(ctx, store.SessionRecord{ChatID: "c", SessionID: "x"}); !store.IsFenced(err) {
		t.Fatalf("the old owner's session save: %v, want fenced", err)
	}
	if err := sa.Requeue(ctx, []string{id}, "x"); !store.IsFenced(err) {
		t.Fatalf("the old owner's requeue: %v, want fenced", err)
	}
	if err := sa.RecordReset(ctx, "c", "x"); !store.IsFenced(err) {
		t.Fatalf("the old owner's reset event: %v, want fenced", err)
	}
	batch, _, err = sb.Claim(ctx, "c", 10)
	if err != nil || len(batch) != 1 || batch[0].Attempts != 2 {
		t.Fatalf("the new owner's claim: %+v %v", batch, err)
	}
	if err := sb.CompleteTurn(ctx, []string{id}, "reply", store.SessionRecord{ChatID: "c"}); err != nil {
		t.Fatal(err)
	}
	m, _ := sb.Get(ctx, id)
	if m.State != store.Done || m.Reply != "reply" {
		t.Fatalf("message: %+v", m)
	}
	// a learns it at its next renewal, and its session is dropped
	a.renew(ctx)
	if a.Owns("c") || len(ha.dropped) != 1 || a.Stats().LeasesLost != 1 {
		t.Fatalf("a after renewal: owns %v, dropped %v, %+v", a.Owns("c"), ha.dropped, a.Stats())
	}
}

// A lease whose deadline passed by the node's own clock is dropped before
// any renewal: the node stops counting on it as soon as another node
// could take the chat.
func TestLeaseDeadline(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	ctx := context.Background()
	sa, a, _ := node(t, dsn, "a")
	fake := clock.NewFake(time.Now())
	m := New(a.pg, Config{Node: "a", TTL: 3 * time.Second, Clock: fake})
	h := &fakeHost{}
	m.host = h
	if _, _, err := sa.Accept(ctx, "c", "hi", ""); err != nil {
		t.Fatal(err)
	}
	m.take(ctx, "c")
	if !m.Owns("c") {
		t.Fatal("not owned")
	}
	fake.Advance(3*time.Second - m.margin())
	if m.Owns("c") {
		t.Fatal("still owned past its deadline")
	}
	m.expire(fake.Now())
	if len(h.dropped) != 1 {
		t.Fatalf("dropped %v", h.dropped)
	}
}

// The watchdog's deadline: after every renewal and every lease taken, half
// a margin after the earliest lease's own deadline (the node stops the
// agent first) and so half a margin before that lease can expire.
func TestWatchdogDeadline(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	ctx := context.Background()
	sa, a, _ := node(t, dsn, "a")
	fake := clock.NewFake(time.Now())
	var told []time.Time
	ttl := 3 * time.Second
	m := New(a.pg, Config{Node: "a", TTL: ttl, Clock: fake,
		OnDeadline: func(until time.Time) { told = append(told, until) }})
	m.host = &fakeHost{}
	start := fake.Now()
	if !m.renew(ctx) {
		t.Fatal("renew failed")
	}
	want := start.Add(ttl - ttl/5 + ttl/10)
	if len(told) != 1 || !told[0].Equal(want) {
		t.Fatalf("after a renewal told %v, want %v", told, want)
	}
	fake.Advance(time.Second)
	if _, _, err := sa.Accept(ctx, "c", "hi", ""); err != nil {
		t.Fatal(err)
	}
	m.take(ctx, "c")
	if len(told) != 2 || !told[1].Equal(fake.Now().Add(ttl-ttl/5+ttl/10)) {
		t.Fatalf("after a take told %v", told)
	}
	fake.Advance(time.Second)
	if !m.renew(ctx) || len(told) != 3 || !told[2].Equal(fake.Now().Add(ttl-ttl/5+ttl/10)) {
		t.Fatalf("after a second renewal told %v", told)
	}
}

// One process per node.id: a second claim of a claimed id is refused at
// once; once the first gives it back, it succeeds.
func TestClaim(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	ctx := context.Background()
	_, a, _ := node(t, dsn, "same")
	_, b, _ := node(t, dsn, "same")
	_, c, _ := node(t, dsn, "other")
	if err := a.Claim(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Claim(ctx); !errors.Is(err, ErrNodeIDInUse) {
		t.Fatalf("second claim of one id: %v, want ErrNodeIDInUse", err)
	}
	if err := c.Claim(ctx); err != nil {
		t.Fatalf("claim of another id: %v", err)
	}
	a.Unclaim(ctx)
	if err := b.Claim(ctx); err != nil {
		t.Fatalf("claim after the first gave it back: %v", err)
	}
	b.Unclaim(ctx)
	c.Unclaim(ctx)
}

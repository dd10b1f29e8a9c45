package cluster

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/store/postgres"
	"github.com/dispatchd/dispatch/internal/testutil/pgtest"
)

// roleLog records OnRole's calls.
type roleLog struct {
	mu    sync.Mutex
	calls []string
}

func (l *roleLog) on(name string, held bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := "-"
	if held {
		s = "+"
	}
	l.calls = append(l.calls, s+name)
}

func (l *roleLog) got() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.calls...)
}

func roleNode(t *testing.T, dsn, id string, clk clock.Clock, l *roleLog) *Manager {
	t.Helper()
	db, err := postgres.Open(context.Background(), dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	m := New(db, Config{Node: id, TTL: 3 * time.Second, Clock: clk, Roles: []string{"channel:tg"}, OnRole: l.on})
	m.host = &fakeHost{}
	return m
}

// A role is held by one node at a time, with a deadline by the node's own
// clock a margin before the database lets another node take it: past it
// the node gives the role up (OnRole false) without waiting for a
// renewal that may never come, and the other node takes the role once
// it expired in the database.
func TestRoleDeadline(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	ctx := context.Background()
	start := time.Now()
	fa := clock.NewFake(start)
	var la, lb roleLog
	a := roleNode(t, dsn, "a", fa, &la)
	b := roleNode(t, dsn, "b", clock.Real{}, &lb)

	if !a.renew(ctx) {
		t.Fatal("a: renew failed")
	}
	until := a.RoleUntil("channel:tg")
	if want := start.Add(3*time.Second - a.margin()); !until.Equal(want) {
		t.Fatalf("a's role deadline = %v, want %v (the renewal's send time + ttl - margin)", until, want)
	}
	if !b.renew(ctx) {
		t.Fatal("b: renew failed")
	}
	if !b.RoleUntil("channel:tg").IsZero() {
		t.Fatal("b holds the role a holds")
	}
	holders, err := b.RoleHolders(ctx)
	if err != nil || holders["channel:tg"] != "a" {
		t.Fatalf("holders = %v, %v; want channel:tg held by a", holders, err)
	}
	if d := a.nextTick(until.Add(-10 * time.Millisecond)); d != 10*time.Millisecond {
		t.Fatalf("a's next tick %v before its role's deadline, want 10ms", d)
	}

	// Just before the deadline the role is kept; at it, it is given up.
	fa.Set(until.Add(-time.Millisecond))
	a.expire(fa.Now())
	if a.RoleUntil("channel:tg").IsZero() {
		t.Fatal("role given up before its deadline")
	}
	fa.Set(until)
	a.expire(fa.Now())
	if !a.RoleUntil("channel:tg").IsZero() {
		t.Fatal("role kept past its deadline")
	}
	if got := la.got(); len(got) != 2 || got[0] != "+channel:tg" || got[1] != "-channel:tg" {
		t.Fatalf("a's OnRole calls = %v, want [+channel:tg -channel:tg]", got)
	}

	// Once the role expired in the database, b takes it, and a learns at
	// its next renewal that it is gone.
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `UPDATE roles SET expires_at = clock_timestamp() - interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	if !b.renew(ctx) || b.RoleUntil("channel:tg").IsZero() {
		t.Fatal("b did not take the expired role")
	}
	if !a.renew(ctx) || !a.RoleUntil("channel:tg").IsZero() {
		t.Fatal("a holds the role b took")
	}
	if got := lb.got(); len(got) != 1 || got[0] != "+channel:tg" {
		t.Fatalf("b's OnRole calls = %v", got)
	}
	if holders, _ := a.RoleHolders(ctx); holders["channel:tg"] != "b" {
		t.Fatalf("holders = %v, want b", holders)
	}
}

package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/testutil/pgtest"
)

// Another node's wake-up reaches a listener, and the feed's mark of a node
// moves with the counter even when no notification comes (the poll).
func TestNotificationsAndTheFeedPoll(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	a, err := Open(ctx, dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(ctx, dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	woken := make(chan string, 1)
	go func() {
		_ = b.ListenWakes(lctx, func(chat string) {
			select {
			case woken <- chat:
			default:
			}
		})
	}()
	deadline := time.After(10 * time.Second)
	for got := false; !got; {
		a.NotifyWake(ctx, "chat-1") // again until the listener is in place
		select {
		case c := <-woken:
			if c != "chat-1" {
				t.Fatalf("woken for %q", c)
			}
			got = true
		case <-time.After(200 * time.Millisecond):
		case <-deadline:
			t.Fatal("no wake-up arrived")
		}
	}

	// The counter moves without a NOTIFY (a node that died before its
	// notification was sent): b's mark follows within the poll.
	var last int64
	if err := a.pool.QueryRow(ctx, `UPDATE feed SET last = last + 5 RETURNING last`).Scan(&last); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(3 * feedPoll); ; {
		if mark, _ := b.Visible(); mark >= last {
			break
		}
		if time.Now().After(end) {
			mark, _ := b.Visible()
			t.Fatalf("b's mark %d, the counter %d after %v", mark, last, 3*feedPoll)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

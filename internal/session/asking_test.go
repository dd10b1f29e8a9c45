package session

import (
	"context"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/agent"
	"github.com/dispatchd/dispatch/internal/clock"
)

// TestWaitsCountPersonTime: the asker wrapper tells the session while its
// agent waits for a person, and how long the turn waited in all.
func TestWaitsCountPersonTime(t *testing.T) {
	clk := clock.NewFake(t0)
	w := &waits{clk: clk}
	release := make(chan struct{})
	inner := agent.AskerFunc(func(ctx context.Context, _ agent.PermissionRequest) (agent.PermissionAnswer, error) {
		<-release
		return agent.PermissionAnswer{Allow: true}, nil
	})
	ask := w.asker(inner)
	done := make(chan struct{})
	go func() { _, _ = ask.Ask(context.Background(), agent.PermissionRequest{}); close(done) }()
	for {
		if asking, _, _ := w.read(); asking {
			break
		}
		time.Sleep(time.Millisecond)
	}
	clk.Advance(7 * time.Minute)
	close(release)
	<-done
	asking, waited, last := w.read()
	if asking || waited != 7*time.Minute || !last.Equal(t0.Add(7*time.Minute)) {
		t.Fatalf("after the answer: asking=%v waited=%s last=%s", asking, waited, last)
	}
	w.reset()
	if _, waited, last := w.read(); waited != 0 || !last.IsZero() {
		t.Fatalf("after reset: waited=%s last=%s", waited, last)
	}
	if w.asker(nil) != nil {
		t.Fatal("no asker became one")
	}
}

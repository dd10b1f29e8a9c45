package session

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/agent"
	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/events"
)

// slowProgress holds every write until release is closed.
type slowProgress struct {
	release chan struct{}
	mu      sync.Mutex
	writes  int
}

func (p *slowProgress) AppendProgress(ctx context.Context, ev events.Event) error {
	<-p.release
	p.mu.Lock()
	p.writes++
	p.mu.Unlock()
	return nil
}

func (p *slowProgress) DropProgress(ctx context.Context, chat string) (int, error) {
	<-p.release
	p.mu.Lock()
	p.writes++
	p.mu.Unlock()
	return 0, nil
}

// The progress writer belongs to its session: wait returns only once what
// was queued is written, so nothing of the session's outlives it.
func TestProgressQueueWaitsForItsWrites(t *testing.T) {
	st := &slowProgress{release: make(chan struct{})}
	q := newProgressQueue(st, "c", clock.NewFake(time.Unix(0, 0)), func(string, error) {})
	q.report(agent.Progress{Tool: "Bash", Summary: "ls"})
	q.report(agent.Progress{Tool: "Read", Summary: "a"})
	q.turnEnded()
	waited := make(chan struct{})
	go func() { q.wait(); close(waited) }()
	select {
	case <-waited:
		t.Fatal("wait returned with writes still queued")
	case <-time.After(50 * time.Millisecond):
	}
	close(st.release)
	<-waited
	if st.writes != 3 {
		t.Fatalf("%d writes when wait returned, want 3", st.writes)
	}
	var nilQueue *progressQueue // progress not kept: nothing to wait for
	nilQueue.wait()
}

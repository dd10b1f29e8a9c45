package channel

import (
	"context"
	"sync"
)

// Loops runs a channel's loops (intake, outbox, typing, progress…) from
// Start until Stop. A channel may be started again after a stop: on a
// cluster node it runs while its node holds the channel's role. The zero
// value is stopped and ready.
type Loops struct {
	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// Start runs each loop in a goroutine of its own with a context that Stop
// cancels; it does nothing while they run.
func (l *Loops) Start(loops ...func(ctx context.Context)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	l.cancel, l.done = cancel, done
	var wg sync.WaitGroup
	for _, loop := range loops {
		wg.Add(1)
		go func() { defer wg.Done(); loop(ctx) }()
	}
	go func() { wg.Wait(); close(done) }()
}

// Stop cancels the loops and waits until every one has returned. It
// reports whether they were running.
func (l *Loops) Stop() bool {
	l.mu.Lock()
	cancel, done := l.cancel, l.done
	l.cancel, l.done = nil, nil
	l.mu.Unlock()
	if cancel == nil {
		return false
	}
	cancel()
	<-done
	return true
}

package channel

import (
	"context"
	"sync/atomic"
	"testing"
)

// TestLoops: Start runs each loop once until Stop, which waits for them;
// a second Start while running does nothing; a stopped Loops starts again.
func TestLoops(t *testing.T) {
	var l Loops
	if l.Stop() {
		t.Fatal("Stop of a stopped Loops reported running")
	}
	var running, started atomic.Int32
	loop := func(ctx context.Context) {
		started.Add(1)
		running.Add(1)
		defer running.Add(-1)
		<-ctx.Done()
	}
	for round := 1; round <= 2; round++ {
		l.Start(loop, loop)
		l.Start(loop) // already running: nothing
		if !l.Stop() {
			t.Fatalf("round %d: Stop reported not running", round)
		}
		if n := running.Load(); n != 0 {
			t.Fatalf("round %d: %d loops still running after Stop", round, n)
		}
		if n := started.Load(); n != int32(2*round) {
			t.Fatalf("round %d: %d loops started, want %d", round, n, 2*round)
		}
	}
}

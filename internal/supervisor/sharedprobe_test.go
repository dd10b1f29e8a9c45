package supervisor

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestSharedProbeRunsOncePerSequentialCall(t *testing.T) {
	var p sharedProbe
	var runs atomic.Int32
	for i := range 3 {
		if err := p.Do(func() error { runs.Add(1); return nil }); err != nil {
			t.Fatal(err)
		}
		if got := runs.Load(); got != int32(i+1) {
			t.Fatalf("after %d calls the probe ran %d times", i+1, got)
		}
	}
}

// Callers that arrive while a probe runs do not take its result (it began
// before they asked): they share the next run, which one of them starts.
func TestSharedProbeLateCallersShareTheNextRun(t *testing.T) {
	var (
		p       sharedProbe
		runs    atomic.Int32
		release = []chan error{make(chan error), make(chan error)}
		started = make(chan int, 2)
	)
	probe := func() error {
		n := runs.Add(1)
		started <- int(n)
		return <-release[n-1]
	}
	first := make(chan error, 1)
	go func() { first <- p.Do(probe) }()
	if n := <-started; n != 1 {
		t.Fatalf("first run is %d", n)
	}
	errFirst, errSecond := errors.New("first run"), errors.New("second run")
	var wg sync.WaitGroup
	late := make([]error, 3)
	for i := range late {
		wg.Go(func() { late[i] = p.Do(probe) })
	}
	waitFor(t, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.waiting == 3
	})
	release[0] <- errFirst
	if err := <-first; err != errFirst {
		t.Fatalf("first caller got %v", err)
	}
	if n := <-started; n != 2 {
		t.Fatalf("second run is %d", n)
	}
	release[1] <- errSecond
	wg.Wait()
	for i, err := range late {
		if err != errSecond {
			t.Errorf("late caller %d got %v, want the second run's result", i, err)
		}
	}
	if got := runs.Load(); got != 2 {
		t.Errorf("the probe ran %d times for 4 callers, want 2", got)
	}
}

// waitFor waits until cond holds, yielding between looks; bounded.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		runtime.Gosched()
	}
}

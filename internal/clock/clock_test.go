package clock

import (
	"context"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

func TestBlockUntilReturnsOnceTheTimerIsArmed(t *testing.T) {
	f := NewFake(t0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan error, 1)
	go func() { got <- f.BlockUntil(ctx, 2) }()
	f.NewTimer(time.Hour)
	f.NewTimer(time.Second)
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if when, ok := f.Next(); !ok || !when.Equal(t0.Add(time.Second)) {
		t.Fatalf("Next = %v, %t", when, ok)
	}
}

func TestBlockUntilEndsWithItsContext(t *testing.T) {
	f := NewFake(t0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.BlockUntil(ctx, 1); err != context.Canceled {
		t.Fatalf("BlockUntil = %v, want context.Canceled", err)
	}
}

func TestWaitNextIgnoresTimersFurtherOff(t *testing.T) {
	f := NewFake(t0)
	f.NewTimer(1000 * time.Hour) // a check loop's, say
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan time.Time, 1)
	go func() {
		when, err := f.WaitNext(ctx, time.Minute)
		if err != nil {
			t.Error(err)
		}
		got <- when
	}()
	tm := f.NewTimer(30 * time.Second)
	when := <-got
	if !when.Equal(t0.Add(30 * time.Second)) {
		t.Fatalf("WaitNext = %v, want the 30s timer's deadline", when)
	}
	f.Set(when)
	select {
	case <-tm.C():
	default:
		t.Fatal("the timer did not fire at its exact deadline")
	}
	short, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if _, err := f.WaitNext(short, time.Minute); err == nil {
		t.Fatal("WaitNext returned with only a far timer armed")
	}
}

// TestSleep: the whole wait passes on the clock (true), or the context
// ends it first (false).
func TestSleep(t *testing.T) {
	f := NewFake(time.Unix(0, 0))
	done := make(chan bool, 1)
	go func() { done <- Sleep(context.Background(), f, time.Minute) }()
	if err := f.BlockUntil(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	f.Advance(time.Minute)
	if !<-done {
		t.Fatal("Sleep reported false after its whole wait")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, f, time.Minute) {
		t.Fatal("Sleep reported true with its context ended")
	}
}

package breaker

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/session"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// wakes counts wake calls per chat.
type wakes struct {
	mu sync.Mutex
	n  map[string]int
}

func (w *wakes) fn(chat string) func() {
	return func() { w.mu.Lock(); w.n[chat]++; w.mu.Unlock() }
}

func (w *wakes) count(chat string) int { w.mu.Lock(); defer w.mu.Unlock(); return w.n[chat] }

func newTest(recovery int) (*Breaker, *clock.Fake, *wakes, *[]bool) {
	clk := clock.NewFake(t0)
	var changes []bool
	b := New(Config{Min: time.Second, Max: 8 * time.Second, Recovery: recovery, OnChange: func(up bool) { changes = append(changes, up) }}, clk)
	return b, clk, &wakes{n: map[string]int{}}, &changes
}

func TestUpAdmitsEverything(t *testing.T) {
	b, _, w, _ := newTest(1)
	for _, c := range []string{"a", "b", "c"} {
		if !b.Admit(c, w.fn(c)) {
			t.Fatalf("closed breaker held %s", c)
		}
	}
	for _, c := range []string{"a", "b", "c"} {
		b.Done(c, session.Answered)
	}
	if !b.Up() {
		t.Fatal("breaker opened without an outage")
	}
}

func TestOutageHoldsThenProbesThenRecovers(t *testing.T) {
	b, clk, w, changes := newTest(2)
	if !b.Admit("a", w.fn("a")) {
		t.Fatal("not admitted")
	}
	b.Done("a", session.Unreachable)
	if b.Up() || len(*changes) != 1 || (*changes)[0] {
		t.Fatalf("after an outage: up=%v changes=%v", b.Up(), *changes)
	}
	// new turns are held
	for _, c := range []string{"a", "b", "c", "d"} {
		if b.Admit(c, w.fn(c)) {
			t.Fatalf("open breaker admitted %s before the probe delay", c)
		}
	}
	if st := b.Stats(); st.Held != 4 || st.Up {
		t.Fatalf("stats = %+v", st)
	}
	// the probe falls due after Min ± 20 %: the oldest held turn is woken
	clk.Advance(1200 * time.Millisecond)
	wake := func() {
		b.mu.Lock()
		ws := b.wakeLocked()
		b.mu.Unlock()
		for _, f := range ws {
			f()
		}
	}
	wake()
	if w.count("a") != 1 || w.count("b") != 0 {
		t.Fatalf("wakes a=%d b=%d, want the oldest only", w.count("a"), w.count("b"))
	}
	if !b.Admit("a", w.fn("a")) {
		t.Fatal("the probe was not admitted")
	}
	if b.Admit("b", w.fn("b")) {
		t.Fatal("a second turn went through while the probe is in flight")
	}
	// the probe fails: delay doubles
	b.Done("a", session.Unreachable)
	if b.Up() {
		t.Fatal("failed probe closed the breaker")
	}
	if d := b.Stats().NextProbe.Sub(clk.Now()); d < 1600*time.Millisecond || d > 2400*time.Millisecond {
		t.Fatalf("second probe in %v, want 2s ± 20%%", d)
	}
	clk.Advance(2400 * time.Millisecond)
	wake()
	next := ""
	for _, c := range []string{"b", "c", "d", "a"} {
		if w.count(c) > 0 && (c != "a" || w.count("a") > 1) {
			next = c
			break
		}
	}
	if next != "b" {
		t.Fatalf("second probe woke %q, want b (the oldest held)", next)
	}
	if !b.Admit("b", w.fn("b")) {
		t.Fatal("second probe not admitted")
	}
	// the API answers: the breaker closes and recovery is paced (2 at once)
	b.Done("b", session.Answered)
	if !b.Up() || len(*changes) != 2 || !(*changes)[1] {
		t.Fatalf("after a good probe: up=%v changes=%v", b.Up(), *changes)
	}
	admitted := 0
	for _, c := range []string{"c", "d", "a"} {
		if b.Admit(c, w.fn(c)) {
			admitted++
		}
	}
	if admitted != 2 {
		t.Fatalf("admitted %d turns at once during recovery, want 2", admitted)
	}
	if st := b.Stats(); st.Outages != 1 || st.DownSeconds < 3.5 {
		t.Fatalf("stats after recovery = %+v", st)
	}
}

func TestProbeDelayIsCapped(t *testing.T) {
	b, clk, w, _ := newTest(1)
	b.Admit("a", w.fn("a"))
	b.Done("a", session.Unreachable)
	for range 10 {
		clk.Set(b.Stats().NextProbe)
		if !b.Admit("a", w.fn("a")) {
			t.Fatal("due probe not admitted")
		}
		b.Done("a", session.Unreachable)
	}
	if d := b.Stats().NextProbe.Sub(clk.Now()); d > 8*time.Second*12/10 {
		t.Fatalf("probe delay %v above Max + jitter", d)
	}
}

func TestReleasedProbeLetsTheNextOneGo(t *testing.T) {
	b, clk, w, _ := newTest(1)
	b.Admit("a", w.fn("a"))
	b.Done("a", session.Unreachable)
	b.Admit("b", w.fn("b"))
	clk.Advance(2 * time.Second)
	if !b.Admit("a", w.fn("a")) {
		t.Fatal("probe not admitted")
	}
	b.Done("a", session.Released) // nothing to send after all
	if w.count("b") != 1 {
		t.Fatalf("b woken %d times, want 1", w.count("b"))
	}
	if !b.Admit("b", w.fn("b")) {
		t.Fatal("b could not take the probe")
	}
}

func TestRunWakesHeldTurnsOnTheProbeTimer(t *testing.T) {
	b, clk, w, _ := newTest(1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	b.Admit("a", w.fn("a"))
	b.Done("a", session.Unreachable)
	b.Admit("b", w.fn("b"))
	deadline := time.Now().Add(5 * time.Second)
	for w.count("b") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("Run never woke the held turn")
		}
		clk.Advance(500 * time.Millisecond)
		time.Sleep(time.Millisecond)
	}
}

package breaker

import (
	"context"
	"fmt"
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

// probeScript answers probes from a list; past its end, up.
type probeScript struct {
	mu      sync.Mutex
	answers []bool
	calls   int
}

func (p *probeScript) probe(context.Context) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if len(p.answers) == 0 {
		return true
	}
	up := p.answers[0]
	p.answers = p.answers[1:]
	return up
}

func (p *probeScript) n() int { p.mu.Lock(); defer p.mu.Unlock(); return p.calls }

type fixture struct {
	b       *Breaker
	clk     *clock.Fake
	w       *wakes
	probes  *probeScript
	mu      sync.Mutex
	changes []bool
}

func newTest(recovery int, answers ...bool) *fixture {
	f := &fixture{clk: clock.NewFake(t0), w: &wakes{n: map[string]int{}}, probes: &probeScript{answers: answers}}
	f.b = New(Config{Min: time.Second, Max: 8 * time.Second, Recovery: recovery, Probe: f.probes.probe,
		OnChange: func(up bool) { f.mu.Lock(); f.changes = append(f.changes, up); f.mu.Unlock() }}, f.clk)
	return f
}

func (f *fixture) changed() []bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]bool(nil), f.changes...)
}

// run starts Run and returns its stop function.
func (f *fixture) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.b.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestUpAdmitsEverything(t *testing.T) {
	f := newTest(1)
	for _, c := range []string{"a", "b", "c"} {
		if !f.b.Admit(c, f.w.fn(c)) {
			t.Fatalf("closed breaker held %s", c)
		}
	}
	for _, c := range []string{"a", "b", "c"} {
		f.b.Done(c, session.Answered)
	}
	if !f.b.Up() {
		t.Fatal("breaker opened without an outage")
	}
}

func TestOutageHoldsProbesAndRecoversPaced(t *testing.T) {
	f := newTest(2, false, false) // two failed probes, then up
	f.run(t)
	b := f.b
	if !b.Admit("a", f.w.fn("a")) {
		t.Fatal("not admitted")
	}
	b.Done("a", session.Unreachable)
	if b.Up() || fmt.Sprint(f.changed()) != "[false]" {
		t.Fatalf("after an outage: up=%v changes=%v", b.Up(), f.changed())
	}
	for _, c := range []string{"a", "b", "c", "d"} {
		if b.Admit(c, f.w.fn(c)) {
			t.Fatalf("open breaker admitted %s", c)
		}
	}
	if st := b.Stats(); st.Held != 4 || st.Up {
		t.Fatalf("stats = %+v", st)
	}
	// first probe after Min ± 20 %
	next := b.Stats().NextProbe.Sub(f.clk.Now())
	if next < 800*time.Millisecond || next > 1200*time.Millisecond {
		t.Fatalf("first probe in %v, want 1s ± 20%%", next)
	}
	f.clk.Advance(next)
	eventually(t, "first probe", func() bool { return f.probes.n() == 1 })
	eventually(t, "second probe armed", func() bool { return b.Stats().NextProbe.After(f.clk.Now()) })
	if d := b.Stats().NextProbe.Sub(f.clk.Now()); d < 1600*time.Millisecond || d > 2400*time.Millisecond {
		t.Fatalf("second probe in %v, want 2s ± 20%%", d)
	}
	if f.w.count("a")+f.w.count("b") != 0 {
		t.Fatal("held turns woken while the API is down")
	}
	f.clk.Advance(2400 * time.Millisecond)
	eventually(t, "second probe", func() bool { return f.probes.n() == 2 })
	eventually(t, "third probe armed", func() bool { return b.Stats().NextProbe.After(f.clk.Now()) })
	f.clk.Advance(4800 * time.Millisecond)
	eventually(t, "recovery", func() bool { return b.Up() })
	if fmt.Sprint(f.changed()) != "[false true]" {
		t.Fatalf("changes = %v", f.changed())
	}
	// the two oldest held turns are woken; the others wait for a free slot
	eventually(t, "wakes", func() bool { return f.w.count("a") == 1 && f.w.count("b") == 1 })
	if f.w.count("c")+f.w.count("d") != 0 {
		t.Fatalf("woke more than the recovery limit: c=%d d=%d", f.w.count("c"), f.w.count("d"))
	}
	if !b.Admit("a", f.w.fn("a")) || !b.Admit("b", f.w.fn("b")) {
		t.Fatal("woken turns not admitted")
	}
	if b.Admit("c", f.w.fn("c")) {
		t.Fatal("a third turn ran at once during recovery")
	}
	b.Done("a", session.Answered)
	if f.w.count("c") != 1 {
		t.Fatalf("c not woken when a slot freed")
	}
	if st := b.Stats(); st.Outages != 1 || st.Probes != 3 || st.DownSeconds < 7 {
		t.Fatalf("stats after recovery = %+v", st)
	}
}

func TestProbeDelayIsCapped(t *testing.T) {
	f := newTest(1, false, false, false, false, false, false, false, false)
	f.run(t)
	f.b.Admit("a", f.w.fn("a"))
	f.b.Done("a", session.Unreachable)
	for i := range 8 {
		eventually(t, "probe armed", func() bool { return f.b.Stats().NextProbe.After(f.clk.Now()) })
		d := f.b.Stats().NextProbe.Sub(f.clk.Now())
		if d > 8*time.Second*12/10 {
			t.Fatalf("probe %d delay %v above Max + jitter", i, d)
		}
		f.clk.Advance(d)
		eventually(t, "probe", func() bool { return f.probes.n() == i+1 })
	}
}

func TestAnsweredTurnClosesTheBreaker(t *testing.T) {
	f := newTest(1, false)
	f.b.Admit("a", f.w.fn("a"))
	f.b.Admit("b", f.w.fn("b"))
	f.b.Done("a", session.Unreachable)
	f.b.Done("b", session.Answered) // admitted before the outage, and answered
	if !f.b.Up() {
		t.Fatal("an answered turn did not close the breaker")
	}
}

func TestPaceBoundsABacklog(t *testing.T) {
	f := newTest(2)
	f.b.Pace("a", "b", "c", "d")
	got := 0
	for _, c := range []string{"a", "b", "c", "d"} {
		if f.b.Admit(c, f.w.fn(c)) {
			got++
		}
	}
	if got != 2 {
		t.Fatalf("%d turns admitted at once while pacing, want 2", got)
	}
	for _, c := range []string{"a", "b"} {
		f.b.Done(c, session.Answered)
	}
	if f.w.count("c") != 1 || f.w.count("d") != 1 {
		t.Fatalf("held turns not woken as slots freed: c=%d d=%d", f.w.count("c"), f.w.count("d"))
	}
	f.b.Admit("c", f.w.fn("c"))
	f.b.Admit("d", f.w.fn("d"))
	f.b.Done("c", session.Answered)
	f.b.Done("d", session.Answered)
	// drained: no limit any more
	for _, c := range []string{"e", "f", "g"} {
		if !f.b.Admit(c, f.w.fn(c)) {
			t.Fatalf("%s held after the backlog drained", c)
		}
	}
}

// Only the backlog is paced: under steady traffic of other chats pacing
// still ends once the backlog has had its turns, and a chat that was not
// held never waits behind long turns of the backlog.
func TestPacingOnlyTheBacklogAndItEnds(t *testing.T) {
	f := newTest(2)
	f.b.Pace("a", "b", "c", "d")
	for _, c := range []string{"a", "b"} {
		if !f.b.Admit(c, f.w.fn(c)) {
			t.Fatalf("%s held", c)
		}
	}
	if f.b.Admit("c", f.w.fn("c")) {
		t.Fatal("c admitted past the pace")
	}
	// an idle chat's quick message goes at once, though two long backlog
	// turns are in flight and c waits
	if !f.b.Admit("quick", f.w.fn("quick")) {
		t.Fatal("a chat outside the backlog waited for the backlog")
	}
	f.b.Done("quick", session.Answered)
	// steady traffic of other chats, never a moment with nothing in flight
	busy := 0
	next := func() {
		busy++
		c := fmt.Sprint("busy", busy)
		if !f.b.Admit(c, f.w.fn(c)) {
			t.Fatalf("%s held while pacing", c)
		}
	}
	next()
	f.b.Done("a", session.Answered)
	f.b.Admit("c", f.w.fn("c"))
	next()
	f.b.Done("b", session.Answered)
	f.b.Admit("d", f.w.fn("d"))
	next()
	f.b.Done("c", session.Answered)
	f.b.Done("d", session.Answered)
	if f.b.Stats().Pacing {
		t.Fatal("pacing did not end when the backlog had drained (other chats still busy)")
	}
	for _, c := range []string{"a", "b", "c", "d", "e"} {
		if !f.b.Admit(c, f.w.fn(c)) {
			t.Fatalf("%s held after the backlog drained", c)
		}
	}
}

// An outage's backlog is the chats it held.
func TestOutageBacklogIsWhatItHeld(t *testing.T) {
	f := newTest(1)
	f.run(t)
	f.b.Admit("a", f.w.fn("a"))
	f.b.Done("a", session.Unreachable)
	for _, c := range []string{"a", "b"} {
		if f.b.Admit(c, f.w.fn(c)) {
			t.Fatalf("%s admitted while down", c)
		}
	}
	f.clk.Advance(2 * time.Second)
	eventually(t, "probe closes", f.b.Up)
	if !f.b.Stats().Pacing {
		t.Fatal("no pacing after an outage with held chats")
	}
	if !f.b.Admit("new", f.w.fn("new")) {
		t.Fatal("a chat the outage did not hold was paced")
	}
}

func TestAnsweredElsewhere(t *testing.T) {
	f := newTest(1)
	f.run(t)
	f.b.Admit("a", f.w.fn("a"))
	f.b.Done("a", session.Answered)
	if f.b.AnsweredElsewhere("a", t0) {
		t.Fatal("a's own answer counted as another chat's")
	}
	if !f.b.AnsweredElsewhere("b", t0) {
		t.Fatal("a's answer not seen by b")
	}
	if f.b.AnsweredElsewhere("b", t0.Add(time.Second)) {
		t.Fatal("an answer before since counted")
	}
	f.clk.Advance(time.Minute)
	f.b.Admit("b", f.w.fn("b"))
	f.b.Done("b", session.Unreachable)
	f.clk.Advance(2 * time.Second) // the probe answers
	eventually(t, "probe", f.b.Up)
	if !f.b.AnsweredElsewhere("b", t0.Add(time.Minute)) {
		t.Fatal("a probe's answer does not count")
	}
}

package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dispatchd/dispatch/internal/agent"
	"github.com/dispatchd/dispatch/internal/agent/fake"
	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/config"
	"github.com/dispatchd/dispatch/internal/logging"
	"github.com/dispatchd/dispatch/internal/session"
	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/store/sqlite"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

type harness struct {
	t    *testing.T
	dir  string
	clk  *clock.Fake
	st   *sqlite.Store
	ag   *fake.Agent
	logs *logging.Logs
	sup  *Supervisor
	cfg  Config
}

func testConfig() Config {
	return Config{
		CheckInterval:   5 * time.Minute,
		FirstCheckDelay: 1000 * time.Hour, // tests call Check themselves
		CheckTimeout:    30 * time.Second,
		Rules: session.Rules{
			MaxErrors: 3, StuckTimeout: 10 * time.Minute, FirstTurnStuckTimeout: 30 * time.Minute,
			IdleTimeout: 2 * time.Hour, Master: "master", ExemptSuffix: "-bg",
			MaxRestarts: 3, RestartWindow: 20 * time.Minute, BackoffInitial: time.Second, BackoffMax: 5 * time.Minute,
		},
		MaxAttempts: 2, MaxBatch: 50, StopTimeout: 5 * time.Second,
		ProbeMin: time.Second, ProbeMax: time.Minute, Recovery: 2, Version: "test",
	}
}

func newHarness(t *testing.T, mod func(*Config)) *harness {
	t.Helper()
	cfg := testConfig()
	if mod != nil {
		mod(&cfg)
	}
	dir := t.TempDir()
	clk := clock.NewFake(t0)
	st, err := sqlite.Open(filepath.Join(dir, "dispatch.db"), clk)
	if err != nil {
		t.Fatal(err)
	}
	logs, err := logging.Open(dir, config.Log{Level: "debug", MaxSizeMB: 5, MaxFiles: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ag := fake.New()
	ag.SetClock(clk)
	h := &harness{t: t, dir: dir, clk: clk, st: st, ag: ag, logs: logs, cfg: cfg}
	h.start()
	t.Cleanup(h.close)
	return h
}

func (h *harness) start() {
	h.sup = New(h.cfg, h.st, h.ag, h.clk, h.logs)
	if err := h.sup.Start(context.Background()); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h.sup.Shutdown(ctx)
}

func (h *harness) close() {
	if h.t.Failed() {
		h.t.Log(h.lifecycle())
		h.t.Log(readFile(logging.ManagerPath(h.dir)))
	}
	h.stop()
	h.st.Close()
	h.logs.Close()
}

func (h *harness) send(chat, text string) string {
	h.t.Helper()
	id, _, err := h.sup.Submit(context.Background(), chat, text, "")
	if err != nil {
		h.t.Fatal(err)
	}
	return id
}

// eventually polls cond (real time, bounded) — the actors run on their own
// goroutines and say what they did only through state this can look at.
// It never moves the fake clock: the short sleep is the poll's interval, not
// a wait for something to happen; a late actor only makes it poll longer.
func (h *harness) eventually(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// fire waits for the code to arm a timer due within the given span, then
// sets the fake clock to exactly that timer's deadline.
func (h *harness) fire(within time.Duration) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	when, err := h.clk.WaitNext(ctx, within)
	if err != nil {
		h.t.Fatalf("no timer due within %v was armed", within)
	}
	h.clk.Set(when)
}

// runUntil lets time pass the way the code asks for it until cond holds:
// whenever the code has armed a timer due within the given span (a backoff,
// a probe, a retry), the fake clock is set to exactly the earliest such
// deadline; otherwise it polls like eventually. Time never moves by a
// guessed step, nor past a deadline the code has not armed yet; timers
// further off (the check loop's) are left alone.
func (h *harness) runUntil(what string, within time.Duration, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s (clock at %v)", what, h.clk.Now().Sub(t0))
		}
		if when, ok := h.clk.Next(); ok && !when.After(h.clk.Now().Add(within)) {
			h.clk.Set(when)
			continue
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (h *harness) msg(id string) store.Message {
	h.t.Helper()
	m, err := h.st.Get(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	return m
}

func (h *harness) waitMsg(id string, state store.State) store.Message {
	h.t.Helper()
	var m store.Message
	h.eventually(fmt.Sprintf("message %s to be %s", id, state), func() bool {
		m = h.msg(id)
		return m.State == state
	})
	return m
}

func (h *harness) snap(chat string) session.Snapshot {
	h.t.Helper()
	ss, ok := h.sup.lookup(chat)
	if !ok {
		h.t.Fatalf("no session for %s", chat)
	}
	return ss.Snapshot()
}

func (h *harness) status(chat string) SessionStatus {
	h.t.Helper()
	st, err := h.sup.Status(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	for _, s := range st.Sessions {
		if s.ChatID == chat {
			return s
		}
	}
	h.t.Fatalf("no status for %s", chat)
	return SessionStatus{}
}

func (h *harness) lifecycle() string {
	b, _ := os.ReadFile(logging.LifecyclePath(h.dir))
	return string(b)
}

func TestReplyAndStatus(t *testing.T) {
	h := newHarness(t, nil)
	id := h.send("alice", "hello")
	m := h.waitMsg(id, store.Done)
	if !strings.Contains(m.Reply, "hello") {
		t.Fatalf("reply %q does not echo the text", m.Reply)
	}
	// the message is done (durably) a moment before the session publishes
	h.eventually("session idle", func() bool { return h.snap("alice").State == session.Idle })
	st := h.status("alice")
	if st.State != "idle" || !st.Alive || !st.Healthy || st.HealthReason != "ok" || st.Turns != 1 || st.SessionID == "" {
		t.Fatalf("status = %+v", st)
	}
	if !strings.Contains(h.lifecycle(), "event=start chat=alice") {
		t.Fatalf("lifecycle log has no start line:\n%s", h.lifecycle())
	}
}

func TestConcurrentFirstMessagesCreateOneSession(t *testing.T) {
	h := newHarness(t, nil)
	var wg sync.WaitGroup
	ids := make([]string, 20)
	for i := range ids {
		wg.Add(1)
		go func() { defer wg.Done(); ids[i] = h.send("bob", fmt.Sprint("m", i)) }()
	}
	wg.Wait()
	for _, id := range ids {
		h.waitMsg(id, store.Done)
	}
	if n := len(h.ag.Starts()); n != 1 {
		t.Fatalf("%d agent starts for one chat, want 1", n)
	}
	st, _ := h.sup.Status(context.Background())
	if len(st.Sessions) != 1 {
		t.Fatalf("%d sessions, want 1", len(st.Sessions))
	}
}

func TestFIFOWithBatching(t *testing.T) {
	h := newHarness(t, nil)
	h.ag.SetChatDelay("carol", 0)
	var ids []string
	for i := range 25 {
		ids = append(ids, h.send("carol", fmt.Sprintf("msg-%02d", i)))
	}
	for _, id := range ids {
		h.waitMsg(id, store.Done)
	}
	var got []string
	for _, turn := range h.ag.TurnsFor("carol") {
		got = append(got, turn.Texts...)
	}
	if len(got) != 25 {
		t.Fatalf("agent saw %d messages, want 25: %v", len(got), got)
	}
	for i, text := range got {
		if want := fmt.Sprintf("msg-%02d", i); text != want {
			t.Fatalf("message %d was %q, want %q (order broken): %v", i, text, want, got)
		}
	}
}

func TestCrashRestartsWithResume(t *testing.T) {
	h := newHarness(t, nil)
	h.waitMsg(h.send("dave", "one"), store.Done)
	sid := h.snap("dave").SessionID
	h.ag.CrashNext()
	crash := h.send("dave", "crash on this once")
	h.eventually("restart after crash", func() bool { return len(h.ag.Starts()) == 2 && h.snap("dave").ProcUp })
	starts := h.ag.Starts()
	if !starts[1].Resume || starts[1].SessionID != sid {
		t.Fatalf("restart spec = %+v, want resume of %s", starts[1], sid)
	}
	m := h.waitMsg(crash, store.Done) // retried by the restarted agent
	if m.Failures != 1 || m.Attempts != 2 {
		t.Fatalf("crashed message = %+v, want 1 failure in 2 attempts", m)
	}
	// the conversation continues in the resumed session
	m = h.waitMsg(h.send("dave", "two"), store.Done)
	if !strings.Contains(m.Reply, "(turn 3)") {
		t.Fatalf("reply %q does not continue the conversation", m.Reply)
	}
	if st := h.status("dave"); st.Restarts != 1 || st.SessionID != sid {
		t.Fatalf("status after crash = %+v", st)
	}
	if !strings.Contains(h.lifecycle(), "event=restart chat=dave") {
		t.Fatal("no restart line in the lifecycle log")
	}
}

func TestPoisonMessageGoesDeadAndChatContinues(t *testing.T) {
	for _, poison := range []string{"CRASH", "ERROR", "HANG"} {
		t.Run(poison, func(t *testing.T) {
			h := newHarness(t, nil)
			bad := h.send("erin", poison)
			good := h.send("erin", "after")
			if poison == "HANG" {
				// The first silent turn, with no other chat answering, is
				// put down to an outage (uncharged); the probe then proves
				// the API up, so the next silent turns are the message's
				// own: charged twice, dead.
				// Turns of erin's the agent had when the last one was
				// seen: counted before that turn can start, or a turn that
				// reached the agent before the count would be waited for
				// again, and it hangs until the clock moves.
				seen := 0
				for try := 0; h.msg(bad).State != store.Dead; try++ {
					if try == 10 {
						t.Fatalf("poison not dead after %d silent turns", try)
					}
					// wait (through probes and backoffs) until the next
					// silent turn has reached the agent, then let it be
					// stuck for longer than a first turn may be
					h.runUntil("the next silent turn", time.Minute, func() bool {
						return len(h.ag.TurnsFor("erin")) > seen || h.msg(bad).State == store.Dead
					})
					seen = len(h.ag.TurnsFor("erin"))
					if h.msg(bad).State == store.Dead {
						break
					}
					h.clk.Advance(30*time.Minute + time.Second)
					h.sup.Check(context.Background())
				}
			} else {
				// batch [bad, good] fails, then bad alone fails again → dead
				h.runUntil("poison dead", time.Minute, func() bool { return h.msg(bad).State == store.Dead })
			}
			m := h.waitMsg(bad, store.Dead)
			if m.Failures != 2 || m.Error == "" {
				t.Fatalf("dead message = %+v", m)
			}
			h.runUntil("next message answered", time.Minute, func() bool { return h.msg(good).State == store.Done })
			if st := h.status("erin"); st.State == "failed" {
				t.Fatalf("a poison message failed the session: %+v", st)
			}
			if !strings.Contains(h.lifecycle(), "event=dead_letter chat=erin") {
				t.Fatal("no dead_letter line in the lifecycle log")
			}
		})
	}
}

func TestErrorsThenRestartAndReset(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxAttempts = 3 })
	h.ag.SetDirectives(false)
	h.waitMsg(h.send("fay", "warm up"), store.Done)
	// two error results, then a success resets error_count
	h.ag.Fail(agent.Fault, 2)
	id := h.send("fay", "x")
	h.runUntil("x answered after two failures, each backed off", time.Minute, func() bool {
		return h.msg(id).State == store.Done
	})
	if m := h.msg(id); m.Failures != 2 {
		t.Fatalf("x = %+v, want done after 2 failed attempts (error_count 2)", m)
	}
	h.eventually("error_count reset by a success", func() bool { return h.snap("fay").ErrorCount == 0 })
	if n := len(h.ag.Starts()); n != 1 {
		t.Fatalf("%d starts: 2 errors must not restart", n)
	}
	// three error results in a row → restart
	h.ag.Fail(agent.Fault, 3)
	id = h.send("fay", "y")
	h.runUntil("restart after 3 errors", time.Minute, func() bool { // through the backoff after each failure
		return len(h.ag.Starts()) == 2
	})
	if !strings.Contains(h.lifecycle(), "reason=\"errors=3") {
		t.Fatalf("no errors=3 restart in the lifecycle log:\n%s", h.lifecycle())
	}
	h.runUntil("y dead", time.Minute, func() bool { return h.msg(id).State == store.Dead })
	m := h.msg(id) // 3 failed attempts at max_attempts 3
	if m.Failures != 3 {
		t.Fatalf("failures = %d", m.Failures)
	}
	h.eventually("error_count reset by restart", func() bool { return h.snap("fay").ErrorCount == 0 })
}

func TestRestartLimitFailsSessionAndOperatorRestartClears(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxAttempts = 100 })
	h.ag.SetDirectives(false)
	h.ag.SetStartErr(fmt.Errorf("boom"))
	id := h.send("gus", "hi")
	// start fails → restart (immediate), then 1s, then 2s, then failed
	h.runUntil("failed", time.Minute, func() bool { // through the growing backoff
		return h.snap("gus").State == session.Failed
	})
	if n := len(h.ag.Starts()); n != 4 {
		t.Fatalf("%d starts before failing, want 4 (first + 3 restarts)", n)
	}
	starts := len(h.ag.Starts())
	st := h.status("gus")
	if st.Healthy || !strings.HasPrefix(st.HealthReason, "failed: ") {
		t.Fatalf("failed session status = %+v", st)
	}
	// no more automatic restarts, the message stays queued
	h.clk.Advance(time.Hour)
	h.sup.Check(context.Background())
	if n := len(h.ag.Starts()); n != starts {
		t.Fatalf("failed session restarted automatically (%d → %d starts)", starts, n)
	}
	if m := h.msg(id); m.State != store.Pending {
		t.Fatalf("message of a failed session is %s, want pending", m.State)
	}
	if !strings.Contains(h.lifecycle(), "event=failure chat=gus") {
		t.Fatal("no failure line in the lifecycle log")
	}
	// an operator restart clears it and the message is answered
	h.ag.SetStartErr(nil)
	if err := h.sup.Restart(context.Background(), "gus", false); err != nil {
		t.Fatal(err)
	}
	h.waitMsg(id, store.Done)
	h.eventually("idle after operator restart", func() bool { return h.snap("gus").State == session.Idle })
	if st := h.status("gus"); !st.Healthy || st.HealthReason != "ok" {
		t.Fatalf("after operator restart: %+v", st)
	}
}

func TestStuckTurnRestarts(t *testing.T) {
	h := newHarness(t, nil)
	h.waitMsg(h.send("hal", "warm"), store.Done)
	h.ag.HangNext()
	id := h.send("hal", "slow one")
	h.eventually("turn handed over", func() bool {
		s := h.snap("hal")
		return s.Busy && len(h.ag.TurnsFor("hal")) == 2 && s.LastOutput.Equal(t0)
	})
	h.clk.Advance(10 * time.Minute)
	if r := h.sup.Check(context.Background()); len(r.Unhealthy) != 0 {
		t.Fatalf("restarted at exactly the stuck timeout: %v", r.Unhealthy)
	}
	h.clk.Advance(time.Second)
	r := h.sup.Check(context.Background())
	if r.Unhealthy["hal"] != "stuck" {
		t.Fatalf("check = %+v, want hal stuck", r)
	}
	// A silent turn while no other chat gets answers is an outage signal:
	// the messages are not charged, the breaker probes, and the restarted
	// agent retries the turn once a probe gets through.
	h.runUntil("retried by the restarted agent", time.Minute, func() bool { // the probe's delay
		return h.msg(id).State == store.Done
	})
	if m := h.msg(id); m.Attempts != 2 || m.Failures != 0 {
		t.Fatalf("attempts = %d, failures %d; want 2 attempts, none charged", m.Attempts, m.Failures)
	}
	if s := h.snap("hal"); s.Restarts != 0 {
		t.Fatalf("a silent turn in an outage counted %d restarts", s.Restarts)
	}
}

func TestIdleReaping(t *testing.T) {
	h := newHarness(t, nil)
	chats := []string{"ivy", "master", "jobs-bg", "flagged", "busy", "waiting"}
	for _, c := range chats {
		h.waitMsg(h.send(c, "hi"), store.Done)
	}
	if err := h.sup.Exempt(context.Background(), "flagged", true); err != nil {
		t.Fatal(err)
	}
	h.ag.HangNext()
	h.send("busy", "long")
	h.eventually("busy", func() bool { return h.snap("busy").Busy })
	// 'waiting' has a message that cannot start: hold its agent with a hang
	// then a queued message behind it.
	h.ag.HangNext()
	h.send("waiting", "long")
	h.eventually("waiting busy", func() bool { return h.snap("waiting").Busy })
	h.send("waiting", "queued")

	h.clk.Advance(2 * time.Hour)
	r := h.sup.Check(context.Background())
	if len(r.Reaped) != 0 {
		t.Fatalf("reaped at exactly 2h: %v", r.Reaped)
	}
	h.clk.Advance(time.Second)
	r = h.sup.Check(context.Background())
	if fmt.Sprint(r.Reaped) != "[ivy]" {
		t.Fatalf("reaped %v, want [ivy]", r.Reaped)
	}
	h.eventually("ivy stopped", func() bool { return h.snap("ivy").State == session.Stopped })
	sid := h.snap("ivy").SessionID
	for _, c := range []string{"master", "jobs-bg", "flagged"} {
		if s := h.snap(c); !s.ProcUp {
			t.Fatalf("exempt session %s was stopped", c)
		}
	}
	if st := h.status("ivy"); !st.Healthy || st.HealthReason != "stopped" {
		t.Fatalf("reaped session status = %+v", st)
	}
	if !strings.Contains(h.lifecycle(), "event=reap chat=ivy") {
		t.Fatal("no reap line in the lifecycle log")
	}
	// the next message resumes the same conversation
	m := h.waitMsg(h.send("ivy", "back"), store.Done)
	if !strings.Contains(m.Reply, "(turn 2)") || h.snap("ivy").SessionID != sid {
		t.Fatalf("resume after reap: reply %q, session %s (was %s)", m.Reply, h.snap("ivy").SessionID, sid)
	}
}

func TestOutageHoldsMessagesWithoutRestarts(t *testing.T) {
	h := newHarness(t, nil)
	h.ag.SetDirectives(false)
	h.waitMsg(h.send("kim", "warm"), store.Done)
	h.ag.Fail(agent.Outage, 1000)
	var ids []string
	for i := range 5 {
		ids = append(ids, h.send("kim", fmt.Sprint("o", i)))
	}
	h.eventually("api down", func() bool { return !h.sup.breaker.Up() })
	st, _ := h.sup.Status(context.Background())
	if st.Daemon.API != "down" {
		t.Fatalf("api = %s, want down", st.Daemon.API)
	}
	// probes keep failing; nothing restarts, nothing counts as an error
	for range 10 {
		// jump the clock only between turns: a turn "in flight" across a
		// 2-minute jump would really be stuck
		h.eventually("no turn in flight", func() bool { return !h.snap("kim").Busy })
		h.clk.Advance(2 * time.Minute)
		h.sup.Check(context.Background())
	}
	if s := h.snap("kim"); s.ErrorCount != 0 || s.Restarts != 0 {
		t.Fatalf("outage touched the session: %+v", s)
	}
	for _, id := range ids {
		// pending, or in flight as the probe; never charged a failure
		if m := h.msg(id); m.State == store.Done || m.State == store.Dead || m.Failures != 0 {
			t.Fatalf("message during outage = %+v", m)
		}
	}
	h.ag.Fail(agent.Outage, 0)
	h.runUntil("recovery", 2*time.Minute, func() bool { return h.msg(ids[4]).State == store.Done })
	if !h.sup.breaker.Up() {
		t.Fatal("api still down after recovery")
	}
	if got := firstDeliveries(h.ag.TurnsFor("kim")); strings.Join(got, ",") != "warm,o0,o1,o2,o3,o4" {
		t.Fatalf("first-delivery order %v, want send order", got)
	}
}

func TestRecoveryAfterRestartOfSupervisor(t *testing.T) {
	h := newHarness(t, nil)
	h.waitMsg(h.send("lou", "one"), store.Done)
	sid := h.snap("lou").SessionID
	h.ag.HangNext()
	id := h.send("lou", "in flight at shutdown")
	h.eventually("busy", func() bool { return h.snap("lou").Busy })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	h.sup.Shutdown(ctx) // the hang outlives the grace period
	cancel()
	if m := h.msg(id); m.State != store.Pending || m.Failures != 0 {
		t.Fatalf("message in flight at shutdown = %+v, want pending with no failure", m)
	}
	h.start()
	h.waitMsg(id, store.Done)
	starts := h.ag.Starts()
	if last := starts[len(starts)-1]; !last.Resume || last.SessionID != sid {
		t.Fatalf("restart after daemon restart = %+v, want resume of %s", last, sid)
	}
}

func TestCheckLoopRunsOnSchedule(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.FirstCheckDelay = 30 * time.Second })
	checks := func() int {
		return strings.Count(readFile(logging.ManagerPath(h.dir)), "msg=\"health check\"")
	}
	armed, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if when, err := h.clk.WaitNext(armed, time.Hour); err != nil || !when.Equal(t0.Add(30*time.Second)) {
		t.Fatalf("first check armed for %v (%v), want first_check_delay", when, err)
	}
	h.clk.Advance(29 * time.Second)
	if checks() != 0 {
		t.Fatal("a check ran before first_check_delay")
	}
	h.clk.Advance(time.Second)
	h.eventually("first check", func() bool { return checks() == 1 })
	h.clk.Advance(5 * time.Minute)
	h.eventually("second check", func() bool { return checks() == 2 })
	if !h.sup.Healthy() {
		t.Fatal("supervisor not healthy while its loop ticks")
	}
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

func TestPanicInOneSessionLeavesOthers(t *testing.T) {
	h := newHarness(t, nil)
	h.ag.SetScript(func(chat string, texts []string) (agent.Result, error) {
		if chat == "bad" {
			panic("driver bug")
		}
		return agent.Result{Text: "ok " + strings.Join(texts, " ")}, nil
	})
	bad := h.send("bad", "x")
	good := h.send("good", "y")
	h.waitMsg(good, store.Done)
	h.eventually("panic counted as a failed attempt", func() bool { return h.msg(bad).Failures >= 1 })
	h.waitMsg(h.send("good", "z"), store.Done)
}

func TestAuthErrorHoldsMessagesLogsOnceAndNeverRestarts(t *testing.T) {
	h := newHarness(t, nil)
	h.ag.SetDirectives(false)
	h.waitMsg(h.send("max", "warm"), store.Done)
	h.ag.Fail(agent.Auth, 1000)
	id := h.send("max", "needs a key")
	h.eventually("api down", func() bool { return !h.sup.breaker.Up() })
	for range 5 {
		h.clk.Advance(2 * time.Minute) // probes fail with 401 again
		h.sup.Check(context.Background())
	}
	if s := h.snap("max"); s.ErrorCount != 0 || s.Restarts != 0 || s.State == session.Failed {
		t.Fatalf("a 401 touched the session: %+v", s)
	}
	if m := h.msg(id); m.Failures != 0 || m.State == store.Dead {
		t.Fatalf("a 401 charged the message: %+v", m)
	}
	if n := strings.Count(h.lifecycle(), "event=failure chat=max"); n != 1 {
		t.Fatalf("auth failure logged %d times, want once:\n%s", n, h.lifecycle())
	}
	h.ag.Fail(agent.Auth, 0) // the key is fixed
	h.runUntil("answered", 2*time.Minute, func() bool { return h.msg(id).State == store.Done })
}

// firstDeliveries lists texts in the order they first reached the agent.
func firstDeliveries(turns []fake.Turn) []string {
	seen := map[string]bool{}
	var out []string
	for _, t := range turns {
		for _, text := range t.Texts {
			if !seen[text] {
				seen[text] = true
				out = append(out, text)
			}
		}
	}
	return out
}

func TestLostTranscriptStartsFreshAndKeepsMessages(t *testing.T) {
	h := newHarness(t, nil)
	h.ag.SetStrictResume(true)
	h.waitMsg(h.send("nia", "one"), store.Done)
	old := h.snap("nia").SessionID
	if err := h.sup.Kill(context.Background(), "nia"); err != nil {
		t.Fatal(err)
	}
	h.ag.Forget(old) // the transcript is gone
	id := h.send("nia", "two")
	m := h.waitMsg(id, store.Done)
	if m.Failures != 0 {
		t.Fatalf("a lost transcript charged the message: %+v", m)
	}
	h.eventually("new session id", func() bool { return h.snap("nia").SessionID != old })
	if !strings.Contains(h.lifecycle(), "event=resume_failed chat=nia") {
		t.Fatalf("no resume_failed line:\n%s", h.lifecycle())
	}
	if s := h.snap("nia"); s.Restarts != 0 || s.State == session.Failed {
		t.Fatalf("a fresh start counted as a restart: %+v", s)
	}
}

func TestSessionIDSavedAndNotOverwrittenByResume(t *testing.T) {
	h := newHarness(t, nil)
	h.waitMsg(h.send("ola", "one"), store.Done)
	sid := h.snap("ola").SessionID
	recs, err := h.st.Sessions(context.Background())
	if err != nil || len(recs) != 1 || recs[0].SessionID != sid || !recs[0].Live {
		t.Fatalf("stored sessions = %+v, %v; want ola with %s, live", recs, err, sid)
	}
	h.ag.Crash("ola")
	h.eventually("resumed", func() bool { return len(h.ag.Starts()) == 2 && h.snap("ola").ProcUp })
	h.waitMsg(h.send("ola", "two"), store.Done)
	recs, _ = h.st.Sessions(context.Background())
	if recs[0].SessionID != sid {
		t.Fatalf("session id changed by a resumed run: %s → %s", sid, recs[0].SessionID)
	}
}

func TestIdempotentSubmit(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	id, dup, err := h.sup.Submit(ctx, "pia", "hello", "client-1")
	if err != nil || dup || id == "client-1" {
		t.Fatalf("first submit = %q, %v, %v", id, dup, err)
	}
	again, dup, err := h.sup.Submit(ctx, "pia", "hello", "client-1")
	if err != nil || !dup || again != id {
		t.Fatalf("repeat submit = %q, %v, %v; want duplicate of %q", again, dup, err, id)
	}
	if _, _, err := h.sup.Submit(ctx, "pia", "hello again", "client-1"); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("same client id, other text: %v, want a conflict", err)
	}
	h.waitMsg(id, store.Done)
	// Another chat with the same client id gets its own message and its
	// own reply, never pia's.
	other, dup, err := h.sup.Submit(ctx, "quinn", "something else", "client-1")
	if err != nil || dup || other == id {
		t.Fatalf("other chat = %q, %v, %v; want a new message", other, dup, err)
	}
	m := h.waitMsg(other, store.Done)
	if m.ChatID != "quinn" || !strings.Contains(m.Reply, "something else") {
		t.Fatalf("other chat's message: %+v", m)
	}
	c, _ := h.st.Counts(ctx)
	if c.Done+c.Pending+c.Inflight != 2 {
		t.Fatalf("counts = %+v, want two messages", c)
	}
}

// keeper is the fake agent posing as one that keeps failed turns in its
// conversation, like the Claude Code CLI.
type keeper struct{ *fake.Agent }

func (keeper) KeepsFailedTurns() bool { return true }

func TestRetryAfterOutageDoesNotResendKeptMessages(t *testing.T) {
	h := newHarness(t, nil)
	h.stop()
	h.sup = New(h.cfg, h.st, keeper{h.ag}, h.clk, h.logs)
	if err := h.sup.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.ag.SetDirectives(false)
	h.waitMsg(h.send("quinn", "warm"), store.Done)
	h.ag.Fail(agent.Outage, 3) // the held turn fails once; two probes fail
	held := h.send("quinn", "held message")
	h.eventually("api down", func() bool { return !h.sup.breaker.Up() })
	h.eventually("held back in line", func() bool { return h.msg(held).KeptIn != "" })
	// the daemon restarts during the outage: what the conversation holds is
	// known from the store, not from memory
	h.stop()
	h.sup = New(h.cfg, h.st, keeper{h.ag}, h.clk, h.logs)
	if err := h.sup.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.runUntil("answered after recovery", 2*time.Minute, func() bool { return h.msg(held).State == store.Done })
	var sent []string
	for _, turn := range h.ag.TurnsFor("quinn") {
		sent = append(sent, turn.Texts...)
	}
	if n := strings.Count(strings.Join(sent, "|"), "held message"); n != 1 {
		t.Fatalf("the held text reached the conversation %d times, want once: %q", n, sent)
	}
	if sent[len(sent)-1] != session.RetryNote {
		t.Fatalf("retry sent %q, want the retry note", sent[len(sent)-1])
	}
	if probes := h.sup.breaker.Stats().Probes; probes < 1 {
		t.Fatalf("probes = %d, want the outage probed out of band", probes)
	}
}

func TestCheckPurgesAnsweredMessagesPastRetention(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.RetainDone = 24 * time.Hour })
	old := h.send("rae", "old")
	h.waitMsg(old, store.Done)
	h.clk.Advance(24*time.Hour + time.Second)
	fresh := h.send("rae", "fresh")
	h.waitMsg(fresh, store.Done)
	h.sup.Check(context.Background())
	if _, err := h.st.Get(context.Background(), old); err == nil {
		t.Fatal("a message answered more than retain_done ago was kept")
	}
	if m := h.msg(fresh); m.State != store.Done {
		t.Fatalf("fresh message = %+v", m)
	}
}

// /stop: the turn in flight ends at once; its message is answered
// "Stopped." (done, one attempt, never handed over again, no dead
// letter), the agent that could not be interrupted is started again with
// its conversation (not counted as a restart), and the chat goes on.
// With no turn running there is nothing to stop.
func TestStopTurn(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	h.waitMsg(h.send("hal", "warm"), store.Done)
	if stopped, err := h.sup.StopTurn(ctx, "hal"); err != nil || stopped {
		t.Fatalf("StopTurn with no turn = %v, %v; want false", stopped, err)
	}
	sid := h.snap("hal").SessionID
	h.ag.HangNext()
	id := h.send("hal", "slow one")
	h.eventually("turn handed over", func() bool { return h.snap("hal").Busy })
	stopped, err := h.sup.StopTurn(ctx, "hal")
	if err != nil || !stopped {
		t.Fatalf("StopTurn = %v, %v", stopped, err)
	}
	m := h.waitMsg(id, store.Done)
	if m.Reply != session.HaltedReply || m.Attempts != 1 || m.Failures != 0 {
		t.Fatalf("stopped message: reply %q, %d attempts, %d failures", m.Reply, m.Attempts, m.Failures)
	}
	h.waitMsg(h.send("hal", "next"), store.Done)
	if n := len(h.ag.TurnsFor("hal")); n != 3 {
		t.Fatalf("%d turns handed over, want 3 (the stopped one not again)", n)
	}
	s := h.snap("hal")
	if s.Restarts != 0 || s.SessionID != sid {
		t.Fatalf("after /stop: %d restarts, session %s (was %s)", s.Restarts, s.SessionID, sid)
	}
	if _, err := h.sup.StopTurn(ctx, "nobody"); err == nil {
		t.Fatal("StopTurn of an unknown chat succeeded")
	}
}

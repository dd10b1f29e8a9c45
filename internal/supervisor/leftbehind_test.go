package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/agent"
	"github.com/dispatchd/dispatch/internal/session"
	"github.com/dispatchd/dispatch/internal/store"
)

// Regression tests for the ways an accepted message could be left waiting
// with nothing scheduled to hand it over.

// gatedScript answers turns with an echo, except that a turn holding
// block's text waits until release is closed and then fails with fail
// (once; later turns with that text succeed).
type gatedScript struct {
	mu      sync.Mutex
	block   string
	fail    error
	release chan struct{}
	entered chan struct{}
	done    bool
}

func newGate(block string, fail error) *gatedScript {
	return &gatedScript{block: block, fail: fail, release: make(chan struct{}), entered: make(chan struct{})}
}

func (g *gatedScript) answer(chat string, texts []string) (agent.Result, error) {
	joined := strings.Join(texts, "\n")
	g.mu.Lock()
	first := !g.done && strings.Contains(joined, g.block)
	if first {
		g.done = true
	}
	g.mu.Unlock()
	if first {
		close(g.entered)
		<-g.release
		return agent.Result{}, g.fail
	}
	return agent.Result{Text: "echo: " + joined}, nil
}

// One turn that fails once, while more messages wait behind it: the failed
// message is retried alone (isolated), and the messages behind it must
// follow at once — not wait for another message or a health check.
func TestTransientFailureDoesNotStrandTheQueue(t *testing.T) {
	for _, tt := range []struct {
		name string
		fail error
	}{
		{"error result", agent.Errorf(agent.Fault, "fake: error result")},
		{"crash", agent.Errorf(agent.Exited, "fake: crashed during the turn")}, // and the process dies
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			g := newGate("first", tt.fail)
			h.ag.SetScript(g.answer)
			ids := []string{h.send("ann", "first")}
			<-g.entered
			ids = append(ids, h.send("ann", "second"), h.send("ann", "third"))
			if agent.KindOf(tt.fail) == agent.Exited {
				h.ag.Crash("ann")
			}
			close(g.release)
			for _, id := range ids {
				// no Check, no further message: only the backoff after
				// the failure passes
				h.runUntil("message done", time.Minute, func() bool { return h.msg(id).State == store.Done })
			}
			if got := h.msg(ids[0]); got.Failures != 1 {
				t.Errorf("first message failures = %d, want 1", got.Failures)
			}
		})
	}
}

// The same after an operator restart of a failed session: the isolated
// retry succeeds and everything behind it follows.
func TestOperatorRestartOfFailedSessionReleasesTheQueue(t *testing.T) {
	h := newHarness(t, nil)
	g := newGate("first", agent.Errorf(agent.Fault, "fake: error result"))
	h.ag.SetScript(g.answer)
	first := h.send("bea", "first")
	<-g.entered
	rest := []string{h.send("bea", "second"), h.send("bea", "third")}
	h.ag.SetStartErr(errors.New("fake: cannot start"))
	h.ag.Crash("bea") // the turn fails; restarts fail until the session gives up
	close(g.release)
	h.runUntil("session failed", 5*time.Minute, func() bool { // restart backoffs
		return h.snap("bea").State == session.Failed
	})
	h.ag.SetStartErr(nil)
	if err := h.sup.Restart(context.Background(), "bea", false); err != nil {
		t.Fatal(err)
	}
	for _, id := range append([]string{first}, rest...) {
		h.waitMsg(id, store.Done)
	}
}

// kill stops the agent; the messages waiting go to a new agent at once.
func TestKillWithWaitingMessagesStartsANewAgent(t *testing.T) {
	h := newHarness(t, nil)
	g := newGate("first", nil)
	h.ag.SetScript(g.answer)
	first := h.send("cat", "first")
	<-g.entered
	second := h.send("cat", "second")
	killed := make(chan error, 1)
	go func() { killed <- h.sup.Kill(context.Background(), "cat") }()
	// The fake's script cannot see the kill; the turn ends when released.
	h.eventually("agent stopped", func() bool { return h.ag.Live() == 0 })
	close(g.release)
	if err := <-killed; err != nil {
		t.Fatal(err)
	}
	h.waitMsg(first, store.Done)
	h.waitMsg(second, store.Done)
	if got := h.msg(first); got.Failures != 0 {
		t.Errorf("a killed turn charged its message: %+v", got)
	}
	if n := len(h.ag.Starts()); n != 2 {
		t.Errorf("%d agent starts, want 2", n)
	}

	// With nothing waiting, a killed session stays stopped, and says why.
	if err := h.sup.Kill(context.Background(), "cat"); err != nil {
		t.Fatal(err)
	}
	st := h.status("cat")
	if st.State != "stopped" || st.StopReason != "killed" || !st.Healthy {
		t.Errorf("after kill with nothing waiting: %+v", st)
	}
}

// pause holds a chat's messages (accepted, kept, nothing handed over);
// resume lets them go in order. The hold survives a daemon restart.
func TestPauseAndResume(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	h.waitMsg(h.send("dan", "before"), store.Done)
	if err := h.sup.Pause(ctx, "dan"); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 3 {
		ids = append(ids, h.send("dan", fmt.Sprint("held ", i)))
	}
	st := h.status("dan")
	if st.State != "paused" || !st.Healthy || st.HealthReason != "paused" || st.QueueDepth != 3 || h.snap("dan").ProcUp {
		t.Fatalf("paused session: %+v", st)
	}
	h.clk.Advance(time.Hour) // a check long after: held on purpose, not stranded
	if res := h.sup.Check(ctx); len(res.Stranded)+len(res.Unhealthy) != 0 {
		t.Fatalf("check of a paused session: %+v", res)
	}

	h.stop()
	h.start()
	if st := h.status("dan"); st.State != "paused" || st.QueueDepth != 3 {
		t.Fatalf("after a daemon restart: %+v", st)
	}
	if len(h.ag.TurnsFor("dan")) != 1 {
		t.Fatalf("a paused chat's messages were handed over: %+v", h.ag.TurnsFor("dan"))
	}
	if err := h.sup.Resume(ctx, "dan"); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		h.waitMsg(id, store.Done)
	}
	var got []string
	for _, turn := range h.ag.TurnsFor("dan")[1:] {
		got = append(got, turn.Texts...)
	}
	if want := []string{"held 0", "held 1", "held 2"}; !slices.Equal(got, want) {
		t.Errorf("after resume the agent got %q, want %q", got, want)
	}
}

// Operations on a chat that does not exist are refused: a typo never
// creates a session or starts an agent.
func TestOperationsOnUnknownChats(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	for name, op := range map[string]func() error{
		"kill":    func() error { return h.sup.Kill(ctx, "nobody") },
		"restart": func() error { return h.sup.Restart(ctx, "nobody", false) },
		"exempt":  func() error { return h.sup.Exempt(ctx, "nobody", true) },
		"pause":   func() error { return h.sup.Pause(ctx, "nobody") },
		"resume":  func() error { return h.sup.Resume(ctx, "nobody") },
	} {
		if err := op(); !errors.Is(err, ErrUnknownChat) {
			t.Errorf("%s of an unknown chat: %v, want ErrUnknownChat", name, err)
		}
	}
	if _, ok := h.sup.lookup("nobody"); ok || len(h.ag.Starts()) != 0 {
		t.Error("an operation on an unknown chat created a session")
	}
}

// The safety net: a health check hands over the messages of an idle
// session that has nothing in flight, and logs that it had to. The stranded
// state is made by storing a message behind the supervisor's back, the one
// way left to get there.
func TestHealthCheckHandsOverStrandedMessages(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	h.waitMsg(h.send("eve", "hello"), store.Done)
	h.eventually("idle", func() bool { return h.snap("eve").State == session.Idle })
	id, _, err := h.st.Accept(ctx, "eve", "behind its back", "")
	if err != nil {
		t.Fatal(err)
	}
	if res := h.sup.Check(ctx); len(res.Stranded) != 0 {
		t.Errorf("a message accepted a moment ago counted as stranded: %+v", res)
	}
	h.waitMsg(id, store.Done) // the check handed it over all the same

	id, _, _ = h.st.Accept(ctx, "eve", "behind its back again", "")
	h.clk.Advance(session.StrandGrace + time.Second)
	res := h.sup.Check(ctx)
	if !slices.Equal(res.Stranded, []string{"eve"}) {
		t.Errorf("stranded = %v, want [eve]", res.Stranded)
	}
	h.waitMsg(id, store.Done)
	if !strings.Contains(readFile(h.dir+"/logs/manager.log"), "nothing scheduled") {
		t.Error("the manager log does not say that messages were found stranded")
	}
}

// A store write that fails (a full disk) is retried until it succeeds; the
// session says store_error meanwhile, the turn's messages stay in flight
// (not lost, not answered twice), and later messages never overtake them.
func TestStoreWriteFailureIsRetriedInOrder(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	g := newGate("first", nil)
	h.ag.SetScript(g.answer)
	first := h.send("fay", "first")
	<-g.entered
	second := h.send("fay", "second")

	var failing sync.Mutex // held while the disk is "full"
	full := true
	h.st.InjectWriteFault(func() error {
		failing.Lock()
		defer failing.Unlock()
		if full {
			return &os.PathError{Op: "write", Path: "dispatch.db-wal", Err: syscall.ENOSPC}
		}
		return nil
	})
	close(g.release) // the turn succeeds, but its outcome cannot be written
	h.eventually("store_error reported", func() bool { return h.snap("fay").StoreError != "" })
	st := h.status("fay")
	if st.Healthy || st.HealthReason != "store_error" || st.StoreError == "" {
		t.Errorf("status while the disk is full: %+v", st)
	}
	if res := h.sup.Check(ctx); len(res.Unhealthy) != 0 {
		t.Errorf("the check restarted a session waiting on its disk: %+v", res.Unhealthy)
	}
	if _, _, err := h.sup.Submit(ctx, "fay", "third", ""); !errors.Is(err, store.ErrNoSpace) {
		t.Errorf("accept on a full disk: %v, want ErrNoSpace", err)
	}
	for range 5 {
		h.fire(time.Minute) // the next retry comes (once armed) and fails
	}
	if m := h.msg(first); m.State != store.Inflight {
		t.Fatalf("first message while its outcome cannot be written: %s", m.State)
	}
	if m := h.msg(second); m.State != store.Pending {
		t.Fatalf("second message overtook the first: %s", m.State)
	}

	failing.Lock()
	full = false
	failing.Unlock()
	h.runUntil("first done", time.Minute, func() bool { return h.msg(first).State == store.Done })
	h.waitMsg(second, store.Done)
	if h.snap("fay").StoreError != "" {
		t.Error("store_error still reported after the disk recovered")
	}
	turns := h.ag.TurnsFor("fay")
	if len(turns) != 2 || turns[0].Texts[0] != "first" || turns[1].Texts[0] != "second" {
		t.Errorf("turns = %+v, want first, then second, each once", turns)
	}
}

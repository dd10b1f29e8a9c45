package supervisor

import (
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/agent"
	"github.com/dispatchd/dispatch/internal/session"
	"github.com/dispatchd/dispatch/internal/store"
)

// Out of file descriptors, every session's agent start fails: that is the
// daemon's problem. No session spends its restart budget on it or fails;
// the daemon's health says so; once descriptors are free again every
// message is answered.
func TestDaemonResourceErrorsAreNotTheSessions(t *testing.T) {
	h := newHarness(t, nil)
	h.ag.SetStartErr(fmt.Errorf("claude: pipes: %w", &os.SyscallError{Syscall: "pipe2", Err: syscall.EMFILE}))
	var ids []string
	for i := range 20 {
		ids = append(ids, h.send(fmt.Sprint("c", i), "hello"))
	}
	h.runUntil("every session tried a few times", time.Minute, func() bool { return len(h.ag.Starts()) >= 20*4 })
	for i := range 20 {
		s := h.snap(fmt.Sprint("c", i))
		if s.State == session.Failed || s.Restarts != 0 {
			t.Fatalf("session c%d charged for the daemon's own error: %+v", i, s)
		}
	}
	st, err := h.sup.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Daemon.ResourceError == "" || st.Daemon.Healthy {
		t.Fatalf("daemon status does not report its resource error: %+v", st.Daemon)
	}
	h.ag.SetStartErr(nil)
	for _, id := range ids {
		h.runUntil("answered once descriptors are free", time.Minute, func() bool { return h.msg(id).State == store.Done })
	}
	h.clk.Advance(DaemonErrorWindow + time.Second)
	if st, _ := h.sup.Status(t.Context()); st.Daemon.ResourceError != "" || !st.Daemon.Healthy {
		t.Fatalf("daemon still reported unhealthy after the error passed: %+v", st.Daemon)
	}
}

// An agent that ends cleanly after each answer is not broken: each exit is
// a plain restart, and a successful turn clears the restart history, so
// crashes far apart never add up to a failed session.
func TestCleanExitsAndSuccessesNeverFailTheSession(t *testing.T) {
	h := newHarness(t, nil)
	for i := range 5 {
		h.waitMsg(h.send("eve", fmt.Sprint("m", i)), store.Done)
		gen := h.snap("eve").Gen
		p := h.ag.Process("eve")
		if p == nil {
			t.Fatal("no live agent")
		}
		_ = p.Stop(t.Context()) // exits with status 0, after answering
		h.eventually("a new agent", func() bool { s := h.snap("eve"); return s.Gen > gen && s.ProcUp })
	}
	if s := h.snap("eve"); s.State == session.Failed {
		t.Fatalf("clean exits after answering failed the session: %+v", s)
	}
	for i := range 5 {
		h.ag.CrashNext()
		id := h.send("eve", fmt.Sprint("crash ", i))
		h.eventually("answered after the crash", func() bool {
			h.clk.Advance(5 * time.Second) // the restart's backoff
			return h.msg(id).State == store.Done
		})
	}
	if s := h.snap("eve"); s.State == session.Failed {
		t.Fatalf("crashes each followed by a success failed the session: %+v", s)
	}
}

// An agent that exits with status 0 right after its answer — the exit may
// be noticed before the answer is — is started again plainly: never a
// counted restart (found by the model test, op exit0-next).
func TestCleanExitRightAfterAnAnswerIsNotCounted(t *testing.T) {
	h := newHarness(t, nil)
	h.waitMsg(h.send("eve", "hello"), store.Done)
	for i := range 20 {
		gen := h.snap("eve").Gen
		h.ag.Exit0Next()
		h.waitMsg(h.send("eve", fmt.Sprint("m", i)), store.Done)
		h.eventually("a new agent", func() bool { s := h.snap("eve"); return s.ProcUp && s.Gen > gen })
	}
	if s := h.snap("eve"); s.Restarts != 0 || s.State == session.Failed {
		t.Fatalf("clean exits after answering were counted: restarts %d, state %s", s.Restarts, s.State)
	}
}

// A probe whose agent exits before writing anything got no answer from the
// API: the outage goes on, and the held chat is not charged as if others
// were answered (found by the model test: a die-next hitting a probe).
func TestProbeThatExitsSilentlyIsNoAnswer(t *testing.T) {
	h := newHarness(t, nil)
	h.ag.Fail(agent.Outage, 1)
	id := h.send("kim", "x")
	h.eventually("api down", func() bool { return !h.sup.breaker.Up() })
	next := h.sup.breaker.Stats().NextProbe
	h.ag.DieNext()
	h.eventually("a probe was judged", func() bool {
		h.clk.Advance(time.Second)
		st := h.sup.breaker.Stats()
		return st.Up || st.NextProbe.After(next)
	})
	if h.sup.breaker.Up() {
		t.Fatal("a probe whose agent exited before writing anything closed the breaker")
	}
	h.eventually("answered once a probe gets through", func() bool {
		h.clk.Advance(time.Second)
		return h.msg(id).State == store.Done
	})
	if m := h.msg(id); m.Failures != 0 {
		t.Fatalf("held message charged: %+v", m)
	}
}
